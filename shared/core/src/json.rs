//! Strict parsing of client request bodies: refuses any object that repeats a key, at any
//! depth, in one pass (serde_json alone keeps the **last** of two equal keys, while the
//! original bytes go upstream to a provider that may keep the first). The implementation is
//! shared with the DLP's request entry points and lives in [`tollgate_dlp::json::strict`];
//! see there for the full reasoning.
//!
//! ```
//! use tollgate_core::json::{BodyError, parse_request_body};
//! assert_eq!(
//!     parse_request_body(br#"{"model":"a","model":"b"}"#),
//!     Err(BodyError::DuplicateKey { depth: 0 })
//! );
//! ```

pub use tollgate_dlp::json::strict::{BodyError, parse_request_body, parse_strict};
