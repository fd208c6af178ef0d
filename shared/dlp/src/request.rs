//! Request-body walkers for the two route kinds.
//!
//! Only text fields that reach the model are scanned, and only those are ever
//! changed, so a redacted body is still a valid request of the same shape.
//!
//! OpenAI kind
//! - chat completions: `messages[].content` (string or parts with `text`, any role
//!   incl. system / developer / tool), `messages[].tool_calls[].function.arguments`,
//!   legacy `messages[].function_call.arguments`;
//! - responses: `instructions`, `input` (string or items: message items with
//!   `content` string / parts, `function_call.arguments`,
//!   `function_call_output.output`);
//! - embeddings: `input` (string or list of strings; token arrays are skipped);
//! - completions: `prompt` (string or list of strings).
//!
//! Anthropic kind
//! - `system` (string or text blocks), `messages[].content` (string or blocks):
//!   `text`, `tool_use.input` (every string value, recursively), `tool_result.content`
//!   (string or blocks, recursively), `document` blocks with a text source.

use crate::entity::{Action, Entity};
use crate::error::DlpError;
use crate::json::{BodyError, parse_request_body, walk_strings_mut};
use crate::policy::Policy;
use crate::redact::Redactor;
use crate::scan::{Finding, scan};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// Which provider API the request imitates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RequestKind {
    /// `/v1/chat/completions`, `/v1/responses`, `/v1/embeddings`, `/v1/completions`.
    Openai,
    /// `/v1/messages`, `/v1/messages/count_tokens`.
    Anthropic,
}

/// Outcome for the whole request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    /// Nothing found (or everything found is `off`).
    Allow,
    /// Findings to record; body forwarded unchanged.
    Log,
    /// Some fields were redacted; forward the rewritten body.
    Redact,
    /// Refuse the request (see [`Report::blocked`]).
    Block,
}

/// What the inspection found. Never contains matched text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// Overall decision.
    pub decision: Decision,
    /// Entity → number of findings (all non-`off` actions).
    pub counts: BTreeMap<Entity, u32>,
    /// Entities whose action is `block` (empty unless `decision == Block`).
    pub blocked: Vec<Entity>,
    /// Number of spans replaced by placeholders.
    pub redacted: u32,
    /// Number of text fields scanned.
    pub fields: u32,
}

impl Report {
    fn from_findings(all: &[Vec<Finding>]) -> Report {
        let mut counts = BTreeMap::new();
        let mut blocked = Vec::new();
        let mut any_redact = false;
        let mut any = false;
        for f in all.iter().flatten() {
            any = true;
            *counts.entry(f.entity).or_insert(0) += 1;
            match f.action {
                Action::Block => {
                    if !blocked.contains(&f.entity) {
                        blocked.push(f.entity);
                    }
                }
                Action::Redact => any_redact = true,
                Action::Log | Action::Off => {}
            }
        }
        blocked.sort();
        let decision = if !blocked.is_empty() {
            Decision::Block
        } else if any_redact {
            Decision::Redact
        } else if any {
            Decision::Log
        } else {
            Decision::Allow
        };
        Report {
            decision,
            counts,
            blocked,
            redacted: 0,
            fields: all.len() as u32,
        }
    }
}

fn parts(v: &mut Value, f: &mut dyn FnMut(&mut String)) {
    match v {
        Value::String(s) => f(s),
        Value::Array(items) => {
            for p in items {
                match p {
                    Value::String(s) => f(s),
                    Value::Object(o) => {
                        if let Some(Value::String(s)) = o.get_mut("text") {
                            f(s);
                        }
                        if let Some(Value::String(s)) = o.get_mut("refusal") {
                            f(s);
                        }
                    }
                    _ => {}
                }
            }
        }
        _ => {}
    }
}

fn openai_item(item: &mut Value, f: &mut dyn FnMut(&mut String)) {
    match item {
        Value::String(s) => f(s),
        Value::Object(o) => {
            if let Some(c) = o.get_mut("content") {
                parts(c, f);
            }
            if let Some(calls) = o.get_mut("tool_calls").and_then(Value::as_array_mut) {
                for call in calls {
                    if let Some(Value::String(a)) = call.pointer_mut("/function/arguments") {
                        f(a);
                    }
                }
            }
            if let Some(Value::String(a)) = o
                .get_mut("function_call")
                .and_then(|fc| fc.get_mut("arguments"))
            {
                f(a);
            }
            // responses API items
            if let Some(Value::String(a)) = o.get_mut("arguments") {
                f(a);
            }
            if let Some(out) = o.get_mut("output") {
                parts(out, f);
            }
        }
        _ => {}
    }
}

fn anthropic_content(v: &mut Value, f: &mut dyn FnMut(&mut String), depth: usize) {
    match v {
        Value::String(s) => f(s),
        Value::Array(blocks) => {
            for b in blocks {
                anthropic_block(b, f, depth);
            }
        }
        _ => {}
    }
}

fn anthropic_block(b: &mut Value, f: &mut dyn FnMut(&mut String), depth: usize) {
    if depth > 16 {
        return;
    }
    let Value::Object(o) = b else {
        if let Value::String(s) = b {
            f(s);
        }
        return;
    };
    let ty = o
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("text")
        .to_owned();
    match ty.as_str() {
        "text" => {
            if let Some(Value::String(s)) = o.get_mut("text") {
                f(s);
            }
        }
        "tool_use" | "server_tool_use" => {
            if let Some(input) = o.get_mut("input") {
                walk_strings_mut(input, f);
            }
        }
        "tool_result" => {
            if let Some(c) = o.get_mut("content") {
                anthropic_content(c, f, depth + 1);
            }
        }
        "document" => {
            if let Some(src) = o.get_mut("source") {
                if src.get("type").and_then(Value::as_str) == Some("text") {
                    if let Some(Value::String(s)) = src.get_mut("data") {
                        f(s);
                    }
                } else if let Some(c) = src.get_mut("content") {
                    anthropic_content(c, f, depth + 1);
                }
            }
        }
        _ => {}
    }
}

/// Call `f` on every text field of `body` that reaches the model, in a fixed
/// document order.
pub fn for_each_text(kind: RequestKind, body: &mut Value, f: &mut dyn FnMut(&mut String)) {
    let Value::Object(o) = body else { return };
    match kind {
        RequestKind::Openai => {
            if let Some(Value::String(s)) = o.get_mut("instructions") {
                f(s);
            }
            if let Some(msgs) = o.get_mut("messages").and_then(Value::as_array_mut) {
                for m in msgs {
                    openai_item(m, f);
                }
            }
            match o.get_mut("input") {
                Some(Value::String(s)) => f(s),
                Some(Value::Array(items)) => {
                    for it in items {
                        openai_item(it, f);
                    }
                }
                _ => {}
            }
            match o.get_mut("prompt") {
                Some(Value::String(s)) => f(s),
                Some(Value::Array(items)) => {
                    for it in items {
                        if let Value::String(s) = it {
                            f(s);
                        }
                    }
                }
                _ => {}
            }
        }
        RequestKind::Anthropic => {
            if let Some(sys) = o.get_mut("system") {
                anthropic_content(sys, f, 0);
            }
            if let Some(msgs) = o.get_mut("messages").and_then(Value::as_array_mut) {
                for m in msgs {
                    if let Some(c) = m.get_mut("content") {
                        anthropic_content(c, f, 0);
                    }
                }
            }
        }
    }
}

/// Scan every text field of a parsed request body. When the decision is
/// `Redact`, the fields are rewritten in place (placeholders numbered across
/// the whole request); on `Block` the body is left untouched.
pub fn inspect_request(kind: RequestKind, body: &mut Value, policy: &Policy) -> Report {
    let mut per_field: Vec<Vec<Finding>> = Vec::new();
    for_each_text(kind, body, &mut |s: &mut String| {
        per_field.push(scan(s, policy))
    });
    let mut report = Report::from_findings(&per_field);
    if report.decision == Decision::Redact {
        let mut redactor = Redactor::new();
        let mut idx = 0usize;
        let mut redacted = 0u32;
        for_each_text(kind, body, &mut |s: &mut String| {
            if let Some(fs) = per_field
                .get(idx)
                .filter(|fs| fs.iter().any(|f| f.action == Action::Redact))
            {
                let (out, extra) = redactor.redact_to_fixpoint(s, fs, policy);
                redacted += fs.iter().filter(|f| f.action == Action::Redact).count() as u32;
                redacted += extra.len() as u32;
                *s = out;
            }
            idx += 1;
        });
        report.redacted = redacted;
    }
    report
}

/// Parse, inspect and (when redacting) re-serialize a request body.
///
/// The returned bytes are the input bytes unchanged unless the decision is
/// `Redact`. On `Block` the caller must not forward the body. A body that repeats an object
/// key is refused ([`DlpError::Body`]), as the gateway refuses it.
pub fn redact_request_bytes(
    kind: RequestKind,
    body: &[u8],
    policy: &Policy,
) -> Result<(Vec<u8>, Report), DlpError> {
    // Strict: with a repeated key, serde_json would keep the last value, the first would go
    // unscanned, and on Allow/Log the original bytes (holding both) would be returned.
    let mut v = parse_request_body(body).map_err(|e| match e {
        BodyError::NotObject => DlpError::NotAnObject,
        other => DlpError::Body(other),
    })?;
    let report = inspect_request(kind, &mut v, policy);
    if report.decision == Decision::Redact {
        Ok((serde_json::to_vec(&v)?, report))
    } else {
        Ok((body.to_vec(), report))
    }
}
