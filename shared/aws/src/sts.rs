//! The proxy's identity tokens from AWS STS `GetWebIdentityToken` (outbound identity
//! federation): a JWT signed by AWS for the proxy's own role, with the pool token's audience.
//! `GetWebIdentityToken` is not served by the STS global endpoint; the SDK's client uses the
//! regional endpoint of the configured region. The token is returned as a `Secret` and never
//! logged; errors carry the service's error code only.

use async_trait::async_trait;
use aws_sdk_sts::error::ProvideErrorMetadata;
use tollgate_core::ports::{IdentityTokenSource, Secret, StoreError};

/// Signing algorithm asked of STS (`RS256` or `ES384`; ES384 unless a provider needs RS256).
pub const SIGNING_ALGORITHM: &str = "ES384";
/// Lifetime asked for: the identity token is used for one exchange straight away.
pub const DURATION_SECONDS: i32 = 300;

pub struct StsIdentityTokens {
    client: aws_sdk_sts::Client,
}

impl StsIdentityTokens {
    pub fn new(conf: &aws_config::SdkConfig) -> Self {
        Self {
            client: aws_sdk_sts::Client::new(conf),
        }
    }
}

#[async_trait]
impl IdentityTokenSource for StsIdentityTokens {
    async fn identity_token(&self, audience: &str) -> Result<Secret, StoreError> {
        let out = self
            .client
            .get_web_identity_token()
            .audience(audience)
            .signing_algorithm(SIGNING_ALGORITHM)
            .duration_seconds(DURATION_SECONDS)
            .send()
            .await
            .map_err(|e| {
                StoreError::Unavailable(format!(
                    "sts GetWebIdentityToken: {}",
                    e.code().unwrap_or("no error code (transport or timeout)")
                ))
            })?;
        out.web_identity_token
            .map(Secret::new)
            .ok_or_else(|| StoreError::Corrupt("GetWebIdentityToken returned no token".into()))
    }
}
