//! Functions the operator CLI (`tollgate scan`) calls; the `scan` example
//! binary wires the same ones.

use crate::error::DlpError;
use crate::policy::Policy;
use crate::request::{Report, RequestKind, redact_request_bytes};
use crate::scan::{Finding, scan};
use std::io::{self, BufRead, Write};

/// Scan one document.
pub fn scan_text(input: &str, policy: &Policy) -> Vec<Finding> {
    scan(input, policy)
}

/// One JSON string per input line (a document); one JSON array of findings per
/// output line, in order: `{"entity","start","end","action"}` with byte offsets
/// into the document's UTF-8. Blank lines are skipped. A line that is not a
/// JSON string is an `InvalidData` error naming the line.
pub fn scan_jsonl<R: BufRead, W: Write>(
    reader: R,
    mut writer: W,
    policy: &Policy,
) -> io::Result<()> {
    for (i, line) in reader.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let doc: String = serde_json::from_str(&line).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("line {}: expected a JSON string: {e}", i + 1),
            )
        })?;
        let findings = scan(&doc, policy);
        serde_json::to_writer(&mut writer, &findings)?;
        writer.write_all(b"\n")?;
    }
    writer.flush()
}

/// Inspect a request body; returns the (possibly redacted) body and the report.
pub fn redact_request(
    kind: RequestKind,
    body_bytes: &[u8],
    policy: &Policy,
) -> Result<(Vec<u8>, Report), DlpError> {
    redact_request_bytes(kind, body_bytes, policy)
}
