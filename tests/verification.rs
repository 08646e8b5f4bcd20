//! Post-change verification, outcomes, rollback and the ticket webhook (issue 4), against real
//! HTTP endpoints on loopback: a service's health endpoint, a Prometheus-compatible query
//! endpoint and a webhook receiver, each a small axum server whose answers the test changes while
//! the real CommandBridge server (see `support`) watches it. Durations are seconds, not minutes.

mod support;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use commandbridge::client::ApiClient;
use commandbridge::domain::api::{
    ApproveRequest, Event, IncidentRequest, OutcomeKind, OutcomeRequest, PauseRequest,
    RollbackRequest,
};
use commandbridge::domain::verification::VerificationDetail;
use commandbridge::domain::verification::{Sample, VerificationState};
use commandbridge::domain::{ChangeState, Level, Priority, Requirement, Verification};
use commandbridge::server::clock::Clock;
use futures::StreamExt;
use serde_json::json;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU16, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::*;

use VerificationState::{AwaitingOutcome, Degraded, Escalated, Verified, Watching};

/// The configured error-rate query: a real PromQL expression, with the braces, quotes, `=~` and
/// spaces that must survive URL encoding on the way to the Prometheus endpoint.
const QUERY: &str = r#"sum(rate(http_requests_total{service="checkout",code=~"5.."}[5m])) / sum(rate(http_requests_total{service="checkout"}[5m]))"#;

// ---- the real endpoints the server checks ----------------------------------------------------

/// A service on loopback: `GET /healthz` answers the status the test sets, and
/// `GET /api/v1/query?query=…` answers a Prometheus instant-query vector with the value the test
/// sets. It records every query string it was asked.
#[derive(Clone)]
struct FakeService {
    addr: SocketAddr,
    health: Arc<AtomicU16>,
    /// An f64, as bits.
    rate: Arc<AtomicU64>,
    health_hits: Arc<AtomicUsize>,
    queries: Arc<Mutex<Vec<String>>>,
}

async fn healthz(State(s): State<FakeService>) -> (StatusCode, String) {
    s.health_hits.fetch_add(1, SeqCst);
    let code = s.health.load(SeqCst);
    (
        StatusCode::from_u16(code).expect("a status code"),
        format!("status {code}\n"),
    )
}

async fn prometheus_query(
    State(s): State<FakeService>,
    Query(q): Query<HashMap<String, String>>,
) -> Json<serde_json::Value> {
    s.queries
        .lock()
        .unwrap()
        .push(q.get("query").cloned().unwrap_or_default());
    let value = f64::from_bits(s.rate.load(SeqCst));
    let ts = Utc::now().timestamp_millis() as f64 / 1000.0;
    Json(json!({
        "status": "success",
        "data": {
            "resultType": "vector",
            "result": [{"metric": {}, "value": [ts, value.to_string()]}]
        }
    }))
}

impl FakeService {
    async fn start() -> FakeService {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let svc = FakeService {
            addr: listener.local_addr().expect("an address"),
            health: Arc::new(AtomicU16::new(200)),
            rate: Arc::new(AtomicU64::new(0f64.to_bits())),
            health_hits: Arc::default(),
            queries: Arc::default(),
        };
        let app = Router::new()
            .route("/healthz", get(healthz))
            .route("/api/v1/query", get(prometheus_query))
            .with_state(svc.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        svc
    }

    fn set_health(&self, status: u16) {
        self.health.store(status, SeqCst);
    }

    fn set_rate(&self, value: f64) {
        self.rate.store(value.to_bits(), SeqCst);
    }

    fn health_hits(&self) -> usize {
        self.health_hits.load(SeqCst)
    }

    fn queries(&self) -> Vec<String> {
        self.queries.lock().unwrap().clone()
    }

    fn base(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// One POST the webhook receiver got, and what it answered.
#[derive(Debug, Clone)]
struct Delivery {
    key: String,
    event: String,
    body: serde_json::Value,
    answered: u16,
}

/// A ticket system's webhook endpoint: `POST /hook`, answering 503 to the first `refuse` requests
/// and 200 after that, recording everything.
#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<Vec<Delivery>>>,
    refuse: Arc<AtomicUsize>,
}

async fn hook(State(r): State<Receiver>, headers: HeaderMap, body: String) -> StatusCode {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let answered = if r
        .refuse
        .fetch_update(SeqCst, SeqCst, |n| n.checked_sub(1))
        .is_ok()
    {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    r.got.lock().unwrap().push(Delivery {
        key: header("idempotency-key"),
        event: header("x-commandbridge-event"),
        body: serde_json::from_str(&body).unwrap_or(serde_json::Value::String(body)),
        answered: answered.as_u16(),
    });
    answered
}

impl Receiver {
    /// Starts listening on `port` (a port the server was already told about).
    async fn start_on(port: u16, refuse: usize) -> Receiver {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap_or_else(|e| panic!("bind the webhook port {port} again: {e}"));
        let r = Receiver {
            got: Arc::default(),
            refuse: Arc::new(AtomicUsize::new(refuse)),
        };
        let app = Router::new()
            .route("/hook", post(hook))
            .with_state(r.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        r
    }

    fn all(&self) -> Vec<Delivery> {
        self.got.lock().unwrap().clone()
    }

    /// The requests it answered 200.
    fn delivered(&self) -> Vec<Delivery> {
        self.all()
            .into_iter()
            .filter(|d| d.answered == 200)
            .collect()
    }

    async fn wait_delivered(&self, n: usize, limit: Duration) -> Vec<Delivery> {
        let start = Instant::now();
        loop {
            let got = self.delivered();
            if got.len() >= n {
                return got;
            }
            assert!(
                start.elapsed() < limit,
                "{n} webhook deliveries not within {limit:?}; got {:#?}",
                self.all()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Every queued webhook message is marked delivered: none is due for another attempt, ever
/// (retries back off exponentially, so waiting alone would not show a resend).
async fn assert_outbox_drained(srv: &TestServer) {
    let next = srv
        .store()
        .next_outbox_due()
        .await
        .expect("read the outbox");
    assert_eq!(
        next, None,
        "a delivered webhook message is still queued for another attempt"
    );
}

/// A loopback port nothing listens on (it was free a moment ago): connections are refused.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind a loopback port")
        .local_addr()
        .expect("an address")
        .port()
}

// ---- configuration ---------------------------------------------------------------------------

fn verification_toml(minutes: f64) -> String {
    format!("\n[verification]\nduration_minutes = {minutes}\ninterval_seconds = 1\n")
}

/// A `[[services]]` entry for `name` checked against `svc`: its health URL, its error rate
/// (the [`QUERY`] against `max`), or both.
fn service_toml(name: &str, svc: &FakeService, health: bool, max: Option<f64>) -> String {
    let mut s = format!("\n[[services]]\nname = \"{name}\"\n");
    if health {
        s.push_str(&format!("health_url = \"{}/healthz\"\n", svc.base()));
    }
    if let Some(max) = max {
        s.push_str(&format!(
            "\n[services.error_rate]\nprometheus_url = \"{}\"\nquery = '{QUERY}'\nmax = {max}\n",
            svc.base()
        ));
    }
    s
}

fn webhook_toml(port: u16) -> String {
    format!("\n[ticket_webhook]\nurl = \"http://127.0.0.1:{port}/hook\"\n")
}

/// Actions with real commands for the rollback tests. Each appends a line to `rollback.log` in
/// the server's directory: the scripts are fixed, the log path is `$0` and the values are
/// separate argv elements (`$1`, `$2`), never spliced into a script.
fn rollback_actions(dir: &Path) -> String {
    let log = dir.join("rollback.log");
    let log = log.to_str().expect("a UTF-8 temporary path");
    format!(
        r#"
[[actions]]
name = "scale-captured"
risk = "medium"
description = "test: record the new replica count, after capturing the current one"
params = [{{ name = "replicas", kind = "integer", min = 0, max = 500 }}]
rollback = "Scale back to the captured count"
capture_command = ["sh", "-c", "echo 7"]
command = ["sh", "-c", 'echo "scale $1 $2" >> "$0"', "{log}", "{{target}}", "{{replicas}}"]
rollback_command = ["sh", "-c", 'echo "rollback $1 $2" >> "$0"', "{log}", "{{target}}", "{{captured}}"]
timeout_secs = 10

[[actions]]
name = "manual-undo"
risk = "medium"
description = "test: a real command whose rollback is done by hand"
rollback = "Redeploy the previous image by hand (runbook RB-12)"
command = ["sh", "-c", 'echo "manual $1" >> "$0"', "{log}", "{{target}}"]
timeout_secs = 10

[[actions]]
name = "failover-test"
risk = "high"
description = "test: a failover whose reversal is L3 only"
rollback = "Reverse the failover (L3 only)"
rollback_level = "L3"
command = ["sh", "-c", 'echo "failover $1" >> "$0"', "{log}", "{{target}}"]
rollback_command = ["sh", "-c", 'echo "failback $1" >> "$0"', "{log}", "{{target}}"]
timeout_secs = 10
"#
    )
}

fn rollback_log(srv: &TestServer) -> Vec<String> {
    std::fs::read_to_string(srv.dir.path().join("rollback.log"))
        .map(|s| s.lines().map(str::to_string).collect())
        .unwrap_or_default()
}

// ---- API helpers -----------------------------------------------------------------------------

fn verified(note: Option<&str>) -> OutcomeRequest {
    OutcomeRequest {
        outcome: OutcomeKind::Verified,
        note: note.map(str::to_string),
        priority: None,
        commander: None,
    }
}

fn escalated(note: Option<&str>, commander: Option<&str>) -> OutcomeRequest {
    OutcomeRequest {
        outcome: OutcomeKind::Escalated,
        note: note.map(str::to_string),
        priority: None,
        commander: commander.map(str::to_string),
    }
}

fn rollback_req(reason: &str, ticket: Option<&str>) -> RollbackRequest {
    RollbackRequest {
        reason: reason.to_string(),
        ticket: ticket.map(str::to_string),
    }
}

/// Requests a change that runs at once and waits until it has run.
async fn executed(client: &ApiClient, action: &str, ticket: &str, target: &str) -> i64 {
    let c = create(client, &req(action, ticket, target, json!({}))).await;
    let c = settled(client, c.id).await;
    assert_eq!(
        c.state,
        ChangeState::Executed,
        "{action} on {target}: {:?}",
        c.output
    );
    c.id
}

/// The verification an executed change opened.
async fn verification_of(client: &ApiClient, change_id: i64) -> Verification {
    let all = client.verifications().await.expect("GET /verifications");
    all.iter()
        .find(|v| v.change_id == change_id)
        .cloned()
        .unwrap_or_else(|| panic!("no verification for change #{change_id} in {all:#?}"))
}

/// Polls `GET /verifications/{id}` until `done` holds.
async fn wait_until(
    client: &ApiClient,
    id: i64,
    what: &str,
    limit: Duration,
    done: impl Fn(&VerificationDetail) -> bool,
) -> VerificationDetail {
    let start = Instant::now();
    loop {
        let d = client
            .verification(id)
            .await
            .expect("GET /verifications/{id}");
        if done(&d) {
            return d;
        }
        assert!(
            start.elapsed() < limit,
            "verification #{id}: {what} not within {limit:?}; it is {d:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn wait_state(
    client: &ApiClient,
    id: i64,
    state: VerificationState,
    limit: Duration,
) -> VerificationDetail {
    wait_until(client, id, &format!("state {state}"), limit, |d| {
        d.verification.state == state
    })
    .await
}

fn ms(n: i64) -> chrono::Duration {
    chrono::Duration::milliseconds(n)
}

/// Sleeps until the server's clock reads `t`.
async fn sleep_until(clock: &Clock, t: DateTime<Utc>) {
    if let Ok(d) = (t - clock.now()).to_std() {
        tokio::time::sleep(d).await;
    }
}

/// Collects the server's event stream (replayed from the first event, then live) in the
/// background.
fn collect_events(client: &ApiClient) -> Arc<Mutex<Vec<Event>>> {
    let got = Arc::new(Mutex::new(Vec::new()));
    let mut stream = client.events(Some(0));
    let sink = got.clone();
    tokio::spawn(async move {
        while let Some(Ok(e)) = stream.next().await {
            sink.lock().unwrap().push(e);
        }
    });
    got
}

async fn wait_event(
    events: &Arc<Mutex<Vec<Event>>>,
    kind: &str,
    verification: i64,
    limit: Duration,
) -> Event {
    let start = Instant::now();
    loop {
        let found = events
            .lock()
            .unwrap()
            .iter()
            .find(|e| e.kind == kind && e.data["id"].as_i64() == Some(verification))
            .cloned();
        if let Some(e) = found {
            return e;
        }
        assert!(
            start.elapsed() < limit,
            "no {kind} event for verification #{verification} within {limit:?}; got {:#?}",
            events
                .lock()
                .unwrap()
                .iter()
                .map(|e| (e.seq, e.kind.clone(), e.summary.clone()))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn health_of(s: &Sample) -> (bool, String) {
    let h = s
        .health
        .as_ref()
        .unwrap_or_else(|| panic!("a sample without a health check: {s:#?}"));
    (h.ok, h.detail.clone())
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

// ---- rollback --------------------------------------------------------------------------------

#[tokio::test]
async fn rollback_runs_the_rollback_command_with_the_captured_value_through_the_policy() {
    let srv = TestServer::start_configured(clock_at(TUESDAY_10), |dir| {
        verification_toml(0.05) + &rollback_actions(dir)
    })
    .await;
    let (alice, bob, carol, dave) = (
        srv.client("alice"),
        srv.client("bob"),
        srv.client("carol"),
        srv.client("dave"),
    );

    // capture_command ran before the change; the rollback runs with what it printed.
    let orig = create(
        &bob,
        &req("scale-captured", "CHG-4001", "web", json!({"replicas": 3})),
    )
    .await;
    let orig = settled(&bob, orig.id).await;
    assert_eq!(orig.state, ChangeState::Executed, "{:?}", orig.output);
    assert_eq!(rollback_log(&srv), ["scale web 3"]);
    let rb = bob
        .rollback(orig.id, &rollback_req("too many replicas", None))
        .await
        .expect("roll back");
    assert_eq!(rb.rollback_of, Some(orig.id));
    assert_ne!(rb.id, orig.id);
    assert_eq!(
        (
            rb.action.as_str(),
            rb.target.as_str(),
            rb.ticket.as_str(),
            rb.requested_by.as_str()
        ),
        ("scale-captured", "web", "CHG-4001", "bob")
    );
    assert!(rb.reason.contains("too many replicas"), "{}", rb.reason);
    let rb = settled(&bob, rb.id).await;
    assert_eq!(rb.state, ChangeState::Executed, "{:?}", rb.output);
    assert_eq!(rollback_log(&srv), ["scale web 3", "rollback web 7"]);
    let orig_now = bob.change(orig.id).await.expect("GET");
    assert_eq!(
        (orig_now.state, orig_now.rollback_of),
        (ChangeState::Executed, None)
    );
    // A rollback is not rolled back.
    let (_, message) = api_error(bob.rollback(rb.id, &rollback_req("again", None)).await, 409);
    assert!(message.contains("itself a rollback"), "{message}");

    // A command but no rollback_command: the rollback is manual, and the text says how.
    let manual = executed(&bob, "manual-undo", "CHG-4002", "web").await;
    let (error, message) = api_error(bob.rollback(manual, &rollback_req("undo", None)).await, 409);
    assert_eq!(error, "conflict");
    assert!(
        message.contains("manual")
            && message.contains("Redeploy the previous image by hand (runbook RB-12)"),
        "{message}"
    );

    // Only an executed change rolls back: not a failed one, not a pending one, not a missing one.
    let failed = create(&bob, &req("fail-medium", "CHG-4003", "web", json!({}))).await;
    assert_eq!(settled(&bob, failed.id).await.state, ChangeState::Failed);
    let (_, message) = api_error(
        bob.rollback(failed.id, &rollback_req("undo", None)).await,
        409,
    );
    assert!(message.contains("failed"), "{message}");
    let pending = create(&alice, &req("record-high", "CHG-4004", "web", json!({}))).await;
    assert_eq!(pending.state, ChangeState::PendingApproval);
    api_error(
        bob.rollback(pending.id, &rollback_req("undo", None)).await,
        409,
    );
    api_error(bob.rollback(424242, &rollback_req("undo", None)).await, 404);
    let log_before = rollback_log(&srv);

    // rollback_level = "L3": bob (L2) ran the failover himself, but its reversal needs an L3.
    let fo = executed(&bob, "failover-test", "CHG-4005", "db").await;
    let rb = bob
        .rollback(fo, &rollback_req("primary is back", None))
        .await
        .expect("request the failback");
    assert_eq!(rb.state, ChangeState::PendingApproval);
    assert_eq!(rb.rollback_of, Some(fo));
    assert_eq!(
        rb.approvals_required,
        [Requirement::Level { min: Level::L3 }]
    );
    let (_, message) = api_error(dave.approve(rb.id, &ApproveRequest::default()).await, 403);
    assert!(message.contains("L3"), "{message}");
    api_error(bob.approve(rb.id, &ApproveRequest::default()).await, 403);
    assert!(!rollback_log(&srv).contains(&"failback db".to_string()));
    let done = carol
        .approve(rb.id, &ApproveRequest::default())
        .await
        .expect("carol approves the failback");
    let done = settled(&carol, done.id).await;
    assert_eq!(done.state, ChangeState::Executed, "{:?}", done.output);
    let mut want = log_before.clone();
    want.extend(["failover db".to_string(), "failback db".to_string()]);
    assert_eq!(rollback_log(&srv), want);

    // The policy applies to rollbacks: with changes paused, a CHG rollback is refused. (A
    // change not rolled back yet: `orig` has had its one rollback.)
    let again = create(
        &bob,
        &req("scale-captured", "CHG-4006", "web", json!({"replicas": 4})),
    )
    .await;
    assert_eq!(settled(&bob, again.id).await.state, ChangeState::Executed);
    want.push("scale web 4".to_string());
    assert_eq!(rollback_log(&srv), want);
    bob.pause(&PauseRequest {
        reason: "incident in progress".into(),
    })
    .await
    .expect("pause");
    let changes_before = bob.changes(None, None).await.expect("changes").len();
    let (error, message) = api_error(
        bob.rollback(again.id, &rollback_req("scale back", None))
            .await,
        409,
    );
    assert_eq!(error, "refused");
    assert!(message.contains("paused"), "{message}");
    assert_eq!(
        bob.changes(None, None).await.expect("changes").len(),
        changes_before,
        "a refused rollback creates no change"
    );
    assert_eq!(rollback_log(&srv), want);
}

/// During a P1 incident an emergency rollback of an L3-only action needs BOTH the incident
/// commander's approval and an L3's. The commander (an L2) approving alone must not run it.
#[tokio::test]
async fn a_commanders_approval_does_not_stand_in_for_the_l3_a_rollback_needs() {
    let srv = TestServer::start_configured(clock_at(TUESDAY_10), |dir| {
        verification_toml(0.05) + &rollback_actions(dir)
    })
    .await;
    let (bob, carol, dave) = (srv.client("bob"), srv.client("carol"), srv.client("dave"));
    let fo = executed(&bob, "failover-test", "CHG-4101", "db").await;

    // A P1 with dave (L2) in command; changes paused, so only the P1's changes may run.
    let inc = carol
        .declare_incident(&IncidentRequest {
            priority: Priority::P1,
            title: "db primary lost".into(),
            commander: "dave".into(),
        })
        .await
        .expect("declare");
    bob.pause(&PauseRequest {
        reason: "P1 in progress".into(),
    })
    .await
    .expect("pause");

    let rb = bob
        .rollback(fo, &rollback_req("fail back", Some(&inc.ticket)))
        .await
        .expect("request the failback for the P1");
    assert_eq!(rb.state, ChangeState::PendingApproval);
    assert!(
        rb.approvals_required.contains(&Requirement::Commander {
            name: "dave".into(),
            incident: inc.ticket.clone(),
        }) && rb
            .approvals_required
            .contains(&Requirement::Level { min: Level::L3 }),
        "{:#?}",
        rb.approvals_required
    );

    let after = dave
        .approve(rb.id, &ApproveRequest::default())
        .await
        .expect("the commander approves");
    let after = settled(&dave, after.id).await;
    assert_eq!(
        after.state,
        ChangeState::PendingApproval,
        "the commander's approval ran an L3-only failback without an L3 approval; it now \
         requires {:?}",
        after.approvals_required
    );
    assert!(!rollback_log(&srv).contains(&"failback db".to_string()));
    let done = carol
        .approve(rb.id, &ApproveRequest::default())
        .await
        .expect("carol approves");
    let done = settled(&carol, done.id).await;
    assert_eq!(done.state, ChangeState::Executed);
    // The record still says what it needed.
    assert!(
        done.approvals_required
            .contains(&Requirement::Level { min: Level::L3 }),
        "{:#?}",
        done.approvals_required
    );
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
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_commandbridge"))
        .args(["audit", "verify", "--database"])
        .arg(srv.db_url())
        .env("NO_COLOR", "1")
        .env_remove("RUST_LOG")
        .output()
        .await
        .expect("run commandbridge audit verify");
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
