//! The stream redactor against the version before its allocation changes (kept verbatim
//! below as `Reference`): `emit` now returns at once when everything pending is held, and
//! reuses its scan buffer and context string. Fed the same deltas — secrets split at every
//! point, PEM blocks, assignments, unicode — both must return the same text from every push
//! and finish, hold the same bytes and count the same secrets.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;
use tollgate_dlp::redact::Redactor;
use tollgate_dlp::scan::{Finding, Scope, apply_policy, detect_scoped};
use tollgate_dlp::stream::{MAX_PEM_HOLD, MAX_TOKEN_HOLD};
use tollgate_dlp::{Action, Category, Entity, Policy, StreamRedactor};

const CONTEXT: usize = 256;

#[derive(Debug, Clone)]
pub struct Reference {
    policy: Policy,
    redactor: Redactor,
    pending: String,
    context: String,
    counts: BTreeMap<Entity, u32>,
}

fn is_hold_char(c: char) -> bool {
    c.is_ascii_alphanumeric()
        || matches!(
            c,
            '_' | '-' | '.' | '/' | '+' | '=' | ':' | '@' | '~' | '%' | '\\'
        )
        || matches!(c, '\u{FF01}'..='\u{FF5E}' | '\u{200B}'..='\u{200D}' | '\u{2060}' | '\u{FEFF}' | '\u{2010}'..='\u{2015}' | '\u{2212}')
}

impl Reference {
    /// New redactor for one response stream.
    pub fn new(policy: &Policy) -> Self {
        Reference {
            policy: policy.clone(),
            redactor: Redactor::new(),
            pending: String::new(),
            context: String::new(),
            counts: BTreeMap::new(),
        }
    }

    /// Secrets seen so far (entity → count).
    pub fn counts(&self) -> &BTreeMap<Entity, u32> {
        &self.counts
    }

    /// Bytes currently held back.
    pub fn held(&self) -> usize {
        self.pending.len()
    }

    /// Feed one delta; returns the text that may be forwarded now (possibly empty).
    pub fn push(&mut self, delta: &str) -> String {
        self.pending.push_str(delta);
        let hold = self.hold_start();
        self.emit(hold)
    }

    /// End of stream: returns everything still held, redacted.
    pub fn finish(&mut self) -> String {
        let all = self.pending.len();
        self.emit(all)
    }

    fn hold_start(&self) -> usize {
        let p = &self.pending;
        // trailing token run
        let mut h = p.len();
        for (i, c) in p.char_indices().rev() {
            if is_hold_char(c) {
                h = i;
            } else {
                break;
            }
        }
        if p.len() - h > MAX_TOKEN_HOLD {
            h = p.len() - MAX_TOKEN_HOLD;
            while !p.is_char_boundary(h) {
                h += 1;
            }
        }
        // unterminated PEM block
        if let Some(b) = p.rfind("-----BEGIN") {
            let terminated = p[b..].contains("-----END")
                && p[b..]
                    .rfind("-----")
                    .is_some_and(|x| x > b + 10 && p[b..].matches("-----").count() >= 4);
            if !terminated && p.len() - b <= MAX_PEM_HOLD {
                h = h.min(b);
            }
        }
        h
    }

    fn emit(&mut self, mut upto: usize) -> String {
        if self.pending.is_empty() {
            return String::new();
        }
        let ctx_len = self.context.len();
        let mut buf = String::with_capacity(ctx_len + self.pending.len());
        buf.push_str(&self.context);
        buf.push_str(&self.pending);
        let found: Vec<Finding> =
            apply_policy(detect_scoped(&buf, Scope::SecretsOnly), &self.policy)
                .into_iter()
                .filter(|f| f.entity.is_secret() && f.end > ctx_len)
                .collect();
        // never cut a finding in two: hold it whole
        for f in &found {
            if f.start < ctx_len + upto && f.end > ctx_len + upto && f.start >= ctx_len {
                upto = f.start - ctx_len;
            }
        }
        let mut local: Vec<Finding> = Vec::new();
        for f in &found {
            if f.end <= ctx_len + upto {
                *self.counts.entry(f.entity).or_insert(0) += 1;
                if matches!(f.action, Action::Block | Action::Redact) {
                    local.push(Finding {
                        start: f.start.saturating_sub(ctx_len),
                        end: f.end - ctx_len,
                        ..*f
                    });
                }
            }
        }
        let head = &self.pending[..upto];
        let out = self.redactor.redact_with(head, &local, |_| true);
        // keep a read-only tail of what was forwarded (original text) as context
        let mut ctx = String::with_capacity(CONTEXT + head.len());
        ctx.push_str(&self.context);
        ctx.push_str(head);
        if ctx.len() > CONTEXT {
            let mut cut = ctx.len() - CONTEXT;
            while !ctx.is_char_boundary(cut) {
                cut += 1;
            }
            ctx.drain(..cut);
        }
        self.context = ctx;
        self.pending.drain(..upto);
        out
    }
}

fn pieces() -> Vec<String> {
    let mut p: Vec<String> = [
        "Hello",
        " world",
        ",",
        " ",
        "\n",
        "token",
        "ization",
        " café",
        " 😀",
        " ＡＢＣ",
        "x",
        "_",
        "-",
        ".",
        "/",
        "=",
        ":",
        "@",
        "\u{200B}",
        "—",
        "key",
        " is",
        " 42.",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    let pem = format!(
        "-----BEGIN {k} PRIVATE KEY-----\nMIIEowIBAAKCAQEAx7fake0fake1fake2fake3fake4fake5\n-----END {k} PRIVATE KEY-----",
        k = "RSA"
    );
    for s in [
        common::github_token(),
        common::aws_access_key(),
        "password: hunter22xyz".to_owned(),
        "api_key=\"Zq8Xw7Vc6Bn5Ml4Kj3Hg\"".to_owned(),
        pem,
        "x".repeat(MAX_TOKEN_HOLD + 3),
    ] {
        p.push(format!(" {s} "));
        p.push(s);
    }
    p
}

fn same(policy: &Policy, deltas: &[&str]) -> usize {
    let mut now = StreamRedactor::new(policy);
    let mut before = Reference::new(policy);
    for d in deltas {
        assert_eq!(now.push(d), before.push(d), "{deltas:?}");
        assert_eq!(now.held(), before.held());
    }
    assert_eq!(now.finish(), before.finish(), "{deltas:?}");
    assert_eq!(now.counts(), before.counts());
    now.counts().values().map(|n| *n as usize).sum()
}

#[test]
fn the_stream_redactor_answers_as_before() {
    let policies = [
        Policy::default(),
        Policy::default().with_category(Category::Secret, Action::Log),
        Policy::default().with_entity(Entity::GithubToken, Action::Off),
    ];
    let all = pieces();
    let mut seed: u64 = 0x0DDC_0FFE_E15B_AD5E;
    let mut next = move |n: usize| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % n as u64) as usize
    };
    let mut found = 0;
    for case in 0..600 {
        let mut text = String::new();
        for _ in 0..1 + next(10) {
            text.push_str(&all[next(all.len())]);
        }
        let mut deltas = Vec::new();
        let mut rest = text.as_str();
        while !rest.is_empty() {
            let mut cut = (1 + next(16)).min(rest.len());
            while !rest.is_char_boundary(cut) {
                cut += 1;
            }
            deltas.push(&rest[..cut]);
            rest = &rest[cut..];
        }
        found += same(&policies[case % 3], &deltas);
    }
    assert!(found > 100, "only {found} secrets seen");
    // Every split point of each secret.
    for s in [
        common::github_token(),
        common::aws_access_key(),
        "password: hunter22xyz".into(),
    ] {
        for cut in 0..=s.len() {
            let (a, b) = s.split_at(cut);
            same(&policies[0], &["see ", a, b, " ok"]);
            same(&policies[0], &[a, "", b]);
        }
    }
}
