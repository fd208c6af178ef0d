//! The one handler: it calls the stages in order — route → [`authenticate`] → [`request`]
//! (body, model, scopes) → [`inspect`] → [`limit`] → [`forward`] → [`relay`] — and hands the response
//! body a hook that runs [`settle`] when the body ends. It is the only caller of the stages
//! and of settlement; no stage calls back into it.

use crate::body::{Ended, Full, OnEnd, SettlingBody, Source};
use crate::context::RequestCtx;
use crate::forward::{Answer, AnswerBody};
use crate::relay::{Redactions, Relay, StreamReport};
use crate::respond::{Refusal, classify, error_parts};
use crate::settle::{count_redactions, settle};
use crate::state::Gateway;
use crate::{authenticate, forward, inspect, limit, manage, relay, request};
use axum::Router;
use axum::body::Body;
use axum::extract::State;
use http::{HeaderValue, Request, Response, header};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tollgate_core::audit::AuditRecord;
use tollgate_core::provider::Route;
use tollgate_core::records::Policy;
use tollgate_core::scrub::Scrubber;
use tracing::Instrument;

/// The caller's address as the platform saw it (API Gateway's request context, or the TCP
/// peer in HTTP mode). Never taken from a header the caller controls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceIp(pub Option<IpAddr>);

/// The platform's request id (Lambda's), when there is one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(pub String);

/// The caller's address as the audit line writes it (`Display`'s form), without the
/// formatting machinery for the common IPv4 address (a per-request cost, callgrind).
pub fn ip_text(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let mut s = String::with_capacity(15);
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    s.push('.');
                }
                if octet >= 100 {
                    s.push(char::from(b'0' + octet / 100));
                }
                if octet >= 10 {
                    s.push(char::from(b'0' + octet / 10 % 10));
                }
                s.push(char::from(b'0' + octet % 10));
            }
            s
        }
        IpAddr::V6(v6) => v6.to_string(),
    }
}

/// The response header naming the request (typed: a `&str` name is parsed on every insert).
const REQUEST_ID_HEADER: http::HeaderName = http::HeaderName::from_static("x-tollgate-request-id");

/// Every path goes through one handler: unknown routes get a provider-shaped 404 too.
pub fn router(gw: Arc<Gateway>) -> Router {
    Router::new().fallback(handle).with_state(gw)
}

/// What the stages produce when a provider answered.
struct Answered {
    route: Route,
    answer: Answer,
    response_policy: Arc<Policy>,
    pool: String,
}

async fn stages(
    gw: &Gateway,
    req: Request<Body>,
    source_ip: Option<IpAddr>,
    ctx: &mut RequestCtx,
    span: &tracing::Span,
) -> Result<Answered, Refusal> {
    let route = request::route(&req)?;
    ctx.audit.route = Some(route.name().into());
    let principal = authenticate::authenticate(gw, req.headers(), source_ip, ctx).await?;
    record_caller(span, &principal.rec.tenant_id, &principal.rec.key_id);
    let mut parsed = request::read(gw.cfg.max_body_bytes, route, req, &principal, ctx).await?;
    let policy = inspect::inspect(route, &mut parsed, ctx)?;
    limit::admit(gw, &principal, &parsed, ctx).await?;
    let answer = forward::forward(gw, route, &parsed, ctx).await?;
    Ok(Answered {
        route,
        answer,
        response_policy: inspect::shared_response_policy(&policy),
        pool: parsed.pool,
    })
}

/// Records the caller's tenant and key id on the request span in one `record_all`: each
/// record makes the log formatter write the span's fields again, so two calls cost twice
/// (~15k instructions per request at `RUST_LOG=info`, callgrind).
fn record_caller(span: &tracing::Span, tenant: &str, key_id: &str) {
    let Some(meta) = span.metadata() else {
        return; // disabled at this log level: nothing to record
    };
    let fields = meta.fields();
    if let (Some(t), Some(k)) = (fields.field("tenant"), fields.field("key_id")) {
        let values: [(&tracing::field::Field, Option<&dyn tracing::Value>); 2] =
            [(&t, Some(&tenant)), (&k, Some(&key_id))];
        span.record_all(&fields.value_set(&values));
    }
}

async fn handle(State(gw): State<Arc<Gateway>>, req: Request<Body>) -> Response<Body> {
    let started = Instant::now();
    let request_id = req
        .extensions()
        .get::<RequestId>()
        .map(|r| r.0.clone())
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let source_ip = req.extensions().get::<SourceIp>().and_then(|s| s.0);
    let mut audit = AuditRecord::new(request_id.clone(), gw.now());
    audit.source_ip = source_ip.map(ip_text);
    audit.user_agent = req
        .headers()
        .get(header::USER_AGENT)
        .and_then(|v| tollgate_core::audit::user_agent(&String::from_utf8_lossy(v.as_bytes())));
    let ctx = RequestCtx::new(audit, started);
    // Spans carry ids only: request, tenant, key id. Never a key or a token.
    let span = tracing::info_span!(
        "request",
        request_id = request_id.as_str(),
        tenant = tracing::field::Empty,
        key_id = tracing::field::Empty
    );
    let kind = Route::kind_for_path(req.uri().path());
    let mut pending = Unanswered::new(&gw, ctx, &span);
    let mut resp = if manage::is_management(req.uri().path()) {
        let result = manage::serve(&gw, req, source_ip, &mut pending.ctx)
            .instrument(span.clone())
            .await;
        let ctx = pending.answered();
        match result {
            Ok(reply) => managed_response(&gw, reply, ctx, &span),
            Err(refusal) => refusal_response(&gw, kind, &refusal, ctx, &span),
        }
    } else {
        let result = stages(&gw, req, source_ip, &mut pending.ctx, &span)
            .instrument(span.clone())
            .await;
        let ctx = pending.answered();
        match result {
            Ok(a) => answer_response(&gw, a, ctx, &span),
            Err(refusal) => refusal_response(&gw, kind, &refusal, ctx, &span),
        }
    };
    // The id's own bytes become the header value (no copy).
    if let Ok(v) = HeaderValue::try_from(request_id) {
        resp.headers_mut().insert(REQUEST_ID_HEADER, v);
    }
    resp
}

/// The request context while the stages run. If the handler is dropped before a response
/// exists — the client went away while the provider was still thinking, and the HTTP server
/// cancelled the handler — the request is settled as client-gone on the runtime, like a body
/// dropped mid-stream: its limit reservation is released and it still gets its audit line.
/// (In Lambda the invocation always runs to the end; this matters in plain-HTTP mode.)
struct Unanswered {
    gw: Arc<Gateway>,
    ctx: RequestCtx,
    span: tracing::Span,
    armed: bool,
}

impl Unanswered {
    fn new(gw: &Arc<Gateway>, ctx: RequestCtx, span: &tracing::Span) -> Self {
        Self {
            gw: gw.clone(),
            ctx,
            span: span.clone(),
            armed: true,
        }
    }

    /// A response is being built: settlement moves to its body.
    fn answered(mut self) -> RequestCtx {
        self.armed = false;
        self.take()
    }

    fn take(&mut self) -> RequestCtx {
        let blank = RequestCtx::new(AuditRecord::placeholder(), self.ctx.started);
        std::mem::replace(&mut self.ctx, blank)
    }
}

impl Drop for Unanswered {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let ctx = self.take();
        let gw = self.gw.clone();
        let fut = async move { settle(&gw, ctx, true, None).await }.instrument(self.span.clone());
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(fut);
        }
    }
}

/// The values this response must never carry: every token value of the pool this instance
/// knows, and the one it just sent.
fn scrubber_for(gw: &Gateway, pool: &str, ctx: &RequestCtx) -> Option<Scrubber> {
    let sent = &ctx.delivering.as_ref()?.value;
    // Read before the pool's token ids are (see `SecretCache::scrubber`).
    let pools_version = gw.pools.version();
    // Federated access tokens are held by the exchange cache, not the value cache.
    match gw.secrets.scrubber(
        pool,
        pools_version,
        || gw.pools.token_ids(pool),
        gw.federated.held(),
        sent,
    ) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::error!(error = %e, pool, "cannot build the token scrubber");
            None
        }
    }
}

fn answer_response(
    gw: &Arc<Gateway>,
    a: Answered,
    mut ctx: RequestCtx,
    span: &tracing::Span,
) -> Response<Body> {
    // Fail closed: a response that cannot be checked for pool token values is not sent.
    let Some(scrub) = scrubber_for(gw, &a.pool, &ctx) else {
        let r = Refusal::new(tollgate_core::reason::Reason::ScrubberUnavailable);
        return refusal_response(gw, a.route.kind(), &r, ctx, span);
    };
    let mut redactions = Redactions::default();
    let status = a.answer.status;
    let head = relay::head(status, &a.answer.headers, &scrub, &mut redactions);
    ctx.audit.status = status;
    match a.answer.body {
        AnswerBody::Complete(bytes) => {
            let ok = (200..300).contains(&status);
            let (bytes, usage) =
                relay::complete(bytes, ok, &a.response_policy, &scrub, &mut redactions);
            if let Some(d) = ctx.delivering.as_mut() {
                d.usage = usage;
            }
            count_redactions(&mut ctx, &redactions);
            with_settling_body(gw, head, Full::new(bytes), ctx, span)
        }
        AnswerBody::Stream(upstream) => {
            count_redactions(&mut ctx, &redactions);
            let relay = Relay::new(
                a.route.kind(),
                upstream,
                Duration::from_millis(gw.cfg.upstream_timeout_ms),
                Policy::clone(&a.response_policy),
                &scrub,
            );
            let head = head.header(header::CACHE_CONTROL, "no-cache");
            with_settling_body(gw, head, relay, ctx, span)
        }
    }
}

fn refusal_response(
    gw: &Arc<Gateway>,
    kind: tollgate_core::records::ProviderKind,
    refusal: &Refusal,
    mut ctx: RequestCtx,
    span: &tracing::Span,
) -> Response<Body> {
    let (head, body, status) = error_parts(kind, refusal);
    ctx.reason = refusal.reason;
    ctx.audit.status = status;
    ctx.audit.error_class = Some(classify(refusal).0.code().into());
    with_settling_body(gw, head, Full::new(body), ctx, span)
}

/// A management API answer (JSON), settled like every response.
fn managed_response(
    gw: &Arc<Gateway>,
    reply: manage::Reply,
    mut ctx: RequestCtx,
    span: &tracing::Span,
) -> Response<Body> {
    ctx.audit.status = reply.status;
    let head = Response::builder()
        .status(reply.status)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CACHE_CONTROL, "no-store");
    let body = axum::body::Bytes::from(reply.body.to_string());
    with_settling_body(gw, head, Full::new(body), ctx, span)
}

/// What a source's end report means for settlement.
trait EndReport: Send + 'static {
    fn into_stream(self) -> Option<StreamReport>;
}

impl EndReport for () {
    fn into_stream(self) -> Option<StreamReport> {
        None
    }
}

impl EndReport for StreamReport {
    fn into_stream(self) -> Option<StreamReport> {
        Some(self)
    }
}

/// The response with a body that settles the request when it ends.
fn with_settling_body<S>(
    gw: &Arc<Gateway>,
    head: http::response::Builder,
    source: S,
    ctx: RequestCtx,
    span: &tracing::Span,
) -> Response<Body>
where
    S: Source,
    S::Report: EndReport,
{
    // Check the head before the request context moves into the hook: a provider header
    // that cannot be sent becomes a gateway error, still settled once.
    let parts = match head.body(()) {
        Ok(r) => r.into_parts().0,
        Err(_) => {
            let mut ctx = ctx;
            ctx.delivering = ctx.delivering.map(|mut d| {
                d.outcome = tollgate_core::pool::Outcome::Transient;
                d
            });
            let r = Refusal::new(tollgate_core::reason::Reason::BadUpstreamHeaders);
            return refusal_response(
                gw,
                tollgate_core::records::ProviderKind::Openai,
                &r,
                ctx,
                span,
            );
        }
    };
    let gw = gw.clone();
    let span = span.clone();
    let on_end: OnEnd<S::Report> = Box::new(move |end: Ended<S::Report>| {
        Box::pin(
            async move { settle(&gw, ctx, end.client_gone, end.report.into_stream()).await }
                .instrument(span),
        )
    });
    Response::from_parts(parts, Body::new(SettlingBody::new(source, on_end)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    #[test]
    fn ip_text_is_the_display_form() {
        for ip in [
            Ipv4Addr::new(0, 0, 0, 0),
            Ipv4Addr::new(255, 255, 255, 255),
            Ipv4Addr::new(203, 0, 113, 7),
            Ipv4Addr::new(10, 100, 9, 99),
            Ipv4Addr::new(1, 20, 101, 110),
        ] {
            assert_eq!(ip_text(IpAddr::V4(ip)), ip.to_string());
        }
        for a in 0..=255u8 {
            let ip = Ipv4Addr::new(a, a.wrapping_mul(7), a.wrapping_add(13), 255 - a);
            assert_eq!(ip_text(IpAddr::V4(ip)), ip.to_string());
        }
        let v6: Ipv6Addr = "2001:db8::7".parse().unwrap();
        assert_eq!(ip_text(IpAddr::V6(v6)), "2001:db8::7");
        let mapped: Ipv6Addr = "::ffff:203.0.113.7".parse().unwrap();
        assert_eq!(ip_text(IpAddr::V6(mapped)), mapped.to_string());
    }
}
