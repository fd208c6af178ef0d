//! Formats the audit line and the EMF line of a typical allowed request N times, for
//! instruction counts under callgrind (the per-request cost of `settle`'s two lines).
//! The record is read from JSON, so the same file builds against older cores, which ignore
//! fields they do not know (`user_agent`, `key_expiring_in_days`). With `plain` the key is
//! not about to expire (the common line).
//!
//! ```text
//! cargo build --profile profiling -p tollgate-core --example audit_lines
//! valgrind --tool=callgrind --callgrind-out-file=cg.out target/profiling/examples/audit_lines 10000 [plain]
//! callgrind_annotate --inclusive=yes cg.out | grep -E 'to_emf_line|to_line'
//! ```

use std::hint::black_box;
use tollgate_core::audit::AuditRecord;

const LINE: &str = r#"{"tollgate_audit":1,"v":1,"time":"2026-11-26T05:00:00.000Z","request_id":"5f0c6f3e-8a4f-4d7e-9c51-2f1d0f6b9a11","tenant":"acme","key_id":"AbCdEf012345","principal":"dev@acme.test","issuer":null,"key_expiring_in_days":3,"source_ip":"203.0.113.7","user_agent":"OpenAI/Python 1.54.0","route":"chat.completions","model":"gpt-4o-mini","pool":"openai","decision":"allow","reason":"ok","status":200,"token_id":"t1","attempts":1,"latency_ms":1.234,"upstream_ms":0.9,"overhead_ms":0.334,"tokens_in":12,"tokens_out":34,"cost_usd":0.00002,"dlp":{},"dlp_response":{},"stream":false,"error_class":null,"store_reads":0,"store_writes":1}"#;

fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000);
    let plain = std::env::args().nth(2).is_some_and(|a| a == "plain");
    let line = if plain {
        LINE.replace("\"key_expiring_in_days\":3,", "")
    } else {
        LINE.to_owned()
    };
    let Some(rec) = AuditRecord::from_line(&line) else {
        eprintln!("the sample line does not parse");
        std::process::exit(1);
    };
    let mut bytes = 0usize;
    for i in 0..n {
        bytes += black_box(&rec).to_line().len();
        bytes += black_box(&rec)
            .to_emf_line(black_box(1_800_000_000_000 + i))
            .len();
    }
    println!(
        "{n} requests, {} bytes per request (audit + EMF lines)",
        bytes as u64 / n.max(1)
    );
}
