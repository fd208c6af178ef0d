"""End-to-end harness: brings the stack up exactly as `make dev` does (infra/local/dev.sh:
moto, resources, mock provider, the proxy under `cargo lambda watch`) on free ports, in a
temporary state directory, and tears it down after the session. Tests drive it with the
official OpenAI and Anthropic SDKs and the operator CLI, as a user would."""

import json
import os
import pathlib
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "support"))  # lambda_runtime_api


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Stack:
    def __init__(self, state: pathlib.Path, env: dict):
        self.state = state
        self.env = env
        self.url = env["TOLLGATE_URL"]
        self.key = env["TOLLGATE_KEY"]
        self.cli_path = env["TOLLGATE_CLI"]
        self.mock = env["TOLLGATE_MOCK_URL"]

    def cli(self, *args, input=None, check=True, extra_env=None):
        env = {**os.environ, **self.env, **(extra_env or {})}
        r = subprocess.run(
            [self.cli_path, *args], input=input, capture_output=True, text=True, env=env, timeout=60
        )
        if check and r.returncode != 0:
            raise AssertionError(f"tollgate {' '.join(args)} failed ({r.returncode}): {r.stderr}")
        return r

    def cli_json(self, *args, **kw):
        return json.loads(self.cli("--json", *args, **kw).stdout)

    def issue_key(self, *extra) -> str:
        return self.cli_json(
            "key", "issue", "--tenant", "demo", "--owner", "e2e@localhost", "--env", "test", *extra
        )["key"]

    def add_token(self, pool: str, provider: str, value: str, token_id: str, *extra):
        self.cli(
            "token", "add", "--pool", pool, "--new-pool", "--provider", provider, "--base-url",
            f"{self.mock}/v1", "--id", token_id, "--owner", "e2e@localhost", *extra,
            input=value + "\n",
        )

    def pool(self, name: str) -> dict:
        data = self.cli_json("pool", "show", name)
        pools = data if isinstance(data, list) else data.get("pools", [data])
        for p in pools:
            if p.get("pool") == name:
                return {t["token_id"]: t for t in p["tokens"]}
        raise AssertionError(f"pool {name} not in {data}")

    def mock_calls(self) -> list:
        with urllib.request.urlopen(f"{self.mock}/_mock/calls", timeout=5) as r:
            return json.load(r)

    def proxy_log(self) -> str:
        return (self.state / "proxy.log").read_text(errors="replace")

    def audit_lines(self) -> list:
        out = []
        for line in self.proxy_log().splitlines():
            start = line.find('{"')
            if start < 0 or '"tollgate_audit"' not in line:
                continue
            try:
                out.append(json.loads(line[start:]))
            except json.JSONDecodeError:
                pass
        return out

    def audit_for(self, request_id: str, timeout: float = 5.0) -> dict:
        deadline = time.time() + timeout
        while time.time() < deadline:
            for a in self.audit_lines():
                if a.get("request_id") == request_id:
                    return a
            time.sleep(0.1)
        raise AssertionError(f"no audit line for request {request_id}")


def read_dev_env(path: pathlib.Path) -> dict:
    values = {}
    for line in path.read_text().splitlines():
        if line.startswith("export ") and "=" in line:
            k, v = line[len("export "):].split("=", 1)
            values[k] = v
    return values


@pytest.fixture(scope="session")
def stack(tmp_path_factory):
    reuse = os.environ.get("TOLLGATE_E2E_REUSE")
    if reuse:
        # Debugging aid: run against a stack already started by `make dev`
        # (TOLLGATE_E2E_REUSE=<its state dir>); it must use TOLLGATE_POOL_CACHE_TTL_MS=0.
        state = pathlib.Path(reuse)
        yield Stack(state, read_dev_env(state / "dev.env"))
        return
    state = tmp_path_factory.mktemp("tollgate-dev")
    env = {
        **os.environ,
        "TOLLGATE_DEV_STATE": str(state),
        "TOLLGATE_DEV_PORT": str(free_port()),
        "TOLLGATE_MOTO_PORT": str(free_port()),
        "TOLLGATE_KEY_CACHE_TTL_MS": "1000",
        "TOLLGATE_POOL_CACHE_TTL_MS": "0",
        "TOLLGATE_SECRET_CACHE_TTL_MS": "1000",
        "TOLLGATE_UPSTREAM_TIMEOUT_MS": "3000",
        "TOLLGATE_DEV_NO_RELOAD": "1",
        # Short so the rotation test sees a retired key (must exceed the secret cache TTL).
        "TOLLGATE_ROTATION_GRACE_MS": "4000",
        "TOLLGATE_DEV_ROTATION_PORT": str(free_port()),
    }
    # The real providers are never used by tests, whatever the caller's environment holds.
    env.pop("OPENAI_API_KEY", None)
    env.pop("ANTHROPIC_API_KEY", None)
    log = open(state / "dev.out", "w")
    proc = subprocess.Popen(
        [str(ROOT / "infra/local/dev.sh")], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL, start_new_session=True,
    )
    dev_env = state / "dev.env"
    deadline = time.time() + 900
    while not dev_env.exists():
        if proc.poll() is not None:
            raise RuntimeError("make dev exited:\n" + (state / "dev.out").read_text())
        if time.time() > deadline:
            os.killpg(proc.pid, signal.SIGTERM)
            raise RuntimeError("make dev did not become ready:\n" + (state / "dev.out").read_text())
        time.sleep(0.5)
    values = read_dev_env(dev_env)
    try:
        yield Stack(state, values)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


@pytest.fixture
def unique():
    """A short unique suffix so tests can make their own pools and tokens."""
    return secrets.token_hex(3)
