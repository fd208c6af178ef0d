"""The audit path in the dev stack, end to end: the proxy's audit lines go through the local
forwarder (infra/local/audit_forwarder.py, a real `awslogs` payload per batch) to the audit
function under `cargo lambda watch`; a key hammered from outside its networks raises one alert
(read from the SQS queue subscribed to the alert topic), the key is suspended, and the proxy
refuses it, seen through the stock OpenAI SDK, within the key cache TTL."""

import json
import time

import boto3
import openai
import pytest

CHAT = [{"role": "user", "content": "hi"}]


def sqs(stack):
    return boto3.client(
        "sqs",
        endpoint_url=stack.env["AWS_ENDPOINT_URL"],
        region_name=stack.env["AWS_REGION"],
        aws_access_key_id=stack.env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=stack.env["AWS_SECRET_ACCESS_KEY"],
    )


def alerts_about(stack, subject: str, want: int, timeout: float) -> list:
    """Alerts in the queue about `subject`, waiting until `want` arrived or `timeout` passed.
    Other alerts (other tests' traffic) are left in the queue."""
    client = sqs(stack)
    url = stack.env["TOLLGATE_ALERT_QUEUE_URL"]
    found = []
    deadline = time.time() + timeout
    while time.time() < deadline and len(found) < want:
        msgs = client.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1, VisibilityTimeout=0
        ).get("Messages", [])
        for m in msgs:
            body = json.loads(m["Body"])
            if body.get("subject") == subject:
                found.append(body)
                client.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    return found


def sdk(stack, key):
    return openai.OpenAI(base_url=f"{stack.url}/v1", api_key=key, max_retries=0, timeout=30)


def test_key_hammered_from_outside_its_network_alerts_once_and_is_suspended(stack):
    # The key may only be used from a documentation network; the stack calls from 127.0.0.1.
    key = stack.issue_key("--allow-cidr", "203.0.113.0/24")
    key_id = key[9:21]
    client = sdk(stack, key)
    for _ in range(6):
        with pytest.raises(openai.AuthenticationError):
            client.chat.completions.create(model="gpt-4o-mini", messages=CHAT)

    found = alerts_about(stack, f"key:{key_id}", want=2, timeout=60)
    assert len(found) == 1, found  # six refusals, one alert
    alert = found[0]
    assert alert["rule"] == "key_refused_outside"
    assert alert["severity"] == "high"
    assert alert["counts"]["source_refusals"] >= 2
    assert alert["response"].startswith(f"suspended key {key_id}")
    assert key not in json.dumps(alert)  # ids only, never the key

    shown = stack.cli_json("key", "show", key_id)
    assert shown["status"] == "suspended", shown

    # The proxy refuses it as suspended within the key cache TTL (1 s in the e2e stack).
    deadline = time.time() + 5
    reason = None
    while time.time() < deadline and reason != "suspended":
        raw = client.chat.completions.with_raw_response
        try:
            raw.create(model="gpt-4o-mini", messages=CHAT)
            raise AssertionError("a suspended key was served")
        except openai.AuthenticationError as e:
            rid = e.response.headers["x-tollgate-request-id"]
            reason = stack.audit_for(rid)["reason"]
        if reason != "suspended":
            time.sleep(0.2)
    assert reason == "suspended"

    listed = stack.cli_json("alerts", "list", "--key", key_id)["alerts"]
    assert [a["id"] for a in listed] == [f"key_refused_outside/key:{key_id}"], listed
    assert listed[0]["occurrences"] >= 1

    # The same audit lines reached the emulator's log group: `audit tail` finds them.
    # (The forwarder ships a batch a second; the last refusal may still be on its way.)
    deadline = time.time() + 15
    reasons = []
    while time.time() < deadline and "suspended" not in reasons:
        tail = stack.cli("--json", "audit", "tail", "--key", key_id, "--since", "10m").stdout
        reasons = [json.loads(line)["reason"] for line in tail.splitlines() if line.strip()]
        time.sleep(0.5)
    assert reasons.count("source_not_allowed") == 6, reasons
    assert "suspended" in reasons

    # Reversible: resumed, the key is back to being refused for its network only.
    stack.cli("key", "resume", key_id)
    assert stack.cli_json("key", "show", key_id)["status"] == "active"
