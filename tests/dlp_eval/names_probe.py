"""Why personal names are not detected: the two dictionary-free rules tried, measured.

    .venv/bin/python tests/dlp_eval/names_probe.py

Prints recall on Faker names and false positives on the corpus hard negatives plus 300
Faker paragraphs per language, and whether everyday business words trip the Japanese
honorific rule. Neither rule is in the scanner (README "Limits and next steps").
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from faker import Faker  # noqa: E402

from corpus import corpus  # noqa: E402

JP_HONORIFIC = re.compile(r"[\u4e00-\u9fff]{1,4}[ \u3000]?[\u4e00-\u9fff]{1,3}(?:様|さん|氏|殿)")
EN_TITLE = re.compile(r"\b(?:Mr|Mrs|Ms|Dr)\.? [A-Z][a-z]+(?: [A-Z][a-z]+)?")
BUSINESS_WORDS = ["皆様", "お客様", "担当者様", "関係者各位様", "社長様", "田中さん"]


def main():
    neg = [d for d in corpus() if d.kind == "neg"]
    fj, fe = Faker("ja_JP"), Faker("en_US")
    fj.seed_instance(1)
    fe.seed_instance(1)
    prose_ja = [fj.text(400) for _ in range(300)]
    prose_en = [fe.paragraph(nb_sentences=8) for _ in range(300)]
    names_ja = [f"{fj.name()}様" for _ in range(200)]
    names_en = [f"Dear {fe.prefix()} {fe.last_name()}," for _ in range(200)]
    for label, rx, names, prose in (("ja honorific", JP_HONORIFIC, names_ja, prose_ja), ("en title", EN_TITLE, names_en, prose_en)):
        recall = sum(bool(rx.search(n)) for n in names) / len(names)
        fp = sum(len(rx.findall(d.text)) for d in neg) + sum(len(rx.findall(t)) for t in prose)
        print(f"{label}: recall {recall:.3f} on Faker names, {fp} false positives on hard negatives + prose")
    for w in BUSINESS_WORDS:
        print(f"  {w}: {'match' if JP_HONORIFIC.search(w) else 'no match'}")


if __name__ == "__main__":
    main()
