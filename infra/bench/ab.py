"""Compares two proxy binaries in one run: the same mock provider, the same memory seed, the
same fixed-rate load, in alternating rounds (direct, A, direct, B, ...), so machine noise hits
both alike. For the "make bench before and after" check of a change to the request path:

    cp target/release/proxy /tmp/proxy-before     # on the old commit, after make bench
    ...change, make bench...
    .venv/bin/python infra/bench/ab.py /tmp/proxy-before target/release/proxy

Prints overhead p50 / p99 (through minus direct) per rate and binary, start to first
response and peak RSS. Uses the mock provider and tollgate-bench from target/release.
"""

import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import run  # noqa: E402  (the bench's own helpers: spawn, listening, load, pct, rss_peak_mb)


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: ab.py PROXY_A PROXY_B")
    a_bin, b_bin = sys.argv[1], sys.argv[2]
    mock_url, seed, key = run.mock_and_seed()
    procs = {}
    starts = {}
    for label, binary in (("A", a_bin), ("B", b_bin)):
        t0 = time.perf_counter()
        p, url = run.start_variant(binary, seed, key, f"proxy-{label}")
        starts[label] = (time.perf_counter() - t0) * 1000
        procs[label] = (p, url)
    rounds = max(1, run.SECONDS // 2)
    per = max(1, run.SECONDS // rounds)
    print(f"A = {a_bin}\nB = {b_bin}\n{run.SECONDS} s per mode per rate in {rounds} alternating rounds")
    print("| rate | A overhead p50 / p99 (ms) | B overhead p50 / p99 (ms) | errors A / B |")
    print("|---|---|---|---|")
    for rate in run.RATES:
        samples = {"direct": [], "A": [], "B": []}
        errors = {"direct": 0, "A": 0, "B": 0}
        for i in range(rounds):
            for mode, url, k in (("direct", f"{mock_url}/v1/chat/completions", "mock-ok-direct"),
                                 ("A", f"{procs['A'][1]}/v1/chat/completions", key),
                                 ("direct", f"{mock_url}/v1/chat/completions", "mock-ok-direct"),
                                 ("B", f"{procs['B'][1]}/v1/chat/completions", key)):
                f = run.TMP / f"ab-{mode}-{rate}-{i}-{len(samples[mode])}.txt"
                r = run.load(url, k, rate, per, f)
                errors[mode] += r["errors"]
                samples[mode] += [float(x) for x in f.read_text().split()]
        for v in samples.values():
            v.sort()
        d50, d99 = run.pct(samples["direct"], 50), run.pct(samples["direct"], 99)
        cell = lambda m: f"{run.pct(samples[m], 50) - d50:.3f} / {run.pct(samples[m], 99) - d99:.3f}"
        print(f"| {rate} | {cell('A')} | {cell('B')} | {errors['A']} / {errors['B']} |")
    for label in ("A", "B"):
        print(f"{label}: start to first response {starts[label]:.1f} ms, peak RSS {run.rss_peak_mb(procs[label][0].pid):.1f} MB")


if __name__ == "__main__":
    try:
        main()
    finally:
        for p in run.procs:
            p.terminate()
        for p in run.procs:
            try:
                p.wait(timeout=5)
            except Exception:
                p.kill()
