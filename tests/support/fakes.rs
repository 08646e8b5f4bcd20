//! Real HTTP endpoints on loopback that the server checks and calls (a service's health and
//! Prometheus-compatible query endpoints, a ticket webhook receiver), the configuration that points
//! the server at them, and the API helpers of the verification, rollback and webhook tests.

use super::*;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use commandbridge::client::ApiClient;
use commandbridge::domain::api::{Event, OutcomeKind, OutcomeRequest, RollbackRequest};
use commandbridge::domain::verification::VerificationDetail;
use commandbridge::domain::verification::{Sample, VerificationState};
use commandbridge::domain::{ChangeState, Verification};
use commandbridge::server::clock::Clock;
use futures::StreamExt;
use serde_json::json;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU16, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The configured error-rate query: a real PromQL expression, with the braces, quotes, `=~` and
/// spaces that must survive URL encoding on the way to the Prometheus endpoint.
pub const QUERY: &str = r#"sum(rate(http_requests_total{service="checkout",code=~"5.."}[5m])) / sum(rate(http_requests_total{service="checkout"}[5m]))"#;

// ---- the real endpoints the server checks ----------------------------------------------------

/// A service on loopback: `GET /healthz` answers the status the test sets, and
/// `GET /api/v1/query?query=…` answers a Prometheus instant-query vector with the value the test
/// sets. It records every query string it was asked.
#[derive(Clone)]
pub struct FakeService {
    pub addr: SocketAddr,
    pub health: Arc<AtomicU16>,
    /// An f64, as bits.
    pub rate: Arc<AtomicU64>,
    pub health_hits: Arc<AtomicUsize>,
    pub queries: Arc<Mutex<Vec<String>>>,
}

pub async fn healthz(State(s): State<FakeService>) -> (StatusCode, String) {
    s.health_hits.fetch_add(1, SeqCst);
    let code = s.health.load(SeqCst);
    (
        StatusCode::from_u16(code).expect("a status code"),
        format!("status {code}\n"),
    )
}

pub async fn prometheus_query(
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
    pub async fn start() -> FakeService {
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
        let app = svc.router();
        tokio::spawn(async move { axum::serve(listener, app).await });
        svc
    }

    /// Its endpoints, to serve on another listener too (https: `support::tls`).
    pub fn router(&self) -> Router {
        Router::new()
            .route("/healthz", get(healthz))
            .route("/api/v1/query", get(prometheus_query))
            .with_state(self.clone())
    }

    pub fn set_health(&self, status: u16) {
        self.health.store(status, SeqCst);
    }

    pub fn set_rate(&self, value: f64) {
        self.rate.store(value.to_bits(), SeqCst);
    }

    pub fn health_hits(&self) -> usize {
        self.health_hits.load(SeqCst)
    }

    pub fn queries(&self) -> Vec<String> {
        self.queries.lock().unwrap().clone()
    }

    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// One POST the webhook receiver got, and what it answered.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub key: String,
    pub event: String,
    pub body: serde_json::Value,
    pub answered: u16,
}

/// A ticket system's webhook endpoint: `POST /hook`, answering 503 to the first `refuse` requests
/// and 200 after that, recording everything.
#[derive(Clone, Default)]
pub struct Receiver {
    pub got: Arc<Mutex<Vec<Delivery>>>,
    pub refuse: Arc<AtomicUsize>,
}

pub async fn hook(State(r): State<Receiver>, headers: HeaderMap, body: String) -> StatusCode {
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
    pub async fn start_on(port: u16, refuse: usize) -> Receiver {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap_or_else(|e| panic!("bind the webhook port {port} again: {e}"));
        let r = Receiver {
            got: Arc::default(),
            refuse: Arc::new(AtomicUsize::new(refuse)),
        };
        let app = r.router();
        tokio::spawn(async move { axum::serve(listener, app).await });
        r
    }

    /// Its endpoint, to serve on another listener too (https: `support::tls`).
    pub fn router(&self) -> Router {
        Router::new()
            .route("/hook", post(hook))
            .with_state(self.clone())
    }

    pub fn all(&self) -> Vec<Delivery> {
        self.got.lock().unwrap().clone()
    }

    /// The requests it answered 200.
    pub fn delivered(&self) -> Vec<Delivery> {
        self.all()
            .into_iter()
            .filter(|d| d.answered == 200)
            .collect()
    }

    pub async fn wait_delivered(&self, n: usize, limit: Duration) -> Vec<Delivery> {
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
pub async fn assert_outbox_drained(srv: &TestServer) {
    let next = srv
        .store()
        .outbox_next_due()
        .await
        .expect("read the outbox");
    assert_eq!(
        next, None,
        "a delivered webhook message is still queued for another attempt"
    );
}

/// A loopback port nothing listens on (it was free a moment ago): connections are refused.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind a loopback port")
        .local_addr()
        .expect("an address")
        .port()
}

// ---- configuration ---------------------------------------------------------------------------

pub fn verification_toml(minutes: f64) -> String {
    format!("\n[verification]\nduration_minutes = {minutes}\ninterval_seconds = 1\n")
}

/// A `[[services]]` entry for `name` checked against `svc`: its health URL, its error rate
/// (the [`QUERY`] against `max`), or both.
pub fn service_toml(name: &str, svc: &FakeService, health: bool, max: Option<f64>) -> String {
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

pub fn webhook_toml(port: u16) -> String {
    format!("\n[ticket_webhook]\nurl = \"http://127.0.0.1:{port}/hook\"\n")
}

/// Actions with real commands for the rollback tests. Each appends a line to `rollback.log` in
/// the server's directory: the scripts are fixed, the log path is `$0` and the values are
/// separate argv elements (`$1`, `$2`), never spliced into a script.
pub fn rollback_actions(dir: &Path) -> String {
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

pub fn rollback_log(srv: &TestServer) -> Vec<String> {
    std::fs::read_to_string(srv.dir.path().join("rollback.log"))
        .map(|s| s.lines().map(str::to_string).collect())
        .unwrap_or_default()
}

// ---- API helpers -----------------------------------------------------------------------------

pub fn verified(note: Option<&str>) -> OutcomeRequest {
    OutcomeRequest {
        outcome: OutcomeKind::Verified,
        note: note.map(str::to_string),
        priority: None,
        commander: None,
    }
}

pub fn escalated(note: Option<&str>, commander: Option<&str>) -> OutcomeRequest {
    OutcomeRequest {
        outcome: OutcomeKind::Escalated,
        note: note.map(str::to_string),
        priority: None,
        commander: commander.map(str::to_string),
    }
}

pub fn rollback_req(reason: &str, ticket: Option<&str>) -> RollbackRequest {
    RollbackRequest {
        reason: reason.to_string(),
        ticket: ticket.map(str::to_string),
    }
}

/// Requests a change that runs at once and waits until it has run.
pub async fn executed(client: &ApiClient, action: &str, ticket: &str, target: &str) -> i64 {
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
pub async fn verification_of(client: &ApiClient, change_id: i64) -> Verification {
    let all = client.verifications().await.expect("GET /verifications");
    all.iter()
        .find(|v| v.change_id == change_id)
        .cloned()
        .unwrap_or_else(|| panic!("no verification for change #{change_id} in {all:#?}"))
}

/// Polls `GET /verifications/{id}` until `done` holds.
pub async fn wait_until(
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

pub async fn wait_state(
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

pub fn ms(n: i64) -> chrono::Duration {
    chrono::Duration::milliseconds(n)
}

/// Sleeps until the server's clock reads `t`.
pub async fn sleep_until(clock: &Clock, t: DateTime<Utc>) {
    if let Ok(d) = (t - clock.now()).to_std() {
        tokio::time::sleep(d).await;
    }
}

/// Collects the server's event stream (replayed from the first event, then live) in the
/// background.
pub fn collect_events(client: &ApiClient) -> Arc<Mutex<Vec<Event>>> {
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

pub async fn wait_event(
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

pub fn health_of(s: &Sample) -> (bool, String) {
    let h = s
        .health
        .as_ref()
        .unwrap_or_else(|| panic!("a sample without a health check: {s:#?}"));
    (h.ok, h.detail.clone())
}
