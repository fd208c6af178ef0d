//! The audit function's detector state on DynamoDB: one item per [`EntryId`].
//!
//! Item: `id` (S, partition key: the entry id's string, `key#<id>`, `net#<cidr>`, ...),
//! `doc` (S: the entry as JSON), `version` (N: bumped by every save, which is conditional on
//! it), `expires_at` (N: epoch seconds, the table's TTL attribute). DynamoDB deletes expired
//! items only eventually (the local emulator never does), so reads filter on `expires_at`.
//! Loads are eventually consistent BatchGetItem pages of up to 100 ids: a stale read only
//! costs a conditional-save conflict, which the batch retry resolves.
//!
//! [`AlertHistory`] (the operator's `tollgate alerts`) is a Scan filtered to `sup#` items:
//! an operator command, never on the function's path; the table holds one item per active
//! key, network and open alert, so it stays small.

use crate::error::{unavailable, written};
use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes};
use std::collections::{BTreeSet, HashMap};
use tollgate_core::clock::EpochMs;
use tollgate_core::detect::port::{AlertHistory, AuditStateStore, SaveOutcome, Stored};
use tollgate_core::detect::{Entry, EntryId, Suppression};
use tollgate_core::ports::{OpCounter, StoreError};

const SERVICE: &str = "dynamodb";
/// Environment variable naming the audit state table.
pub const ENV_AUDIT_STATE_TABLE: &str = "TOLLGATE_AUDIT_STATE_TABLE";
/// BatchGetItem's limit.
const PAGE: usize = 100;
/// Rounds of retrying unprocessed keys before failing the load.
const MAX_ROUNDS: usize = 5;

/// [`AuditStateStore`] on one DynamoDB table.
#[derive(Debug, Clone)]
pub struct DynamoAuditState {
    client: Client,
    table: String,
    pub ops: std::sync::Arc<OpCounter>,
}

impl DynamoAuditState {
    /// No network call.
    pub fn new(conf: &aws_config::SdkConfig, table: impl Into<String>) -> Self {
        Self::from_client(Client::new(conf), table)
    }

    pub fn from_client(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
            ops: Default::default(),
        }
    }

    pub fn table(&self) -> &str {
        &self.table
    }
}

fn num(item: &HashMap<String, AttributeValue>, name: &str) -> Result<u64, StoreError> {
    match item.get(name) {
        Some(AttributeValue::N(v)) => v
            .parse()
            .map_err(|_| StoreError::Corrupt(format!("audit state {name} is not a number"))),
        None => Ok(0),
        Some(_) => Err(StoreError::Corrupt(format!(
            "audit state {name} is not a number"
        ))),
    }
}

fn decode(item: &HashMap<String, AttributeValue>, now: EpochMs) -> Result<Stored, StoreError> {
    let version = num(item, "version")?;
    let expires_s = num(item, "expires_at")?;
    if expires_s.saturating_mul(1000) <= now {
        return Ok(Stored {
            entry: None,
            version,
        });
    }
    let doc = match item.get("doc") {
        Some(AttributeValue::S(d)) => d,
        _ => return Err(StoreError::Corrupt("audit state item has no doc".into())),
    };
    let entry: Entry = serde_json::from_str(doc)
        .map_err(|e| StoreError::Corrupt(format!("audit state doc does not decode: {e}")))?;
    Ok(Stored {
        entry: Some(entry),
        version,
    })
}

#[async_trait]
impl AuditStateStore for DynamoAuditState {
    async fn load(&self, ids: &[EntryId], now: EpochMs) -> Result<Vec<Stored>, StoreError> {
        let wanted: Vec<String> = ids
            .iter()
            .map(ToString::to_string)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let mut found: HashMap<String, Stored> = HashMap::new();
        for page in wanted.chunks(PAGE) {
            let keys = page
                .iter()
                .map(|id| HashMap::from([("id".to_owned(), AttributeValue::S(id.clone()))]))
                .collect::<Vec<_>>();
            let mut request = Some(
                KeysAndAttributes::builder()
                    .set_keys(Some(keys))
                    .build()
                    .map_err(|e| StoreError::Unavailable(format!("dynamodb BatchGetItem: {e}")))?,
            );
            let mut rounds = 0;
            while let Some(req) = request.take() {
                rounds += 1;
                if rounds > MAX_ROUNDS {
                    return Err(StoreError::Unavailable(
                        "dynamodb BatchGetItem: keys left unprocessed".into(),
                    ));
                }
                self.ops.read();
                let out = self
                    .client
                    .batch_get_item()
                    .request_items(&self.table, req)
                    .send()
                    .await
                    .map_err(|e| unavailable(SERVICE, "BatchGetItem", &e))?;
                for item in out
                    .responses
                    .unwrap_or_default()
                    .remove(&self.table)
                    .unwrap_or_default()
                {
                    let Some(AttributeValue::S(id)) = item.get("id") else {
                        continue;
                    };
                    found.insert(id.clone(), decode(&item, now)?);
                }
                request = out
                    .unprocessed_keys
                    .unwrap_or_default()
                    .remove(&self.table)
                    .filter(|k| !k.keys.is_empty());
            }
        }
        Ok(ids
            .iter()
            .map(|id| found.get(&id.to_string()).cloned().unwrap_or_default())
            .collect())
    }

    async fn save(
        &self,
        id: &EntryId,
        entry: &Entry,
        expected: u64,
        expires_at: EpochMs,
    ) -> Result<SaveOutcome, StoreError> {
        let doc = serde_json::to_string(entry)
            .map_err(|e| StoreError::Corrupt(format!("audit state does not encode: {e}")))?;
        let mut put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("id", AttributeValue::S(id.to_string()))
            .item("doc", AttributeValue::S(doc))
            .item("version", AttributeValue::N((expected + 1).to_string()))
            .item(
                "expires_at",
                AttributeValue::N(expires_at.div_ceil(1000).to_string()),
            );
        put = if expected == 0 {
            put.condition_expression("attribute_not_exists(id)")
        } else {
            put.condition_expression("version = :v")
                .expression_attribute_values(":v", AttributeValue::N(expected.to_string()))
        };
        self.ops.write();
        Ok(if written(put.send().await, SERVICE, "PutItem")? {
            SaveOutcome::Saved
        } else {
            SaveOutcome::Conflict
        })
    }
}

/// Most Scan pages read for one listing (1 MB each), so a runaway table cannot hang the CLI.
const MAX_SCAN_PAGES: usize = 200;

#[async_trait]
impl AlertHistory for DynamoAuditState {
    async fn recent_alerts(
        &self,
        since: EpochMs,
        now: EpochMs,
    ) -> Result<Vec<Suppression>, StoreError> {
        let mut out = Vec::new();
        let mut start: Option<HashMap<String, AttributeValue>> = None;
        for _ in 0..MAX_SCAN_PAGES {
            self.ops.read();
            let page = self
                .client
                .scan()
                .table_name(&self.table)
                .filter_expression("begins_with(id, :p) AND expires_at > :now")
                .expression_attribute_values(":p", AttributeValue::S("sup#".into()))
                .expression_attribute_values(":now", AttributeValue::N((now / 1000).to_string()))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| unavailable(SERVICE, "Scan", &e))?;
            for item in page.items.unwrap_or_default() {
                if let Some(Entry::Suppression(s)) = decode(&item, now)?.entry
                    && s.opened_at >= since
                {
                    out.push(s);
                }
            }
            match page.last_evaluated_key.filter(|k| !k.is_empty()) {
                Some(k) => start = Some(k),
                None => {
                    out.sort_by(|a, b| {
                        b.opened_at
                            .cmp(&a.opened_at)
                            .then_with(|| a.alert_id().cmp(&b.alert_id()))
                    });
                    return Ok(out);
                }
            }
        }
        Err(StoreError::Unavailable(
            "dynamodb Scan: the audit state table has too many pages to list".into(),
        ))
    }
}
