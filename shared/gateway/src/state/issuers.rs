//! Trusted OIDC issuers and their signing keys, as JWT callers need them: issuer records by
//! exact `iss` (cached for the key cache TTL, misses too), and each issuer's JWK Set (cached
//! for the JWKS TTL), fetched from its URL or through the issuer's OpenID discovery document
//! (whose `issuer` must match exactly). A token whose `kid` is not in the cached set causes at most one refresh
//! per JWKS URL per refresh interval (key rotation at the issuer is picked up; a flood of
//! made-up `kid`s is not a flood of fetches). A set that cannot be fetched fails closed, and
//! a failed fetch is not retried before the refresh interval has passed. Holds public keys
//! only; never sees or logs a token.

use crate::cache::TtlCache;
use crate::context::StoreCalls;
use crate::upstream::{BuildError, FetchError, HttpClient, ReqBody};
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tollgate_core::clock::{Clock, EpochMs};
use tollgate_core::identity::{
    IssuerRecord, JwksLocation, JwsAlg, JwtFailure, jwks_uri_from_discovery,
};
use tollgate_core::ports::{IssuerStore, JwksSource, StoreError};

/// The largest JWK Set document accepted (real ones are a few KB).
pub const MAX_JWKS_BYTES: usize = 256 * 1024;

/// The issuer store and the JWKS fetcher a gateway that accepts JWT callers is built with.
pub struct IdentityStores {
    pub issuers: Arc<dyn IssuerStore>,
    pub jwks: Arc<dyn JwksSource>,
}

/// The usable signing keys of one JWK Set.
#[derive(Debug, Default)]
pub struct KeySet {
    keys: Vec<Jwk>,
}

impl KeySet {
    /// Parses a JWK Set document; keys this crate cannot read, symmetric keys and keys marked
    /// for encryption are left out (one odd key must not hide the others).
    pub fn parse(json: &str) -> Option<Self> {
        let v: serde_json::Value = serde_json::from_str(json).ok()?;
        let keys = v.get("keys")?.as_array()?;
        Some(Self {
            keys: keys
                .iter()
                .filter_map(|k| serde_json::from_value::<Jwk>(k.clone()).ok())
                .filter(|k| {
                    matches!(
                        k.algorithm,
                        AlgorithmParameters::RSA(_)
                            | AlgorithmParameters::EllipticCurve(_)
                            | AlgorithmParameters::OctetKeyPair(_)
                    )
                })
                .filter(|k| !matches!(k.common.public_key_use, Some(PublicKeyUse::Encryption)))
                .collect(),
        })
    }

    /// The key for the token: by `kid` when the token names one, else the only key that fits
    /// `alg`.
    fn find(&self, kid: Option<&str>, alg: JwsAlg) -> Option<&Jwk> {
        match kid {
            Some(kid) => self
                .keys
                .iter()
                .find(|k| k.common.key_id.as_deref() == Some(kid)),
            None => {
                let mut fitting = self.keys.iter().filter(|k| fits(k, alg));
                match (fitting.next(), fitting.next()) {
                    (Some(k), None) => Some(k),
                    _ => None,
                }
            }
        }
    }
}

pub fn algorithm(alg: JwsAlg) -> Algorithm {
    match alg {
        JwsAlg::RS256 => Algorithm::RS256,
        JwsAlg::RS384 => Algorithm::RS384,
        JwsAlg::RS512 => Algorithm::RS512,
        JwsAlg::PS256 => Algorithm::PS256,
        JwsAlg::PS384 => Algorithm::PS384,
        JwsAlg::PS512 => Algorithm::PS512,
        JwsAlg::ES256 => Algorithm::ES256,
        JwsAlg::ES384 => Algorithm::ES384,
        JwsAlg::EdDSA => Algorithm::EdDSA,
    }
}

/// The key's type (and curve) fits `alg`, and the key's own `alg`, if it names one, is `alg`.
fn fits(k: &Jwk, alg: JwsAlg) -> bool {
    let kind = match (&k.algorithm, alg) {
        (
            AlgorithmParameters::RSA(_),
            JwsAlg::RS256
            | JwsAlg::RS384
            | JwsAlg::RS512
            | JwsAlg::PS256
            | JwsAlg::PS384
            | JwsAlg::PS512,
        ) => true,
        (AlgorithmParameters::EllipticCurve(p), JwsAlg::ES256) => p.curve == EllipticCurve::P256,
        (AlgorithmParameters::EllipticCurve(p), JwsAlg::ES384) => p.curve == EllipticCurve::P384,
        (AlgorithmParameters::OctetKeyPair(p), JwsAlg::EdDSA) => p.curve == EllipticCurve::Ed25519,
        _ => false,
    };
    let named = match k.common.key_algorithm {
        None => true,
        Some(ka) => ka == KeyAlgorithm::from(algorithm(alg)),
    };
    kind && named
}

pub struct IssuerDirectory {
    stores: Option<IdentityStores>,
    issuer_cache: TtlCache<String, Arc<Option<IssuerRecord>>>,
    jwks_cache: TtlCache<String, Arc<KeySet>>,
    /// JWKS URL → when a token with an unknown `kid` last caused a refresh.
    refreshed: Mutex<HashMap<String, EpochMs>>,
    /// JWKS URL → when its last fetch failed (cleared by a good fetch).
    failed: Mutex<HashMap<String, EpochMs>>,
    refresh_min_ms: u64,
    clock: Arc<dyn Clock>,
}

impl IssuerDirectory {
    /// `stores: None`: no issuer is trusted; every JWT is refused as from an unknown issuer,
    /// without a store call.
    pub fn new(
        stores: Option<IdentityStores>,
        issuer_ttl_ms: u64,
        jwks_ttl_ms: u64,
        refresh_min_ms: u64,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            stores,
            issuer_cache: TtlCache::new(10_000, issuer_ttl_ms, clock.clone()),
            jwks_cache: TtlCache::new(1_000, jwks_ttl_ms, clock.clone()),
            refreshed: Mutex::new(HashMap::new()),
            failed: Mutex::new(HashMap::new()),
            refresh_min_ms,
            clock,
        }
    }

    /// The trusted issuer named `iss` (`None`: not trusted): cache, else one store read.
    pub async fn issuer(
        &self,
        iss: &str,
        calls: &mut StoreCalls,
    ) -> Result<Arc<Option<IssuerRecord>>, StoreError> {
        let Some(stores) = &self.stores else {
            return Ok(Arc::new(None));
        };
        self.issuer_cache
            .read_through(
                iss,
                calls,
                |r| r.clone(),
                || async { Ok(Arc::new(stores.issuers.get_issuer(iss).await?)) },
            )
            .await
    }

    /// The issuer's key for a token with header `alg` and `kid`.
    pub async fn key(
        &self,
        issuer: &IssuerRecord,
        alg: JwsAlg,
        kid: Option<&str>,
        calls: &mut StoreCalls,
    ) -> Result<DecodingKey, JwtFailure> {
        let source = issuer.jwks.source_url(&issuer.issuer);
        let (set, fetched_now) = match self.jwks_cache.get(&source) {
            Some(set) => (set, false),
            None => (self.fetch(issuer, &source, calls).await?, true),
        };
        let jwk = match set.find(kid, alg) {
            Some(k) => k.clone(),
            None if !fetched_now && self.may_refresh(&source) => {
                let fresh = self.fetch(issuer, &source, calls).await?;
                fresh
                    .find(kid, alg)
                    .cloned()
                    .ok_or(JwtFailure::UnknownKid)?
            }
            None => return Err(JwtFailure::UnknownKid),
        };
        if !fits(&jwk, alg) {
            return Err(JwtFailure::BadSignature);
        }
        DecodingKey::from_jwk(&jwk).map_err(|_| JwtFailure::BadSignature)
    }

    fn now(&self) -> EpochMs {
        self.clock.now_ms()
    }

    /// Whether a refresh for an unknown `kid` may happen now (and if so, claims it): at most
    /// one per JWKS URL per refresh interval, however many requests ask.
    fn may_refresh(&self, url: &str) -> bool {
        let now = self.now();
        let Ok(mut r) = self.refreshed.lock() else {
            return false;
        };
        match r.get(url) {
            Some(&last) if now.saturating_sub(last) < self.refresh_min_ms => false,
            _ => {
                r.insert(url.to_owned(), now);
                true
            }
        }
    }

    fn record(&self, url: &str, ok: bool) {
        let at = self.now();
        if let Ok(mut f) = self.failed.lock() {
            if ok {
                f.remove(url);
            } else {
                f.insert(url.to_owned(), at);
            }
        }
    }

    /// The issuer's key set, fetched now: from its JWKS URL, or through its discovery
    /// document (whose `issuer` must match and whose `jwks_uri` must be https). Cached under
    /// `source` (the first URL fetched), so a discovery document is read as often as the
    /// key set it names: once per TTL, plus the rate-limited refreshes.
    async fn fetch(
        &self,
        issuer: &IssuerRecord,
        source: &str,
        calls: &mut StoreCalls,
    ) -> Result<Arc<KeySet>, JwtFailure> {
        let Some(stores) = &self.stores else {
            return Err(JwtFailure::JwksUnavailable);
        };
        // A fetch that failed recently is not repeated by every request: fail fast until the
        // refresh interval has passed.
        let now = self.now();
        let recent_failure = self.failed.lock().ok().is_some_and(|f| {
            f.get(source)
                .is_some_and(|&at| now.saturating_sub(at) < self.refresh_min_ms)
        });
        if recent_failure {
            return Err(JwtFailure::JwksUnavailable);
        }
        let fail = || {
            self.record(source, false);
            JwtFailure::JwksUnavailable
        };
        let jwks_url = match &issuer.jwks {
            JwksLocation::Url { url } => url.clone(),
            JwksLocation::Discovery => {
                calls.reads += 1;
                let doc = match stores.jwks.fetch_jwks(source).await {
                    Ok(doc) => doc,
                    Err(e) => {
                        tracing::warn!(error = %e, url = source, "discovery document unavailable");
                        return Err(fail());
                    }
                };
                match jwks_uri_from_discovery(&issuer.issuer, &doc) {
                    Ok(u) => u,
                    Err(e) => {
                        tracing::warn!(error = %e, url = source, "discovery document unusable");
                        return Err(fail());
                    }
                }
            }
        };
        calls.reads += 1;
        let doc = match stores.jwks.fetch_jwks(&jwks_url).await {
            Ok(doc) => doc,
            Err(e) => {
                tracing::warn!(error = %e, url = jwks_url, "JWK Set unavailable");
                return Err(fail());
            }
        };
        let Some(set) = KeySet::parse(&doc) else {
            tracing::warn!(
                url = jwks_url,
                "JWK Set is not a JSON object with a keys array"
            );
            return Err(fail());
        };
        self.record(source, true);
        let set = Arc::new(set);
        self.jwks_cache.insert(source.to_owned(), set.clone());
        Ok(set)
    }
}

/// Fetches JWK Sets over HTTPS (plain HTTP only where the issuer record allows it: loopback).
/// No redirects, a timeout, and a size cap.
pub struct HttpJwks {
    client: HttpClient,
    timeout: Duration,
}

impl HttpJwks {
    /// `timeout` bounds a whole fetch: connect, answer and body.
    pub fn new(timeout: Duration) -> Result<Self, BuildError> {
        Ok(Self {
            client: HttpClient::new(timeout)?,
            timeout,
        })
    }
}

#[async_trait::async_trait]
impl JwksSource for HttpJwks {
    async fn fetch_jwks(&self, url: &str) -> Result<String, StoreError> {
        let unavailable = |what: String| StoreError::Unavailable(what);
        let uri = crate::upstream::absolute_uri(url)
            .ok_or_else(|| unavailable("JWKS URL is not an absolute http(s) URL".into()))?;
        let req = http::Request::get(uri)
            .header(http::header::ACCEPT, "application/json")
            .body(ReqBody::default())
            .map_err(|_| unavailable("JWKS request not built".into()))?;
        let (status, body) = self
            .client
            .fetch(req, MAX_JWKS_BYTES, self.timeout)
            .await
            .map_err(|e| match e {
                FetchError::TooLarge => unavailable("JWKS document too large".into()),
                FetchError::Body => unavailable("JWKS body failed".into()),
                FetchError::Call(e) => unavailable(format!("JWKS request failed: {e}")),
            })?;
        if !status.is_success() {
            return Err(unavailable(format!("JWKS answered {status}")));
        }
        String::from_utf8(body.to_vec()).map_err(|_| unavailable("JWKS is not UTF-8".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rsa(kid: &str) -> serde_json::Value {
        json!({"kty": "RSA", "kid": kid, "use": "sig", "n": "sXch", "e": "AQAB"})
    }

    #[test]
    fn key_set_keeps_signing_keys_and_skips_the_rest() {
        let doc = json!({"keys": [
            rsa("a"),
            {"kty": "oct", "kid": "h", "k": "c2VjcmV0"},
            {"kty": "RSA", "kid": "enc", "use": "enc", "n": "sXch", "e": "AQAB"},
            {"kty": "weird", "kid": "w"},
            {"kty": "EC", "kid": "e", "crv": "P-256", "x": "eA", "y": "eQ"}
        ]});
        let set = KeySet::parse(&doc.to_string()).unwrap();
        let kids: Vec<_> = set
            .keys
            .iter()
            .filter_map(|k| k.common.key_id.clone())
            .collect();
        assert_eq!(kids, vec!["a".to_owned(), "e".to_owned()]);
        assert!(KeySet::parse("[]").is_none());
        assert!(KeySet::parse("{}").is_none());
    }

    #[test]
    fn without_a_kid_only_a_single_fitting_key_is_chosen() {
        let one = KeySet::parse(&json!({"keys": [rsa("a")]}).to_string()).unwrap();
        assert!(one.find(None, JwsAlg::RS256).is_some());
        assert!(one.find(None, JwsAlg::ES256).is_none());
        let two = KeySet::parse(&json!({"keys": [rsa("a"), rsa("b")]}).to_string()).unwrap();
        assert!(two.find(None, JwsAlg::RS256).is_none());
        assert!(two.find(Some("b"), JwsAlg::RS256).is_some());
    }

    #[test]
    fn a_key_fits_only_its_own_family_and_named_alg() {
        let set = KeySet::parse(
            &json!({"keys": [
                {"kty": "RSA", "kid": "r", "alg": "PS256", "n": "sXch", "e": "AQAB"},
                {"kty": "EC", "kid": "e", "crv": "P-384", "x": "eA", "y": "eQ"}
            ]})
            .to_string(),
        )
        .unwrap();
        let k = |kid| set.find(Some(kid), JwsAlg::PS256).unwrap();
        assert!(fits(k("r"), JwsAlg::PS256));
        assert!(!fits(k("r"), JwsAlg::RS256));
        assert!(!fits(k("e"), JwsAlg::ES256));
        assert!(fits(k("e"), JwsAlg::ES384));
    }
}
