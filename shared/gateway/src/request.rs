//! Stage 2: what is asked. Route (404/405), body size (413), strict JSON (400: invalid, not
//! UTF-8, a key repeated in one object, not an object), model (400 when missing, absurd or
//! credential-shaped), `stream` (400 unless boolean), scopes (403), and the pool the model
//! maps to. The body is parsed once here and reused downstream; what is checked is exactly
//! what is forwarded (see `tollgate_core::json` on duplicate keys).

use crate::authenticate::Principal;
use crate::context::RequestCtx;
use crate::respond::Refusal;
use axum::body::Body;
use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request};
use serde_json::Value;
use tollgate_core::audit::bounded;
use tollgate_core::auth::{check_scope, resolve_pool};
use tollgate_core::json::{BodyError, parse_request_body};
use tollgate_core::provider::Route;
use tollgate_core::reason::Reason;
use tollgate_core::records::Policy;
use tollgate_dlp::Report;
use tollgate_dlp::fast::{RequestPass, Top, scan_request_bytes};

/// Client headers that may reach the provider. Everything else — the client's credentials,
/// hosts, forwarding headers, cookies — is dropped.
/// Typed names, so looking them up hashes no text (a per-request cost, callgrind).
const FORWARDED_HEADERS: [HeaderName; 5] = [
    http::header::CONTENT_TYPE,
    http::header::ACCEPT,
    HeaderName::from_static("anthropic-version"),
    HeaderName::from_static("anthropic-beta"),
    HeaderName::from_static("openai-beta"),
];

/// Longest model name accepted. Real ones are under 100 characters (fine-tune and vLLM path
/// names included); anything near this is an attack on the audit line or the provider.
pub const MAX_MODEL_BYTES: usize = 256;

#[derive(Debug)]
pub struct Parsed {
    pub body: Bytes,
    /// The parsed body, when the borrowed pass could not settle the sensitive-data check
    /// alone (something to redact or block; see `tollgate_dlp::fast`). `None` for a clean
    /// body: `scanned` holds its report instead.
    pub json: Option<Value>,
    /// The sensitive-data report of a clean body, found in the same pass that validated it.
    pub scanned: Option<Report>,
    /// The caller's effective sensitive-data policy (defaults ← tenant ← key).
    pub dlp_policy: Policy,
    pub model: Option<String>,
    pub stream: bool,
    pub pool: String,
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

pub(crate) fn route(req: &Request<Body>) -> Result<Route, Refusal> {
    use tollgate_core::provider::RouteError;
    Route::resolve(req.method().as_str(), req.uri().path()).map_err(|e| {
        Refusal::new(match e {
            RouteError::NotFound => Reason::UnknownRoute,
            RouteError::MethodNotAllowed => Reason::MethodNotAllowed,
        })
    })
}

/// Most model names remembered as fit ([`check_model`]); the set starts over when full.
const MAX_FIT_MODELS: usize = 256;

/// Model names already found fit. The check depends on the name alone, and a process sees a
/// handful of names, so each is scanned once rather than on every request (the scan cost
/// ~3.6k instructions per request, callgrind). Names found unfit are not remembered.
static FIT_MODELS: std::sync::LazyLock<std::sync::Mutex<std::collections::HashSet<String>>> =
    std::sync::LazyLock::new(Default::default);

/// A model name fit to forward and to write into the audit line: bounded, printable, and not
/// something the sensitive-data scanner recognises (a key pasted into the wrong field).
fn check_model(m: &str) -> Result<(), Reason> {
    if m.is_empty() || m.len() > MAX_MODEL_BYTES || m.chars().any(char::is_control) {
        return Err(Reason::ModelInvalid);
    }
    if FIT_MODELS.lock().is_ok_and(|fit| fit.contains(m)) {
        return Ok(());
    }
    if !tollgate_dlp::detect(m).is_empty() {
        return Err(Reason::ModelInvalid);
    }
    if let Ok(mut fit) = FIT_MODELS.lock() {
        if fit.len() >= MAX_FIT_MODELS {
            fit.clear();
        }
        fit.insert(m.to_owned());
    }
    Ok(())
}

/// The top-level `model`: present, a string, fit to forward.
fn model_of(v: Option<Top<'_>>) -> Result<String, Refusal> {
    match v {
        None | Some(Top::Null) => Err(Reason::ModelMissing.into()),
        Some(Top::String(m)) => {
            check_model(&m)?;
            Ok(m.into_owned())
        }
        Some(_) => Err(Reason::ModelInvalid.into()),
    }
}

/// The top-level `stream`. The providers refuse a non-boolean one; forwarding it would let
/// the provider stream while the gateway expects a complete body.
fn stream_of(v: Option<Top<'_>>) -> Result<bool, Refusal> {
    match v {
        None | Some(Top::Null) => Ok(false),
        Some(Top::Bool(b)) => Ok(b),
        Some(_) => Err(Reason::StreamNotBoolean.into()),
    }
}

pub(crate) async fn read(
    max_body_bytes: usize,
    route: Route,
    req: Request<Body>,
    principal: &Principal,
    ctx: &mut RequestCtx,
) -> Result<Parsed, Refusal> {
    let declared = req
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > max_body_bytes) {
        return Err(Reason::BodyTooLarge.into());
    }
    let headers: Vec<(HeaderName, HeaderValue)> = FORWARDED_HEADERS
        .iter()
        .filter_map(|name| req.headers().get(name).map(|v| (name.clone(), v.clone())))
        .collect();
    let body = axum::body::to_bytes(req.into_body(), max_body_bytes)
        .await
        .map_err(|_| Refusal::new(Reason::BodyTooLarge))?;

    let dlp_policy = principal.rec.effective_dlp_policy(&principal.tenant);
    let (json, scanned, model, stream) = if route.has_body() {
        let refuse = |e: BodyError| {
            Refusal::new(match e {
                BodyError::NotUtf8 => Reason::BodyNotUtf8,
                BodyError::DuplicateKey { .. } => Reason::DuplicateJsonKey,
                BodyError::NotObject => Reason::NotJsonObject,
                _ => Reason::InvalidJson,
            })
        };
        // One borrowed pass validates the body, reads the fields below and scans every text
        // (the verdict is applied by `inspect`, in its place among the stages); only a body
        // with something to redact or block is parsed into a value.
        // A key or tenant with limits needs the parsed value anyway (the reservation estimate
        // in `limit::admit` walks it): parse once rather than scan borrowed and parse again.
        let kind = crate::inspect::request_kind(route.kind());
        let pass = if !crate::limit::has_limits(principal) {
            scan_request_bytes(kind, &body, &dlp_policy, &["model", "stream"]).map_err(refuse)?
        } else {
            RequestPass::Fallback
        };
        match pass {
            RequestPass::Clean { report, top } => {
                let mut top = top.into_iter();
                let model = model_of(top.next().flatten())?;
                let stream = stream_of(top.next().flatten())?;
                (None, Some(report), Some(model), stream)
            }
            RequestPass::Fallback => {
                let v = parse_request_body(&body).map_err(refuse)?;
                let model = model_of(v.get("model").map(Top::of))?;
                let stream = stream_of(v.get("stream").map(Top::of))?;
                (Some(v), None, Some(model), stream)
            }
        }
    } else {
        (None, None, None, false)
    };
    ctx.audit.model = model.as_deref().map(bounded);
    ctx.audit.stream = stream;

    check_scope(&principal.rec, route, model.as_deref()).map_err(|s| match s {
        tollgate_core::auth::ScopeFailure::RouteNotAllowed(r) => {
            Refusal::with_detail(s.reason(), r)
        }
        tollgate_core::auth::ScopeFailure::ModelNotAllowed(ref m) => {
            Refusal::with_detail(s.reason(), m.clone())
        }
    })?;
    let pool = resolve_pool(&principal.rec, &principal.tenant, route, model.as_deref());
    ctx.audit.pool = Some(pool.clone());
    Ok(Parsed {
        body,
        json,
        scanned,
        dlp_policy,
        model,
        stream,
        pool,
        headers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_names_are_bounded_and_never_credentials() {
        for ok in [
            "gpt-4o-mini",
            "claude-sonnet-4-5",
            "ft:gpt-4o-mini:acme:support:abc123",
            "meta-llama/Llama-3.1-8B-Instruct",
            "claude-3-5-sonnet@20240620",
        ] {
            assert_eq!(check_model(ok), Ok(()), "{ok}");
        }
        assert_eq!(check_model(""), Err(Reason::ModelInvalid));
        assert_eq!(check_model(&"m".repeat(257)), Err(Reason::ModelInvalid));
        assert_eq!(check_model("gpt\n4o"), Err(Reason::ModelInvalid));
        // An AWS access key id pasted as the model (assembled at run time: no literal key).
        let aws = format!("AKIA{}", "IOSFODNN7EXAMPLQ");
        assert_eq!(check_model(&aws), Err(Reason::ModelInvalid));
        // Asked again (a fit name is remembered, an unfit one never is): the same answers.
        assert_eq!(check_model("gpt-4o-mini"), Ok(()));
        assert_eq!(check_model(&aws), Err(Reason::ModelInvalid));
        assert!(!FIT_MODELS.lock().unwrap().contains(&aws));
    }

    #[test]
    fn the_remembered_names_are_bounded() {
        for i in 0..(MAX_FIT_MODELS * 2) {
            assert_eq!(check_model(&format!("model-{i}")), Ok(()));
        }
        assert!(FIT_MODELS.lock().unwrap().len() <= MAX_FIT_MODELS);
        assert_eq!(check_model("model-3"), Ok(()));
    }
}
