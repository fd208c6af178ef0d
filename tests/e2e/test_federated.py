"""Federated (keyless) pool tokens seen from the stock OpenAI SDK: the token holds no secret;
the proxy signs an identity token with the stack's local key (TOLLGATE_FEDERATION=local, a
key generated when the stack started), exchanges it at the mock's OpenAI token endpoint
(RFC 8693), and sends the short-lived access token upstream. The mock verifies the assertion,
counts exchanges and refuses expired access tokens."""

import json
import time
import urllib.request

import boto3
import openai
from sdk_load import SdkLoad

AUDIENCE = "https://api.openai.com/v1"


def post_json(url, body):
    req = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"content-type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.status


def federation(stack):
    with urllib.request.urlopen(f"{stack.mock}/_mock/federation", timeout=5) as r:
        return json.load(r)["counters"]


def add_federated(stack, pool, token_id, account, *extra):
    return stack.cli_json(
        "token", "add", "--pool", pool, "--new-pool", "--provider", "openai", "--base-url",
        f"{stack.mock}/v1", "--id", token_id, "--owner", "e2e@localhost", "--federated",
        "--audience", AUDIENCE, "--identity-provider-id", "idp_e2e", "--service-account-id",
        account, "--token-url", f"{stack.mock}/oauth/token", *extra,
    )


def test_a_federated_token_serves_requests_with_no_stored_secret_and_refreshes_under_load(
    stack, unique
):
    pool = f"fed-{unique}"
    account = f"svc_acct_{unique}"
    # 4 s access tokens: each proxy process refreshes ~1 s before expiry.
    assert post_json(
        f"{stack.mock}/_mock/federation", {"audiences": [AUDIENCE], "expires_in": 4}
    ) == 204
    out = add_federated(stack, pool, "fed", account)
    assert out["secret"]["kind"] == "federated"
    # Nothing in Secrets Manager for it.
    sm = boto3.client(
        "secretsmanager", endpoint_url=stack.env["AWS_ENDPOINT_URL"],
        region_name=stack.env["AWS_REGION"],
        aws_access_key_id=stack.env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=stack.env["AWS_SECRET_ACCESS_KEY"],
    )
    names = [s["Name"] for s in sm.list_secrets(MaxResults=100)["SecretList"]]
    assert not [n for n in names if n.startswith(f"tollgate/pool/{pool}/")], names

    key = stack.issue_key("--model-pool", f"*={pool}")
    before = federation(stack)["by_service_account"].get(account, 0)
    assert before == 0
    started = time.time()
    with SdkLoad(stack, key, prompt="keyless?") as load:
        time.sleep(10)
    ok, failures = load.ok, load.failures
    elapsed = time.time() - started
    exchanges = federation(stack)["by_service_account"].get(account, 0)
    print(
        f"federated under load: {len(ok)} requests answered, {len(failures)} failed, "
        f"{exchanges} exchanges in {elapsed:.1f} s (4 s access tokens)"
    )
    assert not failures, failures[:5]
    assert len(ok) >= 40
    # Refreshed before expiry: the provider never refused one of this token's access tokens.
    calls = [c for c in stack.mock_calls() if (c.get("token") or "").endswith(f"-{account}")]
    assert calls and all(c["token"].startswith("mock-oat-") for c in calls)
    assert not [c for c in calls if c["status"] == 401]
    # One exchange per token lifetime per proxy process (`make dev` runs at most 2), never one
    # per request: 10 s of 4 s tokens refreshed every 3 s is 4 per process.
    assert 3 <= exchanges <= 2 * 5, exchanges
    assert exchanges * 5 < len(ok)
    # The access token is never logged.
    log = stack.proxy_log()
    assert not [c for c in calls if c["token"] in log]


def test_a_rejected_exchange_marks_the_token_invalid_and_the_request_fails_over(stack, unique):
    pool = f"fedx-{unique}"
    revoked = f"svc_acct_revoked_{unique}"
    assert post_json(
        f"{stack.mock}/_mock/federation",
        {"audiences": [AUDIENCE], "reject_service_accounts": [revoked]},
    ) == 204
    add_federated(stack, pool, "a-fed", revoked, "--priority", "0")
    stack.add_token(pool, "openai", f"mock-ok-{unique}", "b-stored", "--priority", "1")
    stack.cli("pool", "set-strategy", pool, "priority")
    key = stack.issue_key("--model-pool", f"*={pool}")
    c = openai.OpenAI(base_url=f"{stack.url}/v1", api_key=key, max_retries=0, timeout=30)
    raw = c.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "fail over?"}]
    )
    assert raw.parse().choices[0].message.content.startswith("Hello from the mock provider.")
    a = stack.audit_for(raw.headers["x-tollgate-request-id"])
    assert a["token_id"] == "b-stored"
    tokens = stack.pool(pool)
    assert tokens["a-fed"]["status"] == "invalid"
    assert tokens["b-stored"]["status"] == "active"
    rejected = federation(stack)["rejected"]
    c.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "again"}])
    assert federation(stack)["rejected"] == rejected, "an invalid token is not exchanged again"
