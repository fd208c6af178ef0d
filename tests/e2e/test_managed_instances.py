"""Many streams in one sandbox (issue 12, item 6): the real proxy binary served from a Lambda
Runtime API that hands out invocations concurrently, as Lambda Managed Instances does, with
`AWS_LAMBDA_MAX_CONCURRENCY=8` (lambda_runtime's `concurrency-tokio` mode: eight tasks in one
process, each long-polling `/next`). The runtime emulator and its API Gateway-like front are in
tests/support/lambda_runtime_api.py (`cargo lambda watch` forces the variable to 1, so it cannot
run this mode).

The proxy uses the e2e stack's emulator tables and mock provider, through a forwarder that
records every AWS call. Clients are the official OpenAI SDK (streaming) and, for the limit
bursts, plain HTTP (the SDK retries 429s on its own). What is checked, all inside one process:

- every streamed response is complete and is its own request's answer (the mock echoes the
  prompt; each request's prompt is unique), with its own request id (the Lambda invocation id)
  in `x-tollgate-request-id`, and one audit line per request that carries that id;
- the runtime really ran eight invocations at once (the emulator counts them in flight);
- cold caches under concurrent misses read the store once: one key record, one tenant, one
  pool query, one pool-token secret for the whole burst (TtlCache::read_through single-flight);
- a federated (keyless) pool token is exchanged once for a burst of concurrent first
  requests (its slot's refresh is single-flight too);
- per-key limits stay exact: requests-per-minute admits exactly the limit, the concurrency
  limit is never exceeded at the provider, and every concurrency lease is released.
"""

import concurrent.futures as cf
import json
import os
import pathlib
import subprocess
import time
import urllib.error
import urllib.request

import openai
import pytest

from lambda_runtime_api import ApiFront, AwsWire, RuntimeApi
from test_limits import (
    chat,
    issue,
    minute,
    mock_stats,
    read_env_file,
    reset_mock,
    settled,
    setup_tenant,
)
from test_limits import counters  # noqa: F401  (pytest fixture)
from test_federated import AUDIENCE, add_federated, federation, post_json

ROOT = pathlib.Path(__file__).resolve().parents[2]
PROXY = ROOT / "target" / "debug" / "proxy"
# TOLLGATE_E2E_MI_CONCURRENCY runs the same checks at another concurrency (clients: 3 ×).
CONCURRENCY = int(os.environ.get("TOLLGATE_E2E_MI_CONCURRENCY", "8"))
CLIENTS = 3 * CONCURRENCY
REPLY_PREFIX = "Hello from the mock provider."


class Sandbox:
    """One execution environment: the proxy process, its Runtime API, the front and the wire."""

    def __init__(self, proc, runtime, front, wire, out, err):
        self.proc, self.runtime, self.front, self.wire = proc, runtime, front, wire
        self.out, self.err = out, err

    def cpu_seconds(self) -> float:
        """User + system CPU the proxy process has used so far (Linux /proc)."""
        fields = pathlib.Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def audit_lines(self) -> list:
        lines = []
        for line in self.out.read_text(errors="replace").splitlines():
            if '"tollgate_audit"' not in line:
                continue
            # Every line is whole JSON: concurrent requests never interleave their lines.
            lines.append(json.loads(line[line.index("{"):]))
        return lines


@pytest.fixture(scope="module")
def sandbox(stack, tmp_path_factory):
    assert PROXY.is_file(), f"{PROXY} is missing: run cargo build --bins"
    base = read_env_file(stack.state / "proxy.env")
    wire = AwsWire(base["AWS_ENDPOINT_URL"])
    runtime = RuntimeApi()
    front = ApiFront(runtime)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_LAMBDA_")}
    env.update(base)
    # The local stack's TOLLGATE_LAMBDA_POLLERS=128 stays set: with AWS_LAMBDA_MAX_CONCURRENCY
    # above 1 the proxy must run one loop of that many workers, not 128 of them.
    assert int(env.get("TOLLGATE_LAMBDA_POLLERS", "1")) > 1
    env.update({
        "AWS_ENDPOINT_URL": wire.url,
        "AWS_LAMBDA_RUNTIME_API": runtime.address,
        "AWS_LAMBDA_FUNCTION_NAME": "tollgate-proxy",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "2048",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST.PUBLISHED",
        "AWS_LAMBDA_MAX_CONCURRENCY": str(CONCURRENCY),
        # Long enough that nothing expires during a test: every second read is a cache miss
        # that single-flight did not catch.
        "TOLLGATE_KEY_CACHE_TTL_MS": "600000",
        "TOLLGATE_POOL_CACHE_TTL_MS": "600000",
        "TOLLGATE_SECRET_CACHE_TTL_MS": "600000",
        # As in test_limits.py: the emulator's TransactWriteItems is not isolated.
        "TOLLGATE_LIMIT_SETTLE": "separate",
        "RUST_LOG": "info",
    })
    logs = tmp_path_factory.mktemp("sandbox")
    out, err = logs / "proxy.out", logs / "proxy.err"
    proc = subprocess.Popen(
        [str(PROXY)], env=env, stdin=subprocess.DEVNULL, stdout=open(out, "w"), stderr=open(err, "w"),
    )
    try:
        deadline = time.time() + 60
        # Ready once all eight workers are long-polling /next.
        while runtime.pollers_waiting < CONCURRENCY:
            assert proc.poll() is None, f"the proxy exited: {err.read_text()}{out.read_text()}"
            assert time.time() < deadline, (
                f"only {runtime.pollers_waiting} of {CONCURRENCY} workers polled /next: "
                f"{out.read_text()[-2000:]}"
            )
            time.sleep(0.05)
        yield Sandbox(proc, runtime, front, wire, out, err)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        for server in (front, runtime, wire):
            server.close()


def test_one_loop_of_max_concurrency_workers_polls_the_runtime_api(sandbox):
    time.sleep(0.5)  # any extra loop would have started polling by now
    assert sandbox.runtime.max_pollers_waiting == CONCURRENCY
    log = sandbox.out.read_text() + sandbox.err.read_text()
    assert "TOLLGATE_LAMBDA_POLLERS ignored" in log
    assert "concurrency-tokio feature is not enabled" not in log


def test_sdk_streams_are_complete_own_and_read_the_store_once(stack, sandbox, unique):
    # Each answer is paced (one SSE event every 20 ms) so that the streams overlap.
    tenant, pool = setup_tenant(stack, unique, [f"mock-pace20-{unique}"])
    key, key_id = issue(stack, tenant)
    sandbox.runtime.reset_maxima()
    before = len(sandbox.wire.snapshot())
    client = openai.OpenAI(base_url=f"{sandbox.front.url}/v1", api_key=key, max_retries=0, timeout=120)
    prompts = [f"stream {i} of {unique} please" for i in range(3 * CLIENTS)]

    def one(prompt):
        with client.chat.completions.with_streaming_response.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": prompt}],
            stream=True,
            max_tokens=60,
        ) as resp:
            text, finished, events = "", None, 0
            for chunk in resp.parse():
                events += 1
                for c in chunk.choices:
                    text += c.delta.content or ""
                    finished = c.finish_reason or finished
            return prompt, text, finished, resp.headers.get("x-tollgate-request-id"), resp.headers.get("x-amzn-requestid"), events

    cpu_before = sandbox.cpu_seconds()
    with cf.ThreadPoolExecutor(max_workers=CLIENTS) as ex:
        results = list(ex.map(one, prompts))
    cpu = sandbox.cpu_seconds() - cpu_before
    events = sum(r[-1] for r in results)
    # A measurement, not a check (debug build, shared machine: an upper bound for release).
    print(
        f"proxy CPU for {len(prompts)} streams ({events} SSE events): {cpu:.2f} s, "
        f"{1000 * cpu / len(prompts):.1f} ms per stream, {1e6 * cpu / events:.0f} µs per event"
    )

    ids = set()
    for prompt, text, finished, request_id, invocation_id, _ in results:
        assert text == f"{REPLY_PREFIX} You said: {prompt}", "a stream was cut or carried another request's answer"
        assert finished == "stop"
        assert request_id and request_id == invocation_id, "the request id is the Lambda invocation's"
        ids.add(request_id)
    assert len(ids) == len(prompts), "request ids are unique"
    assert sandbox.runtime.max_in_flight == CONCURRENCY, (
        f"the runtime ran at most {sandbox.runtime.max_in_flight} invocations at once"
    )
    assert not sandbox.runtime.errors, sandbox.runtime.errors

    # One audit line per request, each with its own id and outcome.
    deadline = time.time() + 10
    while True:
        audits = [a for a in sandbox.audit_lines() if a["request_id"] in ids]
        if len(audits) >= len(ids) or time.time() > deadline:
            break
        time.sleep(0.1)
    assert sorted(a["request_id"] for a in audits) == sorted(ids), "exactly one audit line per request"
    assert all(a["status"] == 200 and a["stream"] and a["key_id"] == key_id for a in audits)

    # Concurrent cold misses shared one store read each (the caches' single-flight).
    calls = sandbox.wire.snapshot()[before:]
    env = read_env_file(stack.state / "proxy.env")
    key_reads = [c for c in calls if c.get("table") == env["TOLLGATE_KEYS_TABLE"] and c["target"] == "GetItem"]
    tenant_reads = [c for c in calls if c.get("table") == env["TOLLGATE_TENANTS_TABLE"] and c["target"] == "GetItem"]
    pool_reads = [c for c in calls if c.get("table") == env["TOLLGATE_POOL_TABLE"] and c["target"] == "Query"]
    secret_reads = [c for c in calls if c["target"] == "GetSecretValue" and pool in c.get("secret", "")]
    summary = {t: sum(1 for c in calls if c["target"] == t) for t in sorted({c["target"] for c in calls})}
    print(f"{len(prompts)} streams at {CONCURRENCY} per sandbox: AWS calls {summary}")
    assert len(key_reads) == 1, key_reads
    assert len(tenant_reads) == 1, tenant_reads
    assert len(pool_reads) == 1, pool_reads
    assert len(secret_reads) == 1, secret_reads


def test_a_federated_token_is_exchanged_once_for_concurrent_first_requests(stack, sandbox, unique):
    pool, account = f"mifed-{unique}", f"svc_acct_mi_{unique}"
    assert post_json(f"{stack.mock}/_mock/federation", {"audiences": [AUDIENCE], "expires_in": 600}) == 204
    add_federated(stack, pool, "fed", account)
    key = stack.issue_key("--model-pool", f"*={pool}")
    sandbox.runtime.reset_maxima()
    client = openai.OpenAI(base_url=f"{sandbox.front.url}/v1", api_key=key, max_retries=0, timeout=120)

    def one(i):
        prompt = f"keyless {i} {unique}"
        chunks = client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": prompt}], stream=True
        )
        return prompt, "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)

    with cf.ThreadPoolExecutor(max_workers=CLIENTS) as ex:
        results = list(ex.map(one, range(2 * CLIENTS)))
    assert all(text == f"{REPLY_PREFIX} You said: {prompt}" for prompt, text in results)
    assert sandbox.runtime.max_in_flight == CONCURRENCY
    assert federation(stack)["by_service_account"].get(account, 0) == 1


def test_requests_per_minute_are_exact_in_one_sandbox(stack, sandbox, counters, unique):  # noqa: F811
    limit = 20
    tenant, _ = setup_tenant(stack, unique, [f"mock-slow50-{unique}"])
    for attempt in range(3):
        key, key_id = issue(stack, tenant, rpm=limit)
        start = minute()
        with cf.ThreadPoolExecutor(max_workers=CLIENTS) as ex:
            statuses = [s for s, _ in ex.map(lambda _: chat(sandbox.front.url, key), range(3 * CLIENTS))]
        if minute() != start:
            continue  # the burst crossed a window boundary: run it again on a fresh key
        assert set(statuses) <= {200, 429}, sorted(set(statuses))
        assert statuses.count(200) == limit, f"accepted {statuses.count(200)} of limit {limit}"
        state = settled(counters, f"key#{key_id}")
        assert state["requests"] == limit, state
        return
    pytest.skip("every burst crossed a minute boundary")


def test_concurrency_limit_holds_and_every_lease_is_released(stack, sandbox, counters, unique):  # noqa: F811
    limit = 3
    tenant, _ = setup_tenant(stack, unique, [f"mock-slow300-{unique}"])
    key, key_id = issue(stack, tenant, concurrency=limit)
    reset_mock(stack)
    sandbox.runtime.reset_maxima()
    with cf.ThreadPoolExecutor(max_workers=CLIENTS) as ex:
        statuses = [s for s, _ in ex.map(lambda _: chat(sandbox.front.url, key, stream=True), range(2 * CLIENTS))]
    stats = mock_stats(stack)
    accepted = statuses.count(200)
    assert set(statuses) <= {200, 429}, sorted(set(statuses))
    assert stats["requests"] == accepted, "every admitted request reached the provider once"
    assert accepted >= limit
    assert stats["max_in_flight"] <= limit
    assert sandbox.runtime.max_in_flight > limit, "the sandbox ran more invocations at once than the limit"
    settled(counters, f"key#{key_id}")
