//! DynamoDB: the limit counters every proxy instance shares ([`LimitStore`]).
//!
//! One item per subject (`key#<id>`, `tenant#<id>`) in the limits table: hash key `subject`
//! (S), the [`Counters`] attribute by attribute (`serde_dynamo`, the in-flight leases as a map
//! of request id → lease expiry), a numeric `version`, and `expires_at` (epoch **seconds**,
//! the table's TTL attribute) so subjects nobody has used for a while disappear.
//!
//! Every write is conditional on the version the caller decided on (`attribute_not_exists`
//! for version 0), and asks DynamoDB to return the stored item when that condition fails, so a
//! lost race hands the caller the current counters in the same round trip:
//!
//! - one subject: PutItem (one write unit);
//! - two or more: one TransactWriteItems, all or nothing (two write units per item, as
//!   DynamoDB bills transactions). Cancellation reasons are mapped back to subjects; a subject
//!   whose item DynamoDB did not return (its own condition passed, or another transaction held
//!   it) is left out of the conflict, and the gateway reads it again.
//!
//! The model price table lives in the same table as one item, `subject = "#prices"` (no key or
//! tenant subject starts with `#`): the table as a map `prices` (model → `input`, `output`,
//! `cached_input` in micro-dollars per million tokens), a numeric `version`, no `expires_at`.
//! It is replaced as a whole with a PutItem conditional on the version ([`PriceStore`]); the
//! proxy reads it with one GetItem per cache period. One item bounds the table at DynamoDB's
//! 400 KB item size, some thousands of models — far more than any deployment prices.
//!
//! Settlement is not a version-conditioned swap but an update of deltas
//! ([`LimitStore::apply_deltas`]), in one `TransactWriteItems` with the pool token's usage
//! write when [`DynamoLimitStore::with_usage_table`] names the pool table. The emulator's
//! transactions are not isolated and never report conflicts: docs/limits.md, "Emulator
//! caveats: transactions".
//!
//! Reads are GetItem with ConsistentRead: a decision must start from the latest write.
//! TTL deletion can lag by days and the emulator never deletes at all, so an item past its
//! `expires_at` is still read as it is: that is harmless, because [`Counters::current`]
//! zeroes every window that has closed and drops expired leases.

use crate::error::{ConfigError, transaction, unavailable};
use crate::{ENV_LIMITS_TABLE, required};
use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{
    AttributeValue, CancellationReason, Put, ReturnValuesOnConditionCheckFailure,
    TransactWriteItem, Update,
};
use std::collections::HashMap;
use tollgate_core::clock::EpochMs;
use tollgate_core::limits::Counters;
use tollgate_core::ports::{
    CounterDelta, CounterWrite, DeltaOutcome, LimitStore, OpCounter, PriceStore, StoreError,
    StoredPrices, SwapOutcome, UsageWrite, VersionedCounters,
};
use tollgate_core::pricing::PriceTable;

const SERVICE: &str = "dynamodb";
/// Attributes the store owns; every other attribute of the item is a counter.
const SUBJECT: &str = "subject";
const VERSION: &str = "version";
const EXPIRES_AT: &str = "expires_at";
/// The price table's item.
pub const PRICES_SUBJECT: &str = "#prices";
const PRICES: &str = "prices";

type Item = HashMap<String, AttributeValue>;

/// The condition a write carries: the subject is stored under the version the caller
/// decided on, or not stored at all when that version is 0.
struct Condition {
    expression: &'static str,
    names: HashMap<String, String>,
    values: Option<Item>,
}

impl Condition {
    fn of(w: &CounterWrite) -> Self {
        if w.expected_version == 0 {
            Self {
                expression: "attribute_not_exists(#s)",
                names: HashMap::from([("#s".to_owned(), SUBJECT.to_owned())]),
                values: None,
            }
        } else {
            Self {
                expression: "#v = :v",
                names: HashMap::from([("#v".to_owned(), VERSION.to_owned())]),
                values: Some(HashMap::from([(
                    ":v".to_owned(),
                    AttributeValue::N(w.expected_version.to_string()),
                )])),
            }
        }
    }
}

/// [`LimitStore`] on one DynamoDB table (hash key `subject`, TTL on `expires_at`).
#[derive(Debug, Clone)]
pub struct DynamoLimitStore {
    client: Client,
    table: String,
    prices_subject: String,
    /// The pool table, when settlements carry the pool token's usage write.
    usage_table: Option<String>,
    pub ops: std::sync::Arc<OpCounter>,
}

impl DynamoLimitStore {
    /// No network call.
    pub fn new(conf: &aws_config::SdkConfig, table: impl Into<String>) -> Self {
        Self::from_client(Client::new(conf), table)
    }

    pub fn from_client(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
            prices_subject: PRICES_SUBJECT.to_owned(),
            usage_table: None,
            ops: Default::default(),
        }
    }

    /// Lets a settlement carry the answering pool token's usage write (the pool table's
    /// name): one `TransactWriteItems` instead of two writes.
    pub fn with_usage_table(mut self, pool_table: impl Into<String>) -> Self {
        self.usage_table = Some(pool_table.into());
        self
    }

    /// Keeps the price table under another subject (tests sharing one emulator table).
    pub fn with_prices_subject(mut self, subject: impl Into<String>) -> Self {
        self.prices_subject = subject.into();
        self
    }

    /// Reads `TOLLGATE_LIMITS_TABLE` through `var`.
    pub fn table_from_vars(var: &impl Fn(&str) -> Option<String>) -> Result<String, ConfigError> {
        required(var, ENV_LIMITS_TABLE)
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The item for one write: the counters plus the store's own attributes.
    fn item(&self, w: &CounterWrite, expires_at_s: u64) -> Result<Item, StoreError> {
        let mut item: Item = serde_dynamo::to_item(&w.counters)
            .map_err(|e| StoreError::Corrupt(format!("limit counters do not encode: {e}")))?;
        item.insert(SUBJECT.to_owned(), AttributeValue::S(w.subject.clone()));
        item.insert(
            VERSION.to_owned(),
            AttributeValue::N((w.expected_version + 1).to_string()),
        );
        item.insert(
            EXPIRES_AT.to_owned(),
            AttributeValue::N(expires_at_s.to_string()),
        );
        Ok(item)
    }

    /// One `Put` with the write's version condition, returning the stored item on failure.
    fn put(&self, w: &CounterWrite, expires_at_s: u64) -> Result<Put, StoreError> {
        let c = Condition::of(w);
        Put::builder()
            .table_name(&self.table)
            .set_item(Some(self.item(w, expires_at_s)?))
            .condition_expression(c.expression)
            .set_expression_attribute_names(Some(c.names))
            .set_expression_attribute_values(c.values)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .map_err(|e| StoreError::Corrupt(format!("limit counter write does not build: {e}")))
    }

    async fn put_one(
        &self,
        w: &CounterWrite,
        expires_at_s: u64,
    ) -> Result<SwapOutcome, StoreError> {
        let c = Condition::of(w);
        let item = self.item(w, expires_at_s)?;
        self.ops.write();
        let r = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression(c.expression)
            .set_expression_attribute_names(Some(c.names))
            .set_expression_attribute_values(c.values)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match r {
            Ok(_) => Ok(SwapOutcome::Applied),
            Err(SdkError::ServiceError(ctx))
                if matches!(ctx.err(), PutItemError::ConditionalCheckFailedException(_)) =>
            {
                let stored = match ctx.into_err() {
                    PutItemError::ConditionalCheckFailedException(e) => e.item,
                    _ => None,
                };
                Ok(SwapOutcome::Conflict(
                    reported(w, stored)?.into_iter().collect(),
                ))
            }
            // A settlement transaction held the item at that moment: a lost race, but
            // DynamoDB does not say what is stored, so the caller reads it again.
            Err(SdkError::ServiceError(ctx))
                if matches!(ctx.err(), PutItemError::TransactionConflictException(_)) =>
            {
                Ok(SwapOutcome::Conflict(Vec::new()))
            }
            Err(e) => Err(unavailable(SERVICE, "PutItem(limits)", &e)),
        }
    }

    /// One subject, no usage: a plain `UpdateItem` (one write unit).
    async fn update_one(&self, u: Update) -> Result<DeltaOutcome, StoreError> {
        self.ops.write();
        let r = self
            .client
            .update_item()
            .table_name(u.table_name)
            .set_key(Some(u.key))
            .update_expression(u.update_expression)
            .set_condition_expression(u.condition_expression)
            .set_expression_attribute_names(u.expression_attribute_names)
            .set_expression_attribute_values(u.expression_attribute_values)
            .send()
            .await;
        match r {
            Ok(_) => Ok(DeltaOutcome::Applied),
            Err(SdkError::ServiceError(ctx))
                if matches!(
                    ctx.err(),
                    UpdateItemError::ConditionalCheckFailedException(_)
                        | UpdateItemError::TransactionConflictException(_)
                ) =>
            {
                Ok(DeltaOutcome::NotApplied)
            }
            Err(e) => Err(unavailable(SERVICE, "UpdateItem(limits settle)", &e)),
        }
    }

    /// Several subjects, or usage too: one `TransactWriteItems` (two write units per item).
    /// The SDK gives the call one idempotency token (`ClientRequestToken`) that its own
    /// retries reuse, so a retried transaction is not applied twice.
    async fn transact(&self, items: Vec<TransactWriteItem>) -> Result<DeltaOutcome, StoreError> {
        self.ops.write();
        let r = self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await;
        let Some(reasons) = transaction(r, SERVICE, "TransactWriteItems(limits settle)")? else {
            return Ok(DeltaOutcome::Applied);
        };
        let unusual: Vec<String> = reasons
            .into_iter()
            .filter_map(|r| r.code)
            .filter(|c| {
                !matches!(
                    c.as_str(),
                    "None" | "ConditionalCheckFailed" | "TransactionConflict"
                )
            })
            .collect();
        if !unusual.is_empty() {
            tracing::warn!(
                service = SERVICE,
                op = "TransactWriteItems(limits settle)",
                error.kind = unusual.join(","),
                "settlement transaction cancelled; settling the slow way"
            );
        }
        Ok(DeltaOutcome::NotApplied)
    }

    async fn put_all(
        &self,
        writes: &[CounterWrite],
        expires_at_s: u64,
    ) -> Result<SwapOutcome, StoreError> {
        let items = writes
            .iter()
            .map(|w| {
                self.put(w, expires_at_s)
                    .map(|p| TransactWriteItem::builder().put(p).build())
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.ops.write();
        let r = self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await;
        match transaction(r, SERVICE, "TransactWriteItems(limits)")? {
            None => Ok(SwapOutcome::Applied),
            Some(reasons) => conflict_from_reasons(writes, reasons),
        }
    }
}

/// One subject's settlement delta as an update: `ADD` the differences of the groups it
/// corrects, `REMOVE` the request's lease, move the version on (so instances holding the
/// previous state re-decide) and the TTL; conditional on the item existing and on each
/// corrected group still being stored under the delta's window. No version condition: the
/// update commutes with every other write.
fn delta_update(table: &str, d: &CounterDelta, expires_at_s: u64) -> Result<Update, StoreError> {
    let mut names = HashMap::from([
        ("#v".to_owned(), VERSION.to_owned()),
        ("#e".to_owned(), EXPIRES_AT.to_owned()),
        ("#inf".to_owned(), "inflight".to_owned()),
        ("#rid".to_owned(), d.delta.release.clone()),
    ]);
    let mut values: Item = HashMap::from([
        (":one".to_owned(), AttributeValue::N("1".into())),
        (
            ":exp".to_owned(),
            AttributeValue::N(expires_at_s.to_string()),
        ),
    ]);
    // The request's lease is the marker that it is still to be settled: a replay (the SDK
    // retrying a write that had applied) fails this condition and changes nothing.
    let mut condition = vec!["attribute_exists(#inf.#rid)".to_owned()];
    let mut add = Vec::new();
    let mut group = |window_attr: &str, window: u64, changes: &[(&str, i64)]| {
        let w = format!("#w_{window_attr}");
        let wv = format!(":w_{window_attr}");
        condition.push(format!("{w} = {wv}"));
        names.insert(w, window_attr.to_owned());
        values.insert(wv, AttributeValue::N(window.to_string()));
        for (attr, change) in changes {
            let (nm, v) = (format!("#a_{attr}"), format!(":a_{attr}"));
            add.push(format!("{nm} {v}"));
            names.insert(nm, (*attr).to_owned());
            values.insert(v, AttributeValue::N(change.to_string()));
        }
    };
    if let Some((m, t)) = d.delta.minute {
        group("minute", m, &[("tokens_minute", t)]);
    }
    if let Some((day, sp, t)) = d.delta.day {
        group("day", day, &[("spend_day", sp), ("tokens_day", t)]);
    }
    if let Some((m, sp, t)) = d.delta.month {
        group("month", m, &[("spend_month", sp), ("tokens_month", t)]);
    }
    let mut expression = "SET #v = #v + :one, #e = :exp REMOVE #inf.#rid".to_owned();
    if !add.is_empty() {
        expression.push_str(" ADD ");
        expression.push_str(&add.join(", "));
    }
    Update::builder()
        .table_name(table)
        .key(SUBJECT, AttributeValue::S(d.subject.clone()))
        .update_expression(expression)
        .condition_expression(condition.join(" AND "))
        .set_expression_attribute_names(Some(names))
        .set_expression_attribute_values(Some(values))
        .build()
        .map_err(|e| StoreError::Corrupt(format!("limit settlement does not build: {e}")))
}

/// What a failed condition tells about one subject. With the stored item: its counters and
/// version. Without one, where the write expected a stored item: none is stored (version 0).
/// Without one where the write expected none: something is stored that was not returned, so
/// report nothing and let the caller read it.
fn reported(
    w: &CounterWrite,
    stored: Option<Item>,
) -> Result<Option<(String, VersionedCounters)>, StoreError> {
    match stored {
        Some(item) if !item.is_empty() => Ok(Some((w.subject.clone(), decode(item)?))),
        _ if w.expected_version != 0 => Ok(Some((w.subject.clone(), VersionedCounters::default()))),
        _ => Ok(None),
    }
}

/// Maps a cancelled transaction back to its subjects (reasons come in the order of the
/// items). Failed conditions are a conflict; anything else (validation, throughput, a
/// transaction conflict counts as a lost race too) is reported as such.
fn conflict_from_reasons(
    writes: &[CounterWrite],
    reasons: Vec<CancellationReason>,
) -> Result<SwapOutcome, StoreError> {
    let mut current = Vec::new();
    let mut lost_race = false;
    for (w, r) in writes.iter().zip(reasons) {
        match r.code.as_deref() {
            Some("ConditionalCheckFailed") => {
                lost_race = true;
                current.extend(reported(w, r.item)?);
            }
            // Another transaction was writing this item at the same moment: also a lost
            // race, but DynamoDB does not say what is stored, so the caller reads it again.
            Some("TransactionConflict") => lost_race = true,
            None | Some("None") => {}
            Some(other) => {
                tracing::warn!(
                    service = SERVICE,
                    op = "TransactWriteItems(limits)",
                    error.kind = other,
                    "AWS call failed"
                );
                return Err(StoreError::Unavailable(format!(
                    "{SERVICE} TransactWriteItems(limits): {other}"
                )));
            }
        }
    }
    if !lost_race {
        return Err(StoreError::Unavailable(format!(
            "{SERVICE} TransactWriteItems(limits): cancelled without a reason"
        )));
    }
    Ok(SwapOutcome::Conflict(current))
}

fn decode(mut item: Item) -> Result<VersionedCounters, StoreError> {
    let version = match item.remove(VERSION) {
        Some(AttributeValue::N(v)) => v
            .parse::<u64>()
            .map_err(|_| StoreError::Corrupt("limit counters: version is not a number".into()))?,
        _ => {
            return Err(StoreError::Corrupt(
                "limit counters: no numeric version".into(),
            ));
        }
    };
    item.remove(SUBJECT);
    item.remove(EXPIRES_AT);
    let counters: Counters = serde_dynamo::from_item(item)
        .map_err(|e| StoreError::Corrupt(format!("limit counters do not decode: {e}")))?;
    Ok(VersionedCounters { counters, version })
}

#[async_trait]
impl LimitStore for DynamoLimitStore {
    async fn load_counters(&self, subject: &str) -> Result<VersionedCounters, StoreError> {
        self.ops.read();
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(SUBJECT, AttributeValue::S(subject.to_owned()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| unavailable(SERVICE, "GetItem(limits)", &e))?;
        match out.item {
            Some(item) if !item.is_empty() => decode(item),
            _ => Ok(VersionedCounters::default()),
        }
    }

    async fn swap_counters(
        &self,
        writes: &[CounterWrite],
        expires_at: EpochMs,
    ) -> Result<SwapOutcome, StoreError> {
        // DynamoDB's TTL reads epoch seconds.
        let expires_at_s = expires_at.div_ceil(1_000);
        match writes {
            [] => Ok(SwapOutcome::Applied),
            [one] => self.put_one(one, expires_at_s).await,
            many => self.put_all(many, expires_at_s).await,
        }
    }

    async fn apply_deltas(
        &self,
        deltas: &[CounterDelta],
        usage: Option<&UsageWrite>,
        expires_at: EpochMs,
    ) -> Result<DeltaOutcome, StoreError> {
        let expires_at_s = expires_at.div_ceil(1_000);
        let mut items = deltas
            .iter()
            .map(|d| delta_update(&self.table, d, expires_at_s))
            .collect::<Result<Vec<_>, _>>()?;
        let usage = usage
            .filter(|u| u.token_id != crate::CONFIG_SORT_KEY)
            .zip(self.usage_table.as_deref());
        if usage.is_none() && items.len() == 1 {
            return match items.pop() {
                Some(u) => self.update_one(u).await,
                None => Ok(DeltaOutcome::Applied),
            };
        }
        let mut tx: Vec<TransactWriteItem> = items
            .into_iter()
            .map(|u| TransactWriteItem::builder().update(u).build())
            .collect();
        if let Some((u, table)) = usage {
            let update = Update::builder()
                .table_name(table)
                .set_key(Some(crate::dynamo::pool_token_key(&u.pool, &u.token_id)))
                .update_expression(crate::dynamo::USAGE_UPDATE)
                .condition_expression(crate::dynamo::USAGE_CONDITION)
                .set_expression_attribute_values(Some(crate::dynamo::usage_values(u.usage, u.at)))
                .build()
                .map_err(|e| StoreError::Corrupt(format!("usage write does not build: {e}")))?;
            tx.push(TransactWriteItem::builder().update(update).build());
        }
        if tx.is_empty() {
            return Ok(DeltaOutcome::Applied);
        }
        self.transact(tx).await
    }

    fn carries_usage(&self) -> bool {
        self.usage_table.is_some()
    }
}

#[async_trait]
impl PriceStore for DynamoLimitStore {
    async fn load_prices(&self) -> Result<Option<StoredPrices>, StoreError> {
        self.ops.read();
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(SUBJECT, AttributeValue::S(self.prices_subject.clone()))
            .send()
            .await
            .map_err(|e| unavailable(SERVICE, "GetItem(prices)", &e))?;
        let Some(mut item) = out.item else {
            return Ok(None);
        };
        let version = match item.remove(VERSION) {
            Some(AttributeValue::N(v)) => v.parse::<u64>().ok(),
            _ => None,
        }
        .ok_or_else(|| StoreError::Corrupt("price table: no numeric version".into()))?;
        let prices = item
            .remove(PRICES)
            .ok_or_else(|| StoreError::Corrupt("price table: no prices".into()))?;
        let table: PriceTable = serde_dynamo::from_item(Item::from([(PRICES.to_owned(), prices)]))
            .map_err(|e| StoreError::Corrupt(format!("price table does not decode: {e}")))?;
        Ok(Some(StoredPrices { table, version }))
    }

    async fn store_prices(
        &self,
        table: &PriceTable,
        expected_version: u64,
    ) -> Result<bool, StoreError> {
        let mut item: Item = serde_dynamo::to_item(table)
            .map_err(|e| StoreError::Corrupt(format!("price table does not encode: {e}")))?;
        item.insert(
            SUBJECT.to_owned(),
            AttributeValue::S(self.prices_subject.clone()),
        );
        item.insert(
            VERSION.to_owned(),
            AttributeValue::N((expected_version + 1).to_string()),
        );
        let c = Condition::of(&CounterWrite {
            subject: self.prices_subject.clone(),
            expected_version,
            counters: Counters::default(),
        });
        self.ops.write();
        let r = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression(c.expression)
            .set_expression_attribute_names(Some(c.names))
            .set_expression_attribute_values(c.values)
            .send()
            .await;
        match r {
            Ok(_) => Ok(true),
            Err(SdkError::ServiceError(ctx))
                if matches!(ctx.err(), PutItemError::ConditionalCheckFailedException(_)) =>
            {
                Ok(false)
            }
            Err(e) => Err(unavailable(SERVICE, "PutItem(prices)", &e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(subject: &str, expected_version: u64) -> CounterWrite {
        CounterWrite {
            subject: subject.into(),
            expected_version,
            counters: Counters {
                requests: 3,
                inflight: [("r1".to_owned(), 99)].into(),
                ..Counters::default()
            },
        }
    }

    fn reason(code: &str, item: Option<Item>) -> CancellationReason {
        CancellationReason::builder()
            .code(code)
            .set_item(item)
            .build()
    }

    #[test]
    fn an_item_round_trips_without_the_store_attributes() {
        let conf = aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .build();
        let store = DynamoLimitStore::new(&conf, "t");
        let w = write("key#a", 4);
        let item = store.item(&w, 1_234).expect("encode");
        assert_eq!(item.get(VERSION), Some(&AttributeValue::N("5".into())));
        assert_eq!(
            item.get(EXPIRES_AT),
            Some(&AttributeValue::N("1234".into()))
        );
        assert!(matches!(item.get("inflight"), Some(AttributeValue::M(_))));
        let back = decode(item).expect("decode");
        assert_eq!(back.version, 5);
        assert_eq!(back.counters, w.counters);
    }

    #[test]
    fn cancellation_reasons_map_back_to_their_subjects() {
        let conf = aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .build();
        let store = DynamoLimitStore::new(&conf, "t");
        let writes = [write("key#a", 2), write("tenant#t", 0), write("key#b", 7)];
        let stored = store.item(&write("key#a", 8), 1).expect("encode");
        let out = conflict_from_reasons(
            &writes,
            vec![
                reason("ConditionalCheckFailed", Some(stored)),
                reason("None", None),
                // Expected version 7, nothing returned: nothing is stored.
                reason("ConditionalCheckFailed", None),
            ],
        )
        .expect("a conflict");
        let SwapOutcome::Conflict(current) = out else {
            panic!("not a conflict: {out:?}");
        };
        let versions: Vec<(&str, u64)> = current
            .iter()
            .map(|(s, c)| (s.as_str(), c.version))
            .collect();
        assert_eq!(versions, vec![("key#a", 9), ("key#b", 0)]);
    }

    #[test]
    fn a_subject_expected_absent_but_not_returned_is_left_to_a_read() {
        let out = conflict_from_reasons(
            &[write("key#a", 0), write("tenant#t", 1)],
            vec![
                reason("ConditionalCheckFailed", None),
                reason("TransactionConflict", None),
            ],
        )
        .expect("a conflict");
        assert_eq!(out, SwapOutcome::Conflict(Vec::new()));
    }

    #[test]
    fn other_cancellations_fail_closed() {
        let r = conflict_from_reasons(
            &[write("key#a", 0), write("tenant#t", 1)],
            vec![reason("None", None), reason("ThrottlingError", None)],
        );
        assert!(matches!(r, Err(StoreError::Unavailable(m)) if m.contains("ThrottlingError")));
    }
}
