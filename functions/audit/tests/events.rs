//! Keeps the audit function's sample events in `events/` (`audit-*.json`) parseable: each is
//! deserialized the way the Lambda runtime does it (`LogsEvent`, which undoes base64 and
//! gzip) and handled by the function's processor without failing. A data message's every
//! line must be an audit line; a control message must be recognized as one.
//! (The list of known prefixes lives in functions/proxy/tests/events.rs.)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use aws_lambda_events::cloudwatch_logs::LogsEvent;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tollgate_audit::{CONTROL_MESSAGE, Processor};
use tollgate_core::audit::AuditRecord;
use tollgate_core::detect::Params;
use tollgate_memory::audit::{MemoryAlertSink, MemoryAuditState};

fn audit_events() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../events");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("events/")
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_str().unwrap();
            n.starts_with("audit-") && n.ends_with(".json")
        })
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn audit_sample_events_decode_and_are_handled() {
    let files = audit_events();
    assert!(
        files.len() >= 2,
        "expected a data and a control sample: {files:?}"
    );
    let mut seen_control = false;
    for path in files {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(&path).unwrap();
        let event: LogsEvent = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{name}: not an awslogs event: {e}"));
        let data = event.aws_logs.data.clone();
        assert!(!data.log_events.is_empty(), "{name}: no log events");
        // The function's own decode (what the Lambda runs) reads the same batch.
        let raw: tollgate_audit::RawLogsEvent = serde_json::from_str(&text).unwrap();
        assert_eq!(tollgate_audit::decode_logs(&raw).unwrap(), data, "{name}");
        let control = data.message_type == CONTROL_MESSAGE;
        seen_control |= control;
        if !control {
            assert_eq!(data.message_type, "DATA_MESSAGE", "{name}");
            for e in &data.log_events {
                assert!(
                    AuditRecord::from_line(&e.message).is_some(),
                    "{name}: event {} is not an audit line",
                    e.id
                );
            }
        }
        let p = Processor::new(
            Arc::new(MemoryAuditState::new()),
            Arc::new(MemoryAlertSink::new()),
            Params::default(),
        );
        let r = p.handle_raw(raw).await.unwrap();
        assert_eq!(r.control_message, control, "{name}");
        assert_eq!(r.malformed_lines + r.foreign_lines, 0, "{name}");
    }
    assert!(seen_control, "a CONTROL_MESSAGE sample");
}
