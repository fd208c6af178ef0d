"""Canary keys (issue 8) end to end with the stock SDKs, and their alert (issue 10) through the
local audit path: a key issued with `tollgate key issue --canary` gets exactly the 401 a bad
key gets (same bytes, in each provider's shape), the mock provider sees no call, the audit
line says decision `canary` with the caller's user agent, and the audit function raises one
critical `canary_key_used` alert (read from the SQS queue subscribed to the alert topic) that
suspends nothing."""

import json
import secrets
import zlib

import anthropic
import openai
import pytest

from test_audit import alerts_about

MSGS = [{"role": "user", "content": "canary"}]
B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def well_formed_unknown_key() -> str:
    """A key with a valid shape and checksum that no record has (DESIGN.md's key format)."""
    body = "tgk_test_" + "".join(secrets.choice(B62) for _ in range(12 + 32))
    n = zlib.crc32(body.encode())
    sum_ = ""
    for _ in range(6):
        n, r = divmod(n, 62)
        sum_ = B62[r] + sum_
    return body + sum_


def refused(call):
    with pytest.raises((openai.AuthenticationError, anthropic.AuthenticationError)) as e:
        call()
    return e.value.response


def test_a_canary_key_is_refused_like_a_bad_key_reaches_no_provider_and_alerts_once(stack):
    issued = stack.cli_json(
        "key", "issue", "--tenant", "demo", "--owner", "security@localhost", "--env", "test",
        "--canary", "--name", "planted in e2e/.env",
    )
    canary, key_id = issued["key"], issued["key_id"]
    assert issued["canary"] is True and issued["status"] == "canary"
    unknown = well_formed_unknown_key()
    calls_before = len(stack.mock_calls())

    responses = {}
    for name, key in (("canary", canary), ("bad", unknown)):
        oa = openai.OpenAI(base_url=f"{stack.url}/v1", api_key=key, max_retries=0, timeout=30)
        an = anthropic.Anthropic(base_url=stack.url, api_key=key, max_retries=0, timeout=30)
        responses[name] = (
            refused(lambda: oa.chat.completions.create(model="gpt-4o-mini", messages=MSGS)),
            refused(lambda: an.messages.create(
                model="claude-sonnet-4-6", max_tokens=16, messages=MSGS)),
        )
    request_ids = []
    for canary_resp, bad_resp in zip(responses["canary"], responses["bad"]):
        assert canary_resp.status_code == bad_resp.status_code == 401
        assert canary_resp.content == bad_resp.content, "byte-identical to a bad key's 401"
        request_ids.append(canary_resp.headers["x-tollgate-request-id"])
    assert len(stack.mock_calls()) == calls_before, "a canary never reaches a provider"

    agents = []
    for rid in request_ids:
        a = stack.audit_for(rid)
        assert a["decision"] == "canary" and a["reason"] == "canary", a
        assert a["key_id"] == key_id and a["tenant"] == "demo"
        assert a["source_ip"] and a["route"] in ("chat.completions", "messages")
        assert a["store_writes"] == 0 and a["attempts"] == 0
        agents.append(a["user_agent"])
        assert canary not in json.dumps(a)
    assert agents[0].startswith("OpenAI/Python"), agents
    assert agents[1].startswith("Anthropic/Python"), agents

    # One critical alert for the uses (the later ones are counted into it); nothing suspended.
    found = alerts_about(stack, f"key:{key_id}", want=2, timeout=60)
    assert len(found) == 1, found
    alert = found[0]
    assert alert["rule"] == "canary_key_used" and alert["severity"] == "critical"
    assert alert["tenant"] == "demo"
    assert "nothing suspended" in alert["response"]
    assert alert["user_agents"] and alert["user_agents"][0].split("/")[0] in ("OpenAI", "Anthropic")
    assert canary not in json.dumps(alert)
    shown = stack.cli_json("key", "show", key_id)
    assert shown["status"] == "canary" and shown["suspended_at"] is None

    # Listed apart from the keys anyone uses, and never rotated into a working key.
    listed = stack.cli_json("key", "list", "--tenant", "demo")
    assert key_id in [k["key_id"] for k in listed["canaries"]]
    assert key_id not in [k["key_id"] for k in listed["keys"]]
    r = stack.cli("key", "rotate", key_id, "--overlap", "1h", check=False)
    assert r.returncode == 1 and "canary" in r.stderr
