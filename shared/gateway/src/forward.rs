//! Stage 3: choose a token, call the provider, fail over. Retries happen only before any
//! byte has gone to the client: 401/403 mark the token invalid and move on, 429 cools it for
//! as long as the provider asked, 5xx / connect errors / timeouts back off with jitter and feed
//! the token's breaker. What each failed attempt taught is applied to the pool at once (other
//! requests must not pick a dead token); the answering token's own outcome is recorded when
//! the request ends (settle), after its body was read or its stream ended.

use crate::context::{Delivering, RequestCtx};
use crate::request::Parsed;
use crate::respond::Refusal;
use crate::state::Gateway;
use crate::state::federated::FederationError;
use crate::upstream::{CallError, ReqBody};
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, header};
use hyper::body::Incoming;
use std::time::{Duration, Instant};
use tollgate_core::audit::AttemptOutcome;
use tollgate_core::federation::ANTHROPIC_OAUTH_BETA;
use tollgate_core::pool::Outcome;
use tollgate_core::ports::Secret;
use tollgate_core::provider::{Route, Usage, cooldown_from_headers};
use tollgate_core::reason::Reason;
use tollgate_core::records::{ProviderKind, SecretRef, TokenRecord};
use tollgate_core::retry::Next;

const DEFAULT_ANTHROPIC_VERSION: &str = "2023-06-01";

/// Header names this stage writes, typed: a `&str` name is parsed and hashed on every use.
const X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");
const ANTHROPIC_VERSION: HeaderName = HeaderName::from_static("anthropic-version");
const ANTHROPIC_BETA: HeaderName = HeaderName::from_static("anthropic-beta");

/// The provider's answer, as far as it has arrived.
pub(crate) struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: AnswerBody,
}

pub(crate) enum AnswerBody {
    /// A complete body, read before anything goes to the client.
    Complete(Bytes),
    /// An SSE stream in flight: relayed chunk by chunk.
    Stream(Incoming),
}

enum Class {
    Deliver,
    Auth,
    RateLimited,
    Transient,
}

fn classify(status: u16) -> Class {
    match status {
        401 | 403 => Class::Auth,
        429 => Class::RateLimited,
        408 | 500..=599 => Class::Transient,
        // 2xx, and 4xx that are the caller's doing (bad model name, bad parameters).
        _ => Class::Deliver,
    }
}

/// Why one upstream attempt produced no response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SendError {
    TimedOut,
    Failed,
}

pub(crate) async fn forward(
    gw: &Gateway,
    route: Route,
    parsed: &Parsed,
    ctx: &mut RequestCtx,
) -> Result<Answer, Refusal> {
    let mut tried: Vec<String> = Vec::new();
    let mut attempts = 0u32;
    let mut transient = 0u32;
    let mut same_tries = 0u32;
    let mut carry: Option<TokenRecord> = None;
    let mut refreshed: Option<String> = None;
    let mut last_failure = Reason::NoEligibleToken;
    let mut last_was_timeout = false;

    loop {
        let token = match carry.take() {
            Some(t) => t,
            None => {
                same_tries = 0;
                let exclude: Vec<&str> = tried.iter().map(String::as_str).collect();
                match gw
                    .pools
                    .select(&parsed.pool, &exclude, &mut ctx.calls)
                    .await
                {
                    Ok(Some(t)) => t,
                    Ok(None) => break,
                    Err(e) => {
                        tracing::warn!(pool = %parsed.pool, error = %e, "pool unavailable");
                        return Err(Reason::StoreUnavailable.into());
                    }
                }
            }
        };
        if token.provider != route.kind() {
            tracing::warn!(token_id = %token.token_id, pool = %token.pool, "token provider does not match route; skipped");
            last_failure = Reason::ProviderMismatch;
            tried.push(token.token_id.clone());
            continue;
        }
        // After a 401 refresh the cache already holds the fresh value: no second read.
        let value = match gw.upstream_credential(&token, None, &mut ctx.calls).await {
            Ok(v) => v,
            Err(FederationError::Rejected(e)) => {
                // The provider refused this token's federation: invalid, like a 401.
                tracing::warn!(token_id = %token.token_id, error = %e, "federated token exchange rejected; token marked invalid");
                last_failure = Reason::AllTokensFailed;
                ctx.audit
                    .note_attempt(&token.token_id, AttemptOutcome::AuthRejected);
                gw.pools
                    .observe(
                        &token,
                        Outcome::AuthRejected,
                        &gw.cfg.health,
                        &mut ctx.calls,
                    )
                    .await;
                tried.push(token.token_id.clone());
                continue;
            }
            Err(FederationError::Unavailable(e)) => {
                tracing::warn!(token_id = %token.token_id, error = %e, "token value unavailable; skipped");
                last_failure = Reason::TokenSecretUnavailable;
                tried.push(token.token_id.clone());
                continue;
            }
        };
        attempts += 1;
        same_tries += 1;
        ctx.audit.attempts = attempts;
        ctx.audit.token_id = Some(token.token_id.clone());

        let started = Instant::now();
        let outcome = match send(gw, route, &token, &value, parsed).await {
            Ok(resp) => match classify(resp.status().as_u16()) {
                Class::Deliver => return receive(gw, token, value, resp, started, ctx).await,
                Class::Auth => {
                    if refreshed.as_deref() != Some(token.token_id.as_str()) {
                        // The secret may have been rotated since we cached it: re-read once
                        // and retry this token if the value changed.
                        refreshed = Some(token.token_id.clone());
                        if let Ok(fresh) = gw
                            .upstream_credential(&token, Some(&value), &mut ctx.calls)
                            .await
                            && fresh != value
                        {
                            carry = Some(token);
                            continue;
                        }
                    }
                    Outcome::AuthRejected
                }
                Class::RateLimited => {
                    let headers = resp
                        .headers()
                        .iter()
                        .filter_map(|(k, v)| Some((k.as_str(), v.to_str().ok()?)));
                    Outcome::RateLimited {
                        retry_after_ms: cooldown_from_headers(headers, gw.now()),
                    }
                }
                Class::Transient => Outcome::Transient,
            },
            Err(e) => {
                last_was_timeout = e == SendError::TimedOut;
                Outcome::Transient
            }
        };
        last_failure = Reason::AllTokensFailed;
        if outcome == Outcome::Transient {
            transient += 1;
        }
        ctx.audit.note_attempt(&token.token_id, outcome.into());
        gw.pools
            .observe(&token, outcome, &gw.cfg.health, &mut ctx.calls)
            .await;
        let next = gw.cfg.retry.decide(
            outcome,
            attempts,
            same_tries,
            transient,
            &mut rand::thread_rng(),
        );
        match next {
            Next::GiveUp => break,
            Next::SameToken { after_ms } => {
                tokio::time::sleep(Duration::from_millis(after_ms)).await;
                carry = Some(token);
            }
            Next::OtherToken { after_ms } => {
                tried.push(token.token_id.clone());
                if after_ms > 0 {
                    tokio::time::sleep(Duration::from_millis(after_ms)).await;
                }
            }
        }
    }
    Err(Refusal::new(if last_was_timeout {
        Reason::UpstreamTimeout
    } else {
        last_failure
    }))
}

/// The answering token's response: an SSE stream is handed on as it is; any other body is
/// read whole first. The token's health outcome is decided here and recorded at settle.
async fn receive(
    gw: &Gateway,
    token: TokenRecord,
    value: Secret,
    upstream: Response<Incoming>,
    started: Instant,
    ctx: &mut RequestCtx,
) -> Result<Answer, Refusal> {
    let (head, body) = upstream.into_parts();
    let status = head.status.as_u16();
    let headers = head.headers;
    let is_sse = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    let mut delivering = Delivering {
        token,
        outcome: Outcome::Success,
        usage: Usage::default(),
        started,
        value,
    };
    if is_sse {
        ctx.audit.stream = true;
        ctx.delivering = Some(delivering);
        return Ok(Answer {
            status,
            headers,
            body: AnswerBody::Stream(body),
        });
    }
    let read = tokio::time::timeout(
        Duration::from_millis(gw.cfg.upstream_timeout_ms),
        crate::upstream::read_all(body),
    )
    .await;
    let result = match read {
        Ok(Ok(body)) => Ok(Answer {
            status,
            headers,
            body: AnswerBody::Complete(body),
        }),
        // Headers came, the body did not: the token is not healthy after all.
        Ok(Err(_)) => Err(Refusal::new(Reason::UpstreamBodyFailed)),
        Err(_) => Err(Refusal::new(Reason::UpstreamTimeout)),
    };
    if result.is_err() {
        delivering.outcome = Outcome::Transient;
    }
    ctx.delivering = Some(delivering);
    result
}

/// One upstream attempt up to response headers.
async fn send(
    gw: &Gateway,
    route: Route,
    token: &TokenRecord,
    value: &Secret,
    parsed: &Parsed,
) -> Result<Response<Incoming>, SendError> {
    let Some(uri) = gw.upstream_uri(&token.base_url, route) else {
        // Not an absolute http(s) URL: a failed attempt, as any unusable upstream.
        tracing::warn!(token_id = %token.token_id, "upstream URL is not an absolute http(s) URL");
        return Err(SendError::Failed);
    };
    let method = if route.method() == "GET" {
        Method::GET
    } else {
        Method::POST
    };
    let body = if route.has_body() {
        ReqBody::new(parsed.body.clone())
    } else {
        ReqBody::default()
    };
    let mut req = Request::new(body);
    *req.method_mut() = method;
    *req.uri_mut() = uri;
    let h = req.headers_mut();
    for (k, v) in &parsed.headers {
        h.append(k.clone(), v.clone());
    }
    let federated = matches!(token.secret, SecretRef::Federated { .. });
    // A federated access token is an OAuth bearer token (with the OAuth beta header, for
    // Anthropic); a stored Anthropic key goes in `x-api-key`.
    let credential = match token.provider {
        ProviderKind::Anthropic if !federated => credential_header(X_API_KEY, "", value),
        _ => credential_header(header::AUTHORIZATION, "Bearer ", value),
    };
    let Some(credential) = credential else {
        // Not a valid header value: the provider could not have accepted it either.
        tracing::warn!(token_id = %token.token_id, "token value is not a valid header value");
        return Err(SendError::Failed);
    };
    h.append(credential.0, credential.1);
    if token.provider == ProviderKind::Anthropic && federated {
        h.append(
            ANTHROPIC_BETA,
            HeaderValue::from_static(ANTHROPIC_OAUTH_BETA),
        );
    }
    if token.provider == ProviderKind::Anthropic && !h.contains_key(&ANTHROPIC_VERSION) {
        h.insert(
            ANTHROPIC_VERSION,
            HeaderValue::from_static(DEFAULT_ANTHROPIC_VERSION),
        );
    }
    if route.has_body() && !h.contains_key(header::CONTENT_TYPE) {
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
    }
    let timeout = Duration::from_millis(gw.cfg.upstream_timeout_ms);
    match tokio::time::timeout(timeout, gw.http.send(req)).await {
        Ok(Ok(resp)) => Ok(resp),
        Ok(Err(e)) => {
            // Only the kind is logged: never the URL or the request.
            tracing::warn!(token_id = %token.token_id, timeout = e == CallError::TimedOut, connect = e == CallError::Connect, "upstream request failed");
            Err(if e == CallError::TimedOut {
                SendError::TimedOut
            } else {
                SendError::Failed
            })
        }
        Err(_) => {
            tracing::warn!(token_id = %token.token_id, "upstream did not answer in time");
            Err(SendError::TimedOut)
        }
    }
}

/// The credential header for a token value (`prefix` + value), marked sensitive so HTTP/2
/// never indexes it; `None` when the value cannot be a header value.
fn credential_header(
    name: HeaderName,
    prefix: &str,
    value: &Secret,
) -> Option<(HeaderName, HeaderValue)> {
    // Joined by hand: `format!` runs the formatting machinery on every request.
    let mut text = String::with_capacity(prefix.len() + value.expose().len());
    text.push_str(prefix);
    text.push_str(value.expose());
    let mut v = HeaderValue::try_from(text).ok()?;
    v.set_sensitive(true);
    Some((name, v))
}
