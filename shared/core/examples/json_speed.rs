//! Compares `tollgate_core::json::parse_request_body` with `serde_json::from_slice` on
//! request-shaped bodies. Prints numbers; asserts nothing about time.
//!
//! `cargo run --release -p tollgate-core --example json_speed`

use serde_json::{Value, json};
use std::hint::black_box;
use std::time::{Duration, Instant};
use tollgate_core::json::parse_request_body;

fn chat_body(messages: usize, text_len: usize) -> Vec<u8> {
    let text = "lorem ipsum dolor sit amet ".repeat(text_len / 27 + 1);
    let msgs: Vec<Value> = (0..messages)
        .map(|i| {
            json!({
                "role": if i % 2 == 0 { "user" } else { "assistant" },
                "content": [{"type": "text", "text": &text[..text_len]}],
                "name": format!("n{i}"),
            })
        })
        .collect();
    serde_json::to_vec(&json!({
        "model": "gpt-4o-mini",
        "temperature": 0.2,
        "max_tokens": 512,
        "stream": true,
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "integer"}}}}}],
        "messages": msgs,
    }))
    .unwrap_or_default()
}

fn time(iters: u32, mut f: impl FnMut()) -> Duration {
    for _ in 0..iters / 10 + 1 {
        f();
    }
    let t = Instant::now();
    for _ in 0..iters {
        f();
    }
    t.elapsed() / iters
}

fn main() {
    let cases = [
        ("small (2 msgs x 40 B)", chat_body(2, 40)),
        ("medium (20 msgs x 400 B)", chat_body(20, 400)),
        ("large (200 msgs x 4 KB)", chat_body(200, 4000)),
        ("many keys (2000 msgs x 8 B)", chat_body(2000, 8)),
    ];
    println!(
        "{:<30} {:>10} {:>14} {:>14} {:>7}",
        "body", "bytes", "serde_json", "strict", "ratio"
    );
    for (name, body) in &cases {
        let iters = (20_000_000 / body.len().max(1)).clamp(20, 200_000) as u32;
        // Interleave the two a few times so drift affects both alike.
        let (mut a, mut b) = (Duration::ZERO, Duration::ZERO);
        for _ in 0..3 {
            a += time(iters, || {
                black_box(serde_json::from_slice::<Value>(black_box(body)).ok());
            });
            b += time(iters, || {
                black_box(parse_request_body(black_box(body)).ok());
            });
        }
        println!(
            "{:<30} {:>10} {:>12.1?} {:>12.1?} {:>7.2}",
            name,
            body.len(),
            a / 3,
            b / 3,
            b.as_secs_f64() / a.as_secs_f64()
        );
    }
}
