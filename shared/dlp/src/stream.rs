//! Streaming response redactor.
//!
//! Fed the successive text deltas of a streamed completion (SSE `delta.content`
//! / `text_delta`), it returns text that is safe to forward: secrets are
//! replaced by placeholders even when they straddle chunk boundaries.
//!
//! How: text is held back while it could still be the start of a secret — the
//! trailing run of token characters (`[A-Za-z0-9_\-./+=:@~%]` and characters the
//! normalizer folds), or everything from an unterminated `-----BEGIN … PRIVATE
//! KEY-----`. The hold is bounded ([`MAX_TOKEN_HOLD`], [`MAX_PEM_HOLD`]). A short
//! tail of already-forwarded text is kept as read-only context so that
//! `password: ` + `hunter22` split over two deltas is still caught. Only the
//! `secret` category is scanned (responses carry the model's words, not the
//! user's personal data); `block` and `redact` both redact here because a
//! stream cannot be refused half-way, `log` only counts.

use crate::entity::{Action, Entity};
use crate::policy::Policy;
use crate::redact::Redactor;
use crate::scan::{Finding, Scope, apply_policy, detect_scoped};
use std::collections::BTreeMap;

/// Longest trailing token held back, in bytes (longer tokens are flushed).
pub const MAX_TOKEN_HOLD: usize = 4096;
/// Longest unterminated PEM block held back, in bytes.
pub const MAX_PEM_HOLD: usize = 65_536;
const CONTEXT: usize = 256;

/// Redacts secrets in a stream of text deltas.
#[derive(Debug, Clone)]
pub struct StreamRedactor {
    policy: Policy,
    redactor: Redactor,
    pending: String,
    context: String,
    counts: BTreeMap<Entity, u32>,
    /// Reused for context + pending, the text each emit scans.
    scratch: String,
}

fn is_hold_char(c: char) -> bool {
    c.is_ascii_alphanumeric()
        || matches!(
            c,
            '_' | '-' | '.' | '/' | '+' | '=' | ':' | '@' | '~' | '%' | '\\'
        )
        || matches!(c, '\u{FF01}'..='\u{FF5E}' | '\u{200B}'..='\u{200D}' | '\u{2060}' | '\u{FEFF}' | '\u{2010}'..='\u{2015}' | '\u{2212}')
}

impl StreamRedactor {
    /// New redactor for one response stream.
    pub fn new(policy: &Policy) -> Self {
        StreamRedactor {
            policy: policy.clone(),
            redactor: Redactor::new(),
            pending: String::new(),
            context: String::new(),
            counts: BTreeMap::new(),
            scratch: String::new(),
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
        // Nothing may go out yet (all of `pending` is held): every finding below must end
        // past the context, so none ends at or before `ctx_len + 0`; nothing is counted, the
        // head is empty and the context, already at most `CONTEXT` long, stays as it is —
        // the scan would change nothing. (A delta that only continues a held token.)
        if self.pending.is_empty() || upto == 0 {
            return String::new();
        }
        let ctx_len = self.context.len();
        let mut buf = std::mem::take(&mut self.scratch);
        buf.clear();
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
        self.scratch = buf;
        let head = &self.pending[..upto];
        let out = self.redactor.redact_with(head, &local, |_| true);
        // keep a read-only tail of what was forwarded (original text) as context
        self.context.push_str(head);
        if self.context.len() > CONTEXT {
            let mut cut = self.context.len() - CONTEXT;
            while !self.context.is_char_boundary(cut) {
                cut += 1;
            }
            self.context.drain(..cut);
        }
        self.pending.drain(..upto);
        out
    }
}
