//! Strict parsing of request bodies: one pass over the bytes into a
//! [`serde_json::Value`], refusing any object that repeats a key, at any depth.
//!
//! Why: `serde_json::from_slice::<Value>` accepts `{"model":"a","model":"b"}` and keeps the
//! **last** value (`Map::insert` replaces). The gateway authorizes and inspects that parsed
//! value, but forwards the client's original bytes; a provider whose parser keeps the **first**
//! value then acts on a model the key may not use, or on a `messages` / `content` field the DLP
//! never saw. Two parsers disagreeing about one body is the whole defect, so a body with a
//! repeated key is refused before anything reads it.
//!
//! The visitor below is serde_json's own `Value` visitor with one change: `Map::insert`
//! returning an old value is an error. serde_json's recursion limit (128 nested arrays or
//! objects) still applies, because every nested value goes back through the same
//! `serde_json::Deserializer`. Numbers, strings and key order come out exactly as
//! `serde_json::from_slice` would give them (with this crate's serde_json features).
//!
//! This module never puts body content into an error: values (and keys) may be secrets.
//!
//! It lives in the DLP crate because the DLP's own request entry points must parse bodies the
//! same way (an unscanned first duplicate would otherwise pass through unchanged);
//! `tollgate-core` re-exports it as `tollgate_core::json`.

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};
use std::cell::Cell;
use std::fmt;

/// Why a request body was refused. `Display` never includes content from the body.
/// Parsing stops at the first problem in byte order: a key repeated before a syntax error is
/// reported as [`BodyError::DuplicateKey`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    /// The body (or a string in it) is not valid UTF-8.
    #[error("request body is not valid UTF-8")]
    NotUtf8,
    /// JSON syntax error, truncated body, trailing data, a number out of range, or nesting
    /// deeper than serde_json's recursion limit. Position only; no content.
    #[error("request body is not valid JSON (line {line}, column {column})")]
    Invalid { line: usize, column: usize },
    /// An object repeats a key. `depth` is the nesting depth of that object (0 = the body's
    /// top-level object); the key and its values are deliberately not reported.
    #[error("request body repeats an object key (in an object at depth {depth})")]
    DuplicateKey { depth: usize },
    /// Valid JSON, but not an object at the top level.
    #[error("request body is not a JSON object")]
    NotObject,
}

/// Parses a request body: valid UTF-8 JSON, an object at the top level, no object at any
/// depth repeating a key. One pass, no second parse on success.
pub fn parse_request_body(bytes: &[u8]) -> Result<Value, BodyError> {
    let v = parse_strict(bytes)?;
    if v.is_object() {
        Ok(v)
    } else {
        Err(BodyError::NotObject)
    }
}

/// Like [`parse_request_body`] but any JSON value is accepted at the top level.
pub fn parse_strict(bytes: &[u8]) -> Result<Value, BodyError> {
    let duplicate = Cell::new(None);
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let parsed = Strict {
        duplicate: &duplicate,
        depth: 0,
    }
    .deserialize(&mut de)
    .and_then(|v| de.end().map(|()| v));
    parsed.map_err(|e| classify(bytes, &duplicate, &e))
}

/// Maps a serde_json error to a [`BodyError`]. Runs only on the error path, so the UTF-8
/// re-check costs nothing for accepted bodies. serde_json reports invalid UTF-8 inside a
/// string as a syntax error ("invalid unicode code point") and outside one as an
/// unexpected character; checking the bytes tells both apart from other syntax errors
/// without matching on message text.
pub(crate) fn classify(
    bytes: &[u8],
    duplicate: &Cell<Option<usize>>,
    e: &serde_json::Error,
) -> BodyError {
    if let Some(depth) = duplicate.get() {
        return BodyError::DuplicateKey { depth };
    }
    if std::str::from_utf8(bytes).is_err() {
        return BodyError::NotUtf8;
    }
    BodyError::Invalid {
        line: e.line(),
        column: e.column(),
    }
}

/// Seed carrying where a duplicate was seen (out-of-band, so classification never depends
/// on an error message) and the current object depth.
#[derive(Clone, Copy)]
pub(crate) struct Strict<'a> {
    pub(crate) duplicate: &'a Cell<Option<usize>>,
    pub(crate) depth: usize,
}

impl<'de> DeserializeSeed<'de> for Strict<'_> {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Strict<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any valid JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        // As serde_json: a non-finite float has no JSON form and becomes null (the parser
        // itself refuses out-of-range literals before this point).
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        self.deserialize(d)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        // Array elements sit at the same object depth as the array.
        while let Some(item) = seq.next_element_seed(self)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let inner = Strict {
            duplicate: self.duplicate,
            depth: self.depth + 1,
        };
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let value = map.next_value_seed(inner)?;
            // `insert` hands back the earlier value when the key repeats: that is the one
            // check this parser adds to serde_json's.
            if out.insert(key, value).is_some() {
                self.duplicate.set(Some(self.depth));
                return Err(de::Error::custom("duplicate object key"));
            }
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn serde_json_alone_keeps_the_last_duplicate() {
        // The behaviour this module exists to refuse; if serde_json ever changes it, the
        // module doc needs another look.
        let v: Value = serde_json::from_slice(br#"{"model":"gpt-4o","model":"gpt-4o-mini"}"#)
            .expect("serde_json accepts duplicates");
        assert_eq!(v["model"], "gpt-4o-mini");
    }

    #[test]
    fn duplicate_model_at_top_level_is_refused() {
        let body = br#"{"model":"gpt-4o","model":"gpt-4o-mini","messages":[]}"#;
        assert_eq!(
            parse_request_body(body),
            Err(BodyError::DuplicateKey { depth: 0 })
        );
    }

    #[test]
    fn duplicate_messages_arrays_are_refused() {
        let body = br#"{"model":"m","messages":[{"role":"user","content":"hi"}],"messages":[]}"#;
        assert_eq!(
            parse_request_body(body),
            Err(BodyError::DuplicateKey { depth: 0 })
        );
    }

    #[test]
    fn duplicate_content_inside_a_message_is_refused() {
        let body = br#"{"model":"m","messages":[{"role":"user","content":"fine","content":"s3cr3t-value"}]}"#;
        let err = parse_request_body(body).expect_err("duplicate content");
        assert_eq!(err, BodyError::DuplicateKey { depth: 1 });
        let shown = err.to_string();
        assert!(!shown.contains("s3cr3t") && !shown.contains("content"));
    }

    #[test]
    fn duplicate_at_depth_three_is_refused() {
        let body = br#"{"a":{"b":{"c":{"x":1,"y":2,"x":3}}}}"#;
        assert_eq!(
            parse_request_body(body),
            Err(BodyError::DuplicateKey { depth: 3 })
        );
    }

    #[test]
    fn duplicate_inside_nested_arrays_is_refused() {
        let body = br#"{"a":[[1,{"k":[{"z":0,"z":0}]}]]}"#;
        assert_eq!(
            parse_request_body(body),
            Err(BodyError::DuplicateKey { depth: 2 })
        );
    }

    #[test]
    fn same_key_in_sibling_objects_is_fine() {
        let body = br#"{"messages":[{"role":"user","content":"a"},{"role":"user","content":"b"}]}"#;
        let v = parse_request_body(body).expect("valid");
        assert_eq!(v["messages"][1]["content"], "b");
    }

    #[test]
    fn keys_differing_only_by_escape_are_the_same_key() {
        // `\u006d` is `m`: both spell "model" once decoded.
        let body = br#"{"model":"a","\u006dodel":"b"}"#;
        assert_eq!(
            parse_request_body(body),
            Err(BodyError::DuplicateKey { depth: 0 })
        );
    }

    #[test]
    fn the_first_problem_in_byte_order_is_reported() {
        assert_eq!(
            parse_request_body(br#"{"a":1,"a":2,"#),
            Err(BodyError::DuplicateKey { depth: 0 })
        );
        assert!(matches!(
            parse_request_body(br#"{"a":1,,"a":2}"#),
            Err(BodyError::Invalid { .. })
        ));
    }

    #[test]
    fn non_objects_are_refused_after_parsing() {
        assert_eq!(parse_request_body(b"[1,2]"), Err(BodyError::NotObject));
        assert_eq!(parse_request_body(b"\"x\""), Err(BodyError::NotObject));
        assert_eq!(parse_request_body(b"null"), Err(BodyError::NotObject));
        assert_eq!(parse_strict(b"[1,2]"), Ok(json!([1, 2])));
    }

    #[test]
    fn invalid_utf8_is_told_apart_from_syntax_errors() {
        assert_eq!(
            parse_request_body(b"{\"a\":\"\xff\xfe\"}"),
            Err(BodyError::NotUtf8)
        );
        assert_eq!(
            parse_request_body(b"{\"a\":1}\xff"),
            Err(BodyError::NotUtf8)
        );
        assert!(matches!(
            parse_request_body(b"{\"a\":}"),
            Err(BodyError::Invalid { line: 1, .. })
        ));
        assert!(matches!(
            parse_request_body(b"{\"a\":1} {}"),
            Err(BodyError::Invalid { .. })
        ));
        assert!(matches!(
            parse_request_body(b""),
            Err(BodyError::Invalid { .. })
        ));
        // A lone surrogate escape is valid UTF-8 bytes but not a valid string.
        assert!(matches!(
            parse_request_body(br#"{"a":"\ud800"}"#),
            Err(BodyError::Invalid { .. })
        ));
    }

    #[test]
    fn recursion_limit_is_kept() {
        let deep = |n: usize| format!("{{\"a\":{}1{}}}", "[".repeat(n), "]".repeat(n));
        assert!(parse_request_body(deep(100).as_bytes()).is_ok());
        assert!(serde_json::from_str::<Value>(&deep(200)).is_err());
        assert!(matches!(
            parse_request_body(deep(200).as_bytes()),
            Err(BodyError::Invalid { .. })
        ));
        // Far beyond the limit: refused, not a stack overflow.
        assert!(parse_request_body(deep(100_000).as_bytes()).is_err());
    }

    #[test]
    fn numbers_match_serde_json() {
        let body = br#"{"a":-1,"b":18446744073709551615,"c":1.5e300,"d":0.1,"e":-0}"#;
        let ours = parse_request_body(body).expect("valid");
        let theirs: Value = serde_json::from_slice(body).expect("valid");
        assert_eq!(ours, theirs);
        assert!(matches!(
            parse_request_body(br#"{"a":1e400}"#),
            Err(BodyError::Invalid { .. })
        ));
    }

    fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            any::<u64>().prop_map(|n| json!(n)),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(|f| json!(f)),
            "\\PC{0,12}".prop_map(Value::String),
        ];
        leaf.prop_recursive(6, 64, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map("[a-z\"\\\\\u{e9}]{0,4}", inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn without_duplicates_the_result_equals_serde_json(v in arb_json(), pretty in any::<bool>()) {
            let body = Value::Object([("x".to_owned(), v)].into_iter().collect());
            let bytes = if pretty {
                serde_json::to_vec_pretty(&body)
            } else {
                serde_json::to_vec(&body)
            }
            .expect("serializable");
            let theirs: Value = serde_json::from_slice(&bytes).expect("round trip");
            prop_assert_eq!(parse_request_body(&bytes), Ok(theirs));
        }

        #[test]
        fn arbitrary_bytes_never_accept_what_serde_json_refuses(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
            let theirs = serde_json::from_slice::<Value>(&bytes);
            match parse_strict(&bytes) {
                Ok(v) => prop_assert_eq!(Some(v), theirs.ok()),
                // A repeated key before a syntax error is what gets reported.
                Err(BodyError::DuplicateKey { .. }) => {}
                Err(_) => prop_assert!(theirs.is_err()),
            }
        }

        #[test]
        fn a_repeated_key_is_refused_wherever_it_is_inserted(
            v in arb_json(),
            key in "[a-z]{1,3}",
            path in prop::collection::vec(any::<bool>(), 0..5),
        ) {
            // Wrap {"key":1,"key":<v>} in `path` layers of objects (true) or arrays (false).
            let mut text = format!(
                "{{\"{key}\":1,\"{key}\":{}}}",
                serde_json::to_string(&v).expect("serializable")
            );
            let mut depth = 0;
            for &obj in path.iter().rev() {
                text = if obj {
                    depth += 1;
                    format!("{{\"w\":{text}}}")
                } else {
                    format!("[0,{text}]")
                };
            }
            let text = format!("{{\"top\":{text}}}");
            prop_assert_eq!(
                parse_request_body(text.as_bytes()),
                Err(BodyError::DuplicateKey { depth: depth + 1 })
            );
        }
    }
}
