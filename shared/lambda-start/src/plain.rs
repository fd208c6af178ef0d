//! Plain-HTTP serving (`proxy --http`): thread per core. [`serve`] runs `threads` OS threads,
//! each with its own current-thread tokio runtime and its own listening socket on the same
//! address (`SO_REUSEPORT`: the kernel spreads new connections over the sockets), so a
//! connection, its request tasks and — with the gateway's per-thread upstream pools — its
//! upstream connections all stay on one thread: no task hops between threads, no cross-thread
//! wake-up per request. State the requests share (caches, counters) is `Send + Sync` behind
//! `Arc` and is shared by every thread.
//!
//! The number of threads is [`ENV_HTTP_THREADS`] (`TOLLGATE_HTTP_THREADS`), default the
//! number of CPUs the process may use. With one thread no port sharing is asked for.
//! `SO_REUSEPORT` lets another socket of the same user bind the same port on Linux; the
//! proxy's listeners are its own, so this adds nothing a process of that user could not do
//! already.

use crate::env::{self, EnvError};
use axum::Router;
use axum::serve::ListenerExt;
use socket2::{Domain, Protocol, Socket, Type};
use std::net::{SocketAddr, ToSocketAddrs};
use tokio::runtime::Runtime;
use tokio::sync::watch;

/// Serving threads for plain HTTP (see the module doc).
pub const ENV_HTTP_THREADS: &str = "TOLLGATE_HTTP_THREADS";
/// Upper bound on [`ENV_HTTP_THREADS`].
pub const MAX_HTTP_THREADS: usize = 256;
const EXPECTED_THREADS: &str = "a whole number from 1 to 256";
/// Pending connections per listening socket.
const BACKLOG: i32 = 1024;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Env(#[from] EnvError),
    #[error("cannot resolve {addr}: {source}")]
    Resolve {
        addr: String,
        source: std::io::Error,
    },
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
    #[error("cannot start serving thread {index}: {source}")]
    Thread {
        index: usize,
        source: std::io::Error,
    },
    #[error("server stopped: {0}")]
    Stopped(std::io::Error),
    #[error("serving thread {0} panicked")]
    Panicked(usize),
}

/// [`ENV_HTTP_THREADS`] from `lookup`: `default` when unset or blank, 1..=[`MAX_HTTP_THREADS`].
pub fn threads_from(
    lookup: impl Fn(&str) -> Result<Option<String>, EnvError>,
    default: usize,
) -> Result<usize, EnvError> {
    let n: usize = env::parse_or_from(lookup, ENV_HTTP_THREADS, default, EXPECTED_THREADS)?;
    if (1..=MAX_HTTP_THREADS).contains(&n) {
        Ok(n)
    } else {
        Err(EnvError::Invalid {
            name: ENV_HTTP_THREADS.into(),
            expected: EXPECTED_THREADS,
        })
    }
}

/// [`threads_from`] over the process environment, defaulting to the CPUs this process may use.
pub fn threads_from_env() -> Result<usize, EnvError> {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    threads_from(env::process, cpus.min(MAX_HTTP_THREADS))
}

/// A current-thread runtime with I/O and timers: what each serving thread runs (the process
/// builds the first one, for start-up, and [`serve`] serves on it too).
pub fn runtime() -> std::io::Result<Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

/// The listening sockets, one per serving thread, all on one address.
pub struct Listeners {
    sockets: Vec<std::net::TcpListener>,
    local: SocketAddr,
}

impl Listeners {
    /// The address bound (the port chosen, when `:0` was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }
}

/// Binds `threads` listening sockets on `addr` (port 0: one port chosen for all of them).
pub fn bind(addr: &str, threads: usize) -> Result<Listeners, ServeError> {
    let listen_err = |source| ServeError::Listen {
        addr: addr.to_owned(),
        source,
    };
    let first = addr
        .to_socket_addrs()
        .map_err(|source| ServeError::Resolve {
            addr: addr.to_owned(),
            source,
        })?
        .next()
        .ok_or_else(|| ServeError::Resolve {
            addr: addr.to_owned(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no address"),
        })?;
    let threads = threads.clamp(1, MAX_HTTP_THREADS);
    let shared = threads > 1;
    let one = socket(first, shared).map_err(listen_err)?;
    let local = one.local_addr().map_err(listen_err)?;
    let mut sockets = vec![one];
    for _ in 1..threads {
        sockets.push(socket(local, true).map_err(listen_err)?);
    }
    Ok(Listeners { sockets, local })
}

fn socket(addr: SocketAddr, reuse_port: bool) -> std::io::Result<std::net::TcpListener> {
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    // As tokio's own `TcpListener::bind`: a restarted server can bind while old connections
    // linger in TIME_WAIT.
    s.set_reuse_address(true)?;
    if reuse_port {
        s.set_reuse_port(true)?;
    }
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    s.listen(BACKLOG)?;
    Ok(s.into())
}

/// Serves `app` on every listener, one thread each; the first on `rt` on the calling thread.
/// Ctrl-C stops accepting on every thread, lets requests in flight finish, then returns.
pub fn serve(rt: Runtime, listeners: Listeners, app: Router) -> Result<(), ServeError> {
    serve_until(rt, listeners, app, async {
        let _ = tokio::signal::ctrl_c().await;
    })
}

/// [`serve`], stopping when `stop` (polled on `rt`) completes instead of on Ctrl-C.
pub fn serve_until(
    rt: Runtime,
    listeners: Listeners,
    app: Router,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut sockets = listeners.sockets.into_iter();
    let Some(first) = sockets.next() else {
        return Ok(());
    };
    let mut others = Vec::new();
    for (i, sock) in sockets.enumerate() {
        let index = i + 1;
        let (app, stop) = (app.clone(), stop_rx.clone());
        let handle = std::thread::Builder::new()
            .name(format!("tollgate-http-{index}"))
            .spawn(move || {
                let rt = runtime().map_err(ServeError::Stopped)?;
                rt.block_on(serve_one(sock, app, stop))
            })
            .map_err(|source| ServeError::Thread { index, source })?;
        others.push((index, handle));
    }
    let outcome = rt.block_on(async move {
        tokio::spawn(async move {
            stop.await;
            let _ = stop_tx.send(true);
        });
        serve_one(first, app, stop_rx).await
    });
    for (index, handle) in others {
        match handle.join() {
            Ok(r) => r?,
            Err(_) => return Err(ServeError::Panicked(index)),
        }
    }
    outcome
}

async fn serve_one(
    sock: std::net::TcpListener,
    app: Router,
    mut stop: watch::Receiver<bool>,
) -> Result<(), ServeError> {
    let listener = tokio::net::TcpListener::from_std(sock).map_err(ServeError::Stopped)?;
    // Nagle plus delayed ACKs would stall small responses by ~40 ms: disable Nagle.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        let _ = stop.wait_for(|stopped| *stopped).await;
    })
    .await
    .map_err(ServeError::Stopped)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(v: Option<&'static str>) -> impl Fn(&str) -> Result<Option<String>, EnvError> {
        move |_| Ok(v.map(str::to_owned))
    }

    #[test]
    fn threads_default_when_unset_and_must_be_1_to_256() {
        assert_eq!(threads_from(lookup(None), 2).unwrap(), 2);
        assert_eq!(threads_from(lookup(Some(" ")), 3).unwrap(), 3);
        assert_eq!(threads_from(lookup(Some("1")), 2).unwrap(), 1);
        assert_eq!(threads_from(lookup(Some(" 4 ")), 2).unwrap(), 4);
        assert_eq!(threads_from(lookup(Some("256")), 2).unwrap(), 256);
        for bad in ["0", "257", "-1", "two", "1.5"] {
            let e = threads_from(lookup(Some(bad)), 2).unwrap_err();
            assert_eq!(
                e.to_string(),
                "TOLLGATE_HTTP_THREADS must be a whole number from 1 to 256",
                "{bad}"
            );
        }
    }

    #[test]
    fn every_listener_shares_the_port_chosen_for_the_first() {
        let l = bind("127.0.0.1:0", 3).unwrap();
        assert_ne!(l.local_addr().port(), 0);
        assert_eq!(l.sockets.len(), 3);
        for s in &l.sockets {
            assert_eq!(s.local_addr().unwrap(), l.local_addr());
        }
        // One thread: a plain socket, and the port is not open to sharing.
        let one = bind("127.0.0.1:0", 1).unwrap();
        assert!(bind(&one.local_addr().to_string(), 2).is_err());
    }

    #[test]
    fn requests_are_served_from_every_thread_until_stopped() {
        use std::collections::HashSet;
        use std::io::{Read, Write};
        let listeners = bind("127.0.0.1:0", 2).unwrap();
        let addr = listeners.local_addr();
        let app = Router::new().route(
            "/",
            axum::routing::get(|| async {
                std::thread::current().name().unwrap_or("?").to_owned()
            }),
        );
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = std::thread::spawn(move || {
            serve_until(runtime().unwrap(), listeners, app, async {
                let _ = stop_rx.await;
            })
        });
        // New connections land on either socket (the kernel hashes the client's port).
        let mut seen = HashSet::new();
        for _ in 0..200 {
            let mut c = std::net::TcpStream::connect(addr).unwrap();
            c.write_all(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
                .unwrap();
            let mut out = String::new();
            c.read_to_string(&mut out).unwrap();
            assert!(out.starts_with("HTTP/1.1 200"), "{out}");
            seen.insert(out.rsplit("\r\n").next().unwrap().to_owned());
            if seen.len() == 2 {
                break;
            }
        }
        assert_eq!(seen.len(), 2, "answered only by {seen:?}");
        stop_tx.send(()).unwrap();
        server.join().unwrap().unwrap();
        assert!(
            std::net::TcpStream::connect(addr).is_err(),
            "still listening"
        );
    }

    #[test]
    fn an_unresolvable_address_is_an_error_naming_it() {
        let e = bind("not an address", 1).err().unwrap();
        assert!(
            e.to_string().starts_with("cannot resolve not an address"),
            "{e}"
        );
    }
}
