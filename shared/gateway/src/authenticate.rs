//! Stage 1: who is calling. Contract order: shape and checksum (no I/O) → key cache → store by
//! key id → constant-time digest compare (dummy on a miss), status, expiry → tenant → source
//! network. Every failure is the same 401 to the caller; the audit line names the check.
//! The tenant is read only once the key has proved itself, so an unknown key id and a known
//! id with a wrong secret do the same work.
//!
//! A bearer value is told apart by shape first ([`caller_shape`], no I/O): `tgk_…` is a key,
//! three base64url segments a JWT (verified in `jwt`, same 401 on every failure), anything
//! else fails the key parser without a store call.

use crate::context::RequestCtx;
use crate::respond::Refusal;
use crate::state::Gateway;
use http::HeaderMap;
use std::net::IpAddr;
use std::sync::Arc;
use tollgate_core::auth::{AuthFailure, verify_caller, verify_key};
use tollgate_core::identity::{CallerShape, caller_shape};
use tollgate_core::key::ClientKey;
use tollgate_core::reason::Reason;
use tollgate_core::records::{ClientKeyRecord, Tenant};

/// An authenticated caller. The key record and tenant are the cached ones, shared (a request
/// never changes them).
#[derive(Debug, Clone)]
pub struct Principal {
    pub rec: Arc<ClientKeyRecord>,
    pub tenant: Arc<Tenant>,
    /// A JWT caller whose issuer's tenant-admin rule holds (the management API's only
    /// callers). Always false for a key.
    pub tenant_admin: bool,
}

const X_API_KEY: http::HeaderName = http::HeaderName::from_static("x-api-key");

/// The key from `Authorization: Bearer …` (OpenAI SDKs) or `x-api-key` (Anthropic SDKs).
/// An empty value (`Bearer ` with nothing after it) counts as no key.
pub fn presented_key(headers: &HeaderMap) -> Option<&str> {
    let raw = match headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        Some(v) => {
            let v = v.trim();
            match v.get(..6) {
                Some(scheme)
                    if scheme.eq_ignore_ascii_case("bearer")
                        && v[6..].chars().next().is_none_or(char::is_whitespace) =>
                {
                    v[6..].trim()
                }
                _ => v,
            }
        }
        None => headers.get(X_API_KEY).and_then(|v| v.to_str().ok())?.trim(),
    };
    (!raw.is_empty()).then_some(raw)
}

pub(crate) fn store_down(e: tollgate_core::ports::StoreError) -> Refusal {
    tracing::warn!(error = %e, "store unavailable during authentication");
    Refusal::new(Reason::StoreUnavailable)
}

pub(crate) async fn authenticate(
    gw: &Gateway,
    headers: &HeaderMap,
    source_ip: Option<IpAddr>,
    ctx: &mut RequestCtx,
) -> Result<Principal, Refusal> {
    let deny = |f: AuthFailure| Refusal::new(Reason::from(f));
    let raw = presented_key(headers).unwrap_or("");
    if caller_shape(raw) == CallerShape::Jwt {
        return crate::jwt::authenticate(gw, raw, source_ip, ctx).await;
    }
    // Shape and checksum first: a malformed or mistyped key costs no store call.
    let key = ClientKey::parse(raw).map_err(|e| deny(AuthFailure::Format(e)))?;
    ctx.audit.key_id = Some(key.key_id().to_owned());

    let stored = gw
        .keys
        .key(key.key_id(), &mut ctx.calls)
        .await
        .map_err(store_down)?;
    let peppers = gw
        .secrets
        .peppers(false, &mut ctx.calls)
        .await
        .map_err(store_down)?;
    let now = gw.now();
    let verified = match verify_key(&key, stored.as_deref(), &peppers, now) {
        Err(AuthFailure::UnknownPepperVersion) => {
            // The pepper gained a version since we cached it: re-read once.
            let fresh = gw
                .secrets
                .peppers(true, &mut ctx.calls)
                .await
                .map_err(store_down)?;
            verify_key(&key, stored.as_deref(), &fresh, now)
        }
        other => other,
    };
    let rec: Arc<ClientKeyRecord> = match (verified, &stored) {
        // `verify_key` accepts only the record it was given: share that one.
        (Ok(_), Some(rec)) => rec.clone(),
        // Not reachable (no record verifies nothing); kept total rather than unwrapping.
        (Ok(_), None) => return Err(deny(AuthFailure::UnknownKey)),
        (Err(f), _) => {
            // A canary proved itself: the line names its tenant (from the record already in
            // hand — no tenant read, no write) so the alert can say whose tripwire it was.
            if f == AuthFailure::Canary
                && let Some(r) = stored.as_deref()
            {
                ctx.audit.tenant = Some(r.tenant_id.clone());
            }
            return Err(deny(f));
        }
    };
    let tenant = gw
        .keys
        .tenant(&rec.tenant_id, &mut ctx.calls)
        .await
        .map_err(store_down)?;
    ctx.audit.tenant = Some(rec.tenant_id.clone());
    verify_caller(&rec, tenant.as_deref(), source_ip).map_err(deny)?;
    match tenant {
        Some(tenant) => {
            ctx.audit.principal = Some(rec.owner.clone());
            // A rotated key still in its overlap: the audit line names the successor, so
            // operators see who has not switched yet.
            ctx.audit.superseded_by = rec.rotated_to.clone();
            ctx.audit.key_expiring_in_days = rec.expiring_in_days(now, gw.cfg.key_expiry_warn_ms);
            Ok(Principal {
                tenant_admin: false,
                rec,
                tenant,
            })
        }
        // verify_caller() already refused this; kept total rather than unwrapping.
        None => Err(deny(AuthFailure::TenantMissing)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn with(name: &'static str, v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(name, HeaderValue::from_str(v).unwrap());
        h
    }

    #[test]
    fn an_empty_bearer_is_no_key_at_all() {
        assert_eq!(presented_key(&with("authorization", "Bearer ")), None);
        assert_eq!(presented_key(&with("authorization", "Bearer")), None);
        assert_eq!(presented_key(&with("authorization", "bearer   ")), None);
        assert_eq!(presented_key(&with("x-api-key", " ")), None);
        assert_eq!(presented_key(&HeaderMap::new()), None);
    }

    #[test]
    fn the_key_is_taken_from_either_header() {
        assert_eq!(
            presented_key(&with("authorization", "Bearer tgk_x")),
            Some("tgk_x")
        );
        assert_eq!(
            presented_key(&with("authorization", "bearer  tgk_x ")),
            Some("tgk_x")
        );
        assert_eq!(presented_key(&with("x-api-key", "tgk_y")), Some("tgk_y"));
        // Not the Bearer scheme: the whole value is the presented key (and fails its shape).
        assert_eq!(
            presented_key(&with("authorization", "Bearertgk_x")),
            Some("Bearertgk_x")
        );
    }
}
