//! The audit function's two ports: where detector state lives (DynamoDB, memory) and where
//! alerts go (SNS, memory). Both small; both held to one contract test per implementation.

use super::{Alert, Entry, EntryId};
use crate::clock::EpochMs;
use crate::ports::StoreError;
use async_trait::async_trait;

/// What the store holds under one id: the entry (none when absent or expired) and the
/// version to save against (0: nothing stored; an expired item keeps its version, so the
/// next save replaces it).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Stored {
    pub entry: Option<Entry>,
    pub version: u64,
}

/// What a conditional save did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaveOutcome {
    /// Stored; the version is now `expected + 1`.
    Saved,
    /// Another writer got there first; nothing stored. Reload and decide again (or let the
    /// batch be retried: the windows do not count an event twice).
    Conflict,
}

/// Detector state, one item per [`EntryId`].
#[async_trait]
pub trait AuditStateStore: Send + Sync {
    /// What is stored under each of `ids`, in the same order (an id may repeat). An entry
    /// whose expiry is at or before `now` is reported absent (with its version).
    async fn load(&self, ids: &[EntryId], now: EpochMs) -> Result<Vec<Stored>, StoreError>;
    /// Stores `entry` if the stored version is still `expected` (0: absent). `expires_at`
    /// lets the store forget it (DynamoDB TTL); a store may round it up to the second.
    async fn save(
        &self,
        id: &EntryId,
        entry: &Entry,
        expected: u64,
        expires_at: EpochMs,
    ) -> Result<SaveOutcome, StoreError>;
}

/// Where alerts go.
#[async_trait]
pub trait AlertSink: Send + Sync {
    async fn publish(&self, alert: &Alert) -> Result<(), StoreError>;
}
