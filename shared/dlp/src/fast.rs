//! One borrowed pass over a body for the common case: nothing to redact or block.
//!
//! The gateway used to parse every request and every complete response into a
//! [`serde_json::Value`] (strictly: see [`crate::json::strict`]) and then walk it to scan each
//! string. Most bodies are clean, and for them the tree is pure cost: one allocation per
//! string, key, array and object, then a walk and a drop. The functions here do the same work
//! in one pass over the bytes, through serde_json's own deserializer (escapes, numbers,
//! UTF-8, the recursion limit and error positions are serde_json's, exactly as in
//! [`parse_strict`](crate::json::parse_strict)): every object's keys are checked for a repeat
//! (the same [`BodyError`]s, byte order included), and every string the parsed walk would
//! scan is scanned where it lies in the input (borrowed unless it has escapes).
//!
//! The pass never rewrites anything. As soon as a scan finds something to redact or block —
//! or a shape only the parsed walk can decide (a `data` array or object in what turns out to
//! be a base64 part) — it stops and answers [`RequestPass::Fallback`] /
//! [`ResponsePass::Fallback`]; the caller then runs the parsed path from the start
//! ([`parse_request_body`](crate::json::parse_request_body) + [`crate::inspect_request`],
//! or `parse_strict` + its redaction), so redacted bytes, placeholder numbering, and every
//! error are exactly those of that path. The tests in `tests/fast_pass.rs` hold the two paths
//! to the same verdict, report and error.

use crate::entity::{Action, Entity};
use crate::json::strict::{BodyError, Strict, classify};
use crate::json::walk_strings;
use crate::policy::Policy;
use crate::request::{Report, RequestKind, Tally, opaque_action, opaque_part, text_media};
use crate::scan::Scope;
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use std::borrow::Cow;
use std::cell::Cell;
use std::collections::BTreeSet;
use std::fmt;

/// A top-level value of a request body, as the caller asked for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Top<'a> {
    Null,
    Bool(bool),
    Number,
    String(Cow<'a, str>),
    Array,
    Object,
}

impl Top<'_> {
    /// The same view of a parsed value (for callers that took the parsed path).
    pub fn of(v: &Value) -> Top<'_> {
        match v {
            Value::Null => Top::Null,
            Value::Bool(b) => Top::Bool(*b),
            Value::Number(_) => Top::Number,
            Value::String(s) => Top::String(Cow::Borrowed(s)),
            Value::Array(_) => Top::Array,
            Value::Object(_) => Top::Object,
        }
    }
}

/// What the borrowed pass over a request body found.
#[derive(Debug)]
pub enum RequestPass<'a> {
    /// A valid request body with nothing to redact or block. `report` is what
    /// [`crate::inspect_request`] would return for it (decision `Allow` or `Log`); `top` holds
    /// the top-level values asked for, in the order asked (`None`: absent).
    Clean {
        report: Report,
        top: Vec<Option<Top<'a>>>,
    },
    /// Parse and inspect it the parsed way; nothing about the body is known (it may still be
    /// invalid).
    Fallback,
}

/// What the borrowed pass over a complete response body found.
#[derive(Debug)]
pub enum ResponsePass {
    /// Valid JSON without a repeated key and no string to redact under the policy; `usage`
    /// is the top-level `usage` value, if the body is an object that has one.
    Clean { usage: Option<Value> },
    /// Parse and redact it the parsed way.
    Fallback,
}

/// The request counterpart of `parse_request_body` followed by `inspect_request`, for bodies
/// that need no rewriting. `capture` names top-level keys whose values are returned.
pub fn scan_request_bytes<'a>(
    kind: RequestKind,
    bytes: &'a [u8],
    policy: &Policy,
    capture: &[&str],
) -> Result<RequestPass<'a>, BodyError> {
    // As for `inspect_request`: both kinds' shapes are covered by the same rules.
    let _ = kind;
    let mut st = State::new(policy, Mode::Request, capture);
    let seen = match run(bytes, &mut st) {
        Ok(seen) => seen,
        Err(Stop::Fallback) => return Ok(RequestPass::Fallback),
        Err(Stop::Body(e)) => return Err(e),
    };
    if !matches!(seen, Seen::Object) {
        return Err(BodyError::NotObject);
    }
    let action = opaque_action(policy);
    if st.opaque > 0 && action != Action::Off {
        if matches!(action, Action::Block | Action::Redact) {
            return Ok(RequestPass::Fallback);
        }
        for _ in 0..st.opaque {
            st.tally.add(Entity::OpaqueInput, action);
        }
    }
    let report = st.tally.report(st.fields);
    Ok(RequestPass::Clean {
        report,
        top: st.top,
    })
}

/// The response counterpart of `parse_strict` followed by scanning every string value (not
/// keys) for something the policy redacts.
pub fn scan_response_bytes(bytes: &[u8], policy: &Policy) -> Result<ResponsePass, BodyError> {
    let mut st = State::new(policy, Mode::Response, &[]);
    match run(bytes, &mut st) {
        Ok(_) => Ok(ResponsePass::Clean { usage: st.usage }),
        Err(Stop::Fallback) => Ok(ResponsePass::Fallback),
        Err(Stop::Body(e)) => Err(e),
    }
}

enum Stop {
    Fallback,
    Body(BodyError),
}

fn run<'de>(bytes: &'de [u8], st: &mut State<'_, 'de>) -> Result<Seen<'de>, Stop> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let seed = Val {
        st: &mut *st,
        odepth: 0,
        root: true,
        tokens_here: false,
        want: Want::Nothing,
    };
    match seed.deserialize(&mut de).and_then(|v| de.end().map(|()| v)) {
        Ok(seen) => Ok(seen),
        Err(_) if st.fallback => Err(Stop::Fallback),
        Err(e) => Err(Stop::Body(classify(bytes, &st.duplicate, &e))),
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Every string value and key, `data:` URLs and base64 parts decoded, opaque items
    /// counted: what `inspect_request` visits.
    Request,
    /// Every string value: what the gateway's response redaction visits.
    Response,
}

/// The pass gave up: the parsed path decides (the message is never shown).
struct GiveUp;

struct State<'p, 'de> {
    policy: &'p Policy,
    /// `scope_of(policy)`, computed once for every string of the body.
    scope: Scope,
    mode: Mode,
    duplicate: Cell<Option<usize>>,
    fallback: bool,
    tally: Tally,
    fields: u32,
    opaque: u32,
    capture: &'p [&'p str],
    top: Vec<Option<Top<'de>>>,
    usage: Option<Value>,
}

impl<'p> State<'p, '_> {
    fn new(policy: &'p Policy, mode: Mode, capture: &'p [&'p str]) -> Self {
        State {
            policy,
            scope: crate::scan::scope_of(policy),
            mode,
            duplicate: Cell::new(None),
            fallback: false,
            tally: Tally::default(),
            fields: 0,
            opaque: 0,
            capture,
            top: vec![None; capture.len()],
            usage: None,
        }
    }

    fn give_up<E: de::Error>(&mut self) -> E {
        self.fallback = true;
        E::custom("rewrite needed")
    }

    /// One text, scanned as the parsed walk's callback would scan it.
    fn text(&mut self, s: &str) -> Result<(), GiveUp> {
        let findings = crate::scan::scan_in_scope(s, self.policy, self.scope);
        self.fields += 1;
        let rewrite = |a: Action| match self.mode {
            Mode::Request => matches!(a, Action::Redact | Action::Block),
            Mode::Response => a == Action::Redact,
        };
        if findings.iter().any(|f| rewrite(f.action)) {
            return Err(GiveUp);
        }
        if self.mode == Mode::Request {
            for f in &findings {
                self.tally.add(f.entity, f.action);
            }
        }
        Ok(())
    }

    /// A string value (request: `Walk::string` in `crate::request`, read-only).
    fn string(&mut self, s: &str) -> Result<(), GiveUp> {
        if self.mode == Mode::Response {
            return self.text(s);
        }
        let Some(rest) = s.strip_prefix("data:") else {
            return self.text(s);
        };
        let Some(comma) = rest.find(',') else {
            return self.text(s);
        };
        let meta = &rest[..comma];
        let is_b64 = meta.to_ascii_lowercase().ends_with(";base64");
        if !text_media(meta) && !meta.is_empty() {
            self.opaque += 1;
            return Ok(());
        }
        if !is_b64 {
            return self.text(s);
        }
        let head = 5 + comma + 1;
        if !self.decoded_base64(&s[head..])? {
            self.opaque += 1;
        }
        Ok(())
    }

    /// Scans the text a base64 payload decodes to; `false` when it is not base64 of UTF-8.
    fn decoded_base64(&mut self, data: &str) -> Result<bool, GiveUp> {
        let compact: Vec<u8> = data.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
        let Some(text) =
            crate::validate::b64_decode(&compact).and_then(|raw| String::from_utf8(raw).ok())
        else {
            return Ok(false);
        };
        self.text(&text)?;
        Ok(true)
    }
}

/// What a value was, as much as its parent needs to know.
enum Seen<'de> {
    Null,
    Bool(bool),
    Number,
    /// The text when the parent asked to keep it.
    Str(Option<Cow<'de, str>>),
    Array {
        /// Non-empty, numbers only.
        numbers: bool,
    },
    Object,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Want {
    /// Scan a string and forget it.
    Nothing,
    /// Scan a string and hand it back.
    Keep,
    /// Hand a string back unscanned: the parent decides how to scan it.
    Defer,
}

/// Seed for one value.
struct Val<'s, 'p, 'de> {
    st: &'s mut State<'p, 'de>,
    /// Objects enclosing this value (as `Strict::depth`).
    odepth: usize,
    root: bool,
    /// A direct value of the root object under `prompt` or `input`.
    tokens_here: bool,
    want: Want,
}

impl<'de> DeserializeSeed<'de> for Val<'_, '_, 'de> {
    type Value = Seen<'de>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Seen<'de>, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Val<'_, '_, 'de> {
    fn str_seen<E: de::Error>(
        self,
        v: &str,
        keep: impl FnOnce() -> Cow<'de, str>,
    ) -> Result<Seen<'de>, E> {
        if self.want != Want::Defer && self.st.string(v).is_err() {
            return Err(self.st.give_up());
        }
        Ok(Seen::Str(match self.want {
            Want::Nothing => None,
            Want::Keep | Want::Defer => Some(keep()),
        }))
    }
}

/// What an object's keys say about how the parsed walk treats it (`Walk::value_inner`).
#[derive(Default)]
struct Part<'de> {
    ty: Option<Cow<'de, str>>,
    media_type: Option<Option<Cow<'de, str>>>,
    mime_type: Option<Option<Cow<'de, str>>>,
    data: Option<Seen<'de>>,
    format: bool,
    url: bool,
    file: bool,
}

impl<'de> Visitor<'de> for Val<'_, '_, 'de> {
    type Value = Seen<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any valid JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Seen<'de>, E> {
        Ok(Seen::Bool(v))
    }

    fn visit_i64<E>(self, _: i64) -> Result<Seen<'de>, E> {
        Ok(Seen::Number)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Seen<'de>, E> {
        Ok(Seen::Number)
    }

    fn visit_f64<E>(self, v: f64) -> Result<Seen<'de>, E> {
        // As `Strict`: a non-finite float would be null (the parser refuses them first).
        Ok(if v.is_finite() {
            Seen::Number
        } else {
            Seen::Null
        })
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Seen<'de>, E> {
        self.str_seen(v, || Cow::Borrowed(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Seen<'de>, E> {
        self.str_seen(v, || Cow::Owned(v.to_owned()))
    }

    fn visit_none<E>(self) -> Result<Seen<'de>, E> {
        Ok(Seen::Null)
    }

    fn visit_unit<E>(self) -> Result<Seen<'de>, E> {
        Ok(Seen::Null)
    }

    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<Seen<'de>, D::Error> {
        self.deserialize(d)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Seen<'de>, A::Error> {
        let st = self.st;
        let (mut n, mut numbers, mut tokens) = (0usize, true, true);
        loop {
            let seed = Val {
                st: &mut *st,
                odepth: self.odepth,
                root: false,
                tokens_here: false,
                want: Want::Nothing,
            };
            let Some(item) = seq.next_element_seed(seed)? else {
                break;
            };
            n += 1;
            match item {
                Seen::Number => {}
                Seen::Array { numbers: true, .. } => numbers = false,
                _ => (numbers, tokens) = (false, false),
            }
        }
        let (numbers, tokens) = (n > 0 && numbers, n > 0 && tokens);
        // Non-empty, numbers or non-empty arrays of numbers only: token ids instead of text,
        // one opaque item (the parsed walk does not visit them;
        // numbers hold nothing to scan either way).
        if self.tokens_here && tokens {
            st.opaque += 1;
        }
        Ok(Seen::Array { numbers })
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Seen<'de>, A::Error> {
        let st = self.st;
        let request = st.mode == Mode::Request;
        let before = st.opaque;
        let mut keys = Keys::default();
        let mut part = Part::default();
        while let Some(key) = map.next_key_seed(KeySeed)? {
            let capture = if self.root {
                st.capture.iter().position(|c| *c == key)
            } else {
                None
            };
            let want = if request && key == "data" {
                Want::Defer
            } else if capture.is_some()
                || (request && matches!(&*key, "type" | "media_type" | "mime_type"))
            {
                Want::Keep
            } else {
                Want::Nothing
            };
            let seen = if self.root && !request && key == "usage" {
                // The usage a response reports is read from a parsed value (small).
                let v = map.next_value_seed(Strict {
                    duplicate: &st.duplicate,
                    depth: self.odepth + 1,
                })?;
                let mut clean = true;
                walk_strings(&v, &mut |s| clean = clean && st.text(s).is_ok());
                if !clean {
                    return Err(st.give_up());
                }
                st.usage = Some(v);
                Seen::Object
            } else {
                map.next_value_seed(Val {
                    st: &mut *st,
                    odepth: self.odepth + 1,
                    root: false,
                    tokens_here: request && self.root && matches!(&*key, "prompt" | "input"),
                    want,
                })?
            };
            // Checked after the value, as `Strict` does: the first problem in byte order.
            if keys.contains(&key) {
                st.duplicate.set(Some(self.odepth));
                return Err(de::Error::custom("duplicate object key"));
            }
            if let Some(i) = capture
                && let Some(slot) = st.top.get_mut(i)
            {
                *slot = Some(match &seen {
                    Seen::Null => Top::Null,
                    Seen::Bool(b) => Top::Bool(*b),
                    Seen::Number => Top::Number,
                    Seen::Str(s) => Top::String(s.clone().unwrap_or_default()),
                    Seen::Array { .. } => Top::Array,
                    Seen::Object => Top::Object,
                });
            }
            if request {
                match &*key {
                    "type" => {
                        if let Seen::Str(s) = seen {
                            part.ty = s;
                        }
                    }
                    "media_type" => part.media_type = Some(str_of(seen)),
                    "mime_type" => part.mime_type = Some(str_of(seen)),
                    "data" => part.data = Some(seen),
                    "format" => part.format = true,
                    "url" => part.url = true,
                    "file_id" | "file_url" => part.file = true,
                    _ => {}
                }
                // Keys reach the provider too.
                if st.text(&key).is_err() {
                    return Err(st.give_up());
                }
            }
            keys.insert(key);
        }
        if request && finish_part(st, part, before).is_err() {
            return Err(st.give_up());
        }
        Ok(Seen::Object)
    }
}

fn str_of(seen: Seen<'_>) -> Option<Cow<'_, str>> {
    match seen {
        Seen::Str(s) => s,
        _ => None,
    }
}

/// The end of an object in a request: the parsed walk's part rules (`Walk::value_inner` and
/// `Walk::value` in `crate::request`), now that every key is known.
fn finish_part(st: &mut State<'_, '_>, part: Part<'_>, before: u32) -> Result<(), GiveUp> {
    let ty = part.ty.as_deref().unwrap_or("");
    let part_opaque = opaque_part(ty);
    if part_opaque {
        st.opaque += 1;
    }
    let binary_b64 =
        ty == "base64" || (part.data.is_some() && (part.format || ty == "input_audio"));
    let media = match &part.media_type {
        Some(m) => m.as_deref().unwrap_or(""),
        None => part
            .mime_type
            .as_ref()
            .and_then(|m| m.as_deref())
            .unwrap_or(""),
    };
    if (ty == "url" && part.url) || part.file {
        st.opaque += 1;
    }
    match &part.data {
        Some(Seen::Str(Some(d))) if binary_b64 => {
            let readable = text_media(media) && st.decoded_base64(d)?;
            if !readable && !part_opaque {
                st.opaque += 1;
            }
        }
        Some(Seen::Str(Some(d))) => st.string(d)?,
        // Scanned in place as an ordinary value, but the parsed walk skips it here.
        Some(Seen::Array { .. } | Seen::Object) if binary_b64 => return Err(GiveUp),
        _ => {}
    }
    // One opaque item per part: an image block with a URL source is one image.
    if part_opaque && st.opaque > before + 1 {
        st.opaque = before + 1;
    }
    Ok(())
}

/// An object key, borrowed from the input unless it has escapes.
struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Cow<'de, str>, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Borrowed(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Owned(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Owned(v))
    }
}

/// The keys of one object: the first few inline (no allocation for the usual small
/// object), the rest in a set (no quadratic scan for a huge one).
struct Keys<'de> {
    small: [Cow<'de, str>; SMALL],
    n: usize,
    rest: BTreeSet<Cow<'de, str>>,
}

const SMALL: usize = 8;
const NO_KEY: Cow<'static, str> = Cow::Borrowed("");

impl Default for Keys<'_> {
    fn default() -> Self {
        Keys {
            small: [NO_KEY; SMALL],
            n: 0,
            rest: BTreeSet::new(),
        }
    }
}

impl<'de> Keys<'de> {
    fn contains(&self, k: &str) -> bool {
        self.small[..self.n.min(SMALL)].iter().any(|s| s == k) || self.rest.contains(k)
    }

    fn insert(&mut self, k: Cow<'de, str>) {
        if let Some(slot) = self.small.get_mut(self.n) {
            *slot = k;
        } else {
            self.rest.insert(k);
        }
        self.n += 1;
    }
}
