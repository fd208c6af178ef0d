"""Compares proxy variants (binaries, or wrapper scripts setting env vars) in one run, against
the direct path and the nginx floor: open loop at BENCH_RATES, modes interleaved as in
`make bench`, then the closed loop (CL_ROUNDS rounds), then each variant's peak RSS.

    BENCH_RATES=1000 BENCH_SECONDS=10 .venv/bin/python infra/bench/variants.py BIN [BIN...]
"""
import os, sys, pathlib, subprocess, time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run
bins = sys.argv[1:]
mock = run.spawn([str(run.REL / "mock-provider"), "--addr", "127.0.0.1:0", "--no-log"], name="mock")
mock_url = run.listening("mock")
seed = run.TMP / "seed.json"
key = subprocess.run([str(run.REL / "tollgate-bench"), "seed", "--upstream", mock_url, "--out", str(seed)],
                     capture_output=True, text=True, check=True).stdout.strip()
floor = run.start_floor(mock_url)
ms = [("direct", mock_url + "/v1/chat/completions", "mock-pace5-direct")]
if floor:
    ms.append(("floor", floor + "/v1/chat/completions", "mock-pace5-direct"))
pids = {}
for i, b in enumerate(bins):
    name = f"p{i}"
    p = run.spawn([b, "--http", "127.0.0.1:0"], env={"TOLLGATE_STORE": "memory", "TOLLGATE_MEMORY_SEED": str(seed), "RUST_LOG": "warn"}, name=name)
    url = run.listening(name)
    while True:
        try:
            if run.post(f"{url}/v1/chat/completions", key) == 200: break
        except OSError: time.sleep(0.01)
    ms.append((name, url + "/v1/chat/completions", key))
    pids[name] = p.pid
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
