//! The strict request-body parser on arbitrary bytes.
//!
//! Invariants: nothing panics; it accepts exactly what serde_json accepts minus bodies with
//! a repeated key, and then gives serde_json's value; any other refusal is one serde_json
//! makes too; an accepted value re-serializes to
//! bytes it accepts again, with the same value (floats within serde_json's default parsing
//! precision); the DLP request inspection of an accepted body never panics, and a body it
//! rewrote still passes the strict parser.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use tollgate_core::json::{BodyError, parse_request_body, parse_strict};
use tollgate_dlp::{Action, Category, Decision, Policy, RequestKind, inspect_request};

/// Equal, except that floats may differ in the last bits: serde_json without
/// `float_roundtrip` parses some printed floats one ulp away.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) if x.is_f64() || y.is_f64() => {
            match (x.as_f64(), y.as_f64()) {
                (Some(x), Some(y)) => {
                    x == y || (x - y).abs() <= 4.0 * f64::EPSILON * x.abs().max(y.abs())
                }
                _ => false,
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|((ka, va), (kb, vb))| ka == kb && same(va, vb))
        }
        _ => a == b,
    }
}

fn redact_all() -> Policy {
    [
        Category::Secret,
        Category::Financial,
        Category::NationalId,
        Category::Contact,
        Category::Network,
    ]
    .into_iter()
    .fold(Policy::default(), |p, c| p.with_category(c, Action::Redact))
}

fuzz_target!(|data: &[u8]| {
    let loose = serde_json::from_slice::<Value>(data);
    match parse_strict(data) {
        Ok(v) => {
            assert_eq!(loose.as_ref().ok(), Some(&v), "differs from serde_json");
            let bytes = serde_json::to_vec(&v).expect("a parsed value serializes");
            let again = parse_strict(&bytes).expect("its own serialization parses strictly");
            assert!(same(&v, &again), "round trip changed the value");
        }
        // Parsing stops at the first problem: a repeated key before a syntax error is
        // reported as the duplicate, so serde_json may refuse the body too.
        Err(BodyError::DuplicateKey { .. }) => {}
        Err(_) => assert!(
            loose.is_err(),
            "refused what serde_json accepts without a duplicate"
        ),
    }

    let Ok(body) = parse_request_body(data) else {
        return;
    };
    let policy = redact_all();
    for kind in [RequestKind::Openai, RequestKind::Anthropic] {
        let mut v = body.clone();
        let report = inspect_request(kind, &mut v, &policy);
        if report.decision == Decision::Redact {
            let bytes = serde_json::to_vec(&v).expect("a redacted body serializes");
            assert!(
                parse_request_body(&bytes).is_ok(),
                "redacted body fails the strict parser"
            );
        }
    }
});
