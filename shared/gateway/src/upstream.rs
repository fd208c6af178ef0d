//! The HTTP client for every call the gateway makes: providers (the request path), token
//! exchanges and JWK Sets. A pooled `hyper` 1 client (`hyper-util`'s legacy `Client`): HTTPS
//! through rustls with Mozilla's root certificates bundled in the binary (`webpki-roots`, the
//! roots reqwest's `rustls-tls` feature used before; no system store is read), HTTP/2 when
//! the server offers it by ALPN, else HTTP/1.1; plain HTTP for loopback mocks. No redirect is
//! followed and no proxy is read from the environment. Bodies stream both ways: a request
//! body is one buffer, a response body is hyper's `Incoming`, read whole or relayed as it
//! arrives.
//!
//! **One pool per thread under current-thread runtimes.** hyper-util spawns each connection's
//! task on the runtime that opened it. When the proxy serves from several threads, each with
//! its own current-thread runtime (`proxy --http`, see `tollgate-lambda-start`'s `plain`), a
//! shared pool would hand a connection whose task lives on thread A to a request on thread B:
//! every such request then wakes both threads. Under a current-thread runtime, a client
//! therefore keeps one pool per thread (built on first use, same settings); under a
//! multi-thread runtime, whose tasks move between workers anyway, it keeps one shared pool.

use bytes::Bytes;
use http::header::{ACCEPT, USER_AGENT};
use http::{HeaderValue, Request, Response, Uri};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use std::cell::RefCell;
use std::error::Error as StdError;
use std::sync::{Arc, Weak};
use std::time::Duration;

/// A request body: one buffer (requests are read whole before they are forwarded).
pub type ReqBody = Full<Bytes>;

const UA: &str = concat!("tollgate/", env!("CARGO_PKG_VERSION"));

/// Pool and socket settings (the values the reqwest client had).
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);
const POOL_MAX_IDLE_PER_HOST: usize = 256;
const TCP_KEEPALIVE: Duration = Duration::from_secs(15);
const TCP_KEEPALIVE_RETRIES: u32 = 3;

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
}

/// Why a call produced no response (head or body).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// No answer in time: a connect timeout, or a deadline passed.
    #[error("timed out")]
    TimedOut,
    /// The connection could not be made (refused, DNS, TLS handshake).
    #[error("connection failed")]
    Connect,
    /// Anything else: the connection broke, the answer was not HTTP, the URL is unusable.
    #[error("request failed")]
    Failed,
}

impl CallError {
    fn of(e: &hyper_util::client::legacy::Error) -> Self {
        if timed_out(e) {
            Self::TimedOut
        } else if e.is_connect() {
            Self::Connect
        } else {
            Self::Failed
        }
    }
}

/// Whether an error or any of its causes is a timeout (a connect timeout arrives as an
/// `io::Error` of kind `TimedOut` under hyper-util's connect error).
fn timed_out(e: &(dyn StdError + 'static)) -> bool {
    let mut next = Some(e);
    while let Some(err) = next {
        if let Some(h) = err.downcast_ref::<hyper::Error>()
            && h.is_timeout()
        {
            return true;
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::TimedOut
        {
            return true;
        }
        next = err.source();
    }
    false
}

type Pool = Client<HttpsConnector<HttpConnector>, ReqBody>;

/// Which [`HttpClient`] a thread's pool belongs to (compared by address while it lives).
struct Identity;

thread_local! {
    /// This thread's pools, one per live [`HttpClient`] used here under a current-thread
    /// runtime. Entries of dropped clients are pruned when a new one is added.
    static THREAD_POOLS: RefCell<Vec<(Weak<Identity>, Pool)>> = const { RefCell::new(Vec::new()) };
}

/// A cheap-to-clone handle on a connection pool (one shared, or one per thread: see the
/// module doc).
#[derive(Clone)]
pub struct HttpClient {
    shared: Pool,
    connector: HttpsConnector<HttpConnector>,
    id: Arc<Identity>,
}

fn pool(connector: HttpsConnector<HttpConnector>) -> Pool {
    Client::builder(TokioExecutor::new())
        .timer(TokioTimer::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(POOL_IDLE_TIMEOUT)
        .pool_max_idle_per_host(POOL_MAX_IDLE_PER_HOST)
        .build(connector)
}

impl HttpClient {
    /// A client whose connections must be made within `connect_timeout`.
    pub fn new(connect_timeout: Duration) -> Result<Self, BuildError> {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(connect_timeout));
        http.set_keepalive(Some(TCP_KEEPALIVE));
        http.set_keepalive_interval(Some(TCP_KEEPALIVE));
        http.set_keepalive_retries(Some(TCP_KEEPALIVE_RETRIES));
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let https = HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http);
        Ok(Self {
            shared: pool(https.clone()),
            connector: https,
            id: Arc::new(Identity),
        })
    }

    /// Starts `req` on this thread's pool under a current-thread runtime, else on the shared
    /// one.
    fn start(&self, req: Request<ReqBody>) -> hyper_util::client::legacy::ResponseFuture {
        let current_thread = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::CurrentThread);
        if !current_thread {
            return self.shared.request(req);
        }
        THREAD_POOLS.with_borrow_mut(|pools| {
            let mine = Arc::as_ptr(&self.id);
            // A live entry at the same address is this client (a dead one may share a reused
            // address: it is skipped, then pruned).
            let found = pools
                .iter()
                .find(|(id, _)| id.strong_count() > 0 && std::ptr::eq(id.as_ptr(), mine));
            if let Some((_, p)) = found {
                return p.request(req);
            }
            pools.retain(|(id, _)| id.strong_count() > 0);
            let p = pool(self.connector.clone());
            let fut = p.request(req);
            pools.push((Arc::downgrade(&self.id), p));
            fut
        })
    }

    /// Sends `req` (an absolute URI) and waits for the response head. The gateway's
    /// `User-Agent` and `Accept: */*` are added when the request has none.
    pub async fn send(&self, mut req: Request<ReqBody>) -> Result<Response<Incoming>, CallError> {
        let h = req.headers_mut();
        if !h.contains_key(USER_AGENT) {
            h.insert(USER_AGENT, HeaderValue::from_static(UA));
        }
        if !h.contains_key(ACCEPT) {
            h.insert(ACCEPT, HeaderValue::from_static("*/*"));
        }
        self.start(req).await.map_err(|e| CallError::of(&e))
    }

    /// Sends `req` and reads the whole answer, at most `limit` bytes, all within `timeout`.
    pub async fn fetch(
        &self,
        req: Request<ReqBody>,
        limit: usize,
        timeout: Duration,
    ) -> Result<(http::StatusCode, Bytes), FetchError> {
        let call = async {
            let resp = self.send(req).await.map_err(FetchError::Call)?;
            let status = resp.status();
            let body = http_body_util::Limited::new(resp.into_body(), limit)
                .collect()
                .await
                .map_err(|e| {
                    if e.is::<http_body_util::LengthLimitError>() {
                        FetchError::TooLarge
                    } else {
                        FetchError::Body
                    }
                })?
                .to_bytes();
            Ok((status, body))
        };
        tokio::time::timeout(timeout, call)
            .await
            .unwrap_or(Err(FetchError::Call(CallError::TimedOut)))
    }
}

/// Why [`HttpClient::fetch`] got no whole answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    #[error("{0}")]
    Call(CallError),
    #[error("the body broke off")]
    Body,
    #[error("the answer is larger than allowed")]
    TooLarge,
}

/// `url` as a request URI, if it is an absolute `http` or `https` URL.
pub fn absolute_uri(url: &str) -> Option<Uri> {
    let uri: Uri = url.parse().ok()?;
    match (uri.scheme_str(), uri.authority()) {
        (Some("http" | "https"), Some(_)) => Some(uri),
        _ => None,
    }
}

/// Reads a whole response body (no size limit: provider answers are bounded by the provider).
pub async fn read_all(body: Incoming) -> Result<Bytes, hyper::Error> {
    Ok(body.collect().await?.to_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Wrapped(std::io::Error);
    impl std::fmt::Display for Wrapped {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("connect error")
        }
    }
    impl StdError for Wrapped {
        fn source(&self) -> Option<&(dyn StdError + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn a_timeout_anywhere_in_the_cause_chain_is_a_timeout() {
        let t = Wrapped(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "connect timeout",
        ));
        assert!(timed_out(&t));
        let r = Wrapped(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "refused",
        ));
        assert!(!timed_out(&r));
    }

    #[test]
    fn only_absolute_http_urls_are_request_uris() {
        assert!(absolute_uri("https://api.openai.com/v1/chat/completions").is_some());
        assert!(absolute_uri("http://127.0.0.1:9/v1/messages").is_some());
        assert!(absolute_uri("/v1/chat/completions").is_none());
        assert!(absolute_uri("ftp://example.test/x").is_none());
        assert!(absolute_uri("not a url").is_none());
    }

    #[tokio::test]
    async fn a_refused_connection_is_a_connect_error_and_the_client_builds() {
        let client = HttpClient::new(Duration::from_secs(1)).unwrap();
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            format!("http://{}/", l.local_addr().unwrap())
        };
        let req = Request::get(closed).body(ReqBody::default()).unwrap();
        assert_eq!(client.send(req).await.unwrap_err(), CallError::Connect);
    }

    /// A server answering each request with the client port of its connection, and the
    /// client's URL for it.
    fn port_echo() -> String {
        use axum::extract::ConnectInfo;
        use std::net::SocketAddr;
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.set_nonblocking(true).unwrap();
        let url = format!("http://{}/", l.local_addr().unwrap());
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let app = axum::Router::new().route(
                    "/",
                    axum::routing::get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move {
                        peer.port().to_string()
                    }),
                );
                let l = tokio::net::TcpListener::from_std(l).unwrap();
                axum::serve(l, app.into_make_service_with_connect_info::<SocketAddr>())
                    .await
                    .unwrap();
            });
        });
        url
    }

    async fn port_of(client: &HttpClient, url: &str) -> String {
        let req = Request::get(url).body(ReqBody::default()).unwrap();
        let body = read_all(client.send(req).await.unwrap().into_body()).await;
        String::from_utf8(body.unwrap().to_vec()).unwrap()
    }

    #[test]
    fn current_thread_runtimes_keep_a_pool_per_thread() {
        use tokio::sync::oneshot;
        let url = port_echo();
        let client = HttpClient::new(Duration::from_secs(1)).unwrap();
        let on_own_thread =
            |f: std::pin::Pin<Box<dyn Future<Output = (String, String)> + Send>>| {
                std::thread::spawn(move || {
                    tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .unwrap()
                        .block_on(f)
                })
            };
        let (a_idle, b_wait) = oneshot::channel::<()>();
        let (b_done, a_wait) = oneshot::channel::<()>();
        // Thread A's connection sits idle in a pool, its runtime alive, while thread B sends.
        let (c, u) = (client.clone(), url.clone());
        let a = on_own_thread(Box::pin(async move {
            let first = port_of(&c, &u).await;
            a_idle.send(()).unwrap();
            a_wait.await.unwrap();
            (first, port_of(&c, &u).await)
        }));
        let b = on_own_thread(Box::pin(async move {
            b_wait.await.unwrap();
            let first = port_of(&client, &url).await;
            let second = port_of(&client, &url).await;
            b_done.send(()).unwrap();
            (first, second)
        }));
        let (a1, a2) = a.join().unwrap();
        let (b1, b2) = b.join().unwrap();
        // Each thread reuses its own connection and never takes the other thread's.
        assert_eq!(a1, a2);
        assert_eq!(b1, b2);
        assert_ne!(a1, b1, "thread B used thread A's connection");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_multi_thread_runtime_shares_one_pool() {
        let url = port_echo();
        let client = HttpClient::new(Duration::from_secs(1)).unwrap();
        let mut ports = std::collections::HashSet::new();
        for _ in 0..6 {
            let (c, u) = (client.clone(), url.clone());
            // Each request from its own task, wherever the runtime runs it.
            ports.insert(
                tokio::spawn(async move { port_of(&c, &u).await })
                    .await
                    .unwrap(),
            );
        }
        assert_eq!(ports.len(), 1, "one pooled connection, reused: {ports:?}");
    }
}
