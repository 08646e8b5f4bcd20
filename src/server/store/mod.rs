//! Persistence: every SQL statement of the server lives here.
//!
//! Writes go through [`Store::write`], which opens a `BEGIN IMMEDIATE` transaction on the single
//! writer connection; [`Tx::record`] then adds the audit entry and the event of a state change
//! to the same transaction, so a row, its audit entry and its event commit together or not at all.
//!
//! One file per resource: `operators.rs`, `changes.rs` (changes, approvals, executions),
//! `policy.rs` (freezes, the pause, incidents: what the policy reads), `audit.rs` (the audit
//! chain and the event table), `verification.rs` (verifications and samples), `outbox.rs` (the
//! ticket webhook's messages). Each holds the `impl Store` (reads on a pooled reader connection)
//! and `impl Tx` (reads and writes inside the write transaction) of its resource.
//!
//! Naming rule: resource first, then verb: `change_insert`, `freeze_delete`, `outbox_due`. A
//! bare resource name reads one (`change`), its plural reads many (`changes`). Where a `Store`
//! and a `Tx` method need the same read, the SQL is one private `select_*` function over a
//! connection that both call.

pub mod audit;
pub mod batch;
pub mod changes;
pub mod operators;
pub mod outbox;
pub mod policy;
mod rows;
pub mod verification;

use crate::domain::api::{AuditEntry, Event};
use crate::domain::approval::Approval;
use crate::domain::approval::Requirement;
use crate::domain::change::{Change, ChangeState, ExecutionOutput};
use crate::domain::incident::Incident;
use crate::domain::operator::Operator;
use crate::domain::{Freeze, Level, Pause};
use chrono::{DateTime, Utc};
use rows::{ChangeRow, IncidentRow, from_ms, ms};
use sha2::{Digest, Sha256};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Row, SqliteConnection};
use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

pub use audit::{AuditSnapshot, GENESIS_HASH, RawAuditRow, audit_hash};
pub use changes::{CommandProcess, NewChange};

pub type DbError = sqlx::Error;

#[derive(Clone)]
pub struct Store {
    reader: SqlitePool,
    writer: SqlitePool,
    /// The audit chain's head as of the last commit from this process, so an append needs no
    /// read first. Another process may have moved it: appends check and fall back.
    audit_head: Arc<Mutex<Option<(i64, String)>>>,
    /// Freezes and the pause, read on every request but changed rarely: kept until a commit
    /// from this process changes them. (Only the server writes them.)
    policy_cache: Arc<Mutex<PolicyCache>>,
}

#[derive(Default)]
struct PolicyCache {
    /// Bumped by every commit that changes freezes or the pause, so a read that raced one is
    /// not kept.
    generation: u64,
    value: Option<(Vec<Freeze>, Option<Pause>)>,
}

/// A write transaction. Dropping it without [`Tx::commit`] rolls back.
pub struct Tx {
    inner: sqlx::Transaction<'static, sqlx::Sqlite>,
    wrote_events: bool,
    known_head: Arc<Mutex<Option<(i64, String)>>>,
    /// The head after this transaction's appends, published on commit.
    new_head: Option<(i64, String)>,
    policy_cache: Arc<Mutex<PolicyCache>>,
    /// This transaction changed freezes or the pause.
    policy_changed: bool,
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

/// The connection settings the server uses, shared with the benchmark's raw-commit baseline.
pub fn sqlite_options(url: &str) -> Result<SqliteConnectOptions, DbError> {
    Ok(SqliteConnectOptions::from_str(url)?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .foreign_keys(true)
        .busy_timeout(Duration::from_secs(10)))
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

fn parse_col<T: FromStr<Err = String>>(
    r: &sqlx::sqlite::SqliteRow,
    col: &str,
) -> Result<T, DbError> {
    let s: String = r.try_get(col)?;
    s.parse().map_err(|e: String| DbError::Decode(e.into()))
}

fn json_col<T: serde::de::DeserializeOwned>(
    r: &sqlx::sqlite::SqliteRow,
    col: &str,
) -> Result<T, DbError> {
    let s: String = r.try_get(col)?;
    serde_json::from_str(&s).map_err(|e| DbError::Decode(Box::new(e)))
}

fn to_json<T: serde::Serialize + ?Sized>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "null".into())
}

impl Store {
    pub async fn open(url: &str) -> Result<Store, DbError> {
        if !url.starts_with("sqlite:") {
            return Err(sqlx::Error::Configuration(
                format!(
                    "database URL '{url}' is not supported yet: use sqlite://PATH \
                     (PostgreSQL support is planned)"
                )
                .into(),
            ));
        }
        let options = sqlite_options(url)?;
        make_private(&options)?;
        // One writer: SQLite serialises writers anyway, and queueing them in the pool is
        // cheaper than spinning on SQLITE_BUSY.
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone())
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&writer).await?;
        let reader = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(options.read_only(true))
            .await?;
        Ok(Store {
            reader,
            writer,
            audit_head: Arc::default(),
            policy_cache: Arc::default(),
        })
    }

    /// A read connection, for a consistent look at several tables without taking the writer.
    pub async fn read(&self) -> Result<sqlx::pool::PoolConnection<sqlx::Sqlite>, DbError> {
        self.reader.acquire().await
    }

    pub async fn close(&self) {
        self.reader.close().await;
        self.writer.close().await;
    }

    pub async fn write(&self) -> Result<Tx, DbError> {
        Ok(Tx {
            inner: self.writer.begin_with("BEGIN IMMEDIATE").await?,
            wrote_events: false,
            known_head: self.audit_head.clone(),
            new_head: None,
            policy_cache: self.policy_cache.clone(),
            policy_changed: false,
        })
    }
}

impl Tx {
    pub fn conn(&mut self) -> &mut SqliteConnection {
        &mut self.inner
    }

    /// Commits; returns whether events were written (so the caller wakes event listeners).
    pub async fn commit(self) -> Result<bool, DbError> {
        self.inner.commit().await?;
        if let Some(head) = self.new_head {
            *lock(&self.known_head) = Some(head);
        }
        if self.policy_changed {
            let mut cache = lock(&self.policy_cache);
            cache.generation += 1;
            cache.value = None;
        }
        Ok(self.wrote_events)
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
