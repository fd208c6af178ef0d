"""Prints tollgate's performance figures as a Markdown table. Every number comes from a run
made by this script on this machine:

- gateway overhead at fixed request rates: the same open-loop load (tollgate-bench load) sent
  straight to the mock provider, through a bare nginx reverse proxy (the floor: what any proxy
  hop costs; only when nginx is installed) and through the proxy (plain-HTTP mode, in-memory
  stores, every check on), in interleaved rounds; overhead = through - direct and
  through - floor, at p50 and p99;
- closed-loop maximum throughput (32 requests in flight) for direct, floor and through;
- streaming: time to first byte and per-event relay latency of a paced SSE stream, added by the
  floor and by tollgate;
- peak RSS of the proxy during those runs (VmHWM);
- process start to first response served;
- the Lambda bootstrap zip size (cargo lambda build --release, arm64 when the toolchain has the
  target, else the host architecture — the table says which);
- store calls per warm request against the AWS emulator, from the proxy's audit lines.
"""

import datetime
import json
import os
import pathlib
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parents[2]
# BENCH_PROFILE=profiling runs the binaries of that cargo profile (symbols kept) instead.
REL = ROOT / "target" / os.environ.get("BENCH_PROFILE", "release")
VENV = ROOT / ".venv" / "bin"
RATES = [int(r) for r in os.environ.get("BENCH_RATES", "200,1000").split(",")]
SECONDS = int(os.environ.get("BENCH_SECONDS", "10"))
# Closed loop: requests kept in flight, and seconds per mode.
CLOSED = int(os.environ.get("BENCH_CLOSED_CONNECTIONS", "32"))
CLOSED_SECONDS = int(os.environ.get("BENCH_CLOSED_SECONDS", "4"))
# Streaming: the mock sends one SSE event every PACE_MS (tokens `mock-pace5…`, as seeded).
PACE_MS = 5
STREAM_RATE = int(os.environ.get("BENCH_STREAM_RATE", "100"))
NGINX = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if os.path.exists(p)), None)
TMP = pathlib.Path(tempfile.mkdtemp(prefix="tollgate-bench-"))
procs = []


def spawn(args, env=None, stdout=None, name="proc"):
    out = open(TMP / f"{name}.out", "w") if stdout is None else stdout
    p = subprocess.Popen(args, env={**os.environ, **(env or {})}, stdout=out,
                         stderr=open(TMP / f"{name}.err", "w"), stdin=subprocess.DEVNULL)
    procs.append(p)
    return p


def listening(name, timeout=20.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        text = (TMP / f"{name}.out").read_text(errors="replace")
        for line in text.splitlines():
            if line.startswith("LISTENING "):
                return line.split()[1]
        time.sleep(0.005)
    raise RuntimeError(f"{name} did not start: {(TMP / f'{name}.err').read_text()}")


def load(url, key, rate, seconds, samples, extra=()):
    r = subprocess.run([str(REL / "tollgate-bench"), "load", "--url", url, "--key", key,
                        "--rate", str(rate), "--seconds", str(seconds), "--warmup", "100",
                        "--samples", str(samples), *extra],
                       capture_output=True, text=True, check=True)
    return json.loads(r.stdout)


def start_floor(mock_url):
    """A bare nginx reverse proxy in front of the mock (loopback, keep-alive upstream, no
    buffering so streams pass event by event), config generated into the temp dir. Returns its
    base URL, or None (with a notice) when nginx is not installed."""
    if NGINX is None:
        print("notice: nginx is not installed (apt-get install nginx-light): the floor rows are skipped",
              file=sys.stderr)
        return None
    port = free_port()
    up = mock_url.split("//", 1)[1]
    pre = TMP / "nginx"
    pre.mkdir()
    conf = pre / "nginx.conf"
    conf.write_text(f"""daemon off;
worker_processes auto;
pid {pre}/nginx.pid;
error_log {pre}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {pre}/body;
    proxy_temp_path {pre}/proxy;
    fastcgi_temp_path {pre}/fastcgi;
    uwsgi_temp_path {pre}/uwsgi;
    scgi_temp_path {pre}/scgi;
    keepalive_requests 1000000;
    tcp_nodelay on;
    upstream mock {{
        server {up};
        keepalive 256;
        keepalive_requests 1000000;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://mock;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
        }}
    }}
}}
""")
    spawn([NGINX, "-p", str(pre), "-e", str(pre / "error.log"), "-c", str(conf)], name="nginx")
    url = f"http://127.0.0.1:{port}"
    for _ in range(500):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.1):
                return url
        except OSError:
            time.sleep(0.01)
    raise RuntimeError(f"nginx did not start: {(pre / 'error.log').read_text(errors='replace')}")


def pct(sorted_ms, p):
    i = round(p / 100 * (len(sorted_ms) - 1))
    return sorted_ms[min(i, len(sorted_ms) - 1)]


def modes(mock_url, floor_url, proxy_url, key, path="/v1/chat/completions"):
    """(name, url, bearer) per mode, in the order each round runs them."""
    m = [("direct", mock_url + path, f"mock-pace{PACE_MS}-direct")]
    if floor_url:
        m.append(("floor", floor_url + path, f"mock-pace{PACE_MS}-direct"))
    m.append(("through", proxy_url + path, key))
    return m


def interleaved(ms, rate, extra=(), events=False):
    """Alternates short runs of every mode so machine noise hits them alike; returns merged
    percentiles per mode (and per-event ones when streaming)."""
    rounds = max(1, SECONDS // 2)
    per = max(1, SECONDS // rounds)
    merged = {m: [] for m, _, _ in ms}
    merged_ev = {m: [] for m, _, _ in ms}
    errors = {m: 0 for m, _, _ in ms}
    achieved = {m: [] for m, _, _ in ms}
    for i in range(rounds):
        for mode, url, k in ms:
            f = TMP / f"{mode}-{rate}-{i}-{len(extra)}.txt"
            fe = TMP / f"{mode}-{rate}-{i}-ev.txt"
            r = load(url, k, rate, per, f, [*extra, *(["--event-samples", str(fe)] if events else [])])
            errors[mode] += r["errors"]
            achieved[mode].append(r["achieved_rps"])
            merged[mode] += [float(x) for x in f.read_text().split()]
            if events:
                merged_ev[mode] += [float(x) for x in fe.read_text().split()]
    out = {}
    for mode, v in merged.items():
        v.sort()
        ev = sorted(merged_ev[mode])
        out[mode] = {"p50_ms": pct(v, 50), "p99_ms": pct(v, 99), "n": len(v), "errors": errors[mode],
                     "achieved_rps": min(achieved[mode]),
                     "ev_p50_ms": pct(ev, 50) if ev else float("nan"),
                     "ev_p99_ms": pct(ev, 99) if ev else float("nan"), "ev_n": len(ev)}
    return out


def closed_loop(ms, rounds=2):
    """Maximum throughput: CLOSED requests in flight for CLOSED_SECONDS per mode and round,
    modes interleaved; the mean over rounds per mode."""
    got = {m: [] for m, _, _ in ms}
    for i in range(rounds):
        for mode, url, k in ms:
            r = load(url, k, 0, CLOSED_SECONDS, TMP / f"closed-{mode}-{i}.txt", ["--closed", str(CLOSED)])
            got[mode].append(r["achieved_rps"])
    return {m: sum(v) / len(v) for m, v in got.items()}


def rss_peak_mb(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def post(url, key, timeout=2.0):
    req = urllib.request.Request(url, data=json.dumps({"model": "gpt-4o-mini", "messages": [
        {"role": "user", "content": "hi"}]}).encode(), method="POST",
        headers={"authorization": f"Bearer {key}", "content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.status


def mock_and_seed():
    """Starts the mock provider and writes the memory seed pointing at it (the bench's key and
    tokens). Returns (mock URL, seed path, the key). For the comparison scripts."""
    spawn([str(REL / "mock-provider"), "--addr", "127.0.0.1:0", "--no-log"], name="mock")
    mock_url = listening("mock")
    seed = TMP / "seed.json"
    key = subprocess.run([str(REL / "tollgate-bench"), "seed", "--upstream", mock_url, "--out", str(seed)],
                         capture_output=True, text=True, check=True).stdout.strip()
    return mock_url, seed, key


def start_variant(binary, seed, key, name):
    """Starts one proxy variant (a binary, or a wrapper script setting env vars) in plain-HTTP
    mode on the memory seed, and waits for its first answered request. Returns (process, URL)."""
    p = spawn([binary, "--http", "127.0.0.1:0"],
              env={"TOLLGATE_STORE": "memory", "TOLLGATE_MEMORY_SEED": str(seed), "RUST_LOG": "warn"}, name=name)
    url = listening(name)
    while True:
        try:
            if post(f"{url}/v1/chat/completions", key) == 200:
                return p, url
        except OSError:
            time.sleep(0.001)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    rows = []
    mock = spawn([str(REL / "mock-provider"), "--addr", "127.0.0.1:0", "--no-log"], name="mock")
    mock_url = listening("mock")
    seed = TMP / "seed.json"
    key = subprocess.run([str(REL / "tollgate-bench"), "seed", "--upstream", mock_url, "--out",
                          str(seed), "--pace-ms", str(PACE_MS)], capture_output=True, text=True, check=True).stdout.strip()

    # Start to first response: spawn, then poll as fast as the socket allows.
    t0 = time.perf_counter()
    proxy = spawn([str(REL / "proxy"), "--http", "127.0.0.1:0"],
                  env={"TOLLGATE_STORE": "memory", "TOLLGATE_MEMORY_SEED": str(seed),
                       "RUST_LOG": "warn"}, name="proxy")
    proxy_url = listening("proxy")
    while True:
        try:
            if post(f"{proxy_url}/v1/chat/completions", key) == 200:
                break
        except OSError:
            time.sleep(0.001)
    start_ms = (time.perf_counter() - t0) * 1000

    floor_url = start_floor(mock_url)
    ms = modes(mock_url, floor_url, proxy_url, key)
    for rate in RATES:
        rows.append((rate, interleaved(ms, rate)))
    closed = closed_loop(ms)
    streamed = interleaved(ms, STREAM_RATE, ["--stream-pace-ms", str(PACE_MS)], events=True)
    peak = rss_peak_mb(proxy.pid)

    # BENCH_QUICK=1 (iterating on the request path): skip the zip build and the emulator run.
    quick = os.environ.get("BENCH_QUICK") == "1"
    zip_size, zip_arch = ("skipped (BENCH_QUICK)", "-") if quick else build_zip()
    init = lambda_init()
    calls, limited_calls = ("skipped (BENCH_QUICK)",) * 2 if quick else warm_calls()

    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    loadavg = open("/proc/loadavg").read().split()[:3]
    f = lambda d, k="": f"{d[k + 'p50_ms']:.3f} / {d[k + 'p99_ms']:.3f}"
    diff = lambda a, b, k="": f"{a[k + 'p50_ms'] - b[k + 'p50_ms']:.3f} / {a[k + 'p99_ms'] - b[k + 'p99_ms']:.3f}"
    print(f"tollgate bench — {when} — {os.cpu_count()} cores, {cpu}, {platform.system()} {platform.machine()}, "
          f"load average before the summary {' '.join(loadavg)}")
    print(f"load: open loop at a fixed rate, {SECONDS} s per mode per rate in alternating "
          f"{max(1, SECONDS // max(1, SECONDS // 2))} s rounds (direct, {'floor, ' if floor_url else ''}through, direct, ...), each "
          "request timed from when it was handed to the client runtime; non-streamed chat completion; "
          "proxy in plain-HTTP mode with in-memory stores and every check on (key verification, "
          "scopes, DLP on request and response, usage write, audit line); mock provider on loopback; "
          + ("floor = bare nginx reverse proxy (keep-alive upstream, no buffering) in front of the same mock\n"
             if floor_url else "floor: nginx not installed, rows skipped\n"))
    if floor_url:
        print("| rate (req/s) | direct p50 / p99 (ms) | floor (nginx) p50 / p99 (ms) | through p50 / p99 (ms) | floor above direct p50 / p99 (ms) | **tollgate above floor p50 / p99 (ms)** | through above direct p50 / p99 (ms) | through achieved req/s (min round) | errors direct / floor / through | samples per mode |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        for rate, r in rows:
            d, fl, t = r["direct"], r["floor"], r["through"]
            print(f"| {rate} | {f(d)} | {f(fl)} | {f(t)} | {diff(fl, d)} | **{diff(t, fl)}** | {diff(t, d)} | "
                  f"{t['achieved_rps']} | {d['errors']} / {fl['errors']} / {t['errors']} | {t['n']} |")
    else:
        print("| rate (req/s) | direct p50 / p99 (ms) | through p50 / p99 (ms) | overhead p50 / p99 (ms) | through achieved req/s (min round) | errors direct / through | samples |")
        print("|---|---|---|---|---|---|---|")
        for rate, r in rows:
            d, t = r["direct"], r["through"]
            print(f"| {rate} | {f(d)} | {f(t)} | {diff(t, d)} | {t['achieved_rps']} | {d['errors']} / {t['errors']} | {d['n']} / {t['n']} |")
    print()
    names = [m for m, _, _ in ms]
    print(f"closed loop ({CLOSED} requests in flight, {CLOSED_SECONDS} s per mode, 2 interleaved rounds, mean; "
          "the load generator shares the cores):\n")
    print("| | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    print("| requests/s | " + " | ".join(f"{closed[m]:.0f}" for m in names) + " |")
    print()
    print(f"streaming ({STREAM_RATE} streams/s open loop, {SECONDS} s per mode, chat completion streamed by a mock "
          f"sending one SSE event every {PACE_MS} ms; TTFB = send to first body byte; per-event = arrival of event i "
          f"minus send minus i × {PACE_MS} ms, every event after the first):\n")
    print("| mode | TTFB p50 / p99 (ms) | per-event p50 / p99 (ms) | errors | streams / events |")
    print("|---|---|---|---|---|")
    for m in names:
        x = streamed[m]
        print(f"| {m} | {f(x)} | {f(x, 'ev_')} | {x['errors']} | {x['n']} / {x['ev_n']} |")
    base = "floor" if floor_url else "direct"
    t, b = streamed["through"], streamed[base]
    print(f"| **tollgate above {base}** | **{diff(t, b)}** | **{diff(t, b, 'ev_')}** | | |")
    print()
    print("| figure | value | target |")
    print("|---|---|---|")
    print(f"| proxy peak RSS during the load runs | {peak:.1f} MB | ≤ 32 MB |")
    print(f"| Lambda bootstrap zip ({zip_arch}) | {zip_size} | ≤ 8 MB |")
    print(f"| process start to first response served (plain HTTP, memory stores) | {start_ms:.1f} ms | |")
    print(f"| Lambda init: process start to first poll for an event (AWS stores, SDK clients built; median / min of 7) | "
          + (f"{init[0]:.1f} / {init[1]:.1f} ms" if init else "did not poll") + " | < 50 ms |")
    print(f"| store (AWS) calls per warm request, emulator | {calls} | 0 reads, ≤ 2 writes |")
    print(f"| same, key with limits (rpm + daily budget, strict mode) | {limited_calls} | 0 reads, 2 writes (admit; settle carrying the usage write) |")
    for row in limit_stage_latency(seed, key):
        print(row)


def lambda_init(runs=7):
    """Lambda cold start measured locally: the proxy binary started as Lambda starts it (the
    Runtime API variables set, AWS store adapters, dummy credentials) until its first call for
    an event (`GET .../runtime/invocation/next`) reaches a stub Runtime API — configuration
    read, sensitive-data patterns compiled, AWS SDK config and clients built, runtime loop up.
    No network call to AWS happens before the first event. Returns (median, min) in ms."""
    import http.server
    import threading

    class Stub(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if "/runtime/invocation/next" in self.path and self.server.first is None:
                self.server.first = time.perf_counter()
            self.close_connection = True

        def log_message(self, *a):
            pass

    got = []
    for i in range(runs):
        srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Stub)
        srv.first = None
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        env = {"AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{srv.server_address[1]}",
               "AWS_LAMBDA_FUNCTION_NAME": "tollgate-proxy", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "1024",
               "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST", "AWS_REGION": "us-east-1",
               "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
               "TOLLGATE_TENANTS_TABLE": "t", "TOLLGATE_KEYS_TABLE": "k", "TOLLGATE_POOL_TABLE": "p",
               "TOLLGATE_LIMITS_TABLE": "l", "TOLLGATE_PEPPER_SECRET_ID": "tollgate/pepper",
               "TOLLGATE_KMS_KEY_ID": "alias/tollgate", "RUST_LOG": "warn"}
        t0 = time.perf_counter()
        p = spawn([str(REL / "proxy")], env=env, name=f"lambda-init-{i}")
        while srv.first is None and p.poll() is None and time.perf_counter() - t0 < 10:
            time.sleep(0.0005)
        if srv.first is not None:
            got.append((srv.first - t0) * 1000)
        p.terminate()
        p.wait(timeout=5)
        srv.shutdown()
    if not got:
        return None
    got.sort()
    return got[len(got) // 2], got[0]


def build_zip():
    env = {**os.environ, "PATH": f"{VENV}:{os.environ['PATH']}"}
    targets = subprocess.run(["rustup", "target", "list", "--installed"], capture_output=True, text=True).stdout
    attempts = []
    if "aarch64-unknown-linux-gnu" in targets:
        attempts.append(("arm64", ["--arm64"]))
    attempts.append((platform.machine() + " (host; no arm64 target installed)" if not attempts else platform.machine(), []))
    for arch, flags in attempts:
        r = subprocess.run([str(VENV / "cargo-lambda"), "lambda", "build", "--release", "-p", "tollgate-proxy",
                            "--bin", "proxy", "--output-format", "zip", *flags],
                           cwd=ROOT, env=env, capture_output=True, text=True)
        z = ROOT / "target" / "lambda" / "proxy" / "bootstrap.zip"
        if r.returncode == 0 and z.exists():
            return f"{z.stat().st_size / 1e6:.2f} MB", arch
        print(f"note: cargo lambda build {' '.join(flags)} failed: {r.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
    return "not built", "none"


def warm_calls(n=50):
    """Runs the proxy against the emulator and averages store calls per request from the audit
    lines of warm requests (after the first, which fills the caches)."""
    moto_port = free_port()
    env = {"AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_ENDPOINT_URL": f"http://127.0.0.1:{moto_port}"}
    spawn([str(VENV / "python"), str(ROOT / "infra/local/emulator.py"), "-H", "127.0.0.1", "-p", str(moto_port)],
          name="moto")
    for _ in range(200):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{moto_port}/moto-api/", timeout=1)
            break
        except Exception:
            time.sleep(0.1)
    res = subprocess.run([str(VENV / "python"), str(ROOT / "infra/local/resources.py")],
                         env={**os.environ, **env}, capture_output=True, text=True, check=True).stdout
    for line in res.splitlines():
        if "=" in line:
            k, v = line.split("=", 1)
            env[k] = v
    full = {**os.environ, **env}
    cli = str(REL / "tollgate")
    subprocess.run([cli, "tenant", "create", "bench", "--name", "bench", "--owner", "bench@localhost"], env=full, check=True, capture_output=True)
    key = json.loads(subprocess.run([cli, "--json", "key", "issue", "--tenant", "bench", "--owner", "bench@localhost", "--env", "test"],
                                    env=full, check=True, capture_output=True, text=True).stdout)["key"]
    mock_url = listening("mock")
    subprocess.run([cli, "token", "add", "--pool", "openai", "--new-pool", "--provider", "openai", "--base-url", f"{mock_url}/v1",
                    "--id", "bench", "--owner", "bench@localhost"], input="mock-ok-bench\n", env=full, check=True,
                   capture_output=True, text=True)
    limited = json.loads(subprocess.run([cli, "--json", "key", "issue", "--tenant", "bench", "--owner", "bench@localhost", "--env", "test"],
                                        env=full, check=True, capture_output=True, text=True).stdout)
    subprocess.run([cli, "limits", "set", "--tenant", "bench", "--key", limited["key_id"], "--rpm", "100000",
                    "--budget-day", "1000usd"], env=full, check=True, capture_output=True)
    out = open(TMP / "proxy-aws.out", "w")
    spawn([str(REL / "proxy"), "--http", "127.0.0.1:0"], env={**env, "RUST_LOG": "warn"}, stdout=out, name="proxy-aws")
    url = listening("proxy-aws")

    def measure(k):
        # The first request fills the caches; let its audit line land before the warm ones
        # (the proxy settles after the client has the body, so lines can otherwise swap).
        seen = len(audit_lines())
        post(f"{url}/v1/chat/completions", k, timeout=10)
        time.sleep(0.2)
        for _ in range(n):
            post(f"{url}/v1/chat/completions", k, timeout=10)
        time.sleep(0.2)
        audits = audit_lines()[seen:]
        warm = audits[1:]
        reads = sum(a["store_reads"] for a in warm) / len(warm)
        writes = sum(a["store_writes"] for a in warm) / len(warm)
        return f"{reads:.2f} reads, {writes:.2f} writes (mean of {len(warm)}; cold first request: {audits[0]['store_reads']} reads, {audits[0]['store_writes']} writes)"

    def audit_lines():
        return [json.loads(l) for l in (TMP / "proxy-aws.out").read_text().splitlines() if '"tollgate_audit"' in l]

    LIMIT_BENCH["emulator"] = (url, key, limited["key"])
    return measure(key), measure(limited["key"])


# The emulator proxy and its two keys (no limits / rpm + daily budget), left by warm_calls for
# limit_stage_latency.
LIMIT_BENCH = {}


def limit_stage_latency(seed, key):
    """Added latency of the limit stage (strict mode): the same load through a proxy whose key
    has no limits and through one whose key has an RPM limit and a daily budget, alternating
    rounds, with in-memory stores and against the emulator. Returns table rows."""
    data = json.loads(seed.read_text())
    data["keys"][0]["limits"] = {"rpm": 1_000_000_000, "budget_day_micros": 1_000_000_000_000}
    limited_seed = TMP / "seed-limited.json"
    limited_seed.write_text(json.dumps(data))
    memory = {}
    for name, path in (("unlimited", seed), ("limited", limited_seed)):
        spawn([str(REL / "proxy"), "--http", "127.0.0.1:0"],
              env={"TOLLGATE_STORE": "memory", "TOLLGATE_MEMORY_SEED": str(path), "RUST_LOG": "warn"},
              name=f"proxy-{name}")
        memory[name] = listening(f"proxy-{name}")
    rows = []

    def compare(label, urls, keys, rate, seconds, rounds):
        merged = {"unlimited": [], "limited": []}
        errors = {"unlimited": 0, "limited": 0}
        for i in range(rounds):
            for mode in ("unlimited", "limited"):
                f = TMP / f"limit-{label}-{mode}-{i}.txt"
                r = load(f"{urls[mode]}/v1/chat/completions", keys[mode], rate, seconds, f)
                errors[mode] += r["errors"]
                merged[mode] += [float(x) for x in f.read_text().split()]
        for v in merged.values():
            v.sort()
        u, l = merged["unlimited"], merged["limited"]
        rows.append(f"| limit stage added latency, {label}, {rate} req/s | "
                    f"p50 {pct(l, 50) - pct(u, 50):.3f} ms, p99 {pct(l, 99) - pct(u, 99):.3f} ms "
                    f"(limited {pct(l, 50):.3f} / {pct(l, 99):.3f}, unlimited {pct(u, 50):.3f} / {pct(u, 99):.3f}; "
                    f"errors {errors['limited']} / {errors['unlimited']}; samples {len(l)} / {len(u)}) | |")

    # The same key in both seeds: with limits in one, without in the other.
    keys = {"unlimited": key, "limited": key}
    compare("in-memory stores", memory, keys, 200, max(1, SECONDS // 2), 2)
    if "emulator" in LIMIT_BENCH:
        url, plain, limited = LIMIT_BENCH["emulator"]
        compare("AWS emulator", {"unlimited": url, "limited": url}, {"unlimited": plain, "limited": limited},
                20, max(2, SECONDS // 2), 2)
    return rows

if __name__ == "__main__":
    try:
        main()
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(TMP, ignore_errors=True)
