"""Run a scanner over the corpus and score it.

The scanner is any command that reads one JSON string per line on stdin and
writes one JSON array of findings per line (`{"entity","start","end",...}`,
UTF-8 byte offsets). Choose it with `--scanner "CMD"` or `DLP_SCANNER_CMD`; the
default builds and runs the crate's example binary.

A label counts as found when a finding of the same entity overlaps its span. A
finding is a false positive when no label of its entity overlaps it.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from collections import defaultdict
from pathlib import Path

from corpus import ENTITIES, SECRETS, Doc

REPO = Path(__file__).resolve().parents[2]
# The operator CLI's `tollgate scan --jsonl` (the contract) when it is built (`make test` builds
# it first); otherwise the crate's example scanner, built by cargo on the spot.
CLI = REPO / "target" / "debug" / "tollgate"
DEFAULT_CMD = (
    f"{CLI} scan --jsonl"
    if CLI.exists()
    else "cargo run --release -q -p tollgate-dlp --example scan -- --jsonl"
)

RECALL_GATE = 0.98
SECRET_RECALL_GATE = 0.99


def scanner_cmd(explicit: str | None = None) -> str:
    return explicit or os.environ.get("DLP_SCANNER_CMD") or DEFAULT_CMD


def run_scanner(docs: list[Doc], cmd: str | None = None) -> list[list[dict]]:
    """Findings per doc, with offsets converted to code points."""
    payload = "".join(json.dumps(d.text, ensure_ascii=False) + "\n" for d in docs).encode()
    env = dict(os.environ)
    proc = subprocess.run(
        shlex.split(scanner_cmd(cmd)), input=payload, capture_output=True, cwd=REPO, env=env, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"scanner failed ({proc.returncode}): {proc.stderr.decode(errors='replace')[-2000:]}")
    lines = proc.stdout.decode().splitlines()
    if len(lines) != len(docs):
        raise RuntimeError(f"scanner returned {len(lines)} lines for {len(docs)} documents")
    out = []
    for d, line in zip(docs, lines):
        raw = d.text.encode()
        fs = []
        for f in json.loads(line):
            s, e = f["start"], f["end"]
            # byte offsets -> code point offsets (must be char boundaries)
            cs = len(raw[:s].decode())
            ce = len(raw[:e].decode())
            fs.append({"entity": f["entity"], "start": cs, "end": ce})
        out.append(fs)
    return out


def overlaps(a0, a1, b0, b1) -> bool:
    return a0 < b1 and b0 < a1


class Score:
    def __init__(self):
        self.tp = 0
        self.fn = 0
        self.fp = 0

    @property
    def recall(self):
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else float("nan")

    @property
    def precision(self):
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else float("nan")

    @property
    def f2(self):
        p, r = self.precision, self.recall
        if not (p == p and r == r) or p + r == 0:
            return float("nan")
        return 5 * p * r / (4 * p + r)


def score(docs: list[Doc], findings: list[list[dict]], entities=ENTITIES):
    """Returns (by (entity, lang) Score, by entity Score, misses, false positives)."""
    by_el = defaultdict(Score)
    by_e = defaultdict(Score)
    misses, fps = [], []
    for d, fs in zip(docs, findings):
        for ent, s, e in d.labels:
            hit = any(f["entity"] == ent and overlaps(s, e, f["start"], f["end"]) for f in fs)
            for key, table in (((ent, d.lang), by_el), (ent, by_e)):
                if hit:
                    table[key].tp += 1
                else:
                    table[key].fn += 1
            if not hit:
                misses.append((d, ent, fs))
        for f in fs:
            if f["entity"] not in entities:
                continue
            ok = any(ent == f["entity"] and overlaps(s, e, f["start"], f["end"]) for ent, s, e in d.labels)
            if not ok:
                by_el[(f["entity"], d.lang)].fp += 1
                by_e[f["entity"]].fp += 1
                fps.append((d, f))
    return by_el, by_e, misses, fps


def gate_failures(docs, findings):
    """Human-readable gate failures (empty when every gate passes)."""
    _, by_e, misses, fps = score(docs, findings)
    fails = []
    for ent in ENTITIES:
        sc = by_e[ent]
        gate = SECRET_RECALL_GATE if ent in SECRETS else RECALL_GATE
        if sc.tp + sc.fn == 0:
            fails.append(f"{ent}: no positives in corpus")
        elif sc.recall < gate:
            examples = [repr(d.text[:160]) for d, e, _ in misses if e == ent][:5]
            fails.append(f"{ent}: recall {sc.recall:.3f} < {gate} e.g. {examples}")
    neg_fps = [(d, f) for d, f in fps if d.kind == "neg"]
    for d, f in neg_fps[:20]:
        fails.append(f"false positive on hard negative [{d.group}] {f['entity']}: {d.text[f['start']:f['end']]!r} in {d.text[:160]!r}")
    return fails
