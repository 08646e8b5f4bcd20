//! The accept loop. `axum::serve` has no header timeout and no connection cap, so a few thousand
//! half-open connections (slowloris) used to exhaust the file descriptors and stop the server
//! answering anyone. This loop:
//!
//! - gives every connection `header_timeout` to send a complete request head, and closes a
//!   keep-alive connection idle for as long (hyper starts the same timer while it waits for the
//!   next request);
//! - keeps the number of open connections under a cap derived from `RLIMIT_NOFILE`, so the
//!   database, the log and the executor's children always find a descriptor;
//! - at the cap, closes the connection that has been idle longest (one that never sent a full
//!   request head, or sits between keep-alive requests) to admit the new one: a slow client loses
//!   its place to a real one, which sends its request at once. Only when every connection is busy
//!   with a request does a newcomer get a 503;
//! - gives a request body three times `header_timeout` to arrive: a request whose body trickles
//!   in counts as busy and cannot be evicted, so it must not be able to stay for ever;
//! - never spins on EMFILE: it frees an idle connection and backs off;
//! - with `[server.tls]`, does the TLS handshake inside the connection's task, under the same
//!   header timeout and as an idle (evictable) connection: a client that opens a socket and never
//!   finishes its handshake is a slowloris like any other.

use axum::Router;
use axum::body::Body;
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, oneshot, watch};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

/// Descriptors kept free for everything but client connections: the SQLite pool (a database,
/// WAL and shared-memory file per connection), the log, the executor's pipes (for as many commands
/// as run at once), the verifier's
/// and webhook's outgoing connections, and the sockets of evicted connections not yet closed.
/// The commands that run at once (`[server.quotas] commands_at_once`) come on top.
const RESERVED_FDS: usize = 64;

/// What a running command holds in the server: its stdout and stderr pipes, and the pidfd or
/// signal pipe the runtime may keep for it.
const FDS_PER_EXECUTION: usize = 3;

/// Fewer connections than this would make the server useless; a limit this low is a
/// misconfiguration the log should point at rather than a reason to refuse to start.
const MIN_CONNECTIONS: usize = 16;

/// How long the accept loop waits after an error that is not the peer's (EMFILE, ENFILE,
/// ENOBUFS): retrying at once would spin on a full descriptor table.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Connections being told "503, at the limit" at once; they use the reserve of descriptors.
const MAX_REJECTING: usize = 16;
/// How long a rejected connection gets to send its request and take the answer. A client's
/// request can trail its connect by more than half a second on a loaded machine (seen in
/// `tests/all/security/resources.rs`, `when_every_connection_is_busy_a_newcomer_is_told_so`), and
/// it then read a dropped connection instead of the 503; at most MAX_REJECTING wait this long.
const REJECT_WAIT: Duration = Duration::from_secs(2);

/// A connection's read buffer grows to hold an incomplete request head, and its write queue to
/// this much: at the default (~400 KiB) a slowloris connection trickling a huge head cost that
/// much memory times the connection cap. A bigger head gets 431.
const MAX_BUFFER: usize = 16 * 1024;

/// The kernel's send buffer of each connection (it doubles this for its own bookkeeping). By
/// default Linux grows it to 4 MiB for a client that does not read: an event stream replaying a
/// long history to such a client parked ~1.5 MiB in the kernel per stream, ~0.75 GiB for the
/// stream cap, outside the server's own memory. This still carries about 1.3-1.7 MB/s across a
/// 100 ms round trip (128-170 KiB in flight), plenty for the largest answer (a page of 500
/// changes).
const SEND_BUFFER: usize = 128 * 1024;

/// Descriptors of the limit (`ulimit -n`) per command that may run at once: a server with few
/// descriptors runs fewer commands at once than configured rather than give their reserve
/// from its connections (at 256, 32 commands would have taken 96 of them).
const DESCRIPTORS_PER_COMMAND: usize = 32;

/// What a connection may use, and how many commands run at once.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_connections: usize,
    pub header_timeout: Duration,
    /// `[server.quotas] commands_at_once`, or fewer under a low descriptor limit.
    pub commands_at_once: usize,
}

impl Limits {
    /// The configured limits, with the connection cap kept under the descriptor limit.
    pub fn for_config(server: &crate::config::ServerSection) -> Limits {
        let configured = server.quotas.commands_at_once;
        let commands_at_once = configured.min((fd_soft_limit() / DESCRIPTORS_PER_COMMAND).max(1));
        if commands_at_once < configured {
            tracing::warn!(
                configured,
                used = commands_at_once,
                "server.quotas.commands_at_once is more than the file-descriptor limit allows \
                 beside the connections (one command per {DESCRIPTORS_PER_COMMAND}); raise \
                 `ulimit -n` (LimitNOFILE) to run more at once"
            );
        }
        let derived = derived_connection_cap(commands_at_once);
        let max_connections = match server.max_connections {
            Some(n) if n > derived => {
                tracing::warn!(
                    configured = n,
                    used = derived,
                    "server.max_connections is above what the file-descriptor limit allows; \
                     raise `ulimit -n` (LimitNOFILE) to use more"
                );
                derived
            }
            Some(n) => n,
            None => derived,
        };
        Limits {
            max_connections,
            header_timeout: Duration::from_secs_f64(server.header_timeout_seconds),
            commands_at_once,
        }
    }
}

/// The soft `RLIMIT_NOFILE` minus what is open now and a reserve, that of `commands` running
/// commands included.
pub fn derived_connection_cap(commands: usize) -> usize {
    let soft = fd_soft_limit();
    let open = std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or(32);
    let cap = soft.saturating_sub(open + RESERVED_FDS + FDS_PER_EXECUTION * commands);
    if cap < MIN_CONNECTIONS {
        tracing::warn!(
            fd_limit = soft,
            "the file-descriptor limit leaves room for only {cap} connections; raise `ulimit -n`"
        );
    }
    cap.max(MIN_CONNECTIONS)
}

fn fd_soft_limit() -> usize {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct it is given.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0;
    if !ok || lim.rlim_cur == libc::RLIM_INFINITY {
        // No answer or no limit: assume the common default rather than unbounded.
        return 1024;
    }
    usize::try_from(lim.rlim_cur).unwrap_or(usize::MAX)
}

/// Serves `app` on `listener` (over TLS when `tls` is given) until `shutdown` turns true; then
/// stops accepting, lets requests in flight finish for up to `grace`, and closes whatever is
/// still open.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    tls: Option<TlsAcceptor>,
    mut shutdown: watch::Receiver<bool>,
    grace: Duration,
) -> std::io::Result<()> {
    let registry = Arc::new(Registry::default());
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(MAX_BUFFER);
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.wait_for(|s| *s) => break,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) if peer_error(&e) => continue,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed; freeing an idle connection and backing off");
                registry.evict_idlest();
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        if registry.len() >= limits.max_connections && !registry.evict_idlest() {
            match tls {
                None => reject(stream, &registry),
                // A plain-text 503 means nothing to a TLS client, and a handshake to send an
                // encrypted one would spend the CPU the cap is there to save: just close.
                Some(_) => drop(stream),
            }
            continue;
        }
        let _ = stream.set_nodelay(true);
        let _ = socket2::SockRef::from(&stream).set_send_buffer_size(SEND_BUFFER);
        let (slot, close) = registry.admit();
        let svc = service(app.clone(), slot.clone(), limits.header_timeout * 3);
        let (http, tls, shutdown) = (http.clone(), tls.clone(), shutdown.clone());
        let handshake_timeout = limits.header_timeout;
        tokio::spawn(async move {
            // Held for the life of the task, so the slot is freed however the task ends.
            let _slot = SlotGuard(slot);
            let mut close = std::pin::pin!(close);
            let Some(acceptor) = tls else {
                return drive(&http, stream, svc, close, shutdown).await;
            };
            let handshake = tokio::time::timeout(handshake_timeout, acceptor.accept(stream));
            let stream = tokio::select! {
                done = handshake => match done {
                    Ok(Ok(stream)) => stream,
                    Ok(Err(e)) => {
                        // Usually a client that does not trust the certificate: its side
                        // reports why; here it is noise unless debugging.
                        tracing::debug!(error = %e, "TLS handshake failed");
                        return;
                    }
                    // No handshake within the header timeout: a slowloris over TLS.
                    Err(_) => return,
                },
                _ = close.as_mut() => return,
            };
            drive(&http, stream, svc, close, shutdown).await
        });
    }
    drop(listener);
    if tokio::time::timeout(grace, registry.drained())
        .await
        .is_err()
    {
        registry.close_all();
    }
    Ok(())
}

/// Serves one connection until it ends, is evicted (`close`), or the server stops (then it
/// finishes its request in flight first).
async fn drive<IO, S>(
    http: &hyper::server::conn::http1::Builder,
    io: IO,
    svc: S,
    mut close: Pin<&mut oneshot::Receiver<()>>,
    mut shutdown: watch::Receiver<bool>,
) where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::HttpService<Incoming, ResBody = Body> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let conn = http.serve_connection(TokioIo::new(io), svc);
    let mut conn = std::pin::pin!(conn);
    let mut draining = false;
    loop {
        tokio::select! {
            _ = conn.as_mut() => break,
            // Evicted, or the grace period is over: dropping the connection closes it.
            _ = close.as_mut() => break,
            _ = shutdown.wait_for(|s| *s), if !draining => {
                draining = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

/// Errors about one peer (it reset before we accepted it); the next accept is unaffected.
fn peer_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionAborted | ConnectionReset | ConnectionRefused | Interrupted
    )
}

/// Every connection is busy with a request: say so instead of leaving the client to time out.
/// The answer waits (briefly) for the request, since an HTTP client takes a response that comes
/// before its request for a broken connection; a few such answers at a time, from the reserve of
/// descriptors; beyond that a newcomer's connection is just closed.
fn reject(stream: TcpStream, registry: &Arc<Registry>) {
    const BODY: &str = r#"{"error":"unavailable","message":"the server is at its connection limit; retry in a moment"}"#;
    if registry.rejecting.fetch_add(1, Ordering::AcqRel) >= MAX_REJECTING {
        registry.rejecting.fetch_sub(1, Ordering::AcqRel);
        return;
    }
    let registry = registry.clone();
    tokio::spawn(async move {
        let mut stream = stream;
        // Read the request head so closing does not reset the connection under the answer.
        let _ = tokio::time::timeout(REJECT_WAIT, async {
            let mut head = Vec::with_capacity(1024);
            while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 4096 {
                if stream.read_buf(&mut head).await.unwrap_or(0) == 0 {
                    break;
                }
            }
        })
        .await;
        let answer = format!(
            "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
             content-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n{BODY}",
            BODY.len()
        );
        let _ = tokio::time::timeout(REJECT_WAIT, async {
            stream.write_all(answer.as_bytes()).await?;
            stream.shutdown().await
        })
        .await;
        registry.rejecting.fetch_sub(1, Ordering::AcqRel);
    });
}

/// The app as a hyper service that keeps the connection's slot informed: busy from the moment a
/// request head is parsed until its response body has been sent (an event stream stays busy for
/// as long as it is open), idle otherwise. A request body must arrive within `body_timeout`.
fn service(
    app: Router,
    slot: Arc<Slot>,
    body_timeout: Duration,
) -> impl hyper::service::Service<
    hyper::Request<Incoming>,
    Response = hyper::Response<Body>,
    Error = Infallible,
    Future = impl Send,
> + Clone {
    hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        let busy = Busy::new(slot.clone());
        let app = app.clone();
        let req = if req.body().is_end_stream() {
            req.map(Body::new)
        } else {
            req.map(|body| Body::new(Deadline::new(body, body_timeout)))
        };
        async move {
            let res = app.oneshot(req).await?;
            Ok::<_, Infallible>(res.map(|body| Body::new(Tracked { body, _busy: busy })))
        }
    })
}

/// A response body that keeps its connection marked busy until it is dropped.
struct Tracked {
    body: Body,
    _busy: Busy,
}

impl HttpBody for Tracked {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// A request body that fails once `timeout` has passed since its first poll.
struct Deadline {
    body: Incoming,
    timeout: Duration,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Deadline {
    fn new(body: Incoming, timeout: Duration) -> Deadline {
        Deadline {
            body,
            timeout,
            sleep: None,
        }
    }
}

impl HttpBody for Deadline {
    type Data = axum::body::Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let timeout = self.timeout;
        let sleep = self
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        if sleep.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Err(format!(
                "the request body did not arrive within {} s",
                timeout.as_secs_f64()
            )
            .into())));
        }
        Pin::new(&mut self.body)
            .poll_frame(cx)
            .map_err(|e| e.into())
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

// ----- the registry ---------------------------------------------------------------------------

/// One connection as the registry sees it.
struct Slot {
    id: u64,
    registry: Arc<Registry>,
    /// Requests whose response is not finished.
    busy: AtomicUsize,
    /// When the connection last became idle, in ms since the registry started.
    idle_since: AtomicU64,
}

impl Slot {
    fn is_idle(&self) -> bool {
        self.busy.load(Ordering::Acquire) == 0
    }
}

struct Busy(Arc<Slot>);

impl Busy {
    fn new(slot: Arc<Slot>) -> Busy {
        slot.busy.fetch_add(1, Ordering::AcqRel);
        Busy(slot)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let slot = &self.0;
        slot.idle_since
            .store(slot.registry.now_ms(), Ordering::Release);
        slot.busy.fetch_sub(1, Ordering::AcqRel);
    }
}

struct SlotGuard(Arc<Slot>);

impl Drop for SlotGuard {
    fn drop(&mut self) {
        self.0.registry.remove(self.0.id);
    }
}

struct Registry {
    started: Instant,
    conns: Mutex<Conns>,
    /// Signalled when the last connection goes, for a graceful shutdown.
    empty: Notify,
    /// Connections being refused (see [`reject`]).
    rejecting: AtomicUsize,
}

#[derive(Default)]
struct Conns {
    next_id: u64,
    open: HashMap<u64, (Arc<Slot>, oneshot::Sender<()>)>,
}

impl Default for Registry {
    fn default() -> Self {
        Registry {
            started: Instant::now(),
            conns: Mutex::default(),
            empty: Notify::new(),
            rejecting: AtomicUsize::new(0),
        }
    }
}

impl Registry {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Conns> {
        // A panic while holding this lock cannot leave the map inconsistent: keep going.
        self.conns.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn len(&self) -> usize {
        self.lock().open.len()
    }

    fn admit(self: &Arc<Self>) -> (Arc<Slot>, oneshot::Receiver<()>) {
        let (tx, rx) = oneshot::channel();
        let mut conns = self.lock();
        conns.next_id += 1;
        let slot = Arc::new(Slot {
            id: conns.next_id,
            registry: self.clone(),
            busy: AtomicUsize::new(0),
            idle_since: AtomicU64::new(self.now_ms()),
        });
        conns.open.insert(slot.id, (slot.clone(), tx));
        (slot, rx)
    }

    fn remove(&self, id: u64) {
        let mut conns = self.lock();
        conns.open.remove(&id);
        if conns.open.is_empty() {
            self.empty.notify_waiters();
        }
    }

    /// Closes the connection idle the longest. False when every connection is busy.
    fn evict_idlest(&self) -> bool {
        let mut conns = self.lock();
        let Some(id) = conns
            .open
            .values()
            .filter(|(slot, _)| slot.is_idle())
            .min_by_key(|(slot, _)| slot.idle_since.load(Ordering::Acquire))
            .map(|(slot, _)| slot.id)
        else {
            return false;
        };
        if let Some((_, close)) = conns.open.remove(&id) {
            let _ = close.send(());
        }
        if conns.open.is_empty() {
            self.empty.notify_waiters();
        }
        true
    }

    fn close_all(&self) {
        for (_, (_, close)) in self.lock().open.drain() {
            let _ = close.send(());
        }
    }

    async fn drained(&self) {
        loop {
            let notified = self.empty.notified();
            if self.len() == 0 {
                return;
            }
            notified.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_idlest_connection_goes_first_and_a_busy_one_never() {
        let registry = Arc::new(Registry::default());
        let (oldest, mut oldest_closed) = registry.admit();
        let (middle, mut middle_closed) = registry.admit();
        let (newest, mut newest_closed) = registry.admit();
        oldest.idle_since.store(1, Ordering::Release);
        middle.idle_since.store(2, Ordering::Release);
        newest.idle_since.store(3, Ordering::Release);
        // The oldest is serving a request: the next idlest goes instead.
        let busy = Busy::new(oldest.clone());
        assert!(registry.evict_idlest());
        assert!(middle_closed.try_recv().is_ok());
        assert!(oldest_closed.try_recv().is_err());
        assert_eq!(registry.len(), 2);
        assert!(registry.evict_idlest());
        assert!(newest_closed.try_recv().is_ok());
        // Only a busy one is left: nothing to evict.
        assert!(!registry.evict_idlest());
        assert_eq!(registry.len(), 1);
        // Its request done, it is idle (and the idlest) again.
        drop(busy);
        assert!(registry.evict_idlest());
        assert!(oldest_closed.try_recv().is_ok());
        assert_eq!(registry.len(), 0);
    }

    #[test]
    fn the_cap_stays_under_the_descriptor_limit() {
        let commands = crate::config::Quotas::default().commands_at_once;
        let reserve = RESERVED_FDS + FDS_PER_EXECUTION * commands;
        let cap = derived_connection_cap(commands);
        assert!(cap >= MIN_CONNECTIONS);
        assert!(cap + reserve <= fd_soft_limit().max(MIN_CONNECTIONS + reserve));
    }
}
