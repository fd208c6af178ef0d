//! The HTTP client for every call the gateway makes: providers (the request path), token
//! exchanges and JWK Sets. A pooled `hyper` 1 client (`hyper-util`'s legacy `Client`): HTTPS
//! through rustls with Mozilla's root certificates bundled in the binary (`webpki-roots`, the
//! roots reqwest's `rustls-tls` feature used before; no system store is read), HTTP/2 when
//! the server offers it by ALPN, else HTTP/1.1; plain HTTP for loopback mocks. No redirect is
//! followed and no proxy is read from the environment. Bodies stream both ways: a request
//! body is one buffer, a response body is hyper's `Incoming`, read whole or relayed as it
//! arrives.

use bytes::Bytes;
use http::header::{ACCEPT, USER_AGENT};
use http::{HeaderValue, Request, Response, Uri};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use std::error::Error as StdError;
use std::sync::Arc;
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

/// A cheap-to-clone handle on one connection pool.
#[derive(Clone)]
pub struct HttpClient {
    inner: Client<HttpsConnector<HttpConnector>, ReqBody>,
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
        let inner = Client::builder(TokioExecutor::new())
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .pool_max_idle_per_host(POOL_MAX_IDLE_PER_HOST)
            .build(https);
        Ok(Self { inner })
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
        self.inner.request(req).await.map_err(|e| CallError::of(&e))
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
}
