//! The supervised runtime loop against a fake Lambda Runtime API that drops the first
//! connection mid-request (what `cargo lambda watch` does to a pooled keep-alive connection
//! when a caller hangs up early: the runtime client sees `hyper::Error(IncompleteMessage)`),
//! then sends an event `lambda_http` cannot read, then a well-formed one.
//!
//! Before `serve_streaming`, the first failure ended the process (`lambda runtime stopped:
//! client error (SendRequest)`) and the unreadable event went to `/error` without reaching
//! the handler.

// Test code: a failed unwrap is a failed test (clippy.toml covers #[test] fns, not helpers).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::routing::{get, post};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// Drops the first accepted connection once the request head has arrived.
struct DropFirst {
    inner: TcpListener,
    dropped: bool,
}

impl axum::serve::Listener for DropFirst {
    type Io = TcpStream;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (TcpStream, std::net::SocketAddr) {
        loop {
            let Ok((mut s, a)) = self.inner.accept().await else {
                continue;
            };
            if self.dropped {
                return (s, a);
            }
            self.dropped = true;
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            drop(s);
        }
    }

    fn local_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.inner.local_addr()
    }
}

#[derive(Clone)]
struct Fake {
    events: Arc<Mutex<VecDeque<(String, String)>>>,
    outcomes: mpsc::UnboundedSender<(String, String, Bytes)>,
}

async fn next(State(f): State<Fake>) -> axum::response::Response {
    let ev = f.events.lock().unwrap().pop_front();
    let Some((id, body)) = ev else {
        // Nothing left: long-poll for good, as the real API does when idle.
        std::future::pending::<()>().await;
        unreachable!()
    };
    axum::response::Response::builder()
        .header("lambda-runtime-aws-request-id", id)
        .header("lambda-runtime-deadline-ms", "9999999999999")
        .header(
            "lambda-runtime-invoked-function-arn",
            "arn:aws:lambda:us-east-1:0:function:t",
        )
        .header("content-type", "application/json")
        .body(axum::body::Body::from(body))
        .unwrap()
}

async fn outcome(
    State(f): State<Fake>,
    Path((id, kind)): Path<(String, String)>,
    body: Bytes,
) -> &'static str {
    let _ = f.outcomes.send((id, kind, body));
    ""
}

const GOOD: &str = r#"{"version":"2.0","routeKey":"$default","rawPath":"/hello","rawQueryString":"","headers":{"host":"localhost"},"requestContext":{"http":{"method":"GET","path":"/hello","protocol":"HTTP/1.1","sourceIp":"127.0.0.1","userAgent":"t"},"requestId":"r","routeKey":"$default","stage":"$default","time":"x","timeEpoch":0},"isBase64Encoded":false}"#;
// No requestContext: lambda_http 1.3 matches none of its event types (see the unit test
// `an_event_without_request_context_is_unreadable_but_keeps_method_and_path`).
const UNREADABLE: &str =
    r#"{"path":"/v1/chat/completions","httpMethod":"POST","body":"/w==","isBase64Encoded":true}"#;

/// The Lambda runtime reads its settings from the environment. Setting variables in a
/// running process needs `unsafe` (forbidden in this workspace), so the test re-runs itself
/// as a child process with the environment of a Lambda sandbox pointing at the fake API.
#[test]
fn runtime_loop_survives_a_dropped_runtime_api_connection_and_answers_unreadable_events() {
    const NAME: &str =
        "runtime_loop_survives_a_dropped_runtime_api_connection_and_answers_unreadable_events";
    if let Ok(addr) = std::env::var("AWS_LAMBDA_RUNTIME_API") {
        return in_sandbox(&addr);
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", NAME, "--nocapture", "--test-threads", "1"])
        .env("AWS_LAMBDA_RUNTIME_API", format!("127.0.0.1:{port}"))
        .env("AWS_LAMBDA_FUNCTION_NAME", "t")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("1 passed"),
        "child run failed:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn in_sandbox(addr: &str) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let std_listener = std::net::TcpListener::bind(addr).unwrap();
    rt.block_on(async move {
        std_listener.set_nonblocking(true).unwrap();
        let inner = TcpListener::from_std(std_listener).unwrap();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let fake = Fake {
            events: Arc::new(Mutex::new(VecDeque::from([
                ("unreadable-1".to_owned(), UNREADABLE.to_owned()),
                ("good-2".to_owned(), GOOD.to_owned()),
            ]))),
            outcomes: tx,
        };
        let app = axum::Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route("/2018-06-01/runtime/invocation/{id}/{kind}", post(outcome))
            .with_state(fake);
        tokio::spawn(async move {
            axum::serve(
                DropFirst {
                    inner,
                    dropped: false,
                },
                app,
            )
            .await
            .unwrap();
        });

        // The handler echoes what it was asked: method, path and body length.
        let echo = tower::ServiceBuilder::new()
            .map_request(|req: lambda_http::Request| {
                let line = format!("{} {}", req.method(), req.uri().path());
                let (mut parts, body) = req.into_parts();
                parts.headers.insert("x-line", line.parse().unwrap());
                lambda_http::Request::from_parts(parts, body)
            })
            .service(axum::Router::new().fallback(
                |headers: http::HeaderMap, body: Bytes| async move {
                    format!(
                        "{} body={}",
                        headers["x-line"].to_str().unwrap(),
                        body.len()
                    )
                },
            ));
        tokio::spawn(tollgate_lambda_start::http::serve_streaming(echo, 1));

        let mut got = Vec::new();
        while got.len() < 2 {
            // Loss detection only: a lost invocation never gets an outcome.
            let o = tokio::time::timeout(Duration::from_secs(30), rx.recv())
                .await
                .expect("an invocation got no outcome: the runtime loop did not survive")
                .unwrap();
            got.push(o);
        }
        let text = |b: &Bytes| String::from_utf8_lossy(b).into_owned();
        assert_eq!(got[0].0, "unreadable-1");
        assert_eq!(
            got[0].1,
            "response",
            "unreadable event went to /error: {}",
            text(&got[0].2)
        );
        assert!(
            text(&got[0].2).contains("POST /v1/chat/completions body=1"),
            "{}",
            text(&got[0].2)
        );
        assert_eq!(got[1].0, "good-2");
        assert_eq!(got[1].1, "response");
        assert!(
            text(&got[1].2).contains("GET /hello body=0"),
            "{}",
            text(&got[1].2)
        );
    });
}
