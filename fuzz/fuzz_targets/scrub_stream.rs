//! The pool-token scrubber: arbitrary values, input and chunk boundaries.
//!
//! Invariants: nothing panics; streaming output (every `push` plus `finish`) equals the
//! one-shot scrub of the whole input, with the same replacement count; the stream never
//! holds back as many bytes as the longest searched form; for values that do not overlap
//! the placeholder, the output contains none of them in any searched form.
//!
//! Input layout: byte 0 picks the number of values (1..=4) and whether their bytes come from
//! a tiny alphabet (many overlaps) or are raw; then per value a length byte (1..=40, so some
//! are too short to count) and its bytes; then split points until a 0xFF byte; the rest is
//! the stream, where a byte below 0x08 inserts a whole value (or its `\/` JSON spelling).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate_core::scrub::{Scrubber, placeholder_overlaps};

const TINY: &[u8] = b"ab/\"\\[]R";

fn take<'a>(data: &mut &'a [u8], n: usize) -> &'a [u8] {
    let n = n.min(data.len());
    let (head, tail) = data.split_at(n);
    *data = tail;
    head
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

fuzz_target!(|data: &[u8]| {
    let mut data = data;
    let Some(&head) = take(&mut data, 1).first() else {
        return;
    };
    let tiny = head & 0x80 != 0;
    let mut values: Vec<Vec<u8>> = Vec::new();
    for _ in 0..=(head & 3) {
        let len = take(&mut data, 1)
            .first()
            .map_or(8, |&l| 1 + usize::from(l) % 40);
        let raw = take(&mut data, len);
        values.push(if tiny {
            raw.iter()
                .map(|&b| TINY[usize::from(b) % TINY.len()])
                .collect()
        } else {
            raw.to_vec()
        });
    }
    let mut cuts = Vec::new();
    while let Some(&c) = take(&mut data, 1).first() {
        if c == 0xFF {
            break;
        }
        cuts.push(usize::from(c));
    }
    let mut input = Vec::new();
    for &b in data {
        if b < 0x08 {
            let v = &values[usize::from(b) % values.len()];
            if b & 4 == 0 {
                input.extend_from_slice(v);
            } else {
                input.extend(String::from_utf8_lossy(v).replace('/', "\\/").into_bytes());
            }
        } else {
            input.push(b);
        }
    }

    let Ok(s) = Scrubber::new(values.iter().map(Vec::as_slice)) else {
        return;
    };
    let whole = s.scrub_counted(&input);
    assert_eq!(s.contains(&input), whole.is_some());
    let (expected, count) = whole.unwrap_or_else(|| (input.clone(), 0));

    let mut st = s.stream();
    let mut out = Vec::new();
    let mut prev = 0;
    let mut at = 0;
    for c in cuts {
        at = (at + c).min(input.len());
        out.extend(st.push(&input[prev..at]));
        assert!(st.held() < s.max_needle_len().max(1));
        prev = at;
    }
    out.extend(st.push(&input[prev..]));
    out.extend(st.finish());
    assert_eq!(out, expected, "stream differs from one-shot");
    assert_eq!(st.replacements(), count);

    let counted: Vec<&Vec<u8>> = values
        .iter()
        .filter(|v| v.len() >= tollgate_core::scrub::MIN_SECRET_LEN)
        .collect();
    if counted.iter().all(|v| !placeholder_overlaps(v)) {
        assert!(!s.contains(&expected), "a searched form survived scrubbing");
        for v in counted {
            assert!(!contains(&expected, v));
        }
    }
});
