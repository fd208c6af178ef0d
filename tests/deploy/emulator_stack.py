"""The translated template created as a stack on the emulator's CloudFormation (moto server).

moto 5.2.x's CloudFormation has two gaps that break this template, and skips the resource
types it has no model for (docs/deploy.md, "Rehearsal"):

1. `AWS::ApiGateway::RestApi` ignores `Body`: the API gets no resources and no methods, and the
   `AWS::ApiGateway::Deployment` SAM generates then fails ("The REST API doesn't contain any
   methods"), which fails the whole CreateStack. Worked around in the template given to the
   emulator only: each path and operation of the OpenAPI body becomes an
   `AWS::ApiGateway::Resource` + `AWS::ApiGateway::Method` with the body's integration (type,
   method, URI), and the deployment depends on them. After creation the rehearsal reads the
   integration back and checks it is still the streaming one.
2. `AWS::KMS::Key` keeps a `KeyPolicy` given as a JSON object (as templates do) unserialised:
   the key is created, but every later KMS call naming it (DescribeKey, Encrypt, Decrypt, ...)
   fails with a 500 (moto's key-policy check does `json.loads` on a dict). Worked around in the
   emulator's copy: the same policy wrapped in `Fn::ToJsonString`.
3. Resource types it has no model for are skipped without an error (CREATE_COMPLETE, resource
   absent), and a `Ref`/`Fn::Sub` to a skipped resource resolves to nothing (the proxy's
   `TOLLGATE_PEPPER_SECRET_ID` silently vanishes). Worked around after CreateStack: each such
   resource is created through its own service's API from its template properties, resolved
   against the stack (`CREATORS`), and a function environment variable that named one is set
   to its value.
4. moto's IAM policy validator rejects an unquoted number as a condition value
   (`sts:DurationSeconds: 300`), which IAM accepts; the role policies are given to it with such
   values quoted (only when the template has one: with FederatedTokenAudiences set).
5. A Lambda function's Architectures, TracingConfig and LoggingConfig are dropped: reported,
   not checked (rehearsal.py).
6. A resource that names an attribute (`Fn::GetAtt`, `${X.Attr}`) of a skipped resource fails
   CreateStack: it is left out of the emulator's copy and created after the stack, like the
   skipped ones (a dashboard listing alarm ARNs).

Nothing here changes template.yaml: the substitutions apply to the emulator's copy and each is
listed in the rehearsal's table.
"""

from __future__ import annotations

import copy
import json
import re
import secrets
import string
from dataclasses import dataclass, field
from typing import Any, Callable

import boto3

ACCOUNT = "123456789012"  # moto's default account


# --------------------------------------------------------------------------------------------
# The emulator's copy of the template (gaps 1 and 2)
# --------------------------------------------------------------------------------------------
def for_emulator(tpl: dict) -> tuple[dict, dict[str, str]]:
    """The translated template with the OpenAPI bodies expressed as Resource + Method
    resources. Returns it and, per original logical id, the substitution made."""
    tpl = copy.deepcopy(tpl)
    res = tpl["Resources"]
    notes: dict[str, str] = {}
    for api_id, api in list(res.items()):
        if api["Type"] != "AWS::ApiGateway::RestApi" or "Body" not in api["Properties"]:
            continue
        body = api["Properties"].pop("Body")
        added: list[str] = []
        for n, (path, ops) in enumerate(body.get("paths", {}).items()):
            parent: Any = {"Fn::GetAtt": [api_id, "RootResourceId"]}
            for i, seg in enumerate(s for s in path.split("/") if s):
                rid = f"Emu{api_id}Path{n}Seg{i}"
                res[rid] = {"Type": "AWS::ApiGateway::Resource",
                            "Properties": {"RestApiId": {"Ref": api_id}, "ParentId": parent,
                                           "PathPart": seg}}
                parent = {"Ref": rid}
                added.append(rid)
            for op, spec in ops.items():
                if op == "parameters":
                    continue
                integ = spec["x-amazon-apigateway-integration"]
                verb = "ANY" if op == "x-amazon-apigateway-any-method" else op.upper()
                mid = f"Emu{api_id}Path{n}{verb}"
                res[mid] = {"Type": "AWS::ApiGateway::Method", "Properties": {
                    "RestApiId": {"Ref": api_id}, "ResourceId": parent, "HttpMethod": verb,
                    "AuthorizationType": "NONE",
                    "Integration": {"Type": integ["type"].upper(),
                                    "IntegrationHttpMethod": integ["httpMethod"],
                                    "Uri": integ["uri"]}}}
                added.append(mid)
        for r in res.values():
            if r["Type"] == "AWS::ApiGateway::Deployment" and r["Properties"].get("RestApiId") == {"Ref": api_id}:
                dep = r.get("DependsOn", [])
                r["DependsOn"] = (dep if isinstance(dep, list) else [dep]) + added
        rest = sorted(k for k in body if k not in ("paths", "openapi", "swagger", "info"))
        notes[api_id] = ("gap 1: moto ignores RestApi Body; its "
                         f"{sum(1 for a in added if 'Seg' in a)} path segment(s) and "
                         f"{sum(1 for a in added if 'Seg' not in a)} operation(s) created as "
                         "ApiGateway::Resource + Method with the body's integration"
                         + (f" (not carried over, so not checked: {', '.join(rest)})" if rest else ""))
    # Gap 6: a resource naming an attribute of a skipped one fails CreateStack ("Fn::GetAtt
    # references undefined resource"): it is left out of the emulator's copy and created after
    # the stack like the skipped ones (as is, transitively, anything that names it).
    out = {lid for lid, r in res.items() if r["Type"] in SKIPPED_BY_EMULATOR}
    deferred: set[str] = set()
    while True:
        more = {lid for lid, r in res.items() if lid not in out | deferred
                and (_names_attribute(r.get("Properties", {}), out | deferred)
                     or _names(r.get("Properties", {}), deferred))}
        if not more:
            break
        deferred |= more
    for lid in deferred:
        del res[lid]
        notes[lid] = ("gap 6: names an attribute of a resource moto's CloudFormation skips, which "
                      "fails CreateStack; left out of the emulator's copy and created after the "
                      "stack through its API")
    for r in res.values():
        dep = r.get("DependsOn")
        if dep:
            dep = [d for d in (dep if isinstance(dep, list) else [dep]) if d not in deferred]
            r["DependsOn"] = dep
    for key_id, key in res.items():
        pol = key["Properties"].get("KeyPolicy") if key["Type"] == "AWS::KMS::Key" else None
        if isinstance(pol, dict) and not (len(pol) == 1 and next(iter(pol)).startswith("Fn::")):
            key["Properties"]["KeyPolicy"] = {"Fn::ToJsonString": pol}
            notes[key_id] = ("gap 2: moto keeps a KeyPolicy object as is and every later KMS call "
                             "on the key fails (500); given as Fn::ToJsonString of the same policy")
    return tpl, notes


def _names_attribute(v: Any, ids: set[str]) -> bool:
    """v has a Fn::GetAtt (or a ${X.Attr} in a Fn::Sub) of one of ids."""
    if isinstance(v, list):
        return any(_names_attribute(x, ids) for x in v)
    if isinstance(v, dict):
        if "Fn::GetAtt" in v:
            a = v["Fn::GetAtt"]
            if (a[0] if isinstance(a, list) else a.split(".")[0]) in ids:
                return True
        if _sub_names(v, ids, r"\$\{(\w+)\.\w+\}"):
            return True
        return any(_names_attribute(x, ids) for x in v.values())
    return False


def _sub_names(v: dict, ids: set[str], pattern: str) -> bool:
    """v is a Fn::Sub whose text has a `pattern` match (group 1: a logical id) naming one of ids."""
    if "Fn::Sub" not in v:
        return False
    text = v["Fn::Sub"] if isinstance(v["Fn::Sub"], str) else v["Fn::Sub"][0]
    return any(m in ids for m in re.findall(pattern, text))


def _names(v: Any, ids: set[str]) -> bool:
    """v refers to one of ids in any way (Ref, GetAtt, Sub)."""
    if not ids:
        return False
    if isinstance(v, list):
        return any(_names(x, ids) for x in v)
    if isinstance(v, dict):
        if v.get("Ref") in ids or _names_attribute(v, ids) or _sub_names(v, ids, r"\$\{(\w+)[.}]"):
            return True
        return any(_names(x, ids) for x in v.values())
    return False


# --------------------------------------------------------------------------------------------
# Resolving template values against the created stack (for gap 3)
# --------------------------------------------------------------------------------------------
class Unresolved(Exception):
    pass


@dataclass
class Stack:
    """The created stack as the rehearsal sees it: template, parameters, conditions, each
    resource's physical id (from the emulator, or from a workaround) and a boto3 session."""
    tpl: dict
    params: dict[str, Any]
    region: str
    endpoint: str
    name: str
    physical: dict[str, str] = field(default_factory=dict)
    attrs: dict[tuple[str, str], Any] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)  # logical id -> a further workaround

    def client(self, service: str):
        return boto3.client(service, endpoint_url=self.endpoint, region_name=self.region,
                            aws_access_key_id="testing", aws_secret_access_key="testing")

    # ---- conditions ----
    def condition(self, name: str) -> bool:
        return bool(self._cond(self.tpl.get("Conditions", {})[name]))

    def _cond(self, c: Any) -> Any:
        if isinstance(c, dict) and len(c) == 1:
            (k, a), = c.items()
            if k == "Condition":
                return self.condition(a)
            if k == "Fn::Equals":
                x, y = (self.resolve(v) for v in a)
                return str(x) == str(y)
            if k == "Fn::Not":
                return not self._cond(a[0])
            if k == "Fn::And":
                return all(self._cond(v) for v in a)
            if k == "Fn::Or":
                return any(self._cond(v) for v in a)
        return self.resolve(c)

    def enabled(self, lid: str) -> bool:
        cond = self.tpl["Resources"][lid].get("Condition")
        return cond is None or self.condition(cond)

    # ---- intrinsic functions ----
    def resolve(self, v: Any) -> Any:
        if isinstance(v, list):
            out = [self.resolve(x) for x in v]
            return [x for x in out if x is not NOVALUE]
        if not isinstance(v, dict):
            return v
        if len(v) == 1:
            (k, a), = v.items()
            if k == "Ref":
                return self.ref(a)
            if k == "Fn::GetAtt":
                lid, attr = (a if isinstance(a, list) else a.split(".", 1))
                return self.getatt(lid, attr)
            if k == "Fn::Sub":
                s, extra = (a, {}) if isinstance(a, str) else (a[0], a[1])
                return self.sub(s, {n: self.resolve(x) for n, x in extra.items()})
            if k == "Fn::If":
                return self.resolve(a[1] if self.condition(a[0]) else a[2])
            if k == "Fn::Join":
                return a[0].join(str(x) for x in self.resolve(a[1]))
            if k == "Fn::Select":
                return self.resolve(a[1])[int(self.resolve(a[0]))]
            if k == "Fn::Split":
                return self.resolve(a[1]).split(a[0])
            if k == "Condition":
                return self.condition(a)
        out = {k: self.resolve(x) for k, x in v.items()}
        return {k: x for k, x in out.items() if x is not NOVALUE}

    def sub(self, s: str, extra: dict) -> str:
        def one(m):
            name = m.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in extra:
                return str(extra[name])
            if "." in name and name.split(".")[0] in self.tpl["Resources"]:
                lid, attr = name.split(".", 1)
                return str(self.getatt(lid, attr))
            return str(self.ref(name))
        return re.sub(r"\$\{([^}]+)\}", one, s)

    def ref(self, name: str) -> Any:
        pseudo = {"AWS::Region": self.region, "AWS::AccountId": ACCOUNT, "AWS::Partition": "aws",
                  "AWS::StackName": self.name, "AWS::URLSuffix": "amazonaws.com",
                  "AWS::NoValue": NOVALUE}
        if name in pseudo:
            return pseudo[name]
        if name in self.params:
            return self.params[name]
        if name in self.physical:
            return self.physical[name]
        raise Unresolved(f"Ref {name}: not created")

    def getatt(self, lid: str, attr: str) -> Any:
        if (lid, attr) in self.attrs:
            return self.attrs[(lid, attr)]
        if lid not in self.physical:
            raise Unresolved(f"GetAtt {lid}.{attr}: {lid} not created")
        pid, typ = self.physical[lid], self.tpl["Resources"][lid]["Type"]
        if attr == "Arn":
            if typ == "AWS::DynamoDB::Table":
                return self.client("dynamodb").describe_table(TableName=pid)["Table"]["TableArn"]
            if typ == "AWS::IAM::Role":
                return self.client("iam").get_role(RoleName=pid)["Role"]["Arn"]
            if typ == "AWS::Lambda::Function":
                return self.client("lambda").get_function_configuration(FunctionName=pid)["FunctionArn"]
            if typ == "AWS::KMS::Key":
                return self.client("kms").describe_key(KeyId=pid)["KeyMetadata"]["Arn"]
            if typ == "AWS::Logs::LogGroup":
                return f"arn:aws:logs:{self.region}:{ACCOUNT}:log-group:{pid}:*"
        if typ == "AWS::SNS::Topic" and attr in ("TopicArn", "TopicName"):
            return pid if attr == "TopicArn" else pid.split(":")[-1]
        if typ == "AWS::Lambda::Function" and attr == "Name":
            return pid
        if typ == "AWS::ApiGateway::RestApi" and attr == "RootResourceId":
            items = self.client("apigateway").get_resources(restApiId=pid)["items"]
            return next(i["id"] for i in items if i["path"] == "/")
        raise Unresolved(f"GetAtt {lid}.{attr} ({typ}): the rehearsal does not know this attribute")


class _NoValue:
    def __repr__(self):
        return "AWS::NoValue"


NOVALUE = _NoValue()


# --------------------------------------------------------------------------------------------
# Creators for the types moto's CloudFormation skips (gap 3)
# --------------------------------------------------------------------------------------------
def _secret(st: Stack, lid: str, p: dict) -> str:
    """AWS::SecretsManager::Secret with GenerateSecretString generated as Secrets Manager does
    (the same rule infra/local/resources.py follows)."""
    kw: dict[str, Any] = {"Name": p["Name"]}
    if "Description" in p:
        kw["Description"] = p["Description"]
    if "KmsKeyId" in p:
        kw["KmsKeyId"] = p["KmsKeyId"]
    g = p.get("GenerateSecretString")
    if g:
        alphabet = string.ascii_letters + string.digits
        if not g.get("ExcludePunctuation"):
            alphabet += "!#$%&()*+,-./:;<=>?@[]^_`{|}~"
        value = "".join(secrets.choice(alphabet) for _ in range(int(g.get("PasswordLength", 32))))
        if "SecretStringTemplate" in g:
            doc = json.loads(g["SecretStringTemplate"])
            doc[g["GenerateStringKey"]] = value
            kw["SecretString"] = json.dumps(doc)
        else:
            kw["SecretString"] = value
    else:
        kw["SecretString"] = p["SecretString"]
    return st.client("secretsmanager").create_secret(**kw)["ARN"]


def _quote_condition_numbers(doc: dict) -> tuple[dict, list[str]]:
    """IAM accepts unquoted numbers and booleans as condition values ("quotation marks are
    optional for numeric and Boolean values", IAM policy grammar); moto's validator rejects them
    (MalformedPolicyDocument). The same values, quoted."""
    doc = copy.deepcopy(doc)
    quoted = []
    sts = doc.get("Statement", [])
    for stmt in sts if isinstance(sts, list) else [sts]:
        for op, kv in stmt.get("Condition", {}).items():
            for key, val in kv.items():
                vals = val if isinstance(val, list) else [val]
                if any(isinstance(v, (int, float, bool)) for v in vals):
                    conv = [str(v).lower() if isinstance(v, bool) else str(v) for v in vals]
                    kv[key] = conv if isinstance(val, list) else conv[0]
                    quoted.append(f"{stmt.get('Sid', '?')} {op} {key}")
    return doc, quoted


def _role_policy(st: Stack, lid: str, p: dict) -> str:
    # moto's IAM validates the policy document's grammar here (as IAM would), more strictly
    # than IAM for numbers (gap 4).
    doc, quoted = _quote_condition_numbers(p["PolicyDocument"])
    if quoted:
        st.notes[lid] = ("gap 4: moto's IAM rejects unquoted numbers in conditions (IAM accepts them); quoted: "
                         + ", ".join(quoted))
    st.client("iam").put_role_policy(RoleName=p["RoleName"], PolicyName=p["PolicyName"],
                                     PolicyDocument=json.dumps(doc))
    return p["PolicyName"]


def _stage(st: Stack, lid: str, p: dict) -> str:
    apigw = st.client("apigateway")
    kw: dict[str, Any] = {"restApiId": p["RestApiId"], "stageName": p["StageName"],
                          "deploymentId": p["DeploymentId"]}
    if "TracingEnabled" in p:
        kw["tracingEnabled"] = bool(p["TracingEnabled"])
    apigw.create_stage(**kw)
    ops = []
    if "AccessLogSetting" in p:
        a = p["AccessLogSetting"]
        ops += [{"op": "replace", "path": "/accessLogSettings/destinationArn", "value": a["DestinationArn"]},
                {"op": "replace", "path": "/accessLogSettings/format", "value": a["Format"]}]
    for m in p.get("MethodSettings", []):
        base = f"/{m['ResourcePath'].replace('/', '~1')}/{m['HttpMethod']}"
        for key, path in (("ThrottlingBurstLimit", "throttling/burstLimit"),
                          ("ThrottlingRateLimit", "throttling/rateLimit"),
                          ("MetricsEnabled", "metrics/enabled"), ("LoggingLevel", "logging/loglevel"),
                          ("DataTraceEnabled", "logging/dataTrace")):
            if key in m:
                ops.append({"op": "replace", "path": f"{base}/{path}", "value": str(m[key]).lower()
                            if isinstance(m[key], bool) else str(m[key])})
    if ops:
        apigw.update_stage(restApiId=p["RestApiId"], stageName=p["StageName"], patchOperations=ops)
    return p["StageName"]


def _apigw_account(st: Stack, lid: str, p: dict) -> str:
    st.client("apigateway").update_account(patchOperations=[
        {"op": "replace", "path": "/cloudwatchRoleArn", "value": p["CloudWatchRoleArn"]}])
    return f"{st.name}-{lid}"


def _alarm(st: Stack, lid: str, p: dict) -> str:
    name = p.get("AlarmName", f"{st.name}-{lid}")
    st.attrs[(lid, "Arn")] = f"arn:aws:cloudwatch:{st.region}:{ACCOUNT}:alarm:{name}"
    kw = {k: p[k] for k in ("AlarmDescription", "Namespace", "MetricName", "Dimensions",
                             "Statistic", "Period", "EvaluationPeriods", "Threshold",
                             "ComparisonOperator", "TreatMissingData", "AlarmActions",
                             "DatapointsToAlarm", "Metrics", "OKActions") if k in p}
    kw["Dimensions"] = [{"Name": d["Name"], "Value": str(d["Value"])} for d in kw.get("Dimensions", [])]
    st.client("cloudwatch").put_metric_alarm(AlarmName=name, **kw)
    return name


def _log_filter(st: Stack, lid: str, p: dict) -> dict[str, str]:
    """What AWS::Logs::SubscriptionFilter and AWS::Logs::MetricFilter share: the Logs API's log
    group, filter name (CloudFormation's generated one when the template names none) and pattern."""
    return {"logGroupName": p["LogGroupName"], "filterName": p.get("FilterName", f"{st.name}-{lid}"),
            "filterPattern": p["FilterPattern"]}


def _subscription_filter(st: Stack, lid: str, p: dict) -> str:
    f = _log_filter(st, lid, p)
    # moto checks the destination function exists (it cannot deliver: MOTO-NOTES.md).
    st.client("logs").put_subscription_filter(**f, destinationArn=p["DestinationArn"])
    return f["filterName"]


def _sns_subscription(st: Stack, lid: str, p: dict) -> str:
    return st.client("sns").subscribe(TopicArn=p["TopicArn"], Protocol=p["Protocol"],
                                      Endpoint=p["Endpoint"])["SubscriptionArn"]


def _rotation_schedule(st: Stack, lid: str, p: dict) -> str:
    kw: dict[str, Any] = {"SecretId": p["SecretId"], "RotationLambdaARN": p["RotationLambdaARN"],
                          "RotationRules": p["RotationRules"]}
    if "RotateImmediatelyOnUpdate" in p:
        kw["RotateImmediately"] = bool(p["RotateImmediatelyOnUpdate"])
    return st.client("secretsmanager").rotate_secret(**kw)["ARN"]


def _metric_filter(st: Stack, lid: str, p: dict) -> str:
    f = _log_filter(st, lid, p)
    keys = {"MetricName": "metricName", "MetricNamespace": "metricNamespace", "MetricValue": "metricValue",
            "DefaultValue": "defaultValue", "Unit": "unit", "Dimensions": "dimensions"}
    st.client("logs").put_metric_filter(
        **f, metricTransformations=[{keys[k]: v for k, v in t.items()} for t in p["MetricTransformations"]])
    return f["filterName"]


def _dashboard(st: Stack, lid: str, p: dict) -> str:
    name = p.get("DashboardName", f"{st.name}-{lid}")
    json.loads(p["DashboardBody"])  # CloudWatch refuses a body that is not JSON
    st.client("cloudwatch").put_dashboard(DashboardName=name, DashboardBody=p["DashboardBody"])
    return name


def _web_acl(st: Stack, lid: str, p: dict) -> str:
    kw = {k: v for k, v in p.items() if k in ("Name", "Scope", "DefaultAction", "Description", "Rules",
                                            "VisibilityConfig", "CustomResponseBodies", "Tags")}
    acl = st.client("wafv2").create_web_acl(**kw)["Summary"]
    st.attrs[(lid, "Arn")] = acl["ARN"]
    st.attrs[(lid, "Id")] = acl["Id"]
    return f"{acl['Name']}|{acl['Id']}|{p['Scope']}"


def _web_acl_association(st: Stack, lid: str, p: dict) -> str:
    # moto checks the API Gateway stage exists.
    st.client("wafv2").associate_web_acl(WebACLArn=p["WebACLArn"], ResourceArn=p["ResourceArn"])
    return p["ResourceArn"]


# Types moto 5.2.5's CloudFormation has no model for: it skips them (gap 3). A resource of one
# created by the emulator fails the rehearsal (the list is stale).
SKIPPED_BY_EMULATOR = {
    "AWS::SecretsManager::Secret", "AWS::IAM::RolePolicy", "AWS::ApiGateway::Stage",
    "AWS::ApiGateway::Account", "AWS::CloudWatch::Alarm", "AWS::Logs::SubscriptionFilter",
    "AWS::SNS::Subscription", "AWS::SecretsManager::RotationSchedule", "AWS::Logs::MetricFilter",
    "AWS::WAFv2::WebACL", "AWS::WAFv2::WebACLAssociation",
}

# type -> (how, creator). `how` goes in the table.
CREATORS: dict[str, tuple[str, Callable[[Stack, str, dict], str]]] = {
    "AWS::SecretsManager::Secret": ("secretsmanager CreateSecret, GenerateSecretString generated as AWS does", _secret),
    "AWS::IAM::RolePolicy": ("iam PutRolePolicy (moto validates the document)", _role_policy),
    "AWS::ApiGateway::Stage": ("apigateway CreateStage + UpdateStage (access log, method settings)", _stage),
    "AWS::ApiGateway::Account": ("apigateway UpdateAccount cloudwatchRoleArn", _apigw_account),
    "AWS::CloudWatch::Alarm": ("cloudwatch PutMetricAlarm", _alarm),
    "AWS::Logs::SubscriptionFilter": ("logs PutSubscriptionFilter (destination must exist)", _subscription_filter),
    "AWS::SNS::Subscription": ("sns Subscribe", _sns_subscription),
    "AWS::SecretsManager::RotationSchedule": ("secretsmanager RotateSecret with the rotation function", _rotation_schedule),
    "AWS::Logs::MetricFilter": ("logs PutMetricFilter", _metric_filter),
    "AWS::CloudWatch::Dashboard": ("cloudwatch PutDashboard (the body must be JSON)", _dashboard),
    "AWS::WAFv2::WebACL": ("wafv2 CreateWebACL", _web_acl),
    "AWS::WAFv2::WebACLAssociation": ("wafv2 AssociateWebACL (the stage must exist)", _web_acl_association),
}
