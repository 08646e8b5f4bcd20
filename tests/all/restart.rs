//! What survives a restart: interrupted changes are failed, never re-run; verifications keep their deadlines.

use crate::support::fakes::*;
use crate::support::*;
use commandbridge::domain::ChangeState;
use commandbridge::domain::verification::VerificationState;
use serde_json::json;
use std::time::Duration;

use VerificationState::AwaitingOutcome;

// ---- restarts ---------------------------------------------------------------------------------

#[tokio::test]
async fn a_restart_fails_interrupted_changes_without_rerunning_and_keeps_verifications() {
    let mut srv = TestServer::start(TUESDAY_10).await;
    let bob = srv.client("bob");

    let quick = create(&bob, &req("record-medium", "CHG-1", "quick", json!({}))).await;
    assert_eq!(quick.state, ChangeState::Executed);
    let before = bob.verifications().await.expect("verifications");
    assert_eq!(before.len(), 1);

    // A command still running when the create call stops waiting: the change is `executing`.
    let slow = create(&bob, &req("slow-medium", "CHG-1", "slow", json!({}))).await;
    assert_eq!(slow.state, ChangeState::Executing);
    assert_eq!(srv.runs_of("slow"), 1, "the command started");

    srv.restart(clock_at("2026-11-24T10:00:05Z")).await;
    let bob = srv.client("bob");
    let after = bob.change(slow.id).await.expect("show");
    assert_eq!(after.state, ChangeState::Failed, "{after:?}");
    assert_eq!(
        after.outcome_reason.as_deref(),
        Some("interrupted: its server stopped")
    );
    let output = after.output.expect("the failure is explained");
    assert!(output.stderr.contains("not run again"), "{}", output.stderr);
    // Nothing starts it again, now or a moment later.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(srv.runs_of("slow"), 1, "never run twice");
    assert_eq!(
        bob.change(slow.id).await.expect("show").state,
        ChangeState::Failed
    );
    api_error(srv.client("carol").approve(slow.id, &approve()).await, 409);

    // The verification clock survived, with the same deadline.
    let clocks = |list: &[commandbridge::domain::verification::Verification]| {
        list.iter()
            .map(|v| (v.id, v.change_id, v.started_at, v.deadline, v.state))
            .collect::<Vec<_>>()
    };
    let survived = bob.verifications().await.expect("verifications");
    assert_eq!(clocks(&survived), clocks(&before));
    // Events from before the restart are still there to replay.
    let mut all = bob.events(Some(0));
    assert_eq!(next_event(&mut all).await.seq, 1);
}

#[tokio::test]
async fn a_restart_resumes_every_verification_with_its_original_deadline() {
    let svc = FakeService::start().await;
    svc.set_rate(0.001);
    let mut srv = TestServer::start_configured(clock_at(TUESDAY_10), |_| {
        verification_toml(0.1) + &service_toml("checkout", &svc, true, Some(0.01))
    })
    .await;
    let clock = srv.state().clock;
    let bob = srv.client("bob");
    let a = verification_of(
        &bob,
        executed(&bob, "record-medium", "CHG-1004", "checkout").await,
    )
    .await;
    sleep_until(&clock, a.started_at + ms(2000)).await;
    let b = verification_of(
        &bob,
        executed(&bob, "record-medium", "CHG-1005", "checkout").await,
    )
    .await;
    assert_eq!(b.deadline - b.started_at, ms(6000));
    wait_until(&bob, b.id, "a first sample", Duration::from_secs(3), |d| {
        !d.samples.is_empty()
    })
    .await;
    let before_a = bob.verification(a.id).await.expect("GET").samples.len();
    assert!(before_a >= 2, "{before_a} samples of A");

    // Stop for a second, then start again on the same database and the same clock.
    srv.stop().await;
    let stopped_at = clock.now();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let restarted_at = clock.now();
    srv.restart(clock).await;
    let bob = srv.client("bob");

    for v in [&a, &b] {
        let now = verification_of(&bob, v.change_id).await;
        assert_eq!(
            (now.id, now.started_at, now.deadline),
            (v.id, v.started_at, v.deadline),
            "the same verification, the same deadline"
        );
        assert!(now.state.is_active(), "{now:#?}");
        // Sampling resumes, and nothing was sampled while the server was down.
        let d = wait_until(
            &bob,
            v.id,
            "a sample after the restart",
            Duration::from_secs(3),
            |d| d.samples.iter().any(|s| s.at >= restarted_at),
        )
        .await;
        assert!(
            d.samples
                .iter()
                .all(|s| s.at <= stopped_at || s.at >= restarted_at),
            "sampled while stopped: {:#?}",
            d.samples
        );
    }

    // A reaches its deadline at the original instant, not a full window after the restart.
    let d = wait_state(&bob, a.id, AwaitingOutcome, Duration::from_secs(8)).await;
    let reached = clock.now();
    assert!(
        reached >= a.deadline && reached - a.deadline < ms(2000),
        "reached at {reached}, original deadline {}",
        a.deadline
    );
    let summary = d.verification.summary.clone().expect("a summary");
    assert_eq!(summary.samples, d.samples.len());
    assert!(d.samples.len() > before_a, "{:#?}", d.samples);
    assert_eq!(summary.health_all_passed, Some(true));
    assert_eq!(summary.error_rate_exceeded, Some(false));

    // B's deadline passes while the server is down: it is closed as soon as it is back.
    let b_now = bob.verification(b.id).await.expect("GET");
    assert!(b_now.verification.state.is_active(), "{b_now:#?}");
    let b_samples = b_now.samples.len();
    srv.stop().await;
    sleep_until(&clock, b.deadline + ms(500)).await;
    srv.restart(clock).await;
    let bob = srv.client("bob");
    let d = wait_state(&bob, b.id, AwaitingOutcome, Duration::from_secs(2)).await;
    assert_eq!(d.verification.deadline, b.deadline);
    assert!(
        d.samples.len() >= b_samples && d.samples.iter().all(|s| s.due < b.deadline),
        "{:#?}",
        d.samples
    );
    assert_eq!(
        d.verification.summary.expect("a summary").samples,
        d.samples.len()
    );

    // Each window was closed once, restarts or not.
    let audit = bob.audit(None, Some(1000)).await.expect("audit");
    for v in [&a, &b] {
        let closes = audit
            .iter()
            .filter(|e| {
                e.kind == "verification.deadline" && e.subject == format!("verification:{}", v.id)
            })
            .count();
        assert_eq!(closes, 1, "verification #{}", v.id);
    }
}
