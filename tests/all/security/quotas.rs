//! What one L1 token may have open at once (`[server.quotas]`, `src/server/changes/quota.rs`)
//! and how many commands the server runs at once: requests the policy allows, sent in bursts,
//! must not fill the reviewers' queue or start commands until the server runs out of processes
//! and descriptors. Each test sets its quotas (the harness lifts them for load tests).

use crate::support::*;
use commandbridge::domain::ChangeState;
use commandbridge::domain::api::WithdrawRequest;
use futures::StreamExt;
use serde_json::json;
use std::time::{Duration, Instant};

/// Sends every request at once (16 in flight), each by its client; the answers in order.
async fn burst(
    requests: Vec<(
        &commandbridge::client::ApiClient,
        commandbridge::domain::api::ChangeRequest,
    )>,
) -> Vec<Result<commandbridge::domain::change::Change, commandbridge::client::ClientError>> {
    futures::stream::iter(requests)
        .map(|(client, r)| async move { client.create_change(&r, None).await })
        .buffered(16)
        .collect()
        .await
}

#[tokio::test]
async fn an_operator_runs_a_few_commands_at_once_and_the_server_a_bounded_number() {
    const RUNNING_AT_ONCE: usize = 12;
    let srv = TestServer::start_configured(clock_at(TUESDAY_10), |_| {
        format!(
            "[server.quotas]\nexecuting_per_operator = 3\ncommands_at_once = {RUNNING_AT_ONCE}\n"
        )
    })
    .await;
    let per = srv.state().config.server.quotas.executing_per_operator as usize;
    // Enough operators, each at its own limit, to ask for more than the server runs at once.
    let operators: Vec<_> = load::add_operators(&srv.db_url(), RUNNING_AT_ONCE / per + 2)
        .await
        .iter()
        .map(|t| srv.client_with_token(t))
        .collect();
    let slow =
        |op: usize, i: usize| req("slow-medium", "CHG-7300", &format!("s{op}-{i}"), json!({}));
    // One more than its limit from the first: refused, saying what to do, in the same burst.
    let first = burst((0..=per).map(|i| (&operators[0], slow(0, i))).collect()).await;
    let refused: Vec<_> = first.iter().filter(|r| r.is_err()).collect();
    assert_eq!(refused.len(), 1, "{first:?}");
    let (error, message) = api_error(first.into_iter().find(Result::is_err).unwrap(), 429);
    assert_eq!(error, "rate_limited");
    assert!(
        message.contains("changes executing") && message.contains("wait until one"),
        "{message}"
    );
    // Everyone else at their limit: more changes executing than the server runs at once.
    let rest = burst(
        (1..operators.len())
            .flat_map(|op| (0..per).map(move |i| (op, i)))
            .map(|(op, i)| (&operators[op], slow(op, i)))
            .collect(),
    )
    .await;
    let asked = per * operators.len();
    assert!(rest.iter().all(Result::is_ok), "{rest:?}");
    assert!(asked > RUNNING_AT_ONCE);
    // RUNNING_AT_ONCE commands start (each appends its target to runs.log, then sleeps 30 s);
    // the rest stay `executing`, waiting for a place, and start nothing. The server's gauges say
    // so once every change has reached its place or its wait.
    let t = Instant::now();
    loop {
        let running = srv.metric("commandbridge_commands_running").await as usize;
        let waiting = srv.metric("commandbridge_commands_waiting").await as usize;
        if running + waiting == asked {
            assert_eq!(running, RUNNING_AT_ONCE, "{waiting} waiting");
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "{running} running and {waiting} waiting of {asked}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Each running one started its process; none of the waiting ones did.
    let t = Instant::now();
    while srv.runs().len() < RUNNING_AT_ONCE && t.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(srv.runs().len(), RUNNING_AT_ONCE, "{:?}", srv.runs());
    let executing = srv
        .client("bob")
        .changes(Some(ChangeState::Executing), None)
        .await
        .expect("list");
    assert_eq!(executing.len(), asked, "the others wait, still executing");
}

#[tokio::test]
async fn an_operator_keeps_a_bounded_number_waiting_for_approval() {
    const PENDING_PER_OPERATOR: i64 = 10;
    let srv = TestServer::start_configured(clock_at(TUESDAY_10), |_| {
        format!("[server.quotas]\npending_per_operator = {PENDING_PER_OPERATOR}\n")
    })
    .await;
    let alice = srv.client("alice");
    let high = |i: usize| req("record-high", "CHG-7301", &format!("h{i}"), json!({}));
    // All at once: the count is taken in the write transaction, so none slips past.
    let answers = burst(
        (0..PENDING_PER_OPERATOR as usize + 5)
            .map(|i| (&alice, high(i)))
            .collect(),
    )
    .await;
    let (pending, refused): (Vec<_>, Vec<_>) = answers.into_iter().partition(Result::is_ok);
    assert_eq!(pending.len(), PENDING_PER_OPERATOR as usize);
    assert_eq!(refused.len(), 5);
    let (error, message) = api_error(refused.into_iter().next().unwrap(), 429);
    assert_eq!(error, "rate_limited");
    assert!(message.contains("withdraw some"), "{message}");
    // Withdrawing one gives its place back; another operator was never held back.
    let one = pending[0].as_ref().unwrap();
    assert_eq!(one.state, ChangeState::PendingApproval);
    alice
        .withdraw(one.id, &WithdrawRequest { reason: None })
        .await
        .expect("withdraw");
    create(&alice, &high(1000)).await;
    create(&srv.client("dave"), &high(1001)).await;
}
