"""Events that reach the function but are not ordinary text-JSON HTTP events still get a
provider-shaped answer, a request id and an audit line (defect 6).

Invalid UTF-8 sent to `make dev`'s URL never reaches the function: cargo lambda watch turns an
`application/json` body into a string and answers a bare 500 itself (infra/local/README.md).
These tests therefore invoke the function directly with the events API Gateway would send."""

import base64
import json
import urllib.error
import urllib.request

INVALID_UTF8 = b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"\xff\xfe"}]}'


def invoke(stack, event: dict):
    base = stack.url.split("/lambda-url/")[0]
    req = urllib.request.Request(
        f"{base}/2015-03-31/functions/proxy/invocations", data=json.dumps(event).encode(), method="POST"
    )
    try:
        with urllib.request.urlopen(req, timeout=20) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def assert_provider_400_with_audit(stack, status, headers, body):
    assert status == 400, (status, body)
    err = json.loads(body)["error"]
    assert err["type"] == "invalid_request_error"
    rid = {k.lower(): v for k, v in headers.items()}["x-tollgate-request-id"]
    a = stack.audit_for(rid)
    assert a["status"] == 400 and a["decision"] == "deny"


def test_rest_api_binary_body_with_invalid_utf8_gets_a_provider_shaped_400(stack):
    # API Gateway REST API with binary media types: the body arrives base64-encoded.
    event = {
        "resource": "/{proxy+}", "path": "/v1/chat/completions", "httpMethod": "POST",
        "headers": {"authorization": f"Bearer {stack.key}", "content-type": "application/json"},
        "multiValueHeaders": {
            "authorization": [f"Bearer {stack.key}"], "content-type": ["application/json"],
        },
        "queryStringParameters": None, "multiValueQueryStringParameters": None,
        "pathParameters": None, "stageVariables": None,
        "requestContext": {
            "accountId": "0", "resourceId": "r", "stage": "prod", "requestId": "rq",
            "identity": {"sourceIp": "127.0.0.1"}, "resourcePath": "/{proxy+}",
            "httpMethod": "POST", "apiId": "a", "path": "/prod/v1/chat/completions",
        },
        "body": base64.b64encode(INVALID_UTF8).decode(), "isBase64Encoded": True,
    }
    assert_provider_400_with_audit(stack, *invoke(stack, event))


def test_event_lambda_http_cannot_read_is_still_answered_and_audited(stack):
    # Not a complete API Gateway / ALB / Function URL event: lambda_http refuses it, and before
    # the fix the handler never ran (bare 500 from the emulator, 502 from API Gateway).
    event = {  # no requestContext: lambda_http matches none of its event types
        "path": "/v1/chat/completions",
        "httpMethod": "POST",
        "headers": {"authorization": f"Bearer {stack.key}", "content-type": "application/json"},
        "body": base64.b64encode(INVALID_UTF8).decode(), "isBase64Encoded": True,
    }
    assert_provider_400_with_audit(stack, *invoke(stack, event))
