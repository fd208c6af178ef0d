//! Stage 2b: sensitive data. Every text field of the request is scanned under the caller's
//! effective policy (defaults ← tenant ← key): `block` refuses the request before any
//! upstream call, `redact` rewrites only text fields, `log` only counts. Provider responses
//! have secrets redacted before they reach the client (see [`ResponseFilter`]). The audit line
//! gets entity types and counts, never the matched text.

use crate::context::RequestCtx;
use crate::request::Parsed;
use crate::respond::Refusal;
use crate::stream_event::Doc;
use bytes::Bytes;
use serde_json::Value;
use std::collections::BTreeMap;
use tollgate_core::provider::{Route, Usage, fold_stream_usage};
use tollgate_core::reason::Reason;
use tollgate_core::records::{Policy, ProviderKind};
use tollgate_dlp::json::walk_strings_mut;
use tollgate_dlp::{
    Action, Category, Decision, Entity, Redactor, RequestKind, StreamRedactor, inspect_request,
};

pub(crate) fn request_kind(kind: ProviderKind) -> RequestKind {
    match kind {
        ProviderKind::Openai => RequestKind::Openai,
        ProviderKind::Anthropic => RequestKind::Anthropic,
    }
}

fn add_counts(ctx: &mut RequestCtx, counts: &BTreeMap<Entity, u32>) {
    for (e, n) in counts {
        *ctx.audit.dlp.entry(e.name().to_owned()).or_insert(0) += n;
    }
}

/// Applies the caller's policy to the request's sensitive-data report: the one the borrowed
/// pass found for a clean body (`parsed.scanned`), else a scan of the parsed body. On redact,
/// `parsed.body` is replaced by the re-serialized JSON; otherwise the original bytes go
/// upstream untouched.
pub(crate) fn inspect(
    route: Route,
    parsed: &mut Parsed,
    ctx: &mut RequestCtx,
) -> Result<Policy, Refusal> {
    // The policy was resolved from the principal when the body was read.
    let policy = parsed.dlp_policy.clone();
    let report = match parsed.scanned.take() {
        Some(report) => report,
        None => {
            let Some(json) = parsed.json.as_mut() else {
                return Ok(policy);
            };
            inspect_request(request_kind(route.kind()), json, &policy)
        }
    };
    add_counts(ctx, &report.counts);
    match report.decision {
        Decision::Block => {
            let names: Vec<&'static str> = report.blocked.iter().map(|e| e.name()).collect();
            Err(Refusal::with_detail(
                Reason::SensitiveDataBlocked,
                names.join(", "),
            ))
        }
        Decision::Redact => {
            // Only the parsed path redacts (the borrowed pass hands such bodies over).
            let body = parsed
                .json
                .as_ref()
                .and_then(|json| serde_json::to_vec(json).ok())
                .ok_or_else(|| Refusal::new(Reason::UnserializableBody))?;
            parsed.body = Bytes::from(body);
            Ok(policy)
        }
        Decision::Allow | Decision::Log => Ok(policy),
    }
}

/// The policy applied to provider responses: only secrets, redacted unless the caller's
/// policy turned that secret type off. Personal data in answers is the caller's own business.
pub fn response_policy(request_policy: &Policy) -> Policy {
    Policy::clone(&shared_response_policy(request_policy))
}

/// [`response_policy`], shared: most callers run the defaults, and theirs is built once per
/// process and handed out without a copy (copying and dropping it cost ~3k instructions per
/// request, callgrind).
pub fn shared_response_policy(request_policy: &Policy) -> std::sync::Arc<Policy> {
    static FOR_DEFAULTS: std::sync::LazyLock<std::sync::Arc<Policy>> =
        std::sync::LazyLock::new(|| std::sync::Arc::new(build_response_policy(&Policy::default())));
    if request_policy.categories.is_empty() && request_policy.entities.is_empty() {
        return FOR_DEFAULTS.clone();
    }
    std::sync::Arc::new(build_response_policy(request_policy))
}

fn build_response_policy(request_policy: &Policy) -> Policy {
    let mut p = Policy::default();
    for c in [
        Category::Financial,
        Category::NationalId,
        Category::Contact,
        Category::Network,
    ] {
        p = p.with_category(c, Action::Off);
    }
    for e in Entity::ALL {
        if e.category() == Category::Secret {
            let a = match request_policy.action_for(e) {
                Action::Off => Action::Off,
                _ => Action::Redact,
            };
            p = p.with_entity(e, a);
        }
    }
    p
}

/// Redacts secrets in one complete JSON response body: every string value is scanned, with
/// placeholder numbering shared across the body. Returns the re-serialized body, or `None`
/// when nothing changed.
pub fn redact_response_body(
    v: &mut Value,
    policy: &Policy,
    ctx_counts: &mut BTreeMap<Entity, u32>,
) -> Option<Vec<u8>> {
    let mut redactor = Redactor::new();
    let mut changed = false;
    walk_strings_mut(v, &mut |s| {
        let findings = tollgate_dlp::scan(s, policy);
        if findings.iter().any(|f| f.action == Action::Redact) {
            for f in &findings {
                *ctx_counts.entry(f.entity).or_insert(0) += 1;
            }
            *s = redactor.redact(s, &findings);
            changed = true;
        }
    });
    if changed {
        serde_json::to_vec(v).ok()
    } else {
        None
    }
}

/// Rewrites a provider's SSE stream so that secrets in streamed text are redacted, including
/// secrets split across chunks: text deltas go through a [`StreamRedactor`] per output
/// (choice / content block), which holds back a possible secret's prefix until it is
/// complete; when an output ends, what is held is flushed (redacted) just before the event
/// that ends it. Events that carry whole texts are scanned as complete bodies.
///
/// Two ways through, one result: the text-delta events that make up almost all of a stream
/// (an OpenAI chunk whose choices are not finished, an Anthropic `content_block_delta`, a
/// Responses `response.output_text.delta`) carrying no usage are parsed into a borrowed
/// [`Doc`] instead of a [`Value`]; everything else — ends of outputs (which flush), whole
/// texts, usage, non-JSON payloads — takes the `Value` path. The choice is made before any
/// state changes, both paths drive the same stream redactors, and a `Doc` writes back the
/// bytes the `Value` would (see [`crate::stream_event`]), so what the client receives,
/// usage and the redaction counts do not depend on the path (`tests/stream_fast.rs` runs
/// both side by side).
pub struct ResponseFilter {
    policy: Policy,
    streams: BTreeMap<String, StreamRedactor>,
    whole: Redactor,
    pub counts: BTreeMap<Entity, u32>,
    /// The borrowed path is tried first (off only to test it against the `Value` path).
    fast: bool,
    fast_events: u64,
    json: Vec<u8>,
}

impl ResponseFilter {
    pub fn new(policy: Policy) -> Self {
        Self {
            policy,
            streams: BTreeMap::new(),
            whole: Redactor::new(),
            counts: BTreeMap::new(),
            fast: true,
            fast_events: 0,
            json: Vec::new(),
        }
    }

    /// A filter that parses every event into a [`Value`] (the reference the borrowed path is
    /// tested against).
    #[doc(hidden)]
    pub fn value_path_only(policy: Policy) -> Self {
        Self {
            fast: false,
            ..Self::new(policy)
        }
    }

    /// Events that took the borrowed path so far.
    #[doc(hidden)]
    pub fn fast_events(&self) -> u64 {
        self.fast_events
    }

    fn push(&mut self, stream: String, text: &str) -> String {
        let policy = &self.policy;
        self.streams
            .entry(stream)
            .or_insert_with(|| StreamRedactor::new(policy))
            .push(text)
    }

    fn flush(&mut self, stream: &str) -> String {
        match self.streams.get_mut(stream) {
            Some(r) => {
                let out = r.finish();
                for (e, n) in r.counts() {
                    *self.counts.entry(*e).or_insert(0) += n;
                }
                self.streams.remove(stream);
                out
            }
            None => String::new(),
        }
    }

    fn redact_whole(&mut self, v: &mut Value) {
        let policy = &self.policy;
        let whole = &mut self.whole;
        let counts = &mut self.counts;
        walk_strings_mut(v, &mut |s| {
            let findings = tollgate_dlp::scan(s, policy);
            if findings.iter().any(|f| f.action == Action::Redact) {
                for f in &findings {
                    *counts.entry(f.entity).or_insert(0) += 1;
                }
                *s = whole.redact(s, &findings);
            }
        });
    }

    /// Rewrites one SSE event (`event` name, `data` payload) into zero or more events, each
    /// already framed (`event: …\ndata: …\n\n`).
    pub fn event(&mut self, event: Option<&str>, data: &str) -> String {
        let mut out = String::new();
        self.event_into(&mut out, event, data, &mut Usage::default());
        out
    }

    /// [`Self::event`], appending to `out`, and folding the usage an event reports into
    /// `usage` (only events whose payload mentions `"usage"` are read for it).
    pub fn event_into(
        &mut self,
        out: &mut String,
        event: Option<&str>,
        data: &str,
        usage: &mut Usage,
    ) {
        let wants_usage = data.contains("\"usage\"");
        if self.fast && self.fast_event(out, event, data, wants_usage) {
            self.fast_events += 1;
            return;
        }
        let parsed = serde_json::from_str::<Value>(data);
        if wants_usage && let Ok(v) = &parsed {
            fold_stream_usage(usage, v);
        }
        self.value_event(out, event, data, parsed.ok());
    }

    /// The borrowed path: `false` (nothing changed, nothing written) unless the event is a
    /// text delta with nothing for the usage fold; then the same pushes as
    /// [`Self::value_event`] and the same bytes written.
    fn fast_event(
        &mut self,
        out: &mut String,
        event: Option<&str>,
        data: &str,
        wants_usage: bool,
    ) -> bool {
        let Some(mut doc) = Doc::parse(data) else {
            return false;
        };
        if wants_usage && !folds_nothing(&doc) {
            return false;
        }
        match doc.get("type").and_then(Doc::as_str).unwrap_or("") {
            "content_block_delta" => {
                let idx = doc.get("index").and_then(Doc::as_u64).unwrap_or(0);
                if let Some(Doc::String(t)) = doc.get_mut("delta").and_then(|d| d.get_mut("text")) {
                    let pushed = self.push(format!("a{idx}"), t);
                    *t = pushed.into();
                }
            }
            "response.output_text.delta" => {
                let key = format!(
                    "r{}:{}",
                    doc.get("output_index").and_then(Doc::as_u64).unwrap_or(0),
                    doc.get("content_index").and_then(Doc::as_u64).unwrap_or(0)
                );
                if let Some(Doc::String(t)) = doc.get_mut("delta") {
                    let pushed = self.push(key, t);
                    *t = pushed.into();
                }
            }
            "content_block_stop" | "response.output_text.done" => return false,
            _ => match doc.get_mut("choices") {
                // Not an array: the `Value` path leaves it as it is too.
                Some(Doc::Array(choices)) => {
                    // A finished choice flushes (and may add a field): the `Value` path's.
                    if choices
                        .iter()
                        .any(|c| c.get("finish_reason").is_some_and(|f| !f.is_null()))
                    {
                        return false;
                    }
                    for c in choices {
                        let idx = c.get("index").and_then(Doc::as_u64).unwrap_or(0);
                        let at_delta = c.get("delta").and_then(|d| d.get("content")).is_some();
                        let text = if at_delta {
                            c.get_mut("delta").and_then(|d| d.get_mut("content"))
                        } else {
                            c.get_mut("text")
                        };
                        if let Some(Doc::String(t)) = text {
                            let pushed = self.push(format!("o{idx}"), t);
                            *t = pushed.into();
                        }
                    }
                }
                Some(_) => {}
                // Whole texts: scanned on the `Value` path.
                None => return false,
            },
        }
        self.json.clear();
        // Writing a parsed document out cannot fail (string keys, finite numbers) and gives
        // UTF-8; were it ever to, an empty object goes out rather than anything unfiltered
        // (the pushes above already happened, so the `Value` path must not run again).
        let json = match serde_json::to_writer(&mut self.json, &doc) {
            Ok(()) => std::str::from_utf8(&self.json).unwrap_or("{}"),
            Err(_) => "{}",
        };
        sse_frame_into(out, event, json);
        true
    }

    /// The `Value` path; `parsed` is `data` parsed, `None` when it is not JSON.
    fn value_event(
        &mut self,
        out: &mut String,
        event: Option<&str>,
        data: &str,
        parsed: Option<Value>,
    ) {
        let frame = sse_frame_into;
        let Some(mut v) = parsed else {
            // `[DONE]` and other non-JSON payloads: flush whatever any output still holds.
            let keys: Vec<String> = self.streams.keys().cloned().collect();
            for k in keys {
                let rest = self.flush(&k);
                if !rest.is_empty() {
                    frame(out, None, &openai_text_chunk(&k, &rest));
                }
            }
            frame(out, event, data);
            return;
        };
        let ty = v
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        match ty.as_str() {
            // Anthropic text deltas, per content block.
            "content_block_delta" => {
                let idx = v.get("index").and_then(Value::as_u64).unwrap_or(0);
                if let Some(Value::String(t)) = v.pointer_mut("/delta/text") {
                    *t = self.push(format!("a{idx}"), t);
                }
            }
            "content_block_stop" => {
                let idx = v.get("index").and_then(Value::as_u64).unwrap_or(0);
                let rest = self.flush(&format!("a{idx}"));
                if !rest.is_empty() {
                    let d = serde_json::json!({"type": "content_block_delta", "index": idx,
                        "delta": {"type": "text_delta", "text": rest}});
                    frame(out, Some("content_block_delta"), &d.to_string());
                }
            }
            // OpenAI Responses API text deltas.
            "response.output_text.delta" => {
                let key = format!(
                    "r{}:{}",
                    v.get("output_index").and_then(Value::as_u64).unwrap_or(0),
                    v.get("content_index").and_then(Value::as_u64).unwrap_or(0)
                );
                if let Some(Value::String(t)) = v.get_mut("delta") {
                    *t = self.push(key, t);
                }
            }
            "response.output_text.done" => {
                let key = format!(
                    "r{}:{}",
                    v.get("output_index").and_then(Value::as_u64).unwrap_or(0),
                    v.get("content_index").and_then(Value::as_u64).unwrap_or(0)
                );
                let rest = self.flush(&key);
                if !rest.is_empty() {
                    let mut d = v.clone();
                    if let Some(o) = d.as_object_mut() {
                        o.insert("type".into(), "response.output_text.delta".into());
                        o.insert("delta".into(), Value::String(rest));
                        o.remove("text");
                    }
                    frame(out, Some("response.output_text.delta"), &d.to_string());
                }
                self.redact_whole(&mut v);
            }
            // OpenAI chat / completions chunks: per choice.
            _ if v.get("choices").is_some() => {
                if let Some(choices) = v.get_mut("choices").and_then(Value::as_array_mut) {
                    for c in choices {
                        let idx = c.get("index").and_then(Value::as_u64).unwrap_or(0);
                        let key = format!("o{idx}");
                        let done = c.get("finish_reason").is_some_and(|f| !f.is_null());
                        let path = if c.pointer("/delta/content").is_some() {
                            "/delta/content"
                        } else {
                            "/text"
                        };
                        if let Some(Value::String(t)) = c.pointer_mut(path) {
                            let mut pushed = self.push(key.clone(), t);
                            if done {
                                pushed.push_str(&self.flush(&key));
                            }
                            *t = pushed;
                        } else if done {
                            let rest = self.flush(&key);
                            if !rest.is_empty() {
                                if let Some(d) = c.get_mut("delta").and_then(Value::as_object_mut) {
                                    d.insert("content".into(), Value::String(rest));
                                } else if let Some(o) = c.as_object_mut() {
                                    o.insert("text".into(), Value::String(rest));
                                }
                            }
                        }
                    }
                }
            }
            // Anything else (message_start, response.completed, ...): whole texts.
            _ => self.redact_whole(&mut v),
        }
        frame(out, event, &v.to_string());
    }
}

/// `true` when [`fold_stream_usage`] would read nothing from this event: no `usage` object
/// at the top, no `usage` under `message` or `response`.
fn folds_nothing(doc: &Doc<'_>) -> bool {
    !matches!(doc.get("usage"), Some(Doc::Object(_)))
        && ["message", "response"]
            .iter()
            .all(|n| doc.get(n).and_then(|m| m.get("usage")).is_none())
}

/// One SSE event, framed: an `event:` line when named, then one `data:` line per line of the
/// payload (a multi-line payload under a single `data:` prefix would lose its later lines).
pub fn sse_frame(event: Option<&str>, data: &str) -> String {
    let mut out = String::with_capacity(data.len() + 16);
    sse_frame_into(&mut out, event, data);
    out
}

/// [`sse_frame`], appended to `out`.
pub fn sse_frame_into(out: &mut String, event: Option<&str>, data: &str) {
    out.reserve(data.len() + 16);
    if let Some(e) = event {
        out.push_str("event: ");
        out.push_str(e);
        out.push('\n');
    }
    for line in data.split('\n') {
        out.push_str("data: ");
        out.push_str(line);
        out.push('\n');
    }
    out.push('\n');
}

/// A minimal OpenAI chunk carrying leftover text for choice `key` (`o<index>`), used only if
/// a stream ends (`[DONE]`) without a finish chunk for that choice.
fn openai_text_chunk(key: &str, text: &str) -> String {
    let idx: u64 = key
        .trim_start_matches(|c: char| !c.is_ascii_digit())
        .parse()
        .unwrap_or(0);
    serde_json::json!({"object": "chat.completion.chunk", "choices": [
        {"index": idx, "delta": {"content": text}, "finish_reason": null}]})
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_github_token() -> String {
        // ghp_ tokens carry a CRC32 in their last 6 base62 characters; build a valid one.
        let body = "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5";
        let sum = tollgate_core::base62::crc32_checksum(body.as_bytes());
        format!("ghp_{body}{}", String::from_utf8_lossy(&sum))
    }

    fn chunk(text: &str) -> String {
        serde_json::json!({"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": null}]}).to_string()
    }

    #[test]
    fn a_secret_split_across_stream_chunks_is_still_redacted() {
        let secret = fake_github_token();
        let (a, b) = secret.split_at(15);
        let mut f = ResponseFilter::new(response_policy(&Policy::default()));
        let mut out = String::new();
        for piece in ["token: ", a, b, " done"] {
            out.push_str(&f.event(None, &chunk(piece)));
        }
        let fin =
            serde_json::json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]});
        out.push_str(&f.event(None, &fin.to_string()));
        out.push_str(&f.event(None, "[DONE]"));
        assert!(!out.contains(&secret), "{out}");
        assert!(!out.contains(a), "the prefix was held back: {out}");
        let text: String = out
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .filter_map(|d| serde_json::from_str::<Value>(d).ok())
            .filter_map(|v| {
                v["choices"][0]["delta"]["content"]
                    .as_str()
                    .map(str::to_owned)
            })
            .collect();
        assert_eq!(text, "token: [GITHUB_TOKEN_1] done");
        assert_eq!(f.counts.get(&Entity::GithubToken), Some(&1));
    }

    #[test]
    fn anthropic_text_is_flushed_before_the_block_stops() {
        let mut f = ResponseFilter::new(response_policy(&Policy::default()));
        let d = |t: &str| {
            serde_json::json!({"type": "content_block_delta", "index": 0,
                "delta": {"type": "text_delta", "text": t}})
            .to_string()
        };
        let mut out = f.event(Some("content_block_delta"), &d("hello wor"));
        out.push_str(&f.event(Some("content_block_delta"), &d("ld_and_more")));
        out.push_str(&f.event(
            Some("content_block_stop"),
            r#"{"type":"content_block_stop","index":0}"#,
        ));
        let text: String = out
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .filter_map(|d| serde_json::from_str::<Value>(d).ok())
            .filter_map(|v| v["delta"]["text"].as_str().map(str::to_owned))
            .collect();
        assert_eq!(text, "hello world_and_more");
        // Held text is flushed as a delta before the stop event, never after it.
        let stop = out.find("event: content_block_stop").unwrap();
        assert!(out.rfind("text_delta").unwrap() < stop, "{out}");
    }

    #[test]
    fn a_multi_line_non_json_event_keeps_every_line() {
        let mut f = ResponseFilter::new(response_policy(&Policy::default()));
        let out = f.event(Some("note"), "first line\nsecond line\nthird");
        assert_eq!(
            out,
            "event: note\ndata: first line\ndata: second line\ndata: third\n\n"
        );
        // Read back as a client would: the same three lines.
        let mut r = tollgate_core::sse::SseReader::new();
        let mut got = Vec::new();
        r.feed(out.as_bytes(), |ev| got.push(ev.data));
        assert_eq!(got, vec!["first line\nsecond line\nthird".to_owned()]);
    }

    #[test]
    fn response_policy_only_redacts_secrets_and_respects_off() {
        let p: Policy =
            serde_json::from_value(serde_json::json!({"entities": {"JWT": "off"}})).unwrap();
        let r = response_policy(&p);
        assert_eq!(r.action_for(Entity::Jwt), Action::Off);
        assert_eq!(r.action_for(Entity::OpenaiKey), Action::Redact);
        assert_eq!(r.action_for(Entity::CreditCard), Action::Off);
        assert_eq!(r.action_for(Entity::Email), Action::Off);
    }
}
