//! `tollgate scan`: run the proxy's sensitive-data scanner (`tollgate-dlp`) on stdin.
//!
//! - plain: stdin is one document; a table of findings (entity, category, action, byte
//!   offsets), or with `--json` a JSON array of `{"entity","start","end","action"}`;
//! - `--jsonl`: one JSON string per line, one JSON array of findings per line
//!   ([`tollgate_dlp::cli::scan_jsonl`]), streamed;
//! - `--request openai|anthropic`: a request body, redacted as the proxy would forward it;
//!   the report goes to stderr (or everything into one JSON document with `--json`). A
//!   request the proxy would refuse exits with [`EXIT_BLOCKED`] and prints no body.
//!
//! No output ever contains matched text: findings are offsets and entity names only, and a
//! blocked body is not printed. Error messages about the input never quote it.
//!
//! Scanning needs no AWS access; only `--tenant` reads the stores.

use crate::args::ScanArgs;
use crate::error::{CliError, Result};
use crate::output::Table;
use crate::policy::{load_policy_file, load_target};
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{self, BufRead, Write};
use tollgate_core::ports::{KeyStore, TenantStore};
use tollgate_dlp::{Decision, Finding, Policy, RequestKind};

/// Exit code of `scan --request` when the proxy would refuse the request.
pub const EXIT_BLOCKED: u8 = 3;

/// Compiles the scanner once; a broken pattern set is an operational error, not a silent pass.
pub fn init() -> Result<()> {
    tollgate_dlp::init()
        .map(|_| ())
        .map_err(|e| CliError::new(format!("the sensitive-data scanner is unusable: {e}")))
}

/// True when the policy comes from the stores (so the caller must build them).
pub fn needs_stores(a: &ScanArgs) -> bool {
    a.policy.is_none() && a.tenant.is_some()
}

/// The policy to scan with: `--policy FILE`, the stored policy of `--tenant` (and `--key`),
/// or the built-in one. `stores` is only used (and only needed) with `--tenant`.
pub async fn resolve_policy(
    a: &ScanArgs,
    stores: Option<(&dyn TenantStore, &dyn KeyStore)>,
) -> Result<Policy> {
    if let Some(path) = &a.policy {
        return load_policy_file(path);
    }
    let Some(tenant) = &a.tenant else {
        return Ok(Policy::default());
    };
    let (tenants, keys) = stores.ok_or_else(|| {
        CliError::new("internal: --tenant needs the stores, and none were configured")
    })?;
    Ok(load_target(tenants, keys, tenant, a.key.as_deref())
        .await?
        .effective())
}

/// Runs the scan on `input`, writing results to `out` and the `--request` report to `err`.
/// Returns the exit code: 0, or [`EXIT_BLOCKED`]. A reader that goes away
/// (`tollgate scan --jsonl | head`) ends the scan quietly with the code it would have had.
pub fn run(
    a: &ScanArgs,
    json: bool,
    policy: &Policy,
    input: &mut dyn BufRead,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<u8> {
    init()?;
    let r = if a.jsonl {
        jsonl(policy, input, out).map(|()| 0)
    } else if let Some(kind) = a.request {
        request(kind, json, policy, input, out, err)
    } else {
        document(json, policy, input, out).map(|()| 0)
    };
    // Whatever was written before a failure (say, the lines before a malformed one) still
    // goes out.
    let flushed = out.flush();
    let code = match r {
        Ok(code) => code,
        Err(Fail::ClosedPipe) => return Ok(0),
        Err(Fail::Cli(e)) => return Err(e),
    };
    match flushed {
        Ok(()) => Ok(code),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(code),
        Err(e) => Err(CliError::new(format!("writing the output: {e}"))),
    }
}

/// Why a scan stopped early.
enum Fail {
    /// Whoever reads stdout went away.
    ClosedPipe,
    Cli(CliError),
}

impl From<CliError> for Fail {
    fn from(e: CliError) -> Self {
        Fail::Cli(e)
    }
}

fn write_error(e: io::Error) -> Fail {
    if e.kind() == io::ErrorKind::BrokenPipe {
        Fail::ClosedPipe
    } else {
        Fail::Cli(CliError::new(format!("writing the output: {e}")))
    }
}

fn read_all(input: &mut dyn BufRead) -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    input
        .read_to_end(&mut buf)
        .map_err(|e| CliError::new(format!("reading stdin: {e}")))?;
    Ok(buf)
}

fn document(
    json: bool,
    policy: &Policy,
    input: &mut dyn BufRead,
    out: &mut dyn Write,
) -> Result<(), Fail> {
    let bytes = read_all(input)?;
    let text = String::from_utf8(bytes).map_err(|e| {
        CliError::new(format!(
            "stdin is not valid UTF-8 (at byte {})",
            e.utf8_error().valid_up_to()
        ))
    })?;
    let findings = tollgate_dlp::cli::scan_text(&text, policy);
    let rendered = if json {
        findings_json(&findings)
    } else if findings.is_empty() {
        "No findings.".to_owned()
    } else {
        findings_table(&findings).trim_end().to_owned()
    };
    writeln!(out, "{rendered}").map_err(write_error)
}

/// `[{"entity","start","end","action"}]`, the same shape (and key order) as a `--jsonl`
/// output line.
pub fn findings_json(findings: &[Finding]) -> String {
    serde_json::to_string_pretty(findings).unwrap_or_default()
}

/// `scan --request --json`, keys in this order.
#[derive(Serialize)]
struct RequestJson {
    decision: &'static str,
    counts: BTreeMap<&'static str, u32>,
    blocked: Vec<&'static str>,
    redacted: u32,
    fields: u32,
    /// The body to forward; `null` when blocked (the body would be the input, unredacted).
    body: Option<Value>,
}

fn findings_table(findings: &[Finding]) -> String {
    let mut t = Table::new(["ENTITY", "CATEGORY", "ACTION", "START", "END"]);
    for f in findings {
        t.row([
            f.entity.name().to_owned(),
            f.entity.category().name().to_owned(),
            f.action.name().to_owned(),
            f.start.to_string(),
            f.end.to_string(),
        ]);
    }
    t.render()
}

fn jsonl(policy: &Policy, input: &mut dyn BufRead, out: &mut dyn Write) -> Result<(), Fail> {
    match tollgate_dlp::cli::scan_jsonl(input, &mut *out, policy) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Err(Fail::ClosedPipe),
        Err(e) => Err(Fail::Cli(jsonl_error(&e))),
    }
}

/// `scan_jsonl` reports a bad line as `line N: expected a JSON string: <serde_json detail>`,
/// and that detail can quote the input (`invalid type: integer `4111111111111111``). Keep the
/// line number and the column, drop the rest.
pub fn jsonl_error(e: &io::Error) -> CliError {
    let msg = e.to_string();
    if e.kind() == io::ErrorKind::InvalidData {
        let line = msg
            .strip_prefix("line ")
            .and_then(|r| r.split(':').next())
            .and_then(|n| n.parse::<usize>().ok());
        if let Some(line) = line {
            let column = msg
                .rsplit_once(" column ")
                .and_then(|(_, c)| c.trim().parse::<usize>().ok())
                .map(|c| format!(", column {c}"))
                .unwrap_or_default();
            return CliError::new(format!(
                "stdin line {line}{column}: expected a JSON string (one document per line); \
                 the lines before it were scanned"
            ));
        }
        if msg.contains("UTF-8") {
            return CliError::new("stdin is not valid UTF-8; the lines before it were scanned");
        }
    }
    // Other I/O errors come from the OS, not from the input.
    CliError::new(format!("scanning stdin: {e}"))
}

fn request(
    kind: RequestKind,
    json: bool,
    policy: &Policy,
    input: &mut dyn BufRead,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<u8, Fail> {
    let body = read_all(input)?;
    let (redacted, report) = tollgate_dlp::cli::redact_request(kind, &body, policy)
        .map_err(|e| CliError::new(format!("stdin: {e}")))?;
    let blocked = report.decision == Decision::Block;
    let blocked_names: Vec<&str> = report.blocked.iter().map(|e| e.name()).collect();
    if json {
        // On block the body is the input unchanged: never print it.
        let body_json = if blocked {
            None
        } else {
            Some(
                serde_json::from_slice::<Value>(&redacted)
                    .map_err(|e| CliError::new(format!("internal: the redacted body: {e}")))?,
            )
        };
        let doc = RequestJson {
            decision: decision_name(report.decision),
            counts: report.counts.iter().map(|(e, n)| (e.name(), *n)).collect(),
            blocked: blocked_names.clone(),
            redacted: report.redacted,
            fields: report.fields,
            body: body_json,
        };
        let text = serde_json::to_string_pretty(&doc).unwrap_or_default();
        writeln!(out, "{text}").map_err(write_error)?;
    } else if !blocked {
        out.write_all(&redacted).map_err(write_error)?;
        if !redacted.ends_with(b"\n") {
            out.write_all(b"\n").map_err(write_error)?;
        }
    }
    if !json {
        let mut summary = format!("decision: {}", decision_name(report.decision));
        match report.decision {
            Decision::Block => summary.push_str(&format!(
                " (refused because of {}; the body is not printed)",
                blocked_names.join(", ")
            )),
            Decision::Redact => summary.push_str(&format!(
                " ({} span(s) replaced in {} text field(s))",
                report.redacted, report.fields
            )),
            Decision::Log | Decision::Allow => {
                summary.push_str(&format!(" ({} text field(s) scanned)", report.fields))
            }
        }
        let mut text = summary + "\n";
        if !report.counts.is_empty() {
            let mut t = Table::new(["ENTITY", "COUNT", "ACTION"]);
            for (e, n) in &report.counts {
                t.row([
                    e.name().to_owned(),
                    n.to_string(),
                    policy.action_for(*e).name().to_owned(),
                ]);
            }
            text.push_str(&t.render());
        }
        // The report is best effort: the body (or the exit code) is what matters.
        let _ = err.write_all(text.as_bytes());
        let _ = err.flush();
    }
    Ok(if blocked { EXIT_BLOCKED } else { 0 })
}

fn decision_name(d: Decision) -> &'static str {
    match d {
        Decision::Allow => "allow",
        Decision::Log => "log",
        Decision::Redact => "redact",
        Decision::Block => "block",
    }
}
