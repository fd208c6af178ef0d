//! Typed errors of the DLP crate.

use thiserror::Error;

/// Errors returned by the request-level entry points.
#[derive(Debug, Error)]
pub enum DlpError {
    /// The request body was refused by the strict parser (invalid, repeated key, ...).
    #[error("{0}")]
    Body(crate::json::BodyError),
    /// A body could not be serialized again after redaction.
    #[error("request body is not valid JSON: {0}")]
    InvalidJson(#[from] serde_json::Error),
    /// The request body was JSON but not an object.
    #[error("request body must be a JSON object")]
    NotAnObject,
    /// A policy document could not be parsed.
    #[error("invalid DLP policy: {0}")]
    InvalidPolicy(String),
}
