//! Stage 2: what is asked. Route (404/405), body size (413), JSON (400), model, scopes (403),
//! and the pool the model maps to. The body is parsed once here and reused downstream.

use crate::authenticate::Principal;
use crate::gateway::{Ctx, Gateway};
use crate::respond::Denial;
use axum::body::Body;
use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request};
use serde_json::Value;
use tollgate_core::auth::{check_scope, resolve_pool};
use tollgate_core::provider::Route;

/// Client headers that may reach the provider. Everything else — the client's credentials,
/// hosts, forwarding headers, cookies — is dropped.
const FORWARDED_HEADERS: [&str; 5] = [
    "content-type",
    "accept",
    "anthropic-version",
    "anthropic-beta",
    "openai-beta",
];

#[derive(Debug)]
pub struct Parsed {
    pub body: Bytes,
    pub json: Option<Value>,
    pub model: Option<String>,
    pub stream: bool,
    pub pool: String,
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

pub(crate) fn route(req: &Request<Body>) -> Result<Route, Denial> {
    Route::resolve(req.method().as_str(), req.uri().path()).map_err(Denial::Route)
}

pub(crate) async fn read(
    gw: &Gateway,
    route: Route,
    req: Request<Body>,
    principal: &Principal,
    ctx: &mut Ctx,
) -> Result<Parsed, Denial> {
    let limit = gw.cfg.max_body_bytes;
    let declared = req
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(Denial::TooLarge);
    }
    let headers: Vec<(HeaderName, HeaderValue)> = FORWARDED_HEADERS
        .iter()
        .filter_map(|name| {
            req.headers()
                .get(*name)
                .map(|v| (HeaderName::from_static(name), v.clone()))
        })
        .collect();
    let body = axum::body::to_bytes(req.into_body(), limit)
        .await
        .map_err(|_| Denial::TooLarge)?;

    let (json, model, stream) = if route.has_body() {
        let v: Value =
            serde_json::from_slice(&body).map_err(|_| Denial::BadRequest("invalid_json"))?;
        if !v.is_object() {
            return Err(Denial::BadRequest("not_json_object"));
        }
        let model = v.get("model").and_then(Value::as_str).map(str::to_owned);
        if model.is_none() {
            return Err(Denial::BadRequest("model_missing"));
        }
        let stream = v.get("stream").and_then(Value::as_bool).unwrap_or(false);
        (Some(v), model, stream)
    } else {
        (None, None, false)
    };
    ctx.audit.model = model.clone();
    ctx.audit.stream = stream;

    check_scope(&principal.rec, route, model.as_deref()).map_err(Denial::Scope)?;
    let pool = resolve_pool(&principal.rec, &principal.tenant, route, model.as_deref());
    ctx.audit.pool = Some(pool.clone());
    Ok(Parsed {
        body,
        json,
        model,
        stream,
        pool,
        headers,
    })
}
