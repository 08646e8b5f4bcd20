//! Persistence: every SQL statement of the server lives here.
//!
//! Writes go through [`Store::write`], which opens a `BEGIN IMMEDIATE` transaction on the single
//! writer connection; [`Tx::record`] then adds the audit entry and the event of a state change
//! to the same transaction, so a row, its audit entry and its event commit together or not at all.

pub mod batch;
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

pub type DbError = sqlx::Error;

/// The hash before the first audit entry.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

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

/// A command's process group, as recorded while it runs (see `executor`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandProcess {
    pub pgid: i64,
    /// The group leader's start time in clock ticks since boot, when it could be read.
    pub leader_start: Option<i64>,
    pub boot_id: Option<String>,
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

    // ----- operators -------------------------------------------------------------------------

    pub async fn operator_by_token_hash(
        &self,
        hash: &str,
    ) -> Result<Option<(Operator, String)>, DbError> {
        let row = sqlx::query(
            "SELECT name, level, token_sha256 FROM operators \
             WHERE token_sha256 = $1 AND revoked_at IS NULL",
        )
        .bind(hash.to_string())
        .fetch_optional(&self.reader)
        .await?;
        row.map(|r| {
            Ok((
                Operator {
                    name: r.try_get("name")?,
                    level: parse_col(&r, "level")?,
                },
                r.try_get("token_sha256")?,
            ))
        })
        .transpose()
    }

    pub async fn operator(&self, name: &str) -> Result<Option<Operator>, DbError> {
        let row =
            sqlx::query("SELECT name, level FROM operators WHERE name = $1 AND revoked_at IS NULL")
                .bind(name.to_string())
                .fetch_optional(&self.reader)
                .await?;
        row.map(|r| {
            Ok(Operator {
                name: r.try_get("name")?,
                level: parse_col(&r, "level")?,
            })
        })
        .transpose()
    }

    /// All operators: (operator, created_at, revoked_at).
    pub async fn operators(
        &self,
    ) -> Result<Vec<(Operator, DateTime<Utc>, Option<DateTime<Utc>>)>, DbError> {
        let rows =
            sqlx::query("SELECT name, level, created_at, revoked_at FROM operators ORDER BY name")
                .fetch_all(&self.reader)
                .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    Operator {
                        name: r.try_get("name")?,
                        level: parse_col(r, "level")?,
                    },
                    from_ms(r.try_get("created_at")?),
                    r.try_get::<Option<i64>, _>("revoked_at")?.map(from_ms),
                ))
            })
            .collect()
    }

    // ----- changes ---------------------------------------------------------------------------

    pub async fn change(&self, id: i64) -> Result<Option<Change>, DbError> {
        let mut conn = self.reader.acquire().await?;
        load_change(&mut conn, id).await
    }

    /// Changes newest first, optionally in one state.
    /// Changes with an id below `before` (all, when `None`), newest first, at most `limit`.
    pub async fn changes(
        &self,
        state: Option<ChangeState>,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<Change>, DbError> {
        let before = before.unwrap_or(i64::MAX);
        let rows: Vec<ChangeRow> =
            match state {
                Some(s) => sqlx::query_as(
                    "SELECT * FROM changes WHERE state = $1 AND id < $2 ORDER BY id DESC LIMIT $3",
                )
                .bind(s.as_str())
                .bind(before)
                .bind(limit)
                .fetch_all(&self.reader)
                .await?,
                None => {
                    sqlx::query_as("SELECT * FROM changes WHERE id < $1 ORDER BY id DESC LIMIT $2")
                        .bind(before)
                        .bind(limit)
                        .fetch_all(&self.reader)
                        .await?
                }
            };
        let Some(oldest) = rows.last().map(|r| r.id) else {
            return Ok(Vec::new());
        };
        let newest = rows[0].id;
        let approval_rows = sqlx::query(
            "SELECT change_id, approver, level, comment, at FROM approvals \
             WHERE change_id BETWEEN $1 AND $2 ORDER BY at",
        )
        .bind(oldest)
        .bind(newest)
        .fetch_all(&self.reader)
        .await?;
        let mut approvals: BTreeMap<i64, Vec<Approval>> = BTreeMap::new();
        for r in &approval_rows {
            approvals
                .entry(r.try_get("change_id")?)
                .or_default()
                .push(approval_from_row(r)?);
        }
        rows.into_iter()
            .map(|row| {
                let a = approvals.remove(&row.id).unwrap_or_default();
                row.into_change(a)
            })
            .collect()
    }

    pub async fn count_changes(&self, state: ChangeState) -> Result<i64, DbError> {
        sqlx::query_scalar("SELECT COUNT(*) FROM changes WHERE state = $1")
            .bind(state.as_str())
            .fetch_one(&self.reader)
            .await
    }

    pub async fn change_by_idempotency_key(
        &self,
        requested_by: &str,
        key: &str,
    ) -> Result<Option<(Change, Option<String>)>, DbError> {
        let row = sqlx::query(
            "SELECT id, fingerprint FROM changes WHERE requested_by = $1 AND idempotency_key = $2",
        )
        .bind(requested_by.to_string())
        .bind(key.to_string())
        .fetch_optional(&self.reader)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let id: i64 = row.try_get("id")?;
        let fingerprint: Option<String> = row.try_get("fingerprint")?;
        Ok(self.change(id).await?.map(|c| (c, fingerprint)))
    }

    /// The process group recorded for a change's running command, if any.
    pub async fn command_process(&self, id: i64) -> Result<Option<CommandProcess>, DbError> {
        let row = sqlx::query(
            "SELECT pgid, leader_start, boot_id FROM executions \
             WHERE change_id = $1 AND pgid IS NOT NULL",
        )
        .bind(id)
        .fetch_optional(&self.reader)
        .await?;
        row.map(|r| {
            Ok(CommandProcess {
                pgid: r.try_get("pgid")?,
                leader_start: r.try_get("leader_start")?,
                boot_id: r.try_get("boot_id")?,
            })
        })
        .transpose()
    }

    /// Changes in `executing`: after a restart these were interrupted.
    pub async fn executing_change_ids(&self) -> Result<Vec<i64>, DbError> {
        sqlx::query_scalar("SELECT id FROM changes WHERE state = 'executing' ORDER BY id")
            .fetch_all(&self.writer)
            .await
    }

    pub async fn expired_pending_ids(&self, now: DateTime<Utc>) -> Result<Vec<i64>, DbError> {
        sqlx::query_scalar(
            "SELECT id FROM changes WHERE state = 'pending_approval' AND expires_at <= $1 ORDER BY id",
        )
        .bind(ms(now))
        .fetch_all(&self.reader)
        .await
    }

    // ----- incidents, freezes, pauses, verifications -------------------------------------------

    pub async fn incidents(&self) -> Result<Vec<Incident>, DbError> {
        let rows: Vec<IncidentRow> = sqlx::query_as("SELECT * FROM incidents ORDER BY id DESC")
            .fetch_all(&self.reader)
            .await?;
        rows.into_iter().map(IncidentRow::into_incident).collect()
    }

    pub async fn freezes(&self) -> Result<Vec<Freeze>, DbError> {
        let mut conn = self.reader.acquire().await?;
        load_freezes(&mut conn).await
    }

    pub async fn pause(&self) -> Result<Option<Pause>, DbError> {
        let mut conn = self.reader.acquire().await?;
        load_pause(&mut conn).await
    }

    // ----- audit and events ------------------------------------------------------------------

    pub async fn audit_entries(&self, after: i64, limit: i64) -> Result<Vec<AuditEntry>, DbError> {
        let rows = sqlx::query("SELECT * FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2")
            .bind(after)
            .bind(limit)
            .fetch_all(&self.reader)
            .await?;
        rows.iter().map(audit_from_row).collect()
    }

    pub async fn events_after(&self, after: i64, limit: i64) -> Result<Vec<Event>, DbError> {
        let rows = sqlx::query("SELECT * FROM events WHERE seq > $1 ORDER BY seq LIMIT $2")
            .bind(after)
            .bind(limit)
            .fetch_all(&self.reader)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(Event {
                    seq: r.try_get("seq")?,
                    at: from_ms(r.try_get("at")?),
                    kind: r.try_get("kind")?,
                    actor: r.try_get("actor")?,
                    summary: r.try_get("summary")?,
                    data: json_col(r, "data")?,
                })
            })
            .collect()
    }

    pub async fn last_event_seq(&self) -> Result<i64, DbError> {
        sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) FROM events")
            .fetch_one(&self.reader)
            .await
    }
}

/// The fields of a new change.
pub struct NewChange<'a> {
    pub state: ChangeState,
    pub action: &'a str,
    pub risk: crate::domain::Risk,
    pub ticket: &'a str,
    pub target: &'a str,
    pub params: &'a BTreeMap<String, String>,
    pub reason: &'a str,
    pub requester: &'a Operator,
    pub now: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub requirements: &'a [Requirement],
    pub warnings: &'a [String],
    pub idempotency_key: Option<&'a str>,
    pub fingerprint: Option<&'a str>,
    /// Set on a rollback: the change it undoes.
    pub rollback_of: Option<i64>,
    /// The incident of an emergency change.
    pub emergency: Option<&'a str>,
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

    /// Appends the audit entry (hash-chained) and the event of a state change.
    pub async fn record(&mut self, now: DateTime<Utc>, r: Record<'_>) -> Result<i64, DbError> {
        self.audit(now, r.actor, r.kind, &r.subject, &r.data)
            .await?;
        let seq: i64 = sqlx::query_scalar(
            "INSERT INTO events (at, kind, actor, summary, data) VALUES ($1, $2, $3, $4, $5) \
             RETURNING seq",
        )
        .bind(ms(now))
        .bind(r.kind.to_string())
        .bind(r.actor.to_string())
        .bind(r.summary)
        .bind(r.data.to_string())
        .fetch_one(&mut *self.inner)
        .await?;
        self.wrote_events = true;
        Ok(seq)
    }

    /// Appends an audit entry without an event (e.g. a refused request, which changes nothing).
    pub async fn audit(
        &mut self,
        now: DateTime<Utc>,
        actor: &str,
        kind: &str,
        subject: &str,
        detail: &serde_json::Value,
    ) -> Result<(), DbError> {
        let at = ms(now);
        let detail = detail.to_string();
        // First try the head this process last committed (or appended in this transaction):
        // one statement, which writes nothing if the stored head has moved since.
        let guess = self
            .new_head
            .clone()
            .or_else(|| lock(&self.known_head).clone());
        let mut appended = None;
        if let Some((prev_seq, prev_hash)) = guess {
            let seq = prev_seq + 1;
            let hash = audit_hash(seq, at, actor, kind, subject, &detail, &prev_hash);
            let done = sqlx::query(
                "INSERT INTO audit_log (seq, at, actor, kind, subject, detail, prev_hash, hash) \
                 SELECT $1, $2, $3, $4, $5, $6, $7, $8 \
                 WHERE (SELECT seq FROM audit_head WHERE id = 1) = $9 \
                 AND (SELECT hash FROM audit_head WHERE id = 1) = $7",
            )
            .bind(seq)
            .bind(at)
            .bind(actor.to_string())
            .bind(kind.to_string())
            .bind(subject.to_string())
            .bind(detail.clone())
            .bind(prev_hash)
            .bind(hash.clone())
            .bind(prev_seq)
            .execute(&mut *self.inner)
            .await?;
            if done.rows_affected() == 1 {
                appended = Some((seq, hash));
            }
        }
        let (seq, hash) = match appended {
            Some(h) => h,
            None => {
                let head = sqlx::query("SELECT seq, hash FROM audit_head WHERE id = 1")
                    .fetch_optional(&mut *self.inner)
                    .await?;
                let (prev_seq, prev_hash) = match head {
                    Some(r) => (r.try_get::<i64, _>("seq")?, r.try_get::<String, _>("hash")?),
                    None => (0, GENESIS_HASH.to_string()),
                };
                let seq = prev_seq + 1;
                let hash = audit_hash(seq, at, actor, kind, subject, &detail, &prev_hash);
                sqlx::query(
                    "INSERT INTO audit_log (seq, at, actor, kind, subject, detail, prev_hash, hash) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                )
                .bind(seq)
                .bind(at)
                .bind(actor.to_string())
                .bind(kind.to_string())
                .bind(subject.to_string())
                .bind(detail)
                .bind(prev_hash)
                .bind(hash.clone())
                .execute(&mut *self.inner)
                .await?;
                (seq, hash)
            }
        };
        // The trigger audit_head_follows moves the head in the same statement.
        self.new_head = Some((seq, hash));
        Ok(())
    }

    // ----- operators -------------------------------------------------------------------------

    pub async fn insert_operator(
        &mut self,
        name: &str,
        level: Level,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, DbError> {
        let done = sqlx::query(
            "INSERT INTO operators (name, level, token_sha256, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(name.to_string())
        .bind(level.as_str())
        .bind(token_hash.to_string())
        .bind(ms(now))
        .execute(&mut *self.inner)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn revoke_operator(
        &mut self,
        name: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, DbError> {
        let done = sqlx::query(
            "UPDATE operators SET revoked_at = $1 WHERE name = $2 AND revoked_at IS NULL",
        )
        .bind(ms(now))
        .bind(name.to_string())
        .execute(&mut *self.inner)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    // ----- changes ---------------------------------------------------------------------------

    pub async fn change(&mut self, id: i64) -> Result<Option<Change>, DbError> {
        load_change(&mut self.inner, id).await
    }

    /// The rollback of `original` that holds its one place (pending, running, run or failed):
    /// its id and state. Denied, expired and refused rollbacks never ran and do not count.
    pub async fn live_rollback(
        &mut self,
        original: i64,
    ) -> Result<Option<(i64, ChangeState)>, DbError> {
        let row = sqlx::query(
            "SELECT id, state FROM changes WHERE rollback_of = $1 \
             AND state NOT IN ('denied', 'expired', 'refused')",
        )
        .bind(original)
        .fetch_optional(&mut *self.inner)
        .await?;
        row.map(|r| Ok((r.try_get("id")?, parse_col(&r, "state")?)))
            .transpose()
    }

    /// Inserts a change and returns it as stored (it has no approvals yet).
    pub async fn insert_change(&mut self, c: NewChange<'_>) -> Result<Change, DbError> {
        let row: ChangeRow = sqlx::query_as(
            "INSERT INTO changes (state, action, risk, ticket, target, params, reason, requested_by, \
             requested_level, created_at, updated_at, expires_at, requirements, warnings, \
             idempotency_key, fingerprint, rollback_of, emergency) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10, $11, $12, $13, $14, $15, $16, \
             $17) \
             RETURNING *",
        )
        .bind(c.state.as_str())
        .bind(c.action.to_string())
        .bind(c.risk.as_str())
        .bind(c.ticket.to_string())
        .bind(c.target.to_string())
        .bind(to_json(c.params))
        .bind(c.reason.to_string())
        .bind(c.requester.name.clone())
        .bind(c.requester.level.as_str())
        .bind(ms(c.now))
        .bind(ms(c.expires_at))
        .bind(to_json(&c.requirements))
        .bind(to_json(&c.warnings))
        .bind(c.idempotency_key.map(str::to_string))
        .bind(c.fingerprint.map(str::to_string))
        .bind(c.rollback_of)
        .bind(c.emergency.map(str::to_string))
        .fetch_one(&mut *self.inner)
        .await?;
        row.into_change(Vec::new())
    }

    pub async fn insert_approval(
        &mut self,
        change_id: i64,
        approval: &Approval,
    ) -> Result<(), DbError> {
        sqlx::query(
            "INSERT INTO approvals (change_id, approver, level, comment, at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(change_id)
        .bind(approval.approver.clone())
        .bind(approval.level.as_str())
        .bind(approval.comment.clone())
        .bind(ms(approval.at))
        .execute(&mut *self.inner)
        .await?;
        Ok(())
    }

    /// What the policy, re-checked at an approval, now asks of a pending change.
    pub async fn set_requirements(
        &mut self,
        id: i64,
        requirements: &[Requirement],
        warnings: &[String],
        emergency: Option<&str>,
    ) -> Result<(), DbError> {
        sqlx::query(
            "UPDATE changes SET requirements = $1, warnings = $2, emergency = $3 WHERE id = $4",
        )
        .bind(to_json(&requirements))
        .bind(to_json(&warnings))
        .bind(emergency.map(str::to_string))
        .bind(id)
        .execute(&mut *self.inner)
        .await?;
        Ok(())
    }

    /// Moves a change from one state to another; false when it was no longer in `from`
    /// (someone else decided it first).
    pub async fn transition(
        &mut self,
        id: i64,
        from: ChangeState,
        to: ChangeState,
        now: DateTime<Utc>,
        outcome_reason: Option<&str>,
        decided_by: Option<&str>,
    ) -> Result<bool, DbError> {
        let done = sqlx::query(
            "UPDATE changes SET state = $1, updated_at = $2, \
             outcome_reason = COALESCE($3, outcome_reason), decided_by = COALESCE($4, decided_by) \
             WHERE id = $5 AND state = $6",
        )
        .bind(to.as_str())
        .bind(ms(now))
        .bind(outcome_reason.map(str::to_string))
        .bind(decided_by.map(str::to_string))
        .bind(id)
        .bind(from.as_str())
        .execute(&mut *self.inner)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Claims the one execution of a change; false if it was already claimed.
    pub async fn claim_execution(&mut self, id: i64, now: DateTime<Utc>) -> Result<bool, DbError> {
        let done = sqlx::query(
            "INSERT INTO executions (change_id, started_at) VALUES ($1, $2) \
             ON CONFLICT (change_id) DO NOTHING",
        )
        .bind(id)
        .bind(ms(now))
        .execute(&mut *self.inner)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Records (or, with `None`, clears) the process group of the command the change is
    /// running.
    pub async fn set_command_process(
        &mut self,
        id: i64,
        process: Option<&CommandProcess>,
    ) -> Result<(), DbError> {
        sqlx::query(
            "UPDATE executions SET pgid = $1, leader_start = $2, boot_id = $3 WHERE change_id = $4",
        )
        .bind(process.map(|p| p.pgid))
        .bind(process.and_then(|p| p.leader_start))
        .bind(process.and_then(|p| p.boot_id.clone()))
        .bind(id)
        .execute(&mut *self.inner)
        .await?;
        Ok(())
    }

    /// Records how the command ended, if the change is still `executing`.
    pub async fn finish_execution(
        &mut self,
        id: i64,
        to: ChangeState,
        output: &ExecutionOutput,
        outcome_reason: Option<&str>,
    ) -> Result<bool, DbError> {
        let done = sqlx::query(
            "UPDATE changes SET state = $1, updated_at = $2, output = $3, outcome_reason = $4 \
             WHERE id = $5 AND state = 'executing'",
        )
        .bind(to.as_str())
        .bind(ms(output.finished_at))
        .bind(to_json(output))
        .bind(outcome_reason.map(str::to_string))
        .bind(id)
        .execute(&mut *self.inner)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    // ----- policy context --------------------------------------------------------------------

    pub async fn freezes(&mut self) -> Result<Vec<Freeze>, DbError> {
        load_freezes(&mut self.inner).await
    }

    pub async fn pause(&mut self) -> Result<Option<Pause>, DbError> {
        load_pause(&mut self.inner).await
    }

    pub async fn operator_exists(&mut self, name: &str) -> Result<bool, DbError> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM operators WHERE name = $1 AND revoked_at IS NULL",
        )
        .bind(name.to_string())
        .fetch_one(&mut *self.inner)
        .await?;
        Ok(n > 0)
    }

    // ----- incidents, freezes, pauses, verifications -------------------------------------------

    /// Declares an incident with the next `INC-YYYY-MMDD-NNN` of its day. The number grows past
    /// 999 (`INC-2026-1124-1000`) rather than running out.
    pub async fn insert_incident(
        &mut self,
        priority: crate::domain::Priority,
        title: &str,
        commander: &str,
        declared_by: &str,
        now: DateTime<Utc>,
    ) -> Result<Incident, DbError> {
        let prefix = format!("INC-{}-", now.format("%Y-%m%d"));
        // Longest first: as text, "…-1000" sorts before "…-999".
        let last: Option<String> = sqlx::query_scalar(
            "SELECT ticket FROM incidents WHERE ticket LIKE $1 \
             ORDER BY length(ticket) DESC, ticket DESC LIMIT 1",
        )
        .bind(format!("{prefix}%"))
        .fetch_optional(&mut *self.inner)
        .await?;
        let next = last
            .and_then(|t| t[prefix.len()..].parse::<u64>().ok())
            .unwrap_or(0)
            + 1;
        let ticket = format!("{prefix}{next:03}");
        let row: IncidentRow = sqlx::query_as(
            "INSERT INTO incidents (ticket, priority, title, commander, declared_by, declared_at) \
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING *",
        )
        .bind(ticket)
        .bind(priority.as_str())
        .bind(title.to_string())
        .bind(commander.to_string())
        .bind(declared_by.to_string())
        .bind(ms(now))
        .fetch_one(&mut *self.inner)
        .await?;
        row.into_incident()
    }

    /// When `by` declared incidents since `since`, oldest first (for the declaration rate limit).
    pub async fn incidents_declared_since(
        &mut self,
        by: &str,
        since: DateTime<Utc>,
    ) -> Result<Vec<DateTime<Utc>>, DbError> {
        let times: Vec<i64> = sqlx::query_scalar(
            "SELECT declared_at FROM incidents WHERE declared_by = $1 AND declared_at > $2 \
             ORDER BY declared_at",
        )
        .bind(by.to_string())
        .bind(ms(since))
        .fetch_all(&mut *self.inner)
        .await?;
        Ok(times.into_iter().map(from_ms).collect())
    }

    pub async fn insert_freeze(
        &mut self,
        name: &str,
        starts_at: DateTime<Utc>,
        ends_at: DateTime<Utc>,
        by: &str,
        now: DateTime<Utc>,
    ) -> Result<Freeze, DbError> {
        self.policy_changed = true;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO freezes (name, starts_at, ends_at, created_by, created_at) \
             VALUES ($1, $2, $3, $4, $5) RETURNING id",
        )
        .bind(name.to_string())
        .bind(ms(starts_at))
        .bind(ms(ends_at))
        .bind(by.to_string())
        .bind(ms(now))
        .fetch_one(&mut *self.inner)
        .await?;
        Ok(Freeze {
            id: Some(id),
            name: name.to_string(),
            starts_at: from_ms(ms(starts_at)),
            ends_at: from_ms(ms(ends_at)),
            created_by: Some(by.to_string()),
        })
    }

    pub async fn delete_freeze(
        &mut self,
        id: i64,
        now: DateTime<Utc>,
    ) -> Result<Option<Freeze>, DbError> {
        self.policy_changed = true;
        let freeze = load_freezes(&mut self.inner)
            .await?
            .into_iter()
            .find(|f| f.id == Some(id));
        if freeze.is_some() {
            sqlx::query("UPDATE freezes SET deleted_at = $1 WHERE id = $2")
                .bind(ms(now))
                .bind(id)
                .execute(&mut *self.inner)
                .await?;
        }
        Ok(freeze)
    }

    pub async fn insert_pause(
        &mut self,
        reason: &str,
        by: &str,
        now: DateTime<Utc>,
    ) -> Result<Pause, DbError> {
        self.policy_changed = true;
        sqlx::query("INSERT INTO pauses (reason, paused_by, paused_at) VALUES ($1, $2, $3)")
            .bind(reason.to_string())
            .bind(by.to_string())
            .bind(ms(now))
            .execute(&mut *self.inner)
            .await?;
        Ok(Pause {
            reason: reason.to_string(),
            paused_by: by.to_string(),
            paused_at: from_ms(ms(now)),
        })
    }

    pub async fn end_pause(&mut self, by: &str, now: DateTime<Utc>) -> Result<bool, DbError> {
        self.policy_changed = true;
        let done = sqlx::query(
            "UPDATE pauses SET resumed_at = $1, resumed_by = $2 WHERE resumed_at IS NULL",
        )
        .bind(ms(now))
        .bind(by.to_string())
        .execute(&mut *self.inner)
        .await?;
        Ok(done.rows_affected() > 0)
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding it cannot leave the cache half-written: it holds one Option.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The hash of one audit entry: SHA-256 over its fields and the previous entry's hash.
pub fn audit_hash(
    seq: i64,
    at: i64,
    actor: &str,
    kind: &str,
    subject: &str,
    detail: &str,
    prev_hash: &str,
) -> String {
    let mut h = Sha256::new();
    for part in [
        seq.to_string().as_str(),
        at.to_string().as_str(),
        actor,
        kind,
        subject,
        detail,
        prev_hash,
    ] {
        // Length-prefixed, so moving text between fields changes the hash.
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    hex::encode(h.finalize())
}

async fn load_change(conn: &mut SqliteConnection, id: i64) -> Result<Option<Change>, DbError> {
    let row: Option<ChangeRow> = sqlx::query_as("SELECT * FROM changes WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
    let Some(row) = row else { return Ok(None) };
    let approvals = sqlx::query(
        "SELECT change_id, approver, level, comment, at FROM approvals WHERE change_id = $1 ORDER BY at",
    )
    .bind(id)
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(approval_from_row)
    .collect::<Result<Vec<_>, _>>()?;
    row.into_change(approvals).map(Some)
}

impl Store {
    /// What the policy reads besides the request: freezes announced over the API, the change
    /// pause, and the incident the ticket names. `conn` is the transaction deciding (or a read
    /// connection for a preview).
    pub async fn policy_context(
        &self,
        conn: &mut SqliteConnection,
        ticket: &str,
    ) -> Result<(Vec<Freeze>, Option<Pause>, Option<Incident>), DbError> {
        let (cached, generation) = {
            let c = lock(&self.policy_cache);
            (c.value.clone(), c.generation)
        };
        let (freezes, pause) = match cached {
            Some(v) => v,
            None => {
                let v = (load_freezes(conn).await?, load_pause(conn).await?);
                let mut c = lock(&self.policy_cache);
                if c.generation == generation {
                    c.value = Some(v.clone());
                }
                v
            }
        };
        // Only an incident ticket can name a declared incident; a CHG ticket saves the query.
        let row: Option<IncidentRow> = if ticket.starts_with("INC-") {
            sqlx::query_as("SELECT * FROM incidents WHERE ticket = $1")
                .bind(ticket.to_string())
                .fetch_optional(&mut *conn)
                .await?
        } else {
            None
        };
        Ok((
            freezes,
            pause,
            row.map(IncidentRow::into_incident).transpose()?,
        ))
    }
}

async fn load_freezes(conn: &mut SqliteConnection) -> Result<Vec<Freeze>, DbError> {
    let rows = sqlx::query(
        "SELECT id, name, starts_at, ends_at, created_by FROM freezes WHERE deleted_at IS NULL \
         ORDER BY starts_at",
    )
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(Freeze {
                id: Some(r.try_get("id")?),
                name: r.try_get("name")?,
                starts_at: from_ms(r.try_get("starts_at")?),
                ends_at: from_ms(r.try_get("ends_at")?),
                created_by: r.try_get("created_by")?,
            })
        })
        .collect()
}

async fn load_pause(conn: &mut SqliteConnection) -> Result<Option<Pause>, DbError> {
    let row = sqlx::query(
        "SELECT reason, paused_by, paused_at FROM pauses WHERE resumed_at IS NULL \
         ORDER BY id DESC LIMIT 1",
    )
    .fetch_optional(&mut *conn)
    .await?;
    row.map(|r| {
        Ok(Pause {
            reason: r.try_get("reason")?,
            paused_by: r.try_get("paused_by")?,
            paused_at: from_ms(r.try_get("paused_at")?),
        })
    })
    .transpose()
}

fn approval_from_row(r: &sqlx::sqlite::SqliteRow) -> Result<Approval, DbError> {
    Ok(Approval {
        approver: r.try_get("approver")?,
        level: parse_col(r, "level")?,
        comment: r.try_get("comment")?,
        at: from_ms(r.try_get("at")?),
    })
}

fn audit_from_row(r: &sqlx::sqlite::SqliteRow) -> Result<AuditEntry, DbError> {
    Ok(AuditEntry {
        seq: r.try_get("seq")?,
        at: from_ms(r.try_get("at")?),
        actor: r.try_get("actor")?,
        kind: r.try_get("kind")?,
        subject: r.try_get("subject")?,
        detail: json_col(r, "detail")?,
        prev_hash: r.try_get("prev_hash")?,
        hash: r.try_get("hash")?,
    })
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

/// The raw audit rows, for `audit verify`: (seq, at, actor, kind, subject, detail, prev, hash).
pub type RawAuditRow = (i64, i64, String, String, String, String, String, String);

/// The whole audit log and the chain head as one snapshot saw them.
pub struct AuditSnapshot {
    pub rows: Vec<RawAuditRow>,
    pub head: Option<(i64, String)>,
}

impl Store {
    /// Reads the head and the log in one read transaction: a server appending meanwhile moves
    /// both together, so two separate reads could see a head newer than the log they read.
    pub async fn audit_snapshot(&self) -> Result<AuditSnapshot, DbError> {
        // A deferred BEGIN on a WAL reader fixes its snapshot at the first read and keeps it
        // until the end of the transaction.
        let mut tx = self.reader.begin().await?;
        let head = sqlx::query("SELECT seq, hash FROM audit_head WHERE id = 1")
            .fetch_optional(&mut *tx)
            .await?
            .map(|r| Ok::<_, DbError>((r.try_get("seq")?, r.try_get("hash")?)))
            .transpose()?;
        let rows = sqlx::query_as(
            "SELECT seq, at, actor, kind, subject, detail, prev_hash, hash FROM audit_log ORDER BY seq",
        )
        .fetch_all(&mut *tx)
        .await?;
        tx.rollback().await?;
        Ok(AuditSnapshot { rows, head })
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::audit::{Verdict, verify};

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
