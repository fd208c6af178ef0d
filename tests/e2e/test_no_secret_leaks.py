"""A planted client key and a planted provider token never appear in any log line tollgate
writes, in any response, or in any CLI output."""

import json
import urllib.error
import urllib.request

import openai


def test_planted_key_and_token_never_leak(stack, unique):
    planted_token = f"mock-ok-PLANTED-{unique}-9f8e7d6c5b4a"
    pool = f"plant-{unique}"
    r = stack.cli("token", "add", "--pool", pool, "--new-pool", "--provider", "openai", "--base-url",
                  f"{stack.mock}/v1", "--id", "planted", "--owner", "e2e@localhost",
                  input=planted_token + "\n")
    outputs = [r.stdout, r.stderr]
    issued = stack.cli("--json", "key", "issue", "--tenant", "demo", "--owner", "e2e@localhost",
                       "--env", "test", "--model-pool", f"*={pool}")
    key = json.loads(issued.stdout)["key"]
    c = openai.OpenAI(base_url=f"{stack.url}/v1", api_key=key, max_retries=0, timeout=30)
    bodies = []
    raw = c.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hello"}]
    )
    bodies.append(raw.text)
    bodies.append(str(dict(raw.headers)))
    for chunk in c.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hello"}], stream=True
    ):
        bodies.append(chunk.model_dump_json())
    # Failures too: a wrong checksum on the planted key, and a 404.
    for path, k in [("/v1/chat/completions", key[:-1] + "x"), ("/v1/nowhere", key)]:
        req = urllib.request.Request(f"{stack.url}{path}", data=b"{}", method="POST",
                                     headers={"authorization": f"Bearer {k}"})
        try:
            urllib.request.urlopen(req, timeout=10)
        except urllib.error.HTTPError as e:
            bodies.append(e.read().decode())
            bodies.append(str(dict(e.headers)))
    for cmd in (["key", "list"], ["key", "show", key], ["token", "list"], ["pool", "show", pool]):
        res = stack.cli(*cmd)
        outputs += [res.stdout, res.stderr]
        res = stack.cli("--json", *cmd)
        outputs += [res.stdout, res.stderr]

    # The mock did receive the token (so it really was used) ...
    assert any(call.get("token") == planted_token for call in stack.mock_calls())
    secret_part = key[21:-6]
    dev_out = stack.state / "dev.out"
    logs = stack.proxy_log() + (dev_out.read_text(errors="replace") if dev_out.exists() else "")
    for where, text in [("proxy logs", logs), ("responses", "\n".join(bodies)),
                        ("CLI output", "\n".join(outputs))]:
        assert planted_token not in text, where
        assert key not in text, where
        assert secret_part not in text, where
    # ... and `key issue` printed the key exactly once, to the operator.
    assert key in issued.stdout
