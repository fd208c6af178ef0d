//! The providers' key administration, as far as rotation needs it:
//!
//! | route | imitates |
//! |---|---|
//! | `POST /v1/organization/projects/{project}/service_accounts/{sa}/api_keys` | OpenAI Admin API: create a service account key (`{name, expires_in_seconds}` → `{id, value, …}`) |
//! | `DELETE /v1/organization/projects/{project}/api_keys/{key}` | OpenAI Admin API: delete a project key |
//! | `POST /v1/organizations/api_keys/{key}` | Anthropic Admin API: update a key (`{"status": "inactive"}`) |
//! | `POST /_mock/admin/keys` | the providers' consoles: register a key made by hand (`{id, value}`) |
//! | `GET /_mock/admin` | counters and every key with its status |
//!
//! Admin calls need an admin token starting `mock-admin` (Bearer for OpenAI, `x-api-key` plus
//! `anthropic-version` for Anthropic). A created key's value is `mock-ok-rot-<n>-<hex>`, so it
//! answers normally; once deleted or deactivated, provider requests with it get a 401.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Debug, Clone, Serialize)]
pub struct AdminKey {
    pub id: String,
    pub value: String,
    /// `active`, `deleted` (OpenAI) or `inactive` (Anthropic).
    pub status: &'static str,
    pub name: Option<String>,
    pub expires_at: Option<u64>,
}

#[derive(Debug, Default, Serialize)]
pub struct AdminState {
    pub created: u64,
    pub deleted: u64,
    pub deactivated: u64,
    pub keys: BTreeMap<String, AdminKey>,
    #[serde(skip)]
    revoked: HashSet<String>,
}

impl AdminState {
    /// Whether provider requests with this value are refused (deleted or deactivated).
    pub fn is_revoked(&self, value: &str) -> bool {
        self.revoked.contains(value)
    }
}

pub(crate) type Shared = Arc<super::AppState>;

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn bearer(h: &HeaderMap) -> Option<&str> {
    h.get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
}

fn openai_error(status: StatusCode, msg: &str) -> Response {
    (
        status,
        Json(json!({"error": {"message": msg, "type": "invalid_request_error", "param": null, "code": null}})),
    )
        .into_response()
}

fn anthropic_error(status: StatusCode, kind: &str, msg: &str) -> Response {
    (
        status,
        Json(json!({"type": "error", "error": {"type": kind, "message": msg}})),
    )
        .into_response()
}

fn is_admin(token: Option<&str>) -> bool {
    token.is_some_and(|t| t.starts_with("mock-admin"))
}

#[derive(Deserialize, Default)]
pub struct CreateBody {
    name: Option<String>,
    expires_in_seconds: Option<u64>,
}

pub(crate) async fn openai_create(
    State(st): State<Shared>,
    Path((_project, _sa)): Path<(String, String)>,
    headers: HeaderMap,
    body: Option<Json<CreateBody>>,
) -> Response {
    if !is_admin(bearer(&headers)) {
        return openai_error(StatusCode::UNAUTHORIZED, "Invalid admin key.");
    }
    let body = body.map(|b| b.0).unwrap_or_default();
    let mut a = st.admin.lock().unwrap_or_else(|e| e.into_inner());
    a.created += 1;
    let n = a.created;
    let id = format!("key_mock{n}");
    let nonce: u64 = (now() << 16) ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let value = format!("mock-ok-rot-{n}-{nonce:016x}");
    let created_at = now();
    let expires_at = body.expires_in_seconds.map(|s| created_at + s);
    a.keys.insert(
        id.clone(),
        AdminKey {
            id: id.clone(),
            value: value.clone(),
            status: "active",
            name: body.name.clone(),
            expires_at,
        },
    );
    Json(json!({
        "object": "organization.project.service_account.api_key",
        "id": id,
        "name": body.name,
        "value": value,
        "created_at": created_at,
        "expires_at": expires_at,
    }))
    .into_response()
}

pub(crate) async fn openai_delete(
    State(st): State<Shared>,
    Path((_project, key)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if !is_admin(bearer(&headers)) {
        return openai_error(StatusCode::UNAUTHORIZED, "Invalid admin key.");
    }
    let mut a = st.admin.lock().unwrap_or_else(|e| e.into_inner());
    let value = match a.keys.get_mut(&key) {
        Some(k) if k.status != "deleted" => {
            k.status = "deleted";
            k.value.clone()
        }
        _ => return openai_error(StatusCode::NOT_FOUND, "No such API key."),
    };
    a.revoked.insert(value);
    a.deleted += 1;
    Json(json!({"object": "organization.project.api_key.deleted", "id": key, "deleted": true}))
        .into_response()
}

#[derive(Deserialize)]
pub struct UpdateBody {
    status: Option<String>,
    name: Option<String>,
}

pub(crate) async fn anthropic_update(
    State(st): State<Shared>,
    Path(key): Path<String>,
    headers: HeaderMap,
    Json(body): Json<UpdateBody>,
) -> Response {
    let token = headers.get("x-api-key").and_then(|v| v.to_str().ok());
    if !is_admin(token) {
        return anthropic_error(
            StatusCode::UNAUTHORIZED,
            "authentication_error",
            "invalid x-api-key",
        );
    }
    if !headers.contains_key("anthropic-version") {
        return anthropic_error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "anthropic-version: header is required",
        );
    }
    let mut a = st.admin.lock().unwrap_or_else(|e| e.into_inner());
    let Some(k) = a.keys.get_mut(&key) else {
        return anthropic_error(
            StatusCode::NOT_FOUND,
            "not_found_error",
            "API key not found",
        );
    };
    if let Some(n) = body.name {
        k.name = Some(n);
    }
    let value = k.value.clone();
    let was_active = k.status == "active";
    match body.status.as_deref() {
        None => {}
        Some("active") => k.status = "active",
        Some("inactive") => k.status = "inactive",
        Some("archived") => k.status = "archived",
        Some(_) => {
            return anthropic_error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "status must be active, inactive or archived",
            );
        }
    }
    let answer = json!({
        "type": "api_key",
        "id": k.id,
        "name": k.name,
        "status": k.status,
        "partial_key_hint": format!("{}...", value.chars().take(8).collect::<String>()),
    });
    let now_active = k.status == "active";
    if was_active && !now_active {
        a.revoked.insert(value);
        a.deactivated += 1;
    } else if now_active {
        a.revoked.remove(&value);
    }
    Json(answer).into_response()
}

#[derive(Deserialize)]
pub struct RegisterBody {
    id: String,
    value: String,
}

pub(crate) async fn register(State(st): State<Shared>, Json(body): Json<RegisterBody>) -> Response {
    let mut a = st.admin.lock().unwrap_or_else(|e| e.into_inner());
    a.keys.insert(
        body.id.clone(),
        AdminKey {
            id: body.id,
            value: body.value,
            status: "active",
            name: None,
            expires_at: None,
        },
    );
    StatusCode::CREATED.into_response()
}

pub(crate) async fn show(State(st): State<Shared>) -> Response {
    let a = st.admin.lock().unwrap_or_else(|e| e.into_inner());
    Json(json!({
        "created": a.created,
        "deleted": a.deleted,
        "deactivated": a.deactivated,
        "keys": a.keys.values().collect::<Vec<_>>(),
    }))
    .into_response()
}
