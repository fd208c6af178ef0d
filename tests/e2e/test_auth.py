"""Every authentication failure looks the same to the caller (one 401 body); a malformed key
costs no AWS call; revocation bites within the key cache TTL; bad requests are refused in the
provider's error shape."""

import json
import time
import urllib.error
import urllib.request

import openai
import pytest


def call(stack, path, body, key=None, headers=None, method="POST"):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(f"{stack.url}{path}", data=data if method == "POST" else None, method=method)
    req.add_header("content-type", "application/json")
    if key is not None:
        req.add_header("authorization", f"Bearer {key}")
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read().decode(), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(), dict(e.headers)


CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


def flip_checksum(key: str) -> str:
    last = key[-1]
    return key[:-1] + ("A" if last != "A" else "B")


def test_every_auth_failure_returns_the_same_401(stack):
    revoked = stack.issue_key()
    stack.cli("key", "revoke", revoked[9:21], "--yes")
    expired = stack.issue_key("--expires-in", "1s")
    time.sleep(1.5)
    # An unknown but well-formed key: a real key's shape with another key id (checksum
    # recomputed below so it passes the shape check).
    unknown = stack.key[:9] + "Z" * 12 + stack.key[21:]
    cases = {
        "missing_key": None,
        "bad_prefix": "sk-proj-not-a-tollgate-key",
        "bad_length": "tgk_test_short",
        "bad_checksum": flip_checksum(stack.key),
        "revoked": revoked,
        "expired": expired,
    }
    bodies = set()
    for reason, key in cases.items():
        status, body, headers = call(stack, "/v1/chat/completions", CHAT, key=key)
        assert status == 401, (reason, body)
        bodies.add(body)
        a = stack.audit_for(headers["x-tollgate-request-id"])
        assert a["reason"] == reason
        assert a["decision"] == "deny"
    import zlib

    alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
    before = unknown[:-6]
    n, digits = zlib.crc32(before.encode()), ""
    while n:
        n, r = divmod(n, 62)
        digits = alphabet[r] + digits
    unknown = before + digits.rjust(6, "0")
    status, body, headers = call(stack, "/v1/chat/completions", CHAT, key=unknown)
    assert status == 401
    bodies.add(body)
    assert stack.audit_for(headers["x-tollgate-request-id"])["reason"] == "unknown_key"
    assert len(bodies) == 1, bodies
    err = json.loads(bodies.pop())["error"]
    assert err["code"] == "unauthenticated" and err["type"] == "invalid_request_error"


def test_malformed_keys_make_zero_aws_calls(stack):
    for key in [None, "tgk_test_short", flip_checksum(stack.key)]:
        _, _, headers = call(stack, "/v1/chat/completions", CHAT, key=key)
        a = stack.audit_for(headers["x-tollgate-request-id"])
        assert (a["store_reads"], a["store_writes"]) == (0, 0), a


def test_revoked_key_fails_within_the_cache_ttl(stack):
    key = stack.issue_key()
    assert call(stack, "/v1/chat/completions", CHAT, key=key)[0] == 200
    stack.cli("key", "revoke", key[9:21], "--yes")
    deadline = time.time() + 1.0 + 3.0  # TTL (1 s in the harness) plus slack
    status = 200
    while time.time() < deadline:
        status = call(stack, "/v1/chat/completions", CHAT, key=key)[0]
        if status == 401:
            break
        time.sleep(0.2)
    assert status == 401


def test_openai_sdk_sees_an_authentication_error(stack):
    c = openai.OpenAI(base_url=f"{stack.url}/v1", api_key="tgk_test_nope", max_retries=0, timeout=30)
    with pytest.raises(openai.AuthenticationError):
        c.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}])


def test_bad_json_is_a_400_in_shape(stack):
    status, body, _ = call(stack, "/v1/chat/completions", b"{not json", key=stack.key)
    assert status == 400
    assert json.loads(body)["error"]["code"] == "bad_request"


def test_body_over_the_limit_is_a_413(stack):
    big = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x" * (2 * 1024 * 1024)}]}
    status, body, _ = call(stack, "/v1/chat/completions", big, key=stack.key)
    assert status == 413
    assert json.loads(body)["error"]["code"] == "payload_too_large"


def test_unknown_route_is_a_404_in_shape(stack):
    status, body, _ = call(stack, "/v1/fine_tuning/jobs", {"model": "x"}, key=stack.key)
    assert status == 404
    assert json.loads(body)["error"]["code"] == "not_found"
    status, body, _ = call(
        stack, "/v1/messages/batches", {"model": "x"}, key=stack.key,
    )
    assert status == 404
    assert json.loads(body)["type"] == "error"
