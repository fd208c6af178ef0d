//! `tollgate-bench seed` writes a seed file for `TOLLGATE_STORE=memory` (a tenant, a fresh key
//! — printed once on stdout — and one token per pool pointing at the given upstream).
//! `tollgate-bench load` sends requests at a fixed rate (open loop: each request is timed from
//! when it was due, so a slow server cannot hide its queueing) and prints percentiles as JSON.

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
    },
    Load {
        /// Full URL to POST to.
        #[arg(long)]
        url: String,
        #[arg(long)]
        rate: u32,
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
    },
}

fn random_pepper() -> String {
    let mut b = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut b);
    tollgate_core::auth::hex(&b)
}

fn seed(upstream: &str, out: &str) -> Result<(), String> {
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
            "tollgate/pool/bench-openai": "mock-ok-bench-openai",
            "tollgate/pool/bench-anthropic": "mock-ok-bench-anthropic"
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

async fn load(
    url: String,
    rate: u32,
    seconds: u32,
    key: String,
    warmup: u32,
    samples: Option<String>,
) -> Result<(), String> {
    let client = reqwest::Client::builder()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(1024)
        .build()
        .map_err(|e| e.to_string())?;
    let body = json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Say hello in five words."}]}).to_string();
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
    let total = rate * seconds;
    let interval = Duration::from_secs_f64(1.0 / f64::from(rate));
    let results = Arc::new(std::sync::Mutex::new(Vec::with_capacity(total as usize)));
    let errors = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let start = Instant::now();
    let mut handles = Vec::with_capacity(total as usize);
    for i in 0..total {
        let due = start + interval * i;
        tokio::time::sleep_until(due.into()).await;
        // Timed from the moment the request is handed to the runtime, not from `due`: the
        // timer wakes up to ~1 ms late, which is the generator's lateness, not the server's.
        // Requests never wait for earlier answers (open loop), so server queueing still shows.
        let sent = Instant::now();
        let fut = send();
        let results = results.clone();
        let errors = errors.clone();
        handles.push(tokio::spawn(async move {
            match fut.await {
                Ok(r) if r.status().is_success() => {
                    if r.bytes().await.is_ok() {
                        let ms = sent.elapsed().as_secs_f64() * 1000.0;
                        if let Ok(mut v) = results.lock() {
                            v.push(ms);
                        }
                        return;
                    }
                    errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                _ => {
                    errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
        }));
    }
    for h in handles {
        let _ = h.await;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let mut v = results.lock().map_err(|_| "poisoned")?.clone();
    v.sort_by(|a, b| a.total_cmp(b));
    if let Some(path) = samples {
        let text: String = v.iter().map(|x| format!("{x}\n")).collect();
        std::fs::write(&path, text).map_err(|e| format!("cannot write {path}: {e}"))?;
    }
    println!(
        "{}",
        json!({
            "url": url, "rate": rate, "requests": total, "ok": v.len(),
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
        Cmd::Seed { upstream, out } => seed(&upstream, &out),
        Cmd::Load {
            url,
            rate,
            seconds,
            key,
            warmup,
            samples,
        } => load(url, rate, seconds, key, warmup, samples).await,
    };
    match r {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
