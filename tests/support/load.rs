//! Load that an attacker (or a busy day) puts on a server, shared by the resource tests and the
//! attack benchmark: half-open connections, event streams nobody reads, many changes.

use commandbridge::client::ApiClient;
use commandbridge::domain::Level;
use commandbridge::server::{store::Store, users};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A request head that never ends: what a slowloris client sends, then nothing more.
const PARTIAL_HEAD: &[u8] = b"GET /api/v1/me HTTP/1.1\r\nHost: x\r\nX-Slow: ";

/// Opens a connection and sends the start of a request head, never the end. `None` when the
/// connection is refused or reset at once (a server that sheds load may do either).
pub async fn half_open(addr: SocketAddr) -> Option<TcpStream> {
    let mut s = tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(addr))
        .await
        .ok()?
        .ok()?;
    s.write_all(PARTIAL_HEAD).await.ok()?;
    Some(s)
}

/// Keeps attempting half-open connections, holding at most `hold` at a time (the oldest is let
/// go first, as a real attacker recycles sockets), until `attempts` were made or `deadline`
/// passed. Returns how many connected, and the connections still held.
pub async fn slowloris(
    addr: SocketAddr,
    attempts: usize,
    hold: usize,
    deadline: Duration,
) -> (usize, Vec<TcpStream>) {
    let start = std::time::Instant::now();
    let mut held = std::collections::VecDeque::with_capacity(hold);
    let mut connected = 0;
    for _ in 0..attempts {
        if start.elapsed() > deadline {
            break;
        }
        if let Some(s) = half_open(addr).await {
            connected += 1;
            held.push_back(s);
        }
        if held.len() > hold {
            held.pop_front();
        }
    }
    (connected, held.into())
}

/// Adds operators `load-0`, `load-1`, … to the server's database (as `user add` would, in
/// another process, while the server runs) and returns their tokens.
pub async fn add_operators(db_url: &str, n: usize) -> Vec<String> {
    let store = Store::open(db_url).await.expect("open the store");
    let mut tokens = Vec::with_capacity(n);
    for i in 0..n {
        tokens.push(
            users::add(&store, &format!("load-{i}"), Level::L1)
                .await
                .expect("add an operator"),
        );
    }
    store.close().await;
    tokens
}

/// Creates `n` changes that wait for approval (a high-risk action requested by an L1), from
/// `clients` concurrent clients with `token`, so each adds its row and its event. Returns their
/// ids.
pub async fn pending_changes(base: &str, token: &str, n: usize, clients: usize) -> Vec<i64> {
    let mut tasks = Vec::new();
    for c in 0..clients {
        // Each task its own client, so its own connection.
        let client = ApiClient::new(base, token).expect("a client");
        let count = n / clients + usize::from(c < n % clients);
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::with_capacity(count);
            for i in 0..count {
                let r = super::req(
                    "record-high",
                    "CHG-1234",
                    &format!("load-{c}-{i}"),
                    serde_json::Value::Null,
                );
                ids.push(super::create(&client, &r).await.id);
            }
            ids
        }));
    }
    let mut ids = Vec::with_capacity(n);
    for t in tasks {
        ids.extend(t.await.expect("a seeding task"));
    }
    ids
}

/// Opens an event stream replaying everything after `last_event_id` and reads only the status
/// line: the server writes until the socket is full, then must wait. The receive window is
/// small, so the kernel takes little off the server's hands and what a stream costs shows in the
/// server's memory, as with a slow reader across a real network. Returns the status and the
/// connection, open until dropped.
pub async fn unread_stream(addr: SocketAddr, token: &str, last_event_id: i64) -> (u16, TcpStream) {
    let socket = tokio::net::TcpSocket::new_v4().expect("a socket");
    socket
        .set_recv_buffer_size(4096)
        .expect("a small receive buffer");
    let mut s = socket.connect(addr).await.expect("connect");
    let head = format!(
        "GET /api/v1/events HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         Last-Event-ID: {last_event_id}\r\n\r\n"
    );
    s.write_all(head.as_bytes())
        .await
        .expect("send the request");
    let mut status = [0u8; 12];
    s.read_exact(&mut status).await.expect("a status line");
    let code = std::str::from_utf8(&status[9..12])
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP status line: {status:?}"));
    (code, s)
}

/// What the kernel holds for each established connection whose server side is `addr` (IPv4),
/// from `/proc/net/tcp`: bytes the server has sent that its client has not taken yet (send
/// queue), and bytes its client sent that the server has not read yet (receive queue).
pub fn server_queues(addr: SocketAddr) -> Vec<(u64, u64)> {
    let table = std::fs::read_to_string("/proc/net/tcp").expect("read /proc/net/tcp");
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (local, state, queues) = (fields.get(1)?, fields.get(3)?, fields.get(4)?);
            let port = u16::from_str_radix(local.split_once(':')?.1, 16).ok()?;
            let (tx, rx) = queues.split_once(':')?;
            // 01 is ESTABLISHED.
            (port == addr.port() && *state == "01").then_some((
                u64::from_str_radix(tx, 16).ok()?,
                u64::from_str_radix(rx, 16).ok()?,
            ))
        })
        .collect()
}

/// Connections to `addr` whose server side holds bytes the server has not read yet: requests
/// that have arrived but that the server has not looked at. Counts connections not yet accepted
/// too, since the kernel queues what their clients send.
pub fn unread_requests(addr: SocketAddr) -> usize {
    server_queues(addr)
        .into_iter()
        .filter(|&(_, rx)| rx > 0)
        .count()
}

/// A high-risk change an L1 requests with a CHG ticket: inside a window it ends
/// `pending_approval`, the load the throughput benchmarks measure.
pub fn pending_request(i: usize) -> commandbridge::domain::api::ChangeRequest {
    commandbridge::domain::api::ChangeRequest {
        action: "blacklist-ip".into(),
        ticket: "CHG-4711".into(),
        target: format!("edge-{:02}", i % 32),
        params: [("ip".to_string(), serde_json::json!("203.0.113.7"))].into(),
        reason: "throughput benchmark".into(),
        run_at: None,
    }
}

/// A benchmark's size from the environment (`BENCH_STREAMS=…`), or `default`: a positive whole
/// number, or an error naming the variable.
pub fn env_number(name: &str, default: usize) -> Result<usize, String> {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| format!("{name} must be a positive whole number")),
        Err(_) => Ok(default),
    }
}
