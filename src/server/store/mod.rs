//! Persistence: every SQL statement of the server lives here.
//!
//! Writes go through [`Store::write`], which opens a `BEGIN IMMEDIATE` transaction on the single
//! writer connection; [`Tx::record`] then adds the audit entry and the event of a state change
//! to the same transaction (appended at its commit), so a row, its audit entry and its event
//! commit together or not at all.
//!
//! One file per resource: `operators.rs`, `changes.rs` (changes, approvals, executions),
//! `policy.rs` (freezes, the pause, incidents: what the policy reads), `audit.rs` (the audit
//! chain and the event table), `verification.rs` (verifications and samples), `outbox.rs` (the
//! ticket webhook's messages), `schedule.rs` (scheduled changes, the live changes a new one may
//! conflict with). Each holds the `impl Store` (reads on a pooled reader connection)
//! and `impl Tx` (reads and writes inside the write transaction) of its resource.
//!
//! Naming rule: resource first, then verb: `change_insert`, `freeze_delete`, `outbox_due`. A
//! bare resource name reads one (`change`), its plural reads many (`changes`). Where a `Store`
//! and a `Tx` method need the same read, the SQL is one private `select_*` function over a
//! connection that both call.

pub mod audit;
pub mod batch;
pub mod calendar;
pub mod changes;
pub mod operators;
pub mod outbox;
pub mod policy;
mod rows;
pub mod schedule;
pub mod schema;
pub mod verification;

use crate::domain::api::{AuditEntry, Event};
use crate::domain::approval::Approval;
use crate::domain::approval::Requirement;
use crate::domain::change::{Change, ChangeState, Conflict, ExecutionOutput};
use crate::domain::incident::Incident;
use crate::domain::operator::Operator;
use crate::domain::{Freeze, Level, Pause};
use chrono::{DateTime, Utc};
use rows::{ChangeRow, IncidentRow, from_ms, ms};
use sha2::{Digest, Sha256};
use sqlx::any::{AnyConnectOptions, AnyPoolOptions, AnyRow};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::{AnyConnection, AnyPool, Executor, Row};
use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

pub use audit::{AuditSnapshot, GENESIS_HASH, RawAuditRow, audit_hash};
pub use changes::{CommandProcess, EXECUTION_LEASE_MS, ExecutionLease, NewChange};
pub use schedule::{LiveAsk, LiveChange, OpenChanges};
pub use schema::SchemaState;

pub type DbError = sqlx::Error;

/// Which database a URL names. SQLite is the embedded default (one server); PostgreSQL lets
/// several replicas share one database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn of(url: &str) -> Result<Backend, DbError> {
        if url.starts_with("sqlite:") {
            Ok(Backend::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Backend::Postgres)
        } else {
            Err(DbError::Configuration(
                format!(
                    "database URL '{}' is not supported: use sqlite://PATH or \
                     postgres://USER@HOST/DATABASE",
                    redact(url)
                )
                .into(),
            ))
        }
    }
}

/// A URL without its password, for messages and logs.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}

/// Connection settings from the server config (`[server.database_pool]`).
#[derive(Debug, Clone)]
pub struct PoolSettings {
    /// Read connections (PostgreSQL and SQLite); writes use one connection per server.
    pub max_connections: u32,
    /// PostgreSQL's `statement_timeout`: a statement (or a wait for the write lock) that takes
    /// longer fails instead of holding a request forever.
    pub statement_timeout: Duration,
    /// How long a request waits for a connection (and so for a database that is down).
    pub acquire_timeout: Duration,
}

impl Default for PoolSettings {
    fn default() -> Self {
        PoolSettings {
            max_connections: 8,
            statement_timeout: Duration::from_secs(30),
            acquire_timeout: Duration::from_secs(5),
        }
    }
}

/// The advisory lock every PostgreSQL write transaction takes first. Taken exclusively
/// ([`Store::write`]), it runs writes from all replicas one at a time, as SQLite's
/// `BEGIN IMMEDIATE` does on one server: each decision sees every commit before it. Change
/// requests, the hot path, take it shared ([`Store::write_shared`]): they run side by side on
/// several replicas, while anything they read (freezes, the pause, incidents) is written only
/// under the exclusive lock, so it cannot change under a decision. Shared writers line up for
/// the audit chain and the event ids only at their commit ([`APPEND_LOCK`], `Tx::flush`).
///
/// Sent with the BEGIN, as one simple-protocol message: one round trip for both.
const BEGIN_WRITE: &str = "BEGIN; SELECT pg_advisory_xact_lock(54102385645305857)";
///
/// A shared writer runs the requests of a batch (`batch.rs`), and its statements find a few rows
/// each through an index. Bitmap scans and sorts are off for it: PostgreSQL plans a kept
/// statement once, generically, on the table as it is then, and on a new, nearly empty table
/// it chose for the conflict lookup (`schedule.rs`) a bitmap of every pending change, sorted,
/// kept for the life of the connection (6.5 ms a batch in `benches/replicas.rs`, against
/// 0.4 ms walking `changes_by_target` backwards to its limit).
const BEGIN_SHARED: &str = "BEGIN; SELECT pg_advisory_xact_lock_shared(54102385645305857); \
     SET LOCAL enable_bitmapscan = off; SET LOCAL enable_sort = off";

/// Held by a shared writer from its audit append to its commit: one unbroken hash chain, and
/// event ids taken under it and released only after the commit is visible, so they become
/// visible in commit order (what `server/events` relies on). Exclusive writers need not take
/// it: no shared writer is open beside them.
const APPEND_LOCK: &str =
    "SELECT COUNT(*) FROM (SELECT pg_advisory_xact_lock(54102385645305858)) AS l";

/// The channel on which a PostgreSQL commit that wrote events wakes every replica's tail
/// reader (`server/events.rs`): a statement trigger on `events` notifies it
/// (`migrations/postgres/0006_replicas.sql`), delivered at commit, without a round trip.
pub const EVENTS_CHANNEL: &str = "cb_events";

/// Freezes and the pause as read at a `policy_version`.
type PolicySnapshot = (i64, Vec<Freeze>, Option<Pause>);

#[derive(Clone)]
pub struct Store {
    backend: Backend,
    /// This server, as it signs the leases it holds (see `executor::server_identity`).
    owner: Arc<str>,
    url: String,
    reader: AnyPool,
    writer: AnyPool,
    /// Freezes and the pause, read on every decision but changed rarely: kept with the
    /// `policy_version` they were read at, and used only while a read of that one-row table
    /// (in the deciding transaction) still shows it. A freeze committed by another replica
    /// bumps the version, so no decision after that commit uses the old list.
    policy_cache: Arc<Mutex<Option<PolicySnapshot>>>,
}

/// A write transaction. Dropping it without [`Tx::commit`] rolls back.
pub struct Tx {
    owner: Arc<str>,
    inner: sqlx::Transaction<'static, sqlx::Any>,
    /// Opened by [`Store::write_shared`] on PostgreSQL: must take the append lock to append.
    shared: bool,
    postgres: bool,
    /// Audit entries and events to append at the commit (`audit.rs`).
    pending: Vec<audit::Pending>,
}

/// What a state change tells the audit log and the event stream.
pub struct Record<'a> {
    pub actor: &'a str,
    pub kind: &'a str,
    /// e.g. `change:12`
    pub subject: String,
    pub summary: String,
    pub data: serde_json::Value,
}

/// Lease times are the machine's real clock, whatever clock the policy runs on (the demo's and
/// the tests' are shifted): they measure whether a server is still alive, not business time.
pub fn lease_now() -> i64 {
    ms(Utc::now())
}

/// The connection settings the server uses, shared with the benchmark's raw-commit baseline.
pub fn sqlite_options(url: &str) -> Result<SqliteConnectOptions, DbError> {
    Ok(SqliteConnectOptions::from_str(url)?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .foreign_keys(true)
        .busy_timeout(Duration::from_secs(10)))
}

/// The same settings as [`sqlite_options`], for connections made through the `Any` driver
/// (which takes only a URL): run on every new connection.
const SQLITE_PRAGMAS: &str =
    "PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON; PRAGMA synchronous = FULL;";

fn sqlite_pragmas(
    conn: &mut AnyConnection,
    _meta: sqlx::pool::PoolConnectionMetadata,
) -> futures::future::BoxFuture<'_, Result<(), DbError>> {
    Box::pin(async move {
        conn.execute(SQLITE_PRAGMAS).await?;
        Ok(())
    })
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding it cannot leave the cache half-written: it holds one Option.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The database holds the audit log and token hashes: it, and the `-wal` and `-shm` files
/// SQLite creates with its mode, are for the server's user only.
fn make_private(options: &SqliteConnectOptions) -> Result<(), DbError> {
    let path = options.get_filename();
    // In-memory databases (":memory:", sqlx's "file:sqlx-in-memory-N") have no file.
    let name = path.to_string_lossy();
    if name == ":memory:" || name.starts_with("file:") {
        return Ok(());
    }
    let fixed = crate::private_fs::ensure_private_file(path, &["-wal", "-shm"]).map_err(|e| {
        sqlx::Error::Configuration(
            format!(
                "cannot make the database {} private (mode 0600): {e}",
                path.display()
            )
            .into(),
        )
    })?;
    for what in fixed {
        tracing::warn!("{what}");
    }
    Ok(())
}

fn parse_col<T: FromStr<Err = String>>(r: &AnyRow, col: &str) -> Result<T, DbError> {
    let s: String = r.try_get(col)?;
    s.parse().map_err(|e: String| DbError::Decode(e.into()))
}

fn json_col<T: serde::de::DeserializeOwned>(r: &AnyRow, col: &str) -> Result<T, DbError> {
    let s: String = r.try_get(col)?;
    serde_json::from_str(&s).map_err(|e| DbError::Decode(Box::new(e)))
}

fn to_json<T: serde::Serialize + ?Sized>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "null".into())
}

/// The `Any` URL of a SQLite database, read-write-create or read-only.
fn sqlite_url(url: &str, read_only: bool) -> Result<String, DbError> {
    let options = SqliteConnectOptions::from_str(url)?;
    let path = options.get_filename().to_string_lossy().into_owned();
    if path == ":memory:" || path.starts_with("file:") {
        return Ok(url.to_string());
    }
    let mode = if read_only { "ro" } else { "rwc" };
    Ok(format!("sqlite://{path}?mode={mode}"))
}

impl Store {
    /// Opens the database with default connection settings. SQLite is migrated on open (one
    /// server owns the file); PostgreSQL must be at this binary's schema (`commandbridge
    /// migrate`), since several replicas must not race to change it.
    pub async fn open(url: &str) -> Result<Store, DbError> {
        Store::open_with(url, &PoolSettings::default()).await
    }

    pub async fn open_with(url: &str, settings: &PoolSettings) -> Result<Store, DbError> {
        sqlx::any::install_default_drivers();
        let backend = Backend::of(url)?;
        let store = match backend {
            Backend::Sqlite => {
                make_private(&sqlite_options(url)?)?;
                // The WAL mode is a property of the file: set once, before any reader opens.
                {
                    use sqlx::{ConnectOptions, Connection};
                    sqlite_options(url)?.connect().await?.close().await?;
                }
                // One writer: SQLite serialises writers anyway, and queueing them in the pool
                // is cheaper than spinning on SQLITE_BUSY.
                let writer = AnyPoolOptions::new()
                    .max_connections(1)
                    .acquire_timeout(settings.acquire_timeout)
                    .after_connect(sqlite_pragmas)
                    .connect(&sqlite_url(url, false)?)
                    .await?;
                schema::migrate(backend, &writer).await?;
                let reader = AnyPoolOptions::new()
                    .max_connections(settings.max_connections)
                    .acquire_timeout(settings.acquire_timeout)
                    .after_connect(sqlite_pragmas)
                    .connect(&sqlite_url(url, true)?)
                    .await?;
                Store::new(backend, url, reader, writer)
            }
            Backend::Postgres => {
                let timeout = format!(
                    "SET statement_timeout = {}",
                    settings.statement_timeout.as_millis()
                );
                let options = AnyConnectOptions::from_str(url)?;
                let pool = |max: u32| {
                    let timeout = timeout.clone();
                    AnyPoolOptions::new()
                        .max_connections(max)
                        .acquire_timeout(settings.acquire_timeout)
                        .after_connect(move |conn: &mut AnyConnection, _meta| {
                            let timeout = sqlx::AssertSqlSafe(timeout.clone());
                            Box::pin(async move {
                                sqlx::query(timeout).execute(&mut *conn).await?;
                                Ok(())
                            })
                        })
                        .connect_with(options.clone())
                };
                // Writes take the cluster-wide write lock one at a time anyway (see
                // BEGIN_WRITE): more writer connections would only queue on it.
                let writer = pool(1).await?;
                let reader = pool(settings.max_connections).await?;
                let store = Store::new(backend, url, reader, writer);
                store.schema_check().await?;
                store
            }
        };
        Ok(store)
    }

    fn new(backend: Backend, url: &str, reader: AnyPool, writer: AnyPool) -> Store {
        Store {
            backend,
            owner: crate::server::executor::server_identity().into(),
            url: url.to_string(),
            reader,
            writer,
            policy_cache: Arc::default(),
        }
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// This server's signature on the leases it holds.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// The URL this store was opened with (for a listener of its own, e.g. LISTEN/NOTIFY).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A read connection, for a consistent look at several tables without taking the writer.
    pub async fn read(&self) -> Result<sqlx::pool::PoolConnection<sqlx::Any>, DbError> {
        self.reader.acquire().await
    }

    /// Whether the database answers, for `/healthz`.
    pub async fn ping(&self) -> Result<(), DbError> {
        sqlx::query("SELECT 1")
            .execute(&self.reader)
            .await
            .map(|_| ())
    }

    pub async fn close(&self) {
        self.reader.close().await;
        self.writer.close().await;
        // Its leases are abandoned now: another server takes them over without waiting.
        crate::server::executor::server_retired(&self.owner);
    }

    /// A write transaction that excludes every other writer (on PostgreSQL, of every replica).
    pub async fn write(&self) -> Result<Tx, DbError> {
        self.begin(false).await
    }

    /// A write transaction that may run beside other shared ones on other replicas (see
    /// [`BEGIN_WRITE`]): for writes that read nothing a concurrent shared writer changes.
    pub async fn write_shared(&self) -> Result<Tx, DbError> {
        self.begin(true).await
    }

    async fn begin(&self, shared: bool) -> Result<Tx, DbError> {
        let inner = match (self.backend, shared) {
            (Backend::Sqlite, _) => self.writer.begin_with("BEGIN IMMEDIATE").await?,
            (Backend::Postgres, false) => self.writer.begin_with(BEGIN_WRITE).await?,
            (Backend::Postgres, true) => self.writer.begin_with(BEGIN_SHARED).await?,
        };
        Ok(Tx {
            owner: self.owner.clone(),
            inner,
            shared: shared && self.backend == Backend::Postgres,
            postgres: self.backend == Backend::Postgres,
            pending: Vec::new(),
        })
    }

    /// A read transaction that sees one snapshot for all its statements.
    async fn snapshot(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>, DbError> {
        match self.backend {
            // A deferred BEGIN on a WAL reader fixes its snapshot at the first read and keeps
            // it until the end of the transaction.
            Backend::Sqlite => self.reader.begin().await,
            Backend::Postgres => {
                self.reader
                    .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                    .await
            }
        }
    }
}

impl Tx {
    pub fn conn(&mut self) -> &mut AnyConnection {
        &mut self.inner
    }

    /// Appends the audit entries and events, then commits; returns whether events were
    /// written (so the caller wakes event listeners).
    pub async fn commit(mut self) -> Result<bool, DbError> {
        let events = self.flush().await?;
        self.inner.commit().await?;
        Ok(events)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::audit_check::{Verdict, verify};

    /// The server and `commandbridge user add` append to one chain from two processes: each
    /// one's cached head goes stale, and the chain must stay whole.
    #[tokio::test]
    async fn two_writers_keep_one_unbroken_chain() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("cb.db").display());
        let (a, b) = (
            Store::open(&url).await.unwrap(),
            Store::open(&url).await.unwrap(),
        );
        let now = Utc::now();
        for i in 0..6 {
            let store = if i % 3 == 0 { &b } else { &a };
            let mut tx = store.write().await.unwrap();
            tx.audit(
                now,
                "t",
                "test",
                &format!("n:{i}"),
                &serde_json::json!({ "i": i }),
            )
            .await
            .unwrap();
            tx.commit().await.unwrap();
        }
        // A rolled-back append must not leave a stale head behind either.
        let mut tx = a.write().await.unwrap();
        tx.audit(now, "t", "test", "gone", &serde_json::json!({}))
            .await
            .unwrap();
        drop(tx);
        let mut tx = a.write().await.unwrap();
        tx.audit(now, "t", "test", "last", &serde_json::json!({}))
            .await
            .unwrap();
        tx.commit().await.unwrap();
        match verify(&a).await.unwrap() {
            Verdict::Intact { entries, .. } => assert_eq!(entries, 7),
            broken => panic!("{broken:?}"),
        }
    }
}
