//! Typed, numbered placeholders: `[CREDIT_CARD_1]`, `[EMAIL_2]` …
//!
//! The same value gets the same number within one [`Redactor`] (one document or
//! one request). Values are compared in canonical form: digits only for numeric
//! entities (so `4111 1111 1111 1111` and `4111111111111111` are one card), the
//! normalized text otherwise.

use crate::entity::{Action, Entity};
use crate::normalize::normalize_str;
use crate::scan::Finding;
use std::collections::HashMap;

/// Placeholder numbering state for one document / request / stream.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    ids: HashMap<(Entity, String), usize>,
    next: HashMap<Entity, usize>,
}

/// Canonical form of a value for numbering.
pub fn canonical(entity: Entity, value: &str) -> String {
    let n = normalize_str(value);
    match entity {
        Entity::CreditCard
        | Entity::UsSsn
        | Entity::JpMyNumber
        | Entity::JpCorporateNumber
        | Entity::JpPostalCode
        | Entity::Phone => n.chars().filter(char::is_ascii_digit).collect(),
        Entity::Iban => n
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .map(|c| c.to_ascii_uppercase())
            .collect(),
        Entity::Email => n.to_ascii_lowercase(),
        _ => n,
    }
}

impl Redactor {
    /// Fresh numbering.
    pub fn new() -> Self {
        Self::default()
    }

    /// Placeholder for `value` of kind `entity`, allocating a number if new.
    pub fn placeholder(&mut self, entity: Entity, value: &str) -> String {
        let key = (entity, canonical(entity, value));
        let n = match self.ids.get(&key) {
            Some(n) => *n,
            None => {
                let c = self.next.entry(entity).or_insert(0);
                *c += 1;
                let n = *c;
                self.ids.insert(key, n);
                n
            }
        };
        format!("[{}_{}]", entity.name(), n)
    }

    /// Replace the spans of the findings selected by `select` with placeholders.
    /// Findings must be sorted and non-overlapping (as [`crate::scan()`] returns them).
    pub fn redact_with(
        &mut self,
        text: &str,
        findings: &[Finding],
        mut select: impl FnMut(&Finding) -> bool,
    ) -> String {
        let mut out = String::with_capacity(text.len());
        let mut last = 0;
        for f in findings {
            if !select(f) || f.start < last || f.end > text.len() || f.start >= f.end {
                continue;
            }
            let (Some(before), Some(value)) = (text.get(last..f.start), text.get(f.start..f.end))
            else {
                continue;
            };
            out.push_str(before);
            out.push_str(&self.placeholder(f.entity, value));
            last = f.end;
        }
        out.push_str(text.get(last..).unwrap_or_default());
        out
    }

    /// Replace the findings whose action is `redact`.
    pub fn redact(&mut self, text: &str, findings: &[Finding]) -> String {
        self.redact_with(text, findings, |f| f.action == Action::Redact)
    }

    /// Redact, then rescan and redact again until nothing redactable is left
    /// (at most a few passes). Context windows are measured in bytes, so
    /// shortening one value can bring a context word within reach of another;
    /// the extra passes make redaction idempotent. Returns the text and the
    /// findings of the extra passes (offsets into intermediate texts).
    pub fn redact_to_fixpoint(
        &mut self,
        text: &str,
        findings: &[Finding],
        policy: &crate::policy::Policy,
    ) -> (String, Vec<Finding>) {
        let mut out = self.redact(text, findings);
        let mut extra = Vec::new();
        for _ in 0..4 {
            let again = crate::scan::scan(&out, policy);
            if !again.iter().any(|f| f.action == Action::Redact) {
                break;
            }
            out = self.redact(&out, &again);
            extra.extend(again.into_iter().filter(|f| f.action == Action::Redact));
        }
        (out, extra)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbering_is_stable_per_value() {
        let mut r = Redactor::new();
        assert_eq!(
            r.placeholder(Entity::CreditCard, "4111 1111 1111 1111"),
            "[CREDIT_CARD_1]"
        );
        assert_eq!(r.placeholder(Entity::Email, "a@b.co"), "[EMAIL_1]");
        assert_eq!(
            r.placeholder(Entity::CreditCard, "5555555555554444"),
            "[CREDIT_CARD_2]"
        );
        assert_eq!(
            r.placeholder(Entity::CreditCard, "4111-1111-1111-1111"),
            "[CREDIT_CARD_1]"
        );
        assert_eq!(
            r.placeholder(Entity::CreditCard, "４１１１１１１１１１１１１１１１"),
            "[CREDIT_CARD_1]"
        );
    }
}
