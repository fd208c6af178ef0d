//! The tenant management API, `/tollgate/v1/…` (a prefix no provider route uses), for the
//! [`handler`](crate) only. First slice: a tenant admin lists and reads the tenant's keys,
//! revokes one, and reads the tenant's policy. Design and what is left: `docs/management-api.md`.
//!
//! Who may call it: only a verified OIDC identity (the same JWT checks as callers, in `jwt`)
//! whose issuer's `tenant_admin` rule holds for the token. The tenant is always the one the
//! token maps to — never a path segment, query or body field — so an admin of A has no way to
//! name B. A tollgate key is refused with the uniform 401 before any store call
//! (`management_needs_identity`); an identity without the role gets 403 (`not_tenant_admin`);
//! a key id of another tenant answers exactly like an unknown one (404,
//! `managed_key_not_found`). Responses never carry a key digest, a key or a pool token. The
//! audit line is written by `settle`, like every request's.

use crate::authenticate::presented_key;
use crate::context::RequestCtx;
use crate::respond::Refusal;
use crate::state::Gateway;
use axum::body::Body;
use http::{Method, Request};
use serde_json::{Value, json};
use std::net::IpAddr;
use tollgate_core::base62::is_base62;
use tollgate_core::clock::rfc3339;
use tollgate_core::identity::{CallerShape, caller_shape};
use tollgate_core::key::KEY_ID_LEN;
use tollgate_core::ports::StoreError;
use tollgate_core::reason::Reason;
use tollgate_core::records::{ClientKeyRecord, KeyStatus, Tenant};

/// The management API's path prefix.
pub const PREFIX: &str = "/tollgate/v1";

/// Whether `path` belongs to the management API (and not to the provider routes).
pub fn is_management(path: &str) -> bool {
    path == PREFIX || path.starts_with("/tollgate/")
}

/// A management answer: status and JSON body.
#[derive(Debug)]
pub(crate) struct Reply {
    pub status: u16,
    pub body: Value,
}

/// What the path asks for, once the caller is known to be an admin.
enum Op<'a> {
    ListKeys,
    GetKey(&'a str),
    RevokeKey(&'a str),
    Tenant,
}

impl Op<'_> {
    fn name(&self) -> &'static str {
        match self {
            Op::ListKeys => "manage.keys.list",
            Op::GetKey(_) => "manage.keys.get",
            Op::RevokeKey(_) => "manage.keys.revoke",
            Op::Tenant => "manage.tenant",
        }
    }
}

/// The raw path (not percent-decoded) to an operation: exact segments only, so `..`,
/// encoded slashes and the like simply match nothing (404).
fn op<'a>(method: &Method, path: &'a str) -> Result<Op<'a>, Reason> {
    let rest = path.strip_prefix(PREFIX).ok_or(Reason::UnknownRoute)?;
    let segs: Vec<&str> = rest.strip_prefix('/').unwrap_or(rest).split('/').collect();
    if segs.iter().any(|s| s.is_empty()) {
        return Err(Reason::UnknownRoute);
    }
    let (want, op) = match segs.as_slice() {
        ["keys"] => (Method::GET, Op::ListKeys),
        ["keys", id] => (Method::GET, Op::GetKey(id)),
        ["keys", id, "revoke"] => (Method::POST, Op::RevokeKey(id)),
        ["tenant"] => (Method::GET, Op::Tenant),
        _ => return Err(Reason::UnknownRoute),
    };
    if *method != want {
        return Err(Reason::MethodNotAllowed);
    }
    Ok(op)
}

fn store_down(e: StoreError) -> Refusal {
    tracing::warn!(error = %e, "store unavailable on the management API");
    Refusal::new(Reason::StoreUnavailable)
}

fn status(rec: &ClientKeyRecord, now: u64) -> &'static str {
    match rec.status {
        KeyStatus::Revoked => "revoked",
        KeyStatus::Suspended => "suspended",
        KeyStatus::Active if rec.expires_at.is_some_and(|e| e <= now) => "expired",
        KeyStatus::Active => "active",
    }
}

/// A key as a tenant admin sees it: never the digest or pepper version.
fn key_json(rec: &ClientKeyRecord, now: u64) -> Value {
    json!({
        "key_id": rec.key_id,
        "display": rec.display(),
        "owner": rec.owner,
        "name": rec.name,
        "env": rec.env,
        "status": status(rec, now),
        "created_at": rfc3339(rec.created_at),
        "expires_at": rec.expires_at.map(rfc3339),
        "revoked_at": rec.revoked_at.map(rfc3339),
        "suspended_at": rec.suspended_at.map(rfc3339),
        "allowed_cidrs": rec.allowed_cidrs.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "allowed_models": rec.allowed_models,
        "allowed_routes": rec.allowed_routes,
        "limits": rec.limits,
    })
}

fn tenant_json(t: &Tenant) -> Value {
    json!({
        "tenant_id": t.tenant_id,
        "name": t.name,
        "owner": t.owner,
        "model_pools": t.model_pools,
        "limits": t.limits,
        "key_limits": t.key_limits,
        "dlp_policy": t.dlp_policy.is_some(),
    })
}

/// The tenant's own key `id`, or the one refusal for "absent" and "another tenant's".
async fn own_key(
    gw: &Gateway,
    tenant: &str,
    id: &str,
    ctx: &mut RequestCtx,
) -> Result<ClientKeyRecord, Refusal> {
    if id.len() != KEY_ID_LEN || !id.bytes().all(is_base62) {
        return Err(Refusal::new(Reason::ManagedKeyNotFound));
    }
    ctx.calls.reads += 1;
    match gw.keys.store().get_key(id).await.map_err(store_down)? {
        Some(rec) if rec.tenant_id == tenant => Ok(rec),
        _ => Err(Refusal::new(Reason::ManagedKeyNotFound)),
    }
}

pub(crate) async fn serve(
    gw: &Gateway,
    req: Request<Body>,
    source_ip: Option<IpAddr>,
    ctx: &mut RequestCtx,
) -> Result<Reply, Refusal> {
    let path = req.uri().path().to_owned();
    let op = op(req.method(), &path).map_err(Refusal::new)?;
    ctx.audit.route = Some(op.name().into());
    // Static keys never reach the management API: refused by shape, no store call.
    let raw = presented_key(req.headers()).unwrap_or("");
    if caller_shape(raw) != CallerShape::Jwt {
        return Err(Refusal::new(Reason::ManagementNeedsIdentity));
    }
    let principal = crate::jwt::authenticate(gw, raw, source_ip, ctx).await?;
    if !principal.tenant_admin {
        return Err(Refusal::new(Reason::NotTenantAdmin));
    }
    let tenant = principal.tenant.tenant_id.clone();
    let now = gw.now();
    let body = match op {
        Op::ListKeys => {
            ctx.calls.reads += 1;
            let mut keys = gw
                .keys
                .store()
                .list_keys(Some(&tenant))
                .await
                .map_err(store_down)?;
            // The store's index is by tenant already; checked again so nothing else leaks.
            keys.retain(|k| k.tenant_id == tenant);
            keys.sort_by(|a, b| (a.created_at, &a.key_id).cmp(&(b.created_at, &b.key_id)));
            let keys: Vec<Value> = keys.iter().map(|k| key_json(k, now)).collect();
            json!({"tenant_id": tenant, "keys": keys})
        }
        Op::GetKey(id) => {
            let rec = own_key(gw, &tenant, id, ctx).await?;
            key_json(&rec, now)
        }
        Op::RevokeKey(id) => {
            let rec = own_key(gw, &tenant, id, ctx).await?;
            if rec.status != KeyStatus::Revoked {
                ctx.calls.writes += 1;
                gw.keys
                    .store()
                    .revoke_key(&rec.key_id, now)
                    .await
                    .map_err(store_down)?;
                // This instance refuses it at once; others within the key cache TTL.
                gw.keys.forget(&rec.key_id);
            }
            let mut v = key_json(&rec, now);
            v["status"] = json!("revoked");
            v["revoked_at"] = json!(rfc3339(rec.revoked_at.unwrap_or(now)));
            v
        }
        Op::Tenant => tenant_json(&principal.tenant),
    };
    Ok(Reply { status: 200, body })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_map_to_operations_exactly() {
        let get = Method::GET;
        let post = Method::POST;
        assert!(matches!(op(&get, "/tollgate/v1/keys"), Ok(Op::ListKeys)));
        assert!(matches!(
            op(&get, "/tollgate/v1/keys/abcdefghijkl"),
            Ok(Op::GetKey("abcdefghijkl"))
        ));
        assert!(matches!(
            op(&post, "/tollgate/v1/keys/abcdefghijkl/revoke"),
            Ok(Op::RevokeKey(_))
        ));
        assert!(matches!(op(&get, "/tollgate/v1/tenant"), Ok(Op::Tenant)));
        for (m, p, r) in [
            (&post, "/tollgate/v1/keys", Reason::MethodNotAllowed),
            (&get, "/tollgate/v1/keys/x/revoke", Reason::MethodNotAllowed),
            (&get, "/tollgate/v1/keys/", Reason::UnknownRoute),
            (&get, "/tollgate/v1//keys", Reason::UnknownRoute),
            (
                &get,
                "/tollgate/v1/tenants/other/keys",
                Reason::UnknownRoute,
            ),
            (&get, "/tollgate/v1/pools", Reason::UnknownRoute),
            (&get, "/tollgate/v1/issuers", Reason::UnknownRoute),
            (&get, "/tollgate/v2/keys", Reason::UnknownRoute),
            (&get, "/tollgate/v1", Reason::UnknownRoute),
        ] {
            assert_eq!(op(m, p).err(), Some(r), "{m} {p}");
        }
        assert!(is_management("/tollgate/v1/keys"));
        assert!(is_management("/tollgate/anything"));
        assert!(!is_management("/v1/chat/completions"));
        assert!(!is_management("/tollgatex"));
    }
}
