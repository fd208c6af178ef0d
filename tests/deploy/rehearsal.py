#!/usr/bin/env python3
"""Deploy rehearsal, `make deploy-check` (docs/deploy.md, "Rehearsal").

1. template.yaml translated by SAM's translator (sam.py, the same translation the policy check
   reads) is created as a stack on the emulator's CloudFormation (a moto server of its own on a
   free port), twice: with the default parameters, and with every optional part switched on.
   A table lists every resource of the translated template: created, created with an emulator
   gap worked around (which, how), or not supported by the emulator (which). The emulator's
   gaps and their workarounds are in emulator_stack.py.
2. On each stack, the proxy binary (target/debug/proxy) is run the way Lambda runs it, against a Lambda
   Runtime API (tests/support/lambda_runtime_api.py) that plays API Gateway's
   InvokeWithResponseStream, with the environment the stack gave the function, the stack's
   tables, a tenant and key seeded with the CLI and the mock provider; events/' API Gateway REST
   samples are sent and each streamed response is read as API Gateway reads it (JSON prelude, 8 NUL bytes, body).

Fails (exit 1) when stack creation fails or rolls back, when a resource the emulator can create
is not created, when the template has a resource this rehearsal does not account for (a type
neither created by the emulator nor handled by a workaround), or when an invocation's response
is not what API Gateway needs.

Usage: .venv/bin/python tests/deploy/rehearsal.py [--stack-only]
"""

from __future__ import annotations

import argparse
import fnmatch
import io
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1] / "support"))  # lambda_runtime_api

from all_options import ON as ALL_OPTIONS_ON  # noqa: E402
from emulator_stack import ACCOUNT, CREATORS, SKIPPED_BY_EMULATOR, Stack, Unresolved, for_emulator  # noqa: E402
from sam import CODE_BUCKET, CODE_KEY, ROOT, translate  # noqa: E402

VENV = ROOT / ".venv"
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))

# Resource types the emulator can neither create nor have created for it here: type -> why.
# (Empty today: every type of the template is created, by the emulator or a workaround.)
NOT_SUPPORTED: dict[str, str] = {}

# Function settings moto's CloudFormation does not keep (gap 5): reported, not checked.
DROPPED_FUNCTION_SETTINGS = ("Architectures", "TracingConfig", "LoggingConfig")

# The two parameter sets rehearsed. "all options" switches every condition of the template on
# (the secret ARNs are made in the emulator first, see main()).
DEFAULTS: dict[str, str] = {}


def all_options(tpl: dict, secret_arn: str) -> dict[str, str]:
    """Every optional part on: the values template-checks scans with (all_options.ON), except
    the managed token's secret, which must exist in the emulator for its rotation schedule."""
    on = {k: str(json.loads(v)) for k, v in ALL_OPTIONS_ON.items()}
    on["ManagedTokenSecretArn"] = secret_arn
    return {k: v for k, v in on.items() if k in tpl.get("Parameters", {})}  # --template: an older one


def say(msg: str) -> None:
    print(f"[deploy-check] {msg}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_moto(state: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    log = open(state / "moto.log", "w")
    proc = subprocess.Popen([str(VENV / "bin" / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    for _ in range(150):
        try:
            urllib.request.urlopen(url + "/moto-api/", timeout=1)
            return proc, url
        except OSError:
            if proc.poll() is not None:
                break
            time.sleep(0.2)
    raise SystemExit(f"the emulator did not start (see {state / 'moto.log'})")


# --------------------------------------------------------------------------------------------
# Part 1: the stack
# --------------------------------------------------------------------------------------------
class Result:
    def __init__(self):
        self.rows: dict[str, dict[str, str]] = {}  # logical id -> variant -> cell
        self.legends: dict[str, str] = {}  # name -> what it is
        self.failures: list[str] = []
        self.log: Path | None = None  # the emulator's log
        self.invocations: list[tuple[str, int, str]] = []

    def cell(self, lid: str, variant: str, text: str) -> None:
        self.rows.setdefault(lid, {})[variant] = text

    def legend(self, name: str, text: str) -> None:
        self.legends.setdefault(name, text)

    def fail(self, msg: str) -> None:
        self.failures.append(msg)
        say("FAIL " + msg)


def parameter_values(tpl: dict, given: dict[str, str]) -> dict:
    """Parameters as CloudFormation resolves them (defaults, lists split)."""
    out = {}
    for name, p in tpl.get("Parameters", {}).items():
        v = given.get(name, p.get("Default"))
        if p.get("Type") == "CommaDelimitedList":
            v = v.split(",") if isinstance(v, str) else v
        elif p.get("Type") == "Number":  # a property of an integer type gets a number
            v = float(v) if "." in str(v) else int(v)
        out[name] = v
    return out


def create(variant: str, region: str, endpoint: str, translated: dict, params: dict[str, str],
           result: Result) -> Stack | None:
    emu_tpl, emu_notes = for_emulator(translated)
    name = "tollgate"
    st = Stack(translated, parameter_values(translated, params), region, endpoint, name)
    cf = st.client("cloudformation")
    s3 = st.client("s3")
    if CODE_BUCKET not in {b["Name"] for b in s3.list_buckets()["Buckets"]}:
        s3.create_bucket(Bucket=CODE_BUCKET)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:  # the code is not run by the emulator: a placeholder
        z.writestr("bootstrap", "#!/bin/sh\nexit 1\n")
    s3.put_object(Bucket=CODE_BUCKET, Key=CODE_KEY, Body=buf.getvalue())

    say(f"{variant}: CreateStack {name} in {region} ({len(translated['Resources'])} resources translated)")
    try:
        cf.create_stack(StackName=name, TemplateBody=json.dumps(emu_tpl),
                        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in params.items()],
                        Capabilities=["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"])
    except Exception as e:  # the emulator creates synchronously: a failed resource fails the call
        result.fail(f"{variant}: CreateStack failed: {str(e)[:300]} (the emulator's log: {result.log})")
        return None
    for _ in range(120):
        stack = cf.describe_stacks(StackName=name)["Stacks"][0]
        if not stack["StackStatus"].endswith("_IN_PROGRESS"):
            break
        time.sleep(0.5)
    if stack["StackStatus"] != "CREATE_COMPLETE":
        result.fail(f"{variant}: stack ended {stack['StackStatus']}: {stack.get('StackStatusReason')}")
        for ev in cf.describe_stack_events(StackName=name)["StackEvents"]:
            if "FAILED" in ev["ResourceStatus"]:
                result.fail(f"{variant}: {ev['LogicalResourceId']} {ev['ResourceStatus']}: {ev.get('ResourceStatusReason')}")
        return None

    created = {}
    for r in cf.list_stack_resources(StackName=name)["StackResourceSummaries"]:
        if r["LogicalResourceId"]:
            created[r["LogicalResourceId"]] = r
    for lid, r in created.items():
        if lid in translated["Resources"]:
            if r["ResourceStatus"] != "CREATE_COMPLETE":
                result.fail(f"{variant}: {lid} is {r['ResourceStatus']}")
            st.physical[lid] = r["PhysicalResourceId"]
        elif lid not in emu_tpl["Resources"]:
            result.fail(f"{variant}: the emulator created {lid}, which is in no template")

    # Gap 3: what the emulator skipped, created through the service APIs, in dependency order.
    pending = [lid for lid in translated["Resources"] if lid not in created and st.enabled(lid)]
    unresolved: dict[str, str] = {}
    how: dict[str, str] = {}
    while pending:
        progress = False
        for lid in list(pending):
            typ = translated["Resources"][lid]["Type"]
            if typ not in CREATORS:
                continue
            try:
                props = st.resolve(translated["Resources"][lid].get("Properties", {}))
            except Unresolved as e:
                unresolved[lid] = str(e)
                continue
            label, fn = CREATORS[typ]
            try:
                st.physical[lid] = fn(st, lid, props)
                how[lid] = label
            except Exception as e:
                result.fail(f"{variant}: {lid} ({typ}) failed through the workaround ({label}): {e}")
                st.physical[lid] = "<failed>"
            pending.remove(lid)
            progress = True
        if not progress:
            break

    # Function environments: values that named a skipped resource vanished; set them now, and
    # check every variable the template sets is what the function has.
    lam = st.client("lambda")
    dropped: dict[str, list[str]] = {}
    for lid, r in translated["Resources"].items():
        if r["Type"] != "AWS::Lambda::Function" or lid not in created:
            continue
        want = {k: str(v) for k, v in st.resolve(r["Properties"].get("Environment", {}).get("Variables", {})).items()}
        have = lam.get_function_configuration(FunctionName=st.physical[lid]).get("Environment", {}).get("Variables", {})
        have = {k: str(v) for k, v in have.items()}
        missing = sorted(k for k in want if k not in have)
        wrong = sorted(k for k in want if k in have and have[k] != want[k])
        if wrong or set(have) - set(want):
            result.fail(f"{variant}: {lid} environment differs from the template: {wrong or sorted(set(have) - set(want))}")
        if missing:
            lam.update_function_configuration(FunctionName=st.physical[lid], Environment={"Variables": want})
            how[lid] = f"Environment {', '.join(missing)} set after the skipped resource was created"
        # The other settings: those the emulator keeps must be the template's; those it drops
        # are listed (not checked here).
        p = st.resolve(r["Properties"])
        conf = lam.get_function_configuration(FunctionName=st.physical[lid])
        for k in ("MemorySize", "Timeout", "Runtime", "Handler", "Role"):
            if str(p.get(k)) != str(conf.get(k)):
                result.fail(f"{variant}: {lid} {k} is {conf.get(k)!r}, the template says {p.get(k)!r}")
        conc = lam.get_function_concurrency(FunctionName=st.physical[lid]).get("ReservedConcurrentExecutions")
        if str(p.get("ReservedConcurrentExecutions")) != str(conc):
            result.fail(f"{variant}: {lid} reserved concurrency is {conc}, the template says {p.get('ReservedConcurrentExecutions')}")
        dropped[lid] = sorted(k for k in DROPPED_FUNCTION_SETTINGS if k in p and p[k] != conf.get(k))

    # The table: a short cell per resource; what each gap and workaround is goes in the legend.
    for lid, r in translated["Resources"].items():
        typ = r["Type"]
        if not st.enabled(lid):
            result.cell(lid, variant, f"off ({r['Condition']} false)")
        elif lid not in created and lid in emu_notes and lid in how and st.physical.get(lid) != "<failed>":
            gap, text = emu_notes[lid].split(": ", 1)
            result.legend(gap, text)
            result.legend(typ, "created through " + how[lid])
            result.cell(lid, variant, f"created through its API after the stack ({gap})")
        elif lid in created and lid in emu_notes:
            gap, text = emu_notes[lid].split(": ", 1)
            result.legend(gap, text)
            result.cell(lid, variant, f"created, {gap} worked around")
        elif lid in created and dropped.get(lid):
            result.legend("gap 5", "moto's CloudFormation drops a function's "
                          + ", ".join(DROPPED_FUNCTION_SETTINGS) + " (the function is created without "
                          "them): these settings are not checked by the rehearsal")
            if lid in how:
                result.legend(f"{lid}", how[lid])
            result.cell(lid, variant, ("created, gap 3 worked around (environment); " if lid in how else "created; ")
                        + f"{', '.join(dropped[lid])} not kept by the emulator (gap 5)")
        elif lid in created and lid in how:
            result.legend("gap 3", "moto's CloudFormation skips resource types it has no model for "
                          "(CREATE_COMPLETE, resource absent), and a Ref to one resolves to nothing: "
                          "the rehearsal creates each through its service's API from the resolved "
                          "template properties, and sets function environment values that named one")
            result.legend(f"{lid}", how[lid])
            result.cell(lid, variant, "created, gap 3 worked around (environment)")
        elif lid in created:
            result.cell(lid, variant, "created")
        elif lid in how and st.physical.get(lid) != "<failed>":
            result.legend("gap 3", "moto's CloudFormation skips resource types it has no model for "
                          "(CREATE_COMPLETE, resource absent), and a Ref to one resolves to nothing: "
                          "the rehearsal creates each through its service's API from the resolved "
                          "template properties, and sets function environment values that named one")
            result.legend(typ, "created through " + how[lid])
            cell = "not supported by the emulator's CloudFormation: created through its API (gap 3)"
            if lid in st.notes:
                gap, text = st.notes[lid].split(": ", 1)
                result.legend(gap, text)
                cell += f", {gap} worked around"
            result.cell(lid, variant, cell)
        elif typ in NOT_SUPPORTED:
            result.cell(lid, variant, f"not supported by the emulator: {NOT_SUPPORTED[typ]}")
        elif typ in CREATORS:
            result.cell(lid, variant, "FAILED")
            if not any(f.startswith(f"{variant}: {lid} ") for f in result.failures):
                result.fail(f"{variant}: {lid} ({typ}) could not be created: {unresolved.get(lid, 'not attempted')}")
        else:
            result.cell(lid, variant, "NOT ACCOUNTED FOR")
            result.fail(f"{variant}: {lid} ({typ}) was not created by the emulator and the rehearsal "
                        "has no workaround for the type: add one to emulator_stack.CREATORS, or "
                        "declare it in rehearsal.NOT_SUPPORTED with why")
    for typ in set(NOT_SUPPORTED) | SKIPPED_BY_EMULATOR:
        for lid, r in translated["Resources"].items():
            if r["Type"] == typ and lid in created:
                result.fail(f"{variant}: {lid} ({typ}) is declared skipped or not supported by the emulator, but the emulator created it: remove it from SKIPPED_BY_EMULATOR or NOT_SUPPORTED")

    # Every output of the template resolves against the created stack.
    for name, out in translated.get("Outputs", {}).items():
        if "Condition" in out and not st.condition(out["Condition"]):
            continue
        try:
            st.resolve(out["Value"])
        except Unresolved as e:
            result.fail(f"{variant}: output {name} does not resolve: {e}")

    verify(variant, st, result)
    return st


def verify(variant: str, st: Stack, result: Result) -> None:
    """What the rehearsal can read back: the API's integration is still the streaming one and
    the stage points at the deployment."""
    res = st.tpl["Resources"]
    apigw = st.client("apigateway")
    for lid, r in res.items():
        if r["Type"] != "AWS::ApiGateway::RestApi" or lid not in st.physical:
            continue
        body = r["Properties"].get("Body", {})
        for path, ops in body.get("paths", {}).items():
            for op, spec in ops.items():
                if op == "parameters":
                    continue
                verb = "ANY" if op == "x-amazon-apigateway-any-method" else op.upper()
                integ = spec["x-amazon-apigateway-integration"]
                if integ.get("responseTransferMode") != "STREAM":
                    result.fail(f"{variant}: {lid} {verb} {path}: the translated integration's "
                                f"responseTransferMode is {integ.get('responseTransferMode')!r}: API Gateway would buffer")
                want = st.resolve(integ["uri"])
                items = apigw.get_resources(restApiId=st.physical[lid])["items"]
                rid = next((i["id"] for i in items if i["path"] == path), None)
                if rid is None:
                    result.fail(f"{variant}: {lid} has no resource {path}")
                    continue
                got = apigw.get_integration(restApiId=st.physical[lid], resourceId=rid, httpMethod=verb)
                if got.get("uri") != want or "/response-streaming-invocations" not in want:
                    result.fail(f"{variant}: {lid} {verb} {path} integration is {got.get('uri')}, want the streaming {want}")
    for lid, r in res.items():
        if r["Type"] != "AWS::ApiGateway::Stage" or lid not in st.physical:
            continue
        p = st.resolve(r["Properties"])
        stage = apigw.get_stage(restApiId=p["RestApiId"], stageName=p["StageName"])
        if stage.get("deploymentId") != p["DeploymentId"]:
            result.fail(f"{variant}: stage {p['StageName']} is not on the template's deployment")
        # The access log goes to a log group of the stack.
        dest = p.get("AccessLogSetting", {}).get("DestinationArn", "")
        group = dest.split(":log-group:")[-1]
        if dest and not st.client("logs").describe_log_groups(logGroupNamePrefix=group)["logGroups"]:
            result.fail(f"{variant}: stage access log goes to {dest}, which no log group of the stack is")
        # The function lets this API's stage invoke it: the ARN API Gateway presents for a
        # request must match a permission's SourceArn, with the API Gateway principal.
        for fid, fr in res.items():
            if fr["Type"] != "AWS::Lambda::Function" or fid not in st.physical:
                continue
            uris = json.dumps(st.resolve(res[next(k for k, x in res.items() if x["Type"] == "AWS::ApiGateway::RestApi")]
                                         ["Properties"].get("Body", {})))
            arn = st.getatt(fid, "Arn")
            if arn not in uris:
                continue  # not the API's integration target
            request_arn = (f"arn:aws:execute-api:{st.region}:{ACCOUNT}:{p['RestApiId']}/{p['StageName']}"
                           "/POST/v1/chat/completions")
            pol = json.loads(st.client("lambda").get_policy(FunctionName=st.physical[fid])["Policy"])
            ok = False
            for s_ in pol.get("Statement", []):
                principal = s_.get("Principal", {})
                principal = principal.get("Service") if isinstance(principal, dict) else principal
                src = s_.get("Condition", {}).get("ArnLike", {}).get("AWS:SourceArn")
                if principal == "apigateway.amazonaws.com" and src and fnmatch.fnmatchcase(request_arn, src):
                    ok = True
            if not ok:
                result.fail(f"{variant}: no permission of {fid} lets API Gateway invoke it for {request_arn}")
            else:
                result.legend("checked", "the API's integration (as translated) has responseTransferMode STREAM and (as "
                              "created) the streaming URI of the proxy function; "
                              "the stage is on the template's deployment and logs to the access log group; "
                              "the function's resource policy lets API Gateway invoke it for a request "
                              "ARN of this API and stage")


def print_table(result: Result, translated: dict, variants: list[str]) -> None:
    res = translated["Resources"]
    print(f"| resource | type | {' | '.join(variants)} |")
    print("|---|---|" + "---|" * len(variants))
    for lid in sorted(res, key=lambda x: (res[x]["Type"], x)):
        cells = [result.rows.get(lid, {}).get(v, "not rehearsed (create failed)") for v in variants]
        print(f"| {lid} | {res[lid]['Type']} | {' | '.join(cells)} |")
    print()
    for name in sorted(result.legends, key=lambda n: (not n.startswith("gap"), n)):
        print(f"- {name}: {result.legends[name]}")
    print()


# --------------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------------
def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--stack-only", action="store_true", help="skip the invocations (part 2)")
    ap.add_argument("--state", default=None,
                    help="directory for logs, kept (default: a temporary one, removed when the rehearsal passes)")
    ap.add_argument("--template", default=None, help="another template (to try a change)")
    args = ap.parse_args()
    import tempfile
    state = Path(args.state or tempfile.mkdtemp(prefix="tollgate-deploy-check-"))
    state.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    result = Result()
    result.log = state / "moto.log"
    translated = translate(Path(args.template)) if args.template else translate()
    procs: list[subprocess.Popen] = []
    try:
        moto, endpoint = start_moto(state)
        procs.append(moto)
        say(f"emulator on {endpoint}, logs in {state}")
        defaults = create("defaults", "us-east-1", endpoint, translated, DEFAULTS, result)
        # The optional parts in another region of the same emulator (one deployment per account
        # and region: the fixed secret names and alias would collide).
        other = Stack(translated, {}, "us-west-2", endpoint, "tollgate")
        arn = other.client("secretsmanager").create_secret(
            Name="tollgate/pool/rehearsal/managed", SecretString="mock-ok-rehearsal")["ARN"]
        options = create("all options", "us-west-2", endpoint, translated, all_options(translated, arn), result)
        print_table(result, translated, ["defaults", "all options"])
        stacks_s = time.monotonic() - started
        say(f"stacks: {stacks_s:.1f} s (emulator start included)")
        if not args.stack_only:
            from invoke import rehearse_invocations
            t0 = time.monotonic()
            for variant, st in (("defaults", defaults), ("all options", options)):
                if st is not None:  # a failed stack is already a failure
                    rehearse_invocations(st, variant, state, result, procs)
            say(f"invocations: {time.monotonic() - t0:.1f} s (per stack: mock provider, seeding, proxy start, 3 requests)")
    finally:
        for p in reversed(procs):
            try:
                os.killpg(p.pid, 15)
                p.wait(timeout=10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
    took = time.monotonic() - started
    if result.failures:
        print(f"deploy-check FAILED ({len(result.failures)} problem(s), {took:.0f} s):")
        for f in result.failures:
            print("  - " + f)
        return 1
    print(f"deploy-check passed ({took:.0f} s)")
    if not args.state:  # logs are kept only when something failed, or when asked for
        import shutil
        shutil.rmtree(state, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
