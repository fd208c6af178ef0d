"""Limits as the stock SDKs see them (issue 7), through the e2e stack's proxy on the AWS
emulator: a rate limit is an SDK RateLimitError whose retry-after the SDK honours, a budget
refusal says budget and is not retried, a stream is settled to the usage it reported, and a
limit changed with the CLI applies without a restart. Waits are bounded loss detection."""

import datetime
import time

import anthropic
import boto3
import openai

from test_limits import read_env_file


def new_key(stack, unique, *limit_flags, tenant_limits=()):
    """A fresh tenant (own counters) and key; limits on the key, and on the tenant if asked."""
    tenant = f"sdk-{unique}"
    stack.cli("tenant", "create", tenant, "--owner", "e2e@localhost")
    if tenant_limits:
        stack.cli("limits", "set", "--tenant", tenant, *tenant_limits)
    out = stack.cli_json("key", "issue", "--tenant", tenant, "--owner", "e2e@localhost", "--env", "test")
    if limit_flags:
        stack.cli("limits", "set", "--tenant", tenant, "--key", out["key_id"], *limit_flags)
    return out["key"], out["key_id"], tenant


def counters(stack, subject):
    env = read_env_file(stack.state / "proxy.env")
    ddb = boto3.client(
        "dynamodb", endpoint_url=env["AWS_ENDPOINT_URL"], region_name=env["AWS_REGION"],
        aws_access_key_id="testing", aws_secret_access_key="testing",
    )
    item = ddb.get_item(
        TableName=env["TOLLGATE_LIMITS_TABLE"], Key={"subject": {"S": subject}}, ConsistentRead=True
    ).get("Item", {})
    return {k: int(v["N"]) for k, v in item.items() if "N" in v}


def test_over_rpm_is_a_rate_limit_error_whose_retry_after_the_openai_sdk_honours(stack, unique):
    key, _, _ = new_key(stack, unique, "--rpm", "1")
    # Start late in a minute so the window turns soon (the retry below waits for it), but not
    # so late that the 429 and the patient client's first try straddle the turn (the window
    # would admit that try and no retry would be taken): between :45 and :50.
    now = datetime.datetime.now(datetime.timezone.utc)
    second = now.second + now.microsecond / 1e6
    if not 45 <= second < 50:
        time.sleep((45 - second) % 60)
    strict = openai.OpenAI(base_url=f"{stack.url}/v1", api_key=key, max_retries=0, timeout=30)
    msgs = [{"role": "user", "content": "rpm"}]
    strict.chat.completions.create(model="gpt-4o-mini", messages=msgs)
    try:
        strict.chat.completions.create(model="gpt-4o-mini", messages=msgs)
        raise AssertionError("the second request in the minute was admitted")
    except openai.RateLimitError as e:
        retry_after = int(e.response.headers["retry-after"])
        assert 1 <= retry_after <= 60
        assert e.response.headers["x-ratelimit-limit-requests"] == "1"
        assert e.response.headers["x-ratelimit-remaining-requests"] == "0"
    # One retry, after the retry-after the gateway gave: the next window admits it.
    patient = openai.OpenAI(base_url=f"{stack.url}/v1", api_key=key, max_retries=1, timeout=90)
    r = patient.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=msgs)
    assert r.http_response.status_code == 200
    assert r.retries_taken == 1


def test_over_rpm_is_an_anthropic_rate_limit_error(stack, unique):
    key, _, _ = new_key(stack, unique, "--rpm", "1")
    c = anthropic.Anthropic(base_url=stack.url, api_key=key, max_retries=0, timeout=30)
    body = dict(model="claude-sonnet-4-6", max_tokens=20, messages=[{"role": "user", "content": "hi"}])
    c.messages.create(**body)
    try:
        c.messages.create(**body)
        raise AssertionError("the second request in the minute was admitted")
    except anthropic.RateLimitError as e:
        assert 1 <= int(e.response.headers["retry-after"]) <= 60
        assert e.body["error"]["type"] == "rate_limit_error"


def test_an_exhausted_budget_is_a_429_that_says_budget_and_is_not_retried(stack, unique):
    # 100 micro-dollars: less than one gpt-4o request reserving 100 output tokens.
    key, key_id, tenant = new_key(stack, unique, "--budget-day", "0.0001usd")
    before = len(stack.mock_calls())
    c = openai.OpenAI(base_url=f"{stack.url}/v1", api_key=key, max_retries=3, timeout=30)
    msgs = [{"role": "user", "content": "budget"}]
    try:
        c.chat.completions.with_raw_response.create(model="gpt-4o", messages=msgs, max_tokens=100)
        raise AssertionError("admitted over the budget")
    except openai.RateLimitError as e:
        assert "budget" in str(e).lower()
        assert e.response.headers["x-should-retry"] == "false"
        assert "x-ratelimit-remaining-budget-day" in e.response.headers
        request_id = e.response.headers["x-tollgate-request-id"]
    # The SDK did not retry: one request reached the gateway, none the provider.
    assert stack.audit_for(request_id)["reason"] == "budget_day"
    assert [a["reason"] for a in stack.audit_lines() if a.get("key_id") == key_id] == ["budget_day"]
    assert len(stack.mock_calls()) == before

    # Raised with the CLI, the budget applies without a restart (within the key cache TTL).
    stack.cli("limits", "set", "--tenant", tenant, "--key", key_id, "--budget-day", "1usd")
    deadline = time.time() + 30
    while True:
        try:
            c.chat.completions.create(model="gpt-4o", messages=msgs, max_tokens=100)
            break
        except openai.RateLimitError:
            assert time.time() < deadline, "the raised budget never applied"
            time.sleep(0.5)


def test_a_stream_is_settled_to_the_usage_it_reported(stack, unique):
    key, key_id, _ = new_key(stack, unique, "--budget-day", "1usd", "--tpm", "100k")
    c = openai.OpenAI(base_url=f"{stack.url}/v1", api_key=key, max_retries=0, timeout=30)
    with c.chat.completions.with_streaming_response.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "settle this stream"}],
        stream=True,
        stream_options={"include_usage": True},
        max_tokens=500,
    ) as raw:
        request_id = raw.headers["x-tollgate-request-id"]
        usage = None
        for chunk in raw.parse():
            if chunk.usage:
                usage = chunk.usage
    assert usage is not None
    audit = stack.audit_for(request_id)  # written after settlement
    state = counters(stack, f"key#{key_id}")
    used = usage.prompt_tokens + usage.completion_tokens
    # The reservation (estimate + 500 output tokens) was replaced by what the stream reported.
    assert state["tokens_day"] == used
    assert state["spend_day"] == round(audit["cost_usd"] * 1_000_000)
    assert audit["tokens_in"] == usage.prompt_tokens
    assert audit["tokens_out"] == usage.completion_tokens



def test_prices_edited_with_the_cli_price_requests_without_a_restart(stack, unique, tmp_path):
    """`tollgate prices set|import` store the table in DynamoDB; the proxy picks it up within
    its key cache TTL, reserves and settles with it, and the audit line's cost follows."""
    model = f"e2e-priced-{unique}"
    key, key_id, tenant = new_key(stack, unique, "--budget-day", "1usd")
    c = openai.OpenAI(base_url=f"{stack.url}/v1", api_key=key, max_retries=0, timeout=30)
    msgs = [{"role": "user", "content": "price me"}]

    def cost_of_one():
        r = c.chat.completions.with_raw_response.create(model=model, messages=msgs, max_tokens=20)
        a = stack.audit_for(r.headers["x-tollgate-request-id"])
        return a.get("cost_usd"), a["tokens_in"], a["tokens_out"]

    # No price: the request costs nothing (only token limits could apply).
    cost, _, _ = cost_of_one()
    assert cost in (None, 0)

    stack.cli("prices", "set", model, "--input", "1000", "--output", "2000")
    listed = stack.cli_json("prices", "list")
    assert listed["source"] == "stored" and listed["prices"][model] == {"input": 1000.0, "output": 2000.0}

    def wait_for_price(pin, pout):
        deadline = time.time() + 30
        while True:
            cost, tin, tout = cost_of_one()
            # Prices in micro-dollars per million tokens; the cost is rounded up to a micro-dollar.
            want = -(-(tin * pin + tout * pout) // 1_000_000)
            if cost is not None and round(cost * 1_000_000) == want:
                return cost
            assert time.time() < deadline, f"the stored price never applied (cost {cost})"
            time.sleep(0.5)

    wait_for_price(1000 * 1_000_000, 2000 * 1_000_000)
    # The key's stored spend is what the audit lines said (settled with the same table).
    spent = sum(
        round(a["cost_usd"] * 1_000_000)
        for a in stack.audit_lines()
        if a.get("key_id") == key_id and a.get("cost_usd")
    )
    assert counters(stack, f"key#{key_id}")["spend_day"] == spent

    # A CSV import changes it again; a bad file is refused whole, with the line named.
    good = tmp_path / "p.csv"
    good.write_text(f"model,input,output,cached_input\n{model},10,20,\n")
    stack.cli("prices", "import", str(good))
    wait_for_price(10 * 1_000_000, 20 * 1_000_000)
    bad = tmp_path / "bad.csv"
    bad.write_text(f"model,input,output\n{model},1,1\nother-{unique},-3,1\n")
    r = stack.cli("prices", "import", str(bad), check=False)
    assert r.returncode == 1 and "input price -3" in r.stderr and "nothing was stored" in r.stderr, r.stderr
    assert stack.cli_json("prices", "list")["prices"][model] == {"input": 10.0, "output": 20.0}
    r = stack.cli("prices", "set", model, "--input", "nan", "--output", "1", check=False)
    assert r.returncode == 1 and "input price NaN" in r.stderr, r.stderr
