//! Black-box tests: the router on an ephemeral port, driven by a plain hyper client.
// Test code: a failed unwrap is a failed test (clippy.toml covers #[test] fns, not helpers).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::HeaderMap;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tollgate_mock_provider::{Config, REPLY_PREFIX, serve};

async fn start(cfg: Config) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve(listener, cfg));
    addr
}

struct Resp {
    status: u16,
    headers: HeaderMap,
    body: Vec<u8>,
    /// Set when the body ended with an error (connection aborted mid-stream).
    body_error: Option<String>,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
    fn text(&self) -> String {
        String::from_utf8(self.body.clone()).unwrap()
    }
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }
}

async fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> Resp {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let payload = body.map(|b| b.to_string()).unwrap_or_default();
    if !payload.is_empty() {
        req = req.header("content-type", "application/json");
    }
    let resp = sender
        .send_request(req.body(Full::new(Bytes::from(payload))).unwrap())
        .await
        .unwrap();
    let (parts, mut body) = resp.into_parts();
    let mut buf = Vec::new();
    let mut body_error = None;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(f) => {
                if let Ok(d) = f.into_data() {
                    buf.extend_from_slice(&d);
                }
            }
            Err(e) => {
                body_error = Some(e.to_string());
                break;
            }
        }
    }
    Resp {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body: buf,
        body_error,
    }
}

fn openai(token: &str) -> String {
    format!("Bearer {token}")
}

async fn post_openai(addr: SocketAddr, path: &str, token: &str, body: Value) -> Resp {
    let auth = openai(token);
    send(addr, "POST", path, &[("authorization", &auth)], Some(body)).await
}

async fn post_anthropic(addr: SocketAddr, path: &str, token: &str, body: Value) -> Resp {
    send(
        addr,
        "POST",
        path,
        &[("x-api-key", token), ("anthropic-version", "2023-06-01")],
        Some(body),
    )
    .await
}

fn chat_body(stream: bool) -> Value {
    json!({
        "model": "gpt-4o-mini",
        "stream": stream,
        "messages": [
            { "role": "system", "content": "be brief" },
            { "role": "user", "content": "ping from test" }
        ]
    })
}

fn anthropic_body(stream: bool) -> Value {
    json!({
        "model": "claude-sonnet-4-5",
        "max_tokens": 64,
        "stream": stream,
        "messages": [{ "role": "user", "content": [{ "type": "text", "text": "hi claude" }] }]
    })
}

/// `data:` payloads of an SSE body, in order.
fn sse_data(body: &str) -> Vec<String> {
    body.split("\n\n")
        .filter_map(|ev| {
            ev.lines()
                .find_map(|l| l.strip_prefix("data: ").map(str::to_owned))
        })
        .collect()
}

/// `event:` names of an SSE body, in order.
fn sse_events(body: &str) -> Vec<String> {
    body.split("\n\n")
        .filter_map(|ev| {
            ev.lines()
                .find_map(|l| l.strip_prefix("event: ").map(str::to_owned))
        })
        .collect()
}

#[tokio::test]
async fn openai_chat_non_stream_returns_chat_completion_echoing_model_and_user_text() {
    let addr = start(Config::default()).await;
    let r = post_openai(addr, "/v1/chat/completions", "mock-ok", chat_body(false)).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let v = r.json();
    assert!(v["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(v["object"], "chat.completion");
    assert!(v["created"].is_u64());
    assert_eq!(v["model"], "gpt-4o-mini");
    assert_eq!(v["choices"][0]["index"], 0);
    assert_eq!(v["choices"][0]["message"]["role"], "assistant");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    let content = v["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(content.starts_with(REPLY_PREFIX));
    assert!(content.ends_with("ping from test"));
    let u = &v["usage"];
    assert_eq!(
        u["total_tokens"].as_u64().unwrap(),
        u["prompt_tokens"].as_u64().unwrap() + u["completion_tokens"].as_u64().unwrap()
    );
}

#[tokio::test]
async fn openai_chat_stream_sends_role_content_finish_usage_then_done() {
    let addr = start(Config::default()).await;
    let mut body = chat_body(true);
    body["stream_options"] = json!({ "include_usage": true });
    let r = post_openai(addr, "/v1/chat/completions", "mock-ok", body).await;
    assert_eq!(r.status, 200);
    assert!(r.body_error.is_none());
    assert!(
        r.header("content-type")
            .unwrap()
            .starts_with("text/event-stream")
    );
    let data = sse_data(&r.text());
    assert_eq!(data.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    assert!(
        chunks
            .iter()
            .all(|c| c["object"] == "chat.completion.chunk")
    );
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert!(text.starts_with(REPLY_PREFIX) && text.ends_with("ping from test"));
    assert!(chunks.len() > 4, "several content deltas expected");
    let n = chunks.len();
    assert_eq!(chunks[n - 2]["choices"][0]["finish_reason"], "stop");
    assert_eq!(chunks[n - 1]["choices"], json!([]));
    assert!(chunks[n - 1]["usage"]["total_tokens"].as_u64().unwrap() > 0);
}

#[tokio::test]
async fn openai_chat_stream_without_include_usage_has_no_usage_chunk() {
    let addr = start(Config::default()).await;
    let r = post_openai(addr, "/v1/chat/completions", "mock-ok", chat_body(true)).await;
    let data = sse_data(&r.text());
    assert_eq!(data.last().unwrap(), "[DONE]");
    let last: Value = serde_json::from_str(&data[data.len() - 2]).unwrap();
    assert_eq!(last["choices"][0]["finish_reason"], "stop");
    assert!(last.get("usage").is_none());
}

#[tokio::test]
async fn openai_completions_stream_and_non_stream() {
    let addr = start(Config::default()).await;
    let body = json!({ "model": "gpt-3.5-turbo-instruct", "prompt": "say hi" });
    let v = post_openai(addr, "/v1/completions", "mock-ok", body.clone())
        .await
        .json();
    assert_eq!(v["object"], "text_completion");
    assert!(
        v["choices"][0]["text"]
            .as_str()
            .unwrap()
            .ends_with("say hi")
    );
    let mut sbody = body;
    sbody["stream"] = json!(true);
    let r = post_openai(addr, "/v1/completions", "mock-ok", sbody).await;
    let data = sse_data(&r.text());
    assert_eq!(data.last().unwrap(), "[DONE]");
    let first: Value = serde_json::from_str(&data[0]).unwrap();
    assert_eq!(first["object"], "text_completion");
}

#[tokio::test]
async fn openai_embeddings_return_deterministic_vectors_as_floats_or_base64() {
    let addr = start(Config::default()).await;
    let body = json!({ "model": "text-embedding-3-small", "input": ["a", "b"], "encoding_format": "float" });
    let v1 = post_openai(addr, "/v1/embeddings", "mock-ok", body.clone())
        .await
        .json();
    let v2 = post_openai(addr, "/v1/embeddings", "mock-ok", body)
        .await
        .json();
    assert_eq!(v1["object"], "list");
    assert_eq!(v1["data"].as_array().unwrap().len(), 2);
    assert_eq!(v1["data"][1]["index"], 1);
    assert_eq!(v1["data"][0]["object"], "embedding");
    assert_eq!(v1["data"], v2["data"]);
    assert!(v1["usage"]["prompt_tokens"].as_u64().unwrap() >= 2);
    let b = post_openai(
        addr,
        "/v1/embeddings",
        "mock-ok",
        json!({ "model": "m", "input": "a", "encoding_format": "base64" }),
    )
    .await
    .json();
    // 8 float32 = 32 bytes = 44 base64 chars.
    assert_eq!(b["data"][0]["embedding"].as_str().unwrap().len(), 44);
}

#[tokio::test]
async fn openai_responses_non_stream_and_stream_shapes() {
    let addr = start(Config::default()).await;
    let body = json!({ "model": "gpt-4.1-mini", "input": "tell me" });
    let v = post_openai(addr, "/v1/responses", "mock-ok", body.clone())
        .await
        .json();
    assert!(v["id"].as_str().unwrap().starts_with("resp_"));
    assert_eq!(v["object"], "response");
    assert_eq!(v["status"], "completed");
    assert_eq!(v["output"][0]["type"], "message");
    assert_eq!(v["output"][0]["role"], "assistant");
    assert_eq!(v["output"][0]["content"][0]["type"], "output_text");
    assert!(
        v["output"][0]["content"][0]["text"]
            .as_str()
            .unwrap()
            .ends_with("tell me")
    );
    assert!(v["usage"]["total_tokens"].as_u64().unwrap() > 0);

    let mut sbody = body;
    sbody["stream"] = json!(true);
    let r = post_openai(addr, "/v1/responses", "mock-ok", sbody).await;
    let text = r.text();
    let names = sse_events(&text);
    assert_eq!(names.first().unwrap(), "response.created");
    assert_eq!(names.last().unwrap(), "response.completed");
    assert!(names.iter().any(|n| n == "response.output_text.delta"));
    for (name, data) in names.iter().zip(sse_data(&text)) {
        let d: Value = serde_json::from_str(&data).unwrap();
        assert_eq!(&d["type"], name.as_str());
    }
}

#[tokio::test]
async fn openai_models_lists_models() {
    let addr = start(Config::default()).await;
    let auth = openai("mock-ok");
    let r = send(addr, "GET", "/v1/models", &[("authorization", &auth)], None).await;
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(v["object"], "list");
    assert_eq!(v["data"][0]["object"], "model");
}

#[tokio::test]
async fn anthropic_messages_non_stream_shape() {
    let addr = start(Config::default()).await;
    let r = post_anthropic(addr, "/v1/messages", "mock-ok", anthropic_body(false)).await;
    assert_eq!(r.status, 200);
    let v = r.json();
    assert!(v["id"].as_str().unwrap().starts_with("msg_"));
    assert_eq!(v["type"], "message");
    assert_eq!(v["role"], "assistant");
    assert_eq!(v["model"], "claude-sonnet-4-5");
    assert_eq!(v["content"][0]["type"], "text");
    assert!(
        v["content"][0]["text"]
            .as_str()
            .unwrap()
            .ends_with("hi claude")
    );
    assert_eq!(v["stop_reason"], "end_turn");
    assert_eq!(v["stop_sequence"], Value::Null);
    assert!(v["usage"]["input_tokens"].as_u64().unwrap() > 0);
    assert!(v["usage"]["output_tokens"].as_u64().unwrap() > 0);
}

#[tokio::test]
async fn anthropic_stream_emits_events_in_real_order() {
    let addr = start(Config::default()).await;
    let r = post_anthropic(addr, "/v1/messages", "mock-ok", anthropic_body(true)).await;
    assert_eq!(r.status, 200);
    assert!(r.body_error.is_none());
    let text = r.text();
    let names = sse_events(&text);
    let n = names.len();
    assert_eq!(names[..3], ["message_start", "content_block_start", "ping"]);
    assert!(names[3..n - 3].iter().all(|e| e == "content_block_delta"));
    assert!(n - 6 >= 3, "several deltas expected");
    assert_eq!(
        names[n - 3..],
        ["content_block_stop", "message_delta", "message_stop"]
    );
    let data: Vec<Value> = sse_data(&text)
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    for (name, d) in names.iter().zip(&data) {
        assert_eq!(&d["type"], name.as_str());
    }
    assert!(
        data[0]["message"]["usage"]["input_tokens"]
            .as_u64()
            .unwrap()
            > 0
    );
    let streamed: String = data
        .iter()
        .filter_map(|d| d["delta"]["text"].as_str())
        .collect();
    assert!(streamed.starts_with(REPLY_PREFIX) && streamed.ends_with("hi claude"));
    assert_eq!(data[n - 2]["delta"]["stop_reason"], "end_turn");
    assert!(data[n - 2]["usage"]["output_tokens"].as_u64().unwrap() > 0);
}

#[tokio::test]
async fn anthropic_count_tokens_returns_input_tokens() {
    let addr = start(Config::default()).await;
    let r = post_anthropic(
        addr,
        "/v1/messages/count_tokens",
        "mock-ok",
        json!({ "model": "m", "messages": [{ "role": "user", "content": "12345678" }] }),
    )
    .await;
    assert_eq!(r.json(), json!({ "input_tokens": 2 }));
}

#[tokio::test]
async fn missing_or_non_mock_token_is_401_in_each_provider_shape() {
    let addr = start(Config::default()).await;
    for headers in [vec![], vec![("authorization", "Bearer sk-real")]] {
        let r = send(
            addr,
            "POST",
            "/v1/chat/completions",
            &headers,
            Some(chat_body(false)),
        )
        .await;
        assert_eq!(r.status, 401);
        let v = r.json();
        assert_eq!(v["error"]["type"], "invalid_request_error");
        assert_eq!(v["error"]["code"], "invalid_api_key");
        assert_eq!(v["error"]["param"], Value::Null);
    }
    let r = post_anthropic(addr, "/v1/messages", "sk-ant-real", anthropic_body(false)).await;
    assert_eq!(r.status, 401);
    let v = r.json();
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], "authentication_error");
    let r = send(
        addr,
        "POST",
        "/v1/messages",
        &[("anthropic-version", "2023-06-01")],
        Some(anthropic_body(false)),
    )
    .await;
    assert_eq!(r.status, 401);
}

#[tokio::test]
async fn mock_401_and_403_tokens_fail_with_provider_errors() {
    let addr = start(Config::default()).await;
    let r = post_openai(addr, "/v1/chat/completions", "mock-401-a", chat_body(false)).await;
    assert_eq!(r.status, 401);
    let r = post_openai(addr, "/v1/chat/completions", "mock-403-a", chat_body(false)).await;
    assert_eq!(r.status, 403);
    let r = post_anthropic(addr, "/v1/messages", "mock-403", anthropic_body(false)).await;
    assert_eq!(r.status, 403);
    assert_eq!(r.json()["error"]["type"], "permission_error");
}

#[tokio::test]
async fn anthropic_accepts_bearer_token_like_anthropic_python_2x_sends() {
    let addr = start(Config::default()).await;
    let r = send(
        addr,
        "POST",
        "/v1/messages",
        &[
            ("authorization", "Bearer mock-ok-bearer"),
            ("anthropic-version", "2023-06-01"),
        ],
        Some(anthropic_body(false)),
    )
    .await;
    assert_eq!(r.status, 200);
    let calls = send(addr, "GET", "/_mock/calls", &[], None).await.json();
    assert_eq!(calls[0]["token"], "mock-ok-bearer");
}

#[tokio::test]
async fn anthropic_without_version_header_is_400() {
    let addr = start(Config::default()).await;
    let r = send(
        addr,
        "POST",
        "/v1/messages",
        &[("x-api-key", "mock-ok")],
        Some(anthropic_body(false)),
    )
    .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["type"], "invalid_request_error");
}

#[tokio::test]
async fn mock_429_sets_retry_after_and_provider_reset_headers() {
    let addr = start(Config::default()).await;
    let r = post_openai(addr, "/v1/chat/completions", "mock-429-x", chat_body(false)).await;
    assert_eq!(r.status, 429);
    assert_eq!(r.header("retry-after"), Some("2"));
    assert_eq!(r.header("x-ratelimit-reset-requests"), Some("2s"));
    assert_eq!(r.header("x-ratelimit-remaining-requests"), Some("0"));
    assert_eq!(r.json()["error"]["code"], "rate_limit_exceeded");

    let r = post_anthropic(addr, "/v1/messages", "mock-429", anthropic_body(false)).await;
    assert_eq!(r.status, 429);
    assert_eq!(r.header("retry-after"), Some("2"));
    let reset = r.header("anthropic-ratelimit-requests-reset").unwrap();
    // RFC 3339, UTC: 2025-01-02T03:04:05Z
    assert_eq!(reset.len(), 20, "{reset}");
    assert!(reset.ends_with('Z') && &reset[10..11] == "T", "{reset}");
    assert_eq!(r.json()["error"]["type"], "rate_limit_error");
}

#[tokio::test]
async fn mock_500_and_503_map_to_server_and_overloaded_errors() {
    let addr = start(Config::default()).await;
    let r = post_openai(addr, "/v1/chat/completions", "mock-500", chat_body(false)).await;
    assert_eq!(r.status, 500);
    assert_eq!(r.json()["error"]["type"], "server_error");
    let r = post_openai(addr, "/v1/chat/completions", "mock-503", chat_body(false)).await;
    assert_eq!(r.status, 503);
    let r = post_anthropic(addr, "/v1/messages", "mock-500", anthropic_body(false)).await;
    assert_eq!(r.status, 500);
    assert_eq!(r.json()["error"]["type"], "api_error");
    let r = post_anthropic(addr, "/v1/messages", "mock-503", anthropic_body(true)).await;
    assert_eq!(r.status, 529);
    assert_eq!(r.json()["error"]["type"], "overloaded_error");
}

#[tokio::test]
async fn break3_stream_sends_three_chunks_then_aborts_without_done() {
    let addr = start(Config::default()).await;
    let r = post_openai(
        addr,
        "/v1/chat/completions",
        "mock-break3-x",
        chat_body(true),
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(r.body_error.is_some(), "client must see an incomplete body");
    let data = sse_data(&r.text());
    assert_eq!(data.len(), 3, "{}", r.text());
    assert!(!data.iter().any(|d| d == "[DONE]"));

    let r = post_anthropic(addr, "/v1/messages", "mock-break3", anthropic_body(true)).await;
    assert!(r.body_error.is_some());
    let names = sse_events(&r.text());
    assert_eq!(names, ["message_start", "content_block_start", "ping"]);
}

#[tokio::test]
async fn pace_stream_spreads_the_events_over_time_and_keeps_them_whole() {
    let addr = start(Config::default()).await;
    let whole = post_openai(addr, "/v1/chat/completions", "mock-ok", chat_body(true)).await;
    let t0 = Instant::now();
    let r = post_openai(
        addr,
        "/v1/chat/completions",
        "mock-pace20-x",
        chat_body(true),
    )
    .await;
    let took = t0.elapsed();
    assert_eq!(r.status, 200);
    assert!(r.body_error.is_none());
    let data = sse_data(&r.text());
    assert_eq!(data.len(), sse_data(&whole.text()).len());
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    // n events, the last one (n - 1) x 20 ms after the first.
    let floor = Duration::from_millis(20 * (data.len() as u64 - 1));
    assert!(took >= floor, "{took:?} < {floor:?}");
    let r = post_openai(
        addr,
        "/v1/chat/completions",
        "mock-pace20",
        chat_body(false),
    )
    .await;
    assert_eq!(r.json()["object"], "chat.completion");
}

#[tokio::test]
async fn break_token_without_stream_answers_normally() {
    let addr = start(Config::default()).await;
    let r = post_openai(
        addr,
        "/v1/chat/completions",
        "mock-break3",
        chat_body(false),
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(r.body_error.is_none());
    assert_eq!(r.json()["object"], "chat.completion");
}

#[tokio::test]
async fn flaky2_fails_twice_per_token_then_succeeds() {
    let addr = start(Config::default()).await;
    let mut statuses = vec![];
    for _ in 0..4 {
        statuses.push(
            post_openai(
                addr,
                "/v1/chat/completions",
                "mock-flaky2-a",
                chat_body(false),
            )
            .await
            .status,
        );
    }
    assert_eq!(statuses, [500, 500, 200, 200]);
    // The counter is per token value.
    let r = post_openai(
        addr,
        "/v1/chat/completions",
        "mock-flaky2-b",
        chat_body(false),
    )
    .await;
    assert_eq!(r.status, 500);
}

#[tokio::test]
async fn stall_token_waits_before_answering() {
    let cfg = Config {
        stall: Duration::from_millis(300),
        ..Config::default()
    };
    let addr = start(cfg).await;
    let t = Instant::now();
    let r = post_openai(addr, "/v1/chat/completions", "mock-stall", chat_body(false)).await;
    assert_eq!(r.status, 200);
    assert!(t.elapsed() >= Duration::from_millis(300));
}

#[tokio::test]
async fn call_log_records_token_headers_and_body_and_delete_clears_it() {
    let addr = start(Config::default()).await;
    post_openai(addr, "/v1/chat/completions", "mock-ok-1", chat_body(false)).await;
    post_anthropic(addr, "/v1/messages", "mock-429", anthropic_body(true)).await;

    let calls = send(addr, "GET", "/_mock/calls", &[], None).await.json();
    let calls = calls.as_array().unwrap();
    assert_eq!(calls.len(), 2);
    let c = &calls[0];
    assert_eq!(c["seq"], 1);
    assert_eq!(c["method"], "POST");
    assert_eq!(c["path"], "/v1/chat/completions");
    assert_eq!(c["token"], "mock-ok-1");
    assert_eq!(c["model"], "gpt-4o-mini");
    assert_eq!(c["stream"], false);
    assert_eq!(c["status"], 200);
    assert_eq!(c["body"]["messages"][1]["content"], "ping from test");
    let names: Vec<&str> = c["headers_seen"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h.as_str().unwrap())
        .collect();
    assert!(names.contains(&"authorization") && names.contains(&"content-type"));
    let a = &calls[1];
    assert_eq!(a["token"], "mock-429");
    assert_eq!(a["status"], 429);
    assert_eq!(a["stream"], true);
    assert!(
        !a["headers_seen"]
            .as_array()
            .unwrap()
            .contains(&json!("authorization"))
    );

    let r = send(addr, "DELETE", "/_mock/calls", &[], None).await;
    assert_eq!(r.status, 204);
    let calls = send(addr, "GET", "/_mock/calls", &[], None).await.json();
    assert_eq!(calls, json!([]));
}

#[tokio::test]
async fn call_log_keeps_only_the_newest_entries_up_to_cap() {
    let cfg = Config {
        log_cap: 3,
        ..Config::default()
    };
    let addr = start(cfg).await;
    for _ in 0..5 {
        post_openai(addr, "/v1/chat/completions", "mock-ok", chat_body(false)).await;
    }
    let calls = send(addr, "GET", "/_mock/calls", &[], None).await.json();
    let seqs: Vec<u64> = calls
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, [3, 4, 5]);
}

#[tokio::test]
async fn no_log_config_records_nothing() {
    let cfg = Config {
        log_calls: false,
        ..Config::default()
    };
    let addr = start(cfg).await;
    post_openai(addr, "/v1/chat/completions", "mock-ok", chat_body(false)).await;
    let calls = send(addr, "GET", "/_mock/calls", &[], None).await.json();
    assert_eq!(calls, json!([]));
}

#[tokio::test]
async fn unknown_path_is_logged_and_404() {
    let addr = start(Config::default()).await;
    let r = post_openai(addr, "/v1/nope", "mock-ok", json!({})).await;
    assert_eq!(r.status, 404);
    let calls = send(addr, "GET", "/_mock/calls", &[], None).await.json();
    assert_eq!(calls[0]["path"], "/v1/nope");
    assert_eq!(calls[0]["status"], 404);
}

#[tokio::test]
async fn health_is_ok() {
    let addr = start(Config::default()).await;
    let r = send(addr, "GET", "/_mock/health", &[], None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "ok");
}

#[tokio::test]
async fn binary_prints_listening_line_then_serves() {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_mock-provider"))
        .args(["--addr", "127.0.0.1:0", "--no-log"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .await
        .unwrap();
    let url = line
        .trim_end()
        .strip_prefix("LISTENING http://")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
    let addr: SocketAddr = url.parse().unwrap();
    assert_ne!(addr.port(), 0);
    let r = send(addr, "GET", "/_mock/health", &[], None).await;
    assert_eq!(r.status, 200);
    child.kill().await.unwrap();
}

#[tokio::test]
async fn slow_requests_are_counted_in_flight_and_the_maximum_resets_with_the_call_log() {
    let addr = start(Config::default()).await;
    let stats = || async move { send(addr, "GET", "/_mock/stats", &[], None).await.json() };
    assert_eq!(stats().await["max_in_flight"], 0);

    let held: Vec<_> = (0..5)
        .map(|i| {
            tokio::spawn(async move {
                post_openai(
                    addr,
                    "/v1/chat/completions",
                    &format!("mock-slow3000-{i}"),
                    chat_body(false),
                )
                .await
            })
        })
        .collect();
    // All five are held by the mock at once (the deadline only detects a lost request).
    let deadline = Instant::now() + Duration::from_secs(20);
    while stats().await["in_flight"] != 5 {
        assert!(
            Instant::now() < deadline,
            "never 5 in flight: {}",
            stats().await
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for h in held {
        let r = h.await.unwrap();
        assert_eq!(r.status, 200, "a slow request answers normally");
        assert_eq!(r.json()["object"], "chat.completion");
    }
    let s = stats().await;
    assert_eq!(
        (&s["in_flight"], &s["max_in_flight"], &s["requests"]),
        (&json!(0), &json!(5), &json!(5)),
        "{s}"
    );

    assert_eq!(
        send(addr, "DELETE", "/_mock/calls", &[], None).await.status,
        204
    );
    for _ in 0..2 {
        post_openai(addr, "/v1/chat/completions", "mock-ok", chat_body(false)).await;
    }
    let s = stats().await;
    assert_eq!(
        (&s["max_in_flight"], &s["requests"]),
        (&json!(1), &json!(2)),
        "{s}"
    );
}
