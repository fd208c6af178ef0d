//! The routes tollgate serves, the pool each one defaults to, the upstream path it maps to,
//! and the error shapes of the provider each route imitates. The caller never chooses the
//! upstream host, path prefix or credentials: those come from the token record alone.

use crate::clock::{EpochMs, parse_rfc3339};
use crate::records::ProviderKind;
use serde_json::{Value, json};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Route {
    ChatCompletions,
    Completions,
    Embeddings,
    Responses,
    Models,
    Messages,
    CountTokens,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteError {
    NotFound,
    MethodNotAllowed,
}

impl Route {
    pub const ALL: [Route; 7] = [
        Route::ChatCompletions,
        Route::Completions,
        Route::Embeddings,
        Route::Responses,
        Route::Models,
        Route::Messages,
        Route::CountTokens,
    ];

    /// Resolves a request path (query string already removed).
    pub fn resolve(method: &str, path: &str) -> Result<Route, RouteError> {
        let path = path.trim_end_matches('/');
        let route = match path {
            "/v1/chat/completions" => Route::ChatCompletions,
            "/v1/completions" => Route::Completions,
            "/v1/embeddings" => Route::Embeddings,
            "/v1/responses" => Route::Responses,
            "/v1/models" => Route::Models,
            "/v1/messages" => Route::Messages,
            "/v1/messages/count_tokens" => Route::CountTokens,
            _ => return Err(RouteError::NotFound),
        };
        if method.eq_ignore_ascii_case(route.method()) {
            Ok(route)
        } else {
            Err(RouteError::MethodNotAllowed)
        }
    }

    /// The kind of provider a path imitates, for shaping errors even before a route resolves.
    pub fn kind_for_path(path: &str) -> ProviderKind {
        if path.starts_with("/v1/messages") {
            ProviderKind::Anthropic
        } else {
            ProviderKind::Openai
        }
    }

    pub fn method(self) -> &'static str {
        match self {
            Route::Models => "GET",
            _ => "POST",
        }
    }

    /// Stable names used in key scopes and audit lines.
    pub fn name(self) -> &'static str {
        match self {
            Route::ChatCompletions => "chat.completions",
            Route::Completions => "completions",
            Route::Embeddings => "embeddings",
            Route::Responses => "responses",
            Route::Models => "models",
            Route::Messages => "messages",
            Route::CountTokens => "messages.count_tokens",
        }
    }

    pub fn kind(self) -> ProviderKind {
        match self {
            Route::Messages | Route::CountTokens => ProviderKind::Anthropic,
            _ => ProviderKind::Openai,
        }
    }

    /// Appended to the token's base URL, which carries the version prefix (`.../v1`).
    pub fn upstream_suffix(self) -> &'static str {
        match self {
            Route::ChatCompletions => "/chat/completions",
            Route::Completions => "/completions",
            Route::Embeddings => "/embeddings",
            Route::Responses => "/responses",
            Route::Models => "/models",
            Route::Messages => "/messages",
            Route::CountTokens => "/messages/count_tokens",
        }
    }

    pub fn has_body(self) -> bool {
        self != Route::Models
    }

    pub fn default_pool(self) -> &'static str {
        self.kind().as_str()
    }
}

/// Joins a base URL and a route suffix without doubling or dropping a slash.
pub fn upstream_url(base_url: &str, route: Route) -> String {
    format!(
        "{}{}",
        base_url.trim_end_matches('/'),
        route.upstream_suffix()
    )
}

/// Every way a request can end other than an upstream answer, mapped to a status and an
/// error in the imitated provider's shape in one place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    Unauthenticated,
    Forbidden,
    NotFound,
    MethodNotAllowed,
    BadRequest,
    /// The sensitive-data policy blocks what the request contains.
    SensitiveData,
    PayloadTooLarge,
    RateLimited,
    NoUpstreamAvailable,
    UpstreamTimeout,
    StoreUnavailable,
    Internal,
}

impl ErrorClass {
    pub fn status(self) -> u16 {
        match self {
            ErrorClass::Unauthenticated => 401,
            ErrorClass::Forbidden => 403,
            ErrorClass::NotFound => 404,
            ErrorClass::MethodNotAllowed => 405,
            ErrorClass::BadRequest | ErrorClass::SensitiveData => 400,
            ErrorClass::PayloadTooLarge => 413,
            ErrorClass::RateLimited => 429,
            ErrorClass::NoUpstreamAvailable | ErrorClass::StoreUnavailable => 503,
            ErrorClass::UpstreamTimeout => 504,
            ErrorClass::Internal => 500,
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            ErrorClass::Unauthenticated => "unauthenticated",
            ErrorClass::Forbidden => "forbidden",
            ErrorClass::NotFound => "not_found",
            ErrorClass::MethodNotAllowed => "method_not_allowed",
            ErrorClass::BadRequest => "bad_request",
            ErrorClass::SensitiveData => "sensitive_data_blocked",
            ErrorClass::PayloadTooLarge => "payload_too_large",
            ErrorClass::RateLimited => "rate_limited",
            ErrorClass::NoUpstreamAvailable => "no_upstream_available",
            ErrorClass::UpstreamTimeout => "upstream_timeout",
            ErrorClass::StoreUnavailable => "store_unavailable",
            ErrorClass::Internal => "internal_error",
        }
    }

    fn openai_type(self) -> &'static str {
        match self {
            ErrorClass::Unauthenticated => "invalid_request_error",
            ErrorClass::Forbidden => "permission_error",
            ErrorClass::NotFound | ErrorClass::MethodNotAllowed => "invalid_request_error",
            ErrorClass::BadRequest | ErrorClass::PayloadTooLarge | ErrorClass::SensitiveData => {
                "invalid_request_error"
            }
            ErrorClass::RateLimited => "rate_limit_exceeded",
            _ => "server_error",
        }
    }

    fn anthropic_type(self) -> &'static str {
        match self {
            ErrorClass::Unauthenticated => "authentication_error",
            ErrorClass::Forbidden => "permission_error",
            ErrorClass::NotFound | ErrorClass::MethodNotAllowed => "not_found_error",
            ErrorClass::BadRequest | ErrorClass::SensitiveData => "invalid_request_error",
            ErrorClass::PayloadTooLarge => "request_too_large",
            ErrorClass::RateLimited => "rate_limit_error",
            ErrorClass::NoUpstreamAvailable | ErrorClass::StoreUnavailable => "overloaded_error",
            ErrorClass::UpstreamTimeout | ErrorClass::Internal => "api_error",
        }
    }

    /// The message a client sees. Never carries internal detail; callers may pass a
    /// client-safe message instead (e.g. naming a model the key may not use).
    pub fn default_message(self) -> &'static str {
        match self {
            ErrorClass::Unauthenticated => "Invalid API key.",
            ErrorClass::Forbidden => "This key is not allowed to make this request.",
            ErrorClass::NotFound => "Unknown route.",
            ErrorClass::MethodNotAllowed => "Method not allowed on this route.",
            ErrorClass::BadRequest => "The request body is not valid JSON.",
            ErrorClass::SensitiveData => "The request contains sensitive data this gateway blocks.",
            ErrorClass::PayloadTooLarge => "The request body is too large.",
            ErrorClass::RateLimited => "Rate limit reached. Retry later.",
            ErrorClass::NoUpstreamAvailable => {
                "No upstream provider is available right now. Retry later."
            }
            ErrorClass::UpstreamTimeout => "The upstream provider did not answer in time.",
            ErrorClass::StoreUnavailable => "The gateway cannot verify requests right now.",
            ErrorClass::Internal => "Internal gateway error.",
        }
    }
}

/// An error body in the imitated provider's JSON shape.
pub fn error_body(kind: ProviderKind, class: ErrorClass, message: &str) -> Value {
    match kind {
        ProviderKind::Openai => json!({
            "error": {
                "message": message,
                "type": class.openai_type(),
                "param": null,
                "code": class.code(),
            }
        }),
        ProviderKind::Anthropic => json!({
            "type": "error",
            "error": { "type": class.anthropic_type(), "message": message },
        }),
    }
}

/// The in-band SSE event that ends a stream broken upstream, shaped so each provider's SDK
/// raises an error instead of seeing a clean end.
pub fn stream_error_event(kind: ProviderKind) -> String {
    let msg = "The upstream stream was interrupted before it finished.";
    match kind {
        ProviderKind::Openai => format!(
            "data: {}\n\n",
            json!({"error": {"message": msg, "type": "server_error", "param": null, "code": "upstream_stream_interrupted"}})
        ),
        ProviderKind::Anthropic => format!(
            "event: error\ndata: {}\n\n",
            json!({"type": "error", "error": {"type": "api_error", "message": msg}})
        ),
    }
}

/// Parses `1s`, `6m0s`, `20ms`, `1h2m3.5s` (OpenAI's reset headers) into milliseconds.
pub fn parse_go_duration_ms(s: &str) -> Option<u64> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    let mut total = 0f64;
    let mut num = String::new();
    let mut chars = s.chars().peekable();
    let mut any = false;
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() || c == '.' {
            num.push(c);
            continue;
        }
        let mut unit = c.to_string();
        if c == 'm' && chars.peek() == Some(&'s') {
            chars.next();
            unit = "ms".into();
        }
        let v: f64 = num.parse().ok()?;
        num.clear();
        total += match unit.as_str() {
            "h" => v * 3_600_000.0,
            "m" => v * 60_000.0,
            "s" => v * 1_000.0,
            "ms" => v,
            _ => return None,
        };
        any = true;
    }
    if !num.is_empty() {
        // A bare number is seconds.
        total += num.parse::<f64>().ok()? * 1_000.0;
        any = true;
    }
    any.then_some(total.ceil() as u64)
}

/// How long a rate-limited token should cool, from the provider's headers: `retry-after-ms`,
/// `retry-after` (seconds or an HTTP date is not supported → ignored), OpenAI's
/// `x-ratelimit-reset-*`, Anthropic's `anthropic-ratelimit-*-reset` (RFC 3339).
/// The longest stated wait wins, since every exhausted limit must reset.
pub fn cooldown_from_headers<'a>(
    headers: impl IntoIterator<Item = (&'a str, &'a str)>,
    now: EpochMs,
) -> Option<u64> {
    let mut best: Option<u64> = None;
    let mut take = |v: u64| best = Some(best.map_or(v, |b: u64| b.max(v)));
    for (name, value) in headers {
        let name = name.to_ascii_lowercase();
        let value = value.trim();
        if name == "retry-after-ms" {
            if let Ok(v) = value.parse::<f64>() {
                take(v.ceil() as u64);
            }
        } else if name == "retry-after" {
            if let Ok(v) = value.parse::<f64>() {
                take((v * 1000.0).ceil() as u64);
            }
        } else if name.starts_with("x-ratelimit-reset") {
            if let Some(v) = parse_go_duration_ms(value) {
                take(v);
            }
        } else if name.starts_with("anthropic-ratelimit-")
            && name.ends_with("-reset")
            && let Some(at) = parse_rfc3339(value)
        {
            take(at.saturating_sub(now));
        }
    }
    best
}

/// Tokens in and out, where the provider reported them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub input: u64,
    pub output: u64,
}

fn u(v: &Value, k: &str) -> Option<u64> {
    v.get(k).and_then(Value::as_u64)
}

/// Usage from a complete (non-streamed) response body of either provider.
pub fn usage_from_body(body: &Value) -> Option<Usage> {
    usage_from_value(body.get("usage")?)
}

/// [`usage_from_body`] given the body's `usage` value itself.
pub fn usage_from_value(usage: &Value) -> Option<Usage> {
    let input = u(usage, "prompt_tokens").or_else(|| u(usage, "input_tokens"));
    let output = u(usage, "completion_tokens").or_else(|| u(usage, "output_tokens"));
    (input.is_some() || output.is_some()).then(|| Usage {
        input: input.unwrap_or(0),
        output: output.unwrap_or(0),
    })
}

/// Folds one SSE `data:` payload into the running usage of a stream. Handles OpenAI chat /
/// completions chunks (`usage` when `stream_options.include_usage`), Responses API
/// `response.completed`, and Anthropic `message_start` / `message_delta`.
pub fn fold_stream_usage(acc: &mut Usage, data: &Value) {
    if let Some(usage) = data.get("usage").filter(|v| v.is_object()) {
        // OpenAI chunk, or Anthropic message_delta (output_tokens is cumulative there).
        if let Some(i) = u(usage, "prompt_tokens").or_else(|| u(usage, "input_tokens")) {
            acc.input = acc.input.max(i);
        }
        if let Some(o) = u(usage, "completion_tokens").or_else(|| u(usage, "output_tokens")) {
            acc.output = acc.output.max(o);
        }
    }
    for nested in ["message", "response"] {
        if let Some(inner) = data.get(nested).and_then(|m| m.get("usage")) {
            if let Some(i) = u(inner, "input_tokens").or_else(|| u(inner, "prompt_tokens")) {
                acc.input = acc.input.max(i);
            }
            if let Some(o) = u(inner, "output_tokens").or_else(|| u(inner, "completion_tokens")) {
                acc.output = acc.output.max(o);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_resolves_with_its_method_only() {
        for r in Route::ALL {
            let path = format!("/v1{}", r.upstream_suffix());
            assert_eq!(Route::resolve(r.method(), &path), Ok(r));
            let other = if r.method() == "GET" { "POST" } else { "GET" };
            assert_eq!(
                Route::resolve(other, &path),
                Err(RouteError::MethodNotAllowed)
            );
        }
        assert_eq!(
            Route::resolve("POST", "/v1/chat/completions/"),
            Ok(Route::ChatCompletions)
        );
        assert_eq!(
            Route::resolve("POST", "/v2/chat/completions"),
            Err(RouteError::NotFound)
        );
        assert_eq!(
            Route::resolve("POST", "/v1/../admin"),
            Err(RouteError::NotFound)
        );
    }

    #[test]
    fn upstream_url_comes_from_base_url_only() {
        assert_eq!(
            upstream_url("http://mock:1/v1/", Route::Messages),
            "http://mock:1/v1/messages"
        );
        assert_eq!(
            upstream_url(
                "https://x.openai.azure.com/openai/v1",
                Route::ChatCompletions
            ),
            "https://x.openai.azure.com/openai/v1/chat/completions"
        );
    }

    #[test]
    fn error_shapes_match_each_provider() {
        let o = error_body(
            ProviderKind::Openai,
            ErrorClass::Unauthenticated,
            "Invalid API key.",
        );
        assert_eq!(o["error"]["type"], "invalid_request_error");
        assert_eq!(o["error"]["code"], "unauthenticated");
        assert!(o["error"]["param"].is_null());
        let a = error_body(
            ProviderKind::Anthropic,
            ErrorClass::NoUpstreamAvailable,
            "x",
        );
        assert_eq!(a["type"], "error");
        assert_eq!(a["error"]["type"], "overloaded_error");
        assert_eq!(ErrorClass::NoUpstreamAvailable.status(), 503);
        assert_eq!(ErrorClass::PayloadTooLarge.status(), 413);
    }

    #[test]
    fn go_durations_parse() {
        assert_eq!(parse_go_duration_ms("1s"), Some(1_000));
        assert_eq!(parse_go_duration_ms("6m0s"), Some(360_000));
        assert_eq!(parse_go_duration_ms("20ms"), Some(20));
        assert_eq!(parse_go_duration_ms("1.5s"), Some(1_500));
        assert_eq!(parse_go_duration_ms("7"), Some(7_000));
        assert_eq!(parse_go_duration_ms("soon"), None);
        assert_eq!(parse_go_duration_ms(""), None);
    }

    #[test]
    fn cooldown_takes_longest_reset_from_either_provider() {
        let now = crate::clock::parse_rfc3339("2026-01-01T00:00:00Z").unwrap();
        assert_eq!(
            cooldown_from_headers([("Retry-After", "2")], now),
            Some(2_000)
        );
        assert_eq!(
            cooldown_from_headers(
                [
                    ("x-ratelimit-reset-requests", "1s"),
                    ("x-ratelimit-reset-tokens", "6m0s")
                ],
                now
            ),
            Some(360_000)
        );
        assert_eq!(
            cooldown_from_headers(
                [("anthropic-ratelimit-requests-reset", "2026-01-01T00:00:05Z")],
                now
            ),
            Some(5_000)
        );
        assert_eq!(cooldown_from_headers([("content-type", "x")], now), None);
    }

    #[test]
    fn usage_is_read_from_bodies_and_streams() {
        let chat: Value =
            serde_json::from_str(r#"{"usage":{"prompt_tokens":5,"completion_tokens":7}}"#).unwrap();
        assert_eq!(
            usage_from_body(&chat),
            Some(Usage {
                input: 5,
                output: 7
            })
        );
        let mut acc = Usage::default();
        fold_stream_usage(
            &mut acc,
            &serde_json::from_str(
                r#"{"type":"message_start","message":{"usage":{"input_tokens":11,"output_tokens":1}}}"#,
            )
            .unwrap(),
        );
        fold_stream_usage(
            &mut acc,
            &serde_json::from_str(r#"{"type":"message_delta","usage":{"output_tokens":42}}"#)
                .unwrap(),
        );
        assert_eq!(
            acc,
            Usage {
                input: 11,
                output: 42
            }
        );
        let mut r = Usage::default();
        fold_stream_usage(
            &mut r,
            &serde_json::from_str(
                r#"{"type":"response.completed","response":{"usage":{"input_tokens":3,"output_tokens":4}}}"#,
            )
            .unwrap(),
        );
        assert_eq!(
            r,
            Usage {
                input: 3,
                output: 4
            }
        );
    }
}
