//! DLP benchmark: prints a table (numbers, not pass/fail).
//!
//! `cargo run --release -p tollgate-dlp --example bench [-- --quick]`
//!
//! - throughput (MB/s, one core) of `scan` on English prose, Japanese prose and
//!   JSON chat bodies (sprinkled with a few real findings, as mixed text is);
//! - p50 / p99 latency of `redact_request` on a 4 KB chat body end to end
//!   (parse, scan, redact, re-serialize);
//! - time for 1 MB adversarial inputs, and the 2 MB / 1 MB ratio (≈2 = linear).

use std::hint::black_box;
use std::time::{Duration, Instant};
use tollgate_dlp::{Policy, RequestKind, cli, scan};

type Generator = Box<dyn Fn(usize) -> String>;

struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[(self.next() as usize) % xs.len()]
    }
}

const EN_WORDS: &[&str] = &[
    "the",
    "model",
    "request",
    "returned",
    "an",
    "error",
    "when",
    "we",
    "deployed",
    "version",
    "to",
    "production",
    "and",
    "customers",
    "in",
    "region",
    "saw",
    "latency",
    "of",
    "about",
    "ms",
    "please",
    "review",
    "the",
    "logs",
    "for",
    "order",
    "2024-05-17",
    "at",
    "12:30",
    "with",
    "ticket",
    "#4821",
    "because",
    "our",
    "team",
    "needs",
    "a",
    "summary",
    "by",
    "Friday",
    "thanks",
    "it",
    "is",
    "3.5",
    "times",
    "slower",
    "than",
    "last",
    "week's",
    "build",
    "v1.4.2",
    "on",
    "node",
    "pool",
    "A",
];
const JA_SENTENCES: &[&str] = &[
    "本日の会議では新しいサービスの導入について議論しました。",
    "担当者は来週までに見積もりを提出する予定です。",
    "システムの応答時間が2024年5月17日から遅くなっています。",
    "お客様からの問い合わせが増えているため、対応手順を見直します。",
    "データベースの移行作業は午後3時から開始します。",
    "この資料は社外秘ですので取り扱いに注意してください。",
    "第3四半期の売上は前年比12%増となりました。",
    "ログを確認したところ、エラーは発生していませんでした。",
];
const SPRINKLE: &[&str] = &[
    " card 4111 1111 1111 1111 ",
    " mail taro.yamada@example.co.jp ",
    " 電話090-1234-5678 ",
    " from 10.20.30.40 ",
];

fn english(n: usize, rng: &mut Lcg) -> String {
    let mut s = String::with_capacity(n + 64);
    while s.len() < n {
        s.push_str(rng.pick(EN_WORDS));
        s.push(if rng.next() % 12 == 0 { '\n' } else { ' ' });
        if rng.next() % 800 == 0 {
            s.push_str(rng.pick(SPRINKLE));
        }
    }
    s
}

fn japanese(n: usize, rng: &mut Lcg) -> String {
    let mut s = String::with_capacity(n + 256);
    while s.len() < n {
        s.push_str(rng.pick(JA_SENTENCES));
        if rng.next() % 60 == 0 {
            s.push_str(rng.pick(SPRINKLE));
        }
    }
    s
}

fn chat_body(size: usize, rng: &mut Lcg) -> Vec<u8> {
    let mut msgs =
        vec![serde_json::json!({"role": "system", "content": "You are a helpful assistant."})];
    let mut total = 0;
    let mut i = 0;
    while total < size.saturating_sub(300) {
        let text = if i % 2 == 0 {
            english(400, rng)
        } else {
            japanese(400, rng)
        };
        total += text.len() + 40;
        msgs.push(serde_json::json!({"role": if i % 2 == 0 { "user" } else { "assistant" }, "content": text}));
        i += 1;
    }
    msgs.push(
        serde_json::json!({"role": "user", "content": "my card is 4111 1111 1111 1111, thanks"}),
    );
    serde_json::to_vec(&serde_json::json!({"model": "gpt-4o", "messages": msgs, "stream": true}))
        .unwrap_or_default()
}

fn throughput(text: &str, policy: &Policy, min: Duration) -> f64 {
    let start = Instant::now();
    let mut bytes = 0usize;
    while start.elapsed() < min {
        black_box(scan(black_box(text), policy));
        bytes += text.len();
    }
    bytes as f64 / start.elapsed().as_secs_f64() / 1e6
}

/// Best of three runs.
fn time_once(f: impl Fn()) -> Duration {
    (0..3)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .min()
        .unwrap_or_default()
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let min = Duration::from_millis(if quick { 300 } else { 1500 });
    let policy = Policy::default();
    let _ = tollgate_dlp::init();
    let mut rng = Lcg(42);

    let en = english(4 << 20, &mut rng);
    let ja = japanese(4 << 20, &mut rng);
    let bodies: Vec<Vec<u8>> = (0..64).map(|_| chat_body(16 << 10, &mut rng)).collect();
    let bodies_s: Vec<String> = bodies
        .iter()
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .collect();
    let joined = bodies_s.join("\n");

    println!("| workload | result |");
    println!("|---|---|");
    println!(
        "| scan, English prose (4 MiB) | {:.0} MB/s |",
        throughput(&en, &policy, min)
    );
    println!(
        "| scan, Japanese prose (4 MiB) | {:.0} MB/s |",
        throughput(&ja, &policy, min)
    );
    println!(
        "| scan, JSON chat bodies as text (1 MiB) | {:.0} MB/s |",
        throughput(&joined, &policy, min)
    );
    // redact_request throughput over 16 KB bodies
    let start = Instant::now();
    let mut bytes = 0usize;
    while start.elapsed() < min {
        for b in &bodies {
            black_box(cli::redact_request(RequestKind::Openai, b, &policy).ok());
            bytes += b.len();
        }
    }
    println!(
        "| redact_request, 16 KB chat bodies (parse+scan+redact+serialize) | {:.0} MB/s |",
        bytes as f64 / start.elapsed().as_secs_f64() / 1e6
    );

    // 4 KB body latency
    let body4 = chat_body(4 << 10, &mut rng);
    let iters = if quick { 2_000 } else { 20_000 };
    let mut lat: Vec<Duration> = Vec::with_capacity(iters);
    for _ in 0..200 {
        black_box(cli::redact_request(RequestKind::Openai, &body4, &policy).ok());
    }
    for _ in 0..iters {
        let t = Instant::now();
        black_box(cli::redact_request(RequestKind::Openai, black_box(&body4), &policy).ok());
        lat.push(t.elapsed());
    }
    lat.sort();
    let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
    println!(
        "| 4 KB chat body ({} B) end to end, p50 / p99 / max | {:.1} µs / {:.1} µs / {:.1} µs |",
        body4.len(),
        pct(0.50).as_secs_f64() * 1e6,
        pct(0.99).as_secs_f64() * 1e6,
        lat[lat.len() - 1].as_secs_f64() * 1e6
    );

    let mb = 1 << 20;
    let adversarial: Vec<(&str, Generator)> = vec![
        ("digits only", Box::new(|n| "7".repeat(n))),
        ("digit groups '4111 '", Box::new(|n| "4111 ".repeat(n / 5))),
        ("hyphenated '1-'", Box::new(|n| "1-".repeat(n / 2))),
        ("dotted '1.2.'", Box::new(|n| "1.2.".repeat(n / 4))),
        (
            "near-miss keys 'sk-aaaa… '",
            Box::new(|n| ["sk-", &"a1B".repeat(20), " "].concat().repeat(n / 64)),
        ),
        (
            "'password=' repeated",
            Box::new(|n| "password=".repeat(n / 9)),
        ),
        ("'a@' repeated", Box::new(|n| "a@".repeat(n / 2))),
        ("hex and colons 'a:'", Box::new(|n| "a:".repeat(n / 2))),
        ("full-width digits", Box::new(|n| "１".repeat(n / 3))),
        (
            "'-----BEGIN' repeated",
            // Assembled at run time so the repository holds no PEM-header literal.
            Box::new(|n| ["-----BEGIN ", "PRIVATE KEY-----"].concat().repeat(n / 27)),
        ),
    ];
    for (name, make) in adversarial {
        let one = make(mb);
        let two = make(2 * mb);
        let t1 = time_once(|| {
            black_box(scan(&one, &policy));
        });
        let t2 = time_once(|| {
            black_box(scan(&two, &policy));
        });
        println!(
            "| adversarial 1 MB: {name} | {:.1} ms (2 MB/1 MB = {:.2}) |",
            t1.as_secs_f64() * 1e3,
            t2.as_secs_f64() / t1.as_secs_f64().max(1e-9)
        );
    }
}
