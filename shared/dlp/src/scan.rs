//! The scanner: normalized view → candidate extraction → validation → spans
//! mapped back to the original text.
//!
//! Candidate extraction is split by shape so ordinary prose costs little:
//! - one regex whose every branch starts with a literal (`sk-`, `AKIA`, `ghp_`,
//!   `eyJ`, `-----BEGIN`, `password`, `secret`, …) — the regex crate turns the
//!   literals into a SIMD prefilter, so text without them is skipped at memory
//!   speed;
//! - an e-mail regex and a URL-credential regex whose inner literals (`@`, `://`)
//!   drive the same prefilter;
//! - a hand-written tokenizer for digit runs (digits separated by single spaces,
//!   hyphens, dots, parentheses) feeding the card / IBAN / SSN / My Number /
//!   corporate number / phone / postal code / IPv4 validators;
//! - a `:`-triggered IPv6 extractor.
//!
//! On short texts (≤ 128 bytes: roles, ids, model names, one sentence) the literal-prefixed
//! regexes are skipped when no 3-byte window of the text starts one of their literals
//! (`heads.rs`), and the e-mail / URL-credential regexes when `@` / `://` is absent: a regex call
//! costs far more than looking at a short string once. `tests/shortcuts.rs` holds the scanner
//! with and without these shortcuts to the same detections.
//!
//! Everything is linear in the input: the regexes are finite automata, and the
//! digit-run matchers look at no more than 19 digits from any group start.
//! Boundaries are ASCII-aware: a kanji next to a digit is a boundary, a Latin
//! letter is not.

use crate::entity::{Action, Category, Entity};
use crate::error::DlpError;
use crate::heads::Heads;
use crate::normalize::{Normalized, normalize_str};
use crate::policy::Policy;
use crate::validate as v;
use regex::Regex;
use serde::{Deserialize, Serialize};
use std::net::Ipv6Addr;
use std::sync::LazyLock;

/// A detected entity, with byte offsets into the ORIGINAL text (char boundaries).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Detection {
    /// What was found.
    pub entity: Entity,
    /// Start byte offset (inclusive).
    pub start: usize,
    /// End byte offset (exclusive).
    pub end: usize,
}

/// A detection with the action the policy assigns to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Finding {
    /// What was found.
    pub entity: Entity,
    /// Start byte offset (inclusive) into the original UTF-8 text.
    pub start: usize,
    /// End byte offset (exclusive) into the original UTF-8 text.
    pub end: usize,
    /// Policy action (never `off`: disabled entities are not reported).
    pub action: Action,
}

/// Which entities to look for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Every entity.
    All,
    /// Only the `secret` category (used on responses).
    SecretsOnly,
}

#[derive(Debug, Clone, Copy)]
struct Cand {
    entity: Entity,
    s: usize,
    e: usize,
}

/// Compiled scanner. Build once (see [`init`]) and share.
#[derive(Debug)]
pub struct Scanner {
    secret_re: Pattern,
    keys_re: Pattern,
    assign_re: Pattern,
    signature_re: Pattern,
    addr: crate::address::Addresses,
    url_cred_re: Regex,
    email_re: Regex,
    kw: Keywords,
    /// Skip a detector when a cheap look at the text proves it cannot match (see
    /// [`Scanner::without_shortcuts`]).
    shortcuts: bool,
}

/// A regex with the first bytes its matches can start with ([`Heads`]).
#[derive(Debug)]
struct Pattern {
    re: Regex,
    heads: Heads,
}

impl Pattern {
    fn new(pattern: &str) -> Result<Self, regex::Error> {
        Ok(Pattern {
            re: Regex::new(pattern)?,
            heads: Heads::of(pattern),
        })
    }
}

#[derive(Debug)]
struct Keywords {
    my_number: Vec<String>,
    corporate: Vec<String>,
    ssn: Vec<String>,
    phone: Vec<String>,
    postal: Vec<String>,
    ip: Vec<String>,
    card: Vec<String>,
}

fn kws(list: &[&str]) -> Vec<String> {
    list.iter()
        .map(|k| normalize_str(k).to_ascii_lowercase())
        .collect()
}

const SECRET_PATTERN: &str = r"(?x)
    tgk_(?:live|test)_[0-9A-Za-z]{50}
  | sk-[A-Za-z0-9_-]{20,}
  | (?:sk|rk)_(?:live|test|prod)_[0-9A-Za-z]{16,}
  | (?:AKIA|ASIA|ABIA|ACCA|A3T[A-Z0-9])[0-9A-Z]{16}
  | AIza[0-9A-Za-z_-]{35}
  | gh[pousr]_[0-9A-Za-z]{36}
  | github_pat_[0-9A-Za-z_]{40,}
  | xox[abeoprs]-[0-9A-Za-z-]{10,}
  | xoxe\.xox[bp]-[0-9A-Za-z-]{10,}
  | xapp-[0-9A-Za-z-]{10,}
  | eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{2,}(?:\.[A-Za-z0-9_-]*)?
  | -----BEGIN[\x20A-Z0-9]{0,40}PRIVATE\x20KEY(?:\x20BLOCK)?-----
  | (?:[Pp]ass(?:word|wd|phrase)?|PASS(?:WORD|WD|PHRASE)?|[Pp]wd|PWD|パスワード|暗証番号)
  | (?:secret|Secret|SECRET)[_.\x20-]?(?:access|Access|ACCESS)?[_.\x20-]?(?:key|Key|KEY)
  | シークレット(?:アクセス)?キー
";

const URL_CRED_PATTERN: &str =
    r#"[A-Za-z][A-Za-z0-9+.-]{1,20}://[^\s:/@?#"'<>\[\]]*:([^\s@/?#"'<>]{1,200})@[A-Za-z0-9\[]"#;

const EMAIL_PATTERN: &str = r"[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}[A-Za-z0-9])?)*\.(?:xn--[A-Za-z0-9]{1,59}|[A-Za-z]{2,24})";

/// Shortest base64 run decoded and scanned (18 bytes of text: `password=` and a short
/// value, an AWS key id and a few characters around it).
const MIN_B64: usize = 24;
/// Shortest text the key-family, assignment and signature regexes run on.
const MIN_KEYED: usize = 20;
/// Fewest space-separated single characters joined and scanned.
const MIN_SPACED: usize = 10;
/// Decoded views inside decoded views (base64 of base64, spaced base64) go this deep.
const MAX_VIEW_DEPTH: u8 = 2;

/// Base64 alphabet, standard and URL-safe, as a table: the probe loop tests one byte per
/// probe, so one load beats a chain of range compares.
static B64: [bool; 256] = {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        t[c] = b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'-' | b'_');
        c += 1;
    }
    t
};

#[inline]
fn is_b64(c: u8) -> bool {
    B64[usize::from(c)]
}

/// Decoded bytes that are text (UTF-8, no control characters but line breaks and tabs).
fn printable_text(raw: Vec<u8>) -> Option<String> {
    let s = String::from_utf8(raw).ok()?;
    let ok = s.len() >= 12
        && s.chars()
            .all(|c| !c.is_control() || matches!(c, '\n' | '\r' | '\t'));
    ok.then_some(s)
}

static GLOBAL: LazyLock<Result<Scanner, String>> =
    LazyLock::new(|| Scanner::new().map_err(|e| e.to_string()));

/// Compile the global scanner. Call once at start-up (cold start) so that a
/// broken build fails loudly instead of silently not scanning.
pub fn init() -> Result<&'static Scanner, DlpError> {
    match &*GLOBAL {
        Ok(s) => Ok(s),
        Err(e) => Err(DlpError::InvalidPolicy(format!(
            "scanner failed to compile: {e}"
        ))),
    }
}

/// Detect every entity in `text` (no policy applied).
pub fn detect(text: &str) -> Vec<Detection> {
    detect_scoped(text, Scope::All)
}

/// Detect entities of the given scope.
///
/// If the global scanner failed to compile (a build defect caught by the unit
/// tests and by [`init`]) the whole text is reported as one `PASSWORD` finding,
/// so the caller fails closed rather than open.
pub fn detect_scoped(text: &str, scope: Scope) -> Vec<Detection> {
    match &*GLOBAL {
        Ok(s) => s.detect(text, scope),
        Err(_) if text.is_empty() => Vec::new(),
        Err(_) => vec![Detection {
            entity: Entity::Password,
            start: 0,
            end: text.len(),
        }],
    }
}

/// Scan `text` under `policy`: detections whose action is not `off`, in order.
pub fn scan(text: &str, policy: &Policy) -> Vec<Finding> {
    scan_in_scope(text, policy, scope_of(policy))
}

/// [`scan`] with the policy's scope already computed (`scope == scope_of(policy)`): a
/// caller scanning many strings under one policy computes it once. Never inlined: the
/// profile's "DLP scanner itself" stage (infra/bench/stages.py) is this function.
#[inline(never)]
pub(crate) fn scan_in_scope(text: &str, policy: &Policy, scope: Scope) -> Vec<Finding> {
    apply_policy(detect_scoped(text, scope), policy)
}

const NON_SECRET_CATEGORIES: [Category; 4] = [
    Category::Financial,
    Category::NationalId,
    Category::Contact,
    Category::Network,
];

fn every_non_secret_entity_off(policy: &Policy) -> bool {
    Entity::ALL
        .iter()
        .all(|e| e.is_secret() || policy.action_for(*e) == Action::Off)
}

/// What `policy` needs detected: only secrets when every other entity is off.
pub(crate) fn scope_of(policy: &Policy) -> Scope {
    // Called once per scanned string: when no entity outside the secrets has an entry of its
    // own, the four non-secret categories decide (instead of looking up all fifty entities,
    // which cost ~6k instructions per request at the bench's request and response).
    let secrets_only = if policy.entities.keys().all(|e| e.is_secret()) {
        NON_SECRET_CATEGORIES
            .iter()
            .all(|c| policy.action_for_category(*c) == Action::Off)
    } else {
        every_non_secret_entity_off(policy)
    };
    if secrets_only {
        Scope::SecretsOnly
    } else {
        Scope::All
    }
}

/// Attach policy actions, dropping `off` entities.
pub fn apply_policy(dets: Vec<Detection>, policy: &Policy) -> Vec<Finding> {
    dets.into_iter()
        .filter_map(|d| {
            let action = policy.action_for(d.entity);
            (action != Action::Off).then_some(Finding {
                entity: d.entity,
                start: d.start,
                end: d.end,
                action,
            })
        })
        .collect()
}

#[inline]
fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

#[inline]
fn is_tokch(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

fn floor_boundary(t: &str, mut i: usize) -> usize {
    while i > 0 && !t.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn ceil_boundary(t: &str, mut i: usize) -> usize {
    while i < t.len() && !t.is_char_boundary(i) {
        i += 1;
    }
    i
}

/// Lower-cased window of up to `max` bytes before `pos`.
fn before(t: &str, pos: usize, max: usize) -> String {
    let s = ceil_boundary(t, pos.saturating_sub(max));
    t[s..pos].to_ascii_lowercase()
}

fn has_any(hay: &str, kws: &[String]) -> bool {
    kws.iter().any(|k| hay.contains(k.as_str()))
}

impl Scanner {
    /// Compile the scanner's patterns.
    pub fn new() -> Result<Self, regex::Error> {
        Ok(Scanner {
            secret_re: Pattern::new(SECRET_PATTERN)?,
            // separate automata: one regex with every literal would outgrow the SIMD
            // prefilter's literal budget and scan prose at a fraction of the speed
            keys_re: Pattern::new(&format!("(?x){}", &crate::keys::PREFIXED.trim_start()[1..]))?,
            assign_re: Pattern::new(&format!(
                "(?x){}",
                &crate::assign::TRIGGERS.trim_start()[1..]
            ))?,
            signature_re: Pattern::new(crate::keys::SIGNATURES)?,
            addr: crate::address::Addresses::new()?,
            url_cred_re: Regex::new(URL_CRED_PATTERN)?,
            email_re: Regex::new(EMAIL_PATTERN)?,
            kw: Keywords {
                my_number: kws(&[
                    "マイナンバー",
                    "個人番号",
                    "my number",
                    "mynumber",
                    "my_number",
                ]),
                corporate: kws(&[
                    "法人番号",
                    "corporate number",
                    "corporate_number",
                    "corporation number",
                    "登録番号",
                    "インボイス",
                    "invoice",
                    "事業者番号",
                ]),
                ssn: kws(&["ssn", "social security", "社会保障番号"]),
                phone: kws(&[
                    "tel",
                    "phone",
                    "電話",
                    "携帯",
                    "連絡先",
                    "call",
                    "fax",
                    "mobile",
                    "cell",
                    "contact",
                    "番号",
                ]),
                postal: kws(&["郵便番号", "〒", "postal", "zip", "post code", "postcode"]),
                card: kws(&["card", "maestro", "debit", "カード", "決済", "クレジット"]),
                ip: kws(&[
                    "ip",
                    "address",
                    "アドレス",
                    "host",
                    "server",
                    "サーバ",
                    "dns",
                    "gateway",
                    "接続元",
                    "addr",
                ]),
            },
            shortcuts: true,
        })
    }

    /// The same scanner with every shortcut off: each detector runs on every text, whatever
    /// a cheap look at it proves. For the differential tests (the detections must be the
    /// same as [`Scanner::new`]'s); slower, never needed otherwise.
    #[doc(hidden)]
    pub fn without_shortcuts() -> Result<Self, regex::Error> {
        Ok(Scanner {
            shortcuts: false,
            ..Scanner::new()?
        })
    }

    /// False when a shortcut is on and `heads` proves its regex has no match in `t`.
    fn may_match(&self, heads: &Heads, t: &str) -> bool {
        !self.shortcuts || heads.may_match(t.as_bytes())
    }

    /// Detect entities in `text`; offsets refer to `text`. Sorted by start,
    /// non-overlapping.
    pub fn detect(&self, text: &str, scope: Scope) -> Vec<Detection> {
        self.detect_depth(text, scope, 0)
    }

    fn detect_depth(&self, text: &str, scope: Scope, depth: u8) -> Vec<Detection> {
        if text.is_empty() {
            return Vec::new();
        }
        let norm = Normalized::new(text);
        let t = norm.as_str();
        let mut c: Vec<Cand> = Vec::new();
        self.secrets(t, &mut c);
        self.url_creds(t, &mut c);
        if scope == Scope::All {
            self.emails(t, &mut c);
            let mut block_numbers = Vec::new();
            self.digit_runs(t, &mut c, &mut block_numbers);
            self.addresses(t, &block_numbers, &mut c);
            ipv6(t, &mut c);
        }
        if depth < MAX_VIEW_DEPTH {
            self.base64_views(t, scope, depth, &mut c);
            self.spaced_views(t, scope, depth, &mut c);
        }
        let c = resolve_overlaps(c);
        c.into_iter()
            .filter_map(|x| {
                let start = norm.orig_start(x.s);
                let end = norm.orig_end(x.e);
                (start < end && text.is_char_boundary(start) && text.is_char_boundary(end))
                    .then_some(Detection {
                        entity: x.entity,
                        start,
                        end,
                    })
            })
            .collect()
    }

    // ---------------------------------------------------------- derived views

    /// Runs of base64 (standard or URL-safe) long enough to hold a secret, decoded; when
    /// the bytes are text, whatever is found in them is reported over the whole run.
    ///
    /// Probing every `MIN_B64`-th byte finds every run of at least that length (each such
    /// run covers a probe) while prose, whose words are short, costs about one byte test
    /// per probe.
    fn base64_views(&self, t: &str, scope: Scope, depth: u8, out: &mut Vec<Cand>) {
        let b = t.as_bytes();
        let mut i = MIN_B64 - 1;
        let mut done = 0;
        while i < b.len() {
            if !is_b64(b[i]) {
                i += MIN_B64;
                continue;
            }
            let mut s = i;
            while s > done && is_b64(b[s - 1]) {
                s -= 1;
            }
            let mut e = i + 1;
            while e < b.len() && is_b64(b[e]) {
                e += 1;
            }
            done = e;
            i = e + MIN_B64;
            if e - s < MIN_B64 {
                continue;
            }
            // a run glued to a path (`https://<base64>@host`) starts at its first
            // letter or digit
            let s = b[s..e]
                .iter()
                .position(u8::is_ascii_alphanumeric)
                .map_or(e, |k| s + k);
            if e - s < MIN_B64 {
                continue;
            }
            let Some(text) = v::b64_decode(&b[s..e]).and_then(printable_text) else {
                continue;
            };
            let mut end = e;
            while end < b.len() && b[end] == b'=' && end - e < 2 {
                end += 1;
            }
            for d in self.detect_depth(&text, scope, depth + 1) {
                out.push(Cand {
                    entity: d.entity,
                    s,
                    e: end,
                });
            }
        }
    }

    /// A value written with a space between every character (`4 1 1 1 …`, `s k - …`):
    /// the characters are joined and scanned; a finding maps back onto its characters.
    fn spaced_views(&self, t: &str, scope: Scope, depth: u8, out: &mut Vec<Cand>) {
        let b = t.as_bytes();
        // A lone character: graphic, with a space (or the text's edge) on both sides.
        let lone = |c: usize| {
            b.get(c).is_some_and(|x| x.is_ascii_graphic())
                && (c == 0 || b[c - 1] == b' ')
                && b.get(c + 1).is_none_or(|x| *x == b' ')
        };
        let stride = 2 * MIN_SPACED - 2;
        let mut i = stride;
        let mut done = 0;
        while i < b.len() {
            // a spaced run has a space two bytes from each of its spaces
            let sp = |k: usize| b.get(k) == Some(&b' ');
            if !((sp(i) & sp(i + 2)) | (sp(i + 1) & sp(i - 1))) {
                i += stride;
                continue;
            }
            let c = if b[i] == b' ' { i + 1 } else { i };
            if !lone(c) || c < done {
                i += stride;
                continue;
            }
            let mut s = c;
            while s >= 2 && lone(s - 2) {
                s -= 2;
            }
            let mut e = c;
            while lone(e + 2) {
                e += 2;
            }
            done = e + 1;
            i = e + 1 + stride;
            let n = (e - s) / 2 + 1;
            if n < MIN_SPACED {
                continue;
            }
            // The first and last characters may be glued to what surrounds the run
            // (`ID=A K I A …`, `… 4 2, exp`) or be the end of a word (`key A K I A …`):
            // both readings are scanned, and overlap resolution keeps the better one.
            let glued_l = s >= 2 && b[s - 1] == b' ' && b[s - 2].is_ascii_graphic();
            let glued_r =
                b.get(e + 1) == Some(&b' ') && b.get(e + 2).is_some_and(u8::is_ascii_graphic);
            let mut readings = vec![(s, e)];
            if glued_l || glued_r {
                let s2 = if glued_l { s - 2 } else { s };
                let e2 = if glued_r { e + 2 } else { e };
                readings.push((s2, e2));
            }
            for (s, e) in readings {
                let n = (e - s) / 2 + 1;
                let joined: String = (0..n).map(|k| char::from(b[s + 2 * k])).collect();
                for d in self.detect_depth(&joined, scope, depth + 1) {
                    out.push(Cand {
                        entity: d.entity,
                        s: s + 2 * d.start,
                        e: s + 2 * (d.end - 1) + 1,
                    });
                }
            }
        }
    }

    // ---------------------------------------------------------------- secrets

    fn secrets(&self, t: &str, out: &mut Vec<Cand>) {
        self.secrets_with(&self.secret_re, t, out);
        // the shortest key family (`glpat-` + 20) and the shortest assignment (`token:` +
        // 16) need more than this; skipping saves three regex calls (~50 ns each) on every
        // short string of a request body (roles, ids, object keys)
        if t.len() >= MIN_KEYED {
            self.secrets_with(&self.keys_re, t, out);
            self.secrets_with(&self.assign_re, t, out);
            self.signatures(t, out);
        }
    }

    fn secrets_with(&self, pat: &Pattern, t: &str, out: &mut Vec<Cand>) {
        if !self.may_match(&pat.heads, t) {
            return;
        }
        let re = &pat.re;
        let b = t.as_bytes();
        let mut pos = 0;
        while pos < t.len() {
            let Some(m) = re.find_at(t, pos) else {
                break;
            };
            let (s, e) = (m.start(), m.end());
            pos = e.max(s + 1);
            pos = ceil_boundary(t, pos);
            let mb = &b[s..e];
            let left = if s > 0 { b[s - 1] } else { b' ' };
            let right = b.get(e).copied().unwrap_or(b' ');
            if mb.starts_with(b"-----BEGIN") {
                if let Some(end) = pem_block(t, e) {
                    out.push(Cand {
                        entity: Entity::PrivateKey,
                        s,
                        e: end,
                    });
                    pos = end;
                }
                continue;
            }
            // keyword triggers
            let head = |p: &[u8]| mb.len() >= p.len() && mb[..p.len()].eq_ignore_ascii_case(p);
            let is_pw_kw = head(b"pass")
                || head(b"pwd")
                || mb.starts_with("パスワード".as_bytes())
                || mb.starts_with("暗証番号".as_bytes());
            let is_aws_kw = (head(b"secret")
                && mb.len() > 6
                && mb[mb.len() - 3..].eq_ignore_ascii_case(b"key"))
                || mb.starts_with("シークレット".as_bytes());
            if is_pw_kw && !mb.starts_with(b"pass_") {
                if let Some((vs, ve)) = password_value(t, s, e) {
                    out.push(Cand {
                        entity: Entity::Password,
                        s: vs,
                        e: ve,
                    });
                    // the value may itself be a named key (`TWINE_PASSWORD=pypi-…`):
                    // scan on from its start
                    pos = pos.max(vs);
                }
                continue;
            }
            if is_aws_kw {
                if let Some((vs, ve)) = aws_secret_after(t, e) {
                    out.push(Cand {
                        entity: Entity::AwsSecretKey,
                        s: vs,
                        e: ve,
                    });
                    pos = pos.max(ve);
                    continue;
                }
            }
            // the generic assignment rule (`api_key = …`, `Bearer …`, `curl -u …`)
            if is_aws_kw || crate::assign::is_trigger(mb) {
                if let Some((entity, vs, ve)) = crate::assign::at(b, s, e) {
                    out.push(Cand {
                        entity,
                        s: vs,
                        e: ve,
                    });
                }
                continue;
            }
            if mb[0] == b'/' {
                // a webhook path: check the host before it
                if let Some((ws, we)) = crate::keys::webhook(b, s, e) {
                    out.push(Cand {
                        entity: Entity::WebhookUrl,
                        s: url_start(b, ws),
                        e: we,
                    });
                }
                continue;
            }
            if mb.starts_with(b"-api-key-") {
                let named = s >= 7 && &b[s - 7..s] == b"bedrock" && (s == 7 || !is_tokch(b[s - 8]));
                if let Some(entity) = crate::keys::classify(mb, right).filter(|_| named) {
                    out.push(Cand {
                        entity,
                        s: s - 7,
                        e,
                    });
                }
                continue;
            }
            if is_tokch(left) {
                continue;
            }
            if crate::keys::handles(mb) {
                if let Some(entity) = crate::keys::classify(mb, right) {
                    out.push(Cand { entity, s, e });
                }
                continue;
            }
            if let Some(ent) = classify_token(mb, right) {
                out.push(Cand { entity: ent, s, e });
            }
        }
    }

    /// Key families recognised by an inner signature (`Q~`, `:A`, `JQQJ9`, `SK` + hex).
    fn signatures(&self, t: &str, out: &mut Vec<Cand>) {
        if !self.may_match(&self.signature_re.heads, t) {
            return;
        }
        let b = t.as_bytes();
        for m in self.signature_re.re.find_iter(t) {
            if let Some((entity, s, e)) =
                crate::keys::by_signature(b, m.start(), m.as_str().as_bytes())
            {
                out.push(Cand { entity, s, e });
            }
        }
    }

    fn url_creds(&self, t: &str, out: &mut Vec<Cand>) {
        // every match holds the literal `://` (outside any repetition or alternation): a
        // short text is checked at its colons, a long one (maybe full of colons, `a:a:…`) by
        // the SIMD substring search
        static SCHEME_SEP: LazyLock<memchr::memmem::Finder<'static>> =
            LazyLock::new(|| memchr::memmem::Finder::new("://"));
        let b = t.as_bytes();
        let has_sep = if b.len() <= crate::heads::MAX_CHECKED {
            memchr::memchr_iter(b':', b).any(|p| b[p + 1..].starts_with(b"//"))
        } else {
            SCHEME_SEP.find(b).is_some()
        };
        if self.shortcuts && !has_sep {
            return;
        }
        for caps in self.url_cred_re.captures_iter(t) {
            let Some(pw) = caps.get(1) else { continue };
            let val = pw.as_str().as_bytes();
            if password_placeholder(val) || val.len() < 3 {
                continue;
            }
            out.push(Cand {
                entity: Entity::UrlCredential,
                s: pw.start(),
                e: pw.end(),
            });
        }
    }

    fn emails(&self, t: &str, out: &mut Vec<Cand>) {
        let b = t.as_bytes();
        // every match holds the literal `@` (outside any repetition or alternation)
        if self.shortcuts && memchr::memchr(b'@', b).is_none() {
            return;
        }
        for m in self.email_re.find_iter(t) {
            let (mut s, e) = (m.start(), m.end());
            // local part must not start with a dot
            while s < e && b[s] == b'.' {
                s += 1;
            }
            let at = match memchr::memchr(b'@', &b[s..e]) {
                Some(i) => s + i,
                None => continue,
            };
            if at == s || b[at - 1] == b'.' {
                continue;
            }
            // userinfo of a URL (`scheme://user@host`, `scheme://user:pass@host`), never an
            // address, whatever the password looks like
            if url_userinfo(b, s) {
                continue;
            }
            if e < b.len() && (b[e] == b'@' || is_word(b[e])) {
                continue;
            }
            let tld_start = match memchr::memrchr(b'.', &b[at..e]) {
                Some(i) => at + i + 1,
                None => continue,
            };
            let tld = t[tld_start..e].to_ascii_lowercase();
            if matches!(
                tld.as_str(),
                "png" | "jpg" | "jpeg" | "gif" | "svg" | "webp" | "js" | "css" | "ts" | "py" | "rs"
            ) {
                continue;
            }
            out.push(Cand {
                entity: Entity::Email,
                s,
                e,
            });
        }
    }

    fn addresses(&self, t: &str, block_numbers: &[usize], out: &mut Vec<Cand>) {
        let mut spans = Vec::new();
        self.addr.japanese(t, block_numbers, &mut spans);
        self.addr.military(t, &mut spans);
        out.extend(spans.into_iter().map(|(s, e)| Cand {
            entity: Entity::StreetAddress,
            s,
            e,
        }));
    }

    // ------------------------------------------------------------- digit runs

    /// Digit runs and their validators; also collects the starts of digit groups that may
    /// begin a Japanese block number (for the address search).
    fn digit_runs(&self, t: &str, out: &mut Vec<Cand>, block_numbers: &mut Vec<usize>) {
        let b = t.as_bytes();
        let n = b.len();
        let mut groups: Vec<(usize, usize)> = Vec::new();
        // end of the last IBAN-shaped text (valid or not): digit groups inside it are
        // parts of an account number, never a card, My Number or phone
        let mut iban_shadow = 0;
        let mut i = 0;
        while i < n {
            match b[i..].iter().position(u8::is_ascii_digit) {
                Some(p) => i += p,
                None => break,
            }
            groups.clear();
            let mut j = i;
            loop {
                let gs = j;
                while j < n && b[j].is_ascii_digit() {
                    j += 1;
                }
                groups.push((gs, j));
                let mut k = j;
                let mut cnt = 0;
                while k < n && cnt < 2 && matches!(b[k], b' ' | b'-' | b'.' | b'(' | b')') {
                    k += 1;
                    cnt += 1;
                }
                if cnt > 0 && k < n && b[k].is_ascii_digit() {
                    j = k;
                    continue;
                }
                break;
            }
            if crate::address::is_block_number(b, groups[0].0, groups[0].1) {
                block_numbers.push(groups[0].0);
            }
            // an English house number: digits, a space, a capital letter
            if j - i <= 6
                && groups.len() == 1
                && b.get(j) == Some(&b' ')
                && b.get(j + 1).is_some_and(u8::is_ascii_uppercase)
            {
                if let Some(e) = self.addr.english_at(t, i) {
                    out.push(Cand {
                        entity: Entity::StreetAddress,
                        s: i,
                        e,
                    });
                }
            }
            let run = Run::new(t, &groups);
            if let Some(end) = self.iban(t, groups[0].0, out) {
                iban_shadow = iban_shadow.max(end);
            }
            if groups[0].0 >= iban_shadow {
                self.run_matchers(t, &run, out);
            }
            i = j;
        }
    }

    /// An IBAN starting two letters before the digit group at `g0`: compact, grouped by
    /// four, or in a national grouping, with spaces or hyphens. Reports it when the length
    /// and mod-97 check out; returns the end of the IBAN-shaped text (valid or not) so the
    /// digit groups inside an invalid one are not read as other numbers.
    fn iban(&self, t: &str, g0: usize, out: &mut Vec<Cand>) -> Option<usize> {
        let b = t.as_bytes();
        if g0 < 2 || !b[g0 - 2].is_ascii_uppercase() || !b[g0 - 1].is_ascii_uppercase() {
            return None;
        }
        let s = g0 - 2;
        if s > 0 && is_word(b[s - 1]) {
            return None;
        }
        let len = v::iban_length(&b[s..g0])?;
        let mut compact = Vec::with_capacity(len);
        let mut k = s;
        let mut last = s;
        while k < b.len() && compact.len() < len {
            let c = b[k];
            if c.is_ascii_digit() || c.is_ascii_uppercase() {
                compact.push(c);
                last = k + 1;
                k += 1;
            } else if matches!(c, b' ' | b'-')
                && compact.len() >= 4
                && b.get(k + 1)
                    .is_some_and(|x| x.is_ascii_digit() || x.is_ascii_uppercase())
            {
                k += 1;
            } else {
                break;
            }
        }
        if compact.len() < 4 || !compact[2..4].iter().all(u8::is_ascii_digit) {
            return None;
        }
        let shaped = (compact.len() >= 12).then_some(last);
        if compact.len() != len || (last < b.len() && is_word(b[last])) {
            return shaped;
        }
        if v::iban_mod97(&compact) {
            out.push(Cand {
                entity: Entity::Iban,
                s,
                e: last,
            });
        }
        shaped
    }

    fn run_matchers(&self, t: &str, run: &Run<'_>, out: &mut Vec<Cand>) {
        let b = t.as_bytes();
        // corporate number written as an invoice registration number: T + 13 digits
        if run.left_char == Some(b'T') && run.lead.is_none() {
            let ts = run.groups[0].0 - 1;
            let clean_before = ts == 0 || !is_word(b[ts - 1]);
            let (gs, ge) = run.groups[0];
            if clean_before
                && ge - gs == 13
                && run.end_ok(0)
                && !run.right_bad
                && v::corporate_number_ok(&b[gs..ge])
            {
                out.push(Cand {
                    entity: Entity::JpCorporateNumber,
                    s: gs,
                    e: ge,
                });
            }
            return;
        }
        let len = run.groups.len();
        // allocated at the first validator that reads the digits (most runs have none)
        let mut digits: Vec<u8> = Vec::new();
        for gi in 0..len {
            // a run glued to a word on the left (hex ids, UUIDs) may still hold a
            // value after a space, never in its first group
            if !run.start_ok(gi) || (gi == 0 && run.left_bad) {
                continue;
            }
            let ctx = Ctx {
                t,
                pos: run.span_start(gi),
                lower: std::cell::OnceCell::new(),
            };
            self.card(run, gi, &ctx, &mut digits, out);
            self.ssn(run, gi, &ctx, &mut digits, out);
            self.my_number(run, gi, &ctx, &mut digits, out);
            self.corporate(run, gi, &ctx, &mut digits, out);
            self.postal(t, run, gi, &ctx, out);
            self.phone(run, gi, &ctx, &mut digits, out);
            self.ipv4(run, gi, &ctx, out);
        }
    }

    fn card(&self, run: &Run<'_>, gi: usize, ctx: &Ctx<'_>, d: &mut Vec<u8>, out: &mut Vec<Cand>) {
        let first_len = run.glen(gi);
        let mut total = 0;
        let mut sep_kind: Option<&str> = None;
        let mut best = None;
        for gj in gi..run.groups.len() {
            let gl = run.glen(gj);
            total += gl;
            if total > 19 {
                break;
            }
            if gj > gi {
                let sep = run.sep(gj - 1);
                if !matches!(sep, " " | "-" | ".")
                    || sep_kind.is_some_and(|k| k != sep)
                    || first_len != 4
                    || !(3..=6).contains(&gl)
                {
                    break;
                }
                sep_kind = Some(sep);
            }
            // 12 digits are a Maestro card (ISO/IEC 7812 allows it) only with a card
            // word nearby: alone they read as a My Number or an order number
            let long_enough = total >= 13 || (total == 12 && ctx.has(&self.kw.card));
            if long_enough && run.end_ok(gj) {
                run.digits(gi, gj, d);
                if v::luhn(d) && v::card_brand_ok(d) {
                    best = Some(gj);
                }
            }
        }
        if let Some(gj) = best {
            out.push(Cand {
                entity: Entity::CreditCard,
                s: run.groups[gi].0,
                e: run.groups[gj].1,
            });
        }
    }

    fn ssn(&self, run: &Run<'_>, gi: usize, ctx: &Ctx<'_>, d: &mut Vec<u8>, out: &mut Vec<Cand>) {
        if run.shape(gi, &[3, 2, 4], &["-", " ", "."]) {
            run.digits(gi, gi + 2, d);
            if v::ssn_ok(d) {
                out.push(run.cand(Entity::UsSsn, gi, gi + 2, false));
            }
        } else if run.glen(gi) == 9 && run.end_ok(gi) && ctx.has(&self.kw.ssn) {
            run.digits(gi, gi, d);
            if v::ssn_ok(d) {
                out.push(run.cand(Entity::UsSsn, gi, gi, false));
            }
        }
    }

    fn my_number(
        &self,
        run: &Run<'_>,
        gi: usize,
        ctx: &Ctx<'_>,
        d: &mut Vec<u8>,
        out: &mut Vec<Cand>,
    ) {
        if run.shape(gi, &[4, 4, 4], &["-", " "]) {
            // 4-4-4 alone is as often an order or tracking number with a lucky check
            // digit (one in eleven): a context word is needed, as for 12 bare digits
            run.digits(gi, gi + 2, d);
            if v::my_number_ok(d) && ctx.has(&self.kw.my_number) {
                out.push(run.cand(Entity::JpMyNumber, gi, gi + 2, false));
            }
        } else if run.glen(gi) == 12 && run.end_ok(gi) && ctx.has(&self.kw.my_number) {
            run.digits(gi, gi, d);
            if v::my_number_ok(d) {
                out.push(run.cand(Entity::JpMyNumber, gi, gi, false));
            }
        }
    }

    fn corporate(
        &self,
        run: &Run<'_>,
        gi: usize,
        ctx: &Ctx<'_>,
        d: &mut Vec<u8>,
        out: &mut Vec<Cand>,
    ) {
        let shaped = run.shape(gi, &[1, 4, 4, 4], &["-", " "]);
        if !(shaped || run.glen(gi) == 13) || !ctx.has(&self.kw.corporate) {
            return;
        }
        if shaped {
            run.digits(gi, gi + 3, d);
            if v::corporate_number_ok(d) {
                out.push(run.cand(Entity::JpCorporateNumber, gi, gi + 3, false));
            }
        } else if run.glen(gi) == 13 && run.end_ok(gi) {
            run.digits(gi, gi, d);
            if v::corporate_number_ok(d) {
                out.push(run.cand(Entity::JpCorporateNumber, gi, gi, false));
            }
        }
    }

    fn postal(&self, t: &str, run: &Run<'_>, gi: usize, ctx: &Ctx<'_>, out: &mut Vec<Cand>) {
        let shaped = run.shape(gi, &[3, 4], &["-", " "]);
        let bare = run.glen(gi) == 7 && run.end_ok(gi);
        if !(shaped || bare) {
            return;
        }
        // 〒 right before (spaces allowed), or 郵便番号 / postal code shortly before
        let near = before(t, run.groups[gi].0, 24);
        let mark = near
            .trim_end()
            .trim_end_matches(':')
            .trim_end()
            .ends_with('〒');
        let _ = ctx;
        if !(mark || has_any(&near, &self.kw.postal)) {
            return;
        }
        let gj = if shaped { gi + 1 } else { gi };
        out.push(run.cand(Entity::JpPostalCode, gi, gj, false));
    }

    fn phone(&self, run: &Run<'_>, gi: usize, ctx: &Ctx<'_>, d: &mut Vec<u8>, out: &mut Vec<Cand>) {
        let b = run.t.as_bytes();
        let len = run.groups.len();
        // E.164: '+' lead
        if gi == 0 && run.lead == Some(b'+') {
            let mut total = 0;
            let mut best = None;
            for gj in 0..len {
                total += run.glen(gj);
                if total > 15 {
                    break;
                }
                if total >= 8 && run.end_ok(gj) {
                    run.digits(0, gj, d);
                    let ok = match d[0] {
                        b'0' => false,
                        b'1' => d.len() == 11 && v::nanp_ok(&d[1..]),
                        b'8' if d[1] == b'1' => {
                            (11..=12).contains(&d.len()) && d[2] != b'0'
                                || (12..=13).contains(&d.len()) && d[2] == b'0'
                        }
                        _ => true,
                    };
                    if ok {
                        best = Some(gj);
                    }
                }
            }
            if let Some(gj) = best {
                out.push(run.cand(Entity::Phone, 0, gj, true));
            }
            return;
        }
        let first = &b[run.groups[gi].0..run.groups[gi].1];
        // a bare number in a sentence about a social security number is not a phone
        // (`社会保障番号` holds `番号`, a phone context word); the sentence is read further
        // back (96 bytes) for the SSN than for the phone word
        let context = || {
            ctx.has(&self.kw.phone)
                && !has_any(&before(run.t, run.span_start(gi), 96), &self.kw.ssn)
        };
        // Japanese domestic numbers start with a trunk 0
        if first[0] == b'0' && first.len() >= 2 && first[1] != b'0' {
            let mobile_like = |d: &[u8]| {
                d.len() == 11
                    && (matches!(&d[..3], b"070" | b"080" | b"090" | b"050" | b"020")
                        || d.starts_with(b"0800"))
            };
            let landline_like = |d: &[u8]| {
                d.len() == 10 && !matches!(&d[..3], b"070" | b"080" | b"090" | b"050" | b"020")
            };
            // three groups
            if gi + 2 < len {
                let (l1, l2, l3) = (run.glen(gi), run.glen(gi + 1), run.glen(gi + 2));
                let seps_ok = [run.sep(gi), run.sep(gi + 1)]
                    .iter()
                    .all(|s| matches!(*s, "-" | " " | "(" | ")" | ") " | "."));
                if seps_ok
                    && (2..=5).contains(&l1)
                    && (1..=4).contains(&l2)
                    && (3..=4).contains(&l3)
                    && run.end_ok(gi + 2)
                {
                    run.digits(gi, gi + 2, d);
                    if mobile_like(d) || landline_like(d) {
                        out.push(run.cand(Entity::Phone, gi, gi + 2, true));
                        return;
                    }
                }
            }
            if run.end_ok(gi) && (mobile_like(first) || (landline_like(first) && context())) {
                out.push(run.cand(Entity::Phone, gi, gi, true));
            }
            return;
        }
        // US / NANP
        let mut g = gi;
        let mut country = false;
        if run.glen(gi) == 1
            && first[0] == b'1'
            && gi + 3 < len
            && matches!(run.sep(gi), "-" | " " | "." | " (")
        {
            g = gi + 1;
            country = true;
        }
        if g + 2 < len && run.glen(g) == 3 && run.glen(g + 1) == 3 && run.glen(g + 2) == 4 {
            let (s1, s2) = (run.sep(g), run.sep(g + 1));
            let open_before = g > 0 && run.sep(g - 1).ends_with('(');
            let paren = !country && ((g == 0 && run.lead == Some(b'(')) || open_before);
            let ok = (s1 == s2 && matches!(s1, "-" | "." | " "))
                || (paren && matches!(s1, ")" | ") ") && matches!(s2, "-" | " "));
            if ok && run.end_ok(g + 2) {
                run.digits(g, g + 2, d);
                if v::nanp_ok(d) {
                    let mut c = run.cand(Entity::Phone, gi, g + 2, true);
                    if open_before && paren {
                        c.s -= 1;
                    }
                    out.push(c);
                }
            }
        } else if run.glen(gi) == 10 && run.end_ok(gi) && context() {
            run.digits(gi, gi, d);
            if v::nanp_ok(d) {
                out.push(run.cand(Entity::Phone, gi, gi, true));
            }
        }
    }

    fn ipv4(&self, run: &Run<'_>, gi: usize, ctx: &Ctx<'_>, out: &mut Vec<Cand>) {
        let b = run.t.as_bytes();
        // `10.0.0.5@eth0`, `10.0.0.5@22`: an address may be followed by `@`
        let at_after = gi + 4 == run.groups.len() && b.get(run.groups[gi + 3].1) == Some(&b'@');
        if gi + 3 >= run.groups.len() || !(run.end_ok(gi + 3) || at_after) {
            return;
        }
        let mut oct = [0u8; 4];
        let mut single = true;
        for (k, o) in oct.iter_mut().enumerate() {
            let (s, e) = run.groups[gi + k];
            if k < 3 && run.sep(gi + k) != "." {
                return;
            }
            if e - s > 3 || (e - s > 1 && b[s] == b'0') {
                return;
            }
            let val = b[s..e]
                .iter()
                .fold(0u32, |a, x| a * 10 + u32::from(x - b'0'));
            if val > 255 {
                return;
            }
            single &= e - s == 1;
            *o = val as u8;
        }
        // a following ".5" or preceding "1." makes it a version string
        let (s0, _) = run.groups[gi];
        let (_, e3) = run.groups[gi + 3];
        if (gi > 0 && run.sep(gi - 1).starts_with('.'))
            || (gi + 4 < run.groups.len() && run.sep(gi + 3).starts_with('.'))
        {
            return;
        }
        let near = before(run.t, s0, 24);
        if version_context(&near) {
            return;
        }
        if single && !ctx.has(&self.kw.ip) {
            return;
        }
        if !v::ipv4_reportable(oct) {
            return;
        }
        out.push(Cand {
            entity: Entity::IpAddress,
            s: s0,
            e: e3,
        });
    }
}

/// Lazily computed lower-cased context window before a candidate.
struct Ctx<'t> {
    t: &'t str,
    pos: usize,
    lower: std::cell::OnceCell<String>,
}

impl Ctx<'_> {
    fn has(&self, kws: &[String]) -> bool {
        has_any(self.lower.get_or_init(|| before(self.t, self.pos, 48)), kws)
    }
}

/// A run of digit groups separated by short separators.
struct Run<'a> {
    t: &'a str,
    groups: &'a [(usize, usize)],
    lead: Option<u8>,
    left_char: Option<u8>,
    left_bad: bool,
    right_bad: bool,
}

impl<'a> Run<'a> {
    fn new(t: &'a str, groups: &'a [(usize, usize)]) -> Self {
        let b = t.as_bytes();
        let g0 = groups[0].0;
        let lead = (g0 > 0 && matches!(b[g0 - 1], b'+' | b'(')).then(|| b[g0 - 1]);
        let ls = if lead.is_some() { g0 - 1 } else { g0 };
        let left_char = (ls > 0).then(|| b[ls - 1]);
        let left_bad = match left_char {
            None => false,
            Some(c) if is_word(c) => !glued_keyword(&b[..ls]),
            Some(b'-' | b'/' | b'.' | b'+' | b'#') if ls >= 2 => {
                b[ls - 2].is_ascii_alphanumeric()
                    && !(b[ls - 1] == b'.' && b[ls - 2].is_ascii_alphabetic())
            }
            _ => false,
        };
        let end = groups[groups.len() - 1].1;
        let right_bad = match b.get(end) {
            None => false,
            Some(c) if is_word(*c) => true,
            Some(b'-' | b'.' | b'/' | b'@') => {
                b.get(end + 1).is_some_and(|c| c.is_ascii_alphanumeric())
            }
            _ => false,
        };
        Run {
            t,
            groups,
            lead,
            left_char,
            left_bad,
            right_bad,
        }
    }

    fn glen(&self, i: usize) -> usize {
        self.groups[i].1 - self.groups[i].0
    }

    fn sep(&self, i: usize) -> &'a str {
        &self.t[self.groups[i].1..self.groups[i + 1].0]
    }

    /// A match may start at group `i` when it is the first group or the
    /// separator before it contains a space.
    fn start_ok(&self, i: usize) -> bool {
        i == 0 || self.sep(i - 1).contains(' ')
    }

    /// A match may end at group `j` when it is the last group or the separator
    /// after it contains a space.
    fn end_ok(&self, j: usize) -> bool {
        if j + 1 == self.groups.len() {
            !self.right_bad
        } else {
            self.sep(j).contains(' ')
        }
    }

    fn span_start(&self, gi: usize) -> usize {
        if gi == 0 && self.lead.is_some() {
            self.groups[0].0 - 1
        } else {
            self.groups[gi].0
        }
    }

    fn digits(&self, gi: usize, gj: usize, d: &mut Vec<u8>) {
        d.clear();
        // one allocation for the longest number read (19 digits and a margin)
        d.reserve(24);
        let b = self.t.as_bytes();
        for k in gi..=gj {
            d.extend_from_slice(&b[self.groups[k].0..self.groups[k].1]);
        }
    }

    /// Groups starting at `gi` have exactly the given lengths, the separators
    /// between them are identical and one of `seps`, and the match may end there.
    fn shape(&self, gi: usize, lens: &[usize], seps: &[&str]) -> bool {
        let n = lens.len();
        if gi + n > self.groups.len() {
            return false;
        }
        if !lens
            .iter()
            .enumerate()
            .all(|(k, l)| self.glen(gi + k) == *l)
        {
            return false;
        }
        if n > 1 {
            let s0 = self.sep(gi);
            if !seps.contains(&s0) || !(1..n - 1).all(|k| self.sep(gi + k) == s0) {
                return false;
            }
        }
        self.end_ok(gi + n - 1)
    }

    fn cand(&self, entity: Entity, gi: usize, gj: usize, with_lead: bool) -> Cand {
        let s = if with_lead {
            self.span_start(gi)
        } else {
            self.groups[gi].0
        };
        Cand {
            entity,
            s,
            e: self.groups[gj].1,
        }
    }
}

// -------------------------------------------------------------------- helpers

/// True when `before` ends with a label that people glue to a number
/// (`SSN123-45-6789`, `TEL03-1234-5678`, `IP10.0.0.1`), itself not glued to a word.
fn glued_keyword(before: &[u8]) -> bool {
    let mut k = before.len();
    while k > 0 && before[k - 1].is_ascii_alphabetic() {
        k -= 1;
    }
    if k > 0 && is_word(before[k - 1]) {
        return false;
    }
    let word = before[k..].to_ascii_lowercase();
    matches!(
        word.as_slice(),
        b"ssn"
            | b"tel"
            | b"fax"
            | b"phone"
            | b"mobile"
            | b"no"
            | b"ip"
            | b"iban"
            | b"pin"
            | b"zip"
            | b"card"
    )
}

fn classify_token(tok: &[u8], right: u8) -> Option<Entity> {
    let fixed_end_ok = !right.is_ascii_alphanumeric();
    if tok.starts_with(b"tgk_") {
        return (fixed_end_ok && v::tollgate_key_ok(tok)).then_some(Entity::TollgateKey);
    }
    if tok.starts_with(b"sk-ant-") {
        let rest = &tok[7..];
        let body = ["api03-", "admin01-", "oat01-"]
            .iter()
            .find_map(|p| rest.strip_prefix(p.as_bytes()))?;
        return token_body_ok(body, 32, true).then_some(Entity::AnthropicKey);
    }
    if tok.starts_with(b"sk-") {
        let rest = &tok[3..];
        let body = ["proj-", "svcacct-", "admin-"]
            .iter()
            .find_map(|p| rest.strip_prefix(p.as_bytes()))
            .unwrap_or(rest);
        return token_body_ok(body, 20, true).then_some(Entity::OpenaiKey);
    }
    if tok.starts_with(b"sk_") || tok.starts_with(b"rk_") {
        let body = &tok[8..];
        return (body.len() >= 20 && token_body_ok(body, 20, false)).then_some(Entity::StripeKey);
    }
    if [&b"AKIA"[..], b"ASIA", b"ABIA", b"ACCA", b"A3T"]
        .iter()
        .any(|p| tok.starts_with(p))
    {
        let body = &tok[4..];
        let base32 = body
            .iter()
            .all(|c| c.is_ascii_uppercase() || (b'2'..=b'7').contains(c));
        return (fixed_end_ok && base32 && !v::looks_placeholder(body) && v::entropy(body) >= 2.5)
            .then_some(Entity::AwsAccessKey);
    }
    if tok.starts_with(b"AIza") {
        let ok = !is_tokch(right) && token_body_ok(&tok[4..], 30, false);
        return ok.then_some(Entity::GoogleApiKey);
    }
    if tok.starts_with(b"github_pat_") {
        return token_body_ok(&tok[11..], 40, false).then_some(Entity::GithubToken);
    }
    if tok.starts_with(b"gh") {
        return (fixed_end_ok && v::github_token_ok(tok)).then_some(Entity::GithubToken);
    }
    if tok.starts_with(b"xox") || tok.starts_with(b"xapp-") {
        let body = &tok[5..];
        let digits = body.iter().filter(|c| c.is_ascii_digit()).count();
        let segs = body.split(|c| *c == b'-').filter(|s| !s.is_empty()).count();
        let last_seg = body.rsplit(|c| *c == b'-').next().unwrap_or(body);
        let ok = body.len() >= 20
            && digits >= 6
            && segs >= 2
            && last_seg.len() >= 8
            && !v::looks_placeholder(last_seg)
            && v::entropy(body) >= 3.0;
        return ok.then_some(Entity::SlackToken);
    }
    if tok.starts_with(b"eyJ") || tok.starts_with(b"ew") || tok.starts_with(b"eyAi") {
        // `eyJ…` compact header, `ewog…` / `ew0K…` / `eyAi…` pretty-printed JSON header
        let mut parts = tok.split(|c| *c == b'.');
        let header = parts.next()?;
        let payload = parts.next()?;
        let signed = parts.next().is_some();
        let payload_ok = match v::b64_decode(payload) {
            // an unsigned two-segment token must carry a JSON object payload
            Some(raw) if !signed => {
                serde_json::from_slice::<serde_json::Value>(&raw).is_ok_and(|p| p.is_object())
            }
            Some(_) => payload.len() >= 2,
            None => false,
        };
        return (payload_ok && v::jwt_header_ok(header)).then_some(Entity::Jwt);
    }
    None
}

/// Random-looking key body: long enough, not a placeholder, high entropy, mixed
/// character classes.
fn token_body_ok(body: &[u8], min_len: usize, need_upper_lower_digit: bool) -> bool {
    if body.len() < min_len || v::looks_placeholder(body) {
        return false;
    }
    let alnum: Vec<u8> = body
        .iter()
        .copied()
        .filter(u8::is_ascii_alphanumeric)
        .collect();
    let (lo, up, dg, _) = v::classes(&alnum);
    let classes_ok = if need_upper_lower_digit {
        lo && up && dg
    } else {
        usize::from(lo) + usize::from(up) + usize::from(dg) >= 2
    };
    classes_ok && v::entropy(body) >= 3.5
}

/// Span of a PEM private key block that starts at `s` (header ends at `e`).
fn pem_block(t: &str, e: usize) -> Option<usize> {
    let b = t.as_bytes();
    let limit = (e + 65_536).min(b.len());
    let body_end;
    let block_end;
    if let Some(i) = memchr::memmem::find(&b[e..limit], b"-----END") {
        body_end = e + i;
        let after = body_end + 8;
        let close = memchr::memmem::find(&b[after..limit.max(after)], b"-----")
            .map(|k| after + k + 5)
            .filter(|x| *x - after <= 48)
            .unwrap_or(after);
        block_end = close;
    } else {
        let mut k = e;
        while k < b.len() && k < limit {
            let c = b[k];
            if c.is_ascii_alphanumeric()
                || matches!(
                    c,
                    b'+' | b'/' | b'=' | b' ' | b'\n' | b'\r' | b'\t' | b':' | b',' | b'-'
                )
            {
                k += 1;
            } else {
                break;
            }
        }
        body_end = k;
        block_end = k;
    }
    let b64 = b[e..body_end]
        .iter()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'/'))
        .count();
    (b64 >= 40 && !v::looks_placeholder_words(&b[e..body_end])).then_some(block_end)
}

/// Value of a `password = value` style assignment following the keyword at
/// `ks..ke`. Returns the value span.
fn password_value(t: &str, ks: usize, ke: usize) -> Option<(usize, usize)> {
    let b = t.as_bytes();
    let ascii_kw = b[ks].is_ascii();
    if ascii_kw {
        // keyword must not be glued to a following identifier char
        if b.get(ke).is_some_and(|c| is_word(*c)) {
            return None;
        }
        // "pass"/"pwd" need a clean left edge; "password" may be a suffix
        // (db_password, userPassword)
        let kw_len = ke - ks;
        if kw_len <= 4 && ks > 0 && b[ks - 1].is_ascii_alphabetic() {
            return None;
        }
    }
    let mut k = ke;
    // closing quote of a JSON / dict key
    if matches!(b.get(k), Some(b'"' | b'\'')) {
        k += 1;
    }
    let skip_ws = |mut k: usize| {
        let mut n = 0;
        while k < b.len() && matches!(b[k], b' ' | b'\t') && n < 4 {
            k += 1;
            n += 1;
        }
        k
    };
    k = skip_ws(k);
    let natural;
    let mut xml = false;
    if k < b.len() && (b[k] == b':' || b[k] == b'=') {
        k += 1;
        if k < b.len() && matches!(b[k], b'=' | b'>') {
            k += 1;
        }
        natural = false;
    } else if k == ke
        && b.get(k) == Some(&b'>')
        && ks > 0
        && b[ks - 1] == b'<'
        && memchr::memmem::find(&b[k..(k + 140).min(b.len())], b"</").is_some()
    {
        // XML element `<password>value</password>`
        k += 1;
        xml = true;
        natural = false;
    } else if t[k..].starts_with("は") {
        k += "は".len();
        natural = true;
    } else if ascii_kw && k > ke && (t[k..].starts_with("is ") || t[k..].starts_with("was ")) {
        k += if b[k] == b'i' { 3 } else { 4 };
        natural = true;
    } else {
        return None;
    }
    k = skip_ws(k);
    // optional opening quote
    let (close, vs): (Option<&str>, usize) = if let Some(q) = ["\"", "'", "`", "「", "『", "“"]
        .iter()
        .find(|q| t[k..].starts_with(**q))
    {
        let c = match *q {
            "「" => "」",
            "『" => "』",
            "“" => "”",
            other => other,
        };
        (Some(c), k + q.len())
    } else {
        (None, k)
    };
    let mut ve = vs;
    match close {
        Some(c) => {
            let limit = (vs + 129).min(b.len());
            let lim = floor_boundary(t, limit);
            let i = t[vs..lim].find(c)?;
            ve = vs + i;
            if t[vs..ve].contains('\n') {
                return None;
            }
        }
        None => {
            while ve < b.len() && ve - vs < 128 && b[ve].is_ascii_graphic() {
                let c = b[ve];
                if matches!(c, b'"' | b'\'' | b',' | b'`') {
                    break;
                }
                // `<` ends the value at a closing tag (`</password>`), `>` at the end of a tag
                // or of the value; inside a value both are characters like any other
                let next = b.get(ve + 1).copied().unwrap_or(b' ');
                if (c == b'<' && next == b'/')
                    || (c == b'>' && !next.is_ascii_graphic() && b[vs] != b'<')
                {
                    break;
                }
                // `;` / `&` end the value in connection strings and query strings
                if matches!(c, b';' | b'&') && next_is_assignment(&b[ve + 1..]) {
                    break;
                }
                ve += 1;
            }
            // drop unbalanced closing brackets at the end: func(password=abc123)
            loop {
                let val = &b[vs..ve];
                let Some(&last) = val.last() else { break };
                let open = match last {
                    b')' => b'(',
                    b']' => b'[',
                    b'}' => b'{',
                    b';' | b'&' => {
                        ve -= 1;
                        continue;
                    }
                    _ => break,
                };
                let opens = val.iter().filter(|c| **c == open).count();
                let closes = val.iter().filter(|c| **c == last).count();
                if closes > opens {
                    ve -= 1;
                } else {
                    break;
                }
            }
            if natural {
                // a trailing `!` is kept: people end passwords with one (`Summer2024!`)
                while ve > vs && matches!(b[ve - 1], b'.' | b',' | b'?' | b':') {
                    ve -= 1;
                }
            }
        }
    }
    if xml && !b[ve..].starts_with(b"</") {
        return None;
    }
    let val = &b[vs..ve];
    if val.len() < 6 || val.len() > 128 || password_placeholder(val) {
        return None;
    }
    let classes = v::class_count(val);
    let strong = if natural {
        let (lo, up, dg, _) = v::classes(val);
        (lo || up) && dg || classes >= 3
    } else {
        classes >= 2 || val.len() >= 16
    };
    strong.then_some((vs, ve))
}

/// Start of the URL a host-anchored match at `s` belongs to: back over the host's
/// labels (`tenant.webhook.office.com`) and a `https://` / `http://` scheme.
fn url_start(b: &[u8], s: usize) -> usize {
    let mut k = s;
    while k > 0 && (b[k - 1].is_ascii_alphanumeric() || matches!(b[k - 1], b'.' | b'-')) {
        k -= 1;
    }
    for scheme in [&b"https://"[..], b"http://"] {
        if k >= scheme.len() && b[k - scheme.len()..k].eq_ignore_ascii_case(scheme) {
            return k - scheme.len();
        }
    }
    k
}

/// True when the e-mail-shaped candidate starting at `s` is the userinfo of a URL: going
/// back over userinfo characters (no space, `/`, `@`, quote or bracket) reaches `://`.
fn url_userinfo(b: &[u8], s: usize) -> bool {
    let mut k = s;
    let floor = s.saturating_sub(256);
    while k > floor
        && !b[k - 1].is_ascii_whitespace()
        && !matches!(
            b[k - 1],
            b'/' | b'@' | b'"' | b'\'' | b'<' | b'>' | b'(' | b')' | b'[' | b']' | b','
        )
    {
        k -= 1;
    }
    k >= 3 && &b[k - 3..k] == b"://"
}

fn next_is_assignment(rest: &[u8]) -> bool {
    let mut k = 0;
    while k < rest.len()
        && (rest[k].is_ascii_alphanumeric() || matches!(rest[k], b'_' | b' ' | b'-'))
    {
        k += 1;
    }
    // `&word` at the very end of the value is part of it (`!@67&EztyY`)
    k < rest.len() && (rest[k] == b'=' || rest[k].is_ascii_whitespace())
}

fn password_placeholder(val: &[u8]) -> bool {
    crate::secret_value::is_placeholder(val)
}

/// A 40-char AWS secret access key within 80 bytes after a `secret key` keyword.
fn aws_secret_after(t: &str, ke: usize) -> Option<(usize, usize)> {
    let b = t.as_bytes();
    let limit = (ke + 80).min(b.len());
    let aws_ch = |c: u8| c.is_ascii_alphanumeric() || c == b'/' || c == b'+';
    let mut k = ke;
    while k < limit {
        if !aws_ch(b[k]) {
            k += 1;
            continue;
        }
        let s = k;
        while k < b.len() && aws_ch(b[k]) {
            k += 1;
        }
        let tok = &b[s..k];
        let boundary = b.get(k) != Some(&b'=');
        if tok.len() == 40 && boundary {
            let (lo, up, dg, _) = v::classes(tok);
            let mixed = lo && up && (dg || tok.iter().any(|c| *c == b'/' || *c == b'+'));
            if mixed && v::entropy(tok) >= 4.0 && !v::looks_placeholder(tok) {
                return Some((s, k));
            }
        }
    }
    None
}

fn ipv6(t: &str, out: &mut Vec<Cand>) {
    let b = t.as_bytes();
    let hexish = |c: u8| c.is_ascii_hexdigit() || c == b':' || c == b'.';
    let mut next_free = 0;
    for p in memchr::memchr_iter(b':', b) {
        if p < next_free {
            continue;
        }
        let mut s = p;
        while s > 0 && hexish(b[s - 1]) {
            s -= 1;
        }
        let mut e = p + 1;
        while e < b.len() && hexish(b[e]) {
            e += 1;
        }
        next_free = e;
        // trim trailing punctuation
        while e > s
            && matches!(b[e - 1], b'.' | b':')
            && !(e >= 2 && b[e - 2] == b':' && b[e - 1] == b':')
        {
            e -= 1;
        }
        while s < e && b[s] == b'.' {
            s += 1;
        }
        // a label colon glued in front ("server:fe80::1") is not part of the address
        if s + 1 < e && b[s] == b':' && b[s + 1] != b':' {
            s += 1;
        }
        if s > 0 && is_word(b[s - 1]) {
            continue;
        }
        if next_free < b.len() && is_word(b[next_free]) {
            continue;
        }
        let cand = &t[s..e];
        if cand.len() < 6 {
            continue;
        }
        let Ok(addr) = cand.parse::<Ipv6Addr>() else {
            continue;
        };
        let segs = addr.segments();
        let groups: Vec<&str> = cand.split(':').filter(|g| !g.is_empty()).collect();
        let first_len = groups.first().map_or(0, |g| g.len());
        let plausible = groups.len() >= 3 || (cand.contains("::") && first_len >= 3);
        let doc = segs[0] == 0x2001 && segs[1] == 0x0db8;
        let special = addr.is_unspecified() || addr.is_loopback();
        let all_short_decimal = groups
            .iter()
            .all(|g| g.len() <= 2 && g.bytes().all(|c| c.is_ascii_digit()));
        if plausible && !doc && !special && !all_short_decimal {
            out.push(Cand {
                entity: Entity::IpAddress,
                s,
                e,
            });
        }
    }
}

/// Keep the best of overlapping candidates: higher category priority, then
/// longer span, then earlier start.
fn version_context(near: &str) -> bool {
    if [
        "version",
        "バージョン",
        "release",
        "firmware",
        "section",
        "§",
        "chrome/",
        "firefox/",
        "safari/",
    ]
    .iter()
    .any(|k| near.contains(k))
    {
        return true;
    }
    let last_word = near
        .trim_end()
        .rsplit(|c: char| !c.is_ascii_alphanumeric() && c != '.')
        .next()
        .unwrap_or("");
    matches!(
        last_word,
        "v" | "v." | "ver" | "ver." | "rev" | "rev." | "build" | "vers" | "ios" | "android"
    )
}

fn resolve_overlaps(mut c: Vec<Cand>) -> Vec<Cand> {
    c.sort_by(|a, b| a.s.cmp(&b.s).then(b.e.cmp(&a.e)));
    let mut kept: Vec<Cand> = Vec::with_capacity(c.len());
    for x in c {
        if x.s >= x.e {
            continue;
        }
        let mut dominated = false;
        while let Some(last) = kept.last().copied() {
            if x.s >= last.e {
                break;
            }
            let contains = x.s <= last.s && x.e >= last.e;
            let contained = last.s <= x.s && last.e >= x.e;
            // a named key family beats a password, which beats the generic assignment
            // rule, over the same value (`TWINE_PASSWORD=pypi-…`, `api_key = "ghp_…"`)
            let named = |e: Entity| match e {
                Entity::GenericSecret => 0,
                Entity::Password | Entity::UrlCredential => 1,
                _ => 2,
            };
            let better = if x.entity.is_secret() != last.entity.is_secret() {
                x.entity.is_secret()
            } else if x.entity.is_secret() && named(x.entity) != named(last.entity) {
                named(x.entity) > named(last.entity)
            } else if contains != contained {
                contains
            } else {
                (x.entity.priority(), x.e - x.s) > (last.entity.priority(), last.e - last.s)
            };
            if better {
                kept.pop();
            } else {
                dominated = true;
                break;
            }
        }
        if !dominated {
            kept.push(x);
        }
    }
    kept
}

#[cfg(test)]
mod shortcut_tests {
    use super::*;

    #[test]
    fn every_literal_prefixed_pattern_has_heads() {
        // the shortcut is what keeps short strings cheap: a pattern change that loses it
        // (a branch starting with a wide class) should be a conscious one
        let s = Scanner::new().unwrap();
        for p in [&s.secret_re, &s.keys_re, &s.assign_re, &s.signature_re] {
            assert!(p.heads.is_active(), "{:?}", p.re);
        }
    }

    #[test]
    fn heads_never_reject_a_text_their_regex_matches() {
        let s = Scanner::new().unwrap();
        // a PEM header alone (no key material), built here rather than written out
        let pem_header = format!("-----BEGIN {} PRIVATE KEY-----", "EC");
        let texts = [
            "my password is x",
            "PWD=",
            "パスワード：",
            "Secret Access Key",
            pem_header.as_str(),
            "api_key = 'x'",
            "tok Q~ here",
            "bot 123456789:AAE",
        ];
        for t in texts {
            for p in [&s.secret_re, &s.keys_re, &s.assign_re, &s.signature_re] {
                assert!(!p.re.is_match(t) || p.heads.may_match(t.as_bytes()), "{t}");
            }
        }
    }
}

#[cfg(test)]
mod scope_tests {
    use super::*;

    #[test]
    fn every_entity_is_a_secret_or_in_a_listed_category() {
        for e in Entity::ALL {
            assert!(
                e.is_secret() || NON_SECRET_CATEGORIES.contains(&e.category()),
                "{e:?}: its category must be in NON_SECRET_CATEGORIES"
            );
        }
    }

    #[test]
    fn the_category_shortcut_agrees_with_every_entity_for_every_category_policy() {
        let actions = [Action::Off, Action::Log, Action::Redact, Action::Block];
        let cats = [
            Category::Secret,
            Category::Financial,
            Category::NationalId,
            Category::Contact,
            Category::Network,
        ];
        // Each category unset or set to one of the four actions: 5^5 policies.
        for n in 0..5usize.pow(5) {
            let mut p = Policy::default();
            let mut k = n;
            for c in cats {
                if k % 5 > 0 {
                    p = p.with_category(c, actions[k % 5 - 1]);
                }
                k /= 5;
            }
            let slow = every_non_secret_entity_off(&p);
            assert_eq!(scope_of(&p) == Scope::SecretsOnly, slow, "{p:?}");
        }
        // Secret entity entries do not change the scope; any other entity entry makes the
        // full check decide.
        let p = Policy::default()
            .with_entity(Entity::Password, Action::Redact)
            .with_category(Category::Financial, Action::Off)
            .with_category(Category::NationalId, Action::Off)
            .with_category(Category::Contact, Action::Off)
            .with_category(Category::Network, Action::Off);
        assert_eq!(scope_of(&p), Scope::SecretsOnly);
        let p = p.with_entity(Entity::Email, Action::Log);
        assert_eq!(scope_of(&p), Scope::All);
    }
}
