//! tollgate DLP: detect, classify and redact sensitive data in LLM traffic.
//!
//! Pure library (no I/O, no AWS). Entry points:
//! - [`scan()`] / [`detect`]: findings with byte offsets into the original text;
//! - [`inspect_request`] / [`cli::redact_request`]: walk an OpenAI or Anthropic
//!   request body, decide block / redact / log, rewrite only text fields;
//! - [`StreamRedactor`]: redact secrets in streamed response deltas;
//! - [`json::walk_strings_mut`]: every string value of a JSON document;
//! - [`Policy`]: per-entity / per-category actions with defaults and merging.
//!
//! Call [`init`] once at start-up so a defective pattern set fails loudly.

pub(crate) mod address;
pub(crate) mod assign;
pub mod base62;
pub mod cli;
pub mod entity;
pub mod error;
pub mod fast;
pub(crate) mod heads;
pub mod json;
pub(crate) mod keys;
pub mod normalize;
pub mod policy;
pub mod redact;
pub mod request;
pub mod scan;
pub mod secret_value;
pub mod stream;
pub mod validate;

pub use entity::{Action, Category, Entity};
pub use error::DlpError;
pub use policy::Policy;
pub use redact::Redactor;
pub use request::{Decision, Report, RequestKind, for_each_text, inspect_request};
pub use scan::{
    Detection, Finding, Scanner, Scope, apply_policy, detect, detect_scoped, init, scan,
};
pub use stream::StreamRedactor;

/// Scan and redact one text: findings with action `redact` are replaced by
/// numbered placeholders. Returns the new text and all findings.
pub fn redact_text(text: &str, policy: &Policy) -> (String, Vec<Finding>) {
    let findings = scan(text, policy);
    if !findings.iter().any(|f| f.action == Action::Redact) {
        return (text.to_owned(), findings);
    }
    let (out, _) = Redactor::new().redact_to_fixpoint(text, &findings, policy);
    (out, findings)
}
