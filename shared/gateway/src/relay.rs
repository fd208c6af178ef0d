//! Stage 4: the provider's answer on its way back. Only a few headers pass (never the
//! provider's rate-limit headers: they describe the pool's token, not the caller); secrets
//! in JSON bodies and SSE text are redacted by the response policy; and no byte sequence
//! equal to a token value of the pool — the exact values this instance sent — leaves in any
//! header, body or stream event, whatever the status (an upstream that echoes its
//! `Authorization` header must not hand the pool token to the caller).

use crate::body::Source;
use crate::inspect::{ResponseFilter, redact_response_body};
use bytes::Bytes;
use futures_util::Stream;
use http::{HeaderMap, HeaderName, StatusCode};
use http_body_util::BodyDataStream;
use hyper::body::Incoming;
use std::collections::BTreeMap;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};
use tollgate_core::provider::{Usage, stream_error_event, usage_from_body, usage_from_value};
use tollgate_core::records::{Policy, ProviderKind};
use tollgate_core::scrub::{Scrubber, StreamScrubber};
use tollgate_core::sse::SseReader;
use tollgate_dlp::Entity;
use tollgate_dlp::fast::{ResponsePass, scan_response_bytes};

/// Provider response headers worth passing on (typed names: a `&str` is parsed and hashed on
/// every lookup and insert).
const RESPONSE_HEADERS: [HeaderName; 4] = [
    http::header::CONTENT_TYPE,
    HeaderName::from_static("x-request-id"),
    HeaderName::from_static("request-id"),
    HeaderName::from_static("openai-processing-ms"),
];

/// The audit line's name for a pool token value caught on its way out.
pub const POOL_TOKEN_ENTITY: &str = "POOL_TOKEN";

/// What went back to the client besides the bytes: secrets redacted, pool token values
/// scrubbed.
#[derive(Debug, Default)]
pub(crate) struct Redactions {
    pub dlp: BTreeMap<Entity, u32>,
    pub pool_tokens: u64,
}

/// The response head: the provider's status and the headers worth passing on, minus any
/// header whose value holds a pool token.
pub(crate) fn head(
    status: u16,
    upstream: &HeaderMap,
    scrub: &Scrubber,
    redactions: &mut Redactions,
) -> http::response::Builder {
    let mut b = http::Response::builder()
        .status(StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY));
    for name in RESPONSE_HEADERS {
        if let Some(v) = upstream.get(&name) {
            if scrub.contains(v.as_bytes()) {
                redactions.pool_tokens += 1;
                continue;
            }
            // Already a valid value: shared, not copied.
            b = b.header(name, v.clone());
        }
    }
    b
}

/// A complete body: usage read and secrets redacted, then pool token values scrubbed from the
/// bytes (error bodies included). A clean body (the usual case) is validated, scanned and its
/// usage read in one borrowed pass (`tollgate_dlp::fast`); a body with a secret to redact, or
/// one the pass refuses, takes the parsed path.
pub(crate) fn complete(
    body: Bytes,
    ok: bool,
    policy: &Policy,
    scrub: &Scrubber,
    redactions: &mut Redactions,
) -> (Bytes, Usage) {
    let (body, usage) = if !ok {
        (body, Usage::default())
    } else {
        match scan_response_bytes(&body, policy) {
            Ok(ResponsePass::Clean { usage }) => {
                let usage = usage.and_then(|u| usage_from_value(&u)).unwrap_or_default();
                (body, usage)
            }
            Ok(ResponsePass::Fallback) => {
                let parsed = tollgate_core::json::parse_strict(&body);
                redact_parsed(body, parsed, policy, redactions)
            }
            Err(e) => redact_parsed(body, Err(e), policy, redactions),
        }
    };
    let body = match scrub.scrub_counted(&body) {
        Some((clean, n)) => {
            redactions.pool_tokens += n;
            Bytes::from(clean)
        }
        None => body,
    };
    (body, usage)
}

/// The parsed path of [`complete`]: usage read and secrets redacted from one strict parse.
fn redact_parsed(
    body: Bytes,
    parsed: Result<serde_json::Value, tollgate_core::json::BodyError>,
    policy: &Policy,
    redactions: &mut Redactions,
) -> (Bytes, Usage) {
    // Parsed strictly, as requests are: a body that repeats a key would otherwise be scanned
    // by its last value while the client's parser may read the first.
    match parsed {
        Ok(mut v) => {
            let usage = usage_from_body(&v).unwrap_or_default();
            match redact_response_body(&mut v, policy, &mut redactions.dlp) {
                Some(redacted) => (Bytes::from(redacted), usage),
                None => (body, usage),
            }
        }
        Err(tollgate_core::json::BodyError::DuplicateKey { .. }) => {
            // Ambiguous JSON: scan the text as a whole so every copy is checked.
            let text = String::from_utf8_lossy(&body);
            let (redacted, findings) = tollgate_dlp::redact_text(&text, policy);
            if findings
                .iter()
                .any(|f| f.action == tollgate_dlp::Action::Redact)
            {
                for f in &findings {
                    *redactions.dlp.entry(f.entity).or_insert(0) += 1;
                }
                (Bytes::from(redacted), Usage::default())
            } else {
                (body, Usage::default())
            }
        }
        Err(_) => (body, Usage::default()),
    }
}

/// What a relayed stream reports when it ends.
#[derive(Debug, Default)]
pub(crate) struct StreamReport {
    pub usage: Usage,
    pub broken: bool,
    pub redactions: Redactions,
}

/// The upstream body's data frames (trailers, which SSE never has, are skipped).
type Chunks = BodyDataStream<Incoming>;

/// An SSE stream relayed chunk by chunk as the client reads it (so a client that goes away
/// stops the upstream read). Events are re-framed after the secret filter; a partial event
/// waits in the reader until its closing blank line arrives. A stream that errors or stays
/// silent longer than the idle timeout ends with an in-band error event.
pub(crate) struct Relay {
    kind: ProviderKind,
    upstream: Chunks,
    idle_for: Duration,
    idle: Pin<Box<Sleep>>,
    reader: SseReader,
    filter: ResponseFilter,
    scrub: StreamScrubber,
    usage: Usage,
    broken: bool,
    finished: bool,
}

impl Relay {
    pub fn new(
        kind: ProviderKind,
        upstream: Incoming,
        idle_for: Duration,
        policy: Policy,
        scrub: &Scrubber,
    ) -> Self {
        Self {
            kind,
            upstream: BodyDataStream::new(upstream),
            idle_for,
            idle: Box::pin(tokio::time::sleep(idle_for)),
            reader: SseReader::new(),
            filter: ResponseFilter::new(policy),
            scrub: scrub.stream(),
            usage: Usage::default(),
            broken: false,
            finished: false,
        }
    }

    fn rewrite(&mut self, bytes: &[u8]) -> Vec<u8> {
        let mut out = String::new();
        let (usage, filter) = (&mut self.usage, &mut self.filter);
        self.reader.feed(bytes, |ev| {
            // One parse per event serves the filter and the usage fold.
            filter.event_into(&mut out, ev.event.as_deref(), &ev.data, usage);
        });
        if out.is_empty() {
            Vec::new()
        } else {
            self.scrub.push(out.as_bytes())
        }
    }

    fn break_off(&mut self) -> Poll<Option<Bytes>> {
        self.broken = true;
        self.finished = true;
        let mut out = self.scrub.finish();
        out.extend_from_slice(stream_error_event(self.kind).as_bytes());
        Poll::Ready(Some(Bytes::from(out)))
    }
}

impl Source for Relay {
    type Report = StreamReport;

    fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        loop {
            if self.finished {
                return Poll::Ready(None);
            }
            match Pin::new(&mut self.upstream).poll_next(cx) {
                Poll::Ready(Some(Ok(bytes))) => {
                    let deadline = Instant::now() + self.idle_for;
                    self.idle.as_mut().reset(deadline);
                    let out = self.rewrite(&bytes);
                    if !out.is_empty() {
                        return Poll::Ready(Some(Bytes::from(out)));
                    }
                }
                Poll::Ready(None) => {
                    self.finished = true;
                    let tail = self.scrub.finish();
                    return Poll::Ready((!tail.is_empty()).then(|| Bytes::from(tail)));
                }
                Poll::Ready(Some(Err(_))) => return self.break_off(),
                Poll::Pending => {
                    if self.idle.as_mut().poll(cx).is_ready() {
                        return self.break_off();
                    }
                    return Poll::Pending;
                }
            }
        }
    }

    fn exhausted(&self) -> bool {
        self.finished
    }

    fn report(&mut self) -> StreamReport {
        StreamReport {
            usage: self.usage,
            broken: self.broken,
            redactions: Redactions {
                dlp: std::mem::take(&mut self.filter.counts),
                pool_tokens: self.scrub.replacements(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inspect::response_policy;
    use http::HeaderValue;

    fn fake_github_token() -> String {
        let body = "q9W8e7R6t5Y4u3I2o1P0a9S8d7F6g5";
        let sum = tollgate_core::base62::crc32_checksum(body.as_bytes());
        format!("ghp_{body}{}", String::from_utf8_lossy(&sum))
    }

    #[test]
    fn a_secret_in_either_copy_of_a_repeated_response_key_is_redacted() {
        let secret = fake_github_token();
        let scrub = Scrubber::new(std::iter::empty::<&[u8]>()).unwrap();
        let policy = response_policy(&Policy::default());
        for body in [
            format!(r#"{{"content":"{secret}","content":"fine"}}"#),
            format!(r#"{{"content":"fine","content":"{secret}"}}"#),
        ] {
            let mut r = Redactions::default();
            let (out, _) = complete(Bytes::from(body), true, &policy, &scrub, &mut r);
            let out = String::from_utf8(out.to_vec()).unwrap();
            assert!(!out.contains(&secret), "{out}");
            assert!(!r.dlp.is_empty());
        }
    }

    #[test]
    fn pool_token_values_are_scrubbed_from_error_bodies_and_headers() {
        let value = "pool-token-value-0123456789";
        let scrub = Scrubber::new([value.as_bytes()]).unwrap();
        let policy = response_policy(&Policy::default());
        let mut r = Redactions::default();
        let body = format!(r#"{{"error":{{"message":"bad key {value}"}}}}"#);
        let (out, _) = complete(Bytes::from(body), false, &policy, &scrub, &mut r);
        assert!(!String::from_utf8_lossy(&out).contains(value));
        let mut h = HeaderMap::new();
        h.insert(
            "x-request-id",
            HeaderValue::from_static("pool-token-value-0123456789"),
        );
        h.insert("content-type", HeaderValue::from_static("application/json"));
        let resp = head(400, &h, &scrub, &mut r).body(()).unwrap();
        assert!(resp.headers().get("x-request-id").is_none());
        assert!(resp.headers().get("content-type").is_some());
        assert_eq!(r.pool_tokens, 2);
    }
}
