"""The sensitive-data filter seen from the stock SDKs: secrets block by default with no
upstream call, financial data is redacted before it leaves, a tenant's policy (set with the
CLI) changes the outcome, and secrets in answers are redacted, streaming included."""

import random
import string
import time

import anthropic
import openai
import pytest


def fake_aws_key(seed: int) -> str:
    # Built at test time: no credential-shaped literal in the repo.
    r = random.Random(seed)
    return "AKIA" + "".join(r.choice(string.ascii_uppercase + "234567") for _ in range(16))


def fake_openai_key(seed: int) -> str:
    r = random.Random(seed)
    return "sk-proj-" + "".join(r.choice(string.ascii_letters + string.digits) for _ in range(48))


def last_call_containing(stack, marker):
    return [c for c in stack.mock_calls() if marker in str(c.get("body"))]


def test_a_secret_in_a_prompt_is_blocked_with_no_upstream_call(stack, unique):
    c = openai.OpenAI(base_url=f"{stack.url}/v1", api_key=stack.key, max_retries=0, timeout=30)
    secret = fake_aws_key(1)
    with pytest.raises(openai.BadRequestError) as e:
        c.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": f"{unique} deploy with {secret}"}],
        )
    assert e.value.body["code"] == "sensitive_data_blocked"
    assert "AWS_ACCESS_KEY" in e.value.body["message"]
    assert secret not in str(e.value.body)
    assert last_call_containing(stack, unique) == []
    assert secret not in stack.proxy_log()


def test_a_card_number_is_redacted_before_it_reaches_the_provider(stack, unique):
    c = anthropic.Anthropic(base_url=stack.url, api_key=stack.key, max_retries=0, timeout=30)
    m = c.messages.create(
        model="claude-sonnet-4-6", max_tokens=64,
        system=f"{unique} billing assistant",
        messages=[{"role": "user", "content": "カード番号は4111-1111-1111-1111です"}],
    )
    assert m.content[0].text
    sent = last_call_containing(stack, unique)
    assert len(sent) == 1
    body = str(sent[0]["body"])
    assert "[CREDIT_CARD_1]" in body and "4111" not in body


def test_tenant_policy_set_with_the_cli_changes_the_outcome(stack, unique):
    tenant = f"pol{unique}"
    stack.cli("tenant", "create", tenant, "--name", "policy test", "--owner", "e2e@localhost")
    key = stack.cli_json("key", "issue", "--tenant", tenant, "--owner", "e2e@localhost",
                         "--env", "test")["key"]
    c = openai.OpenAI(base_url=f"{stack.url}/v1", api_key=key, max_retries=0, timeout=30)
    ask = lambda text: c.chat.completions.create(  # noqa: E731
        model="gpt-4o-mini", messages=[{"role": "user", "content": text}])
    # Default: an e-mail address is only logged.
    r = ask(f"{unique} mail ops@example.com")
    assert "ops@example.com" in str(last_call_containing(stack, unique)[-1]["body"])
    stack.cli("policy", "set", "--tenant", tenant, "--category", "contact=block")
    with pytest.raises(openai.BadRequestError) as e:
        for _ in range(20):  # the key cache TTL in the harness is 1 s
            ask(f"{unique} mail ops@example.com again")
            time.sleep(0.25)
    assert "EMAIL" in e.value.body["message"]
    assert r.choices[0].message.content


def test_secrets_in_answers_are_redacted_streaming_and_not(stack, unique):
    tenant = f"echo{unique}"
    stack.cli("tenant", "create", tenant, "--name", "echo test", "--owner", "e2e@localhost")
    # Let secrets through on the way in (log only) so the mock echoes one back.
    stack.cli("policy", "set", "--tenant", tenant, "--category", "secret=log")
    key = stack.cli_json("key", "issue", "--tenant", tenant, "--owner", "e2e@localhost",
                         "--env", "test")["key"]
    secret = fake_openai_key(2)
    c = openai.OpenAI(base_url=f"{stack.url}/v1", api_key=key, max_retries=0, timeout=30)
    r = c.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": f"repeat {secret}"}])
    assert secret not in r.choices[0].message.content
    assert "[OPENAI_KEY_1]" in r.choices[0].message.content
    text = ""
    for chunk in c.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": f"repeat {secret}"}], stream=True
    ):
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
    assert secret not in text and "[OPENAI_KEY_1]" in text

    a = anthropic.Anthropic(base_url=stack.url, api_key=key, max_retries=0, timeout=30)
    with a.messages.stream(model="claude-x", max_tokens=64,
                           messages=[{"role": "user", "content": f"repeat {secret}"}]) as s:
        atext = "".join(s.text_stream)
    assert secret not in atext and "[OPENAI_KEY_1]" in atext
