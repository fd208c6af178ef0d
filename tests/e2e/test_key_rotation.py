"""Key rotation with overlap (issue 8) with the stock SDKs on the e2e stack: after
`tollgate key rotate KEY --overlap …` both keys work, requests under the old key say
`superseded_by` in the audit line, and once the overlap has ended only the new key works."""

import time

import anthropic
import openai
import pytest

MSGS = [{"role": "user", "content": "rotation"}]


def test_old_and_new_keys_both_work_during_the_overlap_then_only_the_new_one(stack):
    old = stack.cli_json(
        "key", "issue", "--tenant", "demo", "--owner", "e2e@localhost", "--env", "test",
        "--name", "rotating", "--allow-model", "gpt-4o-mini", "--allow-model", "claude-sonnet-4-6",
    )
    out = stack.cli_json("key", "rotate", old["key_id"], "--overlap", "3s")
    new = out["key"]
    assert out["rotated_from"] == old["key_id"] and out["name"] == "rotating"
    assert out["allowed_models"] == ["gpt-4o-mini", "claude-sonnet-4-6"]
    shown = stack.cli_json("key", "show", old["key_id"])
    assert shown["rotated_to"] == out["key_id"]

    for key, superseded in ((old["key"], out["key_id"]), (new, None)):
        oa = openai.OpenAI(base_url=f"{stack.url}/v1", api_key=key, max_retries=0, timeout=30)
        raw = oa.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MSGS)
        a = stack.audit_for(raw.headers["x-tollgate-request-id"])
        assert a["decision"] == "allow"
        assert a.get("superseded_by") == superseded, a
    an = anthropic.Anthropic(base_url=stack.url, api_key=old["key"], max_retries=0, timeout=30)
    an.messages.create(model="claude-sonnet-4-6", max_tokens=16, messages=MSGS)

    time.sleep(3 + 1.5)  # the overlap, then the e2e stack's 1 s key cache TTL
    with pytest.raises(openai.AuthenticationError) as e:
        openai.OpenAI(base_url=f"{stack.url}/v1", api_key=old["key"], max_retries=0,
                      timeout=30).chat.completions.create(model="gpt-4o-mini", messages=MSGS)
    assert stack.audit_for(e.value.response.headers["x-tollgate-request-id"])["reason"] == "expired"
    openai.OpenAI(base_url=f"{stack.url}/v1", api_key=new, max_retries=0,
                  timeout=30).chat.completions.create(model="gpt-4o-mini", messages=MSGS)
    r = stack.cli("key", "rotate", old["key_id"], "--overlap", "1h", check=False)
    assert r.returncode == 1 and "already rotated" in r.stderr
    assert new not in r.stderr and new not in stack.proxy_log()
