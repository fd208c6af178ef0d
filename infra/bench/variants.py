"""Compares proxy variants (binaries, or wrapper scripts setting env vars) in one run, against
the direct path and the nginx floor: open loop at BENCH_RATES, modes interleaved as in
`make bench`, then the closed loop (CL_ROUNDS rounds), then each variant's peak RSS.

    BENCH_RATES=1000 BENCH_SECONDS=10 .venv/bin/python infra/bench/variants.py BIN [BIN...]

BENCH_STREAM=1 runs only `make bench`'s streaming rows instead (BENCH_STREAM_RATE streams/s
open loop, the mock pacing one SSE event every 5 ms): time to first byte and per-event relay
latency per mode, and each variant above the floor (or direct without nginx).
"""
import os, sys, pathlib, subprocess, time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run
bins = sys.argv[1:]
mock_url, seed, key = run.mock_and_seed()
floor = run.start_floor(mock_url)
ms = [("direct", mock_url + "/v1/chat/completions", "mock-pace5-direct")]
if floor:
    ms.append(("floor", floor + "/v1/chat/completions", "mock-pace5-direct"))
pids = {}
for i, b in enumerate(bins):
    name = f"p{i}"
    p, url = run.start_variant(b, seed, key, name)
    ms.append((name, url + "/v1/chat/completions", key))
    pids[name] = p.pid
if os.environ.get("BENCH_STREAM") == "1":
    out = run.interleaved(ms, run.STREAM_RATE, ["--stream-pace-ms", str(run.PACE_MS)], events=True)
    base = out["floor" if floor else "direct"]
    print(f"streaming, {run.STREAM_RATE} streams/s, {run.SECONDS} s per mode; above {'floor' if floor else 'direct'}: TTFB p50/p99, per-event p50/p99 (ms)")
    for m, v in out.items():
        print(f"  {m:7s} TTFB {v['p50_ms']:.3f}/{v['p99_ms']:.3f} event {v['ev_p50_ms']:.3f}/{v['ev_p99_ms']:.3f}"
              f"  above {v['p50_ms']-base['p50_ms']:.3f}/{v['p99_ms']-base['p99_ms']:.3f}"
              f" {v['ev_p50_ms']-base['ev_p50_ms']:.3f}/{v['ev_p99_ms']-base['ev_p99_ms']:.3f}"
              f"  err {v['errors']} n {v['n']}/{v['ev_n']}")
    for n, pid in pids.items():
        print(n, "rss", run.rss_peak_mb(pid))
    for p in run.procs: p.terminate()
    sys.exit(0)
for rate in run.RATES:
    out = run.interleaved(ms, rate)
    d = out["direct"]
    print(f"rate {rate}")
    for m, v in out.items():
        print(f"  {m:7s} p50 {v['p50_ms']:.3f} p99 {v['p99_ms']:.3f}  above direct {v['p50_ms']-d['p50_ms']:.3f}/{v['p99_ms']-d['p99_ms']:.3f}  err {v['errors']}")
cl = run.closed_loop(ms, rounds=int(os.environ.get("CL_ROUNDS", "2")))
for m, v in cl.items():
    print(f"closed {m:7s} {v:,.0f}")
for n, pid in pids.items():
    print(n, "rss", run.rss_peak_mb(pid))
for p in run.procs: p.terminate()
