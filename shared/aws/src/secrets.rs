//! Secrets Manager: the pepper and pool token values.
//!
//! Reads always ask for stage `AWSCURRENT` explicitly: during a rotation a secret also has an
//! `AWSPENDING` version, and the local emulator keeps answering a stage-less read with the old
//! value after the stage moves.

use crate::error::unavailable;
use async_trait::async_trait;
use aws_sdk_secretsmanager::Client;
use tollgate_core::ports::{OpCounter, Secret, SecretStore, StoreError};

const SERVICE: &str = "secretsmanager";
/// The stage every read asks for.
pub const AWSCURRENT: &str = "AWSCURRENT";

/// [`SecretStore`] on Secrets Manager.
#[derive(Debug, Clone)]
pub struct SecretsManagerStore {
    client: Client,
    kms_key_id: Option<String>,
    pub ops: std::sync::Arc<OpCounter>,
}

impl SecretsManagerStore {
    /// No network call.
    pub fn new(conf: &aws_config::SdkConfig) -> Self {
        Self::from_client(Client::new(conf))
    }

    pub fn from_client(client: Client) -> Self {
        Self {
            client,
            kms_key_id: None,
            ops: Default::default(),
        }
    }

    /// Secrets this store creates are encrypted with this customer managed key (id, ARN or
    /// alias) instead of the account's `aws/secretsmanager` key.
    pub fn with_kms_key(mut self, key_id: impl Into<String>) -> Self {
        self.kms_key_id = Some(key_id.into());
        self
    }

    pub fn client(&self) -> &Client {
        &self.client
    }
}

#[async_trait]
impl SecretStore for SecretsManagerStore {
    async fn get_secret(&self, secret_id: &str) -> Result<Secret, StoreError> {
        self.ops.read();
        let out = self
            .client
            .get_secret_value()
            .secret_id(secret_id)
            .version_stage(AWSCURRENT)
            .send()
            .await
            .map_err(|e| match e.as_service_error() {
                Some(se) if se.is_resource_not_found_exception() => StoreError::NotFound,
                _ => unavailable(SERVICE, "GetSecretValue", &e),
            })?;
        out.secret_string
            .map(Secret::new)
            .ok_or_else(|| StoreError::Corrupt("secret has no string value".into()))
    }

    async fn put_secret(&self, secret_id: &str, value: &Secret) -> Result<(), StoreError> {
        self.ops.write();
        let created = self
            .client
            .create_secret()
            .name(secret_id)
            .secret_string(value.expose())
            .set_kms_key_id(self.kms_key_id.clone())
            .send()
            .await;
        match created {
            Ok(_) => return Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|se| se.is_resource_exists_exception()) => {}
            Err(e) => return Err(unavailable(SERVICE, "CreateSecret", &e)),
        }
        // It exists: add a version, which becomes AWSCURRENT.
        self.ops.write();
        self.client
            .put_secret_value()
            .secret_id(secret_id)
            .secret_string(value.expose())
            .send()
            .await
            .map_err(|e| match e.as_service_error() {
                Some(se) if se.is_resource_not_found_exception() => StoreError::NotFound,
                _ => unavailable(SERVICE, "PutSecretValue", &e),
            })?;
        Ok(())
    }

    async fn delete_secret(&self, secret_id: &str) -> Result<(), StoreError> {
        self.ops.write();
        self.client
            .delete_secret()
            .secret_id(secret_id)
            .force_delete_without_recovery(true)
            .send()
            .await
            .map_err(|e| match e.as_service_error() {
                Some(se) if se.is_resource_not_found_exception() => StoreError::NotFound,
                _ => unavailable(SERVICE, "DeleteSecret", &e),
            })?;
        Ok(())
    }
}
