//! The rules of client-key verification, in the contract's order. The gateway does the I/O
//! (cache, store); this module decides. Every failure up to and including the source-network
//! check maps to the same 401; the [`AuthFailure`] variant only reaches the audit line.

use crate::clock::EpochMs;
use crate::key::{ClientKey, KeyFormatError, digest_eq};
use crate::provider::Route;
use crate::reason::Reason;
use crate::records::{ClientKeyRecord, KeyStatus, Tenant};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::collections::BTreeMap;
use std::net::IpAddr;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    Format(KeyFormatError),
    UnknownKey,
    DigestMismatch,
    UnknownPepperVersion,
    /// A canary key proved itself: someone holds a key that was only ever planted.
    Canary,
    Revoked,
    Suspended,
    Expired,
    TenantMissing,
    TenantDisabled,
    SourceNotAllowed,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScopeFailure {
    RouteNotAllowed(&'static str),
    ModelNotAllowed(String),
}

impl ScopeFailure {
    pub fn reason(&self) -> Reason {
        match self {
            ScopeFailure::RouteNotAllowed(_) => Reason::RouteNotAllowed,
            ScopeFailure::ModelNotAllowed(_) => Reason::ModelNotAllowed,
        }
    }
    /// Safe to show the caller: names what is not allowed, nothing else.
    pub fn client_message(&self) -> String {
        match self {
            ScopeFailure::RouteNotAllowed(r) => format!("This key may not call the {r} route."),
            ScopeFailure::ModelNotAllowed(m) => format!("This key may not use model {m:?}."),
        }
    }
}

/// The pepper secret: every version, and which one new keys use.
/// Stored as JSON `{"current": "2", "v1": "...", "v2": "..."}`.
#[derive(Clone)]
pub struct Peppers {
    pub current: u32,
    versions: BTreeMap<u32, Vec<u8>>,
    /// HMAC-SHA256 keyed with each version, ready to clone: the key's two pad blocks are
    /// hashed once per pepper instead of once per request.
    keyed: BTreeMap<u32, Hmac<Sha256>>,
}

impl PartialEq for Peppers {
    fn eq(&self, other: &Self) -> bool {
        self.current == other.current && self.versions == other.versions
    }
}

impl Eq for Peppers {}

impl std::fmt::Debug for Peppers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peppers")
            .field("current", &self.current)
            .field("versions", &self.versions.keys().collect::<Vec<_>>())
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PepperError {
    #[error("pepper secret is not a JSON object")]
    NotObject,
    #[error("pepper secret has no valid \"current\" version")]
    NoCurrent,
    #[error("pepper secret's current version v{0} is missing or shorter than 32 bytes")]
    CurrentMissing(u32),
}

impl Peppers {
    pub fn parse(json: &str) -> Result<Self, PepperError> {
        let v: serde_json::Value =
            serde_json::from_str(json).map_err(|_| PepperError::NotObject)?;
        let o = v.as_object().ok_or(PepperError::NotObject)?;
        let current = match o.get("current") {
            Some(serde_json::Value::String(s)) => s.parse().map_err(|_| PepperError::NoCurrent)?,
            Some(serde_json::Value::Number(n)) => n
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or(PepperError::NoCurrent)?,
            _ => return Err(PepperError::NoCurrent),
        };
        let mut versions = BTreeMap::new();
        for (k, val) in o {
            if let (Some(n), Some(s)) = (
                k.strip_prefix('v').and_then(|n| n.parse::<u32>().ok()),
                val.as_str(),
            ) {
                versions.insert(n, s.as_bytes().to_vec());
            }
        }
        let keyed = versions
            .iter()
            .filter_map(|(v, p)| Some((*v, <Hmac<Sha256> as Mac>::new_from_slice(p).ok()?)))
            .collect();
        match versions.get(&current) {
            Some(p) if p.len() >= 32 => Ok(Self {
                current,
                versions,
                keyed,
            }),
            _ => Err(PepperError::CurrentMissing(current)),
        }
    }

    pub fn get(&self, version: u32) -> Option<&[u8]> {
        self.versions.get(&version).map(Vec::as_slice)
    }

    pub fn current_pepper(&self) -> &[u8] {
        self.get(self.current).unwrap_or_default()
    }

    /// `HMAC-SHA256(pepper[version], key)`, the same as [`ClientKey::digest`], from the
    /// pre-keyed state; `None` for an unknown version.
    pub fn digest(&self, version: u32, key: &ClientKey) -> Option<[u8; 32]> {
        let mut mac = self.keyed.get(&version)?.clone();
        mac.update(key.expose().as_bytes());
        Some(mac.finalize().into_bytes().into())
    }

    /// The digest a new key is stored under, with its pepper version.
    pub fn digest_new(&self, key: &ClientKey) -> (String, u32) {
        (hex(&key.digest(self.current_pepper())), self.current)
    }
}

pub fn hex(bytes: &[u8]) -> String {
    const H: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        s.push(char::from(H[usize::from(b >> 4)]));
        s.push(char::from(H[usize::from(b & 15)]));
    }
    s
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Verifies a presented key against what the store returned (or `None` on a miss), the
/// tenant, the clock and the caller's source address — the contract order from the digest
/// compare up to the source-network check: [`verify_key`], then [`verify_caller`].
pub fn verify(
    key: &ClientKey,
    rec: Option<&ClientKeyRecord>,
    tenant: Option<&Tenant>,
    peppers: &Peppers,
    now: EpochMs,
    source_ip: Option<IpAddr>,
) -> Result<(), AuthFailure> {
    let rec = verify_key(key, rec, peppers, now)?;
    verify_caller(rec, tenant, source_ip)
}

/// The key's own checks: digest (constant time), status, expiry. On a miss a dummy digest is
/// still computed and compared, so an unknown key id costs what a known id with a wrong secret
/// costs: one store read and one HMAC. The tenant is not needed (nor read) until this passes.
pub fn verify_key<'r>(
    key: &ClientKey,
    rec: Option<&'r ClientKeyRecord>,
    peppers: &Peppers,
    now: EpochMs,
) -> Result<&'r ClientKeyRecord, AuthFailure> {
    let Some(rec) = rec else {
        let dummy = peppers.digest(peppers.current, key).unwrap_or_default();
        let _ = digest_eq(&dummy, &[0u8; 32]);
        return Err(AuthFailure::UnknownKey);
    };
    let Some(presented) = peppers.digest(rec.pepper_version, key) else {
        let _ = peppers.digest(peppers.current, key);
        return Err(AuthFailure::UnknownPepperVersion);
    };
    let stored = unhex(&rec.digest_hex).unwrap_or_default();
    if !digest_eq(&presented, &stored) || rec.key_id != key.key_id() {
        return Err(AuthFailure::DigestMismatch);
    }
    // Before status and expiry: a canary is a canary even after it was revoked or expired
    // (its use still means the place it was planted leaked). After the digest: a canary's id
    // with a wrong secret is someone guessing, not someone holding it.
    if rec.canary {
        return Err(AuthFailure::Canary);
    }
    if rec.status == KeyStatus::Revoked {
        return Err(AuthFailure::Revoked);
    }
    if rec.status == KeyStatus::Suspended {
        return Err(AuthFailure::Suspended);
    }
    if rec.expires_at.is_some_and(|e| e <= now) {
        return Err(AuthFailure::Expired);
    }
    Ok(rec)
}

/// The checks after the key proved itself: its tenant exists and is enabled, and the caller's
/// source address is in the key's networks (API Gateway's request context, never a header).
pub fn verify_caller(
    rec: &ClientKeyRecord,
    tenant: Option<&Tenant>,
    source_ip: Option<IpAddr>,
) -> Result<(), AuthFailure> {
    match tenant {
        None => return Err(AuthFailure::TenantMissing),
        Some(t) if t.disabled => return Err(AuthFailure::TenantDisabled),
        Some(_) => {}
    }
    if !rec.allowed_cidrs.is_empty() {
        let Some(ip) = source_ip else {
            return Err(AuthFailure::SourceNotAllowed);
        };
        if !rec.allowed_cidrs.iter().any(|n| n.contains(&ip)) {
            return Err(AuthFailure::SourceNotAllowed);
        }
    }
    Ok(())
}

/// `name` matches `pattern` exactly, or by prefix when the pattern ends in `*`.
pub fn pattern_matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => pattern == name,
    }
}

/// Route and model scopes (after authentication; a failure here is a 403).
pub fn check_scope(
    rec: &ClientKeyRecord,
    route: Route,
    model: Option<&str>,
) -> Result<(), ScopeFailure> {
    if !rec.allowed_routes.is_empty() && !rec.allowed_routes.iter().any(|r| r == route.name()) {
        return Err(ScopeFailure::RouteNotAllowed(route.name()));
    }
    if let Some(m) = model
        && !rec.allowed_models.is_empty()
        && !rec.allowed_models.iter().any(|p| pattern_matches(p, m))
    {
        return Err(ScopeFailure::ModelNotAllowed(m.to_owned()));
    }
    Ok(())
}

/// The pool a request goes to: the key's model mapping, then the tenant's, then the route's
/// default. Never anything the caller sends other than the model name.
pub fn resolve_pool(
    rec: &ClientKeyRecord,
    tenant: &Tenant,
    route: Route,
    model: Option<&str>,
) -> String {
    if let Some(m) = model {
        for map in [&rec.model_pools, &tenant.model_pools] {
            // Longest pattern wins so `gpt-4o-mini*` beats `gpt-4o*`.
            if let Some((_, pool)) = map
                .iter()
                .filter(|(p, _)| pattern_matches(p, m))
                .max_by_key(|(p, _)| p.len())
            {
                return pool.clone();
            }
        }
    }
    route.default_pool().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::KeyEnv;
    use rand::{SeedableRng, rngs::StdRng};

    const P1: &str = "test-pepper-version-one-0123456789abcdef";
    const P2: &str = "test-pepper-version-two-0123456789abcdef";

    #[test]
    fn the_pre_keyed_digest_is_the_plain_hmac() {
        let p = peppers();
        let k = ClientKey::generate(crate::key::KeyEnv::Test, &mut rand::thread_rng());
        assert_eq!(p.digest(p.current, &k), Some(k.digest(p.current_pepper())));
        assert_eq!(p.digest(p.current + 100, &k), None);
    }

    fn peppers() -> Peppers {
        Peppers::parse(&format!(r#"{{"current":"2","v1":"{P1}","v2":"{P2}"}}"#)).unwrap()
    }

    fn tenant() -> Tenant {
        Tenant::new("acme", "Acme", "platform@acme.test", 0)
    }

    fn issued(seed: u64) -> (ClientKey, ClientKeyRecord) {
        let k = ClientKey::generate(KeyEnv::Test, &mut StdRng::seed_from_u64(seed));
        let rec = ClientKeyRecord {
            name: "ci".into(),
            ..ClientKeyRecord::for_key(&k, "acme", "dev@acme.test", peppers().digest_new(&k), 0)
        };
        (k, rec)
    }

    #[test]
    fn pepper_secret_parses_and_rejects_weak_or_missing_current() {
        let p = peppers();
        assert_eq!(p.current, 2);
        assert_eq!(p.get(1), Some(P1.as_bytes()));
        assert!(!format!("{p:?}").contains(P1));
        assert_eq!(
            Peppers::parse(r#"{"current":"3","v1":"x"}"#),
            Err(PepperError::CurrentMissing(3))
        );
        assert_eq!(
            Peppers::parse(r#"{"current":"1","v1":"short"}"#),
            Err(PepperError::CurrentMissing(1))
        );
        assert_eq!(Peppers::parse("[]"), Err(PepperError::NotObject));
    }

    #[test]
    fn issued_key_verifies() {
        let (k, rec) = issued(1);
        assert_eq!(
            verify(&k, Some(&rec), Some(&tenant()), &peppers(), 0, None),
            Ok(())
        );
    }

    #[test]
    fn pepper_rotation_lifecycle_append_issue_verify_then_drop_the_old_version() {
        // Before: only v1, current 1.
        let before = Peppers::parse(&format!(r#"{{"current":"1","v1":"{P1}"}}"#)).unwrap();
        let old = ClientKey::generate(KeyEnv::Test, &mut StdRng::seed_from_u64(11));
        let old_rec = ClientKeyRecord::for_key(&old, "acme", "o", before.digest_new(&old), 0);
        assert_eq!(old_rec.pepper_version, 1);
        // v2 appended and made current: new keys use it, the old key keeps verifying.
        let after = peppers();
        let new = ClientKey::generate(KeyEnv::Test, &mut StdRng::seed_from_u64(12));
        let new_rec = ClientKeyRecord::for_key(&new, "acme", "o", after.digest_new(&new), 0);
        assert_eq!(new_rec.pepper_version, 2);
        for (k, r) in [(&old, &old_rec), (&new, &new_rec)] {
            assert_eq!(verify(k, Some(r), Some(&tenant()), &after, 0, None), Ok(()));
        }
        // v1 dropped (only once no live key uses it): a key still under it stops verifying,
        // with its own audit reason; keys under v2 are untouched.
        let dropped = Peppers::parse(&format!(r#"{{"current":"2","v2":"{P2}"}}"#)).unwrap();
        assert_eq!(
            verify(&old, Some(&old_rec), Some(&tenant()), &dropped, 0, None),
            Err(AuthFailure::UnknownPepperVersion)
        );
        assert_eq!(
            verify(&new, Some(&new_rec), Some(&tenant()), &dropped, 0, None),
            Ok(())
        );
    }

    #[test]
    fn key_issued_under_old_pepper_still_verifies_after_pepper_rotation() {
        let (k, mut rec) = issued(2);
        rec.digest_hex = hex(&k.digest(P1.as_bytes()));
        rec.pepper_version = 1;
        assert_eq!(
            verify(&k, Some(&rec), Some(&tenant()), &peppers(), 0, None),
            Ok(())
        );
    }

    #[test]
    fn failures_in_contract_order() {
        let (k, rec) = issued(3);
        let t = tenant();
        let p = peppers();
        assert_eq!(
            verify(&k, None, Some(&t), &p, 0, None),
            Err(AuthFailure::UnknownKey)
        );
        let (other, _) = issued(4);
        assert_eq!(
            verify(&other, Some(&rec), Some(&t), &p, 0, None),
            Err(AuthFailure::DigestMismatch)
        );
        // A revoked key with a wrong secret reports the digest failure first.
        let mut revoked = rec.clone();
        revoked.status = KeyStatus::Revoked;
        assert_eq!(
            verify(&other, Some(&revoked), Some(&t), &p, 0, None),
            Err(AuthFailure::DigestMismatch)
        );
        assert_eq!(
            verify(&k, Some(&revoked), Some(&t), &p, 0, None),
            Err(AuthFailure::Revoked)
        );
        // A suspended key is refused after its digest proved it, like a revoked one; a wrong
        // secret still reports the digest failure first.
        let mut suspended = rec.clone();
        suspended.status = KeyStatus::Suspended;
        assert_eq!(
            verify(&k, Some(&suspended), Some(&t), &p, 0, None),
            Err(AuthFailure::Suspended)
        );
        assert_eq!(
            verify(&other, Some(&suspended), Some(&t), &p, 0, None),
            Err(AuthFailure::DigestMismatch)
        );
        let mut expiring = rec.clone();
        expiring.expires_at = Some(100);
        assert_eq!(verify(&k, Some(&expiring), Some(&t), &p, 99, None), Ok(()));
        assert_eq!(
            verify(&k, Some(&expiring), Some(&t), &p, 100, None),
            Err(AuthFailure::Expired)
        );
        let mut off = t.clone();
        off.disabled = true;
        assert_eq!(
            verify(&k, Some(&rec), Some(&off), &p, 0, None),
            Err(AuthFailure::TenantDisabled)
        );
        let mut bad_version = rec.clone();
        bad_version.pepper_version = 9;
        assert_eq!(
            verify(&k, Some(&bad_version), Some(&t), &p, 0, None),
            Err(AuthFailure::UnknownPepperVersion)
        );
    }

    #[test]
    fn source_network_is_checked_against_allowed_cidrs() {
        let (k, mut rec) = issued(5);
        rec.allowed_cidrs = vec![
            "10.0.0.0/8".parse().unwrap(),
            "2001:db8::/32".parse().unwrap(),
        ];
        let t = tenant();
        let p = peppers();
        let ok = |ip: &str| verify(&k, Some(&rec), Some(&t), &p, 0, Some(ip.parse().unwrap()));
        assert_eq!(ok("10.1.2.3"), Ok(()));
        assert_eq!(ok("2001:db8::1"), Ok(()));
        assert_eq!(ok("192.168.1.1"), Err(AuthFailure::SourceNotAllowed));
        assert_eq!(
            verify(&k, Some(&rec), Some(&t), &p, 0, None),
            Err(AuthFailure::SourceNotAllowed)
        );
    }

    #[test]
    fn scopes_name_what_is_not_allowed() {
        let (_, mut rec) = issued(6);
        rec.allowed_models = vec!["gpt-4o*".into(), "claude-sonnet-4".into()];
        rec.allowed_routes = vec!["chat.completions".into(), "messages".into()];
        assert_eq!(
            check_scope(&rec, Route::ChatCompletions, Some("gpt-4o-mini")),
            Ok(())
        );
        assert_eq!(
            check_scope(&rec, Route::ChatCompletions, Some("o3")),
            Err(ScopeFailure::ModelNotAllowed("o3".into()))
        );
        assert_eq!(
            check_scope(&rec, Route::Embeddings, Some("gpt-4o")),
            Err(ScopeFailure::RouteNotAllowed("embeddings"))
        );
    }

    #[test]
    fn pool_resolution_prefers_key_then_tenant_then_route_default() {
        let (_, mut rec) = issued(7);
        let mut t = tenant();
        assert_eq!(
            resolve_pool(&rec, &t, Route::Messages, Some("claude")),
            "anthropic"
        );
        t.model_pools.insert("gpt-4o*".into(), "tenant-pool".into());
        assert_eq!(
            resolve_pool(&rec, &t, Route::ChatCompletions, Some("gpt-4o")),
            "tenant-pool"
        );
        rec.model_pools.insert("gpt-4o".into(), "key-pool".into());
        assert_eq!(
            resolve_pool(&rec, &t, Route::ChatCompletions, Some("gpt-4o")),
            "key-pool"
        );
        t.model_pools.insert("gpt-4o-mini*".into(), "mini".into());
        assert_eq!(
            resolve_pool(&rec, &t, Route::ChatCompletions, Some("gpt-4o-mini-x")),
            "mini"
        );
    }
}
