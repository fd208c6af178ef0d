//! Stage 1: who is calling. Contract order: shape and checksum (no I/O) → cache → store by
//! key id → constant-time digest compare (dummy on a miss) → status → expiry → tenant →
//! source network. Every failure is the same 401 to the caller; the audit line names it.

use crate::gateway::{Ctx, Gateway};
use crate::respond::Denial;
use http::HeaderMap;
use std::net::IpAddr;
use tollgate_core::auth::{AuthFailure, verify};
use tollgate_core::key::ClientKey;
use tollgate_core::records::{ClientKeyRecord, Tenant};

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Principal {
    pub rec: ClientKeyRecord,
    pub tenant: Tenant,
}

/// The key from `Authorization: Bearer …` (OpenAI SDKs) or `x-api-key` (Anthropic SDKs).
pub fn presented_key(headers: &HeaderMap) -> Option<&str> {
    if let Some(v) = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let v = v.trim();
        if v.len() > 7 && v[..7].eq_ignore_ascii_case("bearer ") {
            return Some(v[7..].trim());
        }
        return Some(v);
    }
    headers.get("x-api-key").and_then(|v| v.to_str().ok())
}

pub(crate) async fn authenticate(
    gw: &Gateway,
    headers: &HeaderMap,
    source_ip: Option<IpAddr>,
    ctx: &mut Ctx,
) -> Result<Principal, Denial> {
    let raw = presented_key(headers).unwrap_or("");
    // Shape and checksum first: a malformed or mistyped key costs no store call.
    let key = ClientKey::parse(raw).map_err(|e| Denial::Auth(AuthFailure::Format(e)))?;
    ctx.audit.key_id = Some(key.key_id().to_owned());

    let entry = gw
        .key_entry(key.key_id(), ctx)
        .await
        .map_err(Denial::Store)?;
    let peppers = gw.peppers(false, ctx).await.map_err(Denial::Store)?;
    let now = gw.now();
    let mut verdict = verify(
        &key,
        entry.rec.as_ref(),
        entry.tenant.as_ref(),
        &peppers,
        now,
        source_ip,
    );
    if verdict == Err(AuthFailure::UnknownPepperVersion) {
        // The pepper gained a version since we cached it: re-read once.
        let fresh = gw.peppers(true, ctx).await.map_err(Denial::Store)?;
        verdict = verify(
            &key,
            entry.rec.as_ref(),
            entry.tenant.as_ref(),
            &fresh,
            now,
            source_ip,
        );
    }
    if let Some(t) = &entry.tenant {
        ctx.audit.tenant = Some(t.tenant_id.clone());
    }
    verdict.map_err(Denial::Auth)?;
    match (&entry.rec, &entry.tenant) {
        (Some(rec), Some(tenant)) => {
            ctx.audit.principal = Some(rec.owner.clone());
            Ok(Principal {
                rec: rec.clone(),
                tenant: tenant.clone(),
            })
        }
        // verify() already refused these; kept total rather than unwrapping.
        _ => Err(Denial::Auth(AuthFailure::UnknownKey)),
    }
}
