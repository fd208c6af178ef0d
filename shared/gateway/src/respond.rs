//! The one place a reason becomes a response: status and provider-shaped JSON body, in one
//! `match`. No internal detail reaches the client; the audit line gets the precise reason.

use axum::body::Bytes;
use http::{HeaderValue, StatusCode, header};
use tollgate_core::limits::LimitKind;
use tollgate_core::provider::{ErrorClass, error_body};
use tollgate_core::reason::Reason;
use tollgate_core::records::ProviderKind;

/// Why the gateway answers instead of a provider: the reason, and for the few reasons whose
/// message names something (a model the key may not use, blocked entity types), that text.
/// The detail is client-safe by construction: it only ever holds what the caller sent or
/// entity type names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub reason: Reason,
    pub detail: Option<String>,
    /// For a limit refusal: the caller's own limit, for `Retry-After` and `x-ratelimit-*`.
    pub limit: Option<LimitHeaders>,
}

/// The caller's limit that refused, as the 429's headers describe it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitHeaders {
    pub kind: LimitKind,
    pub limit: u64,
    pub remaining: u64,
    /// Seconds until the window resets (at least 1).
    pub retry_after_s: u64,
    /// The reset instant, RFC 3339 in the Anthropic shape.
    pub reset_at_ms: u64,
}

impl Refusal {
    pub fn new(reason: Reason) -> Self {
        Self {
            reason,
            detail: None,
            limit: None,
        }
    }

    pub fn with_detail(reason: Reason, detail: impl Into<String>) -> Self {
        Self {
            reason,
            detail: Some(detail.into()),
            limit: None,
        }
    }

    pub fn limited(h: LimitHeaders) -> Self {
        Self {
            reason: h.kind.into(),
            detail: None,
            limit: Some(h),
        }
    }
}

impl From<Reason> for Refusal {
    fn from(reason: Reason) -> Self {
        Self::new(reason)
    }
}

/// Status class (from the reason, `Reason::error_class`) and client message for a refusal.
/// Only the reasons whose message says more than their class's default are listed.
pub fn classify(r: &Refusal) -> (ErrorClass, String) {
    let detail = r.detail.as_deref().unwrap_or("");
    // Not refusals (an answered request): kept total rather than panicking.
    let class = r.reason.error_class().unwrap_or(ErrorClass::Internal);
    let message: Option<String> = match r.reason {
        Reason::RouteNotAllowed => Some(format!("This key may not call the {detail} route.")),
        Reason::ModelNotAllowed => Some(format!("This key may not use model {detail:?}.")),
        Reason::BodyNotUtf8 => Some("The request body is not valid UTF-8 JSON.".into()),
        Reason::DuplicateJsonKey => {
            Some("The request body repeats a key in one JSON object.".into())
        }
        Reason::NotJsonObject => Some("The request body must be a JSON object.".into()),
        Reason::ModelMissing => Some("The request must name a model.".into()),
        Reason::ModelInvalid => Some("The model name is not valid.".into()),
        Reason::StreamNotBoolean => Some("The stream parameter must be a boolean.".into()),
        // Fixed texts chosen by the management API (never the caller's input).
        Reason::ManagementBadRequest => Some(format!("{detail}.")),
        Reason::LimitRpm | Reason::LimitTpm | Reason::LimitConcurrency => Some(format!(
            "Rate limit of this key or tenant reached ({}). Retry after the time in the retry-after header.",
            limit_name(r)
        )),
        Reason::LimitPoolShare => Some(
            "This tenant's share of the provider pool is in use (concurrent requests). Retry after the time in the retry-after header.".into(),
        ),
        Reason::BudgetDay
        | Reason::BudgetMonth
        | Reason::TokenBudgetDay
        | Reason::TokenBudgetMonth => Some(format!(
            "Budget of this key or tenant exhausted ({}). It is not restored until the period ends.",
            limit_name(r)
        )),
        Reason::SensitiveDataBlocked => Some(format!(
            "The request was blocked because it contains sensitive data: {detail}. Remove it and retry."
        )),
        _ => None,
    };
    let message = message.unwrap_or_else(|| class.default_message().to_owned());
    (class, message)
}

fn limit_name(r: &Refusal) -> &'static str {
    match r.limit.map(|l| l.kind) {
        Some(LimitKind::Rpm) => "requests per minute",
        Some(LimitKind::Tpm) => "tokens per minute",
        Some(LimitKind::Concurrency) => "concurrent requests",
        Some(LimitKind::BudgetDay) => "daily spend budget",
        Some(LimitKind::BudgetMonth) => "monthly spend budget",
        Some(LimitKind::TokensDay) => "daily token budget",
        Some(LimitKind::TokensMonth) => "monthly token budget",
        None => "limit",
    }
}

/// The `x-ratelimit-*` suffix a limit kind is described under.
fn header_suffix(kind: LimitKind) -> &'static str {
    match kind {
        LimitKind::Rpm => "requests",
        LimitKind::Tpm => "tokens",
        LimitKind::Concurrency => "concurrency",
        LimitKind::BudgetDay => "budget-day",
        LimitKind::BudgetMonth => "budget-month",
        LimitKind::TokensDay => "tokens-day",
        LimitKind::TokensMonth => "tokens-month",
    }
}

/// A refusal's status, headers and body, in the provider's shape.
pub fn error_parts(kind: ProviderKind, r: &Refusal) -> (http::response::Builder, Bytes, u16) {
    let (class, message) = classify(r);
    let body = error_body(kind, class, &message).to_string();
    let status = class.status();
    let mut b = http::Response::builder()
        .status(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
    if matches!(
        class,
        ErrorClass::NoUpstreamAvailable | ErrorClass::StoreUnavailable
    ) {
        b = b.header(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    if let Some(l) = r.limit {
        let sfx = header_suffix(l.kind);
        b = b
            .header(header::RETRY_AFTER, l.retry_after_s.max(1))
            .header(format!("x-ratelimit-limit-{sfx}"), l.limit)
            .header(format!("x-ratelimit-remaining-{sfx}"), l.remaining)
            .header(
                format!("x-ratelimit-reset-{sfx}"),
                format!("{}s", l.retry_after_s.max(1)),
            );
        if !l.kind.is_budget() {
            // Clients may retry a rate limit; a budget is not coming back soon.
            b = b.header("x-should-retry", "true");
        } else {
            b = b.header("x-should-retry", "false");
        }
    }
    if class == ErrorClass::Unauthenticated && kind == ProviderKind::Openai {
        b = b.header(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    (b, Bytes::from(body), status)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body_of(kind: ProviderKind, r: &Refusal) -> (u16, String) {
        let (_, body, status) = error_parts(kind, r);
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    #[test]
    fn every_auth_failure_gives_the_same_401_body() {
        let mut bodies = std::collections::HashSet::new();
        for reason in [
            Reason::MissingKey,
            Reason::BadPrefix,
            Reason::BadLength,
            Reason::BadCharset,
            Reason::BadChecksum,
            Reason::UnknownKey,
            Reason::DigestMismatch,
            Reason::UnknownPepperVersion,
            Reason::Revoked,
            Reason::Expired,
            Reason::TenantMissing,
            Reason::TenantDisabled,
            Reason::SourceNotAllowed,
            Reason::Suspended,
            Reason::JwtMalformed,
            Reason::JwtIssuerUnknown,
            Reason::JwtAlgNotAllowed,
            Reason::JwtUnknownKid,
            Reason::JwtBadSignature,
            Reason::JwksUnavailable,
            Reason::JwtWrongAudience,
            Reason::JwtExpired,
            Reason::JwtNotYetValid,
            Reason::JwtIssuedInFuture,
            Reason::JwtPrincipalMissing,
            Reason::JwtClaimMismatch,
            Reason::JwtTenantClaimMissing,
            Reason::JwtTenantNotAllowed,
        ] {
            assert!(reason.is_authentication_failure());
            for kind in [ProviderKind::Openai, ProviderKind::Anthropic] {
                let (status, body) = body_of(kind, &Refusal::new(reason));
                assert_eq!(status, 401);
                bodies.insert((kind.as_str(), body));
            }
        }
        assert_eq!(bodies.len(), 2, "a 401 must not say which check failed");
    }

    #[test]
    fn scope_denial_names_what_is_not_allowed_in_anthropic_shape() {
        let r = Refusal::with_detail(Reason::ModelNotAllowed, "claude-opus");
        let (status, body) = body_of(ProviderKind::Anthropic, &r);
        assert_eq!(status, 403);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["type"], "error");
        assert_eq!(v["error"]["type"], "permission_error");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("claude-opus")
        );
    }

    #[test]
    fn store_failure_is_a_503_with_retry_after_and_no_detail() {
        let (b, body, status) = error_parts(
            ProviderKind::Openai,
            &Refusal::new(Reason::StoreUnavailable),
        );
        assert_eq!(status, 503);
        let resp = b.body(()).unwrap();
        assert_eq!(resp.headers()["retry-after"], "1");
        let text = String::from_utf8(body.to_vec()).unwrap();
        assert!(text.contains("store_unavailable"), "{text}");
    }

    #[test]
    fn every_refusal_reason_maps_to_an_error_status() {
        for reason in [
            Reason::UnknownRoute,
            Reason::DuplicateJsonKey,
            Reason::ModelInvalid,
            Reason::StreamNotBoolean,
            Reason::BodyNotUtf8,
            Reason::UpstreamTimeout,
            Reason::AllTokensFailed,
        ] {
            let (class, message) = classify(&Refusal::new(reason));
            assert!(class.status() >= 400, "{reason}");
            assert!(!message.is_empty());
        }
    }
}
