//! `tollgate-bench seed` writes a seed file for `TOLLGATE_STORE=memory` (a tenant, a fresh key
//! — printed once on stdout — and one token per pool pointing at the given upstream).
//! `tollgate-bench load` sends requests at a fixed rate (open loop: each request is timed from
//! when it was due, so a slow server cannot hide its queueing) and prints percentiles as JSON.
//! With `--closed N` it instead keeps N requests in flight for `--seconds` (closed loop: a new
//! request as soon as one is answered) and reports the throughput reached. With
//! `--stream-pace-ms P` the requests are streamed (`"stream": true`, against a `mock-paceP…`
//! upstream that sends event i at i × P ms): each sample is then the time to the first byte,
//! and `--event-samples` gets one sample per later event, its arrival minus the request's send
//! time minus i × P — the relay latency of that event.

use clap::{Parser, Subcommand};
use rand::RngCore;
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tollgate_core::auth::Peppers;
use tollgate_core::key::{ClientKey, KeyEnv};

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    Seed {
        /// Base URL of the upstream (the mock provider), without /v1.
        #[arg(long)]
        upstream: String,
        #[arg(long)]
        out: String,
        /// The pool tokens are `mock-paceN-…`: streamed answers come one event per N ms
        /// (non-stream answers are unchanged). Must match the load's `--stream-pace-ms`.
        #[arg(long, default_value_t = 5)]
        pace_ms: u64,
    },
    Load(LoadArgs),
}

fn random_pepper() -> String {
    let mut b = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut b);
    tollgate_core::auth::hex(&b)
}

fn seed(upstream: &str, out: &str, pace_ms: u64) -> Result<(), String> {
    let pepper = json!({"current": "1", "v1": random_pepper()}).to_string();
    let peppers = Peppers::parse(&pepper).map_err(|e| e.to_string())?;
    let key = ClientKey::generate(KeyEnv::Test, &mut rand::rngs::OsRng);
    let (digest_hex, pepper_version) = peppers.digest_new(&key);
    let now = tollgate_core::clock::Clock::now_ms(&tollgate_core::clock::SystemClock);
    let token = |pool: &str| {
        json!({
            "token_id": format!("bench-{pool}"), "pool": pool, "provider": pool,
            "base_url": format!("{}/v1", upstream.trim_end_matches('/')),
            "secret": {"kind": "secrets_manager", "secret_id": format!("tollgate/pool/bench-{pool}")},
            "owner": "bench", "status": "active", "created_at": now
        })
    };
    let seed = json!({
        "pepper": pepper,
        "tenants": [{"tenant_id": "bench", "name": "Benchmark", "owner": "bench", "created_at": now}],
        "keys": [{
            "key_id": key.key_id(), "tenant_id": "bench", "owner": "bench", "env": "test",
            "name": "bench", "digest_hex": digest_hex, "pepper_version": pepper_version,
            "last4": key.last4(), "status": "active", "created_at": now
        }],
        "tokens": [token("openai"), token("anthropic")],
        "secrets": {
            "tollgate/pool/bench-openai": format!("mock-pace{pace_ms}-bench-openai"),
            "tollgate/pool/bench-anthropic": format!("mock-pace{pace_ms}-bench-anthropic")
        }
    });
    std::fs::write(out, seed.to_string()).map_err(|e| format!("cannot write {out}: {e}"))?;
    println!("{}", key.expose());
    Ok(())
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[derive(clap::Args)]
struct LoadArgs {
    /// Full URL to POST to.
    #[arg(long)]
    url: String,
    /// Requests per second (open loop). Ignored with `--closed`.
    #[arg(long, default_value_t = 0)]
    rate: u32,
    /// Closed loop: keep this many requests in flight instead of a fixed rate.
    #[arg(long)]
    closed: Option<u32>,
    /// Stream, against an upstream pacing its events this many ms apart.
    #[arg(long)]
    stream_pace_ms: Option<u64>,
    /// With `--stream-pace-ms`: write every later event's relay latency (ms) here.
    #[arg(long)]
    event_samples: Option<String>,
    #[arg(long, default_value_t = 10)]
    seconds: u32,
    /// Bearer token to send (the tollgate key, or a mock token for direct runs).
    #[arg(long)]
    key: String,
    /// Requests sent first and not measured.
    #[arg(long, default_value_t = 200)]
    warmup: u32,
    /// Also write every latency (ms, one per line) to this file.
    #[arg(long)]
    samples: Option<String>,
}

/// What one answered request measured: total time (or time to first byte when streamed), and
/// per later event its relay latency.
struct Timing {
    ms: f64,
    events: Vec<f64>,
}

async fn one(
    fut: impl std::future::Future<Output = reqwest::Result<reqwest::Response>>,
    sent: Instant,
    pace_ms: Option<u64>,
) -> Option<Timing> {
    let mut r = fut.await.ok()?;
    if !r.status().is_success() {
        return None;
    }
    let Some(pace) = pace_ms else {
        r.bytes().await.ok()?;
        return Some(Timing {
            ms: sent.elapsed().as_secs_f64() * 1000.0,
            events: Vec::new(),
        });
    };
    let mut ttfb = None;
    let mut events = Vec::new();
    let mut seen = 0usize;
    let mut tail = Vec::<u8>::new();
    while let Some(chunk) = r.chunk().await.ok()? {
        let at = sent.elapsed().as_secs_f64() * 1000.0;
        ttfb.get_or_insert(at);
        tail.extend_from_slice(&chunk);
        // Count the events this chunk completed (blank-line terminated).
        while let Some(i) = tail.windows(2).position(|w| w == b"\n\n") {
            tail.drain(..i + 2);
            if seen > 0 {
                events.push(at - (seen as f64) * pace as f64);
            }
            seen += 1;
        }
    }
    Some(Timing { ms: ttfb?, events })
}

async fn load(a: LoadArgs) -> Result<(), String> {
    let LoadArgs {
        url,
        rate,
        closed,
        stream_pace_ms,
        event_samples,
        seconds,
        key,
        warmup,
        samples,
    } = a;
    if closed.is_none() && rate == 0 {
        return Err("give --rate or --closed".into());
    }
    let client = reqwest::Client::builder()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(1024)
        .build()
        .map_err(|e| e.to_string())?;
    let mut body = json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Say hello in five words."}]});
    if stream_pace_ms.is_some() {
        body["stream"] = json!(true);
        body["stream_options"] = json!({"include_usage": true});
    }
    let body = body.to_string();
    let send = {
        let client = client.clone();
        let url = url.clone();
        let key = key.clone();
        let body = body.clone();
        move || {
            client
                .post(&url)
                .bearer_auth(&key)
                .header("content-type", "application/json")
                .body(body.clone())
                .send()
        }
    };
    for _ in 0..warmup {
        let r = send()
            .await
            .map_err(|e| format!("warm-up request failed: {e}"))?;
        if !r.status().is_success() {
            return Err(format!("warm-up got HTTP {}", r.status()));
        }
        let _ = r.bytes().await;
    }
    let results = Arc::new(std::sync::Mutex::new(Vec::new()));
    let event_results = Arc::new(std::sync::Mutex::new(Vec::new()));
    let errors = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let record = {
        let (results, event_results, errors) =
            (results.clone(), event_results.clone(), errors.clone());
        move |t: Option<Timing>| match t {
            Some(t) => {
                if let Ok(mut v) = results.lock() {
                    v.push(t.ms);
                }
                if let Ok(mut v) = event_results.lock() {
                    v.extend(t.events);
                }
            }
            None => {
                errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
    };
    let start = Instant::now();
    let mut handles = Vec::new();
    let total = if let Some(n) = closed {
        let end = start + Duration::from_secs(u64::from(seconds));
        for _ in 0..n {
            let (send, record) = (send.clone(), record.clone());
            handles.push(tokio::spawn(async move {
                while Instant::now() < end {
                    let sent = Instant::now();
                    record(one(send(), sent, stream_pace_ms).await);
                }
            }));
        }
        0
    } else {
        let total = rate * seconds;
        let interval = Duration::from_secs_f64(1.0 / f64::from(rate));
        for i in 0..total {
            let due = start + interval * i;
            tokio::time::sleep_until(due.into()).await;
            // Timed from the moment the request is handed to the runtime, not from `due`: the
            // timer wakes up to ~1 ms late, which is the generator's lateness, not the server's.
            // Requests never wait for earlier answers (open loop), so server queueing still shows.
            let sent = Instant::now();
            let fut = send();
            let record = record.clone();
            handles.push(tokio::spawn(async move {
                record(one(fut, sent, stream_pace_ms).await);
            }));
        }
        total
    };
    for h in handles {
        let _ = h.await;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let mut v = results.lock().map_err(|_| "poisoned")?.clone();
    v.sort_by(|a, b| a.total_cmp(b));
    let write = |path: &str, v: &[f64]| {
        let text: String = v.iter().map(|x| format!("{x}\n")).collect();
        std::fs::write(path, text).map_err(|e| format!("cannot write {path}: {e}"))
    };
    if let Some(path) = samples {
        write(&path, &v)?;
    }
    if let Some(path) = event_samples {
        let ev = event_results.lock().map_err(|_| "poisoned")?.clone();
        write(&path, &ev)?;
    }
    println!(
        "{}",
        json!({
            "url": url, "rate": rate, "closed": closed, "requests": total, "ok": v.len(),
            "errors": errors.load(std::sync::atomic::Ordering::Relaxed),
            "achieved_rps": (v.len() as f64 / elapsed * 10.0).round() / 10.0,
            "p50_ms": pct(&v, 50.0), "p90_ms": pct(&v, 90.0), "p99_ms": pct(&v, 99.0),
            "max_ms": v.last().copied().unwrap_or(f64::NAN),
        })
    );
    Ok(())
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let r = match cli.cmd {
        Cmd::Seed {
            upstream,
            out,
            pace_ms,
        } => seed(&upstream, &out, pace_ms),
        Cmd::Load(args) => load(args).await,
    };
    match r {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
