"""Pool failover seen from a stock SDK: each test routes its own key to its own pool (the key's
model-to-pool mapping) filled with mock tokens whose values choose the mock's behaviour."""

import anthropic
import openai
import pytest


def client_for(stack, pool):
    # Priority strategy: tokens are tried in the order of their --priority, so each test
    # knows which token meets the fault first.
    stack.cli("pool", "set-strategy", pool, "priority")
    key = stack.issue_key("--model-pool", f"*={pool}")
    return openai.OpenAI(base_url=f"{stack.url}/v1", api_key=key, max_retries=0, timeout=30), key


def ask(c, stream=False):
    return c.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "failover?"}], stream=stream
    )


def calls_for(stack, prefix):
    return [c for c in stack.mock_calls() if (c.get("token") or "").startswith(prefix)]


def test_a_401_token_is_marked_invalid_and_the_next_one_answers(stack, unique):
    pool = f"f401-{unique}"
    stack.add_token(pool, "openai", f"mock-401-{unique}", "a-bad", "--priority", "0")
    stack.add_token(pool, "openai", f"mock-ok-{unique}", "b-good", "--priority", "1")
    c, _ = client_for(stack, pool)
    raw = ask(c)
    assert raw.parse().choices[0].message.content
    a = stack.audit_for(raw.headers["x-tollgate-request-id"])
    assert a["attempts"] == 2 and a["token_id"] == "b-good"
    tokens = stack.pool(pool)
    assert tokens["a-bad"]["status"] == "invalid"
    assert tokens["b-good"]["status"] == "active"
    ask(c)
    assert len(calls_for(stack, f"mock-401-{unique}")) == 1, "an invalid token is not retried"


def test_a_429_cools_the_token_and_the_next_one_answers(stack, unique):
    pool = f"f429-{unique}"
    stack.add_token(pool, "openai", f"mock-429-{unique}", "a-busy", "--priority", "0")
    stack.add_token(pool, "openai", f"mock-ok-{unique}", "b-good", "--priority", "1")
    c, _ = client_for(stack, pool)
    raw = ask(c)
    assert stack.audit_for(raw.headers["x-tollgate-request-id"])["token_id"] == "b-good"
    busy = stack.pool(pool)["a-busy"]
    assert busy["status"] == "cooling"
    for _ in range(3):
        ask(c)
    assert len(calls_for(stack, f"mock-429-{unique}")) == 1, "the cooldown is honoured"


def test_all_tokens_failing_gives_a_bounded_503_in_each_providers_shape(stack, unique):
    pool = f"fall-{unique}"
    for i in range(6):
        stack.add_token(pool, "openai", f"mock-500-{unique}-{i}", f"t{i}")
    c, key = client_for(stack, pool)
    with pytest.raises(openai.APIStatusError) as e:
        ask(c)
    assert e.value.status_code == 503
    assert e.value.body["code"] == "no_upstream_available"
    assert len(calls_for(stack, f"mock-500-{unique}")) == 4, "attempts are bounded"

    apool = f"fallA-{unique}"
    stack.add_token(apool, "anthropic", f"mock-500-a{unique}", "x1")
    stack.add_token(apool, "anthropic", f"mock-401-a{unique}", "x2")
    akey = stack.issue_key("--model-pool", f"*={apool}")
    ac = anthropic.Anthropic(base_url=stack.url, api_key=akey, max_retries=0, timeout=30)
    with pytest.raises(anthropic.APIStatusError) as e:
        ac.messages.create(model="claude-x", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    assert e.value.status_code == 503
    assert e.value.body["type"] == "error"
    assert e.value.body["error"]["type"] == "overloaded_error"


def test_a_stream_broken_midway_ends_with_an_in_band_error_and_no_retry(stack, unique):
    pool = f"fbrk-{unique}"
    stack.add_token(pool, "openai", f"mock-break3-{unique}", "a-break", "--priority", "0")
    stack.add_token(pool, "openai", f"mock-ok-{unique}", "b-good", "--priority", "1")
    c, _ = client_for(stack, pool)
    stream = c.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "break"}], stream=True
    )
    got = []
    with pytest.raises(openai.APIError) as e:
        for chunk in stream:
            got.append(chunk)
    assert "interrupted" in str(e.value)
    assert len(got) >= 1, "chunks before the break reached the client"
    assert len(calls_for(stack, f"mock-ok-{unique}")) == 0, "no retry after the first byte"
    a = stack.audit_for(stream.response.headers["x-tollgate-request-id"])
    assert a["reason"] == "upstream_stream_broken"

    apool = f"fbrkA-{unique}"
    stack.add_token(apool, "anthropic", f"mock-break3-a{unique}", "a-break")
    akey = stack.issue_key("--model-pool", f"*={apool}")
    ac = anthropic.Anthropic(base_url=stack.url, api_key=akey, max_retries=0, timeout=30)
    with pytest.raises(anthropic.APIError):
        with ac.messages.stream(
            model="claude-x", max_tokens=64, messages=[{"role": "user", "content": "break"}]
        ) as s:
            for _ in s.text_stream:
                pass
