//! What one request carries from stage to stage: its audit record as it fills in, when it
//! started, the store calls it made, and — once a provider answered — the token whose answer
//! is being delivered. Settlement reads it once, at the end.

use crate::state::limits::Admission;
use std::time::Instant;
use tollgate_core::audit::AuditRecord;
use tollgate_core::pool::Outcome;
use tollgate_core::ports::Secret;
use tollgate_core::provider::Usage;
use tollgate_core::reason::Reason;
use tollgate_core::records::TokenRecord;

/// Store (AWS) calls one request made: cache misses, usage and health writes.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct StoreCalls {
    pub reads: u32,
    pub writes: u32,
}

/// The token whose answer this request delivers (or whose answer failed after it was chosen).
#[derive(Debug, Clone)]
pub(crate) struct Delivering {
    pub token: TokenRecord,
    /// The health outcome to record for it when the request ends.
    pub outcome: Outcome,
    /// Usage reported in a complete body; streams report theirs at the end.
    pub usage: Usage,
    /// When the upstream attempt that answered started.
    pub started: Instant,
    /// The value sent upstream: the scrubber keeps it out of the response.
    pub value: Secret,
}

pub(crate) struct RequestCtx {
    pub audit: AuditRecord,
    pub started: Instant,
    pub calls: StoreCalls,
    /// The reason the request ends with, unless the end itself changes it (a stream breaking,
    /// the client going away).
    pub reason: Reason,
    pub delivering: Option<Delivering>,
    /// The limits this request was admitted under, settled when it ends.
    pub admission: Option<Admission>,
    /// The price table the request was admitted with; settlement prices its usage with it.
    pub prices: Option<std::sync::Arc<tollgate_core::pricing::PriceTable>>,
}

impl RequestCtx {
    pub fn new(audit: AuditRecord, started: Instant) -> Self {
        Self {
            audit,
            started,
            calls: StoreCalls::default(),
            reason: Reason::Ok,
            delivering: None,
            admission: None,
            prices: None,
        }
    }
}

/// Milliseconds, rounded to microseconds, as the audit line writes them.
pub(crate) fn ms_since(t: Instant) -> f64 {
    round3(t.elapsed().as_secs_f64() * 1000.0)
}

pub(crate) fn round3(ms: f64) -> f64 {
    (ms * 1000.0).round() / 1000.0
}
