"""Operations checks (docs/deploy.md, "Operations"): the dashboard and alarms in template.yaml
name only metrics, audit-line fields, reasons and log messages the code really writes.

The emitted metrics are read from the Rust sources that write the EMF lines:
- shared/core/src/audit.rs: the proxy's per-request line (namespace `tollgate`, dimensions
  route x decision, the `EmfMetric { name: ... }` list);
- shared/core/src/sweep.rs: the rotation sweep's per-pool line (namespace `tollgate`, dimension
  pool, `tokens_<status>` for every `TokenStatus` of shared/core/src/records.rs plus the names
  inserted literally);
- functions/audit/src/lib.rs: the audit function's per-batch line (namespace `tollgate/audit`,
  no dimensions).
A metric the template names that none of these writes fails the test, and so does an alarm
missing from the dashboard's alarm widget or not wired to the alert topic.
"""

from __future__ import annotations

import json
import re

import pytest

from rustscan import ROOT

TEMPLATE = ROOT / "template.yaml"


@pytest.fixture(scope="module")
def tpl() -> dict:
    from samtranslator.yaml_helper import yaml_parse

    return yaml_parse(TEMPLATE.read_text())


def resources(tpl: dict, rtype: str) -> dict[str, dict]:
    return {k: v for k, v in tpl["Resources"].items() if v["Type"] == rtype}


def read(rel: str) -> str:
    return (ROOT / rel).read_text()


# --------------------------------------------------------------------------------------------
# What the code emits
# --------------------------------------------------------------------------------------------
def emitted() -> dict[tuple[str, frozenset[str]], set[str]]:
    """(namespace, dimension names) -> metric names, from the code that writes the EMF lines."""
    out: dict[tuple[str, frozenset[str]], set[str]] = {}

    audit = read("shared/core/src/audit.rs")
    ns = re.findall(r'namespace: "([^"]+)"', audit)
    dims = re.findall(r"dimensions: \[\[([^\]]*)\]\]", audit)
    assert ns == ["tollgate"] and len(dims) == 1, "the proxy's EMF line changed shape; update this test"
    proxy_dims = frozenset(re.findall(r'"(\w+)"', dims[0]))
    out[("tollgate", proxy_dims)] = set(re.findall(r'EmfMetric \{\s*name: "(\w+)"', audit))

    sweep = read("shared/core/src/sweep.rs")
    body = sweep[sweep.index("pub fn emf_lines"):sweep.index("pub struct SweepReport")]
    assert 'format!("tokens_{status}")' in body and '"Dimensions": [["pool"]]' in body
    assert 'pub const EMF_NAMESPACE: &str = "tollgate";' in sweep
    records = read("shared/core/src/records.rs")
    enum = records[records.index("impl TokenStatus"):]
    statuses = re.findall(r'TokenStatus::\w+ => "(\w+)"', enum[: enum.index("}\n}")])
    assert statuses, "no TokenStatus strings found"
    names = {f"tokens_{s}" for s in statuses} | set(re.findall(r'values\.insert\(\s*"(\w+)"', body))
    out[("tollgate", frozenset({"pool"}))] = names

    batch = read("functions/audit/src/lib.rs")
    emf = batch[batch.index("pub fn to_emf_line"):]
    emf = emf[: emf.index("\n    }\n")]
    assert '"Namespace": "tollgate/audit"' in emf and '"Dimensions": [[]]' in emf
    out[("tollgate/audit", frozenset())] = set(re.findall(r'\{"Name": "(\w+)"', emf))
    return out


def reasons() -> set[str]:
    return set(re.findall(r'Reason::\w+ => "(\w+)"', read("shared/core/src/reason.rs")))


def audit_fields() -> set[str]:
    src = read("shared/core/src/audit.rs")
    rec = src[src.index("pub struct AuditRecord"):]
    rec = rec[: rec.index("\n}\n")]
    return set(re.findall(r"pub (\w+):", rec))


def test_the_code_scan_finds_the_metrics():
    e = emitted()
    assert {"requests", "overhead", "latency"} <= e[("tollgate", frozenset({"route", "decision"}))]
    assert {"tokens_active", "tokens_serving", "rotations_overdue"} <= e[("tollgate", frozenset({"pool"}))]
    assert {"alerts", "findings", "suspended"} <= e[("tollgate/audit", frozenset())]
    assert {"no_eligible_token", "limit_rpm", "sensitive_data_blocked"} <= reasons()
    assert {"reason", "decision", "upstream_ms", "dlp", "dlp_response", "tollgate_audit"} <= audit_fields()


# --------------------------------------------------------------------------------------------
# The dashboard
# --------------------------------------------------------------------------------------------
def dashboard(tpl: dict) -> dict:
    (dash,) = resources(tpl, "AWS::CloudWatch::Dashboard").values()
    body = dash["Properties"]["DashboardBody"]["Fn::Sub"]
    assert isinstance(body, str)
    # ${...} references become placeholders; the rest must be JSON already
    return json.loads(re.sub(r"\$\{[^}]+\}", "SUBSTITUTED", body)), body


SEARCH = re.compile(r"SEARCH\('\{([^}]*)\}([^']*)'")
SCHEMA = re.compile(r"FROM SCHEMA\(([^)]*)\)")
METRIC_NAME = re.compile(r'MetricName="(\w+)"')
OURS = ("tollgate", "tollgate/audit")


def check_metric(e, ns: str, dims: frozenset[str], name: str | None, where: str):
    if ns not in OURS:
        return
    key = (ns, dims)
    assert key in e, f"{where}: no code emits namespace {ns} with dimensions {sorted(dims)}"
    if name is not None:
        assert name in e[key], f"{where}: no code emits {ns} {name} (dimensions {sorted(dims)})"


def metrics_of_widget(w: dict):
    """(namespace, dims, metric name or None) for every metric a metric widget names."""
    for row in w["properties"].get("metrics", []):
        if isinstance(row[0], dict):
            expr = row[0]["expression"]
            found = False
            for schema, rest in SEARCH.findall(expr):
                ns, *dims = [p.strip() for p in schema.split(",")]
                names = METRIC_NAME.findall(rest) or [None]
                for n in names:
                    yield ns, frozenset(dims), n
                found = True
            assert found, f"an expression that is not a SEARCH: {expr}"
        else:
            parts = [p for p in row if not isinstance(p, dict)]
            ns, name, *kv = parts
            yield ns, frozenset(kv[0::2]), name


def test_dashboard_metrics_are_emitted_by_the_code(tpl):
    body, _ = dashboard(tpl)
    e = emitted()
    seen = 0
    for w in body["widgets"]:
        if w["type"] != "metric":
            continue
        for ns, dims, name in metrics_of_widget(w):
            check_metric(e, ns, dims, name, w["properties"]["title"])
            seen += ns in OURS
    assert seen >= 10


def test_dashboard_log_queries_use_real_fields_reasons_and_messages(tpl):
    body, _ = dashboard(tpl)
    fields, known_reasons = audit_fields(), reasons()
    rotation_src = read("functions/rotation/src/lib.rs")
    queries = [w["properties"]["query"] for w in body["widgets"] if w["type"] == "log"]
    assert len(queries) >= 5
    for q in queries:
        if "tollgate_audit = 1" in q:
            # bare identifiers compared or aggregated are audit-line fields
            for f in re.findall(r"\b([a-z_]+)\s*(?:=|!=|in \[)", q) + re.findall(r"(?:pct|ispresent)\((\w+)", q):
                assert f in fields, f"query names {f}, not an audit-line field: {q}"
            for r in re.findall(r'"([a-z_]+)"(?!:)', q):
                if r not in {"allow", "deny", "error", "canary"}:
                    assert r in known_reasons, f"query names reason {r!r}, which the proxy never writes"
            for lit in re.findall(r"'\"(\w+)\":", q):
                assert lit in fields or lit == "reason", f"query matches field {lit}, not in the audit line"
        elif "fields.message" in q:
            for msg in re.findall(r'"([a-z ]+)"', q[: q.index("]")]):
                assert f'"{msg}"' in rotation_src, f"no rotation log line says {msg!r}"
        else:
            pytest.fail(f"a log query over an unknown log: {q}")


def alarms(tpl: dict) -> dict[str, dict]:
    return resources(tpl, "AWS::CloudWatch::Alarm")


def test_every_alarm_is_on_the_dashboard_and_goes_to_the_alert_topic(tpl):
    _, raw = dashboard(tpl)
    listed = set(re.findall(r"\$\{(\w+)\.Arn\}", raw))
    names = set(alarms(tpl))
    assert listed == names, f"alarm widget lists {sorted(listed ^ names)} wrongly"
    for n, a in alarms(tpl).items():
        assert a["Properties"].get("AlarmActions") == [{"Ref": "AlertTopic"}], f"{n} does not notify AlertTopic"


def test_alarm_metrics_exist(tpl):
    e = emitted()
    filters = {
        (t["MetricNamespace"], t["MetricName"])
        for f in resources(tpl, "AWS::Logs::MetricFilter").values()
        for t in f["Properties"]["MetricTransformations"]
    }
    for n, a in alarms(tpl).items():
        p = a["Properties"]
        if "MetricName" in p:
            ns, name = p["Namespace"], p["MetricName"]
            if ns == "tollgate/logs":
                assert (ns, name) in filters, f"{n}: no metric filter makes {ns} {name}"
            else:
                check_metric(e, ns, frozenset(d["Name"] for d in p.get("Dimensions", [])), name, n)
            continue
        for m in p["Metrics"]:
            if "Expression" in m and m["Expression"].startswith("SELECT"):
                (schema,) = SCHEMA.findall(m["Expression"])
                ns, *dims = [s.strip() for s in schema.split(",")]
                name = re.match(r"SELECT \w+\((\w+)\)", m["Expression"]).group(1)
                check_metric(e, ns, frozenset(dims), name, n)
            elif "MetricStat" in m:
                met = m["MetricStat"]["Metric"]
                check_metric(e, met["Namespace"], frozenset(d["Name"] for d in met.get("Dimensions", [])),
                             met["MetricName"], n)


def test_metric_filters_match_what_the_code_writes(tpl):
    rotation_src = read("functions/rotation/src/lib.rs")
    fields, known_reasons = audit_fields(), reasons()
    fs = resources(tpl, "AWS::Logs::MetricFilter")
    assert fs
    for n, f in fs.items():
        pat = f["Properties"]["FilterPattern"]
        group = f["Properties"]["LogGroupName"]["Ref"]
        if group == "ProxyLogGroup":
            for field, value in re.findall(r'\$\.(\w+) = "(\w+)"', pat):
                assert field in fields, f"{n}: {field} is not an audit-line field"
                if field == "reason":
                    assert value in known_reasons, f"{n}: the proxy never writes reason {value}"
            assert "$.tollgate_audit = 1" in pat, f"{n}: must match audit lines only"
        elif group == "RotationLogGroup":
            (msg,) = re.findall(r'\$\.fields\.message = "([^"]+)"', pat)
            (level,) = re.findall(r'\$\.level = "(\w+)"', pat)
            assert re.search(rf'tracing::{level.lower()}!\([^;]*"{re.escape(msg)}"\s*\)', rotation_src, re.S), \
                f"{n}: no tracing::{level.lower()}! line says {msg!r} in functions/rotation/src/lib.rs"
        else:
            pytest.fail(f"{n}: a metric filter on {group}, which this test does not know")


def test_the_limit_widget_lists_every_limit_reason(tpl):
    """Every reason the proxy answers 429 with (ErrorClass::RateLimited) is on the widget."""
    src = read("shared/core/src/reason.rs")
    names = dict(re.findall(r'Reason::(\w+) => "(\w+)"', src))
    (group,) = re.findall(r"((?:Reason::\w+\s*\|\s*)*Reason::\w+)\s*=> ErrorClass::RateLimited", src)
    limit_reasons = {names[n] for n in re.findall(r"Reason::(\w+)", group)}
    assert len(limit_reasons) >= 8
    body, _ = dashboard(tpl)
    (q,) = [w["properties"]["query"] for w in body["widgets"] if w["properties"].get("title", "").startswith("Limit refusals")]
    listed = set(re.findall(r'"(\w+)"', q[q.index("reason in ["):q.index("]")]))
    assert listed == limit_reasons, f"limit refusals widget differs from the proxy's 429 reasons: {sorted(listed ^ limit_reasons)}"


def test_log_matching_assumptions_hold_in_the_code():
    """The DLP widget matches `"dlp":{"` (a non-empty map) in the audit line's text, so the line
    must be compact JSON; the rotation filters match `$.fields.message`, so tracing's JSON lines
    must nest the message under `fields` (not flattened)."""
    audit = read("shared/core/src/audit.rs")
    # The line is written by `write_line` (no whitespace anywhere: the key, then the map's
    # opening brace, then its first key), and a property test holds it byte for byte to
    # serde_json's compact serialization.
    assert 'w.raw(",\\"dlp\\":");' in audit
    counts = audit[audit.index("fn counts"):]
    counts = counts[: counts.index("\n    }\n")]
    assert 'self.raw("{");' in counts and 'self.raw(" ' not in counts and 'self.raw(": ' not in counts
    assert "prop_assert_eq!(r.to_line(), derived" in audit and "serde_json::to_string(" in audit
    logging = read("shared/lambda-start/src/logging.rs")
    assert ".json()" in logging and "flatten_event(true)" not in logging


def test_dimension_values_name_this_stack_s_resources(tpl):
    """API Gateway and WAF metrics are found by name: the names the dashboard and the alarm use
    must be the API's name and the web ACL's metric names."""
    api_name = tpl["Resources"]["Api"]["Properties"]["Name"]["Fn::Sub"]
    acl = tpl["Resources"]["WebAcl"]["Properties"]
    acl_metric = acl["VisibilityConfig"]["MetricName"]["Fn::Sub"]
    rule_metrics = {r["VisibilityConfig"]["MetricName"] for r in acl["Rules"]}
    body, _ = dashboard(tpl)
    api_rows = waf_rows = 0
    for w in body["widgets"]:
        for row in w["properties"].get("metrics", []):
            if row[0] == "AWS/ApiGateway":
                assert row[row.index("ApiName") + 1] == api_name.replace("${AWS::StackName}", "SUBSTITUTED")
                api_rows += 1
            if row[0] == "AWS/WAFV2":
                assert row[row.index("WebACL") + 1] == acl_metric.replace("${AWS::StackName}", "SUBSTITUTED")
                assert row[row.index("Rule") + 1] in rule_metrics
                waf_rows += 1
    assert api_rows and waf_rows == len(rule_metrics)
    p = alarms(tpl)["Api5xxRateAlarm"]["Properties"]
    for m in p["Metrics"]:
        if "MetricStat" in m:
            dims = {d["Name"]: d["Value"] for d in m["MetricStat"]["Metric"]["Dimensions"]}
            assert dims["ApiName"] == {"Fn::Sub": api_name}
            assert dims["Stage"] == {"Ref": "StageName"}
