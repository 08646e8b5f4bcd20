//! Resources no one may exhaust: descriptors (half-open connections), memory (event streams
//! nobody reads, unbounded lists) and the connection slots themselves. Each attack runs over real
//! HTTP against the real binary, with its own file-descriptor limit and its RSS read from /proc.

use crate::support::binary::{BIN, BinaryOptions, BinaryServer};
use crate::support::{load, send};
use commandbridge::domain::ChangeState;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long a request may take while the server is under attack: the clients' own patience.
const ANSWER_WITHIN: Duration = Duration::from_secs(5);

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("read /proc/<pid>/fd")
        .count()
}

/// Reads until the peer closes the connection; how long that took, or `None` if it stayed open
/// for `patience`.
async fn closed_within(s: &mut tokio::net::TcpStream, patience: Duration) -> Option<Duration> {
    let t = Instant::now();
    let mut buf = [0u8; 4096];
    tokio::time::timeout(patience, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return t.elapsed(),
                Ok(_) => {}
            }
        }
    })
    .await
    .ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_open_connections_do_not_silence_the_server() {
    // 320 descriptors leave the server ~190 connections beside its reserve (which holds the
    // commands it may run at once, 10 here): the churn of the attack below must not close a real
    // client's connection before a CPU-starved server has read its request.
    const FDS: usize = 320;
    let server = BinaryServer::start(BinaryOptions {
        fd_limit: Some(FDS as u64),
        ..Default::default()
    })
    .await;
    // More half-open connections than the process has descriptors, all held at once.
    let mut held = Vec::new();
    for _ in 0..400 {
        held.extend(load::half_open(server.addr).await);
    }
    assert!(
        open_fds(server.pid()) < FDS,
        "the server used up its descriptors: {} open",
        open_fds(server.pid())
    );
    // And the attack goes on while real clients come.
    let attack = tokio::spawn(load::slowloris(
        server.addr,
        1_500,
        400,
        Duration::from_secs(20),
    ));
    let alice = server.client("alice");
    let t = Instant::now();
    tokio::time::timeout(ANSWER_WITHIN, alice.health())
        .await
        .expect("/healthz answers under attack")
        .expect("/healthz is ok");
    let health = t.elapsed();
    let me = tokio::time::timeout(ANSWER_WITHIN, server.client("alice").me())
        .await
        .expect("/api/v1/me answers under attack")
        .expect("/api/v1/me is ok");
    assert_eq!(me.name, "alice");
    let r = crate::support::req(
        "pull-logs",
        "CHG-1234",
        "web-1",
        serde_json::json!({"lines": 100}),
    );
    let change = tokio::time::timeout(
        ANSWER_WITHIN,
        server.client("alice").create_change(&r, None),
    )
    .await
    .expect("POST /api/v1/changes answers under attack")
    .expect("the change is accepted");
    assert_eq!(change.requested_by, "alice");
    assert!(
        open_fds(server.pid()) < FDS,
        "the server used up its descriptors: {} open",
        open_fds(server.pid())
    );
    let (connected, _still_held) = attack.await.expect("the attack");
    assert!(
        connected > 400,
        "the attack should have connected many times (the server evicting), got {connected}; \
         /healthz took {health:?}"
    );
    drop(held);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_idle_and_trickling_clients_are_timed_out() {
    let server = BinaryServer::start(BinaryOptions {
        extra_config: "[server]\nheader_timeout_seconds = 1\n".into(),
        ..Default::default()
    })
    .await;
    // Half a request head, then silence.
    let mut slow = load::half_open(server.addr).await.expect("connect");
    let took = closed_within(&mut slow, Duration::from_secs(5))
        .await
        .expect("a half-open connection is closed");
    assert!(
        took >= Duration::from_millis(800),
        "closed before the timeout ({took:?}): the server should give a client its time"
    );
    // A keep-alive connection that asks once and then says nothing.
    let mut idle = tokio::net::TcpStream::connect(server.addr)
        .await
        .expect("connect");
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("send a request");
    let mut buf = [0u8; 1024];
    let n = idle.read(&mut buf).await.expect("read the answer");
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{:?}", &buf[..n]);
    closed_within(&mut idle, Duration::from_secs(5))
        .await
        .expect("an idle keep-alive connection is closed");
    // A complete head, then a body that never finishes: the body gets three times as long.
    let mut trickle = tokio::net::TcpStream::connect(server.addr)
        .await
        .expect("connect");
    let head = format!(
        "POST /api/v1/changes HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{",
        server.token("alice")
    );
    trickle.write_all(head.as_bytes()).await.expect("send");
    let t = Instant::now();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(8), trickle.read_to_end(&mut answer))
        .await
        .expect("a request whose body never arrives is answered and closed")
        .expect("read the answer");
    let answer = String::from_utf8_lossy(&answer);
    assert!(t.elapsed() >= Duration::from_secs(2), "{:?}", t.elapsed());
    assert!(answer.starts_with("HTTP/1.1 422"), "{answer}");
    assert!(answer.contains("did not arrive within 3 s"), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_streams_are_capped_per_operator_and_in_total() {
    let server = BinaryServer::start(BinaryOptions {
        extra_config: "[server]\nmax_event_streams = 12\n".into(),
        ..Default::default()
    })
    .await;
    commandbridge::tls::install_provider();
    let http = reqwest::Client::new();
    let open = |who: &str| load::unread_stream(server.addr, server.token(who), 0);
    let refused = |who: &str| {
        send(
            http.get(format!("{}/api/v1/events", server.base))
                .bearer_auth(server.token(who)),
        )
    };
    let mut alice = Vec::new();
    for _ in 0..8 {
        let (status, stream) = open("alice").await;
        assert_eq!(status, 200);
        alice.push(stream);
    }
    let body = refused("alice").await.error(429);
    assert_eq!(body.error, "too_many_streams");
    assert!(body.message.contains("8 event streams"), "{}", body.message);

    let mut bob = Vec::new();
    for _ in 0..4 {
        let (status, stream) = open("bob").await;
        assert_eq!(status, 200);
        bob.push(stream);
    }
    let body = refused("carol").await.error(503);
    assert_eq!(body.error, "unavailable");
    assert!(
        body.message.contains("12 event streams"),
        "{}",
        body.message
    );

    // A stream that ends gives its place back.
    drop(alice.pop());
    let t = Instant::now();
    loop {
        if open("carol").await.0 == 200 {
            break;
        }
        assert!(
            t.elapsed() < ANSWER_WITHIN,
            "a closed stream still counts after {ANSWER_WITHIN:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_nobody_reads_holds_little_memory() {
    const STREAMS: usize = 64;
    /// Unread streams opened before measuring, and kept open: see the warm-up below.
    const WARM: usize = 16;
    const HISTORY: usize = 2_000;
    let server = BinaryServer::start(BinaryOptions::default()).await;
    load::pending_changes(&server.base, server.token("alice"), HISTORY, 8).await;
    let tokens = load::add_operators(&server.db_url(), (WARM + STREAMS) / 8).await;
    let open = |i: usize| load::unread_stream(server.addr, &tokens[i / 8], 0);
    // Until the server has written into every socket all that fits and holds the rest: on a
    // slow machine that takes seconds, and a fixed sleep measured streams still loading a page.
    let settle = || server.quiet("the streams' replays", Duration::from_secs(60));
    // What the server allocates once, not per stream (each pooled SQLite reader's page cache,
    // the statement caches), is warmed up first by streams that replay the same history but are
    // read to the end, so they hold nothing when measuring starts.
    let mut warm = Vec::new();
    for i in 0..16 {
        let (_, mut stream) = open(i).await;
        warm.push(tokio::spawn(async move {
            let mut buf = vec![0u8; 64 * 1024];
            // Everything is sent once the server goes quiet.
            while let Ok(Ok(n)) =
                tokio::time::timeout(Duration::from_millis(500), stream.read(&mut buf)).await
            {
                if n == 0 {
                    break;
                }
            }
        }));
    }
    for w in warm {
        w.await.expect("a warm-up reader");
    }
    // That still left the readers' caches growing by some MiB while the first unread streams
    // replayed concurrently, which is no stream's cost: the first WARM unread streams are that
    // warm-up, and only the ones after them are measured.
    let mut streams = Vec::new();
    for i in 0..WARM {
        let (status, stream) = open(i).await;
        assert_eq!(status, 200);
        streams.push(stream);
    }
    settle().await;
    // The server's own memory is measured as the allocator counts it: RSS also holds what glibc
    // keeps free for reuse, and what the readers' threads grow their arenas to, which moved the
    // figure by more than a stream's cost from run to run.
    const HEAP: &str = "commandbridge_heap_in_use_bytes";
    let mut heap = vec![server.metric(HEAP).await as u64];
    for half in 0..2 {
        for i in 0..STREAMS / 2 {
            let (status, stream) = open(WARM + half * STREAMS / 2 + i).await;
            assert_eq!(status, 200);
            streams.push(stream);
        }
        settle().await;
        heap.push(server.metric(HEAP).await as u64);
    }
    // What the kernel holds for them: what was written that nobody reads.
    let queued: Vec<u64> = load::server_queues(server.addr)
        .into_iter()
        .map(|(tx, _)| tx)
        .collect();
    let open_streams = WARM + STREAMS;
    assert!(
        queued.len() >= open_streams,
        "{} connections for {open_streams} streams",
        queued.len()
    );
    let kernel = queued.iter().sum::<u64>() / open_streams as u64;
    eprintln!(
        "heap with {WARM}, {}, {open_streams} unread streams: {heap:?}; kernel send queues {} KiB each",
        WARM + STREAMS / 2,
        kernel / 1024
    );
    let per_stream = heap[2].saturating_sub(heap[0]) / STREAMS as u64;
    // 55-75 KiB here (hyper's buffers, a page of 8 events); with pages of 500 (as before the
    // fix) ~460 KiB.
    assert!(
        per_stream < 100 * 1024,
        "{STREAMS} unread streams over {HISTORY} events hold {} KiB each ({} → {} MiB of heap)",
        per_stream / 1024,
        heap[0] >> 20,
        heap[2] >> 20
    );
    // The send buffer's cap (src/server/listener.rs, SEND_BUFFER); without it ~1.5 MiB each.
    assert!(
        kernel <= 256 * 1024,
        "the kernel holds {} KiB for each of {open_streams} unread streams",
        kernel / 1024
    );
    drop(streams);
    // Every place is given back: each operator can open its 8 again.
    let t = Instant::now();
    let mut again = Vec::new();
    for token in &tokens {
        for _ in 0..8 {
            loop {
                let (status, stream) = load::unread_stream(server.addr, token, i64::MAX / 2).await;
                if status == 200 {
                    again.push(stream);
                    break;
                }
                assert!(t.elapsed() < ANSWER_WITHIN, "closed streams still count");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn change_lists_are_capped_and_the_cursor_walks_every_row() {
    const CHANGES: usize = 620;
    let server = BinaryServer::start(BinaryOptions::default()).await;
    let created: BTreeSet<i64> =
        load::pending_changes(&server.base, server.token("alice"), CHANGES, 8)
            .await
            .into_iter()
            .collect();
    commandbridge::tls::install_provider();
    let http = reqwest::Client::new();
    let get = |query: &str| {
        http.get(format!("{}/api/v1/changes{query}", server.base))
            .bearer_auth(server.token("bob"))
    };
    for bad in [
        "?limit=501",
        "?limit=20000",
        "?limit=0",
        "?before=0",
        "?before=x",
    ] {
        let body = send(get(bad)).await.error(422);
        assert!(!body.message.is_empty(), "{bad}");
    }
    // The default page and the largest one.
    let page = send(get("")).await;
    assert_eq!(page.status, 200);
    assert_eq!(page.json().as_array().expect("an array").len(), 200);
    let page = send(get("?limit=500")).await;
    assert_eq!(page.json().as_array().expect("an array").len(), 500);

    // Walk every page by the Link header, as a client that knows nothing but HTTP would.
    let mut url = "/api/v1/changes?limit=150&state=pending_approval".to_string();
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let resp = http
            .get(format!("{}{url}", server.base))
            .bearer_auth(server.token("bob"))
            .send()
            .await
            .expect("GET a page");
        assert_eq!(resp.status(), 200);
        let link = resp
            .headers()
            .get("link")
            .map(|v| v.to_str().expect("an ASCII Link").to_string());
        let items: Vec<serde_json::Value> = resp.json().await.expect("a JSON array");
        pages += 1;
        seen.extend(items.iter().map(|c| c["id"].as_i64().expect("an id")));
        assert!(items.iter().all(|c| c["state"] == "pending_approval"));
        match link {
            Some(l) => {
                assert!(l.ends_with(r#">; rel="next""#), "{l}");
                url = l
                    .trim_start_matches('<')
                    .split_once('>')
                    .expect("<url>")
                    .0
                    .to_string();
            }
            None => break,
        }
    }
    assert_eq!(pages, CHANGES.div_ceil(150));
    assert!(
        seen.windows(2).all(|w| w[0] > w[1]),
        "newest first, no repeats"
    );
    assert_eq!(seen.iter().copied().collect::<BTreeSet<_>>(), created);

    // The client the dashboard uses follows the cursor to the end.
    let all = server
        .client("bob")
        .changes_following(Some(ChangeState::PendingApproval), None, None)
        .await
        .expect("every pending change");
    assert_eq!(all.items.len(), CHANGES);
    assert_eq!(all.next_before, None);

    // The CLI: more than a page when asked, and where to go on.
    let config = tempfile::tempdir().expect("a config dir");
    let out = tokio::process::Command::new(BIN)
        .args(["change", "list", "--limit", "550", "--json"])
        .env("CB_SERVER", &server.base)
        .env("CB_TOKEN", server.token("bob"))
        .env("CB_CONFIG_DIR", config.path())
        .output()
        .await
        .expect("run change list");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed: Vec<serde_json::Value> =
        serde_json::from_slice(&out.stdout).expect("a JSON array on stdout");
    assert_eq!(listed.len(), 550);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let last = listed[549]["id"].as_i64().expect("an id");
    assert!(
        stderr.contains(&format!("--before {last}")),
        "the CLI says where to go on: {stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verification_lists_are_capped_to_the_latest() {
    let server = BinaryServer::start(BinaryOptions::default()).await;
    let alice = server.client("alice");
    let mut ids = Vec::new();
    for target in ["web-1", "web-2", "web-3"] {
        let r = crate::support::req("record-medium", "CHG-1234", target, serde_json::Value::Null);
        let change = crate::support::create(&alice, &r).await;
        crate::support::settled(&alice, change.id).await;
        ids.push(change.id);
    }
    commandbridge::tls::install_provider();
    let http = reqwest::Client::new();
    let get = |query: &str| {
        http.get(format!("{}/api/v1/verifications{query}", server.base))
            .bearer_auth(server.token("bob"))
    };
    for bad in ["?limit=501", "?limit=0", "?limit=x"] {
        let body = send(get(bad)).await.error(422);
        assert!(!body.message.is_empty(), "{bad}");
    }
    let all = send(get("")).await.json();
    assert_eq!(all.as_array().expect("an array").len(), 3);
    // The latest two, still soonest deadline first.
    let two = send(get("?limit=2")).await.json();
    let changes: Vec<i64> = two
        .as_array()
        .expect("an array")
        .iter()
        .map(|v| v["change_id"].as_i64().expect("a change id"))
        .collect();
    assert_eq!(changes, ids[1..]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_every_connection_is_busy_a_newcomer_is_told_so() {
    let server = BinaryServer::start(BinaryOptions {
        extra_config: "[server]\nmax_connections = 4\nmax_event_streams = 8\n".into(),
        ..Default::default()
    })
    .await;
    // Four open event streams: four connections, each busy with its request for as long as the
    // stream is open, so none may be closed to make room.
    let mut streams = Vec::new();
    for who in ["alice", "bob", "carol", "dave"] {
        let (status, stream) = load::unread_stream(server.addr, server.token(who), 0).await;
        assert_eq!(status, 200);
        streams.push(stream);
    }
    commandbridge::tls::install_provider();
    let http = reqwest::Client::new();
    let healthz = || http.get(format!("{}/healthz", server.base));
    // At the cap the server waits half a second for a newcomer's request, then answers anyway,
    // and an answer that comes before the request reads to the client as a broken connection. On
    // a loaded machine the client can take longer than that between connecting and sending, so
    // the request is sent while the server is stopped, and the server resumes once the request
    // waits in its socket: it finds it there however late it looks.
    let refused = {
        let paused = server.pause();
        let resume_once_queued = async {
            let t = Instant::now();
            while load::unread_requests(server.addr) == 0 {
                assert!(
                    t.elapsed() < Duration::from_secs(30),
                    "the request never reached the server's socket"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            drop(paused);
        };
        tokio::join!(send(healthz()), resume_once_queued).0
    };
    let body = refused.error(503);
    assert_eq!(body.error, "unavailable");
    assert!(
        body.message.contains("connection limit"),
        "{}",
        body.message
    );
    // A stream that ends frees its connection. Until the server has seen it close, newcomers are
    // refused, and a refusal may arrive as a broken connection (above): either way, not yet.
    drop(streams.pop());
    let t = Instant::now();
    loop {
        if let Ok(resp) = healthz().send().await {
            let status = resp.status();
            // Read to the end, so the connection goes back to the pool for the next request.
            let _ = resp.bytes().await;
            if status == 200 {
                break;
            }
        }
        assert!(
            t.elapsed() < ANSWER_WITHIN,
            "a closed stream's connection still counts"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A head larger than a connection may buffer is refused, not buffered.
    let huge = send(
        http.get(format!("{}/healthz", server.base))
            .header("x-padding", "x".repeat(32 * 1024)),
    )
    .await;
    assert_eq!(huge.status, 431);
}
