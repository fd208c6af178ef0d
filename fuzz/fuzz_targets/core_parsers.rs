//! Every parser in the domain core on arbitrary input: the client key parser, the pepper
//! secret, the SSE reader (fed in two arbitrary pieces), the rate-limit header parsers, the
//! route table, and usage extraction. None may panic; the key parser must only accept
//! strings whose checksum verifies (re-checked here independently of the parser).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate_core::auth::Peppers;
use tollgate_core::key::ClientKey;
use tollgate_core::provider::{Route, cooldown_from_headers, fold_stream_usage, parse_go_duration_ms, usage_from_body, Usage};
use tollgate_core::sse::SseReader;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        let mut r = SseReader::new();
        r.feed(data, |_| {});
        return;
    };
    if let Ok(k) = ClientKey::parse(s) {
        let full = k.expose();
        let (before, sum) = full.split_at(full.len() - 6);
        let crc = crc32(before.as_bytes());
        assert_eq!(tollgate_core::base62::encode_padded(u64::from(crc), 6), sum);
    }
    let _ = Peppers::parse(s);
    let split = s.len() / 2;
    let mut r = SseReader::new();
    let mut usage = Usage::default();
    let mut feed = |chunk: &[u8]| {
        r.feed(chunk, |ev| {
            if let Ok(v) = serde_json::from_str(&ev.data) {
                fold_stream_usage(&mut usage, &v);
            }
        })
    };
    feed(&data[..split]);
    feed(&data[split..]);
    let _ = parse_go_duration_ms(s);
    let _ = cooldown_from_headers([("retry-after", s), ("x-ratelimit-reset-tokens", s), ("anthropic-ratelimit-requests-reset", s)], 0);
    let _ = Route::resolve("POST", s);
    if let Ok(v) = serde_json::from_str(s) {
        let _ = usage_from_body(&v);
    }
});

// CRC32/IEEE, bitwise: an implementation independent of the one the parser uses.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}
