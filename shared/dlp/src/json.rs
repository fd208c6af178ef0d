//! JSON for inspection: strict parsing of request bodies ([`parse_request_body`], refusing
//! repeated keys; see [`strict`]) and walking every string value of a document.
//!
//! The one walker the workspace uses wherever "every string in this value" is meant: the
//! request walkers (e.g. Anthropic `tool_use.input`) and the gateway's response redaction.
//! Object keys are not visited (they are not rewritten by redaction: a changed key would
//! change the document's meaning).
//!
//! Iterative, with an explicit stack, so a deeply nested value (one built in code, or parsed
//! without serde_json's recursion limit) cannot overflow the thread's stack. Strings are
//! visited in document order: arrays by index, objects in their map's iteration order.

use serde_json::Value;

pub mod strict;
pub use strict::{BodyError, parse_request_body, parse_strict};

/// Calls `f` on every string value in `v` (at any depth), in document order, allowing it to
/// rewrite the string in place.
pub fn walk_strings_mut(v: &mut Value, f: &mut dyn FnMut(&mut String)) {
    let mut stack: Vec<&mut Value> = vec![v];
    while let Some(v) = stack.pop() {
        match v {
            Value::String(s) => f(s),
            // Pushed in reverse so the first child is visited first.
            Value::Array(a) => stack.extend(a.iter_mut().rev()),
            Value::Object(o) => stack.extend(o.values_mut().rev()),
            Value::Null | Value::Bool(_) | Value::Number(_) => {}
        }
    }
}

/// Calls `f` on every string value in `v` (at any depth), in document order.
pub fn walk_strings(v: &Value, f: &mut dyn FnMut(&str)) {
    let mut stack: Vec<&Value> = vec![v];
    while let Some(v) = stack.pop() {
        match v {
            Value::String(s) => f(s),
            Value::Array(a) => stack.extend(a.iter().rev()),
            Value::Object(o) => stack.extend(o.values().rev()),
            Value::Null | Value::Bool(_) | Value::Number(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The recursive definition the walker must agree with.
    fn recursive(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::String(s) => out.push(s.clone()),
            Value::Array(a) => a.iter().for_each(|x| recursive(x, out)),
            Value::Object(o) => o.values().for_each(|x| recursive(x, out)),
            _ => {}
        }
    }

    fn sample() -> Value {
        json!({
            "a": "1",
            "b": [ "2", {"c": "3", "d": [null, 4, "5"]}, ["6"] ],
            "e": {"f": {"g": "7"}},
            "h": true,
            "i": "8"
        })
    }

    #[test]
    fn visits_every_string_in_document_order() {
        let v = sample();
        let mut seen = Vec::new();
        walk_strings(&v, &mut |s| seen.push(s.to_owned()));
        let mut expected = Vec::new();
        recursive(&v, &mut expected);
        assert_eq!(seen, expected);
        assert_eq!(seen.len(), 7);
    }

    #[test]
    fn rewrites_in_place_and_leaves_keys_alone() {
        let mut v = sample();
        walk_strings_mut(&mut v, &mut |s| *s = format!("<{s}>"));
        assert_eq!(v["b"][1]["d"][2], "<5>");
        assert_eq!(v["e"]["f"]["g"], "<7>");
        assert!(v.get("a").is_some());
    }

    #[test]
    fn a_very_deep_value_does_not_overflow_the_stack() {
        let mut v = json!("deep");
        for _ in 0..100_000 {
            v = Value::Array(vec![v]);
        }
        let mut n = 0;
        walk_strings_mut(&mut v, &mut |_| n += 1);
        assert_eq!(n, 1);
        // Dropping a value this deep recurses in serde_json; take it apart by hand.
        while let Value::Array(mut a) = v {
            v = a.pop().unwrap_or(Value::Null);
        }
    }
}
