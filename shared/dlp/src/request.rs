//! The request-body walker: every string of the body is scanned, whatever the route.
//!
//! A list of "text fields" is always one field short of what a hostile caller finds
//! (`messages[].name`, `metadata`, `user`, tool descriptions, `stop`, response-format schema
//! descriptions, `prediction`, Anthropic `thinking` / `search_result` blocks, document
//! titles, Responses `reasoning.summary` …), so the walker visits every string value and
//! every object key, at any depth, of every route's body. Nothing is exempt: ids and enum
//! values (`model`, `role`, `type`, `*_id`) are scanned too, because they are short, cost
//! nothing and reach the provider like everything else.
//!
//! What can be read is decoded first:
//! - `data:` URLs of a text type (`text/*`, JSON, XML, YAML, CSV, form data) and base64
//!   `source` objects of a text `media_type` (an Anthropic `text/plain` document): the
//!   decoded text is scanned, and on redaction re-encoded in place;
//! - `%XX` escapes (URL query strings), JSON escapes, base64 runs inside text: the scanner
//!   folds or decodes them itself (see [`crate::normalize`], [`mod@crate::scan`]).
//!
//! What cannot be read is *opaque input* and reported as [`Entity::OpaqueInput`], once per
//! item: image and audio parts (`image_url`, `input_image`, `image`, `input_audio`), files
//! and documents given as binary base64, a URL or a file id, and token-id arrays as
//! `prompt` / `input` of completions and embeddings. Its action comes from the policy like
//! any secret's (default `block`; a policy allowing images says `"OPAQUE_INPUT": "log"`);
//! `redact` cannot apply to what cannot be read and acts as `block`. Binary payloads are
//! not scanned as text. The strings around them (an image URL's query string, a file name)
//! still are.
//!
//! Only strings are changed by redaction (object keys are renamed), so a redacted body is
//! still a valid request of the same shape.

use crate::entity::{Action, Entity};
use crate::error::DlpError;
use crate::json::{BodyError, parse_request_body};
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
        let mut tally = Tally::default();
        for f in all.iter().flatten() {
            tally.add(f.entity, f.action);
        }
        tally.report(all.len() as u32)
    }
}

/// A report built one finding at a time (the same rules whichever pass feeds it: the walk
/// over a parsed [`Value`] or the borrowed pass of [`crate::fast`]).
#[derive(Debug, Default)]
pub(crate) struct Tally {
    counts: BTreeMap<Entity, u32>,
    blocked: Vec<Entity>,
    any_redact: bool,
    any: bool,
}

impl Tally {
    pub(crate) fn add(&mut self, entity: Entity, action: Action) {
        self.any = true;
        *self.counts.entry(entity).or_insert(0) += 1;
        match action {
            Action::Block => {
                if !self.blocked.contains(&entity) {
                    self.blocked.push(entity);
                }
            }
            Action::Redact => self.any_redact = true,
            Action::Log | Action::Off => {}
        }
    }

    pub(crate) fn report(self, fields: u32) -> Report {
        let Tally {
            counts,
            mut blocked,
            any_redact,
            any,
        } = self;
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
            fields,
        }
    }
}

/// Media types whose payload is text.
pub(crate) fn text_media(mt: &str) -> bool {
    let mt = mt.trim().to_ascii_lowercase();
    let base = mt.split(';').next().unwrap_or("").trim();
    base.starts_with("text/")
        || matches!(
            base,
            "application/json"
                | "application/xml"
                | "application/yaml"
                | "application/x-yaml"
                | "application/csv"
                | "application/javascript"
                | "application/x-www-form-urlencoded"
                | "application/x-ndjson"
                | "application/toml"
                | "application/sql"
        )
        || base.ends_with("+json")
        || base.ends_with("+xml")
}

/// `type` values of parts the scanner cannot read.
pub(crate) fn opaque_part(ty: &str) -> bool {
    matches!(
        ty,
        "image_url" | "input_image" | "image" | "input_audio" | "audio" | "container_upload"
    )
}

/// Deeper than any request the gateway parses (serde_json stops at 128); a value built
/// deeper in code is opaque rather than a stack overflow.
const MAX_DEPTH: usize = 256;

struct Walk<'f> {
    f: &'f mut dyn FnMut(&mut String),
    opaque: u32,
}

impl Walk<'_> {
    /// Decode `data`, hand the text to `f`, re-encode when `f` changed it.
    fn decoded_base64(&mut self, data: &mut String) -> bool {
        let compact: Vec<u8> = data.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
        let Some(mut text) =
            crate::validate::b64_decode(&compact).and_then(|raw| String::from_utf8(raw).ok())
        else {
            return false;
        };
        let before = text.clone();
        (self.f)(&mut text);
        if text != before {
            *data = crate::validate::b64_encode(text.as_bytes());
        }
        true
    }

    fn string(&mut self, s: &mut String) {
        let Some(rest) = s.strip_prefix("data:") else {
            (self.f)(s);
            return;
        };
        let Some(comma) = rest.find(',') else {
            (self.f)(s);
            return;
        };
        let meta = &rest[..comma];
        let is_b64 = meta.to_ascii_lowercase().ends_with(";base64");
        if !text_media(meta) && !meta.is_empty() {
            // an image, audio or PDF: unreadable, and not worth scanning as text
            self.opaque += 1;
            return;
        }
        if !is_b64 {
            // percent-encoded text: the normalizer decodes `%XX` in place
            (self.f)(s);
            return;
        }
        let head = 5 + comma + 1;
        let mut data = s[head..].to_owned();
        if self.decoded_base64(&mut data) {
            let changed = data != s[head..];
            if changed {
                s.truncate(head);
                s.push_str(&data);
            }
        } else {
            self.opaque += 1;
        }
    }

    fn value(&mut self, v: &mut Value, key: Option<&str>, depth: usize) {
        let before = self.opaque;
        self.value_inner(v, key, depth);
        // one opaque item per part: an image block with a URL source is one image
        if self.opaque > before + 1
            && matches!(v, Value::Object(o) if o.get("type").and_then(Value::as_str).is_some_and(opaque_part))
        {
            self.opaque = before + 1;
        }
    }

    fn value_inner(&mut self, v: &mut Value, key: Option<&str>, depth: usize) {
        if depth > MAX_DEPTH {
            self.opaque += 1;
            return;
        }
        match v {
            Value::String(s) => self.string(s),
            Value::Array(items) => {
                // token ids instead of text (completions `prompt`, embeddings `input`)
                let tokens = |x: &Value| match x {
                    Value::Number(_) => true,
                    Value::Array(inner) => !inner.is_empty() && inner.iter().all(Value::is_number),
                    _ => false,
                };
                if depth == 1
                    && matches!(key, Some("prompt" | "input"))
                    && !items.is_empty()
                    && items.iter().all(tokens)
                {
                    self.opaque += 1;
                    return;
                }
                for x in items {
                    self.value(x, None, depth + 1);
                }
            }
            Value::Object(o) => {
                let ty = o.get("type").and_then(Value::as_str).unwrap_or("");
                let part_opaque = opaque_part(ty);
                if part_opaque {
                    self.opaque += 1;
                }
                // a base64 payload with its media type beside it (Anthropic `source`,
                // OpenAI `input_audio`)
                let binary_b64 = ty == "base64"
                    || (o.contains_key("data")
                        && (o.contains_key("format") || ty == "input_audio"));
                let media = o
                    .get("media_type")
                    .or_else(|| o.get("mime_type"))
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned();
                // a file or document given by reference: its content never passes here
                if (ty == "url" && o.contains_key("url"))
                    || o.contains_key("file_id")
                    || o.contains_key("file_url")
                {
                    self.opaque += 1;
                }
                for (k, x) in o.iter_mut() {
                    if binary_b64 && k == "data" {
                        if let Value::String(d) = x {
                            let readable = text_media(&media) && self.decoded_base64(d);
                            if !readable && !part_opaque {
                                self.opaque += 1;
                            }
                        }
                        continue;
                    }
                    self.value(x, Some(k), depth + 1);
                }
                // Keys after the values, so a renamed key cannot change the order in which
                // this object's values were visited (the redaction pass relies on it).
                let mut renames = Vec::new();
                for k in o.keys() {
                    let mut nk = k.clone();
                    (self.f)(&mut nk);
                    if nk != *k {
                        renames.push((k.clone(), nk));
                    }
                }
                for (old, new) in renames {
                    if let Some(x) = o.remove(&old) {
                        o.insert(new, x);
                    }
                }
            }
            Value::Null | Value::Bool(_) | Value::Number(_) => {}
        }
    }
}

/// Walk `body`: `f` gets every string (decoded where it is encoded text), every object
/// key; returns the number of opaque items.
fn walk(body: &mut Value, f: &mut dyn FnMut(&mut String)) -> u32 {
    let mut w = Walk { f, opaque: 0 };
    w.value(body, None, 0);
    w.opaque
}

/// Call `f` on every text of `body` that reaches the provider — every string value and
/// object key, decoded where it is encoded text — in a fixed order. The route kind does not
/// change what is visited (both kinds' shapes are covered by the same rules); it is kept so
/// callers name what they hold.
pub fn for_each_text(kind: RequestKind, body: &mut Value, f: &mut dyn FnMut(&mut String)) {
    let _ = kind;
    walk(body, f);
}

/// Number of items in `body` the scanner cannot read (see the module doc).
pub fn count_opaque(body: &mut Value) -> u32 {
    walk(body, &mut |_| {})
}

/// The action for items the scanner cannot read: what cannot be read cannot be redacted.
pub(crate) fn opaque_action(policy: &Policy) -> Action {
    match policy.action_for(Entity::OpaqueInput) {
        Action::Redact => Action::Block,
        a => a,
    }
}

/// Scan every text field of a parsed request body. When the decision is
/// `Redact`, the fields are rewritten in place (placeholders numbered across
/// the whole request); on `Block` the body is left untouched.
pub fn inspect_request(kind: RequestKind, body: &mut Value, policy: &Policy) -> Report {
    let _ = kind;
    let mut per_field: Vec<Vec<Finding>> = Vec::new();
    let opaque = walk(body, &mut |s: &mut String| per_field.push(scan(s, policy)));
    let fields = per_field.len() as u32;
    let opaque_action = opaque_action(policy);
    if opaque > 0 && opaque_action != Action::Off {
        per_field.push(
            (0..opaque)
                .map(|_| Finding {
                    entity: Entity::OpaqueInput,
                    start: 0,
                    end: 0,
                    action: opaque_action,
                })
                .collect(),
        );
    }
    let mut report = Report::from_findings(&per_field);
    report.fields = fields;
    if report.decision == Decision::Redact {
        let mut redactor = Redactor::new();
        let mut idx = 0usize;
        let mut redacted = 0u32;
        walk(body, &mut |s: &mut String| {
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
