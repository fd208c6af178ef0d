//! KMS envelope for tenant-owned provider keys.
//!
//! A tenant's provider API key is encrypted directly with KMS `Encrypt` under the customer
//! managed key, with encryption context `{"tenant": <tenant_id>}`, and stored base64-encoded in
//! the token record (`SecretRef::KmsBlob`). Provider API keys are far below KMS's 4 KB
//! plaintext limit, so there is no separate data key: one `Decrypt` call recovers the value,
//! and the context binds the ciphertext to its tenant (a blob copied to another tenant's
//! token does not decrypt). CloudTrail logs the context with every `Decrypt`.

use crate::error::unavailable;
use async_trait::async_trait;
use aws_sdk_kms::Client;
use aws_sdk_kms::primitives::Blob;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use tollgate_core::ports::{Decrypter, OpCounter, Secret, StoreError, TenantEncrypter};

const SERVICE: &str = "kms";
/// The encryption context key naming the tenant.
pub const CONTEXT_TENANT: &str = "tenant";
/// KMS's limit on `Encrypt` plaintext.
pub const MAX_PLAINTEXT: usize = 4096;

/// [`Decrypter`] on KMS, plus `encrypt` for the CLI.
#[derive(Debug, Clone)]
pub struct KmsEnvelope {
    client: Client,
    decrypt_key_id: Option<String>,
    pub ops: std::sync::Arc<OpCounter>,
}

impl KmsEnvelope {
    /// No network call.
    pub fn new(conf: &aws_config::SdkConfig) -> Self {
        Self::from_client(Client::new(conf))
    }

    pub fn from_client(client: Client) -> Self {
        Self {
            client,
            decrypt_key_id: None,
            ops: Default::default(),
        }
    }

    /// Decrypt only ciphertexts made under this key (id or ARN): a blob made under any other
    /// key the caller may use is refused.
    pub fn with_decrypt_key(mut self, key_id: impl Into<String>) -> Self {
        self.decrypt_key_id = Some(key_id.into());
        self
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Encrypts `plaintext` under `key_id` (id, ARN or alias) bound to `tenant_id`; returns
    /// the ciphertext as standard base64.
    pub async fn encrypt(
        &self,
        key_id: &str,
        plaintext: &Secret,
        tenant_id: &str,
    ) -> Result<String, StoreError> {
        if plaintext.expose().len() > MAX_PLAINTEXT {
            return Err(StoreError::Corrupt(format!(
                "value is longer than KMS's {MAX_PLAINTEXT}-byte limit"
            )));
        }
        self.ops.write();
        let out = self
            .client
            .encrypt()
            .key_id(key_id)
            .plaintext(Blob::new(plaintext.expose().as_bytes()))
            .encryption_context(CONTEXT_TENANT, tenant_id)
            .send()
            .await
            .map_err(|e| unavailable(SERVICE, "Encrypt", &e))?;
        let blob = out
            .ciphertext_blob
            .ok_or_else(|| StoreError::Unavailable("kms Encrypt: no ciphertext returned".into()))?;
        Ok(STANDARD.encode(blob.as_ref()))
    }
}

#[async_trait]
impl Decrypter for KmsEnvelope {
    async fn decrypt(&self, ciphertext_b64: &str, tenant_id: &str) -> Result<Secret, StoreError> {
        let blob = STANDARD
            .decode(ciphertext_b64.trim())
            .map_err(|_| StoreError::Corrupt("ciphertext is not base64".into()))?;
        self.ops.read();
        let out = self
            .client
            .decrypt()
            .ciphertext_blob(Blob::new(blob))
            .encryption_context(CONTEXT_TENANT, tenant_id)
            .set_key_id(self.decrypt_key_id.clone())
            .send()
            .await
            .map_err(|e| match e.as_service_error() {
                // Wrong tenant, wrong key, or a damaged blob: the stored value is unusable.
                Some(se)
                    if se.is_invalid_ciphertext_exception() || se.is_incorrect_key_exception() =>
                {
                    StoreError::Corrupt("ciphertext does not decrypt for this tenant".into())
                }
                _ => unavailable(SERVICE, "Decrypt", &e),
            })?;
        let bytes = out
            .plaintext
            .ok_or_else(|| StoreError::Unavailable("kms Decrypt: no plaintext returned".into()))?
            .into_inner();
        String::from_utf8(bytes)
            .map(Secret::new)
            .map_err(|_| StoreError::Corrupt("decrypted value is not UTF-8".into()))
    }
}

/// [`TenantEncrypter`] on KMS: [`KmsEnvelope::encrypt`] under one key (id, ARN or alias; the
/// deployment's `TOLLGATE_KMS_KEY_ID`).
#[derive(Debug, Clone)]
pub struct KmsTenantKeys {
    pub kms: KmsEnvelope,
    pub key_id: String,
}

#[async_trait]
impl TenantEncrypter for KmsTenantKeys {
    async fn encrypt(&self, plaintext: &Secret, tenant_id: &str) -> Result<String, StoreError> {
        self.kms.encrypt(&self.key_id, plaintext, tenant_id).await
    }

    /// KMS `ReEncrypt` to `key_id` with the tenant context on both sides.
    async fn reencrypt(&self, ciphertext_b64: &str, tenant_id: &str) -> Result<String, StoreError> {
        let blob = STANDARD
            .decode(ciphertext_b64.trim())
            .map_err(|_| StoreError::Corrupt("ciphertext is not base64".into()))?;
        self.kms.ops.write();
        let out = self
            .kms
            .client
            .re_encrypt()
            .ciphertext_blob(Blob::new(blob))
            .source_encryption_context(CONTEXT_TENANT, tenant_id)
            .destination_key_id(&self.key_id)
            .destination_encryption_context(CONTEXT_TENANT, tenant_id)
            .send()
            .await
            .map_err(|e| match e.as_service_error() {
                Some(se)
                    if se.is_invalid_ciphertext_exception() || se.is_incorrect_key_exception() =>
                {
                    StoreError::Corrupt("ciphertext does not decrypt for this tenant".into())
                }
                _ => unavailable(SERVICE, "ReEncrypt", &e),
            })?;
        let blob = out.ciphertext_blob.ok_or_else(|| {
            StoreError::Unavailable("kms ReEncrypt: no ciphertext returned".into())
        })?;
        Ok(STANDARD.encode(blob.as_ref()))
    }
}
