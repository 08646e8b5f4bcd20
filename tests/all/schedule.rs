//! Scheduled changes (`run_at`) and conflicts, on the server's simulated clock: `--now` a few
//! seconds before Tuesday's Off-peak window opens at 22:00 UTC, so the opening comes while the
//! test watches.

use crate::support::binary::{BinaryOptions, BinaryServer};
use crate::support::*;
use chrono::Duration as Span;
use commandbridge::client::ApiClient;
use commandbridge::domain::api::{CancelRequest, ChangeRequest, FreezeRequest, IncidentRequest};
use commandbridge::domain::policy::Outcome;
use commandbridge::domain::{Change, ChangeState, Priority, WindowKind};
use futures::StreamExt;
use serde_json::json;
use std::time::Duration;

/// Tuesday, three seconds before the Off-peak window opens (22:00 UTC); outside every window.
const BEFORE_OFF_PEAK: &str = "2026-11-24T21:59:57Z";
const OFF_PEAK_OPENS: &str = "2026-11-24T22:00:00Z";

fn scheduled(action: &str, target: &str, run_at: &str) -> ChangeRequest {
    ChangeRequest {
        run_at: Some(run_at.into()),
        ..req(action, "CHG-7100", target, json!({}))
    }
}

/// Polls change `id` until it is in `want` (within `secs` seconds).
async fn wait_for(client: &ApiClient, id: i64, want: ChangeState, secs: u64) -> Change {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let c = client.change(id).await.expect("GET /changes/{id}");
        if c.state == want {
            return c;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "change #{id} is {} after {secs} s, not {want}: {:?}",
            c.state,
            c.outcome_reason
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn cancel(reason: &str) -> CancelRequest {
    CancelRequest {
        reason: reason.into(),
    }
}

#[tokio::test]
async fn a_change_scheduled_into_the_next_window_runs_once_at_the_opening() {
    let srv = TestServer::start(BEFORE_OFF_PEAK).await;
    let (alice, bob) = (srv.client("alice"), srv.client("bob"));

    // Refused now only by the window: the preview says when the next one opens, and how.
    let p = alice
        .preview(&req("record-high", "CHG-7100", "checkout", json!({})))
        .await
        .expect("preview");
    assert_eq!(p.decision, Outcome::Blocked);
    let next = p.next_window.clone().expect("the next usable window");
    assert_eq!(
        (next.kind, next.opens_at),
        (WindowKind::OffPeak, at(OFF_PEAK_OPENS))
    );
    assert!(
        p.reasons
            .iter()
            .any(|r| r.contains("run_at: \"next_window\" would schedule it")
                && r.contains("Tue 2026-11-24 22:00 UTC")),
        "{p:?}"
    );

    // Scheduled: alice's high-risk change waits for an L2, then for its time.
    let c = create(&alice, &scheduled("record-high", "checkout", "next_window")).await;
    assert_eq!(c.state, ChangeState::PendingApproval);
    assert_eq!(c.run_at, Some(at(OFF_PEAK_OPENS)));
    let approved = bob.approve(c.id, &approve()).await.expect("bob approves");
    assert_eq!(approved.state, ChangeState::Scheduled, "not run early");
    // bob's own medium-risk change needs nobody: scheduled at once.
    let own = create(&bob, &scheduled("record-medium", "search", "next-window")).await;
    assert_eq!(own.state, ChangeState::Scheduled);
    assert!(srv.runs().is_empty(), "nothing runs before 22:00");

    let ran = wait_for(&alice, c.id, ChangeState::Executed, 10).await;
    let started = ran.output.expect("its output").started_at;
    assert!(
        started >= at(OFF_PEAK_OPENS) && started < at(OFF_PEAK_OPENS) + Span::seconds(3),
        "started at the opening, not {started}"
    );
    wait_for(&alice, own.id, ChangeState::Executed, 5).await;
    // Exactly once, however many scheduler passes went by.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!((srv.runs_of("checkout"), srv.runs_of("search")), (1, 1));
    let kinds: Vec<String> = srv
        .client("carol")
        .audit(None, None)
        .await
        .expect("audit")
        .into_iter()
        .filter(|e| e.subject == format!("change:{}", c.id))
        .map(|e| e.kind)
        .collect();
    assert!(
        kinds.iter().filter(|k| *k == "change.started").count() == 1,
        "{kinds:?}"
    );
}

#[tokio::test]
async fn a_freeze_announced_in_between_refuses_it() {
    let srv = TestServer::start(BEFORE_OFF_PEAK).await;
    let bob = srv.client("bob");
    let c = create(&bob, &scheduled("record-medium", "payments", "next_window")).await;
    assert_eq!(c.state, ChangeState::Scheduled);
    let now = at(BEFORE_OFF_PEAK);
    srv.client("carol")
        .create_freeze(&FreezeRequest {
            name: "payments launch".into(),
            starts_at: now + Span::seconds(1),
            ends_at: now + Span::hours(4),
        })
        .await
        .expect("carol announces a freeze");
    let refused = wait_for(&bob, c.id, ChangeState::Refused, 10).await;
    let why = refused.outcome_reason.expect("a reason");
    assert!(why.contains("payments launch"), "{why}");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(srv.runs().is_empty(), "never ran: {:?}", srv.runs());
}

#[tokio::test]
async fn a_scheduled_change_of_a_revoked_operator_does_not_run() {
    let mut srv = TestServer::start(BEFORE_OFF_PEAK).await;
    let c = create(
        &srv.client("dave"),
        &scheduled("record-medium", "payments", "next_window"),
    )
    .await;
    assert_eq!(
        c.state,
        ChangeState::Scheduled,
        "an L2's medium change needs nobody"
    );
    // Revoked while the server is down, so the revocation lands before the change's time
    // however slow the machine; the server comes back within the grace period.
    srv.stop().await;
    let store = commandbridge::server::store::Store::open(&srv.db_url())
        .await
        .expect("open the store");
    commandbridge::server::users::revoke(&store, "dave")
        .await
        .expect("revoke dave");
    store.close().await;
    srv.restart(clock_at("2026-11-24T22:01:00Z")).await;
    let refused = wait_for(&srv.client("carol"), c.id, ChangeState::Refused, 10).await;
    let why = refused.outcome_reason.expect("a reason");
    assert!(why.contains("dave's access was revoked"), "{why}");
    assert!(srv.runs().is_empty(), "never ran: {:?}", srv.runs());
}

#[tokio::test]
async fn a_server_stopped_across_the_start_time_ends_it_missed_after_restart() {
    let mut srv = TestServer::start(BEFORE_OFF_PEAK).await;
    let bob = srv.client("bob");
    // One due at 22:00, one at 22:08: a restart at 22:12 is past the first one's grace period
    // (10 minutes) and within the second one's.
    let missed = create(&bob, &scheduled("record-medium", "late", "next_window")).await;
    let in_grace = create(
        &bob,
        &scheduled("record-medium", "in-grace", "2026-11-24T22:08:00Z"),
    )
    .await;
    srv.stop().await;
    srv.restart(clock_at("2026-11-24T22:12:00Z")).await;
    let bob = srv.client("bob");
    let m = wait_for(&bob, missed.id, ChangeState::Missed, 10).await;
    let why = m.outcome_reason.expect("a reason");
    assert!(
        why.contains("not started within 10 minutes") && why.contains("22:00"),
        "{why}"
    );
    wait_for(&bob, in_grace.id, ChangeState::Executed, 10).await;
    assert_eq!(srv.runs(), vec!["in-grace".to_string()], "never run late");
}

#[tokio::test]
async fn a_cancelled_change_never_runs() {
    let srv = TestServer::start(BEFORE_OFF_PEAK).await;
    let (alice, bob, dave) = (srv.client("alice"), srv.client("bob"), srv.client("dave"));
    let mine = create(&alice, &scheduled("record-medium", "web", "next_window")).await;
    let bobs = create(&bob, &scheduled("record-medium", "api", "next_window")).await;
    let pending = create(&alice, &scheduled("record-high", "edge", "next_window")).await;
    assert_eq!(pending.state, ChangeState::PendingApproval);

    // An L1 cancels only their own; a reason is required.
    let (error, message) = api_error(alice.cancel(bobs.id, &cancel("not mine")).await, 403);
    assert_eq!(error, "forbidden");
    assert!(
        message.contains("requester (bob) or an L2 or L3"),
        "{message}"
    );
    let (_, message) = api_error(alice.cancel(mine.id, &cancel("  ")).await, 422);
    assert!(message.contains("reason"), "{message}");

    let c = alice
        .cancel(mine.id, &cancel("done by hand"))
        .await
        .expect("the requester cancels");
    assert_eq!(c.state, ChangeState::Cancelled);
    assert_eq!(c.outcome_reason.as_deref(), Some("done by hand"));
    // An L2 cancels anyone's, also one still waiting for approval.
    dave.cancel(bobs.id, &cancel("superseded"))
        .await
        .expect("an L2 cancels");
    dave.cancel(pending.id, &cancel("not needed"))
        .await
        .expect("an L2 cancels a pending scheduled change");
    let (error, _) = api_error(alice.cancel(mine.id, &cancel("again")).await, 409);
    assert_eq!(error, "conflict");

    tokio::time::sleep(Duration::from_millis(4500)).await;
    assert!(srv.runs().is_empty(), "{:?}", srv.runs());
    for id in [mine.id, bobs.id, pending.id] {
        assert_eq!(
            bob.change(id).await.expect("show").state,
            ChangeState::Cancelled
        );
    }
    let audit = srv.client("carol").audit(None, None).await.expect("audit");
    assert_eq!(
        audit
            .iter()
            .filter(|e| e.kind == "change.cancelled")
            .count(),
        3
    );
}

#[tokio::test]
async fn only_scheduled_changes_are_cancelled_and_bad_run_at_is_explained() {
    let srv = TestServer::start(TUESDAY_10).await;
    let bob = srv.client("bob");
    let ran = create(&bob, &req("record-medium", "CHG-1", "web", json!({}))).await;
    let (_, message) = api_error(bob.cancel(ran.id, &cancel("too late")).await, 409);
    assert!(message.contains("only a scheduled change"), "{message}");
    let pending = create(
        &srv.client("alice"),
        &req("record-high", "CHG-1", "web", json!({})),
    )
    .await;
    let (_, message) = api_error(bob.cancel(pending.id, &cancel("no")).await, 409);
    assert!(message.contains("no run_at"), "{message}");
    api_error(bob.cancel(9999, &cancel("no")).await, 404);

    for (run_at, says) in [
        ("2026-11-24T09:00:00Z", "not in the future"),
        ("2027-06-01T22:00:00Z", "more than 90 days ahead"),
        ("tonight", "RFC 3339"),
    ] {
        let (error, message) = api_error(
            bob.create_change(&scheduled("record-medium", "web", run_at), None)
                .await,
            422,
        );
        assert_eq!(error, "invalid");
        assert!(message.contains(says), "{run_at}: {message}");
        api_error(
            bob.preview(&scheduled("record-medium", "web", run_at))
                .await,
            422,
        );
    }
    // The emergency path is for incident response now, not for a plan.
    let p2 = bob
        .declare_incident(&IncidentRequest {
            priority: Priority::P2,
            title: "checkout down".into(),
            commander: "carol".into(),
        })
        .await
        .expect("declare P2");
    let emergency = ChangeRequest {
        run_at: Some("2026-11-28T12:00:00Z".into()),
        ..req("record-medium", &p2.ticket, "web", json!({}))
    };
    let (error, message) = api_error(bob.create_change(&emergency, None).await, 422);
    assert_eq!(error, "invalid");
    assert!(message.contains("emergency path"), "{message}");
    // Also when its time is inside a window, where the policy would not need the incident: by
    // then it might, and a schedule never takes that path.
    let in_window = ChangeRequest {
        run_at: Some("next_window".into()),
        ..req("record-high", &p2.ticket, "web", json!({}))
    };
    let (_, message) = api_error(bob.create_change(&in_window, None).await, 422);
    assert!(message.contains("incident ticket"), "{message}");
    // A time outside every window is refused now, as it would be then.
    let (error, message) = api_error(
        bob.create_change(
            &scheduled("record-medium", "web", "2026-11-28T12:00:00Z"),
            None,
        )
        .await,
        409,
    );
    assert_eq!(error, "refused");
    assert!(
        message.contains("outside the deployment windows"),
        "{message}"
    );
}

#[tokio::test]
async fn conflicts_are_named_and_stored_and_warned_by_default() {
    let srv = TestServer::start(TUESDAY_10).await;
    let (bob, dave) = (srv.client("bob"), srv.client("dave"));
    let first = create(&bob, &req("record-medium", "CHG-1", "checkout", json!({}))).await;
    let first = settled(&bob, first.id).await;
    assert_eq!(first.state, ChangeState::Executed);
    assert!(first.conflicts.is_empty());

    let second = req("record-medium", "CHG-2", "checkout", json!({}));
    let expected = format!(
        "conflicts with #{} record-medium on checkout (under verification until 10:15 UTC, by bob)",
        first.id
    );
    let p = dave.preview(&second).await.expect("preview");
    assert_eq!(p.decision, Outcome::Execute, "only a warning");
    assert_eq!(
        p.conflicts.iter().map(|c| &c.message).collect::<Vec<_>>(),
        vec![&expected]
    );
    let c = create(&dave, &second).await;
    assert_eq!(c.conflicts.len(), 1);
    assert_eq!(c.conflicts[0].message, expected);
    assert_eq!(c.conflicts[0].change_id, first.id);
    // Stored: whoever looks later sees it.
    let shown = bob.change(c.id).await.expect("show");
    assert_eq!(shown.conflicts, c.conflicts);
    // Another target conflicts with nothing.
    let p = dave
        .preview(&req("record-medium", "CHG-3", "search", json!({})))
        .await
        .expect("preview");
    assert!(p.conflicts.is_empty(), "{p:?}");
}

#[tokio::test]
async fn with_block_a_conflicting_change_is_refused() {
    let srv = TestServer::start_configured(clock_at(BEFORE_OFF_PEAK), |_| {
        "[policy]\nconflicts = \"block\"\n".into()
    })
    .await;
    let (alice, bob) = (srv.client("alice"), srv.client("bob"));
    let first = create(&alice, &scheduled("record-high", "checkout", "next_window")).await;
    let conflicting = scheduled("record-medium", "checkout", "2026-11-24T22:10:00Z");
    let p = bob.preview(&conflicting).await.expect("preview");
    assert_eq!(p.decision, Outcome::Blocked);
    let (error, message) = api_error(bob.create_change(&conflicting, None).await, 409);
    assert_eq!(error, "conflict");
    assert!(
        message.contains(&format!(
            "conflicts with #{} record-high on checkout (scheduled for 22:00 UTC, waiting for \
             approval, by alice)",
            first.id
        )) && message.contains("conflicts = \"block\""),
        "{message}"
    );
    // A low-risk (read-only) action neither conflicts nor is held back.
    let logs = create(
        &bob,
        &req("pull-logs", "CHG-1", "checkout", json!({"lines": 5})),
    )
    .await;
    assert!(logs.conflicts.is_empty());
    assert_ne!(logs.state, ChangeState::Refused);
    // After its verification would end, the target is free.
    let later = create(
        &bob,
        &scheduled("record-medium", "checkout", "2026-11-24T22:15:00Z"),
    )
    .await;
    assert_eq!(later.state, ChangeState::Scheduled);
    let audit = srv.client("carol").audit(None, None).await.expect("audit");
    assert!(
        audit
            .iter()
            .any(|e| e.kind == "change.blocked" && e.detail["rule"] == "conflict")
    );
}

/// The attack: fill the target with changes that cannot conflict (read-only ones, and ones on
/// other nights), more than a check names, so the real conflict falls out of what it reads.
#[tokio::test]
async fn changes_that_cannot_conflict_do_not_hide_one_that_does() {
    let srv = TestServer::start_configured(clock_at(BEFORE_OFF_PEAK), |_| {
        "[policy]\nconflicts = \"block\"\n".into()
    })
    .await;
    let (alice, bob) = (srv.client("alice"), srv.client("bob"));
    let first = create(&alice, &scheduled("record-high", "db2", "next_window")).await;
    // Weekday nights in the Off-peak window, none near the first change.
    let nights = [
        "11-25", "11-26", "11-27", "12-01", "12-02", "12-03", "12-04", "12-08", "12-09", "12-10",
        "12-11", "12-15",
    ];
    for day in nights {
        let mut logs = req("pull-logs", "CHG-3", "db2", json!({"lines": 1}));
        logs.run_at = Some("2026-12-01T12:00:00Z".into());
        create(&bob, &logs).await;
        let night = format!("2026-{day}T23:00:00Z");
        let other = create(&bob, &scheduled("record-medium", "db2", &night)).await;
        assert_eq!(other.state, ChangeState::Scheduled, "{night}");
    }
    let conflicting = scheduled("record-medium", "db2", "2026-11-24T22:05:00Z");
    let (_, message) = api_error(bob.create_change(&conflicting, None).await, 409);
    assert!(
        message.contains(&format!("conflicts with #{} record-high on db2", first.id)),
        "{message}"
    );
}

/// Requests that arrive together share one transaction (`store/batch.rs`), and do their
/// lookups together: yet each one on a busy target names every earlier one there (the ten
/// newest), as it would have alone, and the batches did share commits.
#[tokio::test]
async fn requests_that_share_a_commit_still_see_each_other() {
    let srv = TestServer::start(TUESDAY_10).await;
    let alice = srv.client("alice");
    let before = srv.state().batcher.batches();
    let requests: Vec<ChangeRequest> = (0..24)
        .map(|i| {
            let target = if i % 2 == 0 { "checkout" } else { "search" };
            req("record-high", &format!("CHG-{i}"), target, json!({}))
        })
        .collect();
    let made =
        futures::future::join_all(requests.iter().map(|r| alice.create_change(r, None))).await;
    let mut by_target: std::collections::BTreeMap<String, Vec<Change>> = Default::default();
    for c in made {
        let c = c.expect("create");
        assert_eq!(c.state, ChangeState::PendingApproval);
        by_target.entry(c.target.clone()).or_default().push(c);
    }
    for (target, mut changes) in by_target {
        assert_eq!(changes.len(), 12, "{target}");
        changes.sort_by_key(|c| c.id);
        for (k, c) in changes.iter().enumerate() {
            let named: Vec<i64> = c.conflicts.iter().map(|x| x.change_id).collect();
            let earlier: Vec<i64> = changes[k.saturating_sub(10)..k]
                .iter()
                .map(|e| e.id)
                .collect();
            assert_eq!(named, earlier, "change #{} on {target}", c.id);
        }
    }
    let batches = srv.state().batcher.batches() - before;
    assert!(
        batches < 24,
        "24 concurrent requests took {batches} transactions"
    );
}

/// With block, requests for one target that arrive together: exactly one goes ahead, the
/// others are refused naming it, and each refusal is audited.
#[tokio::test]
async fn with_block_of_requests_arriving_together_one_goes_ahead() {
    let srv = TestServer::start_configured(clock_at(TUESDAY_10), |_| {
        "[policy]\nconflicts = \"block\"\n".into()
    })
    .await;
    let alice = srv.client("alice");
    let requests: Vec<ChangeRequest> = (0..6)
        .map(|i| req("record-high", &format!("CHG-{i}"), "payments", json!({})))
        .collect();
    let made =
        futures::future::join_all(requests.iter().map(|r| alice.create_change(r, None))).await;
    let ahead: Vec<&Change> = made.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(ahead.len(), 1, "{made:?}");
    let first = ahead[0].id;
    for r in made.into_iter().filter(|r| r.is_err()) {
        let (error, message) = api_error(r, 409);
        assert_eq!(error, "conflict");
        assert!(
            message.contains(&format!("conflicts with #{first} record-high on payments")),
            "{message}"
        );
    }
    let audit = srv.client("carol").audit(None, None).await.expect("audit");
    let refused = audit
        .iter()
        .filter(|e| e.kind == "change.blocked" && e.detail["rule"] == "conflict")
        .count();
    assert_eq!(refused, 5);
}

#[tokio::test]
async fn a_change_still_waiting_for_approval_after_the_grace_period_is_missed() {
    let mut srv = TestServer::start(BEFORE_OFF_PEAK).await;
    let c = create(
        &srv.client("alice"),
        &scheduled("record-high", "late-approval", "next_window"),
    )
    .await;
    // Reviewers have until its time and the grace period, not the approval time limit.
    assert_eq!(c.expires_at, at(OFF_PEAK_OPENS) + Span::minutes(10));
    srv.stop().await;
    srv.restart(clock_at("2026-11-24T22:10:30Z")).await;
    let alice = srv.client("alice");
    let m = wait_for(&alice, c.id, ChangeState::Missed, 10).await;
    assert!(
        m.outcome_reason
            .as_deref()
            .is_some_and(|r| r.contains("still waiting for approval")),
        "{m:?}"
    );
    let (_, message) = api_error(srv.client("bob").approve(c.id, &approve()).await, 409);
    assert!(message.contains("missed"), "{message}");
    assert!(srv.runs().is_empty());
}

/// Two replicas run the same scheduler over one database: each scheduled change runs once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_run_a_scheduled_change_exactly_once() {
    if !postgres_only("a scheduled change on two replicas") {
        return;
    }
    let a = BinaryServer::start(BinaryOptions {
        now: Some(BEFORE_OFF_PEAK.into()),
        ..BinaryOptions::default()
    })
    .await;
    let b = a.replica().await;
    let targets: Vec<String> = (0..6).map(|i| format!("replica-{i}")).collect();
    let mut ids = Vec::new();
    for (i, t) in targets.iter().enumerate() {
        let srv = if i % 2 == 0 { &a } else { &b };
        let c = create(
            &srv.client("bob"),
            &scheduled("record-medium", t, "next_window"),
        )
        .await;
        assert_eq!(c.state, ChangeState::Scheduled);
        ids.push(c.id);
    }
    let bob = a.client("bob");
    for id in &ids {
        wait_for(&bob, *id, ChangeState::Executed, 15).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let log = std::fs::read_to_string(a.runs_log_path()).unwrap_or_default();
    for t in &targets {
        assert_eq!(
            log.lines().filter(|l| l == t).count(),
            1,
            "{t} ran once:\n{log}"
        );
    }
}

/// One token cannot fill the reviewers' queue, the calendar feed and the scheduler's passes
/// with schedules: past the quota a new one is refused, saying what to do; changes without a
/// time are not counted.
#[tokio::test]
async fn one_operator_cannot_schedule_without_end() {
    let srv = TestServer::start(BEFORE_OFF_PEAK).await;
    let bob = srv.client("bob");
    let quota = srv.state().config.server.quotas.scheduled_per_operator as usize;
    let logs = |target: String| {
        let mut r = req("pull-logs", "CHG-3", &target, json!({"lines": 1}));
        r.run_at = Some("2026-12-01T12:00:00Z".into());
        r
    };
    // A burst past the quota, all at once: counted in the write transaction, none slips past.
    let answers: Vec<_> = futures::stream::iter(0..quota + 5)
        .map(|i| {
            let (bob, r) = (&bob, logs(format!("t{i}")));
            async move { bob.create_change(&r, None).await }
        })
        .buffered(16)
        .collect()
        .await;
    let (made, refused): (Vec<_>, Vec<_>) = answers.into_iter().partition(Result::is_ok);
    assert_eq!(made.len(), quota);
    assert_eq!(refused.len(), 5);
    let one_more = logs("t-last".into());
    let (error, message) = api_error(bob.create_change(&one_more, None).await, 429);
    assert_eq!(error, "rate_limited");
    assert!(message.contains("cancel some"), "{message}");
    // Another operator, and bob's changes without a time, are not held back.
    create(&srv.client("dave"), &one_more).await;
    create(&bob, &req("pull-logs", "CHG-3", "now", json!({"lines": 1}))).await;
}
