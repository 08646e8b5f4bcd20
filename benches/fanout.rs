//! SSE fan-out: how long one committed change takes to reach the last of many subscribers.
//!
//! 1. One `commandbridge serve` (the real binary, SQLite) with 1,000 event streams open. Each
//!    round one `POST /changes` that ends `pending_approval` (one `change.requested` event); the
//!    figure is the time from sending the POST to the 1,000th subscriber reading the event.
//! 2. The same run, a bare server built here (tokio TCP, no HTTP library): it holds 1,000
//!    sockets and, when a POST triggers it, writes one pre-encoded SSE event of the same size to
//!    each. Measured the same way. Target: the server's p99 within 1.5× the bare one's.
//! 3. Two `serve` replicas on one fresh PostgreSQL database, the 1,000 streams split between
//!    them, the POSTs alternating between them. Target: p99 under 100 ms. Skipped, and said so,
//!    without a PostgreSQL at `CB_TEST_POSTGRES` (default the local one, as the tests use).
//!
//! Subscribers are raw TCP connections that only look for the event's name in the bytes, so
//! the client side costs the same for every server. `cargo bench --bench fanout`;
//! `BENCH_SUBSCRIBERS` (default 1000) and `BENCH_ROUNDS` (default 30) change the two numbers;
//! `CB_BIN=/path/to/commandbridge` measures another build (e.g. one from before a change).
//! Loopback only; it stops by itself.

#[path = "../tests/support/mod.rs"]
mod support;

use commandbridge::domain::api::Event;
use hdrhistogram::Histogram;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::binary::{BinaryOptions, BinaryServer};
use support::load;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{broadcast, mpsc};

type Failure = Box<dyn std::error::Error + Send + Sync>;

/// What each subscriber looks for: the SSE `event:` line of a new change.
const MARKER: &[u8] = b"event: change.requested";
const TARGET_VS_BARE: f64 = 1.5;
const TARGET_REPLICAS_MS: f64 = 100.0;
/// Rounds before the measured ones: connections, caches and the allocator warm up.
const WARMUP_ROUNDS: usize = 3;
/// A round whose event has not reached every subscriber by then fails the benchmark.
const ROUND_PATIENCE: Duration = Duration::from_secs(10);
/// Between rounds, so one round's writes are done before the next POST.
const PAUSE: Duration = Duration::from_millis(100);

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// Subscribers and the bare server's sockets are both in this process: two descriptors per
/// subscriber, more than the usual soft limit of 1,024.
fn raise_fd_limit(needed: u64) -> Result<(), Failure> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return Err("getrlimit(RLIMIT_NOFILE) failed".into());
        }
        if lim.rlim_cur < needed {
            lim.rlim_cur = lim.rlim_max.min(needed.max(lim.rlim_cur));
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
    if lim.rlim_cur < needed {
        return Err(format!(
            "{needed} file descriptors needed, the hard limit allows {}; raise `ulimit -Hn`",
            lim.rlim_max
        )
        .into());
    }
    Ok(())
}

fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

/// One line of the table: the latencies of the measured rounds, in microseconds.
struct Row {
    setup: String,
    /// Until the last subscriber read the event: the figure the targets are about.
    latency: Histogram<u64>,
    /// Until the first one did: the part that does not grow with the subscribers (the request,
    /// the commit, the read of the event).
    first: Histogram<u64>,
}

impl Row {
    fn new(setup: &str) -> Result<Row, Failure> {
        Ok(Row {
            setup: setup.to_string(),
            // Bounded: an auto-sized histogram saturates `saturating_record` at its initial,
            // tiny highest value.
            latency: Histogram::new_with_bounds(1, ROUND_PATIENCE.as_micros() as u64, 3)?,
            first: Histogram::new_with_bounds(1, ROUND_PATIENCE.as_micros() as u64, 3)?,
        })
    }

    /// Records round `round`, unless it is a warm-up round.
    fn record(&mut self, round: usize, (first, last): (Duration, Duration)) {
        if round >= WARMUP_ROUNDS {
            self.first.saturating_record(first.as_micros() as u64);
            self.latency.saturating_record(last.as_micros() as u64);
        }
    }

    fn ms(&self, q: f64) -> f64 {
        self.latency.value_at_quantile(q) as f64 / 1000.0
    }

    fn print(&self, target: &str) {
        println!(
            "{:<44} {:>8.1} {:>8.1} {:>8.1} {:>8.1} {:>8.1} {:>8.1}  {target}",
            self.setup,
            self.first.value_at_quantile(0.5) as f64 / 1000.0,
            self.first.value_at_quantile(0.99) as f64 / 1000.0,
            self.ms(0.5),
            self.ms(0.9),
            self.ms(0.99),
            self.latency.max() as f64 / 1000.0
        );
    }
}

fn main() -> Result<(), Failure> {
    commandbridge::tls::install_provider();
    let n = support::load::env_number("BENCH_SUBSCRIBERS", 1000)?;
    let rounds = support::load::env_number("BENCH_ROUNDS", 30)?;
    // The bare server's sockets, its subscribers' and the real server's subscribers'.
    raise_fd_limit(3 * n as u64 + 256)?;
    println!(
        "binary: {}",
        options().bin.map_or(support::binary::BIN.to_string(), |b| b
            .display()
            .to_string())
    );
    println!(
        "fanout: {n} subscribers, {rounds} rounds (+{WARMUP_ROUNDS} warm-up), {} CPUs, load \
         average at start {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        loadavg()
    );
    let one = runtime()?.block_on(one_server(n, rounds));
    let replicas = if postgres_reachable() {
        // SAFETY: the runtime above is dropped and its threads have ended; nothing else runs
        // that could read the environment meanwhile. The harness reads this variable for every
        // database it creates, so it must be set before the first.
        unsafe { std::env::set_var("CB_TEST_BACKEND", "postgres") };
        Some(runtime()?.block_on(two_replicas(n, rounds)))
    } else {
        println!(
            "PostgreSQL part SKIPPED: nothing answers at {}",
            support::db::postgres_admin_url()
        );
        None
    };
    println!("load average at end: {}", loadavg());
    println!();
    println!(
        "time from the POST to the {n}th subscriber reading the event ({rounds} rounds; \
         1st: to the first subscriber)"
    );
    println!(
        "{:<44} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}  target",
        "setup", "1st p50", "1st p99", "p50 ms", "p90 ms", "p99 ms", "max ms"
    );
    let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
    let mut missed = false;
    match one {
        Ok((bare, sqlite)) => {
            let ratio = sqlite.ms(0.99) / bare.ms(0.99);
            missed |= ratio > TARGET_VS_BARE;
            bare.print("(baseline, interleaved with the next line)");
            sqlite.print(&format!(
                "≤ {TARGET_VS_BARE}× bare p99: {ratio:.2}× {}",
                verdict(ratio <= TARGET_VS_BARE)
            ));
        }
        Err(e) => {
            missed = true;
            println!("{:<44} FAILED: {e}", "one server (SQLite) and bare");
        }
    }
    match replicas {
        Some(Ok(r)) => {
            let p99 = r.ms(0.99);
            missed |= p99 >= TARGET_REPLICAS_MS;
            r.print(&format!(
                "< {TARGET_REPLICAS_MS} ms: {}",
                verdict(p99 < TARGET_REPLICAS_MS)
            ));
        }
        Some(Err(e)) => {
            missed = true;
            println!("{:<44} FAILED: {e}", "2 replicas (PostgreSQL)");
        }
        None => {}
    }
    if missed {
        return Err("a target was missed or a part failed (see above)".into());
    }
    Ok(())
}

fn postgres_reachable() -> bool {
    let Ok(url) = url::Url::parse(&support::db::postgres_admin_url()) else {
        return false;
    };
    let addr = format!(
        "{}:{}",
        url.host_str().unwrap_or("127.0.0.1"),
        url.port().unwrap_or(5432)
    );
    std::net::ToSocketAddrs::to_socket_addrs(&addr)
        .map(|mut addrs| {
            addrs.any(|a| std::net::TcpStream::connect_timeout(&a, Duration::from_secs(2)).is_ok())
        })
        .unwrap_or(false)
}

/// Every server here allows the streams, and the operators they need (8 streams each).
fn options() -> BinaryOptions {
    BinaryOptions {
        extra_config: "[server]\nmax_event_streams = 5000\n".into(),
        bin: std::env::var_os("CB_BIN").map(Into::into),
        ..Default::default()
    }
}

/// The real server on SQLite and the bare one, round for round in turn, so both see the same
/// background load (the machine is shared).
async fn one_server(n: usize, rounds: usize) -> Result<(Row, Row), Failure> {
    let mut server = BinaryServer::start(options()).await;
    let tokens = load::add_operators(&server.db_url(), n.div_ceil(8)).await;
    let mut on_server =
        Subscribers::open(n, |i| (server.addr, Some(tokens[i / 8].clone()))).await?;
    let alice = server.client("alice");
    // A first change, not measured, whose event the bare server copies.
    let first = support::create(&alice, &change_request(0)).await;
    on_server.reached(0, Instant::now()).await?;
    let bare = Bare::start(change_frame(&first))?;
    let mut on_bare = Subscribers::open(n, |_| (bare.addr, None)).await?;
    let http = reqwest::Client::new();
    let trigger = format!("http://{}/trigger", bare.addr);
    let mut bare_row = Row::new("bare tokio server, pre-encoded event")?;
    let mut server_row = Row::new("commandbridge serve, SQLite, 1 server")?;
    for round in 0..WARMUP_ROUNDS + rounds {
        let t0 = Instant::now();
        let triggered = http.post(&trigger).send().await?;
        if !triggered.status().is_success() {
            return Err(format!("the bare server answered {}", triggered.status()).into());
        }
        let took = on_bare.reached(round, t0).await?;
        bare_row.record(round, took);
        tokio::time::sleep(PAUSE).await;

        let t0 = Instant::now();
        support::create(&alice, &change_request(round + 1)).await;
        let took = on_server.reached(round + 1, t0).await?;
        server_row.record(round, took);
        tokio::time::sleep(PAUSE).await;
    }
    drop(on_server);
    server.stop().await;
    Ok((bare_row, server_row))
}

/// Two replicas on one PostgreSQL database, the streams split between them, the changes made
/// on each in turn.
async fn two_replicas(n: usize, rounds: usize) -> Result<Row, Failure> {
    let a = BinaryServer::start(options()).await;
    let b = a.replica().await;
    let tokens = load::add_operators(&a.db_url(), n.div_ceil(8)).await;
    let mut subscribers = Subscribers::open(n, |i| {
        let to = if i % 2 == 0 { a.addr } else { b.addr };
        (to, Some(tokens[i / 8].clone()))
    })
    .await?;
    let clients = [a.client("alice"), b.client("alice")];
    let mut row = Row::new("commandbridge serve, PostgreSQL, 2 replicas")?;
    for round in 0..WARMUP_ROUNDS + rounds {
        let t0 = Instant::now();
        support::create(&clients[round % 2], &change_request(round)).await;
        row.record(round, subscribers.reached(round, t0).await?);
        tokio::time::sleep(PAUSE).await;
    }
    Ok(row)
}

fn change_request(round: usize) -> commandbridge::domain::api::ChangeRequest {
    support::req(
        "record-high",
        "CHG-1234",
        &format!("fanout-{round}"),
        serde_json::Value::Null,
    )
}

/// The SSE frame the server sends for `change`'s request, for the bare server to send a
/// copy of the same size.
fn change_frame(change: &commandbridge::domain::Change) -> Vec<u8> {
    let event = Event {
        seq: change.id,
        at: chrono::Utc::now(),
        kind: "change.requested".into(),
        actor: "alice".into(),
        summary: format!("alice requested change #{}", change.id),
        data: serde_json::to_value(change).unwrap_or_default(),
    };
    format!(
        "id: {}\nevent: {}\ndata: {}\n\n",
        event.seq,
        event.kind,
        serde_json::to_string(&event).unwrap_or_default()
    )
    .into_bytes()
}

/// What a subscriber reports.
enum Seen {
    /// The server answered 200: the stream is open.
    Open,
    /// It read the `k`th change event at this instant.
    Event(usize, Instant),
    Failed(String),
}

/// Open event streams, each read by a task of its own.
struct Subscribers {
    n: usize,
    seen: mpsc::UnboundedReceiver<Seen>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Subscribers {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Subscribers {
    /// `target(i)`: where subscriber `i` connects, and its token.
    async fn open(
        n: usize,
        target: impl Fn(usize) -> (SocketAddr, Option<String>),
    ) -> Result<Subscribers, Failure> {
        let (tx, seen) = mpsc::unbounded_channel();
        let tasks = (0..n)
            .map(|i| {
                let (addr, token) = target(i);
                tokio::spawn(subscribe(addr, token, tx.clone()))
            })
            .collect();
        let mut subs = Subscribers { n, seen, tasks };
        let mut open = 0;
        while open < n {
            match tokio::time::timeout(Duration::from_secs(30), subs.seen.recv()).await {
                Ok(Some(Seen::Open)) => open += 1,
                Ok(Some(Seen::Failed(why))) => return Err(why.into()),
                Ok(Some(Seen::Event(..))) => return Err("an event before any change".into()),
                Ok(None) | Err(_) => {
                    return Err(format!("only {open} of {n} streams opened").into());
                }
            }
        }
        Ok(subs)
    }

    /// How long after `t0` the first and the last subscriber read their `k`th change event.
    async fn reached(&mut self, k: usize, t0: Instant) -> Result<(Duration, Duration), Failure> {
        let mut first: Option<Instant> = None;
        let mut last = t0;
        let mut reached = 0;
        let deadline = tokio::time::Instant::now() + ROUND_PATIENCE;
        while reached < self.n {
            match tokio::time::timeout_at(deadline, self.seen.recv()).await {
                Ok(Some(Seen::Event(got, at))) if got == k => {
                    reached += 1;
                    last = last.max(at);
                    first = Some(first.map_or(at, |f| f.min(at)));
                }
                Ok(Some(Seen::Event(got, _))) => {
                    return Err(format!("change event {got} while waiting for {k}").into());
                }
                Ok(Some(Seen::Failed(why))) => return Err(why.into()),
                Ok(Some(Seen::Open)) => {}
                Ok(None) | Err(_) => {
                    return Err(format!(
                        "change event {k} reached {reached} of {} subscribers within \
                         {ROUND_PATIENCE:?}",
                        self.n
                    )
                    .into());
                }
            }
        }
        Ok((first.unwrap_or(t0).saturating_duration_since(t0), last - t0))
    }
}

/// Counts occurrences of [`MARKER`] in a byte stream read in pieces.
#[derive(Default)]
struct Scanner {
    /// The end of the previous piece, in case the marker straddles two.
    carry: Vec<u8>,
}

impl Scanner {
    fn count(&mut self, piece: &[u8]) -> usize {
        let mut hay = std::mem::take(&mut self.carry);
        hay.extend_from_slice(piece);
        let mut found = 0;
        let mut i = 0;
        while i + MARKER.len() <= hay.len() {
            if &hay[i..i + MARKER.len()] == MARKER {
                found += 1;
                i += MARKER.len();
            } else {
                i += 1;
            }
        }
        // Shorter than the marker, and after the last one counted.
        self.carry = hay[i..].to_vec();
        found
    }
}

async fn subscribe(addr: SocketAddr, token: Option<String>, seen: mpsc::UnboundedSender<Seen>) {
    if let Err(why) = read_stream(addr, token, &seen).await {
        let _ = seen.send(Seen::Failed(format!("subscriber to {addr}: {why}")));
    }
}

async fn read_stream(
    addr: SocketAddr,
    token: Option<String>,
    seen: &mpsc::UnboundedSender<Seen>,
) -> Result<(), Failure> {
    let mut s = TcpStream::connect(addr).await?;
    s.set_nodelay(true)?;
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    s.write_all(
        format!(
            "GET /api/v1/events HTTP/1.1\r\nHost: {addr}\r\n{auth}Accept: text/event-stream\r\n\r\n"
        )
        .as_bytes(),
    )
    .await?;
    let mut buf = vec![0u8; 16 * 1024];
    let mut head = Vec::new();
    let mut scanner = Scanner::default();
    let mut events = 0;
    loop {
        let got = s.read(&mut buf).await?;
        let at = Instant::now();
        if got == 0 {
            return Err("the server closed the stream".into());
        }
        let mut piece = &buf[..got];
        if head.len() < 12 {
            let take = (12 - head.len()).min(piece.len());
            head.extend_from_slice(&piece[..take]);
            piece = &piece[take..];
            if head.len() == 12 {
                if &head[9..12] != b"200" {
                    return Err(format!("status {}", String::from_utf8_lossy(&head)).into());
                }
                seen.send(Seen::Open)?;
            }
        }
        for _ in 0..scanner.count(piece) {
            seen.send(Seen::Event(events, at))?;
            events += 1;
        }
    }
}

/// The baseline: a server that does nothing but hold SSE sockets and write one pre-encoded
/// event to each when a POST arrives. Runs on a runtime and threads of its own, as a server
/// process would; stops when dropped.
struct Bare {
    addr: SocketAddr,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Bare {
    fn start(frame: Vec<u8>) -> Result<Bare, Failure> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let frame: Arc<[u8]> = frame.into();
        let runtime = runtime()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        std::thread::spawn(move || {
            runtime.block_on(async move {
                let Ok(listener) = TcpListener::from_std(listener) else {
                    return;
                };
                let (trigger, _) = broadcast::channel::<()>(16);
                let accept = async {
                    while let Ok((socket, _)) = listener.accept().await {
                        tokio::spawn(bare_connection(socket, trigger.clone(), frame.clone()));
                    }
                };
                tokio::select! {
                    _ = accept => {}
                    _ = stopped => {}
                }
            });
        });
        Ok(Bare { addr, _stop: stop })
    }
}

async fn bare_connection(mut socket: TcpStream, trigger: broadcast::Sender<()>, frame: Arc<[u8]>) {
    let _ = socket.set_nodelay(true);
    let mut buf = vec![0u8; 4096];
    let mut request = Vec::new();
    // Requests without a body (the trigger's POST has none), one after another.
    loop {
        while !request.windows(4).any(|w| w == b"\r\n\r\n") {
            match socket.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => request.extend_from_slice(&buf[..n]),
            }
        }
        if request.starts_with(b"POST") {
            request.clear();
            let _ = trigger.send(());
            let reply = b"HTTP/1.1 204 No Content\r\n\r\n";
            if socket.write_all(reply).await.is_err() {
                return;
            }
            continue;
        }
        let mut wake = trigger.subscribe();
        let head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n\r\n";
        if socket.write_all(head).await.is_err() {
            return;
        }
        while wake.recv().await.is_ok() {
            if socket.write_all(&frame).await.is_err() {
                return;
            }
        }
        return;
    }
}
