//! The request walker (issue 11, item 7): every string of every route's body is scanned,
//! encoded text is decoded, unreadable input follows the policy. Secret-shaped fixtures
//! are assembled at run time from fragments.

use proptest::prelude::*;
use serde_json::{Value, json};
use tollgate_dlp::base62::crc32_checksum;
use tollgate_dlp::validate::b64_encode;
use tollgate_dlp::*;
mod common;
use common::{aws_access_key, github_token};

fn openai_key() -> String {
    [
        "sk-",
        "proj-",
        "Xq8Zr2mX0vL7pW4nK9sD1fG6h",
        "T3Blbk",
        "FJ",
        "aB3dE5gH7jK9mN1pQ3sT5vW7",
    ]
    .concat()
}

fn tollgate_key() -> String {
    let mut k = String::from("tgk_live_AbCdEf012345q8Zr2mX0vL7pW4nK9sD1fG6hJ3bT5yU0");
    let c = crc32_checksum(k.as_bytes());
    k.extend(c.map(char::from));
    k
}

fn allow_opaque() -> Policy {
    Policy::default().with_entity(Entity::OpaqueInput, Action::Log)
}

fn blocked(kind: RequestKind, mut body: Value, policy: &Policy) -> Report {
    inspect_request(kind, &mut body, policy)
}

#[test]
fn fields_nobody_used_to_scan_are_blocked() {
    let k = openai_key();
    let openai = [
        json!({"model": "m", "messages": [{"role": "user", "name": k, "content": "hi"}]}),
        json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "metadata": {"note": k}}),
        json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "user": k}),
        json!({"model": "m", "messages": [], "tools": [{"type": "function", "function": {"name": "f", "description": k}}]}),
        json!({"model": "m", "messages": [], "prediction": {"type": "content", "content": k}}),
        json!({"model": "m", "messages": [], "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object", "description": k}}}}),
        json!({"model": "m", "messages": [], "stop": ["END", k]}),
        json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": format!("https://img.example/a.png?token={k}")}}]}]}),
        json!({"model": "m", "input": "x", "reasoning": {"effort": "low", "summary": k}}),
        json!({"model": "m", "input": [{"type": "reasoning", "summary": [{"type": "summary_text", "text": k}]}]}),
        json!({"model": "m", "messages": [], "metadata": {k.clone(): "value in a key"}}),
    ];
    for b in openai {
        let r = blocked(RequestKind::Openai, b.clone(), &allow_opaque());
        assert_eq!(r.blocked, vec![Entity::OpenaiKey], "{b}");
    }
    let anthropic = [
        json!({"model": "c", "messages": [{"role": "assistant", "content": [{"type": "thinking", "thinking": k, "signature": "sig"}]}]}),
        json!({"model": "c", "messages": [{"role": "user", "content": [{"type": "search_result", "source": "s", "title": "t", "content": [{"type": "text", "text": k}]}]}]}),
        json!({"model": "c", "messages": [{"role": "user", "content": [{"type": "document", "source": {"type": "base64", "media_type": "text/plain", "data": b64_encode(format!("config\nkey={k}\n").as_bytes())}}]}]}),
        json!({"model": "c", "messages": [{"role": "user", "content": [{"type": "document", "title": k, "source": {"type": "text", "media_type": "text/plain", "data": "x"}}]}]}),
        json!({"model": "c", "messages": [{"role": "user", "content": [{"type": "document", "context": k, "source": {"type": "text", "media_type": "text/plain", "data": "x"}}]}]}),
        json!({"model": "c", "messages": [], "tools": [{"name": "t", "description": k, "input_schema": {"type": "object"}}]}),
        json!({"model": "c", "messages": [], "metadata": {"user_id": k}}),
    ];
    for b in anthropic {
        let r = blocked(RequestKind::Anthropic, b.clone(), &allow_opaque());
        assert_eq!(r.blocked, vec![Entity::OpenaiKey], "{b}");
    }
}

#[test]
fn data_urls_of_text_are_decoded_and_of_images_are_opaque() {
    let k = aws_access_key();
    let text_url = format!(
        "data:text/plain;base64,{}",
        b64_encode(format!("id {k}").as_bytes())
    );
    let b = json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "file", "file": {"filename": "a.txt", "file_data": text_url}}]}]});
    assert_eq!(
        blocked(RequestKind::Openai, b, &Policy::default()).blocked,
        vec![Entity::AwsAccessKey]
    );
    // percent-encoded data URL
    let pct = format!("data:text/plain,id%20{}", k.replace('A', "%41"));
    let b = json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "file", "file": {"file_data": pct}}]}]});
    assert_eq!(
        blocked(RequestKind::Openai, b, &Policy::default()).blocked,
        vec![Entity::AwsAccessKey]
    );
    let img = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==";
    let b = json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": img}}]}]});
    let r = blocked(RequestKind::Openai, b.clone(), &Policy::default());
    assert_eq!(r.blocked, vec![Entity::OpaqueInput]);
    assert_eq!(r.counts.get(&Entity::OpaqueInput), Some(&1));
    let r = blocked(RequestKind::Openai, b, &allow_opaque());
    assert_eq!(r.decision, Decision::Log);
}

#[test]
fn unreadable_input_follows_the_policy() {
    let cases = [
        (
            RequestKind::Openai,
            json!({"model": "m", "prompt": [1, 2, 3]}),
        ),
        (
            RequestKind::Openai,
            json!({"model": "m", "prompt": [[1, 2], [3]]}),
        ),
        (
            RequestKind::Openai,
            json!({"model": "m", "input": [101, 102]}),
        ),
        (
            RequestKind::Openai,
            json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}}]}]}),
        ),
        (
            RequestKind::Openai,
            json!({"model": "m", "input": [{"role": "user", "content": [{"type": "input_image", "image_url": "https://example.org/x.png"}]}]}),
        ),
        (
            RequestKind::Openai,
            json!({"model": "m", "input": [{"role": "user", "content": [{"type": "input_file", "file_id": "file-abc"}]}]}),
        ),
        (
            RequestKind::Anthropic,
            json!({"model": "c", "messages": [{"role": "user", "content": [{"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}]}]}),
        ),
        (
            RequestKind::Anthropic,
            json!({"model": "c", "messages": [{"role": "user", "content": [{"type": "image", "source": {"type": "url", "url": "https://example.org/x.png"}}]}]}),
        ),
        (
            RequestKind::Anthropic,
            json!({"model": "c", "messages": [{"role": "user", "content": [{"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0xLjQK"}}]}]}),
        ),
        (
            RequestKind::Anthropic,
            json!({"model": "c", "messages": [{"role": "user", "content": [{"type": "document", "source": {"type": "url", "url": "https://example.org/a.pdf"}}]}]}),
        ),
    ];
    for (kind, b) in cases {
        let r = blocked(kind, b.clone(), &Policy::default());
        assert_eq!(r.blocked, vec![Entity::OpaqueInput], "{b}");
        assert_eq!(r.counts.get(&Entity::OpaqueInput), Some(&1), "{b}");
        let redact = Policy::default().with_entity(Entity::OpaqueInput, Action::Redact);
        assert_eq!(
            blocked(kind, b.clone(), &redact).decision,
            Decision::Block,
            "redact cannot apply to what cannot be read"
        );
        let off = Policy::default().with_entity(Entity::OpaqueInput, Action::Off);
        assert_eq!(
            blocked(kind, b.clone(), &off).decision,
            Decision::Allow,
            "{b}"
        );
        assert_eq!(blocked(kind, b, &allow_opaque()).decision, Decision::Log);
    }
    // text arrays are text, not tokens
    let b = json!({"model": "m", "input": ["a", "b"]});
    assert_eq!(
        blocked(RequestKind::Openai, b, &Policy::default()).decision,
        Decision::Allow
    );
}

#[test]
fn redaction_inside_a_base64_document_reencodes_it() {
    let doc = "customer card 4111 1111 1111 1111 on file";
    let mut body = json!({"model": "c", "messages": [{"role": "user", "content": [
        {"type": "document", "source": {"type": "base64", "media_type": "text/plain", "data": b64_encode(doc.as_bytes())}}
    ]}]});
    let r = inspect_request(RequestKind::Anthropic, &mut body, &Policy::default());
    assert_eq!(r.decision, Decision::Redact);
    let data = body["messages"][0]["content"][0]["source"]["data"]
        .as_str()
        .unwrap_or_default();
    assert_eq!(data, b64_encode(b"customer card [CREDIT_CARD_1] on file"));
}

#[test]
fn a_key_holding_personal_data_is_renamed_on_redaction() {
    let mut body = json!({"model": "m", "messages": [], "metadata": {"4111111111111111": "vip", "b": "4111111111111111"}});
    let r = inspect_request(RequestKind::Openai, &mut body, &Policy::default());
    assert_eq!(r.decision, Decision::Redact);
    assert_eq!(body["metadata"]["[CREDIT_CARD_1]"], "vip");
    assert_eq!(body["metadata"]["b"], "[CREDIT_CARD_1]");
}

// ------------------------------------------------------------- property test

fn secrets() -> Vec<(Entity, String)> {
    vec![
        (Entity::OpenaiKey, openai_key()),
        (Entity::AwsAccessKey, aws_access_key()),
        (Entity::GithubToken, github_token()),
        (Entity::TollgateKey, tollgate_key()),
        // issue 11 families, assembled from parts
        (
            Entity::HuggingfaceToken,
            ["hf", "_", "qZxWvUtSrQpOnMlKjIhGfEdCbAzYxWvUtS"].concat(),
        ),
        (
            Entity::GroqKey,
            [
                "gs",
                "k_",
                "q8Zr2mX0vL7pW4nK9sD1fG6hJ3bT5yU0",
                "aB3dE5gH7jK9mN1pQ3sT5vW7",
            ]
            .concat(),
        ),
        (
            Entity::WebhookUrl,
            [
                "https://hooks",
                ".slack.com/services/",
                "T0AB12CD34/B0EF56GH78/",
                "q8Zr2mX0vL7pW4nK9sD1fG6h",
            ]
            .concat(),
        ),
        (
            Entity::UrlCredential,
            ["postgresql://app:", "Tr0ub4dor-x9", "@db.internal/app"].concat(),
        ),
        (
            Entity::GenericSecret,
            ["api_key=", "q8Zr2mX0vL7pW4nK9sD1fG6hJ3bT5yU0"].concat(),
        ),
        (
            Entity::AzureClientSecret,
            ["aB3", "7Q~", "q8Zr2mX0vL7pW4nK9sD1fG6hJ3bT5yU0x"].concat(),
        ),
    ]
}

/// A valid request of route `route` (0..6) with the optional fields in `mask` and prose `t`.
fn request(route: usize, mask: u32, t: &[String]) -> (RequestKind, Value) {
    let on = |bit: u32| mask & (1 << bit) != 0;
    let tx = |i: usize| t[i % t.len()].clone();
    let mut b = match route {
        0 => json!({"model": "gpt-4o", "messages": [
            {"role": "system", "content": tx(0)},
            {"role": "user", "name": "alice", "content": [{"type": "text", "text": tx(1)}]},
            {"role": "assistant", "content": tx(2), "tool_calls": [{"id": "call_1", "type": "function",
              "function": {"name": "lookup", "arguments": json!({"q": tx(3)}).to_string()}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": tx(4)}]}),
        1 => {
            json!({"model": "gpt-3.5-turbo-instruct", "prompt": if on(9) { json!([tx(0), tx(1)]) } else { json!(tx(0)) }})
        }
        2 => {
            json!({"model": "text-embedding-3-small", "input": if on(9) { json!([tx(0), tx(1)]) } else { json!(tx(0)) }, "encoding_format": "float"})
        }
        3 => json!({"model": "o4-mini", "instructions": tx(0), "input": [
            {"role": "user", "content": [{"type": "input_text", "text": tx(1)}]},
            {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": tx(2)}]},
            {"type": "function_call", "call_id": "c1", "name": "f", "arguments": json!({"a": tx(3)}).to_string()},
            {"type": "function_call_output", "call_id": "c1", "output": tx(4)}]}),
        _ => {
            json!({"model": "claude-sonnet-4-5", "max_tokens": 256, "system": [{"type": "text", "text": tx(0)}], "messages": [
            {"role": "user", "content": [{"type": "text", "text": tx(1)},
              {"type": "document", "title": tx(5), "context": tx(6), "source": {"type": "text", "media_type": "text/plain", "data": tx(2)}},
              {"type": "search_result", "source": "https://example.org", "title": "r", "content": [{"type": "text", "text": tx(7)}]}]},
            {"role": "assistant", "content": [{"type": "thinking", "thinking": tx(3), "signature": "EqQBCkYIARgC"},
              {"type": "tool_use", "id": "toolu_01", "name": "search", "input": {"query": tx(4), "n": 3}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_01", "content": tx(8)}]}]})
        }
    };
    let kind = if route >= 4 {
        RequestKind::Anthropic
    } else {
        RequestKind::Openai
    };
    let Value::Object(o) = &mut b else {
        return (kind, b);
    };
    if route == 5 {
        o.remove("max_tokens");
    }
    if on(0) {
        let k = if kind == RequestKind::Anthropic {
            "user_id"
        } else {
            "tenant"
        };
        o.insert("metadata".into(), json!({ k: tx(9) }));
    }
    if on(1) && kind == RequestKind::Openai {
        o.insert("user".into(), json!(tx(10)));
    }
    if on(2) {
        let tool = if kind == RequestKind::Anthropic {
            json!({"name": "search", "description": tx(11), "input_schema": {"type": "object", "properties": {"q": {"type": "string", "description": tx(12)}}}})
        } else {
            json!({"type": "function", "function": {"name": "search", "description": tx(11), "parameters": {"type": "object", "properties": {"q": {"type": "string", "description": tx(12)}}}}})
        };
        o.insert("tools".into(), json!([tool]));
    }
    if on(3) {
        let key = if kind == RequestKind::Anthropic {
            "stop_sequences"
        } else {
            "stop"
        };
        o.insert(key.into(), json!([tx(13)]));
    }
    if on(4) && route == 0 {
        o.insert(
            "prediction".into(),
            json!({"type": "content", "content": tx(14)}),
        );
        o.insert("response_format".into(), json!({"type": "json_schema", "json_schema": {"name": "r", "schema": {"type": "object", "description": tx(15)}}}));
    }
    if on(5) && route == 3 {
        o.insert(
            "reasoning".into(),
            json!({"effort": "low", "summary": "auto"}),
        );
    }
    if on(6) {
        o.insert("temperature".into(), json!(0.2));
    }
    (kind, b)
}

/// Every string leaf and object key, in a fixed order, as mutable slots.
fn plant(v: &mut Value, target: usize, offset: usize, secret: &str, seen: &mut usize) -> bool {
    match v {
        Value::String(s) => {
            *seen += 1;
            if *seen - 1 == target {
                let chars: Vec<usize> = s.char_indices().map(|(i, _)| i).chain([s.len()]).collect();
                let at = chars[offset % chars.len()];
                s.insert_str(at, &format!(" {secret} "));
                return true;
            }
            false
        }
        Value::Array(a) => a.iter_mut().any(|x| plant(x, target, offset, secret, seen)),
        Value::Object(o) => {
            let keys: Vec<String> = o.keys().cloned().collect();
            for k in keys {
                *seen += 1;
                if *seen - 1 == target {
                    if let Some(x) = o.remove(&k) {
                        o.insert(format!("{k} {secret}"), x);
                    }
                    return true;
                }
            }
            o.values_mut()
                .any(|x| plant(x, target, offset, secret, seen))
        }
        _ => false,
    }
}

fn slots(v: &Value) -> usize {
    match v {
        Value::String(_) => 1,
        Value::Array(a) => a.iter().map(slots).sum(),
        Value::Object(o) => o.len() + o.values().map(slots).sum::<usize>(),
        _ => 0,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn a_secret_planted_anywhere_in_any_route_is_blocked(
        route in 0usize..6,
        mask in any::<u32>(),
        texts in prop::collection::vec("[a-zA-Z ,.?]{0,40}", 16),
        target in any::<usize>(),
        offset in any::<usize>(),
        which in 0usize..10,
    ) {
        let (kind, clean) = request(route, mask, &texts);
        let policy = Policy::default();
        // without the secret the generated request goes through
        let r0 = inspect_request(kind, &mut clean.clone(), &policy);
        prop_assert_ne!(r0.decision, Decision::Block, "{}", clean);
        let (entity, secret) = secrets().swap_remove(which);
        let mut body = clean.clone();
        let n = slots(&body);
        let mut seen = 0;
        prop_assert!(plant(&mut body, target % n, offset, &secret, &mut seen));
        let r = inspect_request(kind, &mut body, &policy);
        prop_assert_eq!(r.decision, Decision::Block, "{}", body);
        prop_assert!(r.blocked.contains(&entity), "{:?} {}", r.blocked, body);
    }
}
