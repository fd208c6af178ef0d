"""Precision / recall / F2 per entity and language, tollgate vs Presidio.

    /work/main/.venv/bin/python tests/dlp_eval/report.py [--scanner CMD] [--no-presidio]

Presidio runs offline: presidio-analyzer's predefined (regex + checksum)
recognizers on a blank spaCy English pipeline, so no model is downloaded and its
NER recognizer contributes nothing. Presidio has no recognizers for the secret
entities or the Japanese numbers; those cells show "-".
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from corpus import ENTITIES, corpus  # noqa: E402
from evaluate import gate_failures, run_scanner, scanner_cmd, score  # noqa: E402

PRESIDIO_MAP = {
    "CREDIT_CARD": "CREDIT_CARD",
    "IBAN_CODE": "IBAN",
    "US_SSN": "US_SSN",
    "EMAIL_ADDRESS": "EMAIL",
    "PHONE_NUMBER": "PHONE",
    "IP_ADDRESS": "IP_ADDRESS",
}


def presidio_findings(docs):
    os.environ.setdefault("TLDEXTRACT_CACHE", "/tmp/tldextract-cache")
    logging.getLogger("presidio-analyzer").setLevel(logging.ERROR)
    import spacy
    import tldextract
    from presidio_analyzer import AnalyzerEngine
    from presidio_analyzer.nlp_engine import SpacyNlpEngine

    # offline: use the bundled public-suffix snapshot, never fetch it
    tldextract.tldextract.TLD_EXTRACTOR = tldextract.TLDExtract(suffix_list_urls=())

    class BlankSpacy(SpacyNlpEngine):
        def __init__(self):
            super().__init__(models=[{"lang_code": "en", "model_name": "blank"}])

        def load(self):
            self.nlp = {"en": spacy.blank("en")}

    engine = BlankSpacy()
    engine.load()
    analyzer = AnalyzerEngine(nlp_engine=engine, supported_languages=["en"])
    out = []
    for d in docs:
        res = analyzer.analyze(d.text, language="en", entities=list(PRESIDIO_MAP))
        out.append([
            {"entity": PRESIDIO_MAP[r.entity_type], "start": r.start, "end": r.end}
            for r in res
            if r.entity_type in PRESIDIO_MAP
        ])
    return out


def fmt(x):
    return "   -  " if x != x or math.isnan(x) else f"{x:6.3f}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--scanner", help="scanner command (default: DLP_SCANNER_CMD or cargo example)")
    ap.add_argument("--no-presidio", action="store_true")
    args = ap.parse_args()

    docs = corpus()
    t0 = time.perf_counter()
    ours = run_scanner(docs, args.scanner)
    t_ours = time.perf_counter() - t0
    by_el, by_e, _, fps = score(docs, ours)
    pres = None
    if not args.no_presidio:
        t0 = time.perf_counter()
        pf = presidio_findings(docs)
        t_pres = time.perf_counter() - t0
        pres = score(docs, pf, entities=list(PRESIDIO_MAP.values()))

    n_pos = sum(1 for d in docs if d.kind == "pos")
    n_neg = len(docs) - n_pos
    print(f"corpus: {len(docs)} documents ({n_pos} positive, {n_neg} hard negative), scanner: {scanner_cmd(args.scanner)}")
    print()
    hdr = f"| {'entity':<20} | lang | {'n':>4} | {'P':>6} | {'R':>6} | {'F2':>6} |"
    if pres:
        hdr += f" {'Presidio P':>10} | {'Presidio R':>10} | {'Presidio F2':>11} |"
    print(hdr)
    print("|" + "|".join("-" * (len(c)) for c in hdr.split("|")[1:-1]) + "|")
    for ent in ENTITIES:
        for lang in ("en", "ja", "all"):
            sc = by_e[ent] if lang == "all" else by_el[(ent, lang)]
            n = sc.tp + sc.fn
            row = f"| {ent:<20} | {lang:<4} | {n:>4} | {fmt(sc.precision)} | {fmt(sc.recall)} | {fmt(sc.f2)} |"
            if pres:
                if ent in PRESIDIO_MAP.values():
                    ps = pres[1][ent] if lang == "all" else pres[0][(ent, lang)]
                    row += f" {fmt(ps.precision):>10} | {fmt(ps.recall):>10} | {fmt(ps.f2):>11} |"
                else:
                    row += f" {'-':>10} | {'-':>10} | {'-':>11} |"
            print(row)
    neg_fp = defaultdict(int)
    for d, f in fps:
        if d.kind == "neg":
            neg_fp[d.group] += 1
    print()
    print(f"false positives on hard negatives (tollgate): {sum(neg_fp.values())} {dict(neg_fp) or ''}")
    if pres:
        pneg = defaultdict(int)
        for d, f in pres[3]:
            if d.kind == "neg":
                pneg[f['entity']] += 1
        print(f"false positives on hard negatives (Presidio, its 6 comparable entities): {sum(pneg.values())} {dict(pneg) or ''}")
    print(f"wall time over the corpus: tollgate {t_ours:.2f}s (incl. process start)" + (f", Presidio {t_pres:.2f}s" if pres else ""))
    fails = gate_failures(docs, ours)
    print()
    print("gates: PASS" if not fails else "gates: FAIL\n  " + "\n  ".join(fails))
    return 0 if not fails else 1


if __name__ == "__main__":
    sys.exit(main())
