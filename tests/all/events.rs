//! The live event stream (SSE): live delivery, replay after a reconnect, shutdown with streams
//! open, every event exactly once under concurrent commits, behind a proxy, across replicas.

use crate::support::binary::{BinaryOptions, BinaryServer};
use crate::support::*;
use commandbridge::client::ApiClient;
use commandbridge::domain::ChangeState;
use commandbridge::domain::api::Event;
use futures::StreamExt;
use serde_json::json;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

// ---- SSE -------------------------------------------------------------------------------------

#[tokio::test]
async fn events_arrive_live_and_a_reconnect_replays_exactly_the_missed_ones() {
    let srv = TestServer::start(TUESDAY_10).await;
    let (alice, bob) = (srv.client("alice"), srv.client("bob"));

    let mut stream = bob.events(None);
    // The stream connects when first polled; wait until the server has registered it, so the
    // change below happens after it started listening.
    let mut pending_first = Box::pin(next_event(&mut stream));
    let connected = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if srv.metric("commandbridge_sse_connections_total").await >= 1.0 {
                return;
            }
            tokio::select! {
                _ = &mut pending_first => panic!("an event arrived before any change"),
                _ = tokio::time::sleep(Duration::from_millis(20)) => {}
            }
        }
    })
    .await;
    connected.expect("the event stream connects");

    let c1 = create(&alice, &req("record-high", "CHG-1", "svc-1", json!({}))).await;
    let e = pending_first.await;
    assert_eq!(e.kind, "change.requested");
    assert_eq!(e.data["id"], c1.id);
    assert_eq!(e.actor, "alice");
    let mut last = e.seq;

    let c2 = create(&alice, &req("record-high", "CHG-1", "svc-2", json!({}))).await;
    let e = next_event(&mut stream).await;
    assert_eq!(
        (e.kind.as_str(), e.data["id"].as_i64()),
        ("change.requested", Some(c2.id))
    );
    assert_eq!(e.seq, last + 1);
    last = e.seq;
    drop(stream);

    // While disconnected: a request, an approval that executes, a low-risk run, a denial.
    let c3 = create(&alice, &req("record-high", "CHG-1", "svc-3", json!({}))).await;
    let approved = bob.approve(c1.id, &approve()).await.expect("approve");
    assert_eq!(approved.state, ChangeState::Executed);
    let logs = create(
        &alice,
        &req("pull-logs", "CHG-1", "svc-4", json!({"lines": 3})),
    )
    .await;
    bob.deny(c2.id, &deny("not now")).await.expect("deny");
    let missed = [
        ("change.requested", c3.id),
        ("change.approved", c1.id),
        ("change.executed", c1.id),
        ("verification.started", c1.id),
        ("change.requested", logs.id),
        ("change.executed", logs.id),
        ("change.denied", c2.id),
    ];

    let mut stream = bob.events(Some(last));
    let mut got = Vec::new();
    for _ in 0..missed.len() {
        let e = next_event(&mut stream).await;
        assert_eq!(
            e.seq,
            last + 1,
            "no gap, no duplicate: {} after {last}",
            e.seq
        );
        last = e.seq;
        let id = e
            .data
            .get("change_id")
            .or_else(|| e.data.get("id"))
            .and_then(|v| v.as_i64());
        got.push((e.kind.clone(), id.expect("the event names its change")));
    }
    let want: Vec<(String, i64)> = missed.iter().map(|(k, id)| (k.to_string(), *id)).collect();
    assert_eq!(got, want, "exactly the missed events, in order");
    // Nothing else is queued ...
    assert!(
        tokio::time::timeout(Duration::from_millis(300), stream.next())
            .await
            .is_err(),
        "no extra events after the replay"
    );
    // ... and live events follow the replay.
    let c5 = create(&alice, &req("record-high", "CHG-1", "svc-5", json!({}))).await;
    let e = next_event(&mut stream).await;
    assert_eq!(
        (e.kind.as_str(), e.data["id"].as_i64()),
        ("change.requested", Some(c5.id))
    );
    assert_eq!(e.seq, last + 1);
    assert_eq!(
        srv.metric("commandbridge_last_event_seq").await as i64,
        e.seq
    );

    // Replaying from 0 starts at the first event ever.
    let mut all = bob.events(Some(0));
    assert_eq!(next_event(&mut all).await.seq, 1);
}

#[tokio::test]
async fn stopping_the_server_does_not_wait_for_open_event_streams() {
    let mut srv = TestServer::start(TUESDAY_10).await;
    let bob = srv.client("bob");
    let mut stream = bob.events(Some(0));
    assert_eq!(next_event(&mut stream).await.seq, 1);
    // A dashboard left open must not keep the server from shutting down (SIGTERM, Ctrl-C).
    let running = srv.take_running();
    let stopped = tokio::time::timeout(Duration::from_secs(5), running.stop()).await;
    assert!(
        stopped.is_ok(),
        "Running::stop hung for 5 s while an event stream was open"
    );
    drop(stream);
}

/// A stream the server has accepted and greeted with `stream.ready`, so every change made after
/// this returns is one it must deliver.
async fn connected(client: &ApiClient, last_event_id: Option<i64>) -> Events {
    let mut stream = client
        .open_events(last_event_id, 0)
        .await
        .expect("the event stream opens");
    let ready = tokio::time::timeout(Duration::from_secs(2), stream.next())
        .await
        .expect("stream.ready within 2 s")
        .expect("the stream is open")
        .expect("a valid event");
    assert_eq!(ready.kind, "stream.ready");
    stream
}

/// Reads `n` events and checks they are the `change.requested` events of exactly `ids`, each
/// once, in increasing sequence order.
async fn exactly_once(stream: &mut Events, ids: &[i64]) -> Vec<Event> {
    let mut got = Vec::new();
    for _ in 0..ids.len() {
        got.push(next_event(stream).await);
    }
    assert!(
        got.windows(2).all(|w| w[0].seq < w[1].seq),
        "events out of order or repeated: {:?}",
        got.iter().map(|e| e.seq).collect::<Vec<_>>()
    );
    let seen: Vec<i64> = got
        .iter()
        .map(|e| {
            assert_eq!(e.kind, "change.requested", "{e:?}");
            e.data["id"].as_i64().expect("the event names its change")
        })
        .collect();
    let unique: BTreeSet<i64> = seen.iter().copied().collect();
    assert_eq!(unique.len(), seen.len(), "a change's event came twice");
    assert_eq!(
        unique,
        ids.iter().copied().collect(),
        "not the changes made"
    );
    assert!(
        tokio::time::timeout(Duration::from_millis(300), stream.next())
            .await
            .is_err(),
        "an event after the last change"
    );
    got
}

#[tokio::test]
async fn a_stream_sees_every_event_exactly_once_while_many_are_committed_concurrently() {
    let srv = TestServer::start(TUESDAY_10).await;
    let bob = srv.client("bob");
    let mut live = connected(&bob, None).await;
    let ids = load::pending_changes(srv.base(), srv.token("alice"), 120, 12).await;
    let got = exactly_once(&mut live, &ids).await;
    // What the live stream sent is what the table holds: a replay gives the same events.
    let mut replay = connected(&bob, Some(got[0].seq - 1)).await;
    let again = exactly_once(&mut replay, &ids).await;
    assert_eq!(got, again);
}

#[tokio::test]
async fn an_event_committed_without_a_wake_up_still_arrives_within_the_poll() {
    let srv = TestServer::start(TUESDAY_10).await;
    let mut live = connected(&srv.client("bob"), None).await;
    // Another process's commit: no local wake-up and no NOTIFY, only the table changes.
    let t = Instant::now();
    srv.db
        .tamper(&["INSERT INTO events (at, kind, actor, summary, data) \
             VALUES (0, 'test.external', 'someone', 'written elsewhere', '{}')"])
        .await;
    let e = next_event(&mut live).await;
    assert_eq!(e.kind, "test.external");
    // The reader looks at the table every second whatever happens; the rest is the read.
    assert!(
        t.elapsed() < Duration::from_millis(1500),
        "arrived after {:?}",
        t.elapsed()
    );
}

#[tokio::test]
async fn the_stream_is_not_buffered_by_proxies_and_an_idle_one_gets_keep_alives() {
    let srv = TestServer::start(TUESDAY_10).await;
    let resp = srv
        .raw_as("bob", reqwest::Method::GET, "/api/v1/events")
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .expect("GET /events");
    assert_eq!(resp.status(), 200);
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    assert_eq!(header("x-accel-buffering").as_deref(), Some("no"));
    assert_eq!(header("cache-control").as_deref(), Some("no-cache"));
    assert!(header("content-type").is_some_and(|t| t.starts_with("text/event-stream")));
    let mut body = resp.bytes_stream();
    let mut text = String::new();
    // The greeting, then nothing happens: within 15 s (and a margin) a comment line must come,
    // which is what keeps a proxy's idle timeout from cutting the stream.
    let deadline = Instant::now() + Duration::from_secs(18);
    while !text.contains("\n:\n") {
        let left = deadline.saturating_duration_since(Instant::now());
        let chunk = tokio::time::timeout(left, body.next())
            .await
            .unwrap_or_else(|_| panic!("no keep-alive within 18 s; got {text:?}"))
            .expect("the stream is open")
            .expect("a chunk");
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(text.starts_with("id: "), "{text:?}");
    assert!(text.contains("event: stream.ready"), "{text:?}");
}

#[tokio::test]
async fn after_in_the_query_replays_as_last_event_id_does() {
    let srv = TestServer::start(TUESDAY_10).await;
    let alice = srv.client("alice");
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(
            create(
                &alice,
                &req("record-high", "CHG-1", &format!("svc-{i}"), json!({})),
            )
            .await
            .id,
        );
    }
    let resp = srv
        .raw_as("bob", reqwest::Method::GET, "/api/v1/events?after=1")
        .send()
        .await
        .expect("GET /events?after=1");
    assert_eq!(resp.status(), 200);
    let mut body = resp.bytes_stream();
    let mut text = String::new();
    while !text.contains("id: 3\n") {
        let chunk = tokio::time::timeout(Duration::from_secs(2), body.next())
            .await
            .unwrap_or_else(|_| panic!("events 2 and 3 within 2 s; got {text:?}"))
            .expect("the stream is open")
            .expect("a chunk");
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    let sent: Vec<&str> = text.lines().filter(|l| l.starts_with("id: ")).collect();
    assert_eq!(
        sent,
        ["id: 1", "id: 2", "id: 3"],
        "ready (at 1), then 2 and 3"
    );
    for bad in ["?after=-1", "?after=soon"] {
        send(srv.raw_as("bob", reqwest::Method::GET, &format!("/api/v1/events{bad}")))
            .await
            .error(422);
    }
}

// ---- Several replicas (PostgreSQL) -----------------------------------------------------------

async fn two_replicas() -> (BinaryServer, BinaryServer) {
    let a = BinaryServer::start(BinaryOptions::default()).await;
    let b = a.replica().await;
    (a, b)
}

#[tokio::test]
async fn a_change_on_one_replica_reaches_streams_on_the_other_within_a_second() {
    if !postgres_only("SSE across replicas") {
        return;
    }
    let (a, b) = two_replicas().await;
    let mut on_b = connected(&b.client("bob"), None).await;
    for i in 0..3 {
        let t = Instant::now();
        let c = create(
            &a.client("alice"),
            &req("record-high", "CHG-1", &format!("svc-{i}"), json!({})),
        )
        .await;
        let e = next_event(&mut on_b).await;
        let took = t.elapsed();
        assert_eq!(
            (e.kind.as_str(), e.data["id"].as_i64()),
            ("change.requested", Some(c.id))
        );
        assert!(
            took < Duration::from_secs(1),
            "change {i} reached B after {took:?}"
        );
    }
}

#[tokio::test]
async fn a_client_that_moves_to_another_replica_resumes_and_gets_exactly_the_rest() {
    if !postgres_only("resume on another replica") {
        return;
    }
    let (a, b) = two_replicas().await;
    let mut on_a = connected(&a.client("bob"), None).await;
    let first = load::pending_changes(&a.base, a.token("alice"), 3, 1).await;
    let read = exactly_once(&mut on_a, &first).await;
    drop(on_a);
    // While it moves: changes on both replicas.
    let mut missed = load::pending_changes(&a.base, a.token("alice"), 4, 2).await;
    missed.extend(load::pending_changes(&b.base, b.token("alice"), 4, 2).await);
    let last = read.last().expect("events were read").seq;
    let mut on_b = connected(&b.client("bob"), Some(last)).await;
    exactly_once(&mut on_b, &missed).await;
    // And it is live on B for changes made on A.
    let next = load::pending_changes(&a.base, a.token("alice"), 1, 1).await;
    exactly_once(&mut on_b, &next).await;
}

#[tokio::test]
async fn streams_on_both_replicas_see_every_event_once_while_both_commit() {
    if !postgres_only("concurrent commits on two replicas") {
        return;
    }
    let (a, b) = two_replicas().await;
    let mut on_a = connected(&a.client("bob"), None).await;
    let mut on_b = connected(&b.client("dave"), None).await;
    let (from_a, from_b) = tokio::join!(
        load::pending_changes(&a.base, a.token("alice"), 60, 6),
        load::pending_changes(&b.base, b.token("alice"), 60, 6),
    );
    let all: Vec<i64> = from_a.into_iter().chain(from_b).collect();
    let seen_a = exactly_once(&mut on_a, &all).await;
    let seen_b = exactly_once(&mut on_b, &all).await;
    assert_eq!(
        seen_a, seen_b,
        "both replicas send the same events in the same order"
    );
}

/// How many connections of the database at `url` listen for events (one per replica).
async fn listening(url: &str) -> i64 {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(url)
        .await
        .expect("connect to the database");
    let n = sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity \
         WHERE datname = current_database() AND query LIKE 'LISTEN%'",
    )
    .fetch_one(&mut conn)
    .await
    .expect("count the listeners");
    let _ = conn.close().await;
    n
}

#[tokio::test]
async fn a_replica_whose_listen_connection_is_cut_listens_again_and_delivers() {
    if !postgres_only("LISTEN reconnects") {
        return;
    }
    let (a, b) = two_replicas().await;
    let mut on_b = connected(&b.client("bob"), None).await;
    assert_eq!(listening(&a.db_url()).await, 2, "one listener per replica");
    // What a restarted PostgreSQL or a proxy's idle cut does to the listeners.
    a.db.tamper(&["SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND query LIKE 'LISTEN%'"])
        .await;
    let changes = load::pending_changes(&a.base, a.token("alice"), 2, 1).await;
    exactly_once(&mut on_b, &changes).await;
    let t = Instant::now();
    while listening(&a.db_url()).await < 2 {
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "the replicas did not listen again within 5 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let t = Instant::now();
    let c = load::pending_changes(&a.base, a.token("alice"), 1, 1).await;
    exactly_once(&mut on_b, &c).await;
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "after {:?}",
        t.elapsed()
    );
}
