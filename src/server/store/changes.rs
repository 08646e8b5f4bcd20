//! Changes, their approvals and their one execution.

use super::*;

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
    /// The argv it will run (`None`: the simulator), fixed now for its reviewers.
    pub command: Option<Vec<String>>,
    /// When a scheduled change runs.
    pub run_at: Option<DateTime<Utc>>,
    /// The conflicts warned about at request.
    pub conflicts: &'a [Conflict],
}

/// Rows per multi-row INSERT of changes: 1,280 bound values, well under SQLite's and
/// PostgreSQL's limits (a batch of requests is smaller still, `store/batch.rs`).
const INSERT_CHUNK: usize = 64;

/// How long a running execution's lease lasts; its server renews it every third of this.
pub const EXECUTION_LEASE_MS: i64 = 15_000;

/// Who runs an execution, as [`Store::executions_of_others`] saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecutionLease {
    pub change_id: i64,
    pub owner: Option<String>,
    pub lease_until: Option<i64>,
}

/// A command's process group, as recorded while it runs (see `executor`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandProcess {
    pub pgid: i64,
    /// The group leader's start time in clock ticks since boot, when it could be read.
    pub leader_start: Option<i64>,
    pub boot_id: Option<String>,
}

async fn select_change(conn: &mut AnyConnection, id: i64) -> Result<Option<Change>, DbError> {
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

fn approval_from_row(r: &AnyRow) -> Result<Approval, DbError> {
    Ok(Approval {
        approver: r.try_get("approver")?,
        level: parse_col(r, "level")?,
        comment: r.try_get("comment")?,
        at: from_ms(r.try_get("at")?),
    })
}

impl Store {
    pub async fn change(&self, id: i64) -> Result<Option<Change>, DbError> {
        let mut conn = self.reader.acquire().await?;
        select_change(&mut conn, id).await
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
        self.with_approvals(rows).await
    }

    /// The changes of `rows` with their approvals, read in one query over their id range.
    pub(super) async fn with_approvals(
        &self,
        rows: Vec<ChangeRow>,
    ) -> Result<Vec<Change>, DbError> {
        let (Some(oldest), Some(newest)) = (
            rows.iter().map(|r| r.id).min(),
            rows.iter().map(|r| r.id).max(),
        ) else {
            return Ok(Vec::new());
        };
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

    pub async fn changes_count(&self, state: ChangeState) -> Result<i64, DbError> {
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
    pub async fn execution_process(&self, id: i64) -> Result<Option<CommandProcess>, DbError> {
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

    /// Changes in `executing` that another server ran: (id, its lease holder, lease end).
    /// Whether each was interrupted is for `changes/recovery.rs` to decide.
    pub async fn executions_of_others(&self) -> Result<Vec<ExecutionLease>, DbError> {
        let rows = sqlx::query(
            "SELECT c.id, e.owner, e.lease_until FROM changes c \
             LEFT JOIN executions e ON e.change_id = c.id \
             WHERE c.state = 'executing' AND COALESCE(e.owner, '') <> $1 ORDER BY c.id",
        )
        .bind(self.owner.to_string())
        .fetch_all(&self.writer)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(ExecutionLease {
                    change_id: r.try_get("id")?,
                    owner: r.try_get("owner")?,
                    lease_until: r.try_get("lease_until")?,
                })
            })
            .collect()
    }

    /// Extends this server's lease on a running execution; false if it no longer holds it.
    pub async fn execution_renew(&self, id: i64) -> Result<bool, DbError> {
        let done = sqlx::query(
            "UPDATE executions SET lease_until = $1 WHERE change_id = $2 AND owner = $3",
        )
        .bind(lease_now() + EXECUTION_LEASE_MS)
        .bind(id)
        .bind(self.owner.to_string())
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Pending changes past their approval time limit. A scheduled one (with a `run_at`) is the
    /// scheduler's: it misses its time rather than expires (`changes/schedule.rs`).
    pub async fn change_ids_expired(&self, now: DateTime<Utc>) -> Result<Vec<i64>, DbError> {
        sqlx::query_scalar(
            "SELECT id FROM changes WHERE state = 'pending_approval' AND expires_at <= $1 \
             AND run_at IS NULL ORDER BY id",
        )
        .bind(ms(now))
        .fetch_all(&self.reader)
        .await
    }
}

impl Tx {
    pub async fn change(&mut self, id: i64) -> Result<Option<Change>, DbError> {
        select_change(&mut self.inner, id).await
    }

    /// The argv fixed when change `id` was requested (see [`ChangeRow::planned_command`]).
    pub async fn change_planned_command(
        &mut self,
        id: i64,
    ) -> Result<Option<Option<Vec<String>>>, DbError> {
        let row: Option<ChangeRow> = sqlx::query_as("SELECT * FROM changes WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *self.inner)
            .await?;
        Ok(row.map(|r| r.planned_command()).transpose()?.flatten())
    }

    /// The rollback of `original` that holds its one place (pending, running, run or failed):
    /// its id and state. Denied, expired and refused rollbacks never ran and do not count.
    pub async fn rollback_live(
        &mut self,
        original: i64,
    ) -> Result<Option<(i64, ChangeState)>, DbError> {
        let row = sqlx::query(
            "SELECT id, state FROM changes WHERE rollback_of = $1 \
             AND state NOT IN ('denied', 'expired', 'refused', 'withdrawn')",
        )
        .bind(original)
        .fetch_optional(&mut *self.inner)
        .await?;
        row.map(|r| Ok((r.try_get("id")?, parse_col(&r, "state")?)))
            .transpose()
    }

    /// Inserts a change. A unique index may refuse it (an Idempotency-Key used by a racing
    /// request, a second rollback): the caller handles that error and the transaction goes on,
    /// which PostgreSQL allows only after rolling back to a savepoint taken before the insert.
    pub async fn change_insert(&mut self, c: NewChange<'_>) -> Result<Change, DbError> {
        let may_conflict = c.idempotency_key.is_some() || c.rollback_of.is_some();
        if !may_conflict {
            return self.one_inserted(std::slice::from_ref(&c)).await;
        }
        sqlx::query("SAVEPOINT change_insert")
            .execute(&mut *self.inner)
            .await?;
        let inserted = self.one_inserted(std::slice::from_ref(&c)).await;
        if inserted.is_err() {
            sqlx::query("ROLLBACK TO SAVEPOINT change_insert")
                .execute(&mut *self.inner)
                .await?;
        }
        sqlx::query("RELEASE SAVEPOINT change_insert")
            .execute(&mut *self.inner)
            .await?;
        inserted
    }

    async fn one_inserted(&mut self, c: &[NewChange<'_>]) -> Result<Change, DbError> {
        self.changes_insert(c)
            .await?
            .pop()
            .ok_or(DbError::RowNotFound)
    }

    /// Inserts new changes in one statement (a batch of requests, `changes/create.rs`) and
    /// returns them as stored, in the order given. Changes that may meet a unique index (an
    /// Idempotency-Key, a rollback) go through [`Tx::change_insert`], whose savepoint keeps a
    /// violation from aborting the transaction.
    pub async fn changes_insert(&mut self, new: &[NewChange<'_>]) -> Result<Vec<Change>, DbError> {
        const COLUMNS: usize = 20;
        let mut changes = Vec::with_capacity(new.len());
        for chunk in new.chunks(INSERT_CHUNK) {
            let rows: Vec<String> = (0..chunk.len())
                .map(|r| {
                    let p = |c: usize| format!("${}", r * COLUMNS + c);
                    // created_at and updated_at start as one value, bound once.
                    let cols: Vec<String> =
                        (1..=10).chain([10]).chain(11..=COLUMNS).map(p).collect();
                    format!("({})", cols.join(", "))
                })
                .collect();
            let sql = format!(
                "INSERT INTO changes (state, action, risk, ticket, target, params, reason, \
                 requested_by, requested_level, created_at, updated_at, expires_at, requirements, \
                 warnings, idempotency_key, fingerprint, rollback_of, emergency, command, run_at, \
                 conflicts) VALUES {} RETURNING *",
                rows.join(", ")
            );
            let mut q = sqlx::query_as::<_, ChangeRow>(sqlx::AssertSqlSafe(sql));
            for c in chunk {
                q = q
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
                    .bind(to_json(&c.command))
                    .bind(c.run_at.map(ms))
                    .bind((!c.conflicts.is_empty()).then(|| to_json(c.conflicts)));
            }
            let mut rows = q.fetch_all(&mut *self.inner).await?;
            // RETURNING promises no order; ids are handed out in the order of VALUES.
            rows.sort_by_key(|r| r.id);
            for row in rows {
                changes.push(row.into_change(Vec::new())?);
            }
        }
        if changes.len() != new.len() {
            return Err(DbError::Protocol(format!(
                "inserted {} changes, returned {}",
                new.len(),
                changes.len()
            )));
        }
        Ok(changes)
    }

    pub async fn approval_insert(
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
    pub async fn change_set_requirements(
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
    pub async fn change_transition(
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

    /// Claims the one execution of a change, leased to this server (see
    /// [`Store::execution_renew`]); false if it was already claimed.
    pub async fn execution_claim(&mut self, id: i64, now: DateTime<Utc>) -> Result<bool, DbError> {
        let done = sqlx::query(
            "INSERT INTO executions (change_id, started_at, owner, lease_until) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (change_id) DO NOTHING",
        )
        .bind(id)
        .bind(ms(now))
        .bind(self.owner.to_string())
        .bind(lease_now() + EXECUTION_LEASE_MS)
        .execute(&mut *self.inner)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Records (or, with `None`, clears) the process group of the command the change is
    /// running.
    pub async fn execution_set_process(
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

    /// Takes over an execution whose server is gone, if its lease is still as `seen` (no
    /// renewal, no other taker since); false otherwise.
    pub async fn execution_take_over(&mut self, seen: &ExecutionLease) -> Result<bool, DbError> {
        let done = sqlx::query(
            "UPDATE executions SET owner = $1, lease_until = $2 \
             WHERE change_id = $3 AND COALESCE(owner, '') = $4 AND COALESCE(lease_until, 0) = $5",
        )
        .bind(self.owner.to_string())
        .bind(lease_now() + EXECUTION_LEASE_MS)
        .bind(seen.change_id)
        .bind(seen.owner.clone().unwrap_or_default())
        .bind(seen.lease_until.unwrap_or(0))
        .execute(&mut *self.inner)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Records how the command ended, if the change is still `executing`.
    pub async fn execution_finish(
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
}

impl Tx {
    pub async fn change_set_captured(
        &mut self,
        change_id: i64,
        captured: &str,
    ) -> Result<(), DbError> {
        sqlx::query("UPDATE changes SET captured = $1 WHERE id = $2")
            .bind(captured.to_string())
            .bind(change_id)
            .execute(&mut *self.inner)
            .await?;
        Ok(())
    }
}
