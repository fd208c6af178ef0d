//! The proxy function. Wiring only: configuration from the environment, stores, the gateway
//! pipeline (`tollgate-gateway`), then one of two ways to serve it:
//!
//! - **Lambda** (when `AWS_LAMBDA_RUNTIME_API` is set, as in Lambda and `cargo lambda watch`):
//!   response streaming behind API Gateway, through `tollgate-lambda-start`'s supervised
//!   runtime loop (survives Runtime API client errors, answers unreadable events;
//!   `TOLLGATE_LAMBDA_POLLERS` loops per process, 1 unless the local stack sets it).
//! - **Plain HTTP** (`proxy --http ADDR`, or no Lambda runtime): the same pipeline on a TCP
//!   listener with `TCP_NODELAY`. Used by the benchmark and for container platforms.
//!
//! Stores: DynamoDB + Secrets Manager (+ KMS) by default; `TOLLGATE_STORE=memory` with
//! `TOLLGATE_MEMORY_SEED=<json>` serves from memory (benchmarks, demos; nothing persists).
//!
//! JWT callers: the trusted issuers come from `TOLLGATE_ISSUERS_TABLE` (or the memory seed's
//! `issuers`); their JWK Sets and discovery documents are fetched over HTTPS by `HttpJwks`
//! (timeout `TOLLGATE_JWKS_TIMEOUT_MS`). Without an issuers table no issuer is trusted and
//! every JWT is refused as from an unknown issuer.

mod seed;

use axum::extract::ConnectInfo;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tollgate_core::clock::SystemClock;
use tollgate_core::ports::IssuerStore;
use tollgate_gateway::{
    Gateway, GatewayConfig, HttpJwks, IdentityStores, RequestId, SourceIp, StdoutAuditSink, Stores,
    router,
};
use tollgate_lambda_start::env;

/// The stores, and the trusted-issuer store when one is configured.
async fn build_stores() -> Result<(Stores, Option<Arc<dyn IssuerStore>>), String> {
    let store = env::optional("TOLLGATE_STORE").map_err(|e| e.to_string())?;
    match store.as_deref() {
        Some("memory") => {
            let path = env::required("TOLLGATE_MEMORY_SEED")
                .map_err(|e| format!("TOLLGATE_STORE=memory: {e} (a seed JSON file)"))?;
            let store = Arc::new(seed::load(&path).await?);
            let stores = Stores {
                tenants: store.clone(),
                keys: store.clone(),
                pools: store.clone(),
                secrets: store.clone(),
                decrypter: None,
                prices: Some(store.clone()),
                limits: Some(store.clone()),
            };
            Ok((stores, Some(store)))
        }
        Some("aws") | None => {
            let conf = tollgate_lambda_start::aws::sdk_config().await;
            let aws = tollgate_aws::AwsAdapters::from_config(&conf, |k| std::env::var(k).ok())
                .map_err(|e| e.to_string())?;
            let issuers = aws.issuers.clone().map(|s| s as Arc<dyn IssuerStore>);
            let limits = aws.limit_store().map_err(|e| e.to_string())?;
            let stores = Stores {
                // The price table is an item of the limits table.
                prices: Some(limits.clone()),
                limits: Some(limits),
                tenants: aws.dynamo.clone(),
                keys: aws.dynamo.clone(),
                pools: aws.dynamo,
                secrets: aws.secrets,
                decrypter: Some(aws.kms),
            };
            Ok((stores, issuers))
        }
        Some(other) => Err(format!(
            "TOLLGATE_STORE must be aws or memory, not {other:?}"
        )),
    }
}

/// API Gateway's view of the caller and the Lambda request id, as request extensions.
fn lambda_extensions(mut req: lambda_http::Request) -> lambda_http::Request {
    use lambda_http::RequestExt;
    use lambda_http::request::RequestContext;
    let ip = match req.request_context_ref() {
        Some(RequestContext::ApiGatewayV1(c)) => c.identity.source_ip.clone(),
        Some(RequestContext::ApiGatewayV2(c)) => c.http.source_ip.clone(),
        _ => None,
    };
    let ip = ip.and_then(|s| s.parse().ok());
    let id = req.lambda_context_ref().map(|c| c.request_id.clone());
    req.extensions_mut().insert(SourceIp(ip));
    if let Some(id) = id.filter(|s| !s.is_empty()) {
        req.extensions_mut().insert(RequestId(id));
    }
    req
}

async fn run() -> Result<(), String> {
    let cfg = GatewayConfig::from_env().map_err(|e| e.to_string())?;
    // Compile the sensitive-data patterns now: a defect stops the cold start, not a request.
    tollgate_dlp::init().map_err(|e| format!("sensitive-data scanner: {e}"))?;
    let (stores, issuers) = build_stores().await?;
    let identity = match issuers {
        Some(issuers) => Some(IdentityStores {
            issuers,
            jwks: Arc::new(
                HttpJwks::new(Duration::from_millis(cfg.jwks_timeout_ms))
                    .map_err(|e| format!("cannot build the JWKS HTTP client: {e}"))?,
            ),
        }),
        None => {
            tracing::info!(
                "TOLLGATE_ISSUERS_TABLE is not set: no OIDC issuer is trusted, JWT callers are refused"
            );
            None
        }
    };
    let gw = Gateway::with_identity(
        cfg,
        stores,
        identity,
        Arc::new(SystemClock),
        Arc::new(StdoutAuditSink),
    )
    .map_err(|e| format!("cannot build the upstream HTTP client: {e}"))?;
    let app = router(gw);

    let args: Vec<String> = std::env::args().collect();
    let http_addr = args.iter().position(|a| a == "--http").map(|i| {
        args.get(i + 1)
            .cloned()
            .unwrap_or_else(|| "127.0.0.1:8080".into())
    });
    let in_lambda = std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_some();

    if let (None, true) = (&http_addr, in_lambda) {
        let pollers = tollgate_lambda_start::http::pollers_from_env().map_err(|e| e.to_string())?;
        let svc = tower::ServiceBuilder::new()
            .map_request(lambda_extensions)
            .service(app);
        return tollgate_lambda_start::http::serve_streaming(svc, pollers)
            .await
            .map_err(|e| format!("lambda runtime cannot start: {e}"));
    }

    let addr = http_addr
        .or(env::optional("TOLLGATE_HTTP_ADDR").map_err(|e| e.to_string())?)
        .unwrap_or_else(|| "127.0.0.1:8080".into());
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    // One line harnesses can wait for.
    println!("LISTENING http://{local}");
    let app = app.layer(axum::middleware::map_request(
        |ConnectInfo(peer): ConnectInfo<SocketAddr>, mut req: axum::extract::Request| async move {
            req.extensions_mut().insert(SourceIp(Some(peer.ip())));
            req
        },
    ));
    // Nagle plus delayed ACKs would stall small responses by ~40 ms: disable Nagle.
    use axum::serve::ListenerExt;
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await
    .map_err(|e| format!("server stopped: {e}"))
}

#[tokio::main]
async fn main() -> ExitCode {
    tollgate_lambda_start::logging::init();
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "proxy failed to start");
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
