//! The tenant management API, `/tollgate/v1/…` (a prefix no provider route uses), for the
//! [`handler`](crate) only. First slice: a tenant admin lists, reads and issues the tenant's
//! keys, revokes one, and reads the tenant's policy. Design and what is left: `docs/management-api.md`.
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
use tollgate_core::key::{ClientKey, KEY_ID_LEN, KeyEnv};
use tollgate_core::limits::{LimitKind, Limits, Windows};
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
    IssueKey,
    GetKey(&'a str),
    RevokeKey(&'a str),
    RotateKey(&'a str),
    KeyUsage(&'a str),
    Tenant,
    TenantUsage,
}

impl Op<'_> {
    fn name(&self) -> &'static str {
        match self {
            Op::ListKeys => "manage.keys.list",
            Op::IssueKey => "manage.keys.issue",
            Op::GetKey(_) => "manage.keys.get",
            Op::RevokeKey(_) => "manage.keys.revoke",
            Op::RotateKey(_) => "manage.keys.rotate",
            Op::KeyUsage(_) => "manage.keys.usage",
            Op::Tenant => "manage.tenant",
            Op::TenantUsage => "manage.usage",
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
        ["keys"] if *method == Method::POST => (Method::POST, Op::IssueKey),
        ["keys"] => (Method::GET, Op::ListKeys),
        ["keys", id] => (Method::GET, Op::GetKey(id)),
        ["keys", id, "revoke"] => (Method::POST, Op::RevokeKey(id)),
        ["keys", id, "rotate"] => (Method::POST, Op::RotateKey(id)),
        ["keys", id, "usage"] => (Method::GET, Op::KeyUsage(id)),
        ["tenant"] => (Method::GET, Op::Tenant),
        ["usage"] => (Method::GET, Op::TenantUsage),
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

/// One subject's limit windows against its limits, as `tollgate usage` shows them: used,
/// limit, remaining and reset per kind (spend in micro-USD). No limits, no counters read.
async fn usage(
    gw: &Gateway,
    subject: String,
    limits: Limits,
    ctx: &mut RequestCtx,
) -> Result<Value, Refusal> {
    let now = gw.now();
    let counters = match (&gw.limits, limits.is_empty()) {
        (Some(l), false) => {
            ctx.calls.reads += 1;
            l.read(&subject).await.map_err(store_down)?.current(now)
        }
        _ => Default::default(),
    };
    let c = &counters;
    let rows = [
        (LimitKind::Rpm, c.requests, limits.rpm),
        (LimitKind::Tpm, c.tokens_minute, limits.tpm),
        (
            LimitKind::Concurrency,
            c.inflight.len() as u64,
            limits.concurrency,
        ),
        (LimitKind::BudgetDay, c.spend_day, limits.budget_day_micros),
        (
            LimitKind::BudgetMonth,
            c.spend_month,
            limits.budget_month_micros,
        ),
        (LimitKind::TokensDay, c.tokens_day, limits.tokens_day),
        (LimitKind::TokensMonth, c.tokens_month, limits.tokens_month),
    ];
    let rows: Vec<Value> = rows
        .iter()
        .map(|&(k, used, max)| {
            let reset = (k != LimitKind::Concurrency).then(|| rfc3339(Windows::reset_at(k, now)));
            json!({"limit": k.as_str(), "used": used, "max": max,
                   "remaining": max.map(|m| m.saturating_sub(used)), "resets_at": reset})
        })
        .collect();
    Ok(json!({"usage": rows}))
}

/// Lifetime of a key issued through the API when the request names none, in days.
pub const DEFAULT_KEY_DAYS: u64 = 90;
/// The longest lifetime a tenant admin may give a key (operators may issue longer ones).
pub const MAX_KEY_DAYS: u64 = 365;
/// The largest request body the management API reads.
const MAX_BODY_BYTES: usize = 16 * 1024;
/// Key id collisions (12 base62 characters) are astronomically rare; a few tries is plenty.
const ISSUE_ATTEMPTS: usize = 5;

/// What an admin may choose for a new key. The tenant is the token's; scopes and limits
/// follow the tenant's defaults (an operator narrows them with the CLI).
struct IssueRequest {
    owner: Option<String>,
    name: String,
    env: KeyEnv,
    days: u64,
}

fn bad(msg: &str) -> Refusal {
    Refusal::with_detail(Reason::ManagementBadRequest, msg)
}

fn text_field(v: &Value, field: &str, max: usize) -> Result<Option<String>, Refusal> {
    match v.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s))
            if !s.trim().is_empty()
                && s.chars().count() <= max
                && !s.chars().any(char::is_control) =>
        {
            Ok(Some(s.trim().to_owned()))
        }
        Some(_) => Err(bad(
            "owner and name must be non-empty strings without control characters (owner up to 256, name up to 128 characters)",
        )),
    }
}

/// The issue request body: `{}` or absent for the defaults; `owner`, `name`, `env`
/// (`live`/`test`), `expires_in_days` (1..=365). Any other field — a `tenant_id` above all —
/// is refused rather than ignored.
fn issue_request(body: &[u8]) -> Result<IssueRequest, Refusal> {
    let v: Value = if body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        serde_json::from_slice(body).map_err(|_| bad("the request body must be a JSON object"))?
    };
    let Some(obj) = v.as_object() else {
        return Err(bad("the request body must be a JSON object"));
    };
    const FIELDS: [&str; 4] = ["owner", "name", "env", "expires_in_days"];
    if obj.keys().any(|k| !FIELDS.contains(&k.as_str())) {
        return Err(bad(
            "unknown field: a new key takes only owner, name, env and expires_in_days (its tenant is your token's)",
        ));
    }
    let env = match v.get("env") {
        None | Some(Value::Null) => KeyEnv::Live,
        Some(Value::String(e)) if e == "live" => KeyEnv::Live,
        Some(Value::String(e)) if e == "test" => KeyEnv::Test,
        Some(_) => return Err(bad("env must be \"live\" or \"test\"")),
    };
    let days = match v.get("expires_in_days") {
        None | Some(Value::Null) => DEFAULT_KEY_DAYS,
        Some(d) => match d.as_u64() {
            Some(d) if (1..=MAX_KEY_DAYS).contains(&d) => d,
            _ => return Err(bad("expires_in_days must be a whole number from 1 to 365")),
        },
    };
    Ok(IssueRequest {
        owner: text_field(&v, "owner", 256)?,
        name: text_field(&v, "name", 128)?.unwrap_or_default(),
        env,
        days,
    })
}

async fn issue(
    gw: &Gateway,
    principal: &crate::authenticate::Principal,
    r: IssueRequest,
    ctx: &mut RequestCtx,
) -> Result<Value, Refusal> {
    let now = gw.now();
    let peppers = gw
        .secrets
        .peppers(false, &mut ctx.calls)
        .await
        .map_err(store_down)?;
    let owner = r.owner.unwrap_or_else(|| principal.rec.owner.clone());
    let expires_at = now.saturating_add(r.days.saturating_mul(86_400_000));
    let mut rng = rand::rngs::OsRng;
    for _ in 0..ISSUE_ATTEMPTS {
        let key = ClientKey::generate(r.env, &mut rng);
        let rec = ClientKeyRecord {
            name: r.name.clone(),
            expires_at: Some(expires_at),
            ..ClientKeyRecord::for_key(
                &key,
                principal.tenant.tenant_id.clone(),
                owner.clone(),
                peppers.digest_new(&key),
                now,
            )
        };
        ctx.calls.writes += 1;
        match gw.keys.store().put_key(&rec).await {
            Ok(()) => {
                tracing::info!(key_id = %rec.key_id, tenant = %rec.tenant_id, "key issued by a tenant admin");
                let mut v = key_json(&rec, now);
                v["tenant_id"] = json!(rec.tenant_id);
                v["key"] = json!(key.expose());
                v["warning"] = json!("store this key now: it will not be shown again");
                return Ok(v);
            }
            Err(StoreError::AlreadyExists) => continue,
            Err(e) => return Err(store_down(e)),
        }
    }
    Err(Refusal::new(Reason::StoreUnavailable))
}

/// The longest overlap a tenant admin may give a rotation, in hours (a week).
pub const MAX_OVERLAP_HOURS: u64 = 168;

/// `{}` / absent (24 h) or `{"overlap_hours": 1..=168}`; nothing else.
fn overlap_hours(body: &[u8]) -> Result<u64, Refusal> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(24);
    }
    let v: Value =
        serde_json::from_slice(body).map_err(|_| bad("the request body must be a JSON object"))?;
    let Some(obj) = v.as_object() else {
        return Err(bad("the request body must be a JSON object"));
    };
    if obj.keys().any(|k| k != "overlap_hours") {
        return Err(bad("unknown field: a rotation takes only overlap_hours"));
    }
    match obj.get("overlap_hours") {
        None | Some(Value::Null) => Ok(24),
        Some(h) => h
            .as_u64()
            .filter(|h| (1..=MAX_OVERLAP_HOURS).contains(h))
            .ok_or_else(|| bad("overlap_hours must be a whole number from 1 to 168")),
    }
}

/// Rotates the tenant's key `old`: a successor with its tenant, owner, policy and limits,
/// shown once; the old key works until the overlap ends (its audit lines say so).
async fn rotate(
    gw: &Gateway,
    old: ClientKeyRecord,
    hours: u64,
    ctx: &mut RequestCtx,
) -> Result<Value, Refusal> {
    let now = gw.now();
    let usable = old.status == KeyStatus::Active
        && old.rotated_to.is_none()
        && old.expires_at.is_none_or(|e| e > now);
    if !usable {
        return Err(bad(
            "only an active key that was not rotated before can be rotated",
        ));
    }
    let peppers = gw
        .secrets
        .peppers(false, &mut ctx.calls)
        .await
        .map_err(store_down)?;
    let mut rng = rand::rngs::OsRng;
    for _ in 0..ISSUE_ATTEMPTS {
        let key = ClientKey::generate(old.env, &mut rng);
        let (next, old_expires) =
            old.successor(&key, peppers.digest_new(&key), now, hours * 3_600_000);
        ctx.calls.writes += 1;
        match gw
            .keys
            .store()
            .rotate_key(&old.key_id, old_expires, &next)
            .await
        {
            Ok(true) => {
                gw.keys.forget(&old.key_id);
                tracing::info!(key_id = %next.key_id, rotated_from = %old.key_id, "key rotated by a tenant admin");
                let mut v = key_json(&next, now);
                v["tenant_id"] = json!(next.tenant_id);
                v["key"] = json!(key.expose());
                v["rotated_from"] = json!(old.key_id);
                v["old_key_expires_at"] = json!(rfc3339(old_expires));
                v["warning"] = json!("store this key now: it will not be shown again");
                return Ok(v);
            }
            Ok(false) => {
                return Err(bad(
                    "only an active key that was not rotated before can be rotated",
                ));
            }
            Err(StoreError::AlreadyExists) => continue,
            Err(e) => return Err(store_down(e)),
        }
    }
    Err(Refusal::new(Reason::StoreUnavailable))
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
        // Canary keys are the operator's tripwires: a tenant admin (whose identity may be the
        // one being abused) cannot tell them apart from absent keys, nor disarm them.
        Some(rec) if rec.tenant_id == tenant && !rec.canary => Ok(rec),
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
    let (parts, body) = req.into_parts();
    ctx.audit.route = Some(op.name().into());
    // Static keys never reach the management API: refused by shape, no store call.
    let raw = presented_key(&parts.headers).unwrap_or("");
    if caller_shape(raw) != CallerShape::Jwt {
        return Err(Refusal::new(Reason::ManagementNeedsIdentity));
    }
    let principal = crate::jwt::authenticate(gw, raw, source_ip, ctx).await?;
    if !principal.tenant_admin {
        return Err(Refusal::new(Reason::NotTenantAdmin));
    }
    let tenant = principal.tenant.tenant_id.clone();
    let now = gw.now();
    if let Op::RotateKey(id) = op {
        let bytes = axum::body::to_bytes(body, MAX_BODY_BYTES)
            .await
            .map_err(|_| bad("the request body must be a JSON object of at most 16 KB"))?;
        let hours = overlap_hours(&bytes)?;
        let old = own_key(gw, &tenant, id, ctx).await?;
        let v = rotate(gw, old, hours, ctx).await?;
        return Ok(Reply {
            status: 201,
            body: v,
        });
    }
    if let Op::IssueKey = op {
        let bytes = axum::body::to_bytes(body, MAX_BODY_BYTES)
            .await
            .map_err(|_| bad("the request body must be a JSON object of at most 16 KB"))?;
        let r = issue_request(&bytes)?;
        let v = issue(gw, &principal, r, ctx).await?;
        return Ok(Reply {
            status: 201,
            body: v,
        });
    }
    let body = match op {
        Op::IssueKey | Op::RotateKey(_) => return Err(Refusal::new(Reason::UnknownRoute)),
        Op::ListKeys => {
            ctx.calls.reads += 1;
            let mut keys = gw
                .keys
                .store()
                .list_keys(Some(&tenant))
                .await
                .map_err(store_down)?;
            // The store's index is by tenant already; checked again so nothing else leaks.
            // Canary keys are not listed (see `own_key`).
            keys.retain(|k| k.tenant_id == tenant && !k.canary);
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
        Op::KeyUsage(id) => {
            let rec = own_key(gw, &tenant, id, ctx).await?;
            let limits = rec.effective_limits(&principal.tenant);
            let mut v = usage(gw, format!("key#{}", rec.key_id), limits, ctx).await?;
            v["key_id"] = json!(rec.key_id);
            v
        }
        Op::Tenant => tenant_json(&principal.tenant),
        Op::TenantUsage => {
            let limits = principal.tenant.limits.clone().unwrap_or_default();
            let mut v = usage(gw, format!("tenant#{tenant}"), limits, ctx).await?;
            v["tenant_id"] = json!(tenant);
            v
        }
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
        assert!(matches!(
            op(&get, "/tollgate/v1/usage"),
            Ok(Op::TenantUsage)
        ));
        assert!(matches!(
            op(&get, "/tollgate/v1/keys/abcdefghijkl/usage"),
            Ok(Op::KeyUsage(_))
        ));
        assert!(matches!(op(&post, "/tollgate/v1/keys"), Ok(Op::IssueKey)));
        for (m, p, r) in [
            (
                &Method::DELETE,
                "/tollgate/v1/keys",
                Reason::MethodNotAllowed,
            ),
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

    #[test]
    fn issue_bodies_take_four_fields_and_never_a_tenant() {
        let ok = issue_request(b"").unwrap();
        assert_eq!((ok.env, ok.days, ok.name.as_str()), (KeyEnv::Live, 90, ""));
        assert!(ok.owner.is_none());
        let r = issue_request(
            br#"{"owner":"ci@acme.test","name":"ci","env":"test","expires_in_days":30}"#,
        )
        .unwrap();
        assert_eq!(r.owner.as_deref(), Some("ci@acme.test"));
        assert_eq!((r.env, r.days, r.name.as_str()), (KeyEnv::Test, 30, "ci"));
        for bad_body in [
            r#"{"tenant_id":"globex"}"#,
            r#"{"allowed_models":["*"]}"#,
            r#"{"expires_in_days":0}"#,
            r#"{"expires_in_days":366}"#,
            r#"{"expires_in_days":"30"}"#,
            r#"{"env":"prod"}"#,
            r#"{"owner":""}"#,
            r#"{"name":"ab"}"#,
            r#"[]"#,
            r#"not json"#,
        ] {
            let e = issue_request(bad_body.as_bytes()).err().unwrap();
            assert_eq!(e.reason, Reason::ManagementBadRequest, "{bad_body}");
            assert!(e.detail.is_some(), "{bad_body}");
        }
    }
}
