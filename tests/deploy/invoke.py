"""Deploy rehearsal, part 2: the built proxy run as Lambda runs it, invoked with events/' API
Gateway REST samples, its streamed responses read as API Gateway reads them.

- The proxy's environment is the one the emulator stack gave ProxyFunction (tables, pepper
  secret, KMS key, cache and limit settings from template.yaml), plus what Lambda itself sets
  (AWS_LAMBDA_RUNTIME_API and the function's name, memory, version, log group) and the
  emulator's endpoint and dummy credentials.
- A tenant, a client key and two pools (OpenAI, Anthropic) are seeded with the tollgate CLI in
  the stack's tables and secrets; the pools' provider is the mock provider (infra/mock-provider);
  the Anthropic token is `mock-pace…`, so the SSE events leave the provider 100 ms apart and a
  buffered relay would show as one late chunk.
- The samples' placeholder client keys (`tgk_test_EXAMPLE_…`) are replaced by the issued key;
  nothing else in the events is changed.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from pathlib import Path

from emulator_stack import Stack
from lambda_runtime_api import RuntimeApi, read_as_api_gateway
from sam import ROOT

EVENTS = ROOT / "events"
PLACEHOLDER = re.compile(r"tgk_test_EXAMPLE_not_a_real_key_\d+")
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
PACE_MS = 100


def say(msg: str) -> None:
    import sys
    print(f"[deploy-check] {msg}", file=sys.stderr, flush=True)


def with_key(event: dict, key: str) -> dict:
    """The sample with its placeholder client key replaced (headers and multiValueHeaders)."""
    text = json.dumps(event)
    assert PLACEHOLDER.search(text), "the sample carries no tgk_test_EXAMPLE_… placeholder key"
    return json.loads(PLACEHOLDER.sub(key, text))


def sse_events(body: bytes) -> list[tuple[str | None, str]]:
    out = []
    for block in body.decode().replace("\r\n", "\n").split("\n\n"):
        if not block.strip():
            continue
        name, data = None, []
        for line in block.split("\n"):
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].strip())
        out.append((name, "\n".join(data)))
    return out


def rehearse_invocations(st: Stack, variant: str, state: Path, result, procs: list) -> None:
    slug = variant.replace(" ", "-")
    bins = {b: TARGET / "debug" / b for b in ("proxy", "tollgate", "mock-provider")}
    missing = [str(p) for p in bins.values() if not p.exists()]
    if missing:
        result.fail(f"{variant}: invocations: not built: {', '.join(missing)} (run cargo build --bins)")
        return
    lam = st.client("lambda")
    fn = lam.get_function_configuration(FunctionName=st.physical["ProxyFunction"])
    fn_env = {k: str(v) for k, v in fn.get("Environment", {}).get("Variables", {}).items()}
    aws = {"AWS_REGION": st.region, "AWS_DEFAULT_REGION": st.region, "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_ENDPOINT_URL": st.endpoint}
    base = {k: v for k, v in os.environ.items() if not k.startswith(("TOLLGATE_", "AWS_", "OPENAI_", "ANTHROPIC_"))}

    # The mock provider.
    mock_log = open(state / f"{slug}-mock.log", "w")
    mock = subprocess.Popen([str(bins["mock-provider"]), "--addr", "127.0.0.1:0"], stdout=subprocess.PIPE,
                            stderr=mock_log, text=True, start_new_session=True)
    procs.append(mock)
    line = mock.stdout.readline() if mock.stdout else ""
    m = re.search(r"http://[0-9.:]+", line)
    if not m:
        result.fail(f"{variant}: invocations: the mock provider did not start ({line!r})")
        return
    mock_url = m.group(0)

    # Seed with the CLI, configured the way docs/deploy.md "4. First run with the CLI" says: from the stack's
    # OperatorEnvironment output (resolved here: the emulator leaves ${PepperSecret} in it,
    # gap 3). Its names must be the ones the proxy was given.
    operator = st.resolve(st.tpl["Outputs"]["OperatorEnvironment"]["Value"])
    op_env = dict(pair.split("=", 1) for pair in operator.split())
    for k, v in op_env.items():
        if k in fn_env and fn_env[k] != v:
            result.fail(f"{variant}: OperatorEnvironment sets {k}={v}, the proxy function has {fn_env[k]}")
    if "AWS_REGION" in op_env and op_env["AWS_REGION"] != st.region:
        result.fail(f"{variant}: OperatorEnvironment AWS_REGION is {op_env['AWS_REGION']}, the stack is in {st.region}")
    cli_env = {**base, **aws, **op_env}

    def cli(*args, stdin=None):
        r = subprocess.run([str(bins["tollgate"]), *args], input=stdin, capture_output=True,
                           text=True, env=cli_env, timeout=60)
        if r.returncode != 0:
            raise RuntimeError(f"tollgate {' '.join(args)}: {r.stderr.strip()}")
        return r.stdout

    try:
        cli("tenant", "create", "rehearsal", "--name", "Deploy rehearsal", "--owner", "rehearsal@localhost")
        key = json.loads(cli("--json", "key", "issue", "--tenant", "rehearsal", "--owner",
                             "rehearsal@localhost", "--name", "deploy-check", "--env", "test"))["key"]
        cli("token", "add", "--pool", "openai", "--new-pool", "--provider", "openai", "--base-url",
            f"{mock_url}/v1", "--id", "rehearsal-openai", "--owner", "rehearsal@localhost",
            stdin="mock-ok-rehearsal-openai\n")
        cli("token", "add", "--pool", "anthropic", "--new-pool", "--provider", "anthropic", "--base-url",
            f"{mock_url}/v1", "--id", "rehearsal-anthropic", "--owner", "rehearsal@localhost",
            stdin=f"mock-pace{PACE_MS}-rehearsal-anthropic\n")
    except (RuntimeError, KeyError, json.JSONDecodeError) as e:
        result.fail(f"{variant}: invocations: seeding with the CLI failed: {e}")
        return

    # The proxy under the Runtime API, environment as Lambda gives it.
    runtime = RuntimeApi(fn["FunctionArn"], deadline_s=int(fn.get("Timeout", 300)))
    proxy_env = {**base, **aws, **fn_env,
                 "AWS_LAMBDA_RUNTIME_API": runtime.address,
                 "AWS_LAMBDA_FUNCTION_NAME": fn["FunctionName"],
                 "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
                 "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(fn.get("MemorySize", 256)),
                 "AWS_LAMBDA_LOG_GROUP_NAME": fn.get("LoggingConfig", {}).get("LogGroup", "/aws/lambda/proxy"),
                 "AWS_LAMBDA_LOG_STREAM_NAME": "deploy-check",
                 "_HANDLER": fn.get("Handler", "bootstrap"),
                 "LAMBDA_TASK_ROOT": str(bins["proxy"].parent)}
    proxy_log = state / f"{slug}-proxy.log"
    proxy = subprocess.Popen([str(bins["proxy"])], env=proxy_env, stdout=open(proxy_log, "w"),
                             stderr=subprocess.STDOUT, start_new_session=True)
    procs.append(proxy)
    try:
        cases = [
            ("proxy-apigw-rest.json", check_json_completion),
            ("proxy-apigw-rest-stream.json", check_sse_stream),
        ]
        for name, check in cases:
            event = with_key(json.loads((EVENTS / name).read_text()), key)
            t0 = time.monotonic()
            try:
                inv = runtime.invoke(event, timeout=60)
                view = read_as_api_gateway(inv)
                detail = check(view)
                audit = check_audit(proxy_log, inv, view, event)
                say(f"{variant}: events/{name}: {view.status}, {detail}; audit line {audit['decision']}/{audit['reason']}, "
                    f"request id = the Lambda request id ({(time.monotonic() - t0) * 1000:.0f} ms)")
                result.invocations.append((f"{variant}: {name}", view.status, detail))
            except (AssertionError, TimeoutError, json.JSONDecodeError) as e:
                result.fail(f"{variant}: events/{name}: {e} (function log: {proxy_log})")
        # A refused key through the same path: the provider-shaped error in the same framing.
        event = json.loads((EVENTS / "proxy-apigw-rest.json").read_text())
        event = json.loads(PLACEHOLDER.sub("tgk_test_" + "0" * 40, json.dumps(event)))
        try:
            inv = runtime.invoke(event, timeout=60)
            view = read_as_api_gateway(inv)
            assert view.status == 401, f"a wrong key answered {view.status}"
            err = json.loads(view.body)
            assert "error" in err, f"401 body is not an OpenAI-shaped error: {view.body[:200]!r}"
            check_audit(proxy_log, inv, view, event)
            say(f"{variant}: events/proxy-apigw-rest.json with a wrong key: 401, OpenAI-shaped error body")
            result.invocations.append((f"{variant}: proxy-apigw-rest.json (wrong key)", 401, "error JSON"))
        except (AssertionError, TimeoutError, json.JSONDecodeError) as e:
            result.fail(f"{variant}: events/proxy-apigw-rest.json with a wrong key: {e} (function log: {proxy_log})")
        if runtime.init_error:
            result.fail(f"{variant}: the proxy reported an init error: {runtime.init_error}")
    finally:
        # The function first (as Lambda freezes it), then its Runtime API.
        try:
            os.killpg(proxy.pid, 15)
            proxy.wait(timeout=10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
        runtime.close()


def check_audit(log: Path, inv, view, event: dict) -> dict:
    """The request's audit line is on the function's stdout, under the Lambda request id (what
    the API access log's lambdaRequestId joins on), with the event's source IP and the status."""
    rid = view.headers.get("x-tollgate-request-id")
    assert rid == inv.request_id, f"x-tollgate-request-id {rid} is not the Lambda request id {inv.request_id}"
    audit = wait_audit(log, rid)
    assert audit, f"no audit line for request {rid} on the function's stdout"
    assert audit["status"] == view.status, f"audit status {audit['status']}, answered {view.status}"
    ip = event["requestContext"]["identity"]["sourceIp"]
    assert audit["source_ip"] == ip, f"audit source_ip {audit['source_ip']}, the event's sourceIp {ip}"
    return audit


def wait_audit(log: Path, request_id: str | None, timeout: float = 5.0) -> dict | None:
    deadline = time.monotonic() + timeout
    while request_id and time.monotonic() < deadline:
        for line in log.read_text(errors="replace").splitlines():
            start = line.find('{"')
            if start >= 0 and '"tollgate_audit"' in line and request_id in line:
                try:
                    return json.loads(line[start:])
                except json.JSONDecodeError:
                    pass
        time.sleep(0.1)
    return None


def check_json_completion(view) -> str:
    assert view.status == 200, f"status {view.status}: {view.body[:300]!r}"
    assert view.headers.get("content-type", "").startswith("application/json"), f"content type {view.headers.get('content-type')}"
    doc = json.loads(view.body)
    text = doc["choices"][0]["message"]["content"]
    assert "Hello from the mock provider" in text, f"unexpected completion {text!r}"
    return f"JSON chat completion ({len(view.body)} bytes)"


def check_sse_stream(view) -> str:
    assert view.status == 200, f"status {view.status}: {view.body[:300]!r}"
    assert view.headers.get("content-type", "").startswith("text/event-stream"), f"content type {view.headers.get('content-type')}"
    events = sse_events(view.body)
    names = [n for n, _ in events]
    assert names and names[0] == "message_start" and names[-1] == "message_stop", f"SSE events {names}"
    text = "".join(json.loads(d)["delta"].get("text", "") for n, d in events if n == "content_block_delta")
    assert "Hello from the mock provider" in text, f"streamed text {text!r}"
    # Streamed, not buffered: the body arrived in several chunks spread over the provider's
    # pacing, and the prelude arrived before the last event.
    times = [t for t, _ in view.body_chunks]
    spread = (times[-1] - times[0]) * 1000 if times else 0
    assert len(times) >= 3 and spread >= PACE_MS, (
        f"body arrived in {len(times)} chunk(s) over {spread:.0f} ms: buffered, not streamed")
    assert view.prelude_at < times[-1], "the prelude came with the last chunk"
    return f"{len(events)} SSE events in {len(times)} chunks over {spread:.0f} ms"
