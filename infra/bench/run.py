"""Prints tollgate's performance figures as a Markdown table. Every number comes from a run
made by this script on this machine:

- gateway overhead at fixed request rates: the same open-loop load (tollgate-bench load) sent
  straight to the mock provider and through the proxy (plain-HTTP mode, in-memory stores, every
  check on); overhead = through - direct, at p50 and p99;
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
REL = ROOT / "target" / "release"
VENV = ROOT / ".venv" / "bin"
RATES = [int(r) for r in os.environ.get("BENCH_RATES", "200,1000").split(",")]
SECONDS = int(os.environ.get("BENCH_SECONDS", "10"))
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


def load(url, key, rate, seconds, samples):
    r = subprocess.run([str(REL / "tollgate-bench"), "load", "--url", url, "--key", key,
                        "--rate", str(rate), "--seconds", str(seconds), "--warmup", "100",
                        "--samples", str(samples)],
                       capture_output=True, text=True, check=True)
    return json.loads(r.stdout)


def pct(sorted_ms, p):
    i = round(p / 100 * (len(sorted_ms) - 1))
    return sorted_ms[min(i, len(sorted_ms) - 1)]


def interleaved(direct_url, through_url, key, rate):
    """Alternates short direct and through runs so machine noise hits both alike; returns
    merged percentiles per mode."""
    rounds = max(1, SECONDS // 2)
    per = max(1, SECONDS // rounds)
    merged = {"direct": [], "through": []}
    errors = {"direct": 0, "through": 0}
    achieved = []
    for i in range(rounds):
        for mode, url, k in (("direct", direct_url, "mock-ok-direct"), ("through", through_url, key)):
            f = TMP / f"{mode}-{rate}-{i}.txt"
            r = load(url, k, rate, per, f)
            errors[mode] += r["errors"]
            if mode == "through":
                achieved.append(r["achieved_rps"])
            merged[mode] += [float(x) for x in f.read_text().split()]
    out = {}
    for mode, v in merged.items():
        v.sort()
        out[mode] = {"p50_ms": pct(v, 50), "p99_ms": pct(v, 99), "n": len(v), "errors": errors[mode]}
    out["through"]["achieved_rps"] = min(achieved)
    return out


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
                          str(seed)], capture_output=True, text=True, check=True).stdout.strip()

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

    for rate in RATES:
        r = interleaved(f"{mock_url}/v1/chat/completions", f"{proxy_url}/v1/chat/completions", key, rate)
        rows.append((rate, r["direct"], r["through"]))
    peak = rss_peak_mb(proxy.pid)

    zip_size, zip_arch = build_zip()
    calls, limited_calls = warm_calls()

    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    print(f"tollgate bench — {when} — {os.cpu_count()} cores, {cpu}, {platform.system()} {platform.machine()}")
    print(f"load: open loop at a fixed rate, {SECONDS} s per mode per rate in alternating "
          f"{max(1, SECONDS // max(1, SECONDS // 2))} s rounds (direct, through, direct, ...), each "
          "request timed from when it was handed to the client runtime; non-streamed chat completion; "
          "proxy in plain-HTTP mode with in-memory stores and every check on (key verification, "
          "scopes, DLP on request and response, usage write, audit line); mock provider on loopback\n")
    print("| rate (req/s) | direct p50 / p99 (ms) | through p50 / p99 (ms) | overhead p50 / p99 (ms) | through achieved req/s (min round) | errors direct / through | samples |")
    print("|---|---|---|---|---|---|---|")
    for rate, d, t in rows:
        print(f"| {rate} | {d['p50_ms']:.3f} / {d['p99_ms']:.3f} | {t['p50_ms']:.3f} / {t['p99_ms']:.3f} | "
              f"{t['p50_ms'] - d['p50_ms']:.3f} / {t['p99_ms'] - d['p99_ms']:.3f} | {t['achieved_rps']} | "
              f"{d['errors']} / {t['errors']} | {d['n']} / {t['n']} |")
    print()
    print("| figure | value | target |")
    print("|---|---|---|")
    print(f"| proxy peak RSS during the load runs | {peak:.1f} MB | ≤ 64 MB |")
    print(f"| Lambda bootstrap zip ({zip_arch}) | {zip_size} | ≤ 8 MB |")
    print(f"| process start to first response served | {start_ms:.1f} ms | |")
    print(f"| store (AWS) calls per warm request, emulator | {calls} | 0 reads, ≤ 2 writes |")
    print(f"| same, key with limits (rpm + daily budget, strict mode) | {limited_calls} | 0 reads, admit + settle writes |")
    for row in limit_stage_latency(seed, key):
        print(row)


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
    spawn([str(VENV / "moto_server"), "-H", "127.0.0.1", "-p", str(moto_port)], name="moto")
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
