//! Start-up shared by tollgate's Lambda functions, so each `main.rs` stays wiring:
//!
//! - [`logging`]: tracing set-up (JSON to stderr; stdout is left to audit and metric lines).
//! - [`env`]: typed environment parsing whose errors name the variable (never its value).
//! - [`aws`]: the one AWS SDK configuration loader.
//! - [`http`]: a supervised Lambda runtime loop for HTTP functions with response streaming:
//!   it survives transient Runtime API client errors and answers events it cannot read; and
//!   the tokio runtime it runs on ([`http::runtime_from_env`]).
//! - [`plain`]: plain-HTTP serving (`proxy --http`), one thread per core, each with its own
//!   current-thread runtime and listening socket.
//!
//! This crate owns process start-up only; it never sees a request body's meaning and never
//! logs an event, a header or a variable's value.

pub mod aws;
pub mod env;
pub mod http;
pub mod logging;
pub mod plain;

pub use env::EnvError;
