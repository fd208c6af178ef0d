//! The borrowed pass (`tollgate_dlp::fast`) against the parsed path it stands in for: for
//! generated and hand-written bodies — repeated keys at any depth, escapes, `\u` escapes and
//! surrogate pairs, huge numbers, nesting at the recursion limit, invalid UTF-8, every part
//! shape the request walker treats specially — both give the same error, or the pass says
//! `Clean` with exactly the parsed path's report (and top-level values), or it says
//! `Fallback` and the parsed path has something to rewrite or block. Secret-shaped fixtures
//! are assembled at run time from fragments.

use proptest::prelude::*;
use serde_json::Value;
use std::fmt::Write as _;
use tollgate_dlp::fast::{RequestPass, ResponsePass, Top, scan_request_bytes, scan_response_bytes};
use tollgate_dlp::json::{parse_request_body, parse_strict, walk_strings};
use tollgate_dlp::validate::b64_encode;
use tollgate_dlp::*;
mod common;
use common::{aws_access_key, github_token};

const CAPTURE: [&str; 3] = ["model", "stream", "max_tokens"];

fn policies() -> Vec<Policy> {
    vec![
        Policy::default(),
        Policy::default().with_entity(Entity::OpaqueInput, Action::Log),
        Policy::default()
            .with_category(Category::Contact, Action::Redact)
            .with_entity(Entity::OpaqueInput, Action::Off),
        Policy::default()
            .with_category(Category::Secret, Action::Log)
            .with_category(Category::Financial, Action::Log)
            .with_category(Category::NationalId, Action::Log)
            .with_entity(Entity::OpaqueInput, Action::Log),
    ]
}

/// The response policy the gateway uses: secrets redacted, nothing else.
fn response_policy() -> Policy {
    let mut p = Policy::default();
    for c in [
        Category::Financial,
        Category::NationalId,
        Category::Contact,
        Category::Network,
    ] {
        p = p.with_category(c, Action::Off);
    }
    p.with_category(Category::Secret, Action::Redact)
}

/// Runs both request paths on `bytes` and checks they agree. Returns whether the pass
/// answered `Clean`.
fn agree_request(bytes: &[u8], policy: &Policy) -> bool {
    let fast = scan_request_bytes(RequestKind::Openai, bytes, policy, &CAPTURE);
    let parsed = parse_request_body(bytes);
    match (fast, parsed) {
        (Err(a), Err(b)) => {
            assert_eq!(
                a,
                b,
                "errors differ for {:?}",
                String::from_utf8_lossy(bytes)
            );
            false
        }
        (Err(a), Ok(_)) => {
            assert_eq!(Some(a), None, "fast refused what the parsed path accepts");
            false
        }
        (Ok(RequestPass::Fallback), _) => {
            // Nothing to check against: the caller runs the parsed path. The pass gives up
            // only for something to rewrite or block (which may come before a syntax error),
            // or a non-string `data` in a base64 part.
            if let Ok(mut v) = parse_request_body(bytes) {
                let r = inspect_request(RequestKind::Openai, &mut v, policy);
                assert!(
                    matches!(r.decision, Decision::Redact | Decision::Block)
                        || has_structured_data(&v),
                    "fallback without cause: {:?}",
                    String::from_utf8_lossy(bytes)
                );
            }
            false
        }
        (Ok(RequestPass::Clean { report, top }), Ok(v)) => {
            let mut w = v.clone();
            let theirs = inspect_request(RequestKind::Openai, &mut w, policy);
            assert_eq!(report, theirs, "{:?}", String::from_utf8_lossy(bytes));
            assert!(matches!(report.decision, Decision::Allow | Decision::Log));
            assert_eq!(w, v, "a clean body is not rewritten");
            let want: Vec<Option<Top<'_>>> =
                CAPTURE.iter().map(|k| v.get(*k).map(Top::of)).collect();
            assert_eq!(top, want);
            true
        }
        (Ok(RequestPass::Clean { .. }), Err(e)) => {
            assert_eq!(None, Some(e), "fast accepted what the parsed path refuses");
            false
        }
    }
}

/// Some object holds an array or object under `data` (the pass gives up when that object
/// turns out to be a base64 part, which the parsed walk skips).
fn has_structured_data(v: &Value) -> bool {
    match v {
        Value::Array(a) => a.iter().any(has_structured_data),
        Value::Object(o) => {
            matches!(o.get("data"), Some(Value::Array(_) | Value::Object(_)))
                || o.values().any(has_structured_data)
        }
        _ => false,
    }
}

fn agree_response(bytes: &[u8], policy: &Policy) -> bool {
    let fast = scan_response_bytes(bytes, policy);
    match (fast, parse_strict(bytes)) {
        (Err(a), Err(b)) => {
            assert_eq!(a, b);
            false
        }
        (Err(a), Ok(_)) => {
            assert_eq!(Some(a), None, "fast refused what the parsed path accepts");
            false
        }
        (Ok(ResponsePass::Fallback), Ok(v)) => {
            let mut redact = false;
            walk_strings(&v, &mut |s| {
                redact |= scan(s, policy).iter().any(|f| f.action == Action::Redact);
            });
            assert!(redact, "fallback without a redaction");
            false
        }
        (Ok(ResponsePass::Fallback), Err(_)) => false,
        (Ok(ResponsePass::Clean { usage }), Ok(v)) => {
            let mut redact = false;
            walk_strings(&v, &mut |s| {
                redact |= scan(s, policy).iter().any(|f| f.action == Action::Redact);
            });
            assert!(!redact, "clean, but the parsed path redacts");
            assert_eq!(usage.as_ref(), v.get("usage"));
            true
        }
        (Ok(ResponsePass::Clean { .. }), Err(e)) => {
            assert_eq!(None, Some(e), "fast accepted what the parsed path refuses");
            false
        }
    }
}

fn agree_all(bytes: &[u8]) {
    for p in policies() {
        agree_request(bytes, &p);
    }
    agree_response(bytes, &response_policy());
}

/// A JSON document as written, keys in order and possibly repeated.
#[derive(Debug, Clone)]
enum Doc {
    Null,
    Bool(bool),
    Num(String),
    Str(String),
    Arr(Vec<Doc>),
    Obj(Vec<(String, Doc)>),
}

/// Writes `s` as a JSON string, escaping characters as `mask` says (one bit per char,
/// cycling): `\uXXXX` (surrogate pairs above the BMP) or the short escapes.
fn write_str(out: &mut String, s: &str, mask: u64) {
    out.push('"');
    for (i, c) in s.chars().enumerate() {
        let escape = mask >> (i % 64) & 1 == 1;
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' if escape => out.push_str("\\n"),
            '/' if escape => out.push_str("\\/"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c if escape => {
                let mut buf = [0u16; 2];
                for u in c.encode_utf16(&mut buf) {
                    let _ = write!(out, "\\u{u:04X}");
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn write_doc(out: &mut String, d: &Doc, mask: u64, pretty: bool) {
    let sep = if pretty { ",\n " } else { "," };
    match d {
        Doc::Null => out.push_str("null"),
        Doc::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Doc::Num(n) => out.push_str(n),
        Doc::Str(s) => write_str(out, s, mask),
        Doc::Arr(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push_str(sep);
                }
                write_doc(out, x, mask.rotate_left(7), pretty);
            }
            out.push(']');
        }
        Doc::Obj(o) => {
            out.push('{');
            for (i, (k, x)) in o.iter().enumerate() {
                if i > 0 {
                    out.push_str(sep);
                }
                write_str(out, k, mask.rotate_left(3));
                out.push_str(if pretty { ": " } else { ":" });
                write_doc(out, x, mask.rotate_left(11), pretty);
            }
            out.push('}');
        }
    }
}

fn text_pool() -> Vec<String> {
    let card = "4111 1111 1111 1111".to_owned();
    vec![
        String::new(),
        "hello".into(),
        "user".into(),
        "gpt-4o-mini".into(),
        "caf\u{e9} \u{1F600} \u{4e2d}\u{6587}".into(),
        "line\nbreak \"quoted\" back\\slash".into(),
        "mail me at jane.doe@example.com".into(),
        format!("card {card}"),
        format!("key {}", aws_access_key()),
        github_token(),
        "data:image/png;base64,iVBORw0KGgo=".into(),
        format!("data:text/plain;base64,{}", b64_encode(b"plain words")),
        format!(
            "data:text/plain;base64,{}",
            b64_encode(format!("secret {}", github_token()).as_bytes())
        ),
        "data:text/plain,caf%C3%A9".into(),
        "data:no comma".into(),
        "https://img.example/a.png?x=1".into(),
        "base64".into(),
        "image_url".into(),
        "input_audio".into(),
        "url".into(),
        "text/plain".into(),
        "image/png".into(),
        b64_encode(b"decoded text"),
        b64_encode(format!("k={}", aws_access_key()).as_bytes()),
        "%%%not base64".into(),
    ]
}

fn key_pool() -> Vec<&'static str> {
    vec![
        "model",
        "stream",
        "max_tokens",
        "messages",
        "content",
        "role",
        "type",
        "data",
        "format",
        "media_type",
        "mime_type",
        "url",
        "file_id",
        "file_url",
        "prompt",
        "input",
        "source",
        "usage",
        "prompt_tokens",
        "a",
        "\u{e9}",
        "4111111111111111",
    ]
}

fn arb_doc() -> impl Strategy<Value = Doc> {
    let texts = text_pool();
    let keys = key_pool();
    let leaf = prop_oneof![
        Just(Doc::Null),
        any::<bool>().prop_map(Doc::Bool),
        prop_oneof![
            any::<i64>().prop_map(|n| n.to_string()),
            any::<u64>().prop_map(|n| n.to_string()),
            Just("18446744073709551616".to_owned()),
            Just("-0".to_owned()),
            Just("1.5e300".to_owned()),
            Just("1e400".to_owned()),
            Just("0.1".to_owned()),
        ]
        .prop_map(Doc::Num),
        prop::sample::select(texts).prop_map(Doc::Str),
        "\\PC{0,8}".prop_map(Doc::Str),
    ];
    leaf.prop_recursive(6, 48, 5, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Doc::Arr),
            prop::collection::vec(
                (
                    prop::sample::select(keys.clone()).prop_map(str::to_owned),
                    inner
                ),
                0..6
            )
            .prop_map(Doc::Obj),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn generated_bodies_agree(
        fields in prop::collection::vec((prop::sample::select(key_pool()), arb_doc()), 0..6),
        mask in any::<u64>(),
        pretty in any::<bool>(),
    ) {
        let top = Doc::Obj(fields.into_iter().map(|(k, d)| (k.to_owned(), d)).collect());
        let mut text = String::new();
        write_doc(&mut text, &top, mask, pretty);
        agree_all(text.as_bytes());
    }

    #[test]
    fn damaged_bodies_agree(
        d in arb_doc(),
        mask in any::<u64>(),
        cut in any::<prop::sample::Index>(),
        flip in any::<prop::sample::Index>(),
        byte in any::<u8>(),
    ) {
        let mut text = String::new();
        write_doc(&mut text, &Doc::Obj(vec![("x".into(), d)]), mask, false);
        let mut bytes = text.into_bytes();
        let i = flip.index(bytes.len());
        let mut flipped = bytes.clone();
        flipped[i] = byte;
        agree_all(&flipped);
        bytes.truncate(cut.index(bytes.len() + 1));
        agree_all(&bytes);
    }

    #[test]
    fn arbitrary_bytes_agree(bytes in prop::collection::vec(any::<u8>(), 0..48)) {
        agree_all(&bytes);
    }
}

fn deep(n: usize, inner: &str) -> String {
    format!("{{\"a\":{}{inner}{}}}", "[".repeat(n), "]".repeat(n))
}

#[test]
fn hand_written_bodies_agree() {
    let gh = github_token();
    let aws = aws_access_key();
    let png = "iVBORw0KGgo=";
    let doc_b64 = b64_encode(format!("config\nkey={gh}\n").as_bytes());
    let plain_b64 = b64_encode(b"nothing to see");
    let bodies: Vec<String> = vec![
        r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}"#.into(),
        r#"{"model":"m","stream":true,"max_tokens":12,"messages":[]}"#.into(),
        r#"{"model":"m","stream":"yes"}"#.into(),
        r#"{"model":null}"#.into(),
        r#"{"model":7}"#.into(),
        r#"{"model":"a","model":"b"}"#.into(),
        r#"{"model":"a","\u006dodel":"b"}"#.into(),
        r#"{"a":{"b":{"c":{"x":1,"y":2,"x":3}}}}"#.into(),
        r#"{"a":[[1,{"k":[{"z":0,"z":0}]}]]}"#.into(),
        r#"{"a":1,"a":2,"#.into(),
        r#"{"a":1,,"a":2}"#.into(),
        r#"{"a":1,"a":{"b":}}"#.into(),
        r#"{"k1":1,"k2":1,"k3":1,"k4":1,"k5":1,"k6":1,"k7":1,"k8":1,"k9":1,"k10":1,"k3":2}"#.into(),
        format!(r#"{{"a":"{gh}","a":"x"}}"#),
        format!(r#"{{"a":"{gh}","b":}}"#),
        r#"{"a":"\ud83d\ude00 and \u00e9"}"#.into(),
        r#"{"a":"\ud800"}"#.into(),
        r#"{"a":"\udc00\ud800"}"#.into(),
        r#"{"a":1e400}"#.into(),
        r#"{"a":18446744073709551616,"b":-9223372036854775809,"c":1.7976931348623157e308}"#.into(),
        "[1,2]".into(),
        "\"x\"".into(),
        "null".into(),
        "".into(),
        "{\"a\":1} {}".into(),
        format!(r#"{{"model":"m","messages":[{{"role":"user","content":"{aws}"}}]}}"#),
        format!(r#"{{"model":"m","messages":[{{"role":"user","content":"card 4111 1111 1111 1111"}}]}}"#),
        r#"{"model":"m","prompt":[1,2,3]}"#.into(),
        r#"{"model":"m","prompt":[[1,2],[3]]}"#.into(),
        r#"{"model":"m","prompt":[[1,2],[]]}"#.into(),
        r#"{"model":"m","input":[101,"x"]}"#.into(),
        r#"{"model":"m","x":{"prompt":[1,2]}}"#.into(),
        r#"{"model":"m","messages":[{"role":"user","content":[{"type":"input_audio","input_audio":{"data":"UklGRg==","format":"wav"}}]}]}"#.into(),
        r#"{"model":"m","input":[{"role":"user","content":[{"type":"input_image","image_url":"https://example.org/x.png"}]}]}"#.into(),
        r#"{"model":"m","input":[{"role":"user","content":[{"type":"input_file","file_id":"file-abc"}]}]}"#.into(),
        format!(r#"{{"model":"c","messages":[{{"role":"user","content":[{{"type":"image","source":{{"type":"base64","media_type":"image/png","data":"{png}"}}}}]}}]}}"#),
        format!(r#"{{"model":"c","messages":[{{"role":"user","content":[{{"source":{{"data":"{png}","media_type":"image/png","type":"base64"}},"type":"image"}}]}}]}}"#),
        r#"{"model":"c","messages":[{"role":"user","content":[{"type":"image","source":{"type":"url","url":"https://example.org/x.png"}}]}]}"#.into(),
        format!(r#"{{"model":"c","messages":[{{"role":"user","content":[{{"type":"document","source":{{"type":"base64","media_type":"text/plain","data":"{doc_b64}"}}}}]}}]}}"#),
        format!(r#"{{"model":"c","messages":[{{"role":"user","content":[{{"type":"document","source":{{"data":"{plain_b64}","type":"base64","media_type":"text/plain"}}}}]}}]}}"#),
        format!(r#"{{"model":"c","source":{{"data":"{plain_b64}","mime_type":"text/plain","format":"txt"}}}}"#),
        format!(r#"{{"model":"c","source":{{"data":"{plain_b64}","media_type":7,"mime_type":"text/plain","format":"txt"}}}}"#),
        r#"{"model":"c","source":{"type":"base64","data":{"nested":"words"}}}"#.into(),
        r#"{"model":"c","source":{"type":"text","data":{"nested":"words"}}}"#.into(),
        r#"{"model":"c","source":{"data":["words"],"type":"text"}}"#.into(),
        r#"{"model":"c","source":{"data":"words","type":"text"}}"#.into(),
        r#"{"model":"c","data":"data:image/png;base64,AAAA"}"#.into(),
        r#"{"model":"c","x":"data:text/plain,hello%20there"}"#.into(),
        r#"{"model":"c","x":"data:;base64,aGVsbG8="}"#.into(),
        r#"{"model":"c","x":"data:text/plain;base64,!!!"}"#.into(),
        r#"{"model":"c","x":{"type":"image_url","image_url":{"url":"data:image/png;base64,AAAA"},"file_id":"f"}}"#.into(),
        r#"{"model":"c","x":{"type":"image_url","image_url":{"url":"x"},"inner":{"type":"image","file_id":"f","file_url":"u"}}}"#.into(),
        r#"{"model":"c","metadata":{"jane.doe@example.com":"vip"}}"#.into(),
        r#"{"model":"c","usage":{"prompt_tokens":3,"completion_tokens":4},"choices":[{"message":{"content":"hi"}}]}"#.into(),
        r#"{"usage":{"prompt_tokens":3,"prompt_tokens":4}}"#.into(),
        format!(r#"{{"usage":{{"note":"{gh}"}}}}"#),
        r#"{"usage":1,"usage":2}"#.into(),
        deep(126, "1"),
        deep(127, "1"),
        deep(128, "1"),
        deep(100_000, "1"),
        deep(126, "{\"k\":1,\"k\":2}"),
    ];
    let mut clean = 0;
    for b in &bodies {
        agree_all(b.as_bytes());
        if agree_request(b.as_bytes(), &Policy::default()) {
            clean += 1;
        }
    }
    // The common shapes take the pass; a test that only ever fell back would prove nothing.
    assert!(clean >= 10, "only {clean} clean");
    for bad in [
        &b"{\"a\":\"\xff\xfe\"}"[..],
        b"{\"a\":1}\xff",
        b"{\"\xc3\":1}",
        b"{\"a\":\"ok\",\"a\":\"\xff\"}",
    ] {
        agree_all(bad);
    }
}

#[test]
fn clean_bodies_take_the_pass_and_report_what_the_parsed_path_reports() {
    let body = br#"{"model":"gpt-4o-mini","stream":false,"messages":[{"role":"user","content":"write to jane.doe@example.com"}]}"#;
    let Ok(RequestPass::Clean { report, top }) = scan_request_bytes(
        RequestKind::Openai,
        body,
        &Policy::default(),
        &["model", "stream"],
    ) else {
        panic!("a clean body falls back");
    };
    assert_eq!(report.decision, Decision::Log);
    assert_eq!(report.counts.get(&Entity::Email), Some(&1));
    assert_eq!(
        top,
        vec![
            Some(Top::String("gpt-4o-mini".into())),
            Some(Top::Bool(false))
        ]
    );
    let mut v: Value = serde_json::from_slice(body).expect("valid");
    assert_eq!(
        inspect_request(RequestKind::Openai, &mut v, &Policy::default()),
        report
    );
    let secret = format!(
        r#"{{"model":"m","messages":[{{"role":"user","content":"{}"}}]}}"#,
        aws_access_key()
    );
    assert!(matches!(
        scan_request_bytes(
            RequestKind::Openai,
            secret.as_bytes(),
            &Policy::default(),
            &[]
        ),
        Ok(RequestPass::Fallback)
    ));
    let answer = br#"{"choices":[{"message":{"content":"hi"}}],"usage":{"prompt_tokens":3,"completion_tokens":4}}"#;
    let pass = scan_response_bytes(answer, &response_policy());
    let Ok(ResponsePass::Clean { usage }) = pass else {
        unreachable!("a clean answer falls back: {pass:?}");
    };
    assert_eq!(
        usage,
        Some(serde_json::json!({"prompt_tokens":3,"completion_tokens":4}))
    );
}
