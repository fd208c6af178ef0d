//! The providers' side of rotation over HTTP: [`HttpMinter`] implements the core's
//! [`Minter`] port.
//!
//! | call | OpenAI | Anthropic |
//! |---|---|---|
//! | mint (`openai_admin` only) | `POST {base}/organization/projects/{project}/service_accounts/{sa}/api_keys` `{name, expires_in_seconds}` → `{id, value}`, admin key as Bearer | — (its Admin API cannot create keys: staged mode) |
//! | test | `GET {base}/models`, the pending value as Bearer | `GET {base}/models`, the pending value as `x-api-key`, `anthropic-version` |
//! | probe (the sweep; [`Prober`](tollgate_core::sweep::Prober)) | `GET {base}/models`, the current value as Bearer | `GET {base}/models`, the current value as `x-api-key` |
//! | retire | `DELETE {base}/organization/projects/{project}/api_keys/{key}` | `POST {base}/organizations/api_keys/{key}` `{"status": "inactive"}`, admin key as `x-api-key` |
//!
//! `{base}` is the token's base URL (it includes `/v1`). Admin keys are read from Secrets
//! Manager when needed (the rotation function's role alone may read them) and never cached
//! beyond the call. No redirects are followed; every call has a timeout. 2xx is success; 429,
//! 5xx and transport failures are retryable; other statuses are refusals. A key already gone
//! (404 on retire) counts as retired. Never logs a key value.

use async_trait::async_trait;
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;
use tollgate_core::ports::{Secret, SecretStore, StoreError};
use tollgate_core::records::{ProviderKind, TokenRecord};
use tollgate_core::rotation::{Minted, Minter, ProviderError, RetireVia, RotationMode};
use tollgate_core::sweep::ProbeResult;

/// Environment: the secret holding the OpenAI Admin API key.
pub const ENV_OPENAI_ADMIN_SECRET: &str = "TOLLGATE_OPENAI_ADMIN_KEY_SECRET_ID";
/// Environment: the secret holding the Anthropic Admin API key.
pub const ENV_ANTHROPIC_ADMIN_SECRET: &str = "TOLLGATE_ANTHROPIC_ADMIN_KEY_SECRET_ID";
/// The `anthropic-version` header value.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";
const TIMEOUT: Duration = Duration::from_secs(10);

/// Minting, testing and retiring over HTTP.
pub struct HttpMinter {
    http: reqwest::Client,
    secrets: Arc<dyn SecretStore>,
    openai_admin_secret: Option<String>,
    anthropic_admin_secret: Option<String>,
}

#[derive(Deserialize)]
struct CreatedKey {
    id: String,
    value: String,
}

impl HttpMinter {
    pub fn new(
        secrets: Arc<dyn SecretStore>,
        openai_admin_secret: Option<String>,
        anthropic_admin_secret: Option<String>,
    ) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(TIMEOUT)
            .connect_timeout(Duration::from_secs(3))
            .build()?;
        Ok(Self {
            http,
            secrets,
            openai_admin_secret,
            anthropic_admin_secret,
        })
    }

    async fn admin_key(&self, which: Option<&String>, name: &str) -> Result<Secret, ProviderError> {
        let id = which.ok_or_else(|| {
            ProviderError::NotConfigured(format!("no {name} admin key secret is configured"))
        })?;
        self.secrets.get_secret(id).await.map_err(|e| match e {
            StoreError::Unavailable(m) => ProviderError::Unavailable(m),
            other => ProviderError::NotConfigured(format!("{name} admin key secret: {other}")),
        })
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Result<reqwest::Response, ProviderError> {
        let res = req.send().await.map_err(|e| {
            ProviderError::Unavailable(if e.is_timeout() {
                "timeout".into()
            } else {
                "connection failed".into()
            })
        })?;
        let status = res.status();
        if status.is_success() {
            Ok(res)
        } else if status.as_u16() == 429 || status.is_server_error() {
            Err(ProviderError::Unavailable(format!(
                "status {}",
                status.as_u16()
            )))
        } else {
            Err(ProviderError::Rejected {
                status: status.as_u16(),
            })
        }
    }
}

/// Ids go into URL paths: provider ids are letters, digits, `_` and `-`.
fn path_id(id: &str) -> Result<&str, ProviderError> {
    if !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        Ok(id)
    } else {
        Err(ProviderError::NotConfigured(
            "an id is not a provider id (letters, digits, _ and -)".into(),
        ))
    }
}

fn base(t: &TokenRecord) -> &str {
    t.base_url.trim_end_matches('/')
}

fn gone(r: Result<reqwest::Response, ProviderError>) -> Result<(), ProviderError> {
    match r {
        Ok(_) | Err(ProviderError::Rejected { status: 404 }) => Ok(()),
        Err(e) => Err(e),
    }
}

#[async_trait]
impl Minter for HttpMinter {
    async fn mint(&self, token: &TokenRecord, name: &str) -> Result<Minted, ProviderError> {
        let Some(RotationMode::OpenaiAdmin {
            project_id,
            service_account_id,
            key_ttl_secs,
        }) = token.rotation.as_ref().map(|r| &r.mode)
        else {
            return Err(ProviderError::NotConfigured(
                "only openai_admin tokens are minted".into(),
            ));
        };
        let admin = self
            .admin_key(self.openai_admin_secret.as_ref(), "OpenAI")
            .await?;
        let url = format!(
            "{}/organization/projects/{}/service_accounts/{}/api_keys",
            base(token),
            path_id(project_id)?,
            path_id(service_account_id)?
        );
        let mut body = serde_json::json!({ "name": name });
        if let Some(ttl) = key_ttl_secs {
            body["expires_in_seconds"] = (*ttl).into();
        }
        let res = self
            .send(self.http.post(url).bearer_auth(admin.expose()).json(&body))
            .await?;
        let created: CreatedKey = res
            .json()
            .await
            .map_err(|_| ProviderError::Unavailable("unreadable key creation answer".into()))?;
        if created.value.trim().is_empty() {
            return Err(ProviderError::Unavailable(
                "the created key has no value".into(),
            ));
        }
        Ok(Minted {
            value: Secret::new(created.value),
            key_id: Some(created.id),
        })
    }

    async fn test(&self, token: &TokenRecord, value: &Secret) -> Result<(), ProviderError> {
        let url = format!("{}/models", base(token));
        let req = match token.provider {
            ProviderKind::Openai => self.http.get(url).bearer_auth(value.expose()),
            ProviderKind::Anthropic => self
                .http
                .get(url)
                .header("x-api-key", value.expose())
                .header("anthropic-version", ANTHROPIC_VERSION),
        };
        self.send(req).await.map(|_| ())
    }

    async fn retire(&self, token: &TokenRecord, key_id: &str) -> Result<(), ProviderError> {
        let Some(mode) = token.rotation.as_ref().map(|r| &r.mode) else {
            return Ok(());
        };
        match mode {
            RotationMode::OpenaiAdmin { project_id, .. } => {
                let admin = self
                    .admin_key(self.openai_admin_secret.as_ref(), "OpenAI")
                    .await?;
                let url = format!(
                    "{}/organization/projects/{}/api_keys/{}",
                    base(token),
                    path_id(project_id)?,
                    path_id(key_id)?
                );
                gone(
                    self.send(self.http.delete(url).bearer_auth(admin.expose()))
                        .await,
                )
            }
            RotationMode::Staged {
                retire: RetireVia::AnthropicAdmin,
            } => {
                let admin = self
                    .admin_key(self.anthropic_admin_secret.as_ref(), "Anthropic")
                    .await?;
                let url = format!(
                    "{}/organizations/api_keys/{}",
                    base(token),
                    path_id(key_id)?
                );
                gone(
                    self.send(
                        self.http
                            .post(url)
                            .header("x-api-key", admin.expose())
                            .header("anthropic-version", ANTHROPIC_VERSION)
                            .json(&serde_json::json!({ "status": "inactive" })),
                    )
                    .await,
                )
            }
            RotationMode::Staged {
                retire: RetireVia::None,
            } => Ok(()),
        }
    }
}

#[async_trait]
impl tollgate_core::sweep::Prober for HttpMinter {
    /// The same call as testSecret (`GET {base}/models`: lists models, bills no tokens), read
    /// for the token's health: 2xx ok, 401/403 rejected, 429 rate limited (with its
    /// `retry-after` seconds), other 4xx inconclusive, 5xx and transport failures unavailable.
    async fn probe(&self, token: &TokenRecord, value: &Secret) -> ProbeResult {
        let url = format!("{}/models", base(token));
        let req = match token.provider {
            ProviderKind::Openai => self.http.get(url).bearer_auth(value.expose()),
            ProviderKind::Anthropic => self
                .http
                .get(url)
                .header("x-api-key", value.expose())
                .header("anthropic-version", ANTHROPIC_VERSION),
        };
        let Ok(res) = req.send().await else {
            return ProbeResult::Unavailable;
        };
        let status = res.status().as_u16();
        match status {
            200..=299 => ProbeResult::Ok,
            401 | 403 => ProbeResult::Rejected { status },
            429 => ProbeResult::RateLimited {
                retry_after_ms: res
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(|s| s.saturating_mul(1000)),
            },
            400..=499 => ProbeResult::Inconclusive { status },
            _ => ProbeResult::Unavailable,
        }
    }
}
