//! A supervised Lambda runtime loop for HTTP functions with response streaming.
//!
//! `lambda_http::run_with_streaming_response` ends the whole process on the first failed call
//! to the Lambda Runtime API (a dropped keep-alive connection is enough: `hyper::Error
//! (IncompleteMessage)`), and answers any event it cannot deserialize with a function error
//! (API Gateway: a bare 502; `cargo lambda watch`: a bare 500) that never reaches the
//! handler, so no request id and no audit line. [`serve_streaming`] instead:
//!
//! - restarts a runtime loop that stopped on a Runtime API client error, with a fresh client
//!   (fresh connection pool), one warning line, and a doubling back-off (never a hot loop);
//! - hands every event to the handler: an event that is not a well-formed API Gateway / ALB /
//!   Function URL event is rebuilt as far as it can be (method, path, headers, body) and still
//!   goes through the handler, which answers it in its own (provider) shape and audits it;
//! - runs `pollers` runtime loops in one process (`TOLLGATE_LAMBDA_POLLERS`, default 1).
//!   Classic Lambda sends one invocation at a time per environment: leave it at 1 there. The
//!   local stack (`cargo lambda watch`, which forces `AWS_LAMBDA_MAX_CONCURRENCY=1`) sets it so
//!   one process drains many invocations at once; see `infra/local/README.md`. Each loop also
//!   honours `AWS_LAMBDA_MAX_CONCURRENCY` (Lambda Managed Instances) through
//!   `lambda_runtime::run_concurrent`. When that variable is above 1 (Lambda Managed Instances
//!   sets it from the function's `PerExecutionEnvironmentMaxConcurrency`), one loop runs that
//!   many workers and [`effective_pollers`] ignores `TOLLGATE_LAMBDA_POLLERS` (with a warning):
//!   more pollers would ask the Runtime API for more invocations than the environment takes.
//!
//! The tokio runtime ([`runtime_for`]): standard Lambda hands an environment one invocation at
//! a time, so the loop runs on a current-thread runtime (one thread: no worker pool to start,
//! no wake-up of another thread per request); with `AWS_LAMBDA_MAX_CONCURRENCY` above 1 it
//! runs on a multi-thread runtime with a worker per CPU, since many invocations then share the
//! environment's vCPUs.
//!
//! Never logs an event, a header or a body.

use crate::env::{self, EnvError};
use axum::body::{Body as AxumBody, BodyDataStream};
use base64::Engine as _;
use http::header::{HeaderName, HeaderValue, SET_COOKIE};
use lambda_http::lambda_runtime::{self, LambdaEvent, MetadataPrelude, StreamResponse};
use lambda_http::request::LambdaRequest;
use lambda_http::{Context, RequestExt};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::convert::Infallible;
use std::time::Duration;
use tower::{Service, ServiceExt};

/// Runtime loops per process (see the module doc).
pub const ENV_POLLERS: &str = "TOLLGATE_LAMBDA_POLLERS";
/// Upper bound on [`ENV_POLLERS`].
pub const MAX_POLLERS: usize = 1024;

/// The variables `lambda_runtime` panics without; checked first so start-up fails with a
/// message naming the variable instead.
const RUNTIME_VARS: [&str; 4] = [
    "AWS_LAMBDA_RUNTIME_API",
    "AWS_LAMBDA_FUNCTION_NAME",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
    "AWS_LAMBDA_FUNCTION_VERSION",
];

/// [`ENV_POLLERS`] from the process environment: 1 when unset, 1..=[`MAX_POLLERS`].
pub fn pollers_from_env() -> Result<usize, EnvError> {
    let n: usize = env::parse_or(ENV_POLLERS, 1, "a whole number from 1 to 1024")?;
    if (1..=MAX_POLLERS).contains(&n) {
        Ok(n)
    } else {
        Err(EnvError::Invalid {
            name: ENV_POLLERS.into(),
            expected: "a whole number from 1 to 1024",
        })
    }
}

/// Lambda's per-environment concurrency (Lambda Managed Instances). Read as lambda_runtime
/// 1.5 reads it (`u32` parse, no trimming), so both agree on whether it is in force.
pub const ENV_MAX_CONCURRENCY: &str = "AWS_LAMBDA_MAX_CONCURRENCY";

/// Whether Lambda's own per-environment concurrency (`max_concurrency`, from
/// [`ENV_MAX_CONCURRENCY`]) is in force: above 1, read as lambda_runtime reads it.
fn concurrent(max_concurrency: Option<&str>) -> bool {
    max_concurrency
        .and_then(|v| v.parse::<u32>().ok())
        .is_some_and(|n| n > 1)
}

/// The runtime loops to start: `pollers`, or 1 when Lambda's own per-environment concurrency
/// (`max_concurrency`, from [`ENV_MAX_CONCURRENCY`]) is above 1, since each loop then runs
/// that many workers itself.
pub fn effective_pollers(pollers: usize, max_concurrency: Option<&str>) -> usize {
    if concurrent(max_concurrency) {
        1
    } else {
        pollers.clamp(1, MAX_POLLERS)
    }
}

/// The tokio runtime a Lambda function runs on (see the module doc): multi-thread when
/// `max_concurrency` (from [`ENV_MAX_CONCURRENCY`]) is above 1, else current-thread.
pub fn runtime_for(max_concurrency: Option<&str>) -> std::io::Result<tokio::runtime::Runtime> {
    let mut b = if concurrent(max_concurrency) {
        tokio::runtime::Builder::new_multi_thread()
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    b.enable_all().build()
}

/// [`runtime_for`] over the process environment.
pub fn runtime_from_env() -> std::io::Result<tokio::runtime::Runtime> {
    runtime_for(std::env::var(ENV_MAX_CONCURRENCY).ok().as_deref())
}

/// An invocation payload that always deserializes (as long as it is JSON): either an HTTP
/// event `lambda_http` understands, or the raw JSON of one it does not.
#[derive(Debug)]
pub enum HttpEvent {
    Http(Box<LambdaRequest>),
    Unreadable { raw: Box<RawValue>, error: String },
}

impl<'de> Deserialize<'de> for HttpEvent {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = Box::<RawValue>::deserialize(d)?;
        Ok(match serde_json::from_str::<LambdaRequest>(raw.get()) {
            Ok(req) => HttpEvent::Http(Box::new(req)),
            Err(e) => HttpEvent::Unreadable {
                raw,
                error: e.to_string(),
            },
        })
    }
}

/// The HTTP request the handler sees for an event, with the Lambda context attached.
pub fn event_to_request(event: HttpEvent, context: Context) -> lambda_http::Request {
    let mut req = match event {
        HttpEvent::Http(req) => lambda_http::Request::from(*req),
        HttpEvent::Unreadable { raw, error } => {
            tracing::warn!(
                request_id = %context.request_id,
                error = %error,
                "the invocation is not a well-formed HTTP event; answering what can be rebuilt of it"
            );
            salvage(raw.get())
        }
    };
    if let Some(v) = context
        .xray_trace_id
        .as_deref()
        .and_then(|t| HeaderValue::from_str(t).ok())
    {
        req.headers_mut()
            .insert(HeaderName::from_static("x-amzn-trace-id"), v);
    }
    req.with_lambda_context(context)
}

/// Rebuilds what can be read of an event that is not a well-formed HTTP event: method
/// (default POST), path (default `/`), string-valued headers that are valid HTTP, and the
/// body (base64-decoded when flagged; empty when it cannot be read). The handler then answers
/// it like any other request (typically 400/401/404 in the provider's shape) and audits it.
pub fn salvage(raw: &str) -> lambda_http::Request {
    let v: serde_json::Value = serde_json::from_str(raw).unwrap_or(serde_json::Value::Null);
    let str_at = |ptrs: &[&str]| {
        ptrs.iter()
            .find_map(|p| v.pointer(p).and_then(|x| x.as_str()))
    };
    let method = str_at(&["/requestContext/http/method", "/httpMethod"])
        .and_then(|m| http::Method::from_bytes(m.as_bytes()).ok())
        .unwrap_or(http::Method::POST);
    let path = str_at(&["/rawPath", "/path"])
        .filter(|p| p.starts_with('/'))
        .and_then(|p| p.parse::<http::Uri>().ok())
        .unwrap_or_else(|| http::Uri::from_static("/"));
    let body = match (
        v.get("body").and_then(|b| b.as_str()),
        v.get("isBase64Encoded"),
    ) {
        (Some(b), Some(serde_json::Value::Bool(true))) => base64::engine::general_purpose::STANDARD
            .decode(b)
            .map(lambda_http::Body::Binary)
            .unwrap_or(lambda_http::Body::Empty),
        (Some(b), _) => lambda_http::Body::Text(b.to_owned()),
        (None, _) => lambda_http::Body::Empty,
    };
    let mut req = lambda_http::Request::new(body);
    *req.method_mut() = method;
    *req.uri_mut() = path;
    if let Some(headers) = v.get("headers").and_then(|h| h.as_object()) {
        for (k, val) in headers {
            let (Ok(name), Some(Ok(value))) = (
                HeaderName::from_bytes(k.as_bytes()),
                val.as_str().map(HeaderValue::from_str),
            ) else {
                continue;
            };
            req.headers_mut().append(name, value);
        }
    }
    req
}

/// The streaming Lambda response for an HTTP response: status and headers in the prelude,
/// `Set-Cookie` moved to the prelude's cookies (as API Gateway expects), the body streamed.
pub fn into_stream_response(res: http::Response<AxumBody>) -> StreamResponse<BodyDataStream> {
    let (parts, body) = res.into_parts();
    let mut headers = parts.headers;
    let cookies = headers
        .get_all(SET_COOKIE)
        .iter()
        .map(|c| String::from_utf8_lossy(c.as_bytes()).into_owned())
        .collect();
    headers.remove(SET_COOKIE);
    StreamResponse {
        metadata_prelude: MetadataPrelude {
            status_code: parts.status,
            headers,
            cookies,
        },
        stream: body.into_data_stream(),
    }
}

/// Waits between restarts of a runtime loop: doubling from [`Backoff::INITIAL`] up to
/// [`Backoff::MAX`], back to the start after a loop that ran at least [`Backoff::HEALTHY`].
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            next: Self::INITIAL,
        }
    }
}

impl Backoff {
    pub const INITIAL: Duration = Duration::from_millis(100);
    pub const MAX: Duration = Duration::from_secs(5);
    pub const HEALTHY: Duration = Duration::from_secs(10);

    /// The wait before restarting a loop that ran for `ran`.
    pub fn after_run(&mut self, ran: Duration) -> Duration {
        if ran >= Self::HEALTHY {
            self.next = Self::INITIAL;
        }
        let wait = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        wait
    }
}

/// Serves `svc` from the Lambda Runtime API with response streaming, in `pollers` supervised
/// runtime loops. Returns only when start-up fails (a Lambda variable is missing); otherwise
/// it runs for the life of the process.
pub async fn serve_streaming<S>(svc: S, pollers: usize) -> Result<(), EnvError>
where
    S: Service<lambda_http::Request, Response = http::Response<AxumBody>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    for name in RUNTIME_VARS {
        env::required(name)?;
    }
    let max_concurrency = std::env::var(ENV_MAX_CONCURRENCY).ok();
    let requested = pollers;
    let pollers = effective_pollers(pollers, max_concurrency.as_deref());
    if pollers < requested.min(MAX_POLLERS) {
        tracing::warn!(
            requested,
            max_concurrency = max_concurrency.as_deref().unwrap_or_default(),
            "AWS_LAMBDA_MAX_CONCURRENCY is above 1: one runtime loop with that many workers, TOLLGATE_LAMBDA_POLLERS ignored"
        );
    }
    tracing::info!(
        pollers,
        max_concurrency = max_concurrency.as_deref().unwrap_or("1"),
        "serving from the Lambda Runtime API"
    );
    let mut loops = tokio::task::JoinSet::new();
    for poller in 0..pollers {
        loops.spawn(supervise(poller, svc.clone()));
    }
    // `supervise` never returns; a loop only ends here if it panicked (debug builds; release
    // builds abort on panic). Start it again so capacity does not shrink.
    let mut next = pollers;
    while let Some(ended) = loops.join_next().await {
        tracing::error!(
            panicked = ended.is_err(),
            "a Lambda runtime loop ended; starting another"
        );
        loops.spawn(supervise(next, svc.clone()));
        next += 1;
    }
    Ok(())
}

async fn supervise<S>(poller: usize, svc: S)
where
    S: Service<lambda_http::Request, Response = http::Response<AxumBody>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let mut backoff = Backoff::default();
    loop {
        let started = tokio::time::Instant::now();
        let svc = svc.clone();
        let handler = tower::service_fn(move |event: LambdaEvent<HttpEvent>| {
            let svc = svc.clone();
            async move {
                let req = event_to_request(event.payload, event.context);
                let res = match svc.oneshot(req).await {
                    Ok(res) => res,
                    Err(never) => match never {},
                };
                Ok::<_, Infallible>(into_stream_response(res))
            }
        });
        let outcome = lambda_runtime::run_concurrent(handler).await;
        let wait = backoff.after_run(started.elapsed());
        match outcome {
            Err(e) => tracing::warn!(
                poller,
                error = %e,
                retry_in_ms = wait.as_millis() as u64,
                "Lambda Runtime API call failed; restarting the runtime loop with a new client (an invocation in flight when it failed is lost)"
            ),
            Ok(()) => tracing::warn!(
                poller,
                retry_in_ms = wait.as_millis() as u64,
                "the Lambda runtime loop ended; restarting it"
            ),
        }
        tokio::time::sleep(wait).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_a_ceiling_and_resets_after_a_healthy_run() {
        let mut b = Backoff::default();
        let quick = Duration::from_millis(5);
        let waits: Vec<_> = (0..8).map(|_| b.after_run(quick)).collect();
        assert_eq!(waits[0], Backoff::INITIAL);
        assert_eq!(waits[1], Backoff::INITIAL * 2);
        assert!(waits.windows(2).all(|w| w[1] >= w[0]));
        assert_eq!(*waits.last().unwrap(), Backoff::MAX);
        assert_eq!(b.after_run(Backoff::HEALTHY), Backoff::INITIAL);
    }

    #[test]
    fn managed_instances_concurrency_means_one_loop() {
        // Classic Lambda and the local stack: the configured loops.
        assert_eq!(effective_pollers(128, None), 128);
        assert_eq!(effective_pollers(128, Some("1")), 128);
        assert_eq!(effective_pollers(4, Some("0")), 4);
        assert_eq!(effective_pollers(4, Some("not a number")), 4);
        assert_eq!(effective_pollers(0, None), 1);
        assert_eq!(effective_pollers(5000, None), MAX_POLLERS);
        // Managed Instances: one loop, which runs AWS_LAMBDA_MAX_CONCURRENCY workers itself.
        assert_eq!(effective_pollers(128, Some("8")), 1);
        assert_eq!(effective_pollers(1, Some("64")), 1);
        // Read exactly as lambda_runtime reads it: what it ignores, this ignores.
        assert_eq!(effective_pollers(4, Some(" 64 ")), 4);
    }

    #[test]
    fn managed_instances_concurrency_means_a_multi_thread_runtime() {
        use tokio::runtime::RuntimeFlavor::{CurrentThread, MultiThread};
        let flavor = |v| runtime_for(v).unwrap().handle().runtime_flavor();
        assert_eq!(flavor(None), CurrentThread);
        assert_eq!(flavor(Some("1")), CurrentThread);
        assert_eq!(flavor(Some(" 64 ")), CurrentThread);
        assert_eq!(flavor(Some("8")), MultiThread);
    }

    #[test]
    fn well_formed_http_events_deserialize_as_http() {
        let ev = r#"{"version":"2.0","rawPath":"/v1/models","requestContext":{"http":{"method":"GET","path":"/v1/models"},"timeEpoch":0},"headers":{},"isBase64Encoded":false}"#;
        let parsed: HttpEvent = serde_json::from_str(ev).unwrap();
        assert!(matches!(parsed, HttpEvent::Http(_)));
    }

    #[test]
    fn unreadable_events_still_deserialize_and_keep_method_path_headers_and_body() {
        let ev = r#"{"rawPath":"/v1/chat/completions","requestContext":{"http":{"method":"POST"}},"headers":{"content-type":"application/json","x-n":7},"body":"/w==","isBase64Encoded":true}"#;
        let parsed: HttpEvent = serde_json::from_str(ev).unwrap();
        let HttpEvent::Unreadable { raw, .. } = parsed else {
            panic!("expected unreadable")
        };
        let req = salvage(raw.get());
        assert_eq!(req.method(), http::Method::POST);
        assert_eq!(req.uri().path(), "/v1/chat/completions");
        assert_eq!(req.headers()["content-type"], "application/json");
        assert!(req.headers().get("x-n").is_none());
        assert_eq!(req.body().as_ref(), &[0xffu8][..]);
    }

    #[test]
    fn an_event_without_request_context_is_unreadable_but_keeps_method_and_path() {
        // The shape tests/e2e/test_lambda_edges.py and tests/runtime_loop.rs send.
        let ev = r#"{"path":"/v1/chat/completions","httpMethod":"POST","headers":{"authorization":"x"},"body":"/w==","isBase64Encoded":true}"#;
        let HttpEvent::Unreadable { raw, .. } = serde_json::from_str(ev).unwrap() else {
            panic!("lambda_http now reads this event: pick another unreadable one")
        };
        let req = salvage(raw.get());
        assert_eq!(
            (req.method(), req.uri().path()),
            (&http::Method::POST, "/v1/chat/completions")
        );
        assert_eq!(req.headers()["authorization"], "x");
    }

    #[test]
    fn an_empty_event_becomes_a_post_to_the_root() {
        let req = salvage("{}");
        assert_eq!((req.method(), req.uri().path()), (&http::Method::POST, "/"));
        assert!(req.body().is_empty());
    }

    #[test]
    fn set_cookie_moves_to_the_prelude() {
        let res = http::Response::builder()
            .status(201)
            .header("set-cookie", "a=b")
            .header("x-k", "v")
            .body(AxumBody::empty())
            .unwrap();
        let s = into_stream_response(res);
        assert_eq!(s.metadata_prelude.status_code, 201);
        assert_eq!(s.metadata_prelude.cookies, vec!["a=b".to_string()]);
        assert!(s.metadata_prelude.headers.get("set-cookie").is_none());
        assert_eq!(s.metadata_prelude.headers["x-k"], "v");
    }
}
