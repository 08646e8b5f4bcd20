//! Several `serve` processes on one PostgreSQL database, as behind a load balancer: decisions,
//! exactly-once execution, caches and the audit chain hold across them. These run in
//! `tests/postgres`; on SQLite they say they do not apply.

use crate::support::binary::{BinaryOptions, BinaryServer};
use crate::support::fakes::{FakeService, service_toml, verification_toml};
use crate::support::*;
use chrono::Duration as Span;
use commandbridge::domain::ChangeState;
use commandbridge::domain::api::FreezeRequest;
use commandbridge::domain::verification::VerificationState;
use serde_json::json;
use std::time::{Duration, Instant};

/// Two replicas with the default configuration plus `extra`.
async fn two_replicas(extra: String) -> (BinaryServer, BinaryServer) {
    let a = BinaryServer::start(BinaryOptions {
        extra_config: extra,
        ..BinaryOptions::default()
    })
    .await;
    let b = a.replica().await;
    (a, b)
}

fn runs_of(srv: &BinaryServer, target: &str) -> usize {
    std::fs::read_to_string(srv.runs_log_path())
        .unwrap_or_default()
        .lines()
        .filter(|l| *l == target)
        .count()
}

/// Two reviewers approve the same change at the same moment, each on another replica: it runs
/// once, and the other approval is told it came too late (or is recorded without a second run).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_approvals_on_two_replicas_run_a_change_once() {
    if !postgres_only("approvals racing on two replicas") {
        return;
    }
    let (a, b) = two_replicas(String::new()).await;
    let alice = a.client("alice");
    let (bob_on_a, dave_on_b) = (a.client("bob"), b.client("dave"));
    for round in 0..10 {
        let target = format!("race-{round}");
        let c = create(&alice, &req("record-high", "CHG-1", &target, json!({}))).await;
        assert_eq!(c.state, ChangeState::PendingApproval);
        let yes = approve();
        let (x, y) = tokio::join!(bob_on_a.approve(c.id, &yes), dave_on_b.approve(c.id, &yes));
        assert!(
            x.is_ok() || y.is_ok(),
            "neither approval went through: {x:?} {y:?}"
        );
        for r in [&x, &y] {
            if let Err(e) = r {
                assert!(format!("{e}").contains("409"), "{e}");
            }
        }
        let settled = settled(&alice, c.id).await;
        assert_eq!(settled.state, ChangeState::Executed, "{settled:?}");
        assert_eq!(runs_of(&a, &target), 1, "round {round}: ran once");
    }
    // Nothing runs late either.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for round in 0..10 {
        assert_eq!(runs_of(&a, &format!("race-{round}")), 1);
    }
}

/// A freeze announced on one replica refuses a change on the other from its commit on: the
/// other replica's cached freezes are checked against the version row in the deciding
/// transaction.
#[tokio::test]
async fn a_freeze_or_pause_set_on_one_replica_refuses_on_the_other_at_once() {
    if !postgres_only("a freeze crossing replicas") {
        return;
    }
    let (a, b) = two_replicas(String::new()).await;
    let bob_on_b = b.client("bob");
    // B decides once first, so it holds the (empty) freeze list in its cache.
    create(&bob_on_b, &req("record-medium", "CHG-1", "warm", json!({}))).await;
    let now = at(TUESDAY_10);
    a.client("carol")
        .create_freeze(&FreezeRequest {
            name: "db migration".into(),
            starts_at: now - Span::hours(1),
            ends_at: now + Span::hours(3),
        })
        .await
        .expect("freeze on A");
    let (error, message) = api_error(
        bob_on_b
            .create_change(&req("record-medium", "CHG-1", "web", json!({})), None)
            .await,
        409,
    );
    assert_eq!(error, "refused");
    assert!(message.contains("db migration"), "{message}");

    // And the pause: set on B, in force on A.
    let freeze_id = a
        .client("carol")
        .current_window()
        .await
        .expect("window")
        .freeze
        .and_then(|f| f.id)
        .expect("the freeze has an id");
    a.client("carol")
        .delete_freeze(freeze_id)
        .await
        .expect("remove the freeze");
    create(
        &a.client("bob"),
        &req("record-medium", "CHG-1", "free", json!({})),
    )
    .await;
    b.client("carol")
        .pause(&commandbridge::domain::api::PauseRequest {
            reason: "investigating".into(),
        })
        .await
        .expect("pause on B");
    let (error, message) = api_error(
        a.client("bob")
            .create_change(&req("record-medium", "CHG-1", "web", json!({})), None)
            .await,
        409,
    );
    assert_eq!(error, "refused");
    assert!(message.contains("paused"), "{message}");
}

/// A token revoked while both replicas serve it stops working on both within a second.
#[tokio::test]
async fn a_revoked_token_stops_on_every_replica_within_a_second() {
    if !postgres_only("token revocation crossing replicas") {
        return;
    }
    let (a, b) = two_replicas(String::new()).await;
    let (alice_a, alice_b) = (a.client("alice"), b.client("alice"));
    alice_a.me().await.expect("alice on A");
    alice_b.me().await.expect("alice on B");
    let out = tokio::process::Command::new(crate::support::binary::BIN)
        .args(["user", "revoke", "alice", "--database", &a.db_url()])
        .env("NO_COLOR", "1")
        .output()
        .await
        .expect("run user revoke");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let revoked = Instant::now();
    for client in [&alice_a, &alice_b] {
        loop {
            match client.me().await {
                Err(e) if format!("{e}").contains("401") => break,
                _ if revoked.elapsed() > Duration::from_millis(1500) => {
                    panic!(
                        "alice's token still works {:?} after revoking",
                        revoked.elapsed()
                    )
                }
                _ => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }
    assert!(
        revoked.elapsed() < Duration::from_millis(1300),
        "{:?}",
        revoked.elapsed()
    );
}

/// Writers on both replicas at once: one unbroken audit chain, checked by `audit verify`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_on_two_replicas_keep_one_audit_chain() {
    if !postgres_only("the audit chain under two replicas") {
        return;
    }
    let (a, b) = two_replicas(String::new()).await;
    let mut writers = Vec::new();
    for (i, srv) in [&a, &b, &a, &b, &a, &b].into_iter().enumerate() {
        let bob = srv.client("bob");
        writers.push(tokio::spawn(async move {
            for n in 0..15 {
                create(
                    &bob,
                    &req("record-medium", "CHG-1", &format!("w{i}-{n}"), json!({})),
                )
                .await;
            }
        }));
    }
    for w in writers {
        w.await.expect("a writer");
    }
    let out = audit_verify(&a.db_url()).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let entries: usize = stdout
        .strip_prefix("audit log intact: ")
        .and_then(|s| s.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{stdout}"));
    // 90 changes, each requested and executed (and more: verifications, operators).
    assert!(entries >= 180, "{entries} entries");
}

/// The replica polling a verification is killed: the other takes it over within one interval,
/// keeps its deadline, and the samples go on, one per interval.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killing_the_replica_that_polls_a_verification_hands_it_over() {
    if !postgres_only("verification leases across replicas") {
        return;
    }
    let svc = FakeService::start().await;
    let (a, b) =
        two_replicas(verification_toml(0.5) + &service_toml("checkout", &svc, true, None)).await;
    let c = create(
        &a.client("bob"),
        &req("record-medium", "CHG-1", "checkout", json!({})),
    )
    .await;
    assert_eq!(c.state, ChangeState::Executed);
    let v = a
        .client("carol")
        .verifications()
        .await
        .expect("verifications")
        .into_iter()
        .find(|v| v.change_id == c.id)
        .expect("a verification");
    tokio::time::sleep(Duration::from_millis(3_000)).await;
    // Kill whichever replica holds the lease (the one that ran the change, usually).
    let lease_sql = format!("SELECT lease_owner FROM verifications WHERE id = {}", v.id);
    let holder =
        a.db.text(&lease_sql)
            .await
            .expect("the verification is leased");
    let (mut victim, survivor) = if holder.contains(&format!("/{}/", a.pid())) {
        (a, b)
    } else {
        assert!(holder.contains(&format!("/{}/", b.pid())), "{holder}");
        (b, a)
    };
    let carol = survivor.client("carol");
    let before = carol
        .verification(v.id)
        .await
        .expect("detail")
        .samples
        .len();
    assert!(before >= 2, "{before} samples in 3 s at one per second");
    victim.kill().await;
    let killed = Instant::now();
    tokio::time::sleep(Duration::from_millis(4_000)).await;
    let detail = carol.verification(v.id).await.expect("detail");
    let after = detail.samples.len();
    assert!(
        after >= before + 2,
        "samples went on after the kill: {before} → {after} in {:?}",
        killed.elapsed()
    );
    assert!(
        after <= before + 6,
        "no double counting: {before} → {after} in {:?}",
        killed.elapsed()
    );
    let held = survivor.db.text(&lease_sql).await.expect("still leased");
    assert!(held.contains(&format!("/{}/", survivor.pid())), "{held}");
    assert_eq!(
        detail.verification.deadline, v.deadline,
        "the deadline is kept"
    );
    assert!(
        matches!(
            detail.verification.state,
            VerificationState::Watching | VerificationState::AwaitingOutcome
        ),
        "{:?}",
        detail.verification.state
    );
}

/// A change running on a replica that is killed is failed by the other, once, and never run
/// again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_change_running_on_a_killed_replica_is_failed_by_the_other() {
    if !postgres_only("execution leases across replicas") {
        return;
    }
    let (mut a, b) = two_replicas(String::new()).await;
    let slow = create(
        &a.client("bob"),
        &req("slow-medium", "CHG-1", "slow", json!({})),
    )
    .await;
    assert_eq!(slow.state, ChangeState::Executing);
    a.kill().await;
    let bob_b = b.client("bob");
    let limit = Instant::now() + Duration::from_secs(10);
    let failed = loop {
        let c = bob_b.change(slow.id).await.expect("show on B");
        if c.state != ChangeState::Executing {
            break c;
        }
        assert!(
            Instant::now() < limit,
            "still executing 10 s after its server died"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(failed.state, ChangeState::Failed);
    assert_eq!(
        failed.outcome_reason.as_deref(),
        Some("interrupted: its server stopped")
    );
    assert_eq!(runs_of(&b, "slow"), 1, "never run again");
}

/// The database goes away under a running replica: `/healthz` and requests answer 503 saying
/// so (never 500, never a hang), and when the database is back the replica serves again by
/// itself, with everything it had acknowledged.
#[tokio::test]
async fn a_replica_that_loses_its_database_answers_503_and_recovers() {
    if !postgres_only("losing the PostgreSQL server") {
        return;
    }
    let srv = BinaryServer::start(BinaryOptions {
        extra_config: "[server]\ndatabase_pool = { acquire_timeout_seconds = 1 }\n".into(),
        ..BinaryOptions::default()
    })
    .await;
    let bob = srv.client("bob");
    let kept = create(&bob, &req("record-medium", "CHG-1", "before", json!({}))).await;
    let name = srv
        .db
        .url
        .rsplit('/')
        .next()
        .expect("a database name")
        .to_string();
    let cut = |allow: bool| {
        let name = name.clone();
        async move {
            let mut statements = vec![format!(
                "ALTER DATABASE {name} WITH ALLOW_CONNECTIONS {allow}"
            )];
            if !allow {
                statements.push(format!(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
                ));
            }
            crate::support::db::admin_statements(&statements).await;
        }
    };
    cut(false).await;
    let http = reqwest::Client::new();
    let health = send(http.get(format!("{}/healthz", srv.base))).await;
    assert_eq!(health.status, 503, "{}", health.text());
    assert_eq!(health.json()["status"], "unavailable", "{}", health.text());
    let refused = send(
        http.post(format!("{}/api/v1/changes", srv.base))
            .bearer_auth(srv.token("bob"))
            .json(&req("record-medium", "CHG-1", "during", json!({}))),
    )
    .await;
    assert_eq!(refused.status, 503, "{}", refused.text());
    let body = refused.error_body();
    assert!(body.message.contains("retry"), "{}", body.message);

    cut(true).await;
    let back = Instant::now();
    while send(http.get(format!("{}/healthz", srv.base))).await.status != 200 {
        assert!(
            back.elapsed() < Duration::from_secs(10),
            "still unhealthy 10 s later"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let after = create(&bob, &req("record-medium", "CHG-1", "after", json!({}))).await;
    assert!(after.id > kept.id);
    assert_eq!(bob.change(kept.id).await.expect("kept").id, kept.id);
}

/// Two replicas send one webhook outbox: each message reaches the receiver once (with a 2xx),
/// whichever replica queued it, also when the first attempts fail and are retried.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_deliver_each_webhook_message_once() {
    use crate::support::fakes::{
        Receiver, executed, free_port, verification_of, verified, wait_state, webhook_toml,
    };
    if !postgres_only("one outbox, two senders") {
        return;
    }
    let port = free_port();
    let rx = Receiver::start_on(port, 3).await;
    let (a, b) = two_replicas(verification_toml(0.05) + &webhook_toml(port)).await;
    let servers = [&a, &b];
    let mut verifications = Vec::new();
    for i in 0..8 {
        let bob = servers[i % 2].client("bob");
        let id = executed(&bob, "record-medium", "CHG-1", &format!("svc-{i}")).await;
        verifications.push(verification_of(&bob, id).await);
    }
    for (i, v) in verifications.iter().enumerate() {
        let bob = servers[i % 2].client("bob");
        wait_state(
            &bob,
            v.id,
            VerificationState::AwaitingOutcome,
            Duration::from_secs(10),
        )
        .await;
        bob.verification_outcome(v.id, &verified(Some("green")))
            .await
            .expect("verified");
    }
    rx.wait_delivered(8, Duration::from_secs(20)).await;
    // Retries back off; give a double sender time to show itself.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let delivered = rx.delivered();
    let mut keys: Vec<&str> = delivered.iter().map(|d| d.key.as_str()).collect();
    keys.sort_unstable();
    let before = keys.len();
    keys.dedup();
    assert_eq!(keys.len(), 8, "{delivered:#?}");
    assert_eq!(before, 8, "a message was delivered twice: {delivered:#?}");
}
