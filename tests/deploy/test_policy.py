"""Policy-vs-code and environment checks (docs/deploy.md, "Checks").

From template.yaml translated by SAM's own translator, each function's IAM role is compared
with the AWS calls its code can make:

- shared/aws/aws-calls.toml declares every call of every adapter method; the adapter test scans
  shared/aws/src/*.rs and fails on an SDK call that is not declared, or a declaration the code
  does not make.
- functions/<name>/aws-calls.toml declares which adapters the function builds and which of their
  methods it calls; the function test fails when an adapter method named in the function's
  crates is neither declared used nor declared not called (with why).
- The policy test fails when a declared call is not allowed by the role, and when the role
  allows an action on a resource that no declared call (or the Lambda runtime: logs, X-Ray,
  KMS through an encrypting service) needs.
- The environment test fails when the code names a TOLLGATE_ variable the declaration does not
  account for, when a required variable is not set by the function's Environment, and when the
  template sets a variable nobody reads.

Statements and variables behind a template condition (Fn::If) are treated as present.
"""

from __future__ import annotations

import fnmatch
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

from rustscan import ROOT, SDK_OPS, blank_literals, pascal, sdk_calls, source_text, workspace_deps
from sam import translate

ADAPTERS_DIR = ROOT / "shared" / "aws"
ADAPTER_DECL = tomllib.loads((ADAPTERS_DIR / "aws-calls.toml").read_text())
FUNCTION_DECLS = {p.parent.name: tomllib.loads(p.read_text())
                  for p in sorted((ROOT / "functions").glob("*/aws-calls.toml"))}
# Crates never part of a deployed function's AWS path.
NOT_DEPLOYED = {"memory", "testkit", "mock-provider"}


# --------------------------------------------------------------------------------------------
# The translated template
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def translated() -> dict:
    return translate()


SECRET_ARN = re.compile(r"arn:\$\{AWS::Partition\}:secretsmanager:\$\{AWS::Region\}:\$\{AWS::AccountId\}:secret:")


def norm(v) -> list[str]:
    """A CloudFormation value as resource tokens: logical ids, `X/index/...`, `secret:<name>`,
    `*`. Both branches of an Fn::If; AWS::NoValue dropped."""
    if isinstance(v, list):
        return [t for x in v for t in norm(x)]
    if isinstance(v, str):
        return [SECRET_ARN.sub("secret:", v)]
    if isinstance(v, dict) and len(v) == 1:
        (k, a), = v.items()
        if k == "Ref":
            return [] if a == "AWS::NoValue" else [a]
        if k == "Fn::GetAtt":
            return [a[0] if isinstance(a, list) else a.split(".")[0]]
        if k == "Fn::Sub":
            s = a if isinstance(a, str) else a[0]
            s = re.sub(r"\$\{(\w+)\.Arn\}", r"\1", s)
            s = re.sub(r"\$\{(\w+)\}", r"\1", s)
            return [SECRET_ARN.sub("secret:", s)]
        if k == "Fn::If":
            return norm(a[1]) + norm(a[2])
    return [repr(v)]


@dataclass
class Stmt:
    where: str
    actions: list[str]
    resources: list[str]
    condition: dict

    def via_services(self) -> set[str]:
        vals = []
        for op, kv in self.condition.items():
            if "kms:ViaService" in kv:
                vals += norm(kv["kms:ViaService"])
        return {v.split(".")[0] for v in vals}

    def cond(self, op: str, key: str):
        kv = self.condition.get(op, {})
        return kv.get(key)


def role_statements(tpl: dict, role: str) -> list[Stmt]:
    out = []

    def add(where: str, doc: dict):
        sts = doc.get("Statement", [])
        sts = sts if isinstance(sts, list) else [sts]
        flat = []
        for s in sts:
            if isinstance(s, dict) and "Fn::If" in s:  # a conditional statement: present
                flat += [b for b in s["Fn::If"][1:] if b != {"Ref": "AWS::NoValue"}]
            else:
                flat.append(s)
        for i, s in enumerate(flat):
            if s.get("Effect") != "Allow":
                continue
            acts = s.get("Action", [])
            out.append(Stmt(f"{where} {s.get('Sid', '#%d' % i)}",
                            acts if isinstance(acts, list) else [acts],
                            norm(s.get("Resource", [])), s.get("Condition", {})))

    res = tpl["Resources"]
    r = res[role]["Properties"]
    assert not r.get("ManagedPolicyArns"), f"{role}: managed policies cannot be checked; use inline statements"
    for p in r.get("Policies", []):
        add(f"{role}/{p['PolicyName']}", p["PolicyDocument"])
    for name, x in res.items():
        if x["Type"] in ("AWS::IAM::RolePolicy", "AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            p = x["Properties"]
            roles = norm(p.get("RoleName", [])) + norm(p.get("Roles", []))
            if role in roles:
                add(name, p["PolicyDocument"])
    return out


# --------------------------------------------------------------------------------------------
# Adapters: declarations vs code
# --------------------------------------------------------------------------------------------
def adapter_methods() -> dict[str, list[dict]]:
    return {f"{t}.{m}": calls for t, ms in ADAPTER_DECL.items() if isinstance(ms, dict)
            for m, calls in ms.items()}


def test_every_adapter_call_is_declared_and_every_declaration_is_made():
    declared = adapter_methods()
    helpers = set(ADAPTER_DECL.get("helpers", []))
    found: dict[str, set[str]] = {}
    problems = []
    for f in sorted((ADAPTERS_DIR / "src").glob("*.rs")):
        ops, unknown = sdk_calls(f)
        for item, calls in unknown.items():
            problems.append(f"{f.name}: {item} calls client.{sorted(calls)}: not an SDK operation "
                            "tests/deploy/rustscan.py knows (add it to SDK_OPS)")
        for item, o in ops.items():
            if o and item not in helpers:
                found.setdefault(item, set()).update(f"{SDK_OPS[x]}:{pascal(x)}" for x in o)
    assert found, "the scan found no SDK call at all: rustscan.py no longer matches the code"
    for item, o in sorted(found.items()):
        want = {c["op"] for c in declared.get(item, [])}
        if item not in declared:
            problems.append(f"{item} calls {sorted(o)} but shared/aws/aws-calls.toml does not declare it")
        elif want != o:
            problems.append(f"{item}: code calls {sorted(o)}, aws-calls.toml declares {sorted(want)}")
    for item in sorted(set(declared) - set(found)):
        problems.append(f"{item} is declared in shared/aws/aws-calls.toml but makes no SDK call in shared/aws/src")
    assert not problems, "\n".join(problems)


# --------------------------------------------------------------------------------------------
# Functions: declarations vs code
# --------------------------------------------------------------------------------------------
def function_dirs(name: str, with_adapters: bool) -> list[Path]:
    skip = NOT_DEPLOYED | (set() if with_adapters else {"aws"})
    return [d for d in workspace_deps(ROOT / "functions" / name) if d.name not in skip]


def aws_adapters_fields() -> set[str]:
    lib = (ADAPTERS_DIR / "src" / "lib.rs").read_text()
    body = lib[lib.index("pub struct AwsAdapters"):]
    body = body[:body.index("}")]
    return set(re.findall(r"Arc<(\w+)>", body))


@pytest.mark.parametrize("name", sorted(FUNCTION_DECLS))
def test_function_declaration_matches_its_code(name):
    decl = FUNCTION_DECLS[name]
    types = {t for t in ADAPTER_DECL if isinstance(ADAPTER_DECL[t], dict)}
    own = blank_literals(source_text([ROOT / "functions" / name]))
    built = {t for t in types if re.search(rf"\b{t}\b", own)}
    if re.search(r"\bAwsAdapters\b", own):
        built |= aws_adapters_fields()
    assert built == set(decl["adapters"]), (
        f"functions/{name} builds {sorted(built)}; aws-calls.toml declares {sorted(decl['adapters'])}")

    code = blank_literals(source_text(function_dirs(name, with_adapters=False)))
    named = set()
    for t in decl["adapters"]:
        for m in ADAPTER_DECL[t]:
            if re.search(rf"\.\s*{m}\s*\(", code):
                named.add(f"{t}.{m}")
    uses, not_called = set(decl.get("uses", {})), set(decl.get("not_called", {}))
    problems = []
    for k in sorted(named - uses - not_called):
        problems.append(f"{k} is called in functions/{name}'s crates: add it to [uses] (or [not_called] with why)")
    for k in sorted((uses | not_called) - named):
        problems.append(f"{k} is declared but no call to it is in functions/{name}'s crates")
    for k in sorted(uses & not_called):
        problems.append(f"{k} is both used and not called")
    assert not problems, "\n".join(problems)


# --------------------------------------------------------------------------------------------
# Policy vs declared calls
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Need:
    action: str
    resource: str
    why: str
    attributes: tuple | None = None
    context: tuple | None = None


def function_resource(tpl: dict, decl: dict) -> dict:
    fid = decl["function"]
    res = tpl["Resources"][fid]
    assert res["Type"] == "AWS::Lambda::Function", f"{fid} is not a function in the translated template"
    return res["Properties"]


def needs_of(tpl: dict, name: str) -> tuple[list[Need], list[str]]:
    decl = FUNCTION_DECLS[name]
    props = function_resource(tpl, decl)
    env = props.get("Environment", {}).get("Variables", {})
    adapters = adapter_methods()
    needs, problems = [], []
    for method, spec in decl.get("uses", {}).items():
        spec = spec if isinstance(spec, dict) else {"why": spec}
        calls = adapters[method]
        if "only" in spec:
            calls = [c for c in calls if c["op"] in spec["only"]]
        for c in calls:
            for a in c.get("iam", [c["op"]]):
                if c["resource"] != "caller":
                    targets = [c["resource"]]
                else:
                    # `resources` = [...] for every action of the method's caller calls, or
                    # { action = [...] } when they act on different resources
                    given = spec.get("resources", [])
                    targets = given.get(a, []) if isinstance(given, dict) else given
                if not targets:
                    problems.append(f"{method}: {a} acts on a `caller` resource; [uses] must name it in `resources`")
                for t in targets:
                    if t.startswith("env:"):
                        var, _, suffix = t[4:].partition("/")
                        if var not in env:
                            problems.append(f"{method} needs {var} but {decl['function']}'s Environment does not set it")
                            continue
                        toks = [x + ("/" + suffix if suffix else "") for x in norm(env[var])]
                    else:
                        toks = [t]  # a logical id, a secret:<name> pattern or *
                    for tok in toks:
                        needs.append(Need(a, tok, method, tuple(c["attributes"]) if "attributes" in c else None,
                                          tuple(c["context"]) if "context" in c else None))
    return needs, problems


def matches(pattern: str, value: str) -> bool:
    return fnmatch.fnmatchcase(value.lower(), pattern.lower())


def satisfies(s: Stmt, n: Need) -> bool:
    if not any(matches(a, n.action) for a in s.actions):
        return False
    if not any(matches(r, n.resource) for r in s.resources):
        return False
    if s.via_services():
        return False  # only for calls a service makes on the function's behalf
    attrs = s.cond("ForAllValues:StringEquals", "dynamodb:Attributes")
    if attrs is not None and n.action.endswith("UpdateItem"):
        if not n.attributes or not set(n.attributes) <= set(attrs):
            return False
    keys = s.cond("ForAllValues:StringEquals", "kms:EncryptionContextKeys")
    if keys is not None and (not n.context or not set(n.context) <= set(keys)):
        return False
    for k, v in s.condition.get("Null", {}).items():
        m = re.fullmatch(r"kms:EncryptionContext:(.+)", k)
        if m and str(v).lower() == "false" and (not n.context or m.group(1) not in n.context):
            return False
    # Other condition keys only narrow a statement further: not checked here.
    return True


# Calls a service makes with the function's credentials when the function uses it on a resource
# encrypted with a customer managed key: required, and optional extras.
KMS_VIA_REQUIRED = {"dynamodb": {"kms:Decrypt"}, "secretsmanager": {"kms:Decrypt"},
                    "sns": {"kms:Decrypt", "kms:GenerateDataKey"}}
KMS_VIA_OPTIONAL = {"kms:Decrypt", "kms:GenerateDataKey", "kms:DescribeKey"}
SM_WRITES = {"secretsmanager:PutSecretValue", "secretsmanager:CreateSecret"}


@pytest.mark.parametrize("name", sorted(FUNCTION_DECLS))
def test_role_allows_exactly_the_declared_calls(translated, name):
    decl = FUNCTION_DECLS[name]
    props = function_resource(translated, decl)
    role = norm(props["Role"])
    assert len(role) == 1, f"{decl['function']}: role {role} is not one role of this template"
    stmts = role_statements(translated, role[0])
    needs, problems = needs_of(translated, name)

    # The Lambda runtime writes the function's log group; X-Ray when tracing may be on.
    runtime = []
    for g in norm(props.get("LoggingConfig", {}).get("LogGroup", [])):
        runtime += [Need("logs:CreateLogStream", g, "Lambda runtime logs"),
                    Need("logs:PutLogEvents", g, "Lambda runtime logs")]
    optional = []
    if "TracingConfig" in props:
        optional += [Need("xray:PutTraceSegments", "*", "tracing"), Need("xray:PutTelemetryRecords", "*", "tracing")]

    for n in needs + runtime:
        if not any(satisfies(s, n) for s in stmts):
            problems.append(f"NOT ALLOWED: {n.action} on {n.resource} (for {n.why})"
                            + (f" attributes {list(n.attributes)}" if n.attributes else "")
                            + (f" context {list(n.context)}" if n.context else ""))

    services = {n.action.split(":")[0] for n in needs}
    via_required = {(a, svc) for svc in services for a in KMS_VIA_REQUIRED.get(svc, ())}
    if any(n.action in SM_WRITES for n in needs):
        via_required.add(("kms:GenerateDataKey", "secretsmanager"))
    for a, svc in sorted(via_required):
        if not any(svc in s.via_services() and any(matches(x, a) for x in s.actions) for s in stmts):
            problems.append(f"NOT ALLOWED: {a} through {svc} (the function uses {svc} on resources encrypted with the stack's key)")

    for s in stmts:
        via = s.via_services()
        for a in s.actions:
            if via:
                used = [v for v in via if v in services and any(matches(a, x) for x in KMS_VIA_OPTIONAL)]
                if len(used) < len(via):
                    problems.append(f"UNUSED: {s.where} allows {a} through {sorted(via - set(used))}: "
                                    f"the function does not use that service (uses {sorted(services)})")
                continue
            for r in s.resources:
                if not any(matches(a, n.action) and matches(r, n.resource) for n in needs + runtime + optional):
                    problems.append(f"UNUSED: {s.where} allows {a} on {r}: no declared call of "
                                    f"functions/{name}/aws-calls.toml needs it")
    assert not problems, f"{decl['function']} ({role[0]}):\n" + "\n".join(problems)


# --------------------------------------------------------------------------------------------
# Environment
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(FUNCTION_DECLS))
def test_environment_matches_the_code(translated, name):
    decl = FUNCTION_DECLS[name]
    env_decl = decl.get("env", {})
    required = set(env_decl.get("required", {}))
    optional = set(env_decl.get("optional", {}))
    not_read = set(env_decl.get("not_read", {}))
    runtime = set(env_decl.get("runtime", {}))
    text = source_text(function_dirs(name, with_adapters=True))
    named = set(re.findall(r'"(TOLLGATE_[A-Z0-9_]+)"', text))
    assert not re.search(r'"TOLLGATE_[A-Z0-9_]*\{', text), "a TOLLGATE_ name built with format!: the scan cannot see it"
    env = function_resource(translated, decl).get("Environment", {}).get("Variables", {})
    problems = []
    for v in sorted(named - required - optional - not_read):
        problems.append(f"the code names {v}: declare it in functions/{name}/aws-calls.toml [env.*]")
    for v in sorted((required | optional | not_read) - named):
        problems.append(f"{v} is declared but no code of functions/{name} names it")
    for v in sorted(required - set(env)):
        problems.append(f"{v} is required but {decl['function']}'s Environment does not set it")
    for v in sorted(not_read & set(env)):
        problems.append(f"{v} is set by the template but the function does not read it")
    for v in sorted(set(env) - required - optional - runtime):
        problems.append(f"the template sets {v} but nothing in functions/{name} reads it "
                        "(or declare it under [env.runtime] with the library that does)")
    for v in sorted(runtime - set(env)):
        problems.append(f"[env.runtime] {v} is not set by the template")
    assert not problems, "\n".join(problems)
