//! tollgate's request pipeline. One module per stage, in the order a request meets them:
//!
//! 1. [`authenticate`] — key shape and checksum (no I/O), cache, store, digest, status,
//!    expiry, tenant, source network. Every failure here is the same 401.
//! 2. [`request`] — route, body size, JSON, model; then scopes (403).
//!    [`inspect`] — sensitive data in every text field: block (400), redact or log.
//! 3. [`forward`] — pick a token from the pool, call the provider, fail over on 401/403/429/5xx
//!    before the first byte reaches the client; stream SSE through as it arrives.
//! 4. [`settle`] — usage and token health to the store, one audit line per request.
//!
//! [`respond`] maps every failure to a status and a provider-shaped body, in one place.
//! The crate has no AWS dependency: stores arrive as `tollgate_core::ports` trait objects.

pub mod audit_sink;
pub mod authenticate;
pub mod config;
pub mod forward;
pub mod gateway;
pub mod inspect;
pub mod request;
pub mod respond;
pub mod settle;

pub use audit_sink::{AuditSink, MemoryAuditSink, StdoutAuditSink};
pub use config::{ConfigError, GatewayConfig};
pub use gateway::{Gateway, RequestId, SourceIp, Stores, router};
