//! The proxy's SSE re-framing: arbitrary provider bytes, split at arbitrary points, go through
//! the SSE reader and the response filter (secret redaction, re-framing) as the relay does.
//! Invariants: no panic; every event the reader saw comes out as at least one well-formed
//! event; a payload that is not JSON (and so is not rewritten) comes back line for line.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate_core::records::Policy;
use tollgate_core::sse::SseReader;
use tollgate_gateway::inspect::{ResponseFilter, response_policy};

fuzz_target!(|data: &[u8]| {
    let Some((&split, rest)) = data.split_first() else {
        return;
    };
    let step = usize::from(split % 64) + 1;
    let mut reader = SseReader::new();
    let mut filter = ResponseFilter::new(response_policy(&Policy::default()));
    let mut out = String::new();
    let mut seen = Vec::new();
    for chunk in rest.chunks(step) {
        reader.feed(chunk, |ev| {
            out.push_str(&filter.event(ev.event.as_deref(), &ev.data));
            seen.push(ev);
        });
    }
    let mut back = Vec::new();
    SseReader::new().feed(out.as_bytes(), |ev| back.push(ev));
    assert!(back.len() >= seen.len(), "events lost in re-framing");
    for ev in &seen {
        if serde_json::from_str::<serde_json::Value>(&ev.data).is_err() && !ev.data.contains('\r') {
            assert!(
                back.iter().any(|b| b.data == ev.data),
                "a non-JSON payload changed: {:?}",
                ev.data
            );
        }
    }
});
