#!/usr/bin/env python3
"""The local stand-in for the CloudWatch Logs subscription that feeds the audit function.

In AWS, the proxy's stdout goes to its log group and the subscription filter
`{ $.tollgate_audit = 1 }` delivers the audit lines to the audit function in batches, as
`{"awslogs": {"data": base64(gzip(json))}}`. Locally (`make dev`) the proxy's stdout is
`proxy.log`, moto stores subscription filters but never delivers them (MOTO-NOTES.md), so this
script does the delivery:

  setup   creates what template.yaml defines for the audit path that resources.py does not:
          the alert topic, the proxy's log group, and (local only) an SQS queue subscribed to
          the topic with raw delivery, where alerts can be read. Prints KEY=VALUE lines.
  probe   sends the CONTROL_MESSAGE CloudWatch Logs sends to a new subscription, until the
          function answers (readiness check for make dev).
  run     follows proxy.log; every --interval it batches the new audit lines into a real
          `awslogs` payload (padded base64 of gzip of the CloudWatch Logs JSON, CloudWatch-style
          numeric event ids) and invokes the audit function through `cargo lambda watch`'s
          Lambda invoke endpoint, as the subscription would. The same lines are also put into
          the emulator's log group, so `tollgate audit tail` works locally.

A failed invocation (connection refused while the function builds, a function error) is
retried with the same batch and the same event ids, as Lambda retries a subscription batch:
the audit function counts each event id once. Batches are capped at 1 MB of lines and 10,000
events (CloudWatch Logs' own limits for one delivery). Never prints a line's content.
"""

from __future__ import annotations

import argparse
import base64
import gzip
import json
import os
import sys
import time
import urllib.error
import urllib.request
from datetime import datetime

import boto3
from botocore.exceptions import ClientError

STACK = os.environ.get("TOLLGATE_STACK_NAME", "tollgate")
OWNER = "123456789012"
FILTER_NAME = "tollgate-audit-lines"
STREAM = "local/[$LATEST]proxy"
MAX_EVENTS = 10_000
MAX_BYTES = 1_000_000


def log(msg: str) -> None:
    print(f"[audit-forwarder] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------
# setup
# --------------------------------------------------------------------------------------


def setup(args) -> int:
    sns = boto3.client("sns")
    sqs = boto3.client("sqs")
    logs = boto3.client("logs")
    topic = sns.create_topic(Name=f"{STACK}-alerts")["TopicArn"]  # idempotent
    queue_url = sqs.create_queue(QueueName=f"{STACK}-alerts-local")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    subs = sns.list_subscriptions_by_topic(TopicArn=topic).get("Subscriptions", [])
    if not any(s.get("Endpoint") == queue_arn for s in subs):
        sns.subscribe(
            TopicArn=topic,
            Protocol="sqs",
            Endpoint=queue_arn,
            Attributes={"RawMessageDelivery": "true"},
        )
    group = args.log_group
    try:
        logs.create_log_group(logGroupName=group)
    except ClientError as e:
        if e.response["Error"]["Code"] != "ResourceAlreadyExistsException":
            raise
    try:
        logs.create_log_stream(logGroupName=group, logStreamName=STREAM)
    except ClientError as e:
        if e.response["Error"]["Code"] != "ResourceAlreadyExistsException":
            raise
    log(f"alert topic {topic}, queue {queue_url}, log group {group}")
    print(f"TOLLGATE_ALERT_TOPIC_ARN={topic}")
    print(f"TOLLGATE_ALERT_QUEUE_URL={queue_url}")
    print(f"TOLLGATE_AUDIT_STATE_TABLE={STACK}-audit-state")
    print(f"TOLLGATE_PROXY_LOG_GROUP={group}")
    return 0


# --------------------------------------------------------------------------------------
# run
# --------------------------------------------------------------------------------------


def audit_json(line: str) -> str | None:
    """The audit line in a proxy.log line (cargo lambda may prefix it), or None."""
    start = line.find('{"tollgate_audit"')
    if start < 0:
        return None
    return line[start:].rstrip("\r\n")


def timestamp_of(message: str, fallback: int) -> int:
    try:
        t = json.loads(message).get("time")
        return int(datetime.fromisoformat(t.replace("Z", "+00:00")).timestamp() * 1000)
    except (ValueError, AttributeError, TypeError):
        return fallback


def event_id(ts: int, offset: int) -> str:
    """56 digits like CloudWatch's: the timestamp and the line's byte offset in proxy.log, so
    a retried batch carries the same ids."""
    return f"{ts:020d}{offset:036d}"


def payload(group: str, events: list[dict], message_type: str = "DATA_MESSAGE") -> bytes:
    doc = {
        "messageType": message_type,
        "owner": OWNER,
        "logGroup": group,
        "logStream": STREAM,
        "subscriptionFilters": [FILTER_NAME],
        "logEvents": events,
    }
    data = base64.b64encode(gzip.compress(json.dumps(doc).encode())).decode()
    return json.dumps({"awslogs": {"data": data}}).encode()


def invoke(url: str, body: bytes) -> tuple[bool, str]:
    req = urllib.request.Request(
        url, data=body, method="POST", headers={"content-type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            text = r.read().decode(errors="replace")
            # A function error comes back with X-Amz-Function-Error (or an errorType body).
            if r.headers.get("X-Amz-Function-Error") or '"errorType"' in text:
                return False, "function error"
            return True, text[:200]
    except urllib.error.HTTPError as e:
        return False, f"HTTP {e.code}"
    except (urllib.error.URLError, OSError) as e:
        return False, f"not reachable ({type(e).__name__})"


def put_logs(logs, group: str, events: list[dict]) -> None:
    try:
        logs.put_log_events(
            logGroupName=group,
            logStreamName=STREAM,
            # PutLogEvents wants them in time order (streamed requests log out of order).
            logEvents=[
                {"timestamp": e["timestamp"], "message": e["message"]}
                for e in sorted(events, key=lambda e: e["timestamp"])
            ],
        )
    except ClientError as e:
        err = e.response["Error"]
        log(f"put_log_events failed ({err['Code']}: {err.get('Message', '')[:200]}); tail will miss a batch")


def run(args) -> int:
    logs = boto3.client("logs")
    path = args.log
    offset = 0
    pending: list[dict] = []
    pending_bytes = 0
    backoff = args.interval
    sent = 0
    log(f"following {path} -> {args.invoke_url}")
    while True:
        # Read whole new lines only (a line being written stays for the next round).
        try:
            with open(path, "rb") as f:
                f.seek(offset)
                chunk = f.read(MAX_BYTES * 4)
        except FileNotFoundError:
            chunk = b""
        consumed = chunk.rfind(b"\n") + 1
        pos = offset
        for raw in chunk[:consumed].split(b"\n")[:-1]:
            line_offset = pos
            pos += len(raw) + 1
            msg = audit_json(raw.decode(errors="replace"))
            if msg is None:
                continue
            ts = timestamp_of(msg, int(time.time() * 1000))
            pending.append({"id": event_id(ts, line_offset), "timestamp": ts, "message": msg})
            pending_bytes += len(msg) + 26
        offset += consumed

        while pending:
            batch, size = [], 0
            for e in pending:
                if len(batch) >= MAX_EVENTS or size + len(e["message"]) + 26 > MAX_BYTES:
                    break
                batch.append(e)
                size += len(e["message"]) + 26
            ok, what = invoke(args.invoke_url, payload(args.log_group, batch))
            if not ok:
                log(f"batch of {len(batch)} not delivered ({what}); retrying in {backoff:.1f}s")
                time.sleep(backoff)
                backoff = min(backoff * 2, 10.0)
                break
            backoff = args.interval
            put_logs(logs, args.log_group, batch)
            sent += len(batch)
            log(f"delivered {len(batch)} audit lines ({sent} in all)")
            pending = pending[len(batch):]
            pending_bytes -= size
        if not pending:
            time.sleep(args.interval)


def probe(args) -> int:
    control = {
        "id": event_id(0, 0),
        "timestamp": int(time.time() * 1000),
        "message": "CWL CONTROL MESSAGE: Checking health of destination Lambda.",
    }
    body = payload(args.log_group, [control], "CONTROL_MESSAGE")
    deadline = time.time() + args.timeout
    what = ""
    while time.time() < deadline:
        ok, what = invoke(args.invoke_url, body)
        if ok:
            return 0
        time.sleep(0.5)
    log(f"the audit function did not answer ({what})")
    return 1


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("setup")
    s.add_argument("--log-group", default=f"/aws/lambda/{STACK}-proxy")
    pr = sub.add_parser("probe")
    pr.add_argument("--invoke-url", required=True)
    pr.add_argument("--log-group", default=f"/aws/lambda/{STACK}-proxy")
    pr.add_argument("--timeout", type=float, default=450.0)
    r = sub.add_parser("run")
    r.add_argument("--log", required=True, help="the proxy's log file (proxy.log)")
    r.add_argument("--invoke-url", required=True, help="the audit function's invoke endpoint")
    r.add_argument("--log-group", default=f"/aws/lambda/{STACK}-proxy")
    r.add_argument("--interval", type=float, default=1.0, help="seconds between batches")
    args = p.parse_args()
    if not os.environ.get("AWS_ENDPOINT_URL"):
        log("refusing to run without AWS_ENDPOINT_URL (this is for the local emulator)")
        return 2
    if args.cmd == "setup":
        return setup(args)
    if args.cmd == "probe":
        return probe(args)
    try:
        return run(args)
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
