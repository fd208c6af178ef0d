//! DynamoDB: the OIDC issuers the operator trusts ([`IssuerStore`]).
//!
//! One table, hash key `issuer` (S): the exact `iss` value, so the proxy finds a token's
//! issuer with one strongly consistent GetItem. The record is mapped attribute by attribute
//! with `serde_dynamo`, like the other records (layout in this crate's README). A table of its
//! own rather than items in the tenants or keys table: issuers are few, operator-written and
//! read by the proxy only through GetItem, so its IAM grant can be exactly that one table
//! (`dynamodb:GetItem`), and no scan of tenants or keys ever meets an issuer item.

use crate::error::{ConfigError, unavailable, written_or};
use crate::{ENV_ISSUERS_TABLE, required};
use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;
use std::collections::HashMap;
use tollgate_core::identity::IssuerRecord;
use tollgate_core::ports::{IssuerStore, OpCounter, StoreError};

const SERVICE: &str = "dynamodb";
/// The hash key: the record's own `issuer` field.
const HASH_KEY: &str = "issuer";

type Item = HashMap<String, AttributeValue>;

/// [`IssuerStore`] on one DynamoDB table (hash key `issuer`).
#[derive(Debug, Clone)]
pub struct DynamoIssuerStore {
    client: Client,
    table: String,
    pub ops: std::sync::Arc<OpCounter>,
}

impl DynamoIssuerStore {
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

    /// Reads `TOLLGATE_ISSUERS_TABLE` through `var`.
    pub fn table_from_vars(var: &impl Fn(&str) -> Option<String>) -> Result<String, ConfigError> {
        required(var, ENV_ISSUERS_TABLE)
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    fn key(issuer: &str) -> Item {
        HashMap::from([(HASH_KEY.to_owned(), AttributeValue::S(issuer.to_owned()))])
    }
}

fn decode(item: Item) -> Result<IssuerRecord, StoreError> {
    serde_dynamo::from_item(item)
        .map_err(|e| StoreError::Corrupt(format!("issuer item does not decode: {e}")))
}

#[async_trait]
impl IssuerStore for DynamoIssuerStore {
    async fn get_issuer(&self, issuer: &str) -> Result<Option<IssuerRecord>, StoreError> {
        self.ops.read();
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(issuer)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| unavailable(SERVICE, "GetItem(issuers)", &e))?;
        out.item.map(decode).transpose()
    }

    async fn put_issuer(&self, rec: &IssuerRecord) -> Result<(), StoreError> {
        let mut item: Item = serde_dynamo::to_item(rec)
            .map_err(|e| StoreError::Corrupt(format!("issuer record does not encode: {e}")))?;
        // Absent optional fields are left out, not stored as NULL.
        item.retain(|_, v| !matches!(v, AttributeValue::Null(_)));
        self.ops.write();
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| unavailable(SERVICE, "PutItem(issuers)", &e))?;
        Ok(())
    }

    async fn list_issuers(&self) -> Result<Vec<IssuerRecord>, StoreError> {
        let mut out = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            self.ops.read();
            let page = self
                .client
                .scan()
                .table_name(&self.table)
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| unavailable(SERVICE, "Scan(issuers)", &e))?;
            for item in page.items.unwrap_or_default() {
                out.push(decode(item)?);
            }
            match page.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => break,
            }
        }
        // Same order as the in-memory store (scan order is arbitrary).
        out.sort_by(|a, b| a.issuer.cmp(&b.issuer));
        Ok(out)
    }

    async fn delete_issuer(&self, issuer: &str) -> Result<(), StoreError> {
        self.ops.write();
        let r = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(issuer)))
            .condition_expression("attribute_exists(#k)")
            .expression_attribute_names("#k", HASH_KEY)
            .send()
            .await;
        written_or(r, StoreError::NotFound, SERVICE, "DeleteItem(issuers)")
    }
}
