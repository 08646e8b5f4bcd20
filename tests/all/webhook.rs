//! The ticket webhook: a durable outbox, retried with backoff, each message delivered once.

use crate::support::fakes::*;
use crate::support::*;
use commandbridge::domain::verification::VerificationState;
use std::time::Duration;

use VerificationState::AwaitingOutcome;

// ---- the ticket webhook ----------------------------------------------------------------------

#[tokio::test]
async fn webhook_down_then_up_gets_every_message_once() {
    let port = free_port();
    let srv = TestServer::start_configured(clock_at(TUESDAY_10), |_| {
        verification_toml(0.05) + &webhook_toml(port)
    })
    .await;
    let bob = srv.client("bob");
    let va = verification_of(
        &bob,
        executed(&bob, "record-medium", "CHG-3001", "svc-a").await,
    )
    .await;
    let vb = verification_of(
        &bob,
        executed(&bob, "record-medium", "CHG-3002", "svc-b").await,
    )
    .await;

    // While nothing listens: one escalation, then (after its deadline) one verified outcome.
    let esc = bob
        .verification_outcome(vb.id, &escalated(Some("svc-b is erroring"), None))
        .await
        .expect("escalate");
    let incident = esc.incident.expect("an incident");
    wait_state(&bob, va.id, AwaitingOutcome, Duration::from_secs(5)).await;
    bob.verification_outcome(va.id, &verified(Some("all green")))
        .await
        .expect("verify");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(
        srv.metric("commandbridge_webhook_failures_total").await >= 3.0,
        "the sender kept trying while the receiver was down"
    );
    assert_eq!(
        srv.metric("commandbridge_webhook_deliveries_total").await,
        0.0
    );

    // The receiver comes up on the configured port.
    let rx = Receiver::start_on(port, 0).await;
    rx.wait_delivered(2, Duration::from_secs(12)).await;
    // Nothing more arrives: each message once, and none is queued for another attempt.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_outbox_drained(&srv).await;
    let all = rx.all();
    assert_eq!(all.len(), 2, "{all:#?}");
    assert_ne!(all[0].key, all[1].key, "distinct idempotency keys");
    for d in &all {
        assert!(d.key.starts_with("cb-outbox-"), "{d:#?}");
        assert_eq!(d.body["kind"], d.event.as_str(), "{d:#?}");
    }
    let by_kind = |kind: &str| {
        all.iter()
            .find(|d| d.body["kind"] == kind)
            .unwrap_or_else(|| panic!("no {kind} message in {all:#?}"))
            .body
            .clone()
    };
    let outcome = by_kind("outcome");
    assert_eq!(outcome["ticket"], "CHG-3001");
    assert_eq!(outcome["outcome"], "verified");
    assert_eq!(outcome["note"], "all green");
    assert_eq!(outcome["by"], "bob");
    assert_eq!(outcome["verification"]["id"], va.id);
    assert_eq!(outcome["change"]["id"], va.change_id);
    assert!(outcome["incident"].is_null());
    let escalation = by_kind("escalation");
    assert_eq!(escalation["ticket"], "CHG-3002");
    assert_eq!(escalation["outcome"], "escalated");
    assert_eq!(escalation["incident"]["ticket"], incident.as_str());
    assert_eq!(escalation["verification"]["id"], vb.id);
    assert_eq!(
        srv.metric("commandbridge_webhook_deliveries_total").await,
        2.0
    );
}

#[tokio::test]
async fn webhook_answering_503_is_retried_and_the_message_delivered_once() {
    let port = free_port();
    let rx = Receiver::start_on(port, 2).await;
    let srv = TestServer::start_configured(clock_at(TUESDAY_10), |_| {
        verification_toml(0.05) + &webhook_toml(port)
    })
    .await;
    let bob = srv.client("bob");
    let v = verification_of(
        &bob,
        executed(&bob, "record-medium", "CHG-3101", "svc-a").await,
    )
    .await;
    bob.verification_outcome(v.id, &escalated(None, None))
        .await
        .expect("escalate");

    let delivered = rx.wait_delivered(1, Duration::from_secs(8)).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_outbox_drained(&srv).await;
    let all = rx.all();
    let answers: Vec<u16> = all.iter().map(|d| d.answered).collect();
    assert_eq!(answers, [503, 503, 200], "{all:#?}");
    assert!(
        all.iter()
            .all(|d| d.key == delivered[0].key && d.body == delivered[0].body),
        "every retry is the same message with the same key: {all:#?}"
    );
    assert_eq!(delivered[0].body["ticket"], "CHG-3101");
    assert_eq!(delivered[0].body["outcome"], "escalated");
}

#[tokio::test]
async fn an_undelivered_webhook_message_survives_a_restart() {
    let port = free_port();
    let mut srv = TestServer::start_configured(clock_at(TUESDAY_10), |_| {
        verification_toml(0.05) + &webhook_toml(port)
    })
    .await;
    let clock = srv.state().clock;
    let bob = srv.client("bob");
    let v = verification_of(
        &bob,
        executed(&bob, "record-medium", "CHG-3201", "svc-a").await,
    )
    .await;
    bob.verification_outcome(v.id, &escalated(None, None))
        .await
        .expect("escalate");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(srv.metric("commandbridge_webhook_failures_total").await >= 1.0);
    srv.stop().await;

    let rx = Receiver::start_on(port, 0).await;
    srv.restart(clock).await;
    let delivered = rx.wait_delivered(1, Duration::from_secs(5)).await;
    tokio::time::sleep(Duration::from_millis(2000)).await;
    assert_outbox_drained(&srv).await;
    assert_eq!(rx.all().len(), 1, "{:#?}", rx.all());
    assert_eq!(delivered[0].body["ticket"], "CHG-3201");
    assert_eq!(delivered[0].body["kind"], "escalation");
}
