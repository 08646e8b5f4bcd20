//! The live event stream (SSE): live delivery, replay after a reconnect, shutdown with streams open.

use crate::support::*;
use commandbridge::domain::ChangeState;
use futures::StreamExt;
use serde_json::json;
use std::time::Duration;

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
