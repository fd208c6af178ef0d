//! A borrowed view of one streamed event's JSON payload, for the response filter's fast path
//! ([`crate::inspect::ResponseFilter`]).
//!
//! The filter used to parse every SSE event into a [`serde_json::Value`] and write it back with
//! `to_string()`: one allocation per key, string, array and object, per event. A [`Doc`]
//! borrows strings that have no escapes and keeps objects as vectors, and it writes back
//! **exactly** what the `Value` would have written, so the bytes a client receives do not
//! depend on which path an event took:
//!
//! - the same deserializer (serde_json's, from the same `&str`): grammar, escapes, UTF-8,
//!   trailing characters, the recursion limit and every error are serde_json's;
//! - numbers become [`serde_json::Number`] through the same visitor calls `Value` makes
//!   (`u64`, `i64`, `f64`; a non-finite float would become `null`, as in `Value`);
//! - an object's entries are sorted by key and a repeated key keeps its last value — what
//!   inserting into `Value`'s `BTreeMap` map does (serde_json's `preserve_order` feature is
//!   off in this workspace; the differential test in `tests/stream_fast.rs` would fail if it
//!   were turned on);
//! - keys starting with serde_json's private marker (`$serde_json::private::`, which
//!   `Value` treats as a raw value or an arbitrary-precision number when those features are
//!   on) are refused, so the caller takes the `Value` path for them;
//! - written back through serde_json's serializer ([`Serialize`] below mirrors `Value`'s).

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::Number;
use std::borrow::Cow;
use std::fmt;

/// One JSON value, strings borrowed from the input where possible.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Doc<'a> {
    Null,
    Bool(bool),
    Number(Number),
    String(Cow<'a, str>),
    Array(Vec<Doc<'a>>),
    /// Sorted by key, no key twice (the last value of a repeated key kept).
    Object(Vec<(Cow<'a, str>, Doc<'a>)>),
}

/// The prefix of serde_json's private map keys (raw values, arbitrary-precision numbers).
const PRIVATE_KEY: &str = "$serde_json::private::";

impl<'a> Doc<'a> {
    /// Parses `data` as `serde_json::from_str::<Value>` would; `None` where that fails, or
    /// where the view cannot promise `Value`'s output (a private marker key).
    pub fn parse(data: &'a str) -> Option<Doc<'a>> {
        serde_json::from_str(data).ok()
    }

    /// `Value::get(key)`: the member of an object, `None` for anything else.
    pub fn get(&self, key: &str) -> Option<&Doc<'a>> {
        match self {
            Doc::Object(m) => m
                .binary_search_by(|(k, _)| k.as_ref().cmp(key))
                .ok()
                .map(|i| &m[i].1),
            _ => None,
        }
    }

    /// `Value::get_mut(key)`.
    pub fn get_mut(&mut self, key: &str) -> Option<&mut Doc<'a>> {
        match self {
            Doc::Object(m) => match m.binary_search_by(|(k, _)| k.as_ref().cmp(key)) {
                Ok(i) => Some(&mut m[i].1),
                Err(_) => None,
            },
            _ => None,
        }
    }

    /// `Value::as_str`.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Doc::String(s) => Some(s),
            _ => None,
        }
    }

    /// `Value::as_u64`.
    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Doc::Number(n) => n.as_u64(),
            _ => None,
        }
    }

    /// `Value::is_null`.
    pub fn is_null(&self) -> bool {
        matches!(self, Doc::Null)
    }
}

impl<'de> Deserialize<'de> for Doc<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(DocVisitor)
    }
}

struct DocVisitor;

// Mirrors serde_json's `ValueVisitor` call for call.
impl<'de> Visitor<'de> for DocVisitor {
    type Value = Doc<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any valid JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Doc<'de>, E> {
        Ok(Doc::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Doc<'de>, E> {
        Ok(Doc::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Doc<'de>, E> {
        Ok(Doc::Number(v.into()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Doc<'de>, E> {
        Ok(Number::from_f64(v).map_or(Doc::Null, Doc::Number))
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Doc<'de>, E> {
        Ok(Doc::String(Cow::Borrowed(v)))
    }

    fn visit_str<E>(self, v: &str) -> Result<Doc<'de>, E> {
        Ok(Doc::String(Cow::Owned(v.to_owned())))
    }

    fn visit_string<E>(self, v: String) -> Result<Doc<'de>, E> {
        Ok(Doc::String(Cow::Owned(v)))
    }

    fn visit_none<E>(self) -> Result<Doc<'de>, E> {
        Ok(Doc::Null)
    }

    fn visit_unit<E>(self) -> Result<Doc<'de>, E> {
        Ok(Doc::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Doc<'de>, D::Error> {
        Deserialize::deserialize(d)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Doc<'de>, A::Error> {
        let mut v = Vec::new();
        while let Some(e) = seq.next_element()? {
            v.push(e);
        }
        Ok(Doc::Array(v))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Doc<'de>, A::Error> {
        let mut m: Vec<(Cow<'de, str>, Doc<'de>)> = Vec::new();
        while let Some(k) = map.next_key::<Key<'de>>()? {
            if k.0.starts_with(PRIVATE_KEY) {
                return Err(de::Error::custom("serde_json private key"));
            }
            m.push((k.0, map.next_value()?));
        }
        // BTreeMap insertion: sorted, and a repeated key keeps its last value. Reversed first
        // so that the stable sort puts the last copy first, and `dedup` keeps the first.
        if m.len() > 1 {
            m.reverse();
            m.sort_by(|a, b| a.0.cmp(&b.0));
            m.dedup_by(|later, earlier| later.0 == earlier.0);
        }
        Ok(Doc::Object(m))
    }
}

/// An object key, borrowed unless it has escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(KeyVisitor)
    }
}

struct KeyVisitor;

impl<'de> Visitor<'de> for KeyVisitor {
    type Value = Key<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string key")
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
        Ok(Key(Cow::Borrowed(v)))
    }

    fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
        Ok(Key(Cow::Owned(v.to_owned())))
    }

    fn visit_string<E>(self, v: String) -> Result<Key<'de>, E> {
        Ok(Key(Cow::Owned(v)))
    }
}

// Mirrors `impl Serialize for serde_json::Value`.
impl Serialize for Doc<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Doc::Null => s.serialize_unit(),
            Doc::Bool(b) => s.serialize_bool(*b),
            Doc::Number(n) => n.serialize(s),
            Doc::String(t) => s.serialize_str(t),
            Doc::Array(v) => v.serialize(s),
            Doc::Object(m) => {
                let mut map = s.serialize_map(Some(m.len()))?;
                for (k, v) in m {
                    map.serialize_entry(k.as_ref(), v)?;
                }
                map.end()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn writes_back_what_a_value_writes_back() {
        for data in [
            r#"{"b":1,"a":[1,-2,3.5,1e3,1E-2,18446744073709551615,-9223372036854775808,12345678901234567890123],"a":"last"}"#,
            r#" { "z" : { "y" : null , "x" : true } , "\u00e9t\u00e9" : "caf\u00e9 \ud83d\ude00 \n\t\"\\/" } "#,
            r#"[]"#,
            r#"{}"#,
            r#""just a string""#,
            r#"[{"k":"v","k":{"k":"w"}},0.1,-0.0,1.0e-7]"#,
        ] {
            let v: Value = serde_json::from_str(data).unwrap();
            let d = Doc::parse(data).unwrap();
            assert_eq!(serde_json::to_string(&d).unwrap(), v.to_string(), "{data}");
        }
    }

    #[test]
    fn private_marker_keys_and_bad_json_are_refused() {
        assert!(Doc::parse(r#"{"$serde_json::private::RawValue":"[1]"}"#).is_none());
        assert!(Doc::parse(r#"{"a":1"#).is_none());
        assert!(Doc::parse(r#"{"a":1} x"#).is_none());
        assert!(Doc::parse("[DONE]").is_none());
    }

    #[test]
    fn lookups_follow_value() {
        let d = Doc::parse(r#"{"c":{"d":"x"},"a":2,"b":null,"a":3}"#).unwrap();
        assert_eq!(d.get("a").and_then(Doc::as_u64), Some(3));
        assert!(d.get("b").is_some_and(Doc::is_null));
        assert_eq!(
            d.get("c").and_then(|c| c.get("d")).and_then(Doc::as_str),
            Some("x")
        );
        assert!(d.get("zz").is_none());
        assert!(Doc::parse("[1]").unwrap().get("a").is_none());
    }
}
