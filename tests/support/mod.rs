//! The test harness: the real server in-process on a random loopback port, over a SQLite file in
//! a temporary directory, with a pinned clock and the operators alice (L1), bob (L2), carol (L3)
//! and dave (L2). Tests talk to it with the real client, or with raw `reqwest` for requests the
//! client would never send.

#![allow(dead_code)] // each test binary uses a different part of the harness

pub mod binary;
pub mod db;
pub mod fakes;
pub mod icalendar;
pub mod load;
pub mod moto;
pub mod python;
pub mod tls;

use chrono::{DateTime, Utc};
use commandbridge::client::{ApiClient, ClientError};
use commandbridge::config::{DEFAULT_SERVER_TOML, ServerConfig};
use commandbridge::domain::api::Event;
use commandbridge::domain::api::{ApproveRequest, ChangeRequest, DenyRequest, ErrorBody};
use commandbridge::domain::{Change, Level};
use commandbridge::server::clock::Clock;
use commandbridge::server::store::Store;
use commandbridge::server::{self, AppState, Running, users};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tempfile::TempDir;

/// Tuesday, inside the Standard window (09:00–16:00 UTC).
pub const TUESDAY_10: &str = "2026-11-24T10:00:00Z";
/// Saturday noon: outside every window.
pub const SATURDAY_NOON: &str = "2026-11-28T12:00:00Z";
/// A Tuesday inside the Standard window and inside the configured Q4 freeze
/// (2026-12-18..2027-01-04), so the freeze is the only thing in the way.
pub const IN_Q4_FREEZE: &str = "2026-12-22T10:00:00Z";

/// The error codes the server uses in `{error, message}` bodies. A client-side fallback (a body
/// that was not an error body) would read like `unprocessable_entity` instead.
pub const ERROR_CODES: &[&str] = &[
    "unauthorized",
    "forbidden",
    "not_found",
    "conflict",
    "refused",
    "expired",
    "payload_too_large",
    "unsupported_media_type",
    "invalid",
    "method_not_allowed",
    "rate_limited",
    "too_many_streams",
    "unavailable",
    "bad_request",
];

pub fn at(s: &str) -> DateTime<Utc> {
    s.parse().expect("an RFC 3339 instant")
}

pub fn clock_at(s: &str) -> Clock {
    Clock::starting_at(at(s))
}

/// Runs the real binary against `srv` as bob, with a configuration directory of its own (so
/// no login of the machine's is read) and no terminal.
pub async fn cli_as_bob(srv: &TestServer, args: &[&str]) -> std::process::Output {
    let dir = tempfile::tempdir().expect("a config dir");
    tokio::process::Command::new(binary::BIN)
        .args(args)
        .env("CB_CONFIG_DIR", dir.path())
        .env("CB_SERVER", srv.base())
        .env("CB_TOKEN", srv.token("bob"))
        .env_remove("CB_CA_FILE")
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .expect("run commandbridge")
}

/// The quotas the harness lifts for load tests (see `TestServer::config_text_for`).
pub const LIFTED_QUOTAS: &str =
    "[server.quotas]\npending_per_operator = 1000000\nexecuting_per_operator = 100000\n";

/// Test actions with real commands, appended to the embedded default catalog. Each appends its
/// target as one line to `runs.log`, so a test can count executions. The script is fixed: the
/// log path and `{target}` are separate argv elements ($0 and $1), never spliced into it.
fn test_actions(log: &str) -> String {
    let record = r#"'echo "$1" >> "$0"'"#;
    let slow = r#"'echo "$1" >> "$0"; exec sleep 30'"#;
    format!(
        r#"
[[actions]]
name = "record-high"
risk = "high"
description = "test: append the target to runs.log"
rollback = "none"
command = ["sh", "-c", {record}, "{log}", "{{target}}"]
timeout_secs = 10

[[actions]]
name = "record-medium"
risk = "medium"
description = "test: append the target to runs.log"
rollback = "none"
command = ["sh", "-c", {record}, "{log}", "{{target}}"]
timeout_secs = 10

[[actions]]
name = "fail-medium"
risk = "medium"
description = "test: a command that exits 1"
rollback = "none"
command = ["false"]
timeout_secs = 10

[[actions]]
name = "slow-medium"
risk = "medium"
description = "test: append the target to runs.log, then run for 30 s"
rollback = "none"
command = ["sh", "-c", {slow}, "{log}", "{{target}}"]
timeout_secs = 60
"#
    )
}

/// The operators every test server starts with.
pub const OPERATORS: [(&str, Level); 4] = [
    ("alice", Level::L1),
    ("bob", Level::L2),
    ("carol", Level::L3),
    ("dave", Level::L2),
];

#[allow(unused_imports)] // not every test binary has a SQLite-only test
pub use db::{TestDb, postgres_only, sqlite_only};

/// The real server over a database file in its own temporary directory.
pub struct TestServer {
    pub db: TestDb,
    pub dir: TempDir,
    running: Option<Running>,
    base: String,
    tokens: BTreeMap<String, String>,
    http: reqwest::Client,
    /// TOML appended to the configuration (see [`TestServer::start_configured`]).
    extra_config: String,
}

impl TestServer {
    /// A server whose clock starts at `now` (RFC 3339), with alice L1, bob L2, carol L3, dave L2.
    pub async fn start(now: &str) -> TestServer {
        TestServer::start_with_clock(clock_at(now)).await
    }

    pub async fn start_with_clock(clock: Clock) -> TestServer {
        TestServer::start_configured(clock, |_| String::new()).await
    }

    /// A server whose configuration has `extra(dir)` appended, `dir` being the server's
    /// temporary directory (for log files the test actions write). The configuration is kept
    /// for restarts. An extra `[verification]` table replaces the default one.
    pub async fn start_configured(clock: Clock, extra: impl FnOnce(&Path) -> String) -> TestServer {
        // reqwest is built without a crypto provider of its own; the raw clients tests build
        // need the process's (the library's clients install it themselves).
        commandbridge::tls::install_provider();
        let dir = tempfile::tempdir().expect("a temporary directory");
        let extra_config = extra(dir.path());
        let mut server = TestServer {
            db: TestDb::create(dir.path()).await,
            dir,
            running: None,
            base: String::new(),
            tokens: BTreeMap::new(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(15))
                .build()
                .expect("a reqwest client"),
            extra_config,
        };
        server.boot(clock).await;
        for (name, level) in OPERATORS {
            server.add_operator(name, level).await;
        }
        server
    }

    pub fn config_text(&self) -> String {
        TestServer::config_text_for(self.dir.path(), &self.extra_config)
    }

    /// The configuration of a test server in `dir`: the embedded default, the test actions
    /// (logging to `dir/runs.log`) and `extra`. An extra `[verification]` table replaces the
    /// default one; an extra `[server]` table, first in `extra`, adds to the default one.
    pub fn config_text_for(dir: &Path, extra: &str) -> String {
        let log = dir.join("runs.log");
        let mut base = DEFAULT_SERVER_TOML.to_string();
        if extra.lines().any(|l| l.trim() == "[verification]") {
            let default = "[verification]\nduration_minutes = 15\ninterval_seconds = 30\n";
            assert!(
                base.contains(default),
                "the default configuration no longer holds {default:?}: update the harness"
            );
            base = base.replace(default, "");
        }
        // TOML allows one `[server]` table: an extra one's keys join the default's.
        let (server_keys, extra) = match extra.strip_prefix("[server]\n") {
            Some(rest) => rest.split_at(rest.find("\n[").map_or(rest.len(), |i| i + 1)),
            None => ("", extra),
        };
        base = base.replacen("[server]\n", &format!("[server]\n{server_keys}"), 1);
        // Tests and benchmarks load a server from one or two tokens (thousands of pending
        // changes by alice, many executing at once): the quotas on pending and executing changes
        // are lifted unless a test sets `[server.quotas]` itself (`tests/all/security/quotas.rs`).
        let quotas = if extra.contains("[server.quotas]") {
            ""
        } else {
            LIFTED_QUOTAS
        };
        format!(
            "{base}\n{}\n{quotas}{extra}",
            test_actions(log.to_str().expect("a UTF-8 temporary path")),
        )
    }

    async fn boot(&mut self, clock: Clock) {
        assert!(self.running.is_none(), "the server is already running");
        let config = ServerConfig::parse(&self.config_text(), "test").expect("test config");
        let store = Store::open(&self.db_url()).await.expect("open the store");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let running = server::start(config, store, clock, listener)
            .await
            .expect("start the server");
        self.base = format!("http://{}", running.addr);
        self.running = Some(running);
    }

    /// Stops the server (graceful: in-flight requests finish, the database is closed).
    pub async fn stop(&mut self) {
        let running = self.running.take().expect("the server is running");
        tokio::time::timeout(Duration::from_secs(10), running.stop())
            .await
            .expect("the server stops within 10 s");
    }

    /// Starts the server again on the same database file, with a new clock and a new port.
    pub async fn restart(&mut self, clock: Clock) {
        if self.running.is_some() {
            self.stop().await;
        }
        self.boot(clock).await;
    }

    /// Starts the server again with another extra configuration (a catalog changed meanwhile).
    pub async fn restart_configured(&mut self, clock: Clock, extra: &str) {
        self.extra_config = extra.to_string();
        self.restart(clock).await;
    }

    /// Takes the running server, e.g. to stop it under a test's own time limit.
    pub fn take_running(&mut self) -> Running {
        self.running.take().expect("the server is running")
    }

    pub fn db_path(&self) -> PathBuf {
        self.dir.path().join("cb.db")
    }

    pub fn db_url(&self) -> String {
        self.db.url.clone()
    }

    pub fn runs_log_path(&self) -> PathBuf {
        self.dir.path().join("runs.log")
    }

    /// The lines the test commands appended (one per execution), or none.
    pub fn runs(&self) -> Vec<String> {
        std::fs::read_to_string(self.runs_log_path())
            .map(|s| s.lines().map(str::to_string).collect())
            .unwrap_or_default()
    }

    pub fn runs_of(&self, target: &str) -> usize {
        self.runs().iter().filter(|l| *l == target).count()
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    pub fn state(&self) -> &AppState {
        &self.running.as_ref().expect("the server is running").state
    }

    pub fn store(&self) -> &Store {
        &self.state().store
    }

    /// Creates an operator in the database (as `commandbridge user add` does); returns its client.
    pub async fn add_operator(&mut self, name: &str, level: Level) -> ApiClient {
        let token = users::add(self.store(), name, level)
            .await
            .expect("add an operator");
        self.tokens.insert(name.to_string(), token);
        self.client(name)
    }

    pub fn token(&self, name: &str) -> &str {
        self.tokens
            .get(name)
            .unwrap_or_else(|| panic!("no operator {name}"))
    }

    /// The real client, as operator `name`.
    pub fn client(&self, name: &str) -> ApiClient {
        ApiClient::new(&self.base, self.token(name)).expect("a client")
    }

    /// A client with an arbitrary token.
    pub fn client_with_token(&self, token: &str) -> ApiClient {
        ApiClient::new(&self.base, token).expect("a client")
    }

    /// A raw request: `path` is appended to the server's base URL as is.
    pub fn raw(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http.request(method, format!("{}{path}", self.base))
    }

    /// A raw request authenticated as `name`.
    pub fn raw_as(
        &self,
        name: &str,
        method: reqwest::Method,
        path: &str,
    ) -> reqwest::RequestBuilder {
        self.raw(method, path).bearer_auth(self.token(name))
    }

    /// A value from `/metrics`.
    pub async fn metric(&self, name: &str) -> f64 {
        metric_of(&self.http, &self.base, name).await
    }
}

/// A value from the `/metrics` of the server at `base`.
pub async fn metric_of(http: &reqwest::Client, base: &str, name: &str) -> f64 {
    let text = metrics_text(http, base).await;
    metric_in(&text, name).unwrap_or_else(|| panic!("no metric {name} in:\n{text}"))
}

/// The `/metrics` text of the server at `base`.
pub async fn metrics_text(http: &reqwest::Client, base: &str) -> String {
    http.get(format!("{base}/metrics"))
        .send()
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("metrics text")
}

/// The value of metric `name` (any labels) in a `/metrics` text, if it has one.
pub fn metric_in(text: &str, name: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (key, value) = l.rsplit_once(' ')?;
        let key = key.split('{').next()?;
        (key == name).then(|| value.parse().expect("a number"))
    })
}

/// A raw response: status, content type and body (the body is not read for event streams,
/// which stay open).
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub content_type: String,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    /// Asserts the status and that the body is `{error, message}` with a message; returns it.
    pub fn error(&self, status: u16) -> ErrorBody {
        assert_eq!(
            self.status,
            status,
            "unexpected status; body: {}",
            self.text()
        );
        self.error_body()
    }

    /// Asserts the body is a proper error body, whatever the status.
    pub fn error_body(&self) -> ErrorBody {
        self.check_error_body()
            .unwrap_or_else(|why| panic!("{why}"))
    }

    /// Whether the body is `{error, message}` with one of the server's codes and a message.
    pub fn check_error_body(&self) -> Result<ErrorBody, String> {
        if !self.content_type.starts_with("application/json") {
            return Err(format!(
                "{} error with content type {:?}, body {:?}",
                self.status,
                self.content_type,
                self.text()
            ));
        }
        let body: ErrorBody = serde_json::from_slice(&self.body).map_err(|e| {
            format!(
                "{} error body is not {{error, message}} ({e}): {:?}",
                self.status,
                self.text()
            )
        })?;
        if !ERROR_CODES.contains(&body.error.as_str()) {
            return Err(format!("unexpected error code {:?}", body.error));
        }
        if body.message.trim().is_empty() {
            return Err(format!("{} error with an empty message", self.status));
        }
        Ok(body)
    }
}

/// Sends a raw request. Transport errors fail the test: the server must answer everything.
pub async fn send(req: reqwest::RequestBuilder) -> RawResponse {
    let resp = req.send().await.unwrap_or_else(|e| {
        panic!(
            "the server did not answer: {e} (source: {:?})",
            std::error::Error::source(&e)
        )
    });
    let status = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let body = if content_type.starts_with("text/event-stream") {
        Vec::new()
    } else {
        resp.bytes().await.expect("read the body").to_vec()
    };
    RawResponse {
        status,
        content_type,
        body,
    }
}

/// The API error of a client call: asserts the status and a proper `{error, message}` body.
#[track_caller]
pub fn api_error<T: std::fmt::Debug>(
    result: Result<T, ClientError>,
    status: u16,
) -> (String, String) {
    match result {
        Err(ClientError::Api {
            status: got,
            error,
            message,
        }) => {
            assert_eq!(got, status, "unexpected status: {error}: {message}");
            assert!(
                ERROR_CODES.contains(&error.as_str()),
                "error code {error:?} is not one of the server's (was the body an error body?)"
            );
            assert!(!message.trim().is_empty(), "empty error message");
            (error, message)
        }
        other => panic!("expected a {status} API error, got {other:?}"),
    }
}

/// A change request.
pub fn req(action: &str, ticket: &str, target: &str, params: serde_json::Value) -> ChangeRequest {
    let params = match params {
        serde_json::Value::Object(m) => m.into_iter().collect(),
        serde_json::Value::Null => BTreeMap::new(),
        other => panic!("params must be an object, not {other}"),
    };
    ChangeRequest {
        action: action.to_string(),
        ticket: ticket.to_string(),
        target: target.to_string(),
        params,
        reason: format!("test: {action} on {target}"),
        run_at: None,
    }
}

/// Creates a change that must succeed.
pub async fn create(client: &ApiClient, r: &ChangeRequest) -> Change {
    client
        .create_change(r, None)
        .await
        .unwrap_or_else(|e| panic!("create {} on {}: {e}", r.action, r.target))
}

/// Polls `GET /changes/{id}` until the change leaves `executing` (commands run in the background
/// once the create or approve call has waited its moment).
pub async fn settled(client: &ApiClient, id: i64) -> Change {
    for _ in 0..100 {
        let c = client.change(id).await.expect("GET /changes/{id}");
        if c.state != commandbridge::domain::ChangeState::Executing {
            return c;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("change #{id} still executing after 5 s");
}

/// An approval without a comment.
pub fn approve() -> ApproveRequest {
    ApproveRequest::default()
}

pub fn deny(reason: &str) -> DenyRequest {
    DenyRequest {
        reason: reason.into(),
    }
}

/// A live event stream, as the client opens it.
pub type Events = futures::stream::BoxStream<'static, Result<Event, ClientError>>;

/// The next event, within 2 s. A `stream.ready` greeting (a marker of where the stream starts,
/// not an event of its own) is skipped.
pub async fn next_event(stream: &mut Events) -> Event {
    loop {
        let e = tokio::time::timeout(Duration::from_secs(2), futures::StreamExt::next(stream))
            .await
            .expect("an event within 2 s")
            .expect("the stream is open")
            .expect("a valid event");
        if e.kind != "stream.ready" {
            return e;
        }
    }
}

/// `commandbridge audit verify` of the real binary over the database at `url`.
pub async fn audit_verify(url: &str) -> std::process::Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_commandbridge"))
        .args(["audit", "verify", "--database", url])
        .env("NO_COLOR", "1")
        .env_remove("RUST_LOG")
        .output()
        .await
        .expect("run commandbridge audit verify")
}
