//! A **local/test** identity token source: signs JWTs (ES384) with a private key handed in
//! by whoever runs the stack — the test harness or `make dev` generate one at start-up, and
//! the mock provider is told the matching public key. It stands in for STS
//! `GetWebIdentityToken` where there is no AWS (the emulator does not implement it); nothing
//! in a deployment uses it. The key is never hard-coded and never logged.

use async_trait::async_trait;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde::Serialize;
use std::sync::Arc;
use tollgate_core::clock::Clock;
use tollgate_core::ports::{IdentityTokenSource, Secret, StoreError};

/// How long a locally signed identity token lives (STS's default is 300 s too).
pub const LOCAL_IDENTITY_LIFETIME_S: u64 = 300;

pub struct LocalIdentitySigner {
    key: EncodingKey,
    kid: String,
    issuer: String,
    subject: String,
    clock: Arc<dyn Clock>,
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    iat: u64,
    nbf: u64,
    exp: u64,
}

impl LocalIdentitySigner {
    /// `pkcs8_der`: a P-384 private key, PKCS#8 DER. Checked by signing once.
    pub fn from_pkcs8_der(
        pkcs8_der: &[u8],
        kid: impl Into<String>,
        issuer: impl Into<String>,
        subject: impl Into<String>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, String> {
        let s = Self {
            key: EncodingKey::from_ec_der(pkcs8_der),
            kid: kid.into(),
            issuer: issuer.into(),
            subject: subject.into(),
            clock,
        };
        s.sign("key-check")
            .map_err(|_| "the local identity key is not a P-384 PKCS#8 private key".to_owned())?;
        Ok(s)
    }

    fn sign(&self, audience: &str) -> Result<Secret, jsonwebtoken::errors::Error> {
        let now = self.clock.now_ms() / 1000;
        let mut header = Header::new(Algorithm::ES384);
        header.kid = Some(self.kid.clone());
        let claims = Claims {
            iss: &self.issuer,
            sub: &self.subject,
            aud: audience,
            iat: now,
            nbf: now,
            exp: now + LOCAL_IDENTITY_LIFETIME_S,
        };
        encode(&header, &claims, &self.key).map(Secret::new)
    }
}

#[async_trait]
impl IdentityTokenSource for LocalIdentitySigner {
    async fn identity_token(&self, audience: &str) -> Result<Secret, StoreError> {
        self.sign(audience)
            .map_err(|e| StoreError::Unavailable(format!("local identity signing failed: {e}")))
    }
}
