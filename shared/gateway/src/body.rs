//! A response body that runs one hook when it ends, whatever the reason: every byte sent, the
//! upstream stream broke (the source ends it with an in-band error), or the client went away
//! (the body is dropped). The hook is the request's settlement; it is awaited inside the body,
//! before the body reports its end, so in Lambda the usage and audit writes finish before the
//! invocation's response completes (a sandbox may be frozen right after). When the client
//! goes away, dropping the body drops the source — cancelling the upstream request — and the
//! hook runs on the runtime instead.

use bytes::Bytes;
use futures_util::future::BoxFuture;
use http_body::{Body, Frame, SizeHint};
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

/// Where a body's bytes come from.
pub(crate) trait Source: Send + Unpin + 'static {
    /// What the source has to say when it ends (usage seen, whether it broke, ...).
    type Report: Send + 'static;
    fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<Option<Bytes>>;
    /// The exact length when known up front (a complete body): sent as `content-length`.
    fn exact_len(&self) -> Option<u64> {
        None
    }
    fn report(&mut self) -> Self::Report;
    /// Every byte has been handed out: a body dropped now was not cut short.
    fn exhausted(&self) -> bool;
}

/// How a body ended.
pub(crate) struct Ended<R> {
    pub report: R,
    /// The body was dropped before it ended: the client went away.
    pub client_gone: bool,
}

pub(crate) type OnEnd<R> = Box<dyn FnOnce(Ended<R>) -> BoxFuture<'static, ()> + Send>;

enum State<S> {
    Sending(S),
    Settling(BoxFuture<'static, ()>),
    Done,
}

pub(crate) struct SettlingBody<S: Source> {
    state: State<S>,
    on_end: Option<OnEnd<S::Report>>,
}

impl<S: Source> SettlingBody<S> {
    pub fn new(source: S, on_end: OnEnd<S::Report>) -> Self {
        Self {
            state: State::Sending(source),
            on_end: Some(on_end),
        }
    }
}

impl<S: Source> Body for SettlingBody<S> {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        loop {
            match &mut this.state {
                State::Sending(src) => match src.poll_chunk(cx) {
                    Poll::Ready(Some(b)) => return Poll::Ready(Some(Ok(Frame::data(b)))),
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(None) => {
                        let report = src.report();
                        this.state = match this.on_end.take() {
                            Some(f) => State::Settling(f(Ended {
                                report,
                                client_gone: false,
                            })),
                            None => State::Done,
                        };
                    }
                },
                State::Settling(fut) => match fut.as_mut().poll(cx) {
                    Poll::Ready(()) => this.state = State::Done,
                    Poll::Pending => return Poll::Pending,
                },
                State::Done => return Poll::Ready(None),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.state, State::Done)
    }

    fn size_hint(&self) -> SizeHint {
        match &self.state {
            State::Sending(s) => s.exact_len().map(SizeHint::with_exact).unwrap_or_default(),
            _ => SizeHint::default(),
        }
    }
}

impl<S: Source> Drop for SettlingBody<S> {
    fn drop(&mut self) {
        let pending = match std::mem::replace(&mut self.state, State::Done) {
            State::Sending(mut src) => self.on_end.take().map(|f| {
                // Dropped after the last byte went out (a client that closes as soon as it
                // has the whole body) is a complete response, not a client gone.
                let client_gone = !src.exhausted();
                f(Ended {
                    report: src.report(),
                    client_gone,
                })
            }),
            // Settlement had started when the body was dropped: let it finish.
            State::Settling(fut) => Some(fut),
            State::Done => None,
        };
        if let Some(fut) = pending
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            rt.spawn(fut);
        }
    }
}

/// A body known in full: sent in one frame with its exact length.
pub(crate) struct Full(Option<Bytes>, u64);

impl Full {
    pub fn new(b: Bytes) -> Self {
        let n = b.len() as u64;
        Self(Some(b), n)
    }
}

impl Source for Full {
    type Report = ();
    fn poll_chunk(&mut self, _cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        Poll::Ready(self.0.take().filter(|b| !b.is_empty()))
    }
    fn exact_len(&self) -> Option<u64> {
        Some(self.1)
    }
    fn report(&mut self) {}
    fn exhausted(&self) -> bool {
        self.0.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn counting_hook<R: Send + 'static>(ends: Arc<AtomicU32>, gone: Arc<AtomicU32>) -> OnEnd<R> {
        Box::new(move |e: Ended<R>| {
            Box::pin(async move {
                ends.fetch_add(1, Ordering::SeqCst);
                if e.client_gone {
                    gone.fetch_add(1, Ordering::SeqCst);
                }
            })
        })
    }

    #[tokio::test]
    async fn the_hook_runs_once_before_the_body_ends() {
        let (ends, gone) = (Arc::new(AtomicU32::new(0)), Arc::new(AtomicU32::new(0)));
        let body = SettlingBody::new(
            Full::new(Bytes::from_static(b"hello")),
            counting_hook(ends.clone(), gone.clone()),
        );
        assert_eq!(body.size_hint().exact(), Some(5));
        let bytes = body.collect().await.unwrap().to_bytes();
        assert_eq!(&bytes[..], b"hello");
        // Collected means the end was reported: the hook had already finished.
        assert_eq!(ends.load(Ordering::SeqCst), 1);
        assert_eq!(gone.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn a_body_dropped_after_its_last_byte_is_complete() {
        let (ends, gone) = (Arc::new(AtomicU32::new(0)), Arc::new(AtomicU32::new(0)));
        let mut body = SettlingBody::new(
            Full::new(Bytes::from_static(b"hello")),
            counting_hook(ends.clone(), gone.clone()),
        );
        let frame = body.frame().await.unwrap().unwrap();
        assert_eq!(frame.into_data().unwrap(), Bytes::from_static(b"hello"));
        drop(body);
        tokio::task::yield_now().await;
        assert_eq!(ends.load(Ordering::SeqCst), 1);
        assert_eq!(gone.load(Ordering::SeqCst), 0, "every byte was sent");
    }

    #[tokio::test]
    async fn a_dropped_body_settles_as_client_gone() {
        let (ends, gone) = (Arc::new(AtomicU32::new(0)), Arc::new(AtomicU32::new(0)));
        let body = SettlingBody::new(
            Full::new(Bytes::from_static(b"hello")),
            counting_hook(ends.clone(), gone.clone()),
        );
        drop(body);
        tokio::task::yield_now().await;
        assert_eq!(ends.load(Ordering::SeqCst), 1);
        assert_eq!(gone.load(Ordering::SeqCst), 1);
    }
}
