//! Keeps the sample events in `events/` parseable.
//!
//! Every file in `events/` must be `<known prefix>*.json`, and every known prefix has a check
//! here. A new event file with a new prefix fails this test until its check is added, so no
//! sample event can rot unnoticed.
//!
//! `proxy-*.json`: API Gateway REST (payload v1) proxy events. Each one is deserialised the
//! way the Lambda runtime does it (`lambda_http::request::LambdaRequest`), converted into the
//! `http::Request` the proxy's router sees, and checked: REST (v1) request context with a
//! source IP, method, path, a client key, and a JSON body naming a model.
// Test code: a failed unwrap is a failed test (clippy.toml covers #[test] fns, not helpers).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use lambda_http::request::{LambdaRequest, RequestContext};
use lambda_http::{Body, RequestExt};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// File-name prefixes with a check in this file.
/// (`audit-*.json` is checked by functions/audit/tests/events.rs, `rotation-*.json` by
/// functions/rotation/tests/events.rs.)
const KNOWN_PREFIXES: &[&str] = &["proxy-", "audit-", "rotation-"];

fn events_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../events")
        .canonicalize()
        .expect("events/ exists at the repository root")
}

fn event_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(events_dir())
        .expect("read events/")
        .map(|e| e.expect("directory entry").path())
        .collect();
    files.sort();
    files
}

fn file_name(p: &Path) -> &str {
    p.file_name()
        .and_then(|n| n.to_str())
        .expect("UTF-8 file name")
}

#[test]
fn every_event_file_has_a_known_prefix() {
    let unknown: Vec<String> = event_files()
        .iter()
        .map(|p| file_name(p).to_owned())
        .filter(|n| !(n.ends_with(".json") && KNOWN_PREFIXES.iter().any(|k| n.starts_with(k))))
        .collect();
    assert!(
        unknown.is_empty(),
        "events/ holds files no test checks: {unknown:?}. Sample events are named \
         <prefix>*.json with a prefix from {KNOWN_PREFIXES:?}; add a check for a new prefix \
         to functions/proxy/tests/events.rs (or to the owning crate) and list it there."
    );
}

#[test]
fn proxy_events_become_the_requests_the_router_sees() {
    let files: Vec<PathBuf> = event_files()
        .into_iter()
        .filter(|p| file_name(p).starts_with("proxy-") && file_name(p).ends_with(".json"))
        .collect();
    assert!(
        files.len() >= 2,
        "expected the proxy sample events (plain and streaming) in events/, found {files:?}"
    );
    for path in files {
        check_proxy_event(&path);
    }
}

fn check_proxy_event(path: &Path) {
    let name = file_name(path);
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{name}: {e}"));
    let raw: serde_json::Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: not JSON: {e}"));
    let event: LambdaRequest = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{name}: not an API Gateway / ALB event: {e}"));
    let req = lambda_http::Request::from(event);

    // REST API (payload v1) context, with the caller's address from API Gateway itself.
    let ip = match req.request_context_ref() {
        Some(RequestContext::ApiGatewayV1(ctx)) => {
            assert_eq!(
                ctx.stage.as_deref(),
                raw["requestContext"]["stage"].as_str(),
                "{name}: stage"
            );
            ctx.identity
                .source_ip
                .clone()
                .unwrap_or_else(|| panic!("{name}: requestContext.identity.sourceIp missing"))
        }
        other => panic!("{name}: expected an API Gateway REST (v1) request context, got {other:?}"),
    };
    ip.parse::<IpAddr>()
        .unwrap_or_else(|e| panic!("{name}: sourceIp {ip:?} is not an IP address: {e}"));

    // Method and path as the router matches them.
    let method = raw["httpMethod"].as_str().expect("httpMethod");
    assert_eq!(req.method().as_str(), method, "{name}: method");
    let event_path = raw["path"].as_str().expect("path");
    assert!(
        event_path.starts_with("/v1/"),
        "{name}: path {event_path:?} is not a provider route"
    );
    assert_eq!(req.raw_http_path(), event_path, "{name}: raw path");
    // Lambda runs with AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH=true (template.yaml), so the router
    // sees the path without the stage; without it lambda_http prefixes the stage.
    let stage = raw["requestContext"]["stage"].as_str().expect("stage");
    let expected_path = if std::env::var_os("AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH").is_some() {
        event_path.to_owned()
    } else {
        format!("/{stage}{event_path}")
    };
    assert_eq!(req.uri().path(), expected_path, "{name}: URI path");

    // A client key in one of the two places the SDKs put it.
    let bearer = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let x_api_key = req.headers().get("x-api-key").and_then(|v| v.to_str().ok());
    let key = bearer
        .or(x_api_key)
        .unwrap_or_else(|| panic!("{name}: no Authorization: Bearer or x-api-key header"));
    assert!(
        key.starts_with("tgk_test_"),
        "{name}: sample events carry obviously fake tgk_test_ keys, not {key:?}"
    );

    // A non-empty JSON body naming a model; a streaming request asks for SSE.
    let body: &[u8] = match req.body() {
        Body::Text(s) => s.as_bytes(),
        Body::Binary(b) => b,
        Body::Empty => panic!("{name}: empty body"),
        _ => panic!("{name}: unexpected body kind"),
    };
    assert!(!body.is_empty(), "{name}: empty body");
    let json: serde_json::Value =
        serde_json::from_slice(body).unwrap_or_else(|e| panic!("{name}: body is not JSON: {e}"));
    assert!(
        json["model"].as_str().is_some_and(|m| !m.is_empty()),
        "{name}: body names no model"
    );
    if json["stream"] == serde_json::Value::Bool(true) {
        let accept = req
            .headers()
            .get(http::header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        assert!(
            accept.contains("text/event-stream"),
            "{name}: a streaming request should send Accept: text/event-stream"
        );
    }
}
