//! Workload identity federation, as the two providers document it (see docs/rotation.md,
//! "Federated tokens"): OpenAI's RFC 8693 token exchange (`POST /oauth/token`, on
//! `auth.openai.com` for real) and Anthropic's RFC 7523 jwt-bearer grant
//! (`POST /v1/oauth/token`). The assertion is verified — ES384 signature against a public
//! key the test harness registers, audience, issuer, expiry — exchanges are counted, and
//! short-lived access tokens (`mock-oat-…`) are issued that the API routes accept as bearer
//! credentials until they expire.
//!
//! `POST /_mock/federation` configures (fields present replace the current ones):
//! `{"keys":[{"kid","x","y"}], "issuer", "audiences":[…], "expires_in": s,
//!   "reject_service_accounts":[…]}`; `GET /_mock/federation` returns the counters.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::AppState;

pub const ISSUED_PREFIX: &str = "mock-oat-";

#[derive(Default)]
pub struct FederationState {
    keys: HashMap<String, (String, String)>,
    issuer: Option<String>,
    audiences: Vec<String>,
    expires_in: u64,
    rejected_accounts: HashSet<String>,
    issued: HashMap<String, Instant>,
    counters: Counters,
}

#[derive(Default, Clone, Serialize)]
pub struct Counters {
    /// Successful exchanges, per provider.
    exchanges_openai: u64,
    exchanges_anthropic: u64,
    /// Successful exchanges, per service account id.
    by_service_account: HashMap<String, u64>,
    /// Exchanges refused (bad assertion, rejected account, bad request).
    rejected: u64,
}

#[derive(Deserialize)]
pub struct Jwk {
    kid: String,
    x: String,
    y: String,
}

#[derive(Deserialize)]
pub struct Configure {
    keys: Option<Vec<Jwk>>,
    issuer: Option<String>,
    audiences: Option<Vec<String>>,
    expires_in: Option<u64>,
    reject_service_accounts: Option<Vec<String>>,
}

impl FederationState {
    /// Whether `token` is an access token this mock issued that has not expired.
    pub fn accepts(&self, token: &str) -> bool {
        self.issued
            .get(token)
            .is_some_and(|exp| Instant::now() < *exp)
    }
}

pub async fn configure(State(st): State<Arc<AppState>>, Json(c): Json<Configure>) -> Response {
    let mut f = st.federation.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(keys) = c.keys {
        f.keys = keys.into_iter().map(|k| (k.kid, (k.x, k.y))).collect();
    }
    if c.issuer.is_some() {
        f.issuer = c.issuer;
    }
    if let Some(a) = c.audiences {
        f.audiences = a;
    }
    if let Some(e) = c.expires_in {
        f.expires_in = e;
    }
    if let Some(r) = c.reject_service_accounts {
        f.rejected_accounts = r.into_iter().collect();
    }
    StatusCode::NO_CONTENT.into_response()
}

pub async fn show(State(st): State<Arc<AppState>>) -> Response {
    let f = st.federation.lock().unwrap_or_else(|e| e.into_inner());
    Json(json!({
        "counters": f.counters,
        "keys": f.keys.len(),
        "audiences": f.audiences,
        "expires_in": f.expires_in,
    }))
    .into_response()
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        Json(json!({ "error": error, "error_description": description })),
    )
        .into_response()
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Grant {
    OpenAi,
    Anthropic,
}

fn field<'a>(v: &'a Value, name: &str) -> Option<&'a str> {
    v.get(name)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

pub async fn openai_token(st: State<Arc<AppState>>, h: HeaderMap, body: Bytes) -> Response {
    exchange(st, h, body, Grant::OpenAi)
}

pub async fn anthropic_token(st: State<Arc<AppState>>, h: HeaderMap, body: Bytes) -> Response {
    exchange(st, h, body, Grant::Anthropic)
}

fn exchange(State(st): State<Arc<AppState>>, h: HeaderMap, body: Bytes, g: Grant) -> Response {
    let mut f = st.federation.lock().unwrap_or_else(|e| e.into_inner());
    match check(&f, &h, &body, g) {
        Ok(account) => {
            let n = f.counters.exchanges_openai + f.counters.exchanges_anthropic + 1;
            match g {
                Grant::OpenAi => f.counters.exchanges_openai += 1,
                Grant::Anthropic => f.counters.exchanges_anthropic += 1,
            }
            *f.counters
                .by_service_account
                .entry(account.clone())
                .or_insert(0) += 1;
            let lifetime = if f.expires_in == 0 {
                3600
            } else {
                f.expires_in
            };
            let token = format!("{ISSUED_PREFIX}{n}-{account}");
            let now = Instant::now();
            f.issued.retain(|_, exp| *exp > now);
            f.issued
                .insert(token.clone(), now + Duration::from_secs(lifetime));
            let mut out = json!({
                "access_token": token,
                "token_type": "Bearer",
                "expires_in": lifetime,
            });
            if g == Grant::OpenAi
                && let Some(m) = out.as_object_mut()
            {
                m.insert(
                    "issued_token_type".into(),
                    json!("urn:ietf:params:oauth:token-type:access_token"),
                );
            }
            Json(out).into_response()
        }
        Err(Refusal(status, error, description)) => {
            f.counters.rejected += 1;
            oauth_error(status, error, &description)
        }
    }
}

/// The request and its assertion → the service account it is for, or the error answer.
/// An OAuth error answer: status, `error`, `error_description`.
struct Refusal(StatusCode, &'static str, String);

fn oauth_refusal(status: StatusCode, error: &'static str, description: &str) -> Refusal {
    Refusal(status, error, description.to_owned())
}

fn check(f: &FederationState, h: &HeaderMap, body: &[u8], g: Grant) -> Result<String, Refusal> {
    let bad = |d: &str| oauth_refusal(StatusCode::BAD_REQUEST, "invalid_request", d);
    let v: Value = serde_json::from_slice(body).map_err(|_| bad("body is not JSON"))?;
    let (grant, jwt) = match g {
        Grant::OpenAi => {
            let stt = field(&v, "subject_token_type").unwrap_or_default();
            if stt != "urn:ietf:params:oauth:token-type:jwt"
                && stt != "urn:ietf:params:oauth:token-type:id_token"
            {
                return Err(bad("unsupported subject_token_type"));
            }
            for k in ["identity_provider_id", "service_account_id"] {
                field(&v, k).ok_or_else(|| bad(&format!("{k} is required")))?;
            }
            (
                "urn:ietf:params:oauth:grant-type:token-exchange",
                field(&v, "subject_token"),
            )
        }
        Grant::Anthropic => {
            let beta = h
                .get("anthropic-beta")
                .and_then(|b| b.to_str().ok())
                .unwrap_or_default();
            if !beta
                .split(',')
                .any(|b| b.trim() == "oidc-federation-2026-04-01")
            {
                return Err(bad(
                    "anthropic-beta: oidc-federation-2026-04-01 is required",
                ));
            }
            for k in [
                "federation_rule_id",
                "organization_id",
                "service_account_id",
            ] {
                field(&v, k).ok_or_else(|| bad(&format!("{k} is required")))?;
            }
            (
                "urn:ietf:params:oauth:grant-type:jwt-bearer",
                field(&v, "assertion"),
            )
        }
    };
    if field(&v, "grant_type") != Some(grant) {
        return Err(oauth_refusal(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "wrong grant_type",
        ));
    }
    let jwt = jwt.ok_or_else(|| bad("the assertion / subject_token is required"))?;
    let account = field(&v, "service_account_id")
        .unwrap_or_default()
        .to_owned();
    let denied = |d: &str| oauth_refusal(StatusCode::UNAUTHORIZED, "invalid_grant", d);
    let header = decode_header(jwt).map_err(|_| denied("assertion is not a JWT"))?;
    if header.alg != Algorithm::ES384 {
        return Err(denied("unsupported alg"));
    }
    let (x, y) = header
        .kid
        .as_ref()
        .and_then(|k| f.keys.get(k))
        .ok_or_else(|| denied("unknown kid"))?;
    let key = DecodingKey::from_ec_components(x, y).map_err(|_| denied("bad key"))?;
    let mut val = Validation::new(Algorithm::ES384);
    val.leeway = 0;
    val.set_required_spec_claims(&["exp", "aud", "iss", "sub"]);
    if f.audiences.is_empty() {
        return Err(denied("no audience configured"));
    }
    val.set_audience(&f.audiences);
    if let Some(iss) = &f.issuer {
        val.set_issuer(&[iss]);
    }
    decode::<Value>(jwt, &key, &val)
        .map_err(|e| denied(&format!("assertion refused: {:?}", e.kind())))?;
    if f.rejected_accounts.contains(&account) {
        return Err(denied("no federation rule allows this service account"));
    }
    Ok(account)
}
