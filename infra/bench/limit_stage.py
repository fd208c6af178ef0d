"""Only the limit-stage rows of `make bench` (run.py), for a quick look without the load runs
and the Lambda zip: store calls per warm request with and without limits against the AWS
emulator, and the limit stage's added latency with in-memory stores and against the emulator.
Needs the release binaries (`cargo build --release -p tollgate-proxy -p tollgate-cli
-p tollgate-bench -p tollgate-mock-provider`) and `make venv`.

    .venv/bin/python infra/bench/limit_stage.py
"""

import shutil
import subprocess

import run


def main():
    run.spawn([str(run.REL / "mock-provider"), "--addr", "127.0.0.1:0", "--no-log"], name="mock")
    mock_url = run.listening("mock")
    seed = run.TMP / "seed.json"
    key = subprocess.run([str(run.REL / "tollgate-bench"), "seed", "--upstream", mock_url, "--out",
                          str(seed)], capture_output=True, text=True, check=True).stdout.strip()
    calls, limited_calls = run.warm_calls()
    print("| figure | value | target |")
    print("|---|---|---|")
    print(f"| store (AWS) calls per warm request, emulator | {calls} | 0 reads, ≤ 2 writes |")
    print(f"| same, key with limits (rpm + daily budget, strict mode) | {limited_calls} | 0 reads, 2 writes (admit; settle carrying the usage write) |")
    for row in run.limit_stage_latency(seed, key):
        print(row)


if __name__ == "__main__":
    try:
        main()
    finally:
        for p in run.procs:
            p.terminate()
        for p in run.procs:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(run.TMP, ignore_errors=True)
