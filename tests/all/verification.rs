//! Post-change verification against real HTTP endpoints on loopback (a health endpoint and a Prometheus-compatible query endpoint, see `support/fakes.rs`): samples, states, outcomes. Durations are seconds, not minutes.

use crate::support::fakes::*;
use crate::support::*;
use chrono::Duration as ChronoDuration;
use commandbridge::domain::api::ApproveRequest;
use commandbridge::domain::verification::VerificationState;
use commandbridge::domain::{ChangeState, Priority};
use serde_json::json;
use std::time::Duration;

use VerificationState::{AwaitingOutcome, Degraded, Escalated, Verified, Watching};

// ---- verification clock --------------------------------------------------------------------------

#[tokio::test]
async fn executed_changes_open_a_fifteen_minute_verification() {
    let srv = TestServer::start(TUESDAY_10).await;
    let bob = srv.client("bob");

    let medium = create(&bob, &req("record-medium", "CHG-1234", "search", json!({}))).await;
    assert_eq!(medium.state, ChangeState::Executed);
    let finished = medium.output.as_ref().expect("output").finished_at;
    let logs = create(
        &bob,
        &req("pull-logs", "CHG-1234", "search", json!({"lines": 100})),
    )
    .await;
    assert_eq!(logs.state, ChangeState::Executed);
    let failed = create(&bob, &req("fail-medium", "CHG-1234", "search", json!({}))).await;
    assert_eq!(settled(&bob, failed.id).await.state, ChangeState::Failed);

    let vs = bob.verifications().await.expect("verifications");
    assert_eq!(
        vs.len(),
        1,
        "only the executed medium change is watched: {vs:?}"
    );
    let v = &vs[0];
    assert_eq!(v.change_id, medium.id);
    assert_eq!(v.target, "search");
    assert_eq!(v.state.as_str(), "watching");
    // Stored to the millisecond.
    let expected = finished + ChronoDuration::minutes(15);
    let off = (v.deadline - expected)
        .num_microseconds()
        .expect("small")
        .abs();
    assert!(
        off < 1000,
        "deadline {} vs executed_at + 15 min {}",
        v.deadline,
        expected
    );
    // The clock is the server's (pinned) clock, not the wall clock.
    assert!(
        (v.deadline - at("2026-11-24T10:15:00Z"))
            .num_seconds()
            .abs()
            < 60,
        "{}",
        v.deadline
    );

    let audit = bob.audit(None, Some(1000)).await.expect("audit");
    assert_eq!(
        audit
            .iter()
            .filter(|e| e.kind == "verification.started")
            .count(),
        1
    );
}

// ---- samples and states ----------------------------------------------------------------------

#[tokio::test]
async fn a_health_check_failing_mid_window_degrades_and_passing_again_recovers() {
    let svc = FakeService::start().await;
    let srv = TestServer::start_configured(clock_at(TUESDAY_10), |_| {
        verification_toml(0.08) + &service_toml("checkout", &svc, true, None)
    })
    .await;
    let bob = srv.client("bob");
    let events = collect_events(&bob);

    let change = executed(&bob, "record-medium", "CHG-1001", "checkout").await;
    let v = verification_of(&bob, change).await;
    assert!(v.health_checked && !v.error_rate_checked, "{v:#?}");
    assert_eq!(v.deadline - v.started_at, ms(4800), "0.08 minutes");
    assert_eq!(v.target, "checkout");

    // Passing at first.
    let d = wait_until(&bob, v.id, "a first sample", Duration::from_secs(3), |d| {
        !d.samples.is_empty()
    })
    .await;
    let (ok, detail) = health_of(&d.samples[0]);
    assert!(ok && detail.starts_with("200"), "{detail}");
    assert_eq!(d.verification.state, Watching);
    assert!(d.samples[0].error_rate.is_none());

    // The service starts failing: degraded, with the failing check in the sample and an event.
    svc.set_health(503);
    let d = wait_state(&bob, v.id, Degraded, Duration::from_secs(3)).await;
    let (ok, detail) = health_of(d.samples.last().expect("samples"));
    assert!(!ok && detail.starts_with("503"), "{detail}");
    let (ok, _) = health_of(d.verification.last_sample.as_ref().expect("last_sample"));
    assert!(!ok, "the list shows the failing sample too");
    let e = wait_event(
        &events,
        "verification.degraded",
        v.id,
        Duration::from_secs(2),
    )
    .await;
    assert_eq!(e.data["state"], "degraded");
    assert!(
        e.summary.contains("DEGRADED") && e.summary.contains("503"),
        "{}",
        e.summary
    );

    // Passing again: back to watching.
    svc.set_health(200);
    let d = wait_state(&bob, v.id, Watching, Duration::from_secs(3)).await;
    assert!(health_of(d.samples.last().expect("samples")).0);
    let e = wait_event(
        &events,
        "verification.recovered",
        v.id,
        Duration::from_secs(2),
    )
    .await;
    assert_eq!(e.data["state"], "watching");

    // The deadline: awaiting an outcome, with a summary that says health did not all pass.
    let d = wait_state(&bob, v.id, AwaitingOutcome, Duration::from_secs(6)).await;
    let summary = d.verification.summary.clone().expect("a summary");
    let n = d.samples.len();
    let passed = d.samples.iter().filter(|s| health_of(s).0).count();
    assert!(n >= 3 && passed >= 2 && passed < n, "{:#?}", d.samples);
    assert_eq!(summary.health_all_passed, Some(false));
    assert_eq!(summary.error_rate_exceeded, None);
    assert_eq!(summary.samples, n);
    assert_eq!(summary.failing_samples, n - passed);
    assert!(
        summary
            .text
            .contains(&format!("health passed {passed}/{n}")),
        "{}",
        summary.text
    );
    wait_event(
        &events,
        "verification.deadline",
        v.id,
        Duration::from_secs(2),
    )
    .await;
    // Every sample really asked the endpoint; polls were one interval apart, inside the window.
    assert!(svc.health_hits() >= n);
    for pair in d.samples.windows(2) {
        assert!(
            pair[1].due - pair[0].due >= ms(1000),
            "polls closer than the interval: {pair:#?}"
        );
    }
    for s in &d.samples {
        assert!(
            s.due >= v.started_at && s.due < v.deadline && s.at >= s.due,
            "{s:#?}"
        );
    }
    // A closed window takes no more samples.
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let after = bob.verification(v.id).await.expect("GET");
    assert_eq!(after.samples.len(), n, "sampled after the deadline");
    assert_eq!(after.verification.state, AwaitingOutcome);
}

#[tokio::test]
async fn an_error_rate_above_its_max_is_a_failing_sample() {
    let svc = FakeService::start().await;
    svc.set_rate(0.05);
    let srv = TestServer::start_configured(clock_at(TUESDAY_10), |_| {
        verification_toml(0.06) + &service_toml("checkout", &svc, false, Some(0.01))
    })
    .await;
    let bob = srv.client("bob");
    let change = executed(&bob, "record-medium", "CHG-1002", "checkout").await;
    let v = verification_of(&bob, change).await;
    assert!(!v.health_checked && v.error_rate_checked, "{v:#?}");
    assert_eq!(v.max_error_rate, Some(0.01));

    // 5% errors against a 1% maximum.
    let d = wait_state(&bob, v.id, Degraded, Duration::from_secs(3)).await;
    let last = d.samples.last().expect("a sample");
    assert!(last.health.is_none());
    let rate = last.error_rate.as_ref().expect("an error-rate reading");
    assert_eq!(
        (rate.value, rate.max, rate.ok),
        (Some(0.05), 0.01, false),
        "{rate:#?}"
    );
    assert!(rate.detail.contains("above"), "{}", rate.detail);

    // Back under the maximum: watching again.
    svc.set_rate(0.004);
    let d = wait_state(&bob, v.id, Watching, Duration::from_secs(3)).await;
    let rate = d.samples.last().unwrap().error_rate.clone().unwrap();
    assert_eq!((rate.value, rate.ok), (Some(0.004), true), "{rate:#?}");

    let d = wait_state(&bob, v.id, AwaitingOutcome, Duration::from_secs(5)).await;
    let summary = d.verification.summary.clone().expect("a summary");
    assert_eq!(summary.error_rate_exceeded, Some(true));
    assert_eq!(summary.peak_error_rate, Some(0.05));
    assert_eq!(summary.health_all_passed, None);
    assert!(
        summary.text.contains("exceeded") && summary.text.contains("0.0500"),
        "{}",
        summary.text
    );
    let recent = &d.verification.recent_error_rates;
    assert_eq!(recent.len(), d.samples.len(), "{recent:?}");
    assert_eq!(recent.first(), Some(&Some(0.05)));
    assert_eq!(recent.last(), Some(&Some(0.004)));

    // The endpoint was asked exactly the configured query, every time.
    let queries = svc.queries();
    assert!(queries.len() >= d.samples.len(), "{queries:?}");
    for q in &queries {
        assert_eq!(q, QUERY);
    }
}

#[tokio::test]
async fn a_target_without_checks_still_counts_down_to_its_deadline() {
    let svc = FakeService::start().await;
    let srv = TestServer::start_configured(clock_at(TUESDAY_10), |_| {
        // Checks exist, but for another service.
        verification_toml(0.05) + &service_toml("checkout", &svc, true, Some(0.01))
    })
    .await;
    let clock = srv.state().clock;
    let bob = srv.client("bob");
    let events = collect_events(&bob);
    let change = executed(&bob, "record-medium", "CHG-1003", "billing").await;
    let v = verification_of(&bob, change).await;
    assert!(!v.health_checked && !v.error_rate_checked, "{v:#?}");
    assert_eq!(v.max_error_rate, None);
    assert_eq!(v.state, Watching);
    let started = wait_event(
        &events,
        "verification.started",
        v.id,
        Duration::from_secs(2),
    )
    .await;
    assert!(
        started.summary.contains("no checks configured"),
        "{}",
        started.summary
    );

    // Halfway: watching, nothing sampled.
    sleep_until(&clock, v.started_at + ms(1500)).await;
    let d = bob.verification(v.id).await.expect("GET");
    assert_eq!(d.verification.state, Watching);
    assert!(d.samples.is_empty());

    let d = wait_state(&bob, v.id, AwaitingOutcome, Duration::from_secs(4)).await;
    let reached = clock.now();
    assert!(
        reached >= v.deadline && reached - v.deadline < ms(1500),
        "reached at {reached}, deadline {}",
        v.deadline
    );
    assert!(d.samples.is_empty() && d.verification.last_sample.is_none());
    let summary = d.verification.summary.expect("a summary");
    assert_eq!(summary.samples, 0);
    assert_eq!(
        (summary.health_all_passed, summary.error_rate_exceeded),
        (None, None)
    );
    assert!(
        summary.text.contains("no checks configured"),
        "{}",
        summary.text
    );
    assert_eq!(svc.health_hits(), 0, "another service's checks were polled");
    assert!(svc.queries().is_empty());
}

// ---- outcomes --------------------------------------------------------------------------------

#[tokio::test]
async fn outcomes_verified_after_the_deadline_and_escalation_declares_and_pauses() {
    let srv = TestServer::start_configured(clock_at(TUESDAY_10), |_| verification_toml(0.05)).await;
    let clock = srv.state().clock;
    let bob = srv.client("bob");
    let va = verification_of(
        &bob,
        executed(&bob, "record-medium", "CHG-2001", "svc-a").await,
    )
    .await;
    let vb = verification_of(
        &bob,
        executed(&bob, "record-medium", "CHG-2002", "svc-b").await,
    )
    .await;

    // Verified before the deadline: 409, saying when it can be.
    let (error, message) = api_error(bob.verification_outcome(va.id, &verified(None)).await, 409);
    assert_eq!(error, "conflict");
    assert!(message.contains("deadline"), "{message}");
    // Priority and commander belong to an escalation; unknown ids are 404.
    let mut odd = verified(None);
    odd.priority = Some(Priority::P1);
    api_error(bob.verification_outcome(va.id, &odd).await, 422);
    api_error(bob.verification_outcome(424242, &verified(None)).await, 404);

    // An escalation naming a commander who does not exist: 422, and nothing happened.
    let (_, message) = api_error(
        bob.verification_outcome(vb.id, &escalated(None, Some("nobody")))
            .await,
        422,
    );
    assert!(message.contains("nobody"), "{message}");
    assert!(bob.incidents().await.expect("incidents").is_empty());
    assert!(bob.current_window().await.expect("window").pause.is_none());
    assert!(
        bob.verification(vb.id)
            .await
            .unwrap()
            .verification
            .state
            .is_active()
    );

    // After the deadline: verified.
    wait_state(&bob, va.id, AwaitingOutcome, Duration::from_secs(5)).await;
    let done = bob
        .verification_outcome(va.id, &verified(Some("error rate flat, health green")))
        .await
        .expect("mark verified");
    assert_eq!(done.state, Verified);
    assert_eq!(done.decided_by.as_deref(), Some("bob"));
    assert_eq!(done.note.as_deref(), Some("error rate flat, health green"));
    assert_eq!(
        bob.verification(va.id).await.unwrap().verification.state,
        Verified
    );
    // A second outcome, of either kind: 409, and no incident.
    api_error(bob.verification_outcome(va.id, &verified(None)).await, 409);
    let (_, message) = api_error(
        srv.client("carol")
            .verification_outcome(va.id, &escalated(None, None))
            .await,
        409,
    );
    assert!(message.contains("verified"), "{message}");
    assert!(bob.incidents().await.expect("incidents").is_empty());

    // Escalation by bob, no commander named: a P2 incident commanded by bob, changes paused.
    let esc = bob
        .verification_outcome(vb.id, &escalated(Some("5xx on svc-b"), None))
        .await
        .expect("escalate");
    assert_eq!(esc.state, Escalated);
    let ticket = esc.incident.clone().expect("the incident's ticket");
    let incidents = bob.incidents().await.expect("incidents");
    assert_eq!(incidents.len(), 1, "{incidents:#?}");
    let inc = &incidents[0];
    assert_eq!(inc.ticket, ticket);
    assert!(ticket.starts_with("INC-2026-1124-"), "{ticket}");
    assert_eq!(inc.priority, Priority::P2);
    assert_eq!(
        (inc.commander.as_str(), inc.declared_by.as_str()),
        ("bob", "bob")
    );
    assert!(inc.is_open());
    assert!(
        inc.title.contains(&format!("#{}", vb.change_id)) && inc.title.contains("5xx on svc-b"),
        "{}",
        inc.title
    );
    let pause = bob
        .current_window()
        .await
        .expect("window")
        .pause
        .expect("changes are paused");
    assert_eq!(pause.paused_by, "bob");
    assert!(pause.reason.contains(&ticket), "{}", pause.reason);
    // A new medium change is refused.
    let (error, message) = api_error(
        bob.create_change(&req("record-medium", "CHG-2003", "svc-c", json!({})), None)
            .await,
        409,
    );
    assert_eq!(error, "refused");
    assert!(message.contains("paused"), "{message}");
    // The escalated verification stays escalated, past its deadline too.
    api_error(bob.verification_outcome(vb.id, &verified(None)).await, 409);
    sleep_until(&clock, vb.deadline + ms(1200)).await;
    let d = bob.verification(vb.id).await.expect("GET");
    assert_eq!(d.verification.state, Escalated);
    assert_eq!(d.verification.incident.as_deref(), Some(ticket.as_str()));
    assert_eq!(d.verification.decided_by.as_deref(), Some("bob"));
    assert_eq!(bob.incidents().await.unwrap().len(), 1);
}

#[tokio::test]
async fn an_escalated_verification_is_no_longer_polled() {
    let svc = FakeService::start().await;
    let srv = TestServer::start_configured(clock_at(TUESDAY_10), |_| {
        verification_toml(0.06) + &service_toml("checkout", &svc, true, None)
    })
    .await;
    let bob = srv.client("bob");
    let v = verification_of(
        &bob,
        executed(&bob, "record-medium", "CHG-2101", "checkout").await,
    )
    .await;
    wait_until(&bob, v.id, "a first sample", Duration::from_secs(3), |d| {
        !d.samples.is_empty()
    })
    .await;
    bob.verification_outcome(v.id, &escalated(Some("looks bad"), None))
        .await
        .expect("escalate");
    // A poll already on its way may still land; after that the service is left alone.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let hits = svc.health_hits();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        svc.health_hits(),
        hits,
        "the verifier kept polling the health URL of an escalated (closed) verification"
    );
    let d = bob.verification(v.id).await.expect("GET");
    assert_eq!(d.verification.state, Escalated);
}

// ---- end to end ------------------------------------------------------------------------------

#[tokio::test]
async fn end_to_end_request_approve_execute_sample_deadline_verified_audited() {
    let svc = FakeService::start().await;
    svc.set_rate(0.002);
    let srv = TestServer::start_configured(clock_at(TUESDAY_10), |_| {
        verification_toml(0.05) + &service_toml("checkout", &svc, true, Some(0.01))
    })
    .await;
    let (alice, bob) = (srv.client("alice"), srv.client("bob"));

    // alice (L1) requests a high-risk change; bob (L2) approves; it runs.
    let c = create(
        &alice,
        &req("record-high", "CHG-5001", "checkout", json!({})),
    )
    .await;
    assert_eq!(c.state, ChangeState::PendingApproval);
    let c = bob
        .approve(c.id, &ApproveRequest::default())
        .await
        .expect("approve");
    let c = settled(&bob, c.id).await;
    assert_eq!(c.state, ChangeState::Executed);
    assert_eq!(srv.runs_of("checkout"), 1);

    // The verification samples the real endpoints until its deadline.
    let v = verification_of(&alice, c.id).await;
    assert!(v.health_checked && v.error_rate_checked);
    let d = wait_state(&alice, v.id, AwaitingOutcome, Duration::from_secs(6)).await;
    assert!(d.samples.len() >= 2, "{:#?}", d.samples);
    assert!(d.samples.iter().all(|s| s.ok()), "{:#?}", d.samples);
    let n = d.samples.len();
    let summary = d.verification.summary.clone().expect("a summary");
    assert_eq!(summary.health_all_passed, Some(true));
    assert_eq!(summary.error_rate_exceeded, Some(false));
    assert_eq!(summary.peak_error_rate, Some(0.002));
    assert_eq!(
        summary.text,
        format!("health passed {n}/{n}; error rate peaked at 0.0020 (max 0.01)")
    );

    let done = alice
        .verification_outcome(v.id, &verified(Some("checkout healthy")))
        .await
        .expect("verified");
    assert_eq!(done.state, Verified);
    assert_eq!(done.decided_by.as_deref(), Some("alice"));
    let list = alice.verifications().await.expect("list");
    assert_eq!(
        list.iter().find(|x| x.id == v.id).map(|x| x.state),
        Some(Verified)
    );

    // The audit log tells the story, in order.
    let audit = bob.audit(None, Some(1000)).await.expect("audit");
    let kinds = |subject: String| -> Vec<String> {
        audit
            .iter()
            .filter(|e| e.subject == subject)
            .map(|e| e.kind.clone())
            .collect()
    };
    assert_eq!(
        kinds(format!("change:{}", c.id)),
        ["change.requested", "change.approved", "change.executed"]
    );
    assert_eq!(
        kinds(format!("verification:{}", v.id)),
        [
            "verification.started",
            "verification.deadline",
            "verification.verified"
        ]
    );
    let last = audit.last().expect("entries");
    assert_eq!(
        (last.kind.as_str(), last.actor.as_str()),
        ("verification.verified", "alice")
    );

    // And the hash chain is intact, as the real binary checks it.
    let out = audit_verify(&srv.db_url()).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "verify failed: {stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("intact") && stdout.contains(&format!("{} entries", audit.len())),
        "{stdout}"
    );
}
