"""Per request, for each proxy variant: context switches (the thread slept and was woken), CPU
time (perf task-clock), futex, epoll_wait and write syscalls, at a fixed rate (0 = closed loop,
32 in flight). Needs `perf` (linux-tools) with permission to trace the process; a diagnostic,
not part of `make bench`. A variant is a proxy binary or a wrapper script setting env vars.

    .venv/bin/python infra/bench/wakeups.py RATE SECONDS BIN [BIN...]
"""
import os, sys, subprocess, time, re
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run
rate, secs = int(sys.argv[1]), int(sys.argv[2]); bins = sys.argv[3:]
mock_url, seed, key = run.mock_and_seed()
for i, b in enumerate(bins):
    name = f"w{i}"
    p, url = run.start_variant(b, seed, key, name)
    run.load(url + "/v1/chat/completions", key, rate or 1000, 2, run.TMP / "warm.txt")
    perf = subprocess.Popen(["perf", "stat", "-x,", "-e", "task-clock,context-switches,syscalls:sys_enter_futex,syscalls:sys_enter_epoll_wait,syscalls:sys_enter_write,syscalls:sys_enter_sendto,syscalls:sys_enter_recvfrom,syscalls:sys_enter_writev", "-p", str(p.pid)],
                            stderr=subprocess.PIPE, text=True)
    time.sleep(0.2)
    extra = ["--closed", "32"] if rate == 0 else []
    r = run.load(url + "/v1/chat/completions", key, rate, secs, run.TMP / f"{name}.txt", extra)
    nreq = rate * secs if rate else r["achieved_rps"] * secs
    time.sleep(0.2)
    perf.send_signal(2); err = perf.communicate()[1]
    n = r.get("ok", None) or rate * secs
    vals = {}
    for line in err.splitlines():
        f = line.split(",")
        if len(f) > 3 and f[0].replace(".", "").isdigit():
            vals[f[2]] = float(f[0])
    per = {k.replace("syscalls:sys_enter_", ""): v / nreq for k, v in vals.items()}
    per["task-clock"] *= 1000
    print(os.path.basename(b), " ".join(f"{k}={v:.2f}" for k, v in per.items()), f"(task-clock in us CPU per request; {r['achieved_rps']:.0f} req/s; errors {r['errors']})")
    p.terminate()
for p in run.procs: p.terminate()
