//! Federated (keyless) pool tokens: what is stored for one, the token exchange at the
//! provider, and when a short-lived access token must be refreshed. Pure: the identity token
//! comes through the `IdentityTokenSource` port and the HTTP call through `TokenExchange`
//! (`ports.rs`).
//!
//! A federated token stores no secret. The proxy asks its identity source (STS
//! `GetWebIdentityToken` on AWS) for a signed JWT whose `aud` is the token's `audience`, and
//! exchanges it at the provider's token endpoint:
//!
//! - OpenAI workload identity federation: RFC 8693 token exchange at
//!   `https://auth.openai.com/oauth/token` with `identity_provider_id` and
//!   `service_account_id`.
//! - Anthropic workload identity federation: RFC 7523 jwt-bearer grant at
//!   `{api}/v1/oauth/token` with `federation_rule_id`, `organization_id`,
//!   `service_account_id` (and optionally `workspace_id`); the exchange carries
//!   `anthropic-beta: oidc-federation-2026-04-01`, API calls with the access token carry
//!   `Authorization: Bearer` and `anthropic-beta: oauth-2025-04-20`.
//!
//! Neither the identity token nor the access token is ever stored or logged: both are
//! `Secret`s, and exchange errors carry a status and the RFC 6749 `error` code only (a token
//! endpoint's error body may echo the assertion).

use crate::clock::EpochMs;
use crate::ports::Secret;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// OpenAI's token endpoint (a different host from the API).
pub const OPENAI_TOKEN_URL: &str = "https://auth.openai.com/oauth/token";
/// The Anthropic token endpoint's path under the API origin.
pub const ANTHROPIC_TOKEN_PATH: &str = "/v1/oauth/token";
pub const GRANT_TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
pub const GRANT_JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
pub const TOKEN_TYPE_JWT: &str = "urn:ietf:params:oauth:token-type:jwt";
/// `anthropic-beta` on a jwt-bearer exchange.
pub const ANTHROPIC_FEDERATION_BETA: &str = "oidc-federation-2026-04-01";
/// `anthropic-beta` on API calls authenticated with an OAuth access token.
pub const ANTHROPIC_OAUTH_BETA: &str = "oauth-2025-04-20";

/// Refresh this long before `expires_in` runs out (less for very short lifetimes: a quarter
/// of the lifetime).
pub const REFRESH_MARGIN_MS: u64 = 60_000;
/// Past this point before expiry a cached access token is not used at all (clock skew,
/// request time on the wire).
pub const EXPIRY_SAFETY_MS: u64 = 2_000;
/// A token endpoint answering without `expires_in`: assume this lifetime.
pub const DEFAULT_LIFETIME_S: u64 = 300;

/// How a federated token is exchanged. Stored on the pool record (ids, never a secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "grant", rename_all = "snake_case")]
pub enum Exchange {
    /// OpenAI: RFC 8693 token exchange.
    OpenaiTokenExchange {
        token_url: String,
        identity_provider_id: String,
        service_account_id: String,
    },
    /// Anthropic: RFC 7523 jwt-bearer grant.
    AnthropicJwtBearer {
        token_url: String,
        federation_rule_id: String,
        organization_id: String,
        service_account_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        workspace_id: Option<String>,
    },
}

impl Exchange {
    pub fn token_url(&self) -> &str {
        match self {
            Exchange::OpenaiTokenExchange { token_url, .. }
            | Exchange::AnthropicJwtBearer { token_url, .. } => token_url,
        }
    }

    /// The JSON body of the exchange request for `identity_token`.
    pub fn request_body(&self, identity_token: &Secret) -> Value {
        match self {
            Exchange::OpenaiTokenExchange {
                identity_provider_id,
                service_account_id,
                ..
            } => json!({
                "grant_type": GRANT_TOKEN_EXCHANGE,
                "subject_token_type": TOKEN_TYPE_JWT,
                "subject_token": identity_token.expose(),
                "identity_provider_id": identity_provider_id,
                "service_account_id": service_account_id,
            }),
            Exchange::AnthropicJwtBearer {
                federation_rule_id,
                organization_id,
                service_account_id,
                workspace_id,
                ..
            } => {
                let mut v = json!({
                    "grant_type": GRANT_JWT_BEARER,
                    "assertion": identity_token.expose(),
                    "federation_rule_id": federation_rule_id,
                    "organization_id": organization_id,
                    "service_account_id": service_account_id,
                });
                if let (Some(w), Some(m)) = (workspace_id, v.as_object_mut()) {
                    m.insert("workspace_id".into(), json!(w));
                }
                v
            }
        }
    }

    /// Headers the exchange request carries besides `content-type: application/json`.
    pub fn request_headers(&self) -> &'static [(&'static str, &'static str)] {
        match self {
            Exchange::OpenaiTokenExchange { .. } => &[],
            Exchange::AnthropicJwtBearer { .. } => &[("anthropic-beta", ANTHROPIC_FEDERATION_BETA)],
        }
    }
}

/// The Anthropic token endpoint for an API base URL (`https://api.anthropic.com/v1` →
/// `https://api.anthropic.com/v1/oauth/token`).
pub fn anthropic_token_url(base_url: &str) -> String {
    let origin = base_url.trim_end_matches('/');
    let origin = origin.strip_suffix("/v1").unwrap_or(origin);
    format!("{origin}{ANTHROPIC_TOKEN_PATH}")
}

/// A short-lived access token and when it expires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessGrant {
    pub access_token: Secret,
    pub lifetime_ms: u64,
}

/// Why an exchange produced no access token. Never carries a token or a response body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExchangeError {
    /// The provider refused the exchange (400/401/403): the token's federation is broken
    /// (rule deleted, audience wrong, service account gone). The token is marked invalid.
    #[error("token exchange rejected (status {status}, error {code})")]
    Rejected { status: u16, code: String },
    /// The identity source or the token endpoint could not answer now (transport, 429, 5xx).
    #[error("token exchange unavailable: {0}")]
    Unavailable(String),
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: Option<String>,
    token_type: Option<String>,
    expires_in: Option<u64>,
}

#[derive(Deserialize)]
struct ErrorResponse {
    error: Option<String>,
}

/// The RFC 6749 §5.2 `error` code of an error body, when it is a plain code; otherwise
/// `unknown` (anything else may echo the request).
fn error_code(body: &[u8]) -> String {
    serde_json::from_slice::<ErrorResponse>(body)
        .ok()
        .and_then(|e| e.error)
        .filter(|c| {
            !c.is_empty() && c.len() <= 64 && c.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
        })
        .unwrap_or_else(|| "unknown".into())
}

/// The token endpoint's answer → an access grant or why not.
pub fn parse_response(status: u16, body: &[u8]) -> Result<AccessGrant, ExchangeError> {
    match status {
        200..=299 => {
            let r: TokenResponse = serde_json::from_slice(body).map_err(|_| {
                ExchangeError::Unavailable("token endpoint answered with no JSON".into())
            })?;
            if r.token_type
                .as_deref()
                .is_some_and(|t| !t.eq_ignore_ascii_case("bearer"))
            {
                return Err(ExchangeError::Rejected {
                    status,
                    code: "unsupported_token_type".into(),
                });
            }
            let token = r
                .access_token
                .filter(|t| {
                    !t.is_empty() && !t.chars().any(|c| c.is_whitespace() || c.is_control())
                })
                .ok_or_else(|| {
                    ExchangeError::Unavailable(
                        "token endpoint answered with no access_token".into(),
                    )
                })?;
            Ok(AccessGrant {
                access_token: Secret::new(token),
                lifetime_ms: r
                    .expires_in
                    .unwrap_or(DEFAULT_LIFETIME_S)
                    .saturating_mul(1000),
            })
        }
        400 | 401 | 403 => Err(ExchangeError::Rejected {
            status,
            code: error_code(body),
        }),
        s => Err(ExchangeError::Unavailable(format!(
            "token endpoint answered {s}"
        ))),
    }
}

/// When a grant obtained at `now` must be refreshed, and when it must no longer be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifetime {
    pub refresh_at: EpochMs,
    pub use_until: EpochMs,
}

impl Lifetime {
    pub fn of(now: EpochMs, lifetime_ms: u64) -> Self {
        let expires = now.saturating_add(lifetime_ms);
        let use_until = expires.saturating_sub(EXPIRY_SAFETY_MS.min(lifetime_ms / 10));
        let margin = REFRESH_MARGIN_MS.min(lifetime_ms / 4);
        Self {
            refresh_at: expires.saturating_sub(margin).min(use_until),
            use_until,
        }
    }
    /// Fresh: serve it with no refresh.
    pub fn fresh(&self, now: EpochMs) -> bool {
        now < self.refresh_at
    }
    /// Still usable while one request refreshes it.
    pub fn usable(&self, now: EpochMs) -> bool {
        now < self.use_until
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn openai() -> Exchange {
        Exchange::OpenaiTokenExchange {
            token_url: OPENAI_TOKEN_URL.into(),
            identity_provider_id: "idp_test".into(),
            service_account_id: "svc_acct_test".into(),
        }
    }

    #[test]
    fn openai_body_is_an_rfc8693_token_exchange() {
        let b = openai().request_body(&Secret::new("a.b.c"));
        assert_eq!(b["grant_type"], GRANT_TOKEN_EXCHANGE);
        assert_eq!(b["subject_token_type"], TOKEN_TYPE_JWT);
        assert_eq!(b["subject_token"], "a.b.c");
        assert_eq!(b["identity_provider_id"], "idp_test");
        assert_eq!(b["service_account_id"], "svc_acct_test");
        assert!(openai().request_headers().is_empty());
    }

    #[test]
    fn anthropic_body_is_an_rfc7523_jwt_bearer_grant() {
        let e = Exchange::AnthropicJwtBearer {
            token_url: anthropic_token_url("https://api.anthropic.com/v1/"),
            federation_rule_id: "fdrl_test".into(),
            organization_id: "00000000-0000-0000-0000-000000000000".into(),
            service_account_id: "svac_test".into(),
            workspace_id: None,
        };
        assert_eq!(e.token_url(), "https://api.anthropic.com/v1/oauth/token");
        let b = e.request_body(&Secret::new("a.b.c"));
        assert_eq!(b["grant_type"], GRANT_JWT_BEARER);
        assert_eq!(b["assertion"], "a.b.c");
        assert_eq!(b["federation_rule_id"], "fdrl_test");
        assert!(b.get("workspace_id").is_none());
        assert_eq!(
            e.request_headers(),
            &[("anthropic-beta", ANTHROPIC_FEDERATION_BETA)]
        );
    }

    #[test]
    fn a_2xx_with_an_access_token_is_a_grant() {
        let g = parse_response(
            200,
            br#"{"access_token":"at-1","token_type":"Bearer","expires_in":900}"#,
        )
        .unwrap();
        assert_eq!(g.access_token.expose(), "at-1");
        assert_eq!(g.lifetime_ms, 900_000);
    }

    #[test]
    fn refusals_are_rejections_and_carry_only_a_plain_error_code() {
        assert_eq!(
            parse_response(401, br#"{"error":"invalid_grant","assertion":"a.b.c"}"#),
            Err(ExchangeError::Rejected {
                status: 401,
                code: "invalid_grant".into()
            })
        );
        assert_eq!(
            parse_response(400, br#"{"error":"eyJhbGciOi.x.y"}"#),
            Err(ExchangeError::Rejected {
                status: 400,
                code: "unknown".into()
            })
        );
        assert!(matches!(
            parse_response(503, b"busy"),
            Err(ExchangeError::Unavailable(_))
        ));
        assert!(matches!(
            parse_response(429, b""),
            Err(ExchangeError::Unavailable(_))
        ));
        assert!(matches!(
            parse_response(200, br#"{"token_type":"Bearer"}"#),
            Err(ExchangeError::Unavailable(_))
        ));
    }

    #[test]
    fn refresh_happens_before_expiry_and_use_stops_just_before_it() {
        let l = Lifetime::of(1_000, 3_600_000);
        assert_eq!(l.refresh_at, 1_000 + 3_600_000 - REFRESH_MARGIN_MS);
        assert_eq!(l.use_until, 1_000 + 3_600_000 - EXPIRY_SAFETY_MS);
        assert!(l.fresh(l.refresh_at - 1) && !l.fresh(l.refresh_at));
        assert!(l.usable(l.refresh_at) && !l.usable(l.use_until));
        // A 4 s token: refreshed after 3 s, used until 3.6 s.
        let s = Lifetime::of(0, 4_000);
        assert_eq!((s.refresh_at, s.use_until), (3_000, 3_600));
    }
}
