//! DynamoDB: tenants, client keys and the token pool.
//!
//! Records are mapped attribute by attribute with `serde_dynamo` (numbers as `N`, strings as
//! `S`, maps as `M`, lists as `L`, `SecretRef` as a map with a `kind` tag); `None` fields are
//! left out of the item rather than stored as `NULL`. Layouts are in this crate's README.

use crate::error::{ConfigError, transaction, unavailable, written, written_or};
use crate::{ENV_KEYS_TABLE, ENV_POOL_TABLE, ENV_TENANTS_TABLE, required};
use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::AttributeValue;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use tollgate_core::clock::EpochMs;
use tollgate_core::limits::Limits;
use tollgate_core::pool::{FailureCount, TokenChange};
use tollgate_core::ports::{KeyStore, OpCounter, PoolStore, StoreError, TenantStore};
use tollgate_core::provider::Usage;
use tollgate_core::records::{
    ClientKeyRecord, Policy, PoolConfig, PoolView, Strategy, Tenant, TokenRecord, TokenStatus,
};

/// Sort key of the pool's settings item, in the same partition as the pool's tokens.
/// A token may not use this id.
pub const CONFIG_SORT_KEY: &str = "#config";
/// The keys table's global secondary index on `tenant_id`.
pub const KEYS_BY_TENANT_INDEX: &str = "by_tenant";

const SERVICE: &str = "dynamodb";

type Item = HashMap<String, AttributeValue>;

/// The three table names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tables {
    /// Hash key `tenant_id` (S).
    pub tenants: String,
    /// Hash key `key_id` (S); GSI `by_tenant` with hash key `tenant_id`.
    pub keys: String,
    /// Hash key `pool` (S), range key `token_id` (S).
    pub pool: String,
}

impl Tables {
    /// Reads `TOLLGATE_TENANTS_TABLE`, `TOLLGATE_KEYS_TABLE` and `TOLLGATE_POOL_TABLE`.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(&|k| std::env::var(k).ok())
    }

    /// Same as [`Tables::from_env`] through a lookup function (tests, other config sources).
    pub fn from_vars(var: &impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        Ok(Self {
            tenants: required(var, ENV_TENANTS_TABLE)?,
            keys: required(var, ENV_KEYS_TABLE)?,
            pool: required(var, ENV_POOL_TABLE)?,
        })
    }
}

/// [`TenantStore`], [`KeyStore`] and [`PoolStore`] on DynamoDB.
///
/// Point reads (`get_tenant`, `get_key`, `load_pool`) are strongly consistent: a revocation or
/// a health change is visible to the next read that reaches the table.
#[derive(Debug, Clone)]
pub struct DynamoStore {
    client: Client,
    tables: Tables,
    pub ops: std::sync::Arc<OpCounter>,
}

impl DynamoStore {
    /// No network call.
    pub fn new(conf: &aws_config::SdkConfig, tables: Tables) -> Self {
        Self::from_client(Client::new(conf), tables)
    }

    pub fn from_client(client: Client, tables: Tables) -> Self {
        Self {
            client,
            tables,
            ops: Default::default(),
        }
    }

    pub fn tables(&self) -> &Tables {
        &self.tables
    }

    pub fn client(&self) -> &Client {
        &self.client
    }
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn to_item<T: Serialize>(what: &'static str, rec: &T) -> Result<Item, StoreError> {
    let mut item: Item = serde_dynamo::to_item(rec)
        .map_err(|e| StoreError::Corrupt(format!("{what} record does not encode: {e}")))?;
    // Absent optional fields are left out, not stored as NULL.
    item.retain(|_, v| !matches!(v, AttributeValue::Null(_)));
    Ok(item)
}

fn from_item<T: DeserializeOwned>(what: &'static str, item: Item) -> Result<T, StoreError> {
    serde_dynamo::from_item(item)
        .map_err(|e| StoreError::Corrupt(format!("{what} item does not decode: {e}")))
}

fn is_config(item: &Item) -> bool {
    matches!(item.get("token_id"), Some(AttributeValue::S(id)) if id == CONFIG_SORT_KEY)
}

/// The settings item of a pool.
#[derive(serde::Serialize, serde::Deserialize)]
struct ConfigItem {
    pool: String,
    token_id: String,
    strategy: Strategy,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tenant_concurrency: Option<u64>,
}

impl DynamoStore {
    /// Conditional put; `AlreadyExists` when an item with `key_attr` is there.
    async fn put_new(
        &self,
        table: &str,
        key_attr: &str,
        item: Item,
        op: &'static str,
    ) -> Result<(), StoreError> {
        self.ops.write();
        let r = self
            .client
            .put_item()
            .table_name(table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(#k)")
            .expression_attribute_names("#k", key_attr)
            .send()
            .await;
        written_or(r, StoreError::AlreadyExists, SERVICE, op)
    }

    async fn get(
        &self,
        table: &str,
        key: Item,
        op: &'static str,
    ) -> Result<Option<Item>, StoreError> {
        self.ops.read();
        let out = self
            .client
            .get_item()
            .table_name(table)
            .set_key(Some(key))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| unavailable(SERVICE, op, &e))?;
        Ok(out.item)
    }

    /// Every item of a table (operator paths), one read per page.
    async fn scan_all(
        &self,
        table: &str,
        filter: Option<(&str, Item)>,
        op: &'static str,
    ) -> Result<Vec<Item>, StoreError> {
        let mut items = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            self.ops.read();
            let mut req = self
                .client
                .scan()
                .table_name(table)
                .set_exclusive_start_key(start.take());
            if let Some((expr, values)) = &filter {
                req = req
                    .filter_expression(*expr)
                    .set_expression_attribute_values(Some(values.clone()));
            }
            let out = req.send().await.map_err(|e| unavailable(SERVICE, op, &e))?;
            items.extend(out.items.unwrap_or_default());
            match out.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => return Ok(items),
            }
        }
    }

    /// Every item of one partition (or GSI partition), one read per page.
    async fn query_all(
        &self,
        table: &str,
        index: Option<&str>,
        hash_attr: &str,
        hash_value: &str,
        op: &'static str,
    ) -> Result<Vec<Item>, StoreError> {
        let mut items = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            self.ops.read();
            let out = self
                .client
                .query()
                .table_name(table)
                .set_index_name(index.map(str::to_owned))
                // GSIs only support eventually consistent reads.
                .consistent_read(index.is_none())
                .key_condition_expression("#h = :h")
                .expression_attribute_names("#h", hash_attr)
                .expression_attribute_values(":h", s(hash_value))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| unavailable(SERVICE, op, &e))?;
            items.extend(out.items.unwrap_or_default());
            match out.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => return Ok(items),
            }
        }
    }

    fn token_key(&self, pool: &str, token_id: &str) -> Item {
        pool_token_key(pool, token_id)
    }
}

/// Sets or removes the `dlp_policy` attribute of one item, which must exist.
async fn set_policy_attr(
    store: &DynamoStore,
    table: &str,
    key_name: &str,
    key_value: &str,
    policy: Option<&Policy>,
    what: &'static str,
) -> Result<(), StoreError> {
    set_attr(
        store,
        table,
        key_name,
        key_value,
        "dlp_policy",
        policy,
        what,
    )
    .await
}

/// Sets (or with `None` removes) one attribute of an existing item; `NotFound` when the item
/// does not exist.
async fn set_attr<T: serde::Serialize>(
    store: &DynamoStore,
    table: &str,
    key_name: &str,
    key_value: &str,
    attr: &str,
    value: Option<&T>,
    what: &'static str,
) -> Result<(), StoreError> {
    store.ops.write();
    let cond = format!("attribute_exists({key_name})");
    let mut req = store
        .client
        .update_item()
        .table_name(table)
        .key(key_name, s(key_value))
        .condition_expression(cond);
    req = req.expression_attribute_names("#a", attr);
    req = match value {
        Some(p) => {
            let v: AttributeValue = serde_dynamo::to_attribute_value(p).map_err(|e| {
                StoreError::Corrupt(format!("{attr} does not map to DynamoDB: {e}"))
            })?;
            req.update_expression("SET #a = :p")
                .expression_attribute_values(":p", v)
        }
        None => req.update_expression("REMOVE #a"),
    };
    written_or(req.send().await, StoreError::NotFound, SERVICE, what)
}

#[async_trait]
impl TenantStore for DynamoStore {
    async fn get_tenant(&self, tenant_id: &str) -> Result<Option<Tenant>, StoreError> {
        let key = HashMap::from([("tenant_id".to_owned(), s(tenant_id))]);
        self.get(&self.tables.tenants, key, "GetItem(tenants)")
            .await?
            .map(|i| from_item("tenant", i))
            .transpose()
    }

    async fn put_tenant(&self, tenant: &Tenant) -> Result<(), StoreError> {
        let item = to_item("tenant", tenant)?;
        self.put_new(&self.tables.tenants, "tenant_id", item, "PutItem(tenants)")
            .await
    }

    async fn list_tenants(&self) -> Result<Vec<Tenant>, StoreError> {
        let mut tenants: Vec<Tenant> = self
            .scan_all(&self.tables.tenants, None, "Scan(tenants)")
            .await?
            .into_iter()
            .map(|i| from_item("tenant", i))
            .collect::<Result<_, _>>()?;
        // Same order as the in-memory store (scan order is arbitrary).
        tenants.sort_by(|a, b| a.tenant_id.cmp(&b.tenant_id));
        Ok(tenants)
    }

    async fn set_tenant_policy(
        &self,
        tenant_id: &str,
        policy: Option<&Policy>,
    ) -> Result<(), StoreError> {
        set_policy_attr(
            self,
            &self.tables.tenants,
            "tenant_id",
            tenant_id,
            policy,
            "UpdateItem(tenants policy)",
        )
        .await
    }

    async fn set_tenant_limits(
        &self,
        tenant_id: &str,
        limits: Option<&Limits>,
    ) -> Result<(), StoreError> {
        let t = &self.tables.tenants;
        let what = "UpdateItem(tenants limits)";
        set_attr(self, t, "tenant_id", tenant_id, "limits", limits, what).await
    }

    async fn set_tenant_key_limits(
        &self,
        tenant_id: &str,
        limits: Option<&Limits>,
    ) -> Result<(), StoreError> {
        let t = &self.tables.tenants;
        let what = "UpdateItem(tenants key_limits)";
        set_attr(self, t, "tenant_id", tenant_id, "key_limits", limits, what).await
    }
}

#[async_trait]
impl KeyStore for DynamoStore {
    async fn get_key(&self, key_id: &str) -> Result<Option<ClientKeyRecord>, StoreError> {
        let key = HashMap::from([("key_id".to_owned(), s(key_id))]);
        self.get(&self.tables.keys, key, "GetItem(keys)")
            .await?
            .map(|i| from_item("client key", i))
            .transpose()
    }

    async fn put_key(&self, rec: &ClientKeyRecord) -> Result<(), StoreError> {
        let item = to_item("client key", rec)?;
        self.put_new(&self.tables.keys, "key_id", item, "PutItem(keys)")
            .await
    }

    async fn revoke_key(&self, key_id: &str, at: EpochMs) -> Result<(), StoreError> {
        self.ops.write();
        let r = self
            .client
            .update_item()
            .table_name(&self.tables.keys)
            .key("key_id", s(key_id))
            .update_expression("SET #st = :revoked, revoked_at = :at")
            .condition_expression("attribute_exists(key_id)")
            .expression_attribute_names("#st", "status")
            .expression_attribute_values(":revoked", s("revoked"))
            .expression_attribute_values(":at", n(at))
            .send()
            .await;
        written_or(r, StoreError::NotFound, SERVICE, "UpdateItem(keys)")
    }

    async fn set_key_policy(
        &self,
        key_id: &str,
        policy: Option<&Policy>,
    ) -> Result<(), StoreError> {
        set_policy_attr(
            self,
            &self.tables.keys,
            "key_id",
            key_id,
            policy,
            "UpdateItem(keys policy)",
        )
        .await
    }

    async fn set_key_suspended(
        &self,
        key_id: &str,
        reason: Option<&str>,
        at: EpochMs,
    ) -> Result<bool, StoreError> {
        self.ops.write();
        let update = self
            .client
            .update_item()
            .table_name(&self.tables.keys)
            .key("key_id", s(key_id))
            .expression_attribute_names("#st", "status");
        let update = match reason {
            Some(r) => update
                .update_expression(
                    "SET #st = :suspended, suspended_at = :at, suspended_reason = :r",
                )
                .condition_expression("attribute_exists(key_id) AND #st = :active")
                .expression_attribute_values(":r", s(r))
                .expression_attribute_values(":at", n(at)),
            None => update
                .update_expression("SET #st = :active REMOVE suspended_at, suspended_reason")
                .condition_expression("attribute_exists(key_id) AND #st = :suspended"),
        };
        let r = update
            .expression_attribute_values(":active", s("active"))
            .expression_attribute_values(":suspended", s("suspended"))
            .send()
            .await;
        if written(r, SERVICE, "UpdateItem(keys status)")? {
            return Ok(true);
        }
        // Not in the starting state, or absent: tell them apart with one read.
        match self.get_key(key_id).await? {
            Some(_) => Ok(false),
            None => Err(StoreError::NotFound),
        }
    }

    async fn set_key_limits(
        &self,
        key_id: &str,
        limits: Option<&Limits>,
    ) -> Result<(), StoreError> {
        let t = &self.tables.keys;
        let what = "UpdateItem(keys limits)";
        set_attr(self, t, "key_id", key_id, "limits", limits, what).await
    }

    async fn rotate_key(
        &self,
        old_key_id: &str,
        old_expires_at: EpochMs,
        successor: &ClientKeyRecord,
    ) -> Result<bool, StoreError> {
        use aws_sdk_dynamodb::types::{Put, TransactWriteItem, Update};
        let corrupt = |e: aws_sdk_dynamodb::error::BuildError| {
            StoreError::Corrupt(format!("key rotation does not build: {e}"))
        };
        let put = Put::builder()
            .table_name(&self.tables.keys)
            .set_item(Some(to_item("client key", successor)?))
            .condition_expression("attribute_not_exists(key_id)")
            .build()
            .map_err(corrupt)?;
        let update = Update::builder()
            .table_name(&self.tables.keys)
            .key("key_id", s(old_key_id))
            .update_expression("SET rotated_to = :new, expires_at = :exp")
            .condition_expression(
                "attribute_exists(key_id) AND #st = :active AND attribute_not_exists(rotated_to) \
                 AND (attribute_not_exists(canary) OR canary = :no)",
            )
            .expression_attribute_names("#st", "status")
            .expression_attribute_values(":no", AttributeValue::Bool(false))
            .expression_attribute_values(":new", s(&successor.key_id))
            .expression_attribute_values(":exp", n(old_expires_at))
            .expression_attribute_values(":active", s("active"))
            .build()
            .map_err(corrupt)?;
        self.ops.write();
        let r = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(put).build())
            .transact_items(TransactWriteItem::builder().update(update).build())
            .send()
            .await;
        let Some(reasons) = transaction(r, SERVICE, "TransactWriteItems(keys rotate)")? else {
            return Ok(true);
        };
        let code = |i: usize| reasons.get(i).and_then(|r| r.code.as_deref());
        // The old key's condition first (as the in-memory store decides): absent → NotFound,
        // present but not active or already rotated → false; then a taken successor id.
        if code(1) == Some("ConditionalCheckFailed") {
            return match self.get_key(old_key_id).await? {
                Some(_) => Ok(false),
                None => Err(StoreError::NotFound),
            };
        }
        if code(0) == Some("ConditionalCheckFailed") {
            return Err(StoreError::AlreadyExists);
        }
        let kind = code(0)
            .filter(|c| *c != "None")
            .or(code(1))
            .unwrap_or("TransactionCanceled")
            .to_owned();
        tracing::warn!(service = SERVICE, op = "TransactWriteItems(keys rotate)", error.kind = %kind, "AWS call failed");
        Err(StoreError::Unavailable(format!(
            "{SERVICE} TransactWriteItems(keys rotate): {kind}"
        )))
    }

    async fn list_keys(&self, tenant_id: Option<&str>) -> Result<Vec<ClientKeyRecord>, StoreError> {
        let items = match tenant_id {
            Some(t) => {
                self.query_all(
                    &self.tables.keys,
                    Some(KEYS_BY_TENANT_INDEX),
                    "tenant_id",
                    t,
                    "Query(keys.by_tenant)",
                )
                .await?
            }
            None => self.scan_all(&self.tables.keys, None, "Scan(keys)").await?,
        };
        let mut keys: Vec<ClientKeyRecord> = items
            .into_iter()
            .map(|i| from_item("client key", i))
            .collect::<Result<_, _>>()?;
        keys.sort_by(|a, b| a.key_id.cmp(&b.key_id));
        Ok(keys)
    }
}

/// One request's usage on a pool token: the update, its condition (a token deleted
/// meanwhile is not recreated as a bare counter item) and its values. Shared by
/// [`PoolStore::record_usage`] and the limit settlement that carries it
/// ([`crate::DynamoLimitStore`]).
pub(crate) const USAGE_UPDATE: &str =
    "ADD requests :one, tokens_in :in, tokens_out :out SET last_used_at = :at";
pub(crate) const USAGE_CONDITION: &str = "attribute_exists(token_id)";

pub(crate) fn usage_values(usage: Usage, at: EpochMs) -> Item {
    HashMap::from([
        (":one".to_owned(), n(1)),
        (":in".to_owned(), n(usage.input)),
        (":out".to_owned(), n(usage.output)),
        (":at".to_owned(), n(at)),
    ])
}

/// The key of a token's item in the pool table.
pub(crate) fn pool_token_key(pool: &str, token_id: &str) -> Item {
    HashMap::from([
        ("pool".to_owned(), s(pool)),
        ("token_id".to_owned(), s(token_id)),
    ])
}

#[async_trait]
impl PoolStore for DynamoStore {
    async fn load_pool(&self, pool: &str) -> Result<PoolView, StoreError> {
        let items = self
            .query_all(&self.tables.pool, None, "pool", pool, "Query(pool)")
            .await?;
        let mut view = PoolView::default();
        for item in items {
            if is_config(&item) {
                let cfg: ConfigItem = from_item("pool settings", item)?;
                view.strategy = cfg.strategy;
                view.tenant_concurrency = cfg.tenant_concurrency;
            } else {
                view.tokens.push(from_item("token", item)?);
            }
        }
        Ok(view)
    }

    async fn list_tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        let values = HashMap::from([(":c".to_owned(), s(CONFIG_SORT_KEY))]);
        self.scan_all(
            &self.tables.pool,
            Some(("token_id <> :c", values)),
            "Scan(pool)",
        )
        .await?
        .into_iter()
        .map(|i| from_item("token", i))
        .collect::<Result<Vec<TokenRecord>, _>>()
        .map(|mut v| {
            v.sort_by(|a, b| (&a.pool, &a.token_id).cmp(&(&b.pool, &b.token_id)));
            v
        })
    }

    async fn list_pool_configs(&self) -> Result<Vec<PoolConfig>, StoreError> {
        let values = HashMap::from([(":c".to_owned(), s(CONFIG_SORT_KEY))]);
        self.scan_all(
            &self.tables.pool,
            Some(("token_id = :c", values)),
            "Scan(pool)",
        )
        .await?
        .into_iter()
        .map(|i| {
            from_item::<ConfigItem>("pool settings", i).map(|c| PoolConfig {
                pool: c.pool,
                strategy: c.strategy,
                tenant_concurrency: c.tenant_concurrency,
            })
        })
        .collect::<Result<Vec<PoolConfig>, _>>()
        .map(|mut v| {
            v.sort_by(|a, b| a.pool.cmp(&b.pool));
            v
        })
    }

    async fn set_pool_config(&self, cfg: &PoolConfig) -> Result<(), StoreError> {
        let item = to_item(
            "pool settings",
            &ConfigItem {
                pool: cfg.pool.clone(),
                token_id: CONFIG_SORT_KEY.to_owned(),
                strategy: cfg.strategy,
                tenant_concurrency: cfg.tenant_concurrency,
            },
        )?;
        self.ops.write();
        self.client
            .put_item()
            .table_name(&self.tables.pool)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| unavailable(SERVICE, "PutItem(pool settings)", &e))?;
        Ok(())
    }

    async fn put_token(&self, t: &TokenRecord) -> Result<(), StoreError> {
        if t.token_id == CONFIG_SORT_KEY {
            // The pool's settings item holds that sort key.
            return Err(StoreError::AlreadyExists);
        }
        let item = to_item("token", t)?;
        self.put_new(&self.tables.pool, "token_id", item, "PutItem(pool)")
            .await
    }

    async fn set_token_status(
        &self,
        pool: &str,
        token_id: &str,
        status: TokenStatus,
    ) -> Result<(), StoreError> {
        if token_id == CONFIG_SORT_KEY {
            return Err(StoreError::NotFound);
        }
        let mut req = self
            .client
            .update_item()
            .table_name(&self.tables.pool)
            .set_key(Some(self.token_key(pool, token_id)))
            .condition_expression("attribute_exists(token_id)")
            .expression_attribute_names("#st", "status")
            .expression_attribute_values(":st", s(status.as_str()))
            .expression_attribute_values(":one", n(1));
        req = if status == TokenStatus::Active {
            req.update_expression(
                "SET #st = :st, version = version + :one, consecutive_failures = :zero \
                 REMOVE cooldown_until",
            )
            .expression_attribute_values(":zero", n(0))
        } else {
            req.update_expression("SET #st = :st, version = version + :one")
        };
        self.ops.write();
        written_or(
            req.send().await,
            StoreError::NotFound,
            SERVICE,
            "UpdateItem(pool status)",
        )
    }

    async fn delete_token(&self, pool: &str, token_id: &str) -> Result<(), StoreError> {
        if token_id == CONFIG_SORT_KEY {
            return Err(StoreError::NotFound);
        }
        self.ops.write();
        let r = self
            .client
            .delete_item()
            .table_name(&self.tables.pool)
            .set_key(Some(self.token_key(pool, token_id)))
            .condition_expression("attribute_exists(token_id)")
            .send()
            .await;
        written_or(r, StoreError::NotFound, SERVICE, "DeleteItem(pool)")
    }

    async fn apply_change(
        &self,
        pool: &str,
        token_id: &str,
        expected_version: u64,
        change: &TokenChange,
    ) -> Result<bool, StoreError> {
        if token_id == CONFIG_SORT_KEY {
            return Ok(false);
        }
        // Every status change bumps `version`, so a matching version also means the status
        // is the one the change was computed from: one conditional write decides.
        written(
            self.try_apply(pool, token_id, expected_version, change)
                .await,
            SERVICE,
            "UpdateItem(pool health)",
        )
    }

    async fn record_usage(
        &self,
        pool: &str,
        token_id: &str,
        usage: Usage,
        at: EpochMs,
    ) -> Result<(), StoreError> {
        if token_id == CONFIG_SORT_KEY {
            return Ok(());
        }
        self.ops.write();
        let r = self
            .client
            .update_item()
            .table_name(&self.tables.pool)
            .set_key(Some(self.token_key(pool, token_id)))
            .update_expression(USAGE_UPDATE)
            // A token deleted meanwhile is not recreated as a bare counter item.
            .condition_expression(USAGE_CONDITION)
            .set_expression_attribute_values(Some(usage_values(usage, at)))
            .send()
            .await;
        written(r, SERVICE, "UpdateItem(pool usage)").map(|_| ())
    }
}

impl DynamoStore {
    /// One conditional UpdateItem applying `change` (see `tollgate_core::pool::apply`).
    async fn try_apply(
        &self,
        pool: &str,
        token_id: &str,
        expected_version: u64,
        change: &TokenChange,
    ) -> Result<(), SdkError<UpdateItemError>> {
        let mut set = vec!["#st = :st"];
        let mut remove = Vec::new();
        let mut add = Vec::new();
        let mut values: Item = HashMap::from([
            (":st".to_owned(), s(change.status.as_str())),
            (":expected".to_owned(), n(expected_version)),
        ]);
        if change.bump_version {
            set.push("version = version + :one");
        }
        let condition = "attribute_exists(token_id) AND version = :expected";
        match change.cooldown_until {
            Some(c) => {
                set.push("cooldown_until = :cool");
                values.insert(":cool".to_owned(), n(c));
            }
            None => remove.push("cooldown_until"),
        }
        if let Some(err) = change.last_error {
            set.push("last_error = :err");
            values.insert(":err".to_owned(), s(err));
        }
        match change.failures {
            FailureCount::Reset => {
                set.push("consecutive_failures = :zero");
                values.insert(":zero".to_owned(), n(0));
            }
            FailureCount::Increment => {
                add.push("consecutive_failures :one");
                add.push("total_failures :one");
            }
        }
        if change.bump_version || change.failures == FailureCount::Increment {
            values.insert(":one".to_owned(), n(1));
        }
        let mut expr = format!("SET {}", set.join(", "));
        if !remove.is_empty() {
            expr.push_str(&format!(" REMOVE {}", remove.join(", ")));
        }
        if !add.is_empty() {
            expr.push_str(&format!(" ADD {}", add.join(", ")));
        }
        self.ops.write();
        self.client
            .update_item()
            .table_name(&self.tables.pool)
            .set_key(Some(self.token_key(pool, token_id)))
            .update_expression(expr)
            .condition_expression(condition)
            .expression_attribute_names("#st", "status")
            .set_expression_attribute_values(Some(values))
            .send()
            .await
            .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_name_the_missing_variable() {
        let err = Tables::from_vars(&|k| (k != ENV_KEYS_TABLE).then(|| "t".to_owned()));
        assert_eq!(err, Err(ConfigError::MissingVar(ENV_KEYS_TABLE)));
        assert!(
            ConfigError::MissingVar(ENV_KEYS_TABLE)
                .to_string()
                .contains("TOLLGATE_KEYS_TABLE")
        );
    }

    #[test]
    fn none_fields_are_left_out_and_numbers_are_numbers() {
        let t = TokenRecord {
            weight: 3,
            requests: 7,
            ..TokenRecord::new(
                "t1",
                "p",
                tollgate_core::records::ProviderKind::Openai,
                "http://x/v1",
                tollgate_core::records::SecretRef::KmsBlob {
                    ciphertext_b64: "AAAA".into(),
                    tenant_id: "acme".into(),
                },
                "ops",
                1,
            )
        };
        let item = to_item("token", &t).expect("encode");
        assert!(!item.contains_key("cooldown_until"));
        assert_eq!(item.get("requests"), Some(&n(7)));
        assert_eq!(item.get("status"), Some(&s("active")));
        match item.get("secret") {
            Some(AttributeValue::M(m)) => assert_eq!(m.get("kind"), Some(&s("kms_blob"))),
            other => panic!("secret is not a map: {other:?}"),
        }
        assert_eq!(from_item::<TokenRecord>("token", item).expect("decode"), t);
    }
}
