//! tollgate's request pipeline. Read it in the order a request meets it:
//!
//! - [`handler`] — the one entry point; calls every stage in order and is the only caller of
//!   settlement. Nothing imports it.
//! - [`authenticate`] — key shape and checksum (no I/O), key cache/store, digest, status,
//!   expiry, then tenant and source network; a JWT-shaped bearer goes to `jwt` instead
//!   (issuer, key, signature, claims). Every failure here is the same 401.
//! - [`request`] — route, body size, strict JSON, model, `stream`; then scopes (403).
//! - [`inspect`] — sensitive data in every text field: block (400), redact or log.
//! - [`limit`] — reserve the request's worst case against the key's and tenant's limits
//!   (429 naming the limit; 503 when the counters cannot be reached).
//! - [`forward`] — pick a token from the pool, call the provider, fail over on
//!   401/403/429/5xx before the first byte reaches the client.
//! - [`relay`] — the answer on its way back: headers, secret redaction, pool token
//!   scrubbing, SSE re-framing.
//! - [`settle`] — token health and usage to the store, and the audit line: run once, from the
//!   response body's end hook ([`body`]).
//!
//! Beside them: [`manage`] serves the tenant management API (`/tollgate/v1/…`, tenant
//! admins only) instead of the provider stages, settled the same way; [`respond`] maps every [`Reason`](tollgate_core::reason::Reason) to a
//! status and a provider-shaped body in one place; [`state`] holds what requests share
//! (caches over the stores, the HTTP client); [`upstream`] is that HTTP client (hyper, pooled,
//! rustls); [`context`] is what one request carries.
//! The crate has no AWS dependency: stores arrive as `tollgate_core::ports` trait objects.

pub mod audit_sink;
pub mod authenticate;
mod body;
pub mod cache;
pub mod config;
mod context;
mod forward;
pub mod handler;
pub mod inspect;
mod jwt;
mod limit;
pub mod manage;
mod relay;
pub mod request;
pub mod respond;
mod settle;
pub mod state;
mod stream_event;
pub mod upstream;

pub use audit_sink::{AuditSink, MemoryAuditSink, StdoutAuditSink};
pub use config::{ConfigError, GatewayConfig};
pub use handler::{RequestId, SourceIp, router};
pub use state::{Gateway, HttpJwks, IdentityStores, Stores};
