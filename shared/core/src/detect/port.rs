//! The audit function's two ports: where detector state lives (DynamoDB, memory) and where
//! alerts go (SNS, memory). Both small; both held to one contract test per implementation.

use super::{Alert, Entry, EntryId, Suppression};
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

/// The alerts kept in the state table (one per (rule, subject): the latest), for operators.
#[async_trait]
pub trait AlertHistory: Send + Sync {
    /// Every kept alert opened at or after `since` and not expired at `now`, newest first.
    async fn recent_alerts(
        &self,
        since: EpochMs,
        now: EpochMs,
    ) -> Result<Vec<Suppression>, StoreError>;
}

/// One log event as CloudWatch Logs returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEvent {
    /// The event id (unique within the log group).
    pub id: String,
    pub timestamp: EpochMs,
    pub message: String,
}

/// One page of a log query; `next` continues it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LogPage {
    pub events: Vec<LogEvent>,
    pub next: Option<String>,
}

/// The proxy's log group, read by time (`tollgate audit tail`).
#[async_trait]
pub trait AuditLogSource: Send + Sync {
    /// Events at or after `start`, oldest first within a page. `pattern` is a CloudWatch
    /// Logs filter pattern the source may apply (a source that cannot may return more:
    /// callers filter again).
    async fn page(
        &self,
        start: EpochMs,
        pattern: Option<&str>,
        next: Option<String>,
    ) -> Result<LogPage, StoreError>;
}
