//! Mock LLM provider imitating the OpenAI and Anthropic HTTP APIs.
//!
//! Behaviour is chosen by the (fake) API token the caller sends, see `README.md`.
//! Every request is appended to an in-memory call log exposed at `/_mock/calls`.

mod admin;
mod federation;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream;
use serde::Serialize;
use serde_json::{Value, json};

/// Text every reply starts with.
pub const REPLY_PREFIX: &str = "Hello from the mock provider.";
/// How many characters of the last user message are echoed back.
pub const ECHO_CHARS: usize = 200;

/// Runtime configuration of the mock.
#[derive(Clone, Debug)]
pub struct Config {
    /// Record requests in the call log.
    pub log_calls: bool,
    /// Maximum call-log entries kept (oldest dropped first).
    pub log_cap: usize,
    /// How long `mock-stall` tokens wait before answering.
    pub stall: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            log_calls: true,
            log_cap: 10_000,
            stall: Duration::from_secs(30),
        }
    }
}

/// One entry of the call log, as served by `GET /_mock/calls`.
#[derive(Clone, Debug, Serialize)]
pub struct CallRecord {
    pub seq: u64,
    pub method: String,
    pub path: String,
    /// The API token received (`Authorization: Bearer` for OpenAI, `x-api-key` for Anthropic).
    pub token: Option<String>,
    pub model: Option<String>,
    pub stream: bool,
    pub status: u16,
    /// Lower-case names of every request header received, in arrival order.
    pub headers_seen: Vec<String>,
    /// The request body: parsed JSON when it parses, else the raw text, `null` when empty.
    pub body: Value,
}

struct AppState {
    cfg: Config,
    seq: AtomicU64,
    calls: Mutex<VecDeque<CallRecord>>,
    flaky: Mutex<HashMap<String, u32>>,
    /// Provider requests being handled right now, and the most seen at once since the last
    /// reset: lets a test check a concurrency limit where it matters, at the provider.
    in_flight: AtomicU64,
    max_in_flight: AtomicU64,
    /// Provider requests received since the last reset (with or without the call log).
    requests: AtomicU64,
    /// `GET /v1/models` requests (health probes) since the last reset, by the key they
    /// carried (`GET /_mock/probes`).
    probes: Mutex<HashMap<String, u64>>,
    /// Keys created, deleted and deactivated through the admin routes.
    admin: Mutex<admin::AdminState>,
    /// Workload identity federation: trusted key, counters, issued access tokens.
    federation: Mutex<federation::FederationState>,
}

/// Counts one provider request as in flight until it is dropped (answered, or the client
/// went away), whatever path the handler takes out.
struct InFlight<'a>(&'a AppState);

impl<'a> InFlight<'a> {
    fn enter(st: &'a AppState) -> Self {
        let now = st.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        st.max_in_flight.fetch_max(now, Ordering::SeqCst);
        st.requests.fetch_add(1, Ordering::SeqCst);
        Self(st)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// `GET /_mock/stats`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Stats {
    pub in_flight: u64,
    pub max_in_flight: u64,
    pub requests: u64,
    /// `GET /v1/models` requests (what the rotation function's sweep probes with).
    pub probes: u64,
}

impl AppState {
    fn record(&self, rec: CallRecord) {
        let mut calls = self.calls.lock().unwrap_or_else(|e| e.into_inner());
        while calls.len() >= self.cfg.log_cap.max(1) {
            calls.pop_front();
        }
        calls.push_back(rec);
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Provider {
    OpenAi,
    Anthropic,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Endpoint {
    Chat,
    Completions,
    Embeddings,
    Responses,
    Models,
    Messages,
    CountTokens,
    NotFound,
}

impl Endpoint {
    fn provider(self) -> Provider {
        match self {
            Endpoint::Messages | Endpoint::CountTokens => Provider::Anthropic,
            _ => Provider::OpenAi,
        }
    }
}

/// What a successful (non-error) request should do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Normal,
    /// Misbehaving upstream: echoes the token it received (see `mock-echo` in the README).
    Echo,
    Stall,
    /// Holds the request this many milliseconds, then answers normally.
    Slow(usize),
    Break(usize),
    /// Streams: every SSE event in its own write, this many milliseconds apart (on a fixed
    /// schedule from the first event). Non-stream requests answer normally.
    Pace(u64),
    /// Non-stream: 200 and headers, then half a body and an aborted connection.
    Cut,
}

/// Builds the router with a fresh state.
pub fn router(cfg: Config) -> Router {
    let state = Arc::new(AppState {
        cfg,
        seq: AtomicU64::new(0),
        calls: Mutex::new(VecDeque::new()),
        flaky: Mutex::new(HashMap::new()),
        in_flight: AtomicU64::new(0),
        max_in_flight: AtomicU64::new(0),
        requests: AtomicU64::new(0),
        probes: Mutex::new(HashMap::new()),
        admin: Mutex::new(admin::AdminState::default()),
        federation: Mutex::new(federation::FederationState::default()),
    });
    macro_rules! ep {
        ($ep:expr) => {
            move |st: State<Arc<AppState>>, m: Method, u: Uri, h: HeaderMap, b: Bytes| {
                handle(st, m, u, h, b, $ep)
            }
        };
    }
    Router::new()
        .route("/v1/chat/completions", post(ep!(Endpoint::Chat)))
        .route("/v1/completions", post(ep!(Endpoint::Completions)))
        .route("/v1/embeddings", post(ep!(Endpoint::Embeddings)))
        .route("/v1/responses", post(ep!(Endpoint::Responses)))
        .route("/v1/models", get(ep!(Endpoint::Models)))
        .route("/v1/messages", post(ep!(Endpoint::Messages)))
        .route(
            "/v1/messages/count_tokens",
            post(ep!(Endpoint::CountTokens)),
        )
        .route(
            "/v1/organization/projects/{project}/service_accounts/{sa}/api_keys",
            post(admin::openai_create),
        )
        .route(
            "/v1/organization/projects/{project}/api_keys/{key}",
            axum::routing::delete(admin::openai_delete),
        )
        .route(
            "/v1/organizations/api_keys/{key}",
            post(admin::anthropic_update),
        )
        .route("/oauth/token", post(federation::openai_token))
        .route("/v1/oauth/token", post(federation::anthropic_token))
        .route(
            "/_mock/federation",
            get(federation::show).post(federation::configure),
        )
        .route("/_mock/admin", get(admin::show))
        .route("/_mock/admin/keys", post(admin::register))
        .route("/_mock/calls", get(list_calls).delete(clear_calls))
        .route("/_mock/stats", get(stats))
        .route("/_mock/probes", get(probes))
        .route("/_mock/health", get(|| async { "ok" }))
        .fallback(ep!(Endpoint::NotFound))
        .with_state(state)
}

/// Serves `router(cfg)` on `listener` with `TCP_NODELAY` on every accepted socket.
pub async fn serve(listener: tokio::net::TcpListener, cfg: Config) -> std::io::Result<()> {
    use axum::serve::ListenerExt;
    let listener = listener.tap_io(|tcp| {
        if let Err(err) = tcp.set_nodelay(true) {
            tracing::warn!("failed to set TCP_NODELAY: {err}");
        }
    });
    axum::serve(listener, router(cfg)).await
}

async fn list_calls(State(st): State<Arc<AppState>>) -> Response {
    let calls = st.calls.lock().unwrap_or_else(|e| e.into_inner());
    let body = serde_json::to_vec(&*calls).unwrap_or_else(|_| b"[]".to_vec());
    drop(calls);
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn clear_calls(State(st): State<Arc<AppState>>) -> StatusCode {
    st.calls.lock().unwrap_or_else(|e| e.into_inner()).clear();
    st.flaky.lock().unwrap_or_else(|e| e.into_inner()).clear();
    // Requests still being answered keep counting; the maximum restarts from them.
    st.max_in_flight
        .store(st.in_flight.load(Ordering::SeqCst), Ordering::SeqCst);
    st.requests.store(0, Ordering::SeqCst);
    st.probes.lock().unwrap_or_else(|e| e.into_inner()).clear();
    StatusCode::NO_CONTENT
}

async fn stats(State(st): State<Arc<AppState>>) -> Response {
    axum::Json(Stats {
        in_flight: st.in_flight.load(Ordering::SeqCst),
        max_in_flight: st.max_in_flight.load(Ordering::SeqCst),
        requests: st.requests.load(Ordering::SeqCst),
        probes: st
            .probes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .sum(),
    })
    .into_response()
}

/// `GET /_mock/probes`: `{"total": n, "by_token": {"<key>": n, …}}` (`GET /v1/models` requests
/// since the last reset; a request without a key counts under `""`).
async fn probes(State(st): State<Arc<AppState>>) -> Response {
    let by = st.probes.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let total: u64 = by.values().sum();
    axum::Json(json!({ "total": total, "by_token": by })).into_response()
}

async fn handle(
    State(st): State<Arc<AppState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
    ep: Endpoint,
) -> Response {
    let seq = st.seq.fetch_add(1, Ordering::Relaxed) + 1;
    let _in_flight = InFlight::enter(&st);
    let path = uri.path();
    // Unknown paths under /v1/messages answer in Anthropic's shape.
    let provider = if ep == Endpoint::NotFound && path.starts_with("/v1/messages") {
        Provider::Anthropic
    } else {
        ep.provider()
    };
    let (json, bad_json) = if body.is_empty() {
        (Value::Null, false)
    } else {
        match serde_json::from_slice::<Value>(&body) {
            Ok(v) => (v, false),
            Err(_) => (Value::Null, true),
        }
    };
    // `GET /v1/models` serves both providers' SDKs: a key in `x-api-key` counts too.
    let token = if ep == Endpoint::Models {
        extract_token(Provider::Anthropic, &headers)
    } else {
        extract_token(provider, &headers)
    };
    if ep == Endpoint::Models {
        *st.probes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(token.unwrap_or_default().to_owned())
            .or_insert(0) += 1;
    }
    let outcome = decide(&st, provider, ep, &headers, token, bad_json);
    let status = match &outcome {
        Ok(_) => 200,
        Err(resp) => resp.status().as_u16(),
    };
    let model = json.get("model").and_then(Value::as_str).map(str::to_owned);
    let stream = json.get("stream").and_then(Value::as_bool).unwrap_or(false);
    tracing::debug!(seq, %method, path, status, stream, "request");
    if st.cfg.log_calls {
        st.record(CallRecord {
            seq,
            method: method.to_string(),
            path: path.to_owned(),
            token: token.map(str::to_owned),
            model: model.clone(),
            stream,
            status,
            headers_seen: headers.keys().map(|k| k.as_str().to_owned()).collect(),
            body: if bad_json {
                Value::String(String::from_utf8_lossy(&body).into_owned())
            } else {
                json.clone()
            },
        });
    }
    let mode = match outcome {
        Ok(mode) => mode,
        Err(resp) => return *resp,
    };
    if mode == Mode::Echo
        && let Some(token) = token
    {
        let echoed = String::from_utf8_lossy(&body).replace("{{AUTH}}", token);
        let json = serde_json::from_str::<Value>(&echoed).unwrap_or(Value::Null);
        let req = Req {
            seq,
            model: model.unwrap_or_else(|| "mock-model".to_owned()),
            json: &json,
            stream,
            shape: Shape::Whole,
        };
        let mut resp = match ep {
            Endpoint::Models => models(Some(token)),
            _ => answer(ep, &req),
        };
        if let Ok(v) = HeaderValue::from_str(token) {
            resp.headers_mut().insert("x-request-id", v);
        }
        return resp;
    }
    if mode == Mode::Stall {
        tokio::time::sleep(st.cfg.stall).await;
    }
    if let Mode::Slow(ms) = mode {
        tokio::time::sleep(Duration::from_millis(ms as u64)).await;
    }
    if mode == Mode::Cut && !stream {
        // The pause lets the headers and the first half leave before the abort.
        let half = Body::from_stream(stream::unfold(0u8, |step| async move {
            match step {
                0 => Some((
                    Ok(Bytes::from_static(
                        b"{\"id\":\"chatcmpl-cut\",\"choices\":[",
                    )),
                    1,
                )),
                1 => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    let e = std::io::Error::other("mock-cut: connection aborted mid-body");
                    Some((Err(e), 2))
                }
                _ => None,
            }
        }));
        let mut resp = Response::new(half);
        set_json_headers(provider, resp.headers_mut(), seq);
        return resp;
    }
    let shape = match mode {
        Mode::Break(n) if stream => Shape::Break(n),
        Mode::Pace(ms) if stream => Shape::Pace(ms),
        _ => Shape::Whole,
    };
    let req = Req {
        seq,
        model: model.unwrap_or_else(|| "mock-model".to_owned()),
        json: &json,
        stream,
        shape,
    };
    answer(ep, &req)
}

fn answer(ep: Endpoint, req: &Req) -> Response {
    match ep {
        Endpoint::Chat => chat(req),
        Endpoint::Completions => completions(req),
        Endpoint::Embeddings => embeddings(req),
        Endpoint::Responses => responses(req),
        Endpoint::Models => models(None),
        Endpoint::Messages => messages(req),
        Endpoint::CountTokens => json_response(
            Provider::Anthropic,
            req.seq,
            &json!({ "input_tokens": estimate_tokens(&anthropic_prompt(req.json)) }),
        ),
        Endpoint::NotFound => error_response(
            Provider::OpenAi,
            StatusCode::NOT_FOUND,
            "Unknown path on the mock provider.",
        ),
    }
}

/// The API token: `Authorization: Bearer` for OpenAI; `x-api-key` for Anthropic, falling
/// back to `Authorization: Bearer` (what anthropic-python 2.x sends for `api_key`).
fn extract_token(provider: Provider, headers: &HeaderMap) -> Option<&str> {
    let bearer = || {
        headers
            .get(header::AUTHORIZATION)?
            .to_str()
            .ok()?
            .strip_prefix("Bearer ")
            .map(str::trim)
            .filter(|t| !t.is_empty())
    };
    match provider {
        Provider::OpenAi => bearer(),
        Provider::Anthropic => headers
            .get("x-api-key")
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .or_else(bearer),
    }
}

/// Leading decimal digits of `s` as a number (`None` when there are none).
fn leading_number(s: &str) -> Option<usize> {
    let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    s[..end].parse().ok()
}

fn decide(
    st: &AppState,
    provider: Provider,
    ep: Endpoint,
    headers: &HeaderMap,
    token: Option<&str>,
    bad_json: bool,
) -> Result<Mode, Box<Response>> {
    let err = |status: StatusCode, msg: &str| Box::new(error_response(provider, status, msg));
    let Some(token) = token else {
        return Err(err(
            StatusCode::UNAUTHORIZED,
            match provider {
                Provider::OpenAi => {
                    "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth."
                }
                Provider::Anthropic => "x-api-key header is required",
            },
        ));
    };
    let Some(behaviour) = token.strip_prefix("mock-") else {
        return Err(err(StatusCode::UNAUTHORIZED, "Incorrect API key provided."));
    };
    if st
        .admin
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .is_revoked(token)
    {
        return Err(err(StatusCode::UNAUTHORIZED, "Incorrect API key provided."));
    }
    if token.starts_with(federation::ISSUED_PREFIX) {
        // A federated access token: only as issued and until it expires; Anthropic also
        // wants the OAuth beta header with it.
        if !st
            .federation
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .accepts(token)
        {
            return Err(err(
                StatusCode::UNAUTHORIZED,
                "Invalid or expired access token.",
            ));
        }
        let oauth_beta = headers
            .get_all("anthropic-beta")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|b| b.trim() == "oauth-2025-04-20");
        if provider == Provider::Anthropic && !oauth_beta {
            return Err(err(
                StatusCode::UNAUTHORIZED,
                "OAuth authentication is currently not supported.",
            ));
        }
    }
    if provider == Provider::Anthropic && !headers.contains_key("anthropic-version") {
        return Err(err(
            StatusCode::BAD_REQUEST,
            "anthropic-version: header is required",
        ));
    }
    if ep == Endpoint::NotFound {
        return Err(err(
            StatusCode::NOT_FOUND,
            "Unknown path on the mock provider.",
        ));
    }
    if bad_json {
        return Err(err(
            StatusCode::BAD_REQUEST,
            "We could not parse the JSON body of your request.",
        ));
    }
    if behaviour.starts_with("401") {
        Err(err(StatusCode::UNAUTHORIZED, "Incorrect API key provided."))
    } else if behaviour.starts_with("403") {
        Err(err(
            StatusCode::FORBIDDEN,
            "Your API key does not have permission to use the specified resource.",
        ))
    } else if behaviour.starts_with("429") {
        Err(Box::new(rate_limited(provider)))
    } else if behaviour.starts_with("500") {
        Err(err(
            StatusCode::INTERNAL_SERVER_ERROR,
            "The server had an error while processing your request.",
        ))
    } else if behaviour.starts_with("503") {
        let status = if ep == Endpoint::Messages {
            StatusCode::from_u16(529).unwrap_or(StatusCode::SERVICE_UNAVAILABLE)
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        Err(err(status, "Overloaded"))
    } else if let Some(rest) = behaviour.strip_prefix("echo") {
        if rest.starts_with("400") {
            Err(err(
                StatusCode::BAD_REQUEST,
                &format!("Invalid request sent with Authorization: Bearer {token}"),
            ))
        } else {
            Ok(Mode::Echo)
        }
    } else if behaviour.starts_with("stall") {
        Ok(Mode::Stall)
    } else if let Some(rest) = behaviour.strip_prefix("slow") {
        Ok(Mode::Slow(leading_number(rest).unwrap_or(100)))
    } else if let Some(rest) = behaviour.strip_prefix("break") {
        Ok(Mode::Break(leading_number(rest).unwrap_or(1)))
    } else if let Some(rest) = behaviour.strip_prefix("pace") {
        Ok(Mode::Pace(leading_number(rest).unwrap_or(5) as u64))
    } else if behaviour.starts_with("cut") {
        Ok(Mode::Cut)
    } else if let Some(rest) = behaviour.strip_prefix("flaky") {
        let failures = leading_number(rest).unwrap_or(1);
        let mut flaky = st.flaky.lock().unwrap_or_else(|e| e.into_inner());
        let seen = flaky.entry(token.to_owned()).or_insert(0);
        *seen = seen.saturating_add(1);
        if (*seen as usize) <= failures {
            Err(err(
                StatusCode::INTERNAL_SERVER_ERROR,
                "The server had an error while processing your request.",
            ))
        } else {
            Ok(Mode::Normal)
        }
    } else {
        Ok(Mode::Normal)
    }
}

fn error_response(provider: Provider, status: StatusCode, msg: &str) -> Response {
    let code = status.as_u16();
    let body = match provider {
        Provider::OpenAi => {
            let (typ, code) = match code {
                401 => ("invalid_request_error", json!("invalid_api_key")),
                403 => ("invalid_request_error", json!("permission_denied")),
                404 => ("invalid_request_error", json!("unknown_url")),
                429 => ("requests", json!("rate_limit_exceeded")),
                400 => ("invalid_request_error", Value::Null),
                _ => ("server_error", Value::Null),
            };
            json!({ "error": { "message": msg, "type": typ, "param": null, "code": code } })
        }
        Provider::Anthropic => {
            let typ = match code {
                400 => "invalid_request_error",
                401 => "authentication_error",
                403 => "permission_error",
                404 => "not_found_error",
                429 => "rate_limit_error",
                503 | 529 => "overloaded_error",
                _ => "api_error",
            };
            json!({ "type": "error", "error": { "type": typ, "message": msg }, "request_id": "req_mock_error" })
        }
    };
    let mut resp = (status, body_json(&body)).into_response();
    set_json_headers(provider, resp.headers_mut(), 0);
    resp
}

fn rate_limited(provider: Provider) -> Response {
    let mut resp = error_response(
        provider,
        StatusCode::TOO_MANY_REQUESTS,
        "Rate limit reached for requests. Please try again in 2s.",
    );
    let h = resp.headers_mut();
    h.insert(header::RETRY_AFTER, HeaderValue::from_static("2"));
    match provider {
        Provider::OpenAi => {
            h.insert("x-ratelimit-reset-requests", HeaderValue::from_static("2s"));
            h.insert(
                "x-ratelimit-remaining-requests",
                HeaderValue::from_static("0"),
            );
        }
        Provider::Anthropic => {
            let reset = rfc3339(SystemTime::now() + Duration::from_secs(2));
            if let Ok(v) = HeaderValue::from_str(&reset) {
                h.insert("anthropic-ratelimit-requests-reset", v);
            }
            h.insert(
                "anthropic-ratelimit-requests-remaining",
                HeaderValue::from_static("0"),
            );
        }
    }
    resp
}

// ---------------------------------------------------------------- helpers

struct Req<'a> {
    seq: u64,
    model: String,
    json: &'a Value,
    stream: bool,
    shape: Shape,
}

/// How an SSE answer goes out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shape {
    /// The whole stream in one write.
    Whole,
    /// The first `n` events, then an aborted connection.
    Break(usize),
    /// One write per event, this many milliseconds apart.
    Pace(u64),
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Formats `t` as RFC 3339 in UTC, e.g. `2025-01-02T03:04:05Z`.
fn rfc3339(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Deterministic token estimate: characters / 4 rounded up, at least 1.
pub fn estimate_tokens(text: &str) -> u64 {
    (text.chars().count() as u64).div_ceil(4).max(1)
}

/// Text of a message `content`: a string, or the `text` of every part in an array.
fn content_text(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| match p {
                Value::String(s) => Some(s.as_str()),
                _ => p.get("text").and_then(Value::as_str),
            })
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}

fn messages_of(v: Option<&Value>) -> &[Value] {
    v.and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

fn last_user_text(messages: &[Value]) -> Option<String> {
    messages
        .iter()
        .rev()
        .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
        .map(|m| m.get("content").map(content_text).unwrap_or_default())
}

fn all_text(messages: &[Value]) -> String {
    messages
        .iter()
        .map(|m| m.get("content").map(content_text).unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n")
}

fn completion_prompt(json: &Value) -> String {
    match json.get("prompt") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

fn responses_input(json: &Value) -> (String, Option<String>) {
    let instructions = json
        .get("instructions")
        .and_then(Value::as_str)
        .unwrap_or("");
    match json.get("input") {
        Some(Value::String(s)) => (format!("{instructions}{s}"), Some(s.clone())),
        Some(Value::Array(items)) => (
            format!("{instructions}{}", all_text(items)),
            last_user_text(items),
        ),
        _ => (instructions.to_owned(), None),
    }
}

fn anthropic_prompt(json: &Value) -> String {
    let system = json.get("system").map(content_text).unwrap_or_default();
    format!("{system}{}", all_text(messages_of(json.get("messages"))))
}

/// The deterministic reply: a fixed sentence plus an echo of the last user message.
pub fn reply_text(last_user: Option<&str>) -> String {
    match last_user.map(str::trim).filter(|s| !s.is_empty()) {
        Some(u) => {
            let echo: String = u.chars().take(ECHO_CHARS).collect();
            format!("{REPLY_PREFIX} You said: {echo}")
        }
        None => REPLY_PREFIX.to_owned(),
    }
}

/// Splits the reply into streaming deltas (word by word, whitespace kept).
fn deltas(text: &str) -> Vec<&str> {
    text.split_inclusive(' ').collect()
}

fn body_json(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).unwrap_or_default()
}

fn set_json_headers(provider: Provider, h: &mut HeaderMap, seq: u64) {
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    set_request_id(provider, h, seq);
}

fn set_request_id(provider: Provider, h: &mut HeaderMap, seq: u64) {
    let name = match provider {
        Provider::OpenAi => HeaderName::from_static("x-request-id"),
        Provider::Anthropic => HeaderName::from_static("request-id"),
    };
    if let Ok(v) = HeaderValue::from_str(&format!("req_mock{seq}")) {
        h.insert(name, v);
    }
}

fn json_response(provider: Provider, seq: u64, v: &Value) -> Response {
    let mut resp = body_json(v).into_response();
    set_json_headers(provider, resp.headers_mut(), seq);
    resp
}

fn sse_data(out: &mut Vec<Bytes>, v: &Value) {
    out.push(Bytes::from(format!("data: {v}\n\n")));
}

fn sse_event(out: &mut Vec<Bytes>, v: &Value) {
    let name = v.get("type").and_then(Value::as_str).unwrap_or("message");
    out.push(Bytes::from(format!("event: {name}\ndata: {v}\n\n")));
}

/// An SSE response. Normally the whole stream goes out as one chunk (one write);
/// [`Shape::Break`] sends only the first `n` events, then fails the body so the connection is
/// aborted mid-stream (no terminating chunk); [`Shape::Pace`] sends one event per write on a
/// fixed schedule (event `i` at start + `i` × pace), so a client can time each event's relay.
fn sse_response(provider: Provider, seq: u64, events: Vec<Bytes>, shape: Shape) -> Response {
    let body = match shape {
        Shape::Whole => {
            let all: Vec<u8> = events.concat();
            Body::from_stream(stream::once(async move {
                Ok::<_, std::io::Error>(Bytes::from(all))
            }))
        }
        Shape::Break(n) => {
            let head = stream::iter(events.into_iter().take(n).map(Ok::<_, std::io::Error>));
            let tail = stream::once(async {
                // Let the server flush what was sent before failing the body.
                tokio::time::sleep(Duration::from_millis(20)).await;
                Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionAborted,
                    "mock-break: stream aborted on purpose",
                ))
            });
            Body::from_stream(head.chain(tail))
        }
        Shape::Pace(ms) => {
            let start = tokio::time::Instant::now();
            let pace = Duration::from_millis(ms);
            Body::from_stream(stream::iter(events.into_iter().enumerate()).then(
                move |(i, ev)| async move {
                    let i = u32::try_from(i).unwrap_or(u32::MAX);
                    tokio::time::sleep_until(start + pace * i).await;
                    Ok::<_, std::io::Error>(ev)
                },
            ))
        }
    };
    let mut resp = Response::new(body);
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(match provider {
            Provider::OpenAi => "text/event-stream; charset=utf-8",
            Provider::Anthropic => "text/event-stream",
        }),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    set_request_id(provider, h, seq);
    resp
}

fn include_usage(json: &Value) -> bool {
    json.pointer("/stream_options/include_usage")
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

fn openai_usage(prompt: u64, completion: u64) -> Value {
    json!({
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    })
}

// ---------------------------------------------------------------- OpenAI

fn chat(req: &Req) -> Response {
    let messages = messages_of(req.json.get("messages"));
    let reply = reply_text(last_user_text(messages).as_deref());
    let prompt_tokens = estimate_tokens(&all_text(messages));
    let completion_tokens = estimate_tokens(&reply);
    let id = format!("chatcmpl-mock{}", req.seq);
    let created = now_secs();
    if !req.stream {
        return json_response(
            Provider::OpenAi,
            req.seq,
            &json!({
                "id": id,
                "object": "chat.completion",
                "created": created,
                "model": req.model,
                "system_fingerprint": null,
                "choices": [{
                    "index": 0,
                    "message": { "role": "assistant", "content": reply, "refusal": null },
                    "logprobs": null,
                    "finish_reason": "stop",
                }],
                "usage": openai_usage(prompt_tokens, completion_tokens),
            }),
        );
    }
    let with_usage = include_usage(req.json);
    let chunk = |delta: Value, finish: Value| {
        let mut c = json!({
            "id": id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": req.model,
            "system_fingerprint": null,
            "choices": [{ "index": 0, "delta": delta, "logprobs": null, "finish_reason": finish }],
        });
        if with_usage {
            c["usage"] = Value::Null;
        }
        c
    };
    let mut events = Vec::new();
    sse_data(
        &mut events,
        &chunk(json!({ "role": "assistant", "content": "" }), Value::Null),
    );
    for d in deltas(&reply) {
        sse_data(&mut events, &chunk(json!({ "content": d }), Value::Null));
    }
    sse_data(&mut events, &chunk(json!({}), json!("stop")));
    if with_usage {
        sse_data(
            &mut events,
            &json!({
                "id": id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": req.model,
                "system_fingerprint": null,
                "choices": [],
                "usage": openai_usage(prompt_tokens, completion_tokens),
            }),
        );
    }
    events.push(Bytes::from_static(b"data: [DONE]\n\n"));
    sse_response(Provider::OpenAi, req.seq, events, req.shape)
}

fn completions(req: &Req) -> Response {
    let prompt = completion_prompt(req.json);
    let reply = reply_text(Some(&prompt));
    let prompt_tokens = estimate_tokens(&prompt);
    let completion_tokens = estimate_tokens(&reply);
    let id = format!("cmpl-mock{}", req.seq);
    let created = now_secs();
    let obj = |text: &str, finish: Value, usage: Value| {
        json!({
            "id": id,
            "object": "text_completion",
            "created": created,
            "model": req.model,
            "system_fingerprint": null,
            "choices": [{ "text": text, "index": 0, "logprobs": null, "finish_reason": finish }],
            "usage": usage,
        })
    };
    let usage = openai_usage(prompt_tokens, completion_tokens);
    if !req.stream {
        return json_response(
            Provider::OpenAi,
            req.seq,
            &obj(&reply, json!("stop"), usage),
        );
    }
    let mut events = Vec::new();
    for d in deltas(&reply) {
        sse_data(&mut events, &obj(d, Value::Null, Value::Null));
    }
    sse_data(&mut events, &obj("", json!("stop"), Value::Null));
    if include_usage(req.json) {
        let mut u = obj("", Value::Null, usage);
        u["choices"] = json!([]);
        sse_data(&mut events, &u);
    }
    events.push(Bytes::from_static(b"data: [DONE]\n\n"));
    sse_response(Provider::OpenAi, req.seq, events, req.shape)
}

/// Standard base64 (with padding).
fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Small deterministic unit-ish vector derived from the text (FNV-1a seeded LCG).
pub fn embedding_vector(text: &str, dims: usize) -> Vec<f32> {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (0..dims)
        .map(|_| {
            h = h
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            // Map the top 24 bits to [-1, 1).
            ((h >> 40) as f32 / (1u64 << 23) as f32) - 1.0
        })
        .collect()
}

fn embeddings(req: &Req) -> Response {
    let inputs: Vec<String> = match req.json.get("input") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| match i {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect(),
        _ => vec![String::new()],
    };
    let dims = req
        .json
        .get("dimensions")
        .and_then(Value::as_u64)
        .map(|d| d.clamp(1, 4096) as usize)
        .unwrap_or(8);
    let as_base64 = req.json.get("encoding_format").and_then(Value::as_str) == Some("base64");
    let mut prompt_tokens = 0;
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(index, text)| {
            prompt_tokens += estimate_tokens(text);
            let v = embedding_vector(text, dims);
            let embedding = if as_base64 {
                let bytes: Vec<u8> = v.iter().flat_map(|f| f.to_le_bytes()).collect();
                json!(base64(&bytes))
            } else {
                json!(v)
            };
            json!({ "object": "embedding", "index": index, "embedding": embedding })
        })
        .collect();
    json_response(
        Provider::OpenAi,
        req.seq,
        &json!({
            "object": "list",
            "data": data,
            "model": req.model,
            "usage": { "prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens },
        }),
    )
}

fn models(echo: Option<&str>) -> Response {
    let data: Vec<Value> = [
        "gpt-4o",
        "gpt-4o-mini",
        "gpt-4.1-mini",
        "gpt-3.5-turbo-instruct",
        "text-embedding-3-small",
    ]
    .into_iter()
    .chain(echo)
    .map(|id| json!({ "id": id, "object": "model", "created": 1_700_000_000, "owned_by": "mock-provider" }))
    .collect();
    json_response(
        Provider::OpenAi,
        0,
        &json!({ "object": "list", "data": data }),
    )
}

fn responses(req: &Req) -> Response {
    let (prompt, last_user) = responses_input(req.json);
    let reply = reply_text(last_user.as_deref());
    let input_tokens = estimate_tokens(&prompt);
    let output_tokens = estimate_tokens(&reply);
    let id = format!("resp_mock{}", req.seq);
    let item_id = format!("msg_mock{}", req.seq);
    let created = now_secs();
    let part = |text: &str| json!({ "type": "output_text", "text": text, "annotations": [], "logprobs": [] });
    let item = |status: &str, content: Value| json!({ "type": "message", "id": item_id, "status": status, "role": "assistant", "content": content });
    let response = |status: &str, output: Value, usage: Value| {
        json!({
            "id": id,
            "object": "response",
            "created_at": created,
            "status": status,
            "model": req.model,
            "output": output,
            "parallel_tool_calls": true,
            "tool_choice": "auto",
            "tools": [],
            "temperature": 1.0,
            "top_p": 1.0,
            "text": { "format": { "type": "text" } },
            "metadata": {},
            "instructions": req.json.get("instructions").cloned().unwrap_or(Value::Null),
            "previous_response_id": null,
            "error": null,
            "incomplete_details": null,
            "usage": usage,
        })
    };
    let usage = json!({
        "input_tokens": input_tokens,
        "input_tokens_details": { "cached_tokens": 0 },
        "output_tokens": output_tokens,
        "output_tokens_details": { "reasoning_tokens": 0 },
        "total_tokens": input_tokens + output_tokens,
    });
    let done_item = item("completed", json!([part(&reply)]));
    let full = response("completed", json!([done_item]), usage);
    if !req.stream {
        return json_response(Provider::OpenAi, req.seq, &full);
    }
    let pending = response("in_progress", json!([]), Value::Null);
    let mut evs: Vec<Value> = vec![
        json!({ "type": "response.created", "response": pending }),
        json!({ "type": "response.in_progress", "response": pending }),
        json!({ "type": "response.output_item.added", "output_index": 0, "item": item("in_progress", json!([])) }),
        json!({ "type": "response.content_part.added", "item_id": item_id, "output_index": 0, "content_index": 0, "part": part("") }),
    ];
    for d in deltas(&reply) {
        evs.push(json!({ "type": "response.output_text.delta", "item_id": item_id, "output_index": 0, "content_index": 0, "delta": d, "logprobs": [] }));
    }
    evs.push(json!({ "type": "response.output_text.done", "item_id": item_id, "output_index": 0, "content_index": 0, "text": reply, "logprobs": [] }));
    evs.push(json!({ "type": "response.content_part.done", "item_id": item_id, "output_index": 0, "content_index": 0, "part": part(&reply) }));
    evs.push(json!({ "type": "response.output_item.done", "output_index": 0, "item": done_item }));
    evs.push(json!({ "type": "response.completed", "response": full }));
    let mut events = Vec::with_capacity(evs.len());
    for (n, mut ev) in evs.into_iter().enumerate() {
        ev["sequence_number"] = json!(n);
        sse_event(&mut events, &ev);
    }
    sse_response(Provider::OpenAi, req.seq, events, req.shape)
}

// ---------------------------------------------------------------- Anthropic

fn messages(req: &Req) -> Response {
    let msgs = messages_of(req.json.get("messages"));
    let reply = reply_text(last_user_text(msgs).as_deref());
    let input_tokens = estimate_tokens(&anthropic_prompt(req.json));
    let output_tokens = estimate_tokens(&reply);
    let id = format!("msg_mock{}", req.seq);
    if !req.stream {
        return json_response(
            Provider::Anthropic,
            req.seq,
            &json!({
                "id": id,
                "type": "message",
                "role": "assistant",
                "model": req.model,
                "content": [{ "type": "text", "text": reply }],
                "stop_reason": "end_turn",
                "stop_sequence": null,
                "usage": { "input_tokens": input_tokens, "output_tokens": output_tokens },
            }),
        );
    }
    let mut events = Vec::new();
    sse_event(
        &mut events,
        &json!({
            "type": "message_start",
            "message": {
                "id": id,
                "type": "message",
                "role": "assistant",
                "model": req.model,
                "content": [],
                "stop_reason": null,
                "stop_sequence": null,
                "usage": { "input_tokens": input_tokens, "output_tokens": 1 },
            },
        }),
    );
    sse_event(
        &mut events,
        &json!({ "type": "content_block_start", "index": 0, "content_block": { "type": "text", "text": "" } }),
    );
    sse_event(&mut events, &json!({ "type": "ping" }));
    for d in deltas(&reply) {
        sse_event(
            &mut events,
            &json!({ "type": "content_block_delta", "index": 0, "delta": { "type": "text_delta", "text": d } }),
        );
    }
    sse_event(
        &mut events,
        &json!({ "type": "content_block_stop", "index": 0 }),
    );
    sse_event(
        &mut events,
        &json!({
            "type": "message_delta",
            "delta": { "stop_reason": "end_turn", "stop_sequence": null },
            "usage": { "output_tokens": output_tokens },
        }),
    );
    sse_event(&mut events, &json!({ "type": "message_stop" }));
    sse_response(Provider::Anthropic, req.seq, events, req.shape)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_formats_known_instants() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let t = UNIX_EPOCH + Duration::from_secs(1_709_251_199); // 2024-02-29T23:59:59Z
        assert_eq!(rfc3339(t), "2024-02-29T23:59:59Z");
    }

    #[test]
    fn base64_matches_rfc4648_vectors() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }

    #[test]
    fn token_estimate_is_chars_over_four_rounded_up_min_one() {
        assert_eq!(estimate_tokens(""), 1);
        assert_eq!(estimate_tokens("abcd"), 1);
        assert_eq!(estimate_tokens("abcde"), 2);
    }

    #[test]
    fn reply_echoes_at_most_200_chars_of_last_user_message() {
        assert_eq!(reply_text(None), REPLY_PREFIX);
        let long = "x".repeat(500);
        let r = reply_text(Some(&long));
        assert!(r.starts_with(REPLY_PREFIX));
        assert_eq!(r.matches('x').count(), ECHO_CHARS);
    }

    #[test]
    fn embeddings_are_deterministic_and_bounded() {
        let a = embedding_vector("hello", 8);
        assert_eq!(a, embedding_vector("hello", 8));
        assert_ne!(a, embedding_vector("world", 8));
        assert!(a.iter().all(|x| (-1.0..1.0).contains(x)));
    }
}
