"""The deploy rehearsal's pieces that decide pass or fail, checked without the emulator or the
proxy: the API Gateway reading of a streamed response (lambda_runtime_api.read_as_api_gateway),
the Runtime API's chunked reading, and the emulator's copy of the template (emulator_stack)."""

from __future__ import annotations

import http.client
import json
import threading

import pytest

from emulator_stack import _quote_condition_numbers, for_emulator
from lambda_runtime_api import DELIMITER, HTTP_INTEGRATION, Invocation, RuntimeApi, read_as_api_gateway
from sam import translate


def streamed(chunks: list[bytes], headers: dict | None = None, trailers: dict | None = None) -> Invocation:
    inv = Invocation({})
    inv.headers = headers if headers is not None else {
        "lambda-runtime-function-response-mode": "streaming", "content-type": HTTP_INTEGRATION}
    inv.chunks = [(float(i), c) for i, c in enumerate(chunks)]
    inv.trailers = trailers or {}
    return inv


PRELUDE = json.dumps({"statusCode": 200, "headers": {"content-type": "text/event-stream"}}).encode()


def test_a_streamed_response_is_read_as_prelude_and_body_with_arrival_times():
    view = read_as_api_gateway(streamed([PRELUDE + DELIMITER, b"data: 1\n\n", b"data: 2\n\n"]))
    assert view.status == 200
    assert view.headers["content-type"] == "text/event-stream"
    assert view.body == b"data: 1\n\ndata: 2\n\n"
    assert [t for t, _ in view.body_chunks] == [1.0, 2.0]
    assert view.prelude_at == 0.0


def test_prelude_and_body_in_one_chunk_split_at_the_delimiter():
    view = read_as_api_gateway(streamed([PRELUDE + DELIMITER + b"{}"]))
    assert view.body == b"{}" and len(view.body_chunks) == 1


@pytest.mark.parametrize("inv, says", [
    (streamed([PRELUDE + b"{}"]), "delimiter"),
    (streamed([PRELUDE[:-1] + b', "pad": "' + b"x" * 17000 + b'"}' + DELIMITER]), "16 KB"),
    (streamed([PRELUDE + DELIMITER], headers={"content-type": HTTP_INTEGRATION}), "not a streamed response"),
    (streamed([PRELUDE + DELIMITER], headers={"lambda-runtime-function-response-mode": "streaming",
                                              "content-type": "application/json"}), "content type"),
    (streamed([PRELUDE + DELIMITER], trailers={"lambda-runtime-function-error-type": "Runtime.X"}), "trailers"),
    (streamed([json.dumps({"statusCode": "200"}).encode() + DELIMITER]), "statusCode"),
    (streamed([json.dumps({"statusCode": 200, "headers": {"a": 1}}).encode() + DELIMITER]), "headers"),
])
def test_what_api_gateway_would_refuse_fails(inv, says):
    with pytest.raises(AssertionError, match=says):
        read_as_api_gateway(inv)


def test_the_runtime_api_hands_out_the_event_and_reads_a_chunked_streamed_response():
    api = RuntimeApi("arn:aws:lambda:us-east-1:123456789012:function:f")
    result = {}

    def function():
        c = http.client.HTTPConnection(api.address)
        c.request("GET", "/2018-06-01/runtime/invocation/next")
        r = c.getresponse()
        rid, event = r.getheader("Lambda-Runtime-Aws-Request-Id"), json.loads(r.read())
        c.putrequest("POST", f"/2018-06-01/runtime/invocation/{rid}/response")
        c.putheader("Lambda-Runtime-Function-Response-Mode", "streaming")
        c.putheader("Content-Type", HTTP_INTEGRATION)
        c.putheader("Transfer-Encoding", "chunked")
        c.putheader("Trailer", "Lambda-Runtime-Function-Error-Type")
        c.endheaders()
        for part in (PRELUDE + DELIMITER, json.dumps(event).encode()):
            c.send(b"%x\r\n%s\r\n" % (len(part), part))
        c.send(b"0\r\n\r\n")
        result["status"] = c.getresponse().status

    t = threading.Thread(target=function)
    t.start()
    try:
        inv = api.invoke({"hello": "world"}, timeout=10)
    finally:
        t.join(10)
        api.close()
    view = read_as_api_gateway(inv)
    assert json.loads(view.body) == {"hello": "world"}
    assert len(inv.chunks) == 2 and result["status"] == 202


def test_the_emulator_copy_keeps_the_streaming_integration_and_a_string_key_policy():
    tpl = translate()
    emu, notes = for_emulator(tpl)
    api = next(k for k, r in tpl["Resources"].items() if r["Type"] == "AWS::ApiGateway::RestApi")
    methods = [r for r in emu["Resources"].values() if r["Type"] == "AWS::ApiGateway::Method"]
    assert methods and all("response-streaming-invocations" in json.dumps(m["Properties"]["Integration"]["Uri"])
                           for m in methods)
    assert "Body" not in emu["Resources"][api]["Properties"] and api in notes
    key = next(r for r in emu["Resources"].values() if r["Type"] == "AWS::KMS::Key")
    assert "Fn::ToJsonString" in key["Properties"]["KeyPolicy"]
    assert "Body" in tpl["Resources"][api]["Properties"], "the translated template itself is unchanged"


def test_condition_numbers_are_quoted_and_nothing_else_changes():
    doc = {"Statement": [{"Sid": "A", "Condition": {"NumericLessThanEquals": {"k": 300},
                                                    "Bool": {"b": True}, "StringEquals": {"s": ["x"]}}}]}
    out, quoted = _quote_condition_numbers(doc)
    assert out["Statement"][0]["Condition"] == {"NumericLessThanEquals": {"k": "300"}, "Bool": {"b": "true"},
                                                "StringEquals": {"s": ["x"]}}
    assert len(quoted) == 2 and doc["Statement"][0]["Condition"]["NumericLessThanEquals"]["k"] == 300


def test_a_resource_naming_an_attribute_of_a_skipped_one_is_left_out_with_what_names_it():
    tpl = {"Resources": {
        "Alarm": {"Type": "AWS::CloudWatch::Alarm", "Properties": {}},
        "Board": {"Type": "AWS::CloudWatch::Dashboard", "Properties": {
            "DashboardBody": {"Fn::Sub": '{"alarms": ["${Alarm.Arn}"]}'}}},
        "Uses": {"Type": "AWS::SNS::Topic", "DependsOn": ["Board"], "Properties": {"TopicName": {"Ref": "Board"}}},
        "Plain": {"Type": "AWS::SNS::Topic", "DependsOn": "Board", "Properties": {"TopicName": {"Ref": "Alarm"}}},
    }}
    emu, notes = for_emulator(tpl)
    assert set(emu["Resources"]) == {"Alarm", "Plain"}, "Board (GetAtt) and Uses (Ref to Board) are left out"
    assert {"Board", "Uses"} <= set(notes) and emu["Resources"]["Plain"]["DependsOn"] == []
