"""The network controls of template.yaml (docs/deploy.md, "Network controls"), resolved for each
parameter choice the way CloudFormation resolves conditions, Fn::If, Ref and AWS::NoValue: the
API's resource policy, endpoint type and the WAF resources are what the doc says, and nothing is
there by default."""

from __future__ import annotations

import pytest

from rustscan import ROOT

NO_VALUE = object()


@pytest.fixture(scope="module")
def tpl() -> dict:
    from samtranslator.yaml_helper import yaml_parse

    return yaml_parse((ROOT / "template.yaml").read_text())


class Resolver:
    def __init__(self, tpl: dict, overrides: dict[str, str]):
        self.tpl = tpl
        self.params = {}
        for name, p in tpl["Parameters"].items():
            v = overrides.get(name, str(p.get("Default", "")))
            self.params[name] = v.split(",") if p["Type"] == "CommaDelimitedList" else v
        self.cache: dict[str, bool] = {}

    def cond(self, name: str) -> bool:
        if name not in self.cache:
            self.cache[name] = self.truth(self.tpl["Conditions"][name])
        return self.cache[name]

    def truth(self, c) -> bool:
        (fn, args), = c.items()
        if fn == "Condition":
            return self.cond(args)
        if fn == "Fn::Not":
            return not self.truth(args[0])
        if fn == "Fn::And":
            return all(self.truth(a) for a in args)
        if fn == "Fn::Or":
            return any(self.truth(a) for a in args)
        if fn == "Fn::Equals":
            a, b = (self.value(x) for x in args)
            return str(a) == str(b)
        raise AssertionError(f"condition function {fn} not handled")

    def value(self, v):
        if isinstance(v, dict) and len(v) == 1:
            (fn, args), = v.items()
            if fn == "Ref":
                if args == "AWS::NoValue":
                    return NO_VALUE
                return self.params.get(args, f"<{args}>")
            if fn == "Fn::If":
                return self.value(args[1] if self.cond(args[0]) else args[2])
            if fn == "Fn::Join":
                return args[0].join(self.value(args[1]))
            if fn.startswith("Fn::"):
                return v  # other intrinsics stay as they are
        if isinstance(v, dict):
            out = {k: self.value(x) for k, x in v.items()}
            return {k: x for k, x in out.items() if x is not NO_VALUE}
        if isinstance(v, list):
            return [x for x in (self.value(i) for i in v) if x is not NO_VALUE]
        return v

    def resources(self) -> dict[str, dict]:
        return {k: self.value(r) for k, r in self.tpl["Resources"].items()
                if "Condition" not in r or self.cond(r["Condition"])}


def api(tpl: dict, **overrides) -> tuple[dict, dict[str, dict]]:
    res = Resolver(tpl, overrides).resources()
    return res["Api"]["Properties"], res


CIDRS = "203.0.113.0/24,198.51.100.7/32"
VPCE = "vpce-0123456789abcdef0"


def statements(props: dict) -> list[dict]:
    return props["DefinitionBody"]["x-amazon-apigateway-policy"]["Statement"]


def test_defaults_have_no_policy_no_waf_and_a_regional_endpoint(tpl):
    props, res = api(tpl)
    assert "x-amazon-apigateway-policy" not in props["DefinitionBody"]
    assert props["EndpointConfiguration"] == {"Type": "REGIONAL"}
    assert not {"WebAcl", "WebAclAssociation"} & set(res)


def test_source_cidrs_deny_every_other_public_address(tpl):
    props, _ = api(tpl, AllowedSourceCidrs=CIDRS)
    allow, deny = statements(props)
    assert allow == {"Effect": "Allow", "Principal": "*", "Action": "execute-api:Invoke", "Resource": "execute-api:/*"}
    assert deny["Effect"] == "Deny" and deny["Resource"] == "execute-api:/*"
    assert deny["Condition"] == {"NotIpAddress": {"aws:SourceIp": CIDRS.split(",")}}
    assert props["EndpointConfiguration"] == {"Type": "REGIONAL"}


def test_private_mode_admits_only_the_endpoint(tpl):
    props, _ = api(tpl, PrivateApiVpcEndpointId=VPCE)
    assert props["EndpointConfiguration"] == {"Type": "PRIVATE", "VPCEndpointIds": [VPCE]}
    allow, deny = statements(props)
    assert allow["Effect"] == "Allow"
    assert deny["Condition"] == {"StringNotEquals": {"aws:SourceVpce": VPCE}}


def test_private_mode_with_cidrs_checks_the_address_inside_the_vpc(tpl):
    props, _ = api(tpl, PrivateApiVpcEndpointId=VPCE, AllowedSourceCidrs=CIDRS)
    conds = [s["Condition"] for s in statements(props) if s["Effect"] == "Deny"]
    assert {"NotIpAddress": {"aws:VpcSourceIp": CIDRS.split(",")}} in conds
    assert {"StringNotEquals": {"aws:SourceVpce": VPCE}} in conds
    assert not any("aws:SourceIp" in c.get("NotIpAddress", {}) for c in conds)


def test_waf_is_associated_with_the_stage(tpl):
    _, res = api(tpl, EnableWaf="true", WafRateLimit="1234")
    acl = res["WebAcl"]["Properties"]
    assert acl["Scope"] == "REGIONAL" and acl["DefaultAction"] == {"Allow": {}}
    groups = [r["Statement"]["ManagedRuleGroupStatement"]["Name"] for r in acl["Rules"]
              if "ManagedRuleGroupStatement" in r["Statement"]]
    assert groups == ["AWSManagedRulesAmazonIpReputationList", "AWSManagedRulesKnownBadInputsRuleSet"]
    (rate,) = [r for r in acl["Rules"] if "RateBasedStatement" in r["Statement"]]
    # a 429 (retryable for the SDKs), with a JSON body the ACL defines
    response = rate["Action"]["Block"]["CustomResponse"]
    assert response["ResponseCode"] == 429
    body = acl["CustomResponseBodies"][response["CustomResponseBodyKey"]]
    assert body["ContentType"] == "APPLICATION_JSON"
    import json
    err = json.loads(body["Content"])
    assert err["type"] == "error" and err["error"]["message"] and err["error"]["type"] == "rate_limit_error"
    assert rate["Statement"]["RateBasedStatement"]["Limit"] == "1234"
    assert rate["Statement"]["RateBasedStatement"]["AggregateKeyType"] == "IP"
    assert len({r["Priority"] for r in acl["Rules"]}) == len(acl["Rules"])
    arn = res["WebAclAssociation"]["Properties"]["ResourceArn"]["Fn::Sub"]
    assert arn.endswith("::/restapis/${Api}/stages/${Api.Stage}"), arn


def test_the_waf_rate_answer_is_a_rate_limit_error_for_both_sdks(tpl):
    """The stock SDKs, given the rate rule's answer (status and body from the template, served on
    loopback), raise their RateLimitError — the error they retry with backoff — with the message."""
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    import anthropic
    import openai

    _, res = api(tpl, EnableWaf="true")
    acl = res["WebAcl"]["Properties"]
    (rate,) = [r for r in acl["Rules"] if "RateBasedStatement" in r["Statement"]]
    response = rate["Action"]["Block"]["CustomResponse"]
    body = acl["CustomResponseBodies"][response["CustomResponseBodyKey"]]["Content"].encode()
    message = json.loads(body)["error"]["message"]

    class Waf(BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers.get("content-length", 0)))
            self.send_response(response["ResponseCode"])
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    srv = HTTPServer(("127.0.0.1", 0), Waf)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{srv.server_port}"
    try:
        with pytest.raises(openai.RateLimitError) as e:
            openai.OpenAI(base_url=f"{url}/v1", api_key="tgk_test_fake", max_retries=0).chat.completions.create(
                model="m", messages=[{"role": "user", "content": "hi"}])
        assert e.value.status_code == 429 and message in e.value.message
        with pytest.raises(anthropic.RateLimitError) as e:
            anthropic.Anthropic(base_url=url, api_key="tgk_test_fake", max_retries=0).messages.create(
                model="m", max_tokens=5, messages=[{"role": "user", "content": "hi"}])
        assert e.value.status_code == 429 and message in e.value.message
    finally:
        srv.shutdown()
