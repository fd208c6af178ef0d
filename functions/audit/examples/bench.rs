//! `make bench`, audit part: events per second on one core through the whole subscription
//! path (the `awslogs` payload's JSON, base64 and gzip decoded as the Lambda runtime does,
//! each line parsed, every detector run, state in memory) and the latency of one 1 MB batch.
//!
//! Traffic: a seeded mix like the normal-week test (400 keys on office / VPN / CI networks,
//! mostly served requests with tokens and cost, some typos and scope refusals), in batches
//! of 1 MB of log events as CloudWatch Logs delivers them. Alerts go to a memory sink and are
//! counted. Run: `cargo run --release -p tollgate-audit --example bench`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use base64::Engine as _;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::io::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tollgate_audit::{Processor, RawLogsEvent, decode_logs};
use tollgate_core::audit::AuditRecord;
use tollgate_core::detect::Params;
use tollgate_core::reason::Reason;
use tollgate_memory::audit::{MemoryAlertSink, MemoryAuditState};

const BATCH_BYTES: usize = 1_000_000;
const BATCHES: usize = 30;
/// Monday 2026-01-05 09:00 UTC.
const T0: u64 = 1_767_603_600_000;

fn line(rng: &mut StdRng, n: u64, at: u64) -> String {
    let k = rng.gen_range(0..400u32);
    let reason = match rng.gen_range(0..1000) {
        0..=4 => Reason::BadChecksum,
        5..=6 => Reason::ModelNotAllowed,
        7 => Reason::LimitRpm,
        _ => Reason::Ok,
    };
    let mut r = AuditRecord::new(format!("bench-{n:012}"), at);
    r.reason = reason;
    r.decision = reason.decision();
    r.status = if reason == Reason::Ok { 200 } else { 401 };
    r.tenant = Some(format!("tenant-{}", k % 20));
    r.key_id = (reason != Reason::BadChecksum).then(|| format!("BENCHKEY{k:04}"));
    r.source_ip = Some(match rng.gen_range(0..3) {
        0 => format!("10.{}.{}.{}", k % 50, k % 200, rng.gen_range(1..250)),
        1 => format!("2001:db8:{:x}::{:x}", k, rng.gen_range(1..9000)),
        _ => format!("172.16.{}.{}", k % 3, rng.gen_range(1..250)),
    });
    r.route = Some("chat.completions".into());
    r.model = Some("gpt-4o-mini".into());
    r.pool = Some("openai".into());
    r.token_id = Some("openai-1".into());
    r.attempts = 1;
    r.latency_ms = 420.5;
    r.upstream_ms = Some(419.9);
    r.overhead_ms = 0.6;
    r.tokens_in = Some(rng.gen_range(50..2000));
    r.tokens_out = Some(rng.gen_range(10..800));
    r.cost_usd = Some(0.000_42);
    r.to_line()
}

/// One subscription payload of about `BATCH_BYTES` of events; returns it and its event count.
fn payload(rng: &mut StdRng, n: &mut u64, at: &mut u64) -> (String, usize) {
    let mut events = Vec::new();
    let mut size = 0;
    while size < BATCH_BYTES {
        *n += 1;
        *at += rng.gen_range(1..40);
        let message = line(rng, *n, *at);
        size += message.len() + 26;
        events.push(serde_json::json!({
            "id": format!("{:020}{:036}", *at, *n),
            "timestamp": *at,
            "message": message,
        }));
    }
    let count = events.len();
    let doc = serde_json::json!({
        "messageType": "DATA_MESSAGE",
        "owner": "123456789012",
        "logGroup": "/aws/lambda/tollgate-proxy",
        "logStream": "2026/01/05/[$LATEST]bench",
        "subscriptionFilters": ["tollgate-audit-lines"],
        "logEvents": events,
    });
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(doc.to_string().as_bytes()).unwrap();
    let data = base64::engine::general_purpose::STANDARD.encode(gz.finish().unwrap());
    (
        serde_json::json!({"awslogs": {"data": data}}).to_string(),
        count,
    )
}

fn main() {
    let mut rng = StdRng::seed_from_u64(7);
    let (mut n, mut at) = (0u64, T0);
    let payloads: Vec<(String, usize)> = (0..BATCHES)
        .map(|_| payload(&mut rng, &mut n, &mut at))
        .collect();
    let state = Arc::new(MemoryAuditState::new());
    let sink = Arc::new(MemoryAlertSink::new());
    let p = Processor::new(state, sink.clone(), Params::default());
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();

    let mut decode = Vec::new();
    let mut total = Vec::new();
    let mut events = 0usize;
    let mut audit_lines = 0u64;
    let started = Instant::now();
    for (body, count) in &payloads {
        let t = Instant::now();
        // As the function does it (`Processor::handle_raw`): the payload's JSON, then
        // `decode_logs` (base64, gunzip into a buffer, JSON from the slice).
        let ev: RawLogsEvent = serde_json::from_str(body).unwrap();
        let data = decode_logs(&ev).unwrap();
        let d = t.elapsed();
        let report = rt.block_on(p.handle(&data)).unwrap();
        total.push(t.elapsed());
        decode.push(d);
        events += count;
        audit_lines += report.audit_lines;
    }
    let wall = started.elapsed();
    assert_eq!(
        audit_lines as usize, events,
        "every line read as an audit line"
    );
    total.sort();
    decode.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let per_batch = events / BATCHES;
    println!(
        "audit: {events} events in {BATCHES} batches of 1 MB (~{per_batch} events each), one core (current-thread runtime), memory state"
    );
    println!(
        "  throughput: {:.0} events/s (decode + parse + detectors + state), target >= 200000",
        events as f64 / wall.as_secs_f64()
    );
    println!(
        "  1 MB batch latency: p50 {:.1} ms, max {:.1} ms (of which decode p50 {:.1} ms)",
        ms(total[BATCHES / 2]),
        ms(total[BATCHES - 1]),
        ms(decode[BATCHES / 2])
    );
    println!("  alerts raised: {}", sink.alerts().len());
}
