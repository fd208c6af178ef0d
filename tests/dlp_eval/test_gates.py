"""DLP quality gates (pytest).

    /work/main/.venv/bin/python -m pytest tests/dlp_eval/test_gates.py -q

Scanner command: DLP_SCANNER_CMD (default: the crate's `scan` example via cargo).
Gates: recall >= 0.98 per entity (>= 0.99 for secrets); zero false positives on
the hard negatives; every entity has English and Japanese positives.
"""

from __future__ import annotations

import collections

import pytest

from corpus import ENTITIES, SECRETS, corpus
from evaluate import RECALL_GATE, SECRET_RECALL_GATE, run_scanner, score


@pytest.fixture(scope="session")
def evaluated():
    docs = corpus()
    findings = run_scanner(docs)
    return docs, findings, score(docs, findings)


def test_corpus_covers_every_entity_in_both_languages(evaluated):
    docs, _, _ = evaluated
    seen = collections.Counter((d.group, d.lang) for d in docs if d.kind == "pos")
    for ent in ENTITIES:
        for lang in ("en", "ja"):
            assert seen[(ent, lang)] >= 30, f"too few {lang} positives for {ent}"
    assert sum(1 for d in docs if d.kind == "neg") >= 1000


@pytest.mark.parametrize("entity", ENTITIES)
def test_recall_gate(evaluated, entity):
    _, _, (_, by_e, misses, _) = evaluated
    sc = by_e[entity]
    gate = SECRET_RECALL_GATE if entity in SECRETS else RECALL_GATE
    examples = [d.text[:200] for d, e, _ in misses if e == entity][:5]
    assert sc.tp + sc.fn > 0
    assert sc.recall >= gate, f"{entity} recall {sc.recall:.3f} < {gate}; missed e.g. {examples}"


def test_zero_false_positives_on_hard_negatives(evaluated):
    _, _, (_, _, _, fps) = evaluated
    neg = [(d.group, f["entity"], d.text[f["start"]:f["end"]], d.text[:160]) for d, f in fps if d.kind == "neg"]
    assert not neg, f"{len(neg)} false positives on hard negatives, e.g. {neg[:10]}"


def test_offsets_are_exact_on_positives(evaluated):
    """Findings on positive documents may only cover labelled spans."""
    _, _, (_, _, _, fps) = evaluated
    pos = [(d.group, f["entity"], d.text[f["start"]:f["end"]]) for d, f in fps if d.kind == "pos"]
    assert not pos, f"unexpected findings in positive documents: {pos[:10]}"
