//! Fuzz the DLP scanner, redaction, request walkers and stream redactor.
//!
//! Invariants: nothing panics; offsets are in bounds, ordered, on char
//! boundaries; redaction leaves no finding behind; a request body that was
//! valid JSON is still valid JSON after redaction; streaming in arbitrary
//! chunks never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate_dlp::{Action, Category, Policy, RequestKind, StreamRedactor, cli, redact_text, scan};

fn redact_all() -> Policy {
    [Category::Secret, Category::Financial, Category::NationalId, Category::Contact, Category::Network]
        .into_iter()
        .fold(Policy::default(), |p, c| p.with_category(c, Action::Redact))
}

fuzz_target!(|data: &[u8]| {
    let policy = redact_all();
    let text = String::from_utf8_lossy(data);
    let findings = scan(&text, &policy);
    let mut last = 0;
    for f in &findings {
        assert!(f.start < f.end && f.end <= text.len());
        assert!(f.start >= last, "findings overlap or are unordered");
        assert!(text.is_char_boundary(f.start) && text.is_char_boundary(f.end));
        last = f.end;
    }
    let (once, _) = redact_text(&text, &policy);
    let (_, again) = redact_text(&once, &policy);
    // placeholders never produce new findings
    assert!(again.is_empty(), "left after redaction: {again:?}");

    // What the request entry points accept: a JSON object with no repeated key.
    if tollgate_dlp::json::parse_request_body(data).is_ok() {
        for kind in [RequestKind::Openai, RequestKind::Anthropic] {
            let (out, _) = cli::redact_request(kind, data, &policy).expect("valid JSON object");
            assert!(serde_json::from_slice::<serde_json::Value>(&out).is_ok());
        }
    }

    let mut s = StreamRedactor::new(&Policy::default());
    let step = 1 + (data.first().copied().unwrap_or(0) as usize % 17);
    let chars: Vec<char> = text.chars().collect();
    for piece in chars.chunks(step) {
        let _ = s.push(&piece.iter().collect::<String>());
    }
    let _ = s.finish();
});
