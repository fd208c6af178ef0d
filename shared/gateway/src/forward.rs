//! Stage 3: choose a token, call the provider, fail over. Retries happen only before any
//! byte has gone to the client: 401/403 mark the token invalid and move on, 429 cools it for
//! as long as the provider asked, 5xx / connect errors / timeouts back off with jitter and feed
//! the token's breaker. Streams pass through chunk by chunk; a stream that breaks upstream
//! ends with an in-band error event, never a silent clean end.

use crate::gateway::{Ctx, Gateway};
use crate::inspect::{ResponseFilter, redact_response_body};
use crate::request::Parsed;
use crate::respond::Denial;
use crate::settle::{self, round3};
use axum::body::Body;
use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tollgate_core::audit::Decision;
use tollgate_core::pool::Outcome;
use tollgate_core::ports::Secret;
use tollgate_core::provider::{
    Route, Usage, cooldown_from_headers, fold_stream_usage, stream_error_event, upstream_url,
    usage_from_body,
};
use tollgate_core::records::{Policy, ProviderKind, TokenRecord};
use tollgate_core::retry::Next;
use tollgate_core::sse::SseReader;
use tracing::Instrument;

pub(crate) enum Forwarded {
    /// A complete response; the caller emits the audit line.
    Done(Response<Body>),
    /// A stream in flight; its pump emits the audit line when it ends.
    Streaming(Response<Body>),
}

/// Provider response headers worth passing on. Rate-limit headers are not: they describe
/// the pool's token, not the caller.
const RESPONSE_HEADERS: [&str; 4] = [
    "content-type",
    "x-request-id",
    "request-id",
    "openai-processing-ms",
];

const DEFAULT_ANTHROPIC_VERSION: &str = "2023-06-01";

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

pub(crate) async fn forward(
    gw: &Arc<Gateway>,
    route: Route,
    parsed: Parsed,
    response_policy: Policy,
    ctx: &mut Ctx,
) -> Result<Forwarded, Denial> {
    let mut tried: Vec<String> = Vec::new();
    let mut attempts = 0u32;
    let mut transient = 0u32;
    let mut same_tries = 0u32;
    let mut carry: Option<TokenRecord> = None;
    let mut refreshed: Option<String> = None;
    let mut last_failure: &'static str = "no_eligible_token";
    let mut last_was_timeout = false;

    loop {
        let token = match carry.take() {
            Some(t) => t,
            None => {
                same_tries = 0;
                let exclude: Vec<&str> = tried.iter().map(String::as_str).collect();
                match gw
                    .choose_token(&parsed.pool, &exclude, ctx)
                    .await
                    .map_err(Denial::Store)?
                {
                    Some(t) => t,
                    None => break,
                }
            }
        };
        if token.provider != route.kind() {
            tracing::warn!(token_id = %token.token_id, pool = %token.pool, "token provider does not match route; skipped");
            last_failure = "provider_mismatch";
            tried.push(token.token_id.clone());
            continue;
        }
        // After a 401 refresh the cache already holds the fresh value: no second read.
        let value = match gw.token_value(&token, false, ctx).await {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(token_id = %token.token_id, error = %e, "token value unavailable; skipped");
                last_failure = "token_secret_unavailable";
                tried.push(token.token_id.clone());
                continue;
            }
        };
        attempts += 1;
        same_tries += 1;
        ctx.audit.attempts = attempts;
        ctx.audit.token_id = Some(token.token_id.clone());

        let started = Instant::now();
        let outcome = match send(gw, route, &token, &value, &parsed).await {
            Ok(resp) => match classify(resp.status().as_u16()) {
                Class::Deliver => {
                    settle::observe(gw, &token, Outcome::Success, ctx).await;
                    return deliver(gw, route.kind(), token, resp, started, response_policy, ctx)
                        .await;
                }
                Class::Auth => {
                    if refreshed.as_deref() != Some(token.token_id.as_str()) {
                        // The secret may have been rotated since we cached it: re-read once
                        // and retry this token if the value changed.
                        refreshed = Some(token.token_id.clone());
                        if let Ok(fresh) = gw.token_value(&token, true, ctx).await
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
            Err(timed_out) => {
                last_was_timeout = timed_out;
                Outcome::Transient
            }
        };
        last_failure = "all_tokens_failed";
        if outcome == Outcome::Transient {
            transient += 1;
        }
        settle::observe(gw, &token, outcome, ctx).await;
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
    if last_was_timeout {
        Err(Denial::UpstreamTimeout)
    } else {
        Err(Denial::NoUpstream(last_failure))
    }
}

/// One upstream attempt up to response headers. `Err(true)` = timed out, `Err(false)` =
/// connection failure.
async fn send(
    gw: &Gateway,
    route: Route,
    token: &TokenRecord,
    value: &Secret,
    parsed: &Parsed,
) -> Result<reqwest::Response, bool> {
    let url = upstream_url(&token.base_url, route);
    let method = if route.method() == "GET" {
        reqwest::Method::GET
    } else {
        reqwest::Method::POST
    };
    let mut rb = gw.http.request(method, url);
    for (k, v) in &parsed.headers {
        rb = rb.header(k, v);
    }
    rb = match token.provider {
        ProviderKind::Openai => rb.bearer_auth(value.expose()),
        ProviderKind::Anthropic => {
            let rb = rb.header("x-api-key", value.expose());
            if parsed.headers.iter().any(|(k, _)| k == "anthropic-version") {
                rb
            } else {
                rb.header("anthropic-version", DEFAULT_ANTHROPIC_VERSION)
            }
        }
    };
    if route.has_body() {
        if !parsed
            .headers
            .iter()
            .any(|(k, _)| k == header::CONTENT_TYPE)
        {
            rb = rb.header(header::CONTENT_TYPE, "application/json");
        }
        rb = rb.body(parsed.body.clone());
    }
    match tokio::time::timeout(Duration::from_millis(gw.cfg.upstream_timeout_ms), rb.send()).await {
        Ok(Ok(resp)) => Ok(resp),
        Ok(Err(e)) => {
            // reqwest's Display can include the URL; log only the kind.
            tracing::warn!(token_id = %token.token_id, timeout = e.is_timeout(), connect = e.is_connect(), "upstream request failed");
            Err(e.is_timeout())
        }
        Err(_) => {
            tracing::warn!(token_id = %token.token_id, "upstream did not answer in time");
            Err(true)
        }
    }
}

fn response_head(upstream: &reqwest::Response) -> http::response::Builder {
    let mut b = Response::builder().status(
        StatusCode::from_u16(upstream.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY),
    );
    for name in RESPONSE_HEADERS {
        if let Some(v) = upstream.headers().get(name)
            && let Ok(v) = HeaderValue::from_bytes(v.as_bytes())
        {
            b = b.header(name, v);
        }
    }
    b
}

async fn deliver(
    gw: &Arc<Gateway>,
    kind: ProviderKind,
    token: TokenRecord,
    upstream: reqwest::Response,
    started: Instant,
    response_policy: Policy,
    ctx: &mut Ctx,
) -> Result<Forwarded, Denial> {
    let is_sse = upstream
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    let head = response_head(&upstream);
    let ok = upstream.status().is_success();

    if !is_sse {
        let body = match tokio::time::timeout(
            Duration::from_millis(gw.cfg.upstream_timeout_ms),
            upstream.bytes(),
        )
        .await
        {
            Ok(Ok(b)) => b,
            Ok(Err(_)) => return Err(Denial::NoUpstream("upstream_body_failed")),
            Err(_) => return Err(Denial::UpstreamTimeout),
        };
        ctx.audit.upstream_ms = Some(round3(started.elapsed().as_secs_f64() * 1000.0));
        // One parse serves both the usage count and the secret scan.
        let mut json: Option<serde_json::Value> = if ok {
            serde_json::from_slice(&body).ok()
        } else {
            None
        };
        let usage = json.as_ref().and_then(usage_from_body).unwrap_or_default();
        settle::record_usage(gw, &token, usage, ctx).await;
        let mut found = std::collections::BTreeMap::new();
        let body = match json
            .as_mut()
            .and_then(|v| redact_response_body(v, &response_policy, &mut found))
        {
            Some(redacted) => Bytes::from(redacted),
            None => body,
        };
        for (e, n) in found {
            *ctx.audit
                .dlp_response
                .entry(e.name().to_owned())
                .or_insert(0) += n;
        }
        let resp = head
            .body(Body::from(body))
            .map_err(|_| Denial::NoUpstream("bad_upstream_headers"))?;
        return Ok(Forwarded::Done(resp));
    }

    ctx.audit.stream = true;
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(32);
    let owned = std::mem::take(ctx);
    let status = upstream.status().as_u16();
    tokio::spawn(
        pump(
            gw.clone(),
            kind,
            token,
            upstream,
            tx,
            owned,
            started,
            status,
            ResponseFilter::new(response_policy),
        )
        .instrument(tracing::Span::current()),
    );
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    let resp = head
        .header(header::CACHE_CONTROL, "no-cache")
        .body(Body::from_stream(stream))
        .map_err(|_| Denial::NoUpstream("bad_upstream_headers"))?;
    Ok(Forwarded::Streaming(resp))
}

#[allow(clippy::too_many_arguments)]
async fn pump(
    gw: Arc<Gateway>,
    kind: ProviderKind,
    token: TokenRecord,
    mut upstream: reqwest::Response,
    tx: mpsc::Sender<Result<Bytes, std::io::Error>>,
    mut ctx: Ctx,
    started: Instant,
    status: u16,
    mut filter: ResponseFilter,
) {
    let mut reader = SseReader::new();
    let mut usage = Usage::default();
    let mut broken = false;
    let mut client_gone = false;
    let idle = Duration::from_millis(gw.cfg.upstream_timeout_ms);
    loop {
        match tokio::time::timeout(idle, upstream.chunk()).await {
            Ok(Ok(Some(bytes))) => {
                if ctx.audit.upstream_ms.is_none() {
                    ctx.audit.upstream_ms = Some(round3(started.elapsed().as_secs_f64() * 1000.0));
                }
                // Events are re-framed after the secret filter; a partial event waits in the
                // reader until its closing blank line arrives.
                let mut out = String::new();
                reader.feed(&bytes, |ev| {
                    // Only events that carry usage are worth parsing for it.
                    if ev.data.contains("\"usage\"")
                        && let Ok(v) = serde_json::from_str(&ev.data)
                    {
                        fold_stream_usage(&mut usage, &v);
                    }
                    out.push_str(&filter.event(ev.event.as_deref(), &ev.data));
                });
                if out.is_empty() {
                    continue;
                }
                if tx.send(Ok(Bytes::from(out))).await.is_err() {
                    client_gone = true;
                    break;
                }
            }
            Ok(Ok(None)) => break,
            Ok(Err(_)) | Err(_) => {
                broken = true;
                let _ = tx.send(Ok(Bytes::from(stream_error_event(kind)))).await;
                break;
            }
        }
    }
    for (e, n) in &filter.counts {
        *ctx.audit
            .dlp_response
            .entry(e.name().to_owned())
            .or_insert(0) += n;
    }
    // The stream's duration counts as upstream time: the gateway only relays it.
    ctx.audit.upstream_ms = Some(round3(started.elapsed().as_secs_f64() * 1000.0));
    settle::record_usage(&gw, &token, usage, &mut ctx).await;
    let (decision, reason) = if broken {
        settle::observe(&gw, &token, Outcome::Transient, &mut ctx).await;
        ctx.audit.error_class = Some("upstream_stream_broken".into());
        (Decision::Error, "upstream_stream_broken")
    } else if client_gone {
        (Decision::Allow, "client_disconnected")
    } else {
        (Decision::Allow, "ok")
    };
    settle::finish(&gw, &mut ctx, status, decision, reason);
    drop(tx);
}
