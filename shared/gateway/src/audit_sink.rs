//! Where audit lines go: stdout in production (CloudWatch Logs picks it up and the audit
//! function subscribes to it), memory in tests.

use std::io::Write;
use std::sync::Mutex;
use tollgate_core::audit::{AuditRecord, EMF_LINE_CAPACITY, LINE_CAPACITY};

pub trait AuditSink: Send + Sync {
    fn emit(&self, rec: &AuditRecord, at_ms: u64);
}

/// One audit line and one EMF metrics line per request, each written with a single call.
#[derive(Debug, Default)]
pub struct StdoutAuditSink;

impl AuditSink for StdoutAuditSink {
    fn emit(&self, rec: &AuditRecord, at_ms: u64) {
        // Both lines written into one buffer sized for them: one allocation per request.
        let mut buf = Vec::with_capacity(LINE_CAPACITY + EMF_LINE_CAPACITY);
        rec.write_line(&mut buf);
        buf.push(b'\n');
        rec.write_emf_line(at_ms, &mut buf);
        buf.push(b'\n');
        let mut out = std::io::stdout().lock();
        // A failed stdout write must not fail the request; there is nowhere else to report it.
        let _ = out.write_all(&buf);
        let _ = out.flush();
    }
}

/// Keeps records for tests to assert on.
#[derive(Debug, Default)]
pub struct MemoryAuditSink(pub Mutex<Vec<AuditRecord>>);

impl MemoryAuditSink {
    pub fn records(&self) -> Vec<AuditRecord> {
        self.0.lock().map(|v| v.clone()).unwrap_or_default()
    }
}

impl AuditSink for MemoryAuditSink {
    fn emit(&self, rec: &AuditRecord, _at_ms: u64) {
        if let Ok(mut v) = self.0.lock() {
            v.push(rec.clone());
        }
    }
}
