//! The one place a failure becomes a response: status, provider-shaped JSON body, audit
//! reason. No internal detail reaches the client; the audit line gets the precise reason.

use axum::body::Body;
use http::{HeaderValue, Response, StatusCode, header};
use tollgate_core::auth::{AuthFailure, ScopeFailure};
use tollgate_core::ports::StoreError;
use tollgate_core::provider::{ErrorClass, RouteError, error_body};
use tollgate_core::records::ProviderKind;

/// Why a request did not reach (or did not get an answer from) a provider.
#[derive(Debug, Clone, PartialEq)]
pub enum Denial {
    Route(RouteError),
    Auth(AuthFailure),
    Scope(ScopeFailure),
    BadRequest(&'static str),
    /// The DLP policy blocks these entity types (names only, never values).
    SensitiveData(Vec<&'static str>),
    TooLarge,
    /// A store failed: fail closed.
    Store(StoreError),
    /// Every eligible token failed, or none was eligible.
    NoUpstream(&'static str),
    UpstreamTimeout,
}

impl Denial {
    pub fn class(&self) -> ErrorClass {
        match self {
            Denial::Route(RouteError::NotFound) => ErrorClass::NotFound,
            Denial::Route(RouteError::MethodNotAllowed) => ErrorClass::MethodNotAllowed,
            Denial::Auth(_) => ErrorClass::Unauthenticated,
            Denial::Scope(_) => ErrorClass::Forbidden,
            Denial::BadRequest(_) => ErrorClass::BadRequest,
            Denial::SensitiveData(_) => ErrorClass::SensitiveData,
            Denial::TooLarge => ErrorClass::PayloadTooLarge,
            Denial::Store(_) => ErrorClass::StoreUnavailable,
            Denial::NoUpstream(_) => ErrorClass::NoUpstreamAvailable,
            Denial::UpstreamTimeout => ErrorClass::UpstreamTimeout,
        }
    }

    /// The audit line's reason: which check decided.
    pub fn reason(&self) -> String {
        match self {
            Denial::Route(RouteError::NotFound) => "unknown_route".into(),
            Denial::Route(RouteError::MethodNotAllowed) => "method_not_allowed".into(),
            Denial::Auth(a) => a.code().into(),
            Denial::Scope(s) => s.code().into(),
            Denial::BadRequest(why) => (*why).into(),
            Denial::SensitiveData(_) => "sensitive_data_blocked".into(),
            Denial::TooLarge => "body_too_large".into(),
            Denial::Store(_) => "store_unavailable".into(),
            Denial::NoUpstream(why) => (*why).into(),
            Denial::UpstreamTimeout => "upstream_timeout".into(),
        }
    }

    fn client_message(&self) -> String {
        match self {
            Denial::Scope(s) => s.client_message(),
            Denial::SensitiveData(types) => format!(
                "The request was blocked because it contains sensitive data: {}. Remove it and retry.",
                types.join(", ")
            ),
            Denial::BadRequest("model_missing") => "The request must name a model.".into(),
            Denial::BadRequest("not_json_object") => {
                "The request body must be a JSON object.".into()
            }
            other => other.class().default_message().into(),
        }
    }
}

pub fn json_response(status: u16, body: String) -> Response<Body> {
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

pub fn error_response(kind: ProviderKind, denial: &Denial) -> Response<Body> {
    let class = denial.class();
    let body = error_body(kind, class, &denial.client_message()).to_string();
    let mut resp = json_response(class.status(), body);
    if matches!(
        class,
        ErrorClass::NoUpstreamAvailable | ErrorClass::StoreUnavailable
    ) {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    if class == ErrorClass::Unauthenticated && kind == ProviderKind::Openai {
        resp.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use tollgate_core::key::KeyFormatError;

    async fn body_of(r: Response<Body>) -> (u16, String) {
        let status = r.status().as_u16();
        let b = axum::body::to_bytes(r.into_body(), 1 << 16).await.unwrap();
        (status, String::from_utf8(b.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn every_auth_failure_gives_the_same_401_body() {
        let mut bodies = std::collections::HashSet::new();
        for f in [
            AuthFailure::Format(KeyFormatError::Missing),
            AuthFailure::Format(KeyFormatError::Checksum),
            AuthFailure::UnknownKey,
            AuthFailure::DigestMismatch,
            AuthFailure::Revoked,
            AuthFailure::Expired,
            AuthFailure::TenantDisabled,
            AuthFailure::SourceNotAllowed,
        ] {
            let (status, body) =
                body_of(error_response(ProviderKind::Openai, &Denial::Auth(f))).await;
            assert_eq!(status, 401);
            bodies.insert(body);
        }
        assert_eq!(bodies.len(), 1, "a 401 must not say which check failed");
    }

    #[tokio::test]
    async fn scope_denial_names_what_is_not_allowed_in_anthropic_shape() {
        let d = Denial::Scope(ScopeFailure::ModelNotAllowed("claude-opus".into()));
        let (status, body) = body_of(error_response(ProviderKind::Anthropic, &d)).await;
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

    #[tokio::test]
    async fn store_failure_is_a_503_without_internal_detail() {
        let d = Denial::Store(StoreError::Unavailable(
            "dynamodb: ResourceNotFound tollgate-keys".into(),
        ));
        let (status, body) = body_of(error_response(ProviderKind::Openai, &d)).await;
        assert_eq!(status, 503);
        assert!(!body.contains("dynamodb"));
        assert!(!body.contains("tollgate-keys"));
    }
}
