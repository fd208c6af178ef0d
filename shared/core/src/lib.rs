//! tollgate's domain core.
//!
//! Everything here is pure: no AWS SDK, no network, no files, no global clock. Time and
//! randomness come in through [`clock::Clock`] and `rand::RngCore`, storage through the small
//! traits in [`ports`]. Adapters (DynamoDB, Secrets Manager, in-memory) live in sibling crates.
//!
//! Modules in the order a request meets them:
//! [`key`] (client key format) → [`auth`] (verification rules) → [`identity`] (OIDC/JWT
//! callers: issuer records, claim checks) → [`json`] (strict body
//! parsing) → [`provider`] (routes, shapes) → [`pool`] (token choice and health) → [`retry`]
//! → [`sse`] (stream usage) → [`scrub`] (pool token values out of responses) → [`audit`];
//! then, in the audit function, [`detect`] (rules over audit lines).

pub mod audit;
pub mod auth;
pub mod clock;
pub mod detect;
pub mod federation;
pub mod identity;
pub mod json;
pub mod key;
pub mod limits;
pub mod pool;
pub mod ports;
pub mod pricing;
pub mod provider;
pub mod reason;
pub mod records;
pub mod retry;
pub mod rotation;
pub mod scrub;
pub mod sse;
pub mod sweep;

/// Base62 and the key checksum: one implementation, in `tollgate-dlp` (whose validators need
/// it), re-exported here for the key format.
pub use tollgate_dlp::base62;
