"""JWT callers end to end (issue 8): an OIDC issuer served by this test on loopback (discovery
document and JWK Set; RSA keys generated when the test runs), trusted with the operator CLI,
and the stock OpenAI and Anthropic SDKs calling the e2e stack's proxy with a JWT as `api_key`.
Good tokens get answers under the issuer's policy and limits; every bad token gets the same
401 as a bad key, in the provider's error shape, with no upstream call; the audit line names
the issuer and the principal."""

import base64
import datetime
import http.server
import json
import threading
import time
import urllib.error
import urllib.request

import anthropic
import openai
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

AUDIENCE = "tollgate-e2e"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def int_bytes(n: int) -> bytes:
    return n.to_bytes((n.bit_length() + 7) // 8, "big")


class SigningKey:
    """An RSA key made for this run, its public JWK, and RS256 compact JWS over claims."""

    def __init__(self, kid: str):
        self.kid = kid
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def jwk(self) -> dict:
        pub = self.key.public_key().public_numbers()
        return {"kty": "RSA", "kid": self.kid, "use": "sig", "alg": "RS256",
                "n": b64url(int_bytes(pub.n)), "e": b64url(int_bytes(pub.e))}

    def token(self, claims: dict, header: dict | None = None) -> str:
        h = header or {"alg": "RS256", "typ": "JWT", "kid": self.kid}
        signing_input = f"{b64url(json.dumps(h).encode())}.{b64url(json.dumps(claims).encode())}"
        sig = self.key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input}.{b64url(sig)}"


class IdP:
    """An OIDC issuer on 127.0.0.1: `<base><path>/.well-known/openid-configuration` names
    `<base><path>/jwks.json`, which publishes this issuer's current keys. Several issuers
    (paths) share one server; it counts the requests it answered."""

    def __init__(self):
        self.keys: dict[str, list[SigningKey]] = {}
        self.hits: list[str] = []
        idp = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's naming)
                idp.hits.append(self.path)
                for path, keys in idp.keys.items():
                    iss = idp.base + path
                    if self.path == f"{path}/.well-known/openid-configuration":
                        return self.reply({"issuer": iss, "jwks_uri": f"{iss}/jwks.json",
                                           "id_token_signing_alg_values_supported": ["RS256"]})
                    if self.path == f"{path}/jwks.json":
                        return self.reply({"keys": [k.jwk() for k in keys]})
                self.send_error(404)

            def reply(self, doc):
                body = json.dumps(doc).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def issuer(self, path: str, keys: list[SigningKey]) -> str:
        self.keys[path] = keys
        return self.base + path

    def claims(self, iss: str, sub: str = "svc-e2e", **over) -> dict:
        now = int(time.time())
        c = {"iss": iss, "aud": AUDIENCE, "sub": sub, "iat": now, "nbf": now, "exp": now + 300}
        c.update(over)
        return c


@pytest.fixture(scope="module")
def idp():
    s = IdP()
    yield s
    s.server.shutdown()


@pytest.fixture(scope="module")
def trusted(stack, idp):
    """An issuer trusted for tenant demo, limited to two models, via discovery."""
    key = SigningKey("k-2026")
    iss = idp.issuer("/main", [key])
    stack.cli(
        "issuer", "add", iss, "--audience", AUDIENCE, "--discovery", "--alg", "RS256",
        "--tenant", "demo", "--allow-model", "gpt-4o-mini", "--allow-model", "claude-sonnet-4-6",
    )
    return iss, key


def oa(stack, key):
    return openai.OpenAI(base_url=f"{stack.url}/v1", api_key=key, max_retries=0, timeout=30)


def an(stack, key):
    return anthropic.Anthropic(base_url=stack.url, api_key=key, max_retries=0, timeout=30)


def raw_post(stack, path, body, headers):
    req = urllib.request.Request(f"{stack.url}{path}", data=json.dumps(body).encode(), method="POST")
    req.add_header("content-type", "application/json")
    for k, v in headers.items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read().decode(), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(), dict(e.headers)


CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
MESSAGES = {"model": "claude-sonnet-4-6", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}


def test_the_cli_lists_the_trusted_issuer(stack, trusted):
    iss, _ = trusted
    listed = stack.cli_json("issuer", "list")["issuers"]
    rec = next(r for r in listed if r["issuer"] == iss)
    assert rec["jwks"]["kind"] == "discovery"
    assert rec["tenant"] == {"kind": "fixed", "tenant_id": "demo"}
    assert rec["algorithms"] == ["RS256"]
    r = stack.cli("issuer", "add", iss, "--audience", "x", "--discovery", "--tenant", "demo", check=False)
    assert r.returncode == 1 and "--replace" in r.stderr


def test_a_jwt_works_as_api_key_with_both_sdks_streaming_and_not(stack, trusted, idp):
    iss, key = trusted
    token = key.token(idp.claims(iss))
    raw = oa(stack, token).chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "ping as a workload"}]
    )
    assert raw.http_response.status_code == 200
    assert "ping as a workload" in raw.parse().choices[0].message.content
    a = stack.audit_for(raw.headers["x-tollgate-request-id"])
    assert a["decision"] == "allow" and a["tenant"] == "demo"
    assert a["issuer"] == iss and a["principal"] == "svc-e2e"
    assert a["key_id"].startswith("jwt-") and len(a["key_id"]) == 24
    assert token not in json.dumps(a)
    # The discovery document was read, then the key set it names.
    assert f"/main/.well-known/openid-configuration" in idp.hits and "/main/jwks.json" in idp.hits

    stream = oa(stack, token).chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "stream"}], stream=True
    )
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text.startswith("Hello from the mock provider.")

    m = an(stack, token).messages.with_raw_response.create(**MESSAGES)
    assert m.parse().content[0].text.startswith("Hello from the mock provider.")
    a = stack.audit_for(m.headers["x-tollgate-request-id"])
    assert a["route"] == "messages" and a["issuer"] == iss and a["principal"] == "svc-e2e"
    with an(stack, token).messages.stream(**MESSAGES) as s:
        assert "".join(s.text_stream).startswith("Hello from the mock provider.")


def test_the_issuers_policy_applies(stack, trusted, idp):
    iss, key = trusted
    token = key.token(idp.claims(iss))
    with pytest.raises(openai.PermissionDeniedError) as e:
        oa(stack, token).chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "not allowed"}]
        )
    a = stack.audit_for(e.value.response.headers["x-tollgate-request-id"])
    assert a["status"] == 403 and a["issuer"] == iss


def test_every_bad_jwt_gets_the_uniform_401_in_the_providers_shape(stack, trusted, idp):
    iss, key = trusted
    other = SigningKey(key.kid)  # same kid, another key: a forged signature
    now = int(time.time())
    c = idp.claims
    cases = {
        "jwt_expired": key.token(c(iss, exp=now - 600, iat=now - 900, nbf=now - 900)),
        "jwt_not_yet_valid": key.token(c(iss, nbf=now + 600)),
        "jwt_wrong_audience": key.token(c(iss, aud="someone-else")),
        "jwt_bad_signature": other.token(c(iss)),
        "jwt_unknown_kid": SigningKey("no-such-kid").token(c(iss)),
        "jwt_alg_not_allowed": key.token(c(iss), header={"alg": "none", "kid": key.kid}),
        "jwt_issuer_unknown": key.token(c(idp.base + "/untrusted")),
        "jwt_principal_missing": key.token({k: v for k, v in c(iss).items() if k != "sub"}),
    }
    calls_before = len(stack.mock_calls())
    for route, body, header in [
        ("/v1/chat/completions", CHAT, lambda t: {"authorization": f"Bearer {t}"}),
        ("/v1/messages", MESSAGES, lambda t: {"x-api-key": t, "anthropic-version": "2023-06-01"}),
    ]:
        status, uniform, _ = raw_post(stack, route, body, header("tgk_test_not-a-real-key"))
        assert status == 401
        for reason, token in cases.items():
            status, got, headers = raw_post(stack, route, body, header(token))
            assert status == 401, (route, reason, got)
            assert got == uniform, (route, reason, "the 401 must not say which check failed")
            a = stack.audit_for(headers["x-tollgate-request-id"])
            assert a["reason"] == reason, (route, a)
            assert a["decision"] == "deny"
            assert token not in json.dumps(a)
    assert len(stack.mock_calls()) == calls_before, "no bad token reached the provider"
    # The stock SDKs raise their own authentication errors.
    with pytest.raises(openai.AuthenticationError) as e:
        oa(stack, cases["jwt_expired"]).chat.completions.create(**CHAT)
    assert e.value.body["code"] == "unauthenticated"
    with pytest.raises(anthropic.AuthenticationError) as e:
        an(stack, cases["jwt_expired"]).messages.create(**MESSAGES)
    assert e.value.body["error"]["type"] == "authentication_error"


def test_jwt_callers_get_per_principal_limits_and_removal_bites_within_the_ttl(stack, idp, unique):
    key = SigningKey("lim-1")
    iss = idp.issuer(f"/limited-{unique}", [key])
    stack.cli(
        "issuer", "add", iss, "--audience", AUDIENCE, "--jwks-url", f"{iss}/jwks.json",
        "--tenant", "demo", "--rpm", "1",
    )
    # Both requests of a principal in one UTC minute.
    if datetime.datetime.now(datetime.timezone.utc).second >= 55:
        time.sleep(6)
    alice = key.token(idp.claims(iss, sub="alice"))
    oa(stack, alice).chat.completions.create(**CHAT)
    with pytest.raises(openai.RateLimitError) as e:
        oa(stack, alice).chat.completions.create(**CHAT)
    h = e.value.response.headers
    assert h["x-ratelimit-limit-requests"] == "1" and 1 <= int(h["retry-after"]) <= 60
    a = stack.audit_for(h["x-tollgate-request-id"])
    assert a["status"] == 429 and a["principal"] == "alice"
    # Another principal of the same issuer has its own counter.
    oa(stack, key.token(idp.claims(iss, sub="bob"))).chat.completions.create(**CHAT)

    stack.cli("issuer", "remove", iss, "--yes")
    time.sleep(1.5)  # the e2e stack's key cache TTL is 1 s; issuer records share it
    with pytest.raises(openai.AuthenticationError) as e:
        oa(stack, key.token(idp.claims(iss, sub="carol"))).chat.completions.create(**CHAT)
    a = stack.audit_for(e.value.response.headers["x-tollgate-request-id"])
    assert a["reason"] == "jwt_issuer_unknown"


def test_a_tenant_admin_manages_only_their_tenants_keys(stack, idp, unique):
    """The management API on the e2e stack (DynamoDB adapters on the emulator): an admin of
    one tenant lists its keys and revokes one; another tenant's key id is a 404; a static key
    and a non-admin identity are refused."""
    key = SigningKey("adm-1")
    iss = idp.issuer(f"/admins-{unique}", [key])
    mine, theirs = f"m-{unique}", f"o-{unique}"
    for t in (mine, theirs):
        stack.cli("tenant", "create", t, "--owner", "e2e@localhost")
    stack.cli(
        "issuer", "add", iss, "--audience", AUDIENCE, "--jwks-url", f"{iss}/jwks.json",
        "--tenant-claim", "org", "--tenant-allow", mine, "--tenant-allow", theirs,
        "--tenant-admin-contains", "groups=tollgate-admins",
    )
    issued = {
        t: [stack.cli_json("key", "issue", "--tenant", t, "--owner", "e2e@localhost", "--env", "test")
            for _ in range(2)]
        for t in (mine, theirs)
    }
    admin = key.token(idp.claims(iss, sub="admin", org=mine, groups=["tollgate-admins"]))

    def manage(method, path, bearer):
        req = urllib.request.Request(f"{stack.url}/tollgate/v1{path}", method=method,
                                     data=b"{}" if method == "POST" else None)
        req.add_header("authorization", f"Bearer {bearer}")
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, json.loads(r.read()), dict(r.headers)
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode(), dict(e.headers)

    status, body, headers = manage("GET", "/keys", admin)
    assert status == 200, body
    assert body["tenant_id"] == mine
    assert sorted(k["key_id"] for k in body["keys"]) == sorted(k["key_id"] for k in issued[mine])
    assert all("digest_hex" not in k for k in body["keys"])
    a = stack.audit_for(headers["x-tollgate-request-id"])
    assert a["route"] == "manage.keys.list" and a["issuer"] == iss and a["principal"] == "admin"

    other_id = issued[theirs][0]["key_id"]
    status, body, _ = manage("POST", f"/keys/{other_id}/revoke", admin)
    assert status == 404, body
    status_unknown, body_unknown, _ = manage("POST", "/keys/ZZZZZZZZZZZZ/revoke", admin)
    assert (status, body) == (status_unknown, body_unknown)
    other = stack.cli_json("key", "show", other_id)
    assert other["status"] == "active"

    victim = issued[mine][1]
    status, body, _ = manage("POST", f"/keys/{victim['key_id']}/revoke", admin)
    assert status == 200 and body["status"] == "revoked", body
    assert stack.cli_json("key", "show", victim["key_id"])["status"] == "revoked"
    time.sleep(1.5)  # other proxy instances: within the key cache TTL
    with pytest.raises(openai.AuthenticationError):
        oa(stack, victim["key"]).chat.completions.create(**CHAT)

    # Issue a key for its own tenant: shown once, works with the stock SDK, not in the audit.
    req = urllib.request.Request(f"{stack.url}/tollgate/v1/keys", method="POST",
                                 data=json.dumps({"name": "from-admin", "env": "test"}).encode())
    req.add_header("authorization", f"Bearer {admin}")
    req.add_header("content-type", "application/json")
    with urllib.request.urlopen(req, timeout=30) as r:
        assert r.status == 201
        new = json.loads(r.read())
        rid = r.headers["x-tollgate-request-id"]
    assert new["tenant_id"] == mine and new["owner"] == "admin"
    assert new["key"] not in json.dumps(stack.audit_for(rid))
    reply = oa(stack, new["key"]).chat.completions.create(**CHAT)
    assert reply.choices[0].message.content.startswith("Hello from the mock provider.")
    listed = stack.cli_json("key", "list", "--tenant", mine)["keys"]
    assert any(k["key_id"] == new["key_id"] and k["name"] == "from-admin" for k in listed)

    status, _, headers = manage("GET", "/keys", issued[mine][0]["key"])
    assert status == 401
    assert stack.audit_for(headers["x-tollgate-request-id"])["reason"] == "management_needs_identity"
    dev = key.token(idp.claims(iss, sub="dev", org=mine, groups=["developers"]))
    status, _, headers = manage("GET", "/keys", dev)
    assert status == 403
    assert stack.audit_for(headers["x-tollgate-request-id"])["reason"] == "not_tenant_admin"
