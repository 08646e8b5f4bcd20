//! Scheduled changes (`changes.run_at`) and the live changes a new one may conflict with.
//!
//! The scheduler (`changes/schedule.rs`) asks which changes are due and when the next one is;
//! the calendar asks which are scheduled in a range. Claiming a due change is the ordinary
//! conditional [`Tx::change_transition`] (`scheduled` → `executing`) plus
//! [`Tx::execution_claim`]: the database settles which replica runs it.

use super::*;
use crate::domain::schedule::Period;
use sqlx::FromRow;

/// A change that may overlap a new one on its target, with the deadline of its running
/// verification when it is executed and still being watched. Only what a conflict names is
/// filled in (see `LIVE_ON_TARGET`).
#[derive(Debug, Clone, PartialEq)]
pub struct LiveChange {
    pub change: Change,
    pub verification_until: Option<DateTime<Utc>>,
}

/// How many conflicting changes a check names, newest first: the database filters by risk and
/// by overlap before it counts, so a pile of changes that cannot conflict (low-risk ones, or
/// ones at other times) never pushes a real conflict out of the list; more than this on one
/// target is a queue nobody reviews one by one, and the newest name the problem.
const CONFLICTS_NAMED: i64 = 10;

/// The live changes on `$1` whose active period may overlap `[$2, $3]` (ms; `$4` is the
/// verification time), a superset of what `domain::schedule::conflicts` keeps: the same
/// periods as its `active`, compared inclusively. Read newest first along `changes_by_target`
/// (`migrations/*/0011_conflict_lookup.sql`), so a target with a long history stops early.
/// Only the columns a conflict reads are read; the bulky ones (its own conflicts, output,
/// captured output, command, JSON lists) come back empty, so a busy target costs little.
const LIVE_ON_TARGET: &str = "SELECT c.id, c.state, c.action, c.risk, c.ticket, c.target, \
     CAST('{}' AS TEXT) AS params, c.reason, c.requested_by, c.requested_level, c.created_at, \
     c.updated_at, c.expires_at, CAST('[]' AS TEXT) AS requirements, \
     CAST('[]' AS TEXT) AS warnings, CAST(NULL AS TEXT) AS outcome_reason, \
     CAST(NULL AS TEXT) AS decided_by, CAST(NULL AS TEXT) AS output, c.rollback_of, \
     c.emergency, CAST(NULL AS TEXT) AS captured, CAST(NULL AS TEXT) AS command, c.run_at, \
     CAST(NULL AS TEXT) AS conflicts, v.deadline AS verification_until FROM changes c \
     LEFT JOIN verifications v ON v.change_id = c.id AND v.state IN ('watching', 'degraded') \
     WHERE c.target = $1 AND c.risk <> 'low' AND ( \
       (c.state = 'pending_approval' AND c.run_at IS NULL \
        AND c.created_at <= $3 AND c.expires_at + $4 >= $2) \
       OR (c.state IN ('pending_approval', 'scheduled') AND c.run_at IS NOT NULL \
        AND c.run_at <= $3 AND c.run_at + $4 >= $2) \
       OR (c.state = 'scheduled' AND c.run_at IS NULL) \
       OR (c.state = 'executing' AND c.updated_at <= $3) \
       OR (c.state = 'executed' AND v.id IS NOT NULL AND c.updated_at <= $3 AND v.deadline >= $2)) \
     ORDER BY c.id DESC LIMIT $5";

/// The window a conflict lookup asks about, in the statement's terms.
fn lookup_bounds(mine: &Period, verification: chrono::Duration) -> (i64, i64, i64) {
    (
        ms(mine.start),
        mine.end.map_or(i64::MAX, ms),
        verification.num_milliseconds(),
    )
}

/// The rows of `LIVE_ON_TARGET`, for both the preview's read and the request's transaction.
async fn select_live(
    conn: &mut AnyConnection,
    target: &str,
    mine: &Period,
    verification: chrono::Duration,
) -> Result<Vec<(ChangeRow, Option<i64>)>, DbError> {
    let (from, to, verify) = lookup_bounds(mine, verification);
    let rows = sqlx::query(LIVE_ON_TARGET)
        .bind(target.to_string())
        .bind(from)
        .bind(to)
        .bind(verify)
        .bind(CONFLICTS_NAMED)
        .fetch_all(&mut *conn)
        .await?;
    rows.iter()
        .map(|r| Ok((ChangeRow::from_row(r)?, r.try_get("verification_until")?)))
        .collect()
}

impl Store {
    /// The changes with a `run_at` in `[from, to)` that may still run (`pending_approval` or
    /// `scheduled`), by `run_at`, with their approvals. The calendar and the dashboard show
    /// these; a change's `state` says whether it still waits for approval.
    pub async fn changes_scheduled(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<Change>, DbError> {
        // Changes that may still run at their `run_at`: waiting for approval, or scheduled.
        let rows: Vec<ChangeRow> = sqlx::query_as(
            "SELECT * FROM changes WHERE run_at >= $1 AND run_at < $2 \
             AND state IN ('pending_approval', 'scheduled') ORDER BY run_at, id",
        )
        .bind(ms(from))
        .bind(ms(to))
        .fetch_all(&self.reader)
        .await?;
        let mut changes = self.with_approvals(rows).await?;
        changes.sort_by_key(|c| (c.run_at, c.id));
        Ok(changes)
    }

    /// The changes whose `run_at` has come (at or before `now`) and that are still waiting:
    /// (id, state, run_at), oldest first.
    pub async fn changes_due(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Vec<(i64, ChangeState, DateTime<Utc>)>, DbError> {
        let rows = sqlx::query(
            "SELECT id, state, run_at FROM changes WHERE run_at <= $1 \
             AND state IN ('pending_approval', 'scheduled') ORDER BY run_at, id",
        )
        .bind(ms(now))
        .fetch_all(&self.writer)
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("id")?,
                    parse_col(r, "state")?,
                    from_ms(r.try_get("run_at")?),
                ))
            })
            .collect()
    }

    /// How many changes `name` requested that still wait for their `run_at`.
    pub async fn changes_waiting_by(&self, name: &str) -> Result<i64, DbError> {
        sqlx::query_scalar(
            "SELECT COUNT(*) FROM changes WHERE requested_by = $1 AND run_at IS NOT NULL \
             AND state IN ('pending_approval', 'scheduled')",
        )
        .bind(name.to_string())
        .fetch_one(&self.reader)
        .await
    }

    /// The earliest `run_at` of a change still waiting to run, for the scheduler's wake-up.
    pub async fn schedule_next(&self) -> Result<Option<DateTime<Utc>>, DbError> {
        let next: Option<i64> = sqlx::query_scalar(
            "SELECT MIN(run_at) FROM changes WHERE state IN ('pending_approval', 'scheduled')",
        )
        .fetch_one(&self.reader)
        .await?;
        Ok(next.map(from_ms))
    }

    /// The changes on `target` that are live: pending, scheduled, executing, or executed and
    /// under verification. Newest first.
    pub async fn changes_live_on(
        &self,
        target: &str,
        mine: &Period,
        verification: chrono::Duration,
    ) -> Result<Vec<LiveChange>, DbError> {
        let mut conn = self.reader.acquire().await?;
        let rows = select_live(&mut conn, target, mine, verification).await?;
        drop(conn);
        let until: BTreeMap<i64, Option<i64>> = rows.iter().map(|(r, v)| (r.id, *v)).collect();
        let changes = self
            .with_approvals(rows.into_iter().map(|(r, _)| r).collect())
            .await?;
        Ok(changes
            .into_iter()
            .map(|change| LiveChange {
                verification_until: until.get(&change.id).copied().flatten().map(from_ms),
                change,
            })
            .collect())
    }
}

impl Tx {
    /// [`Store::changes_live_on`] inside the write transaction (approvals are not read: a
    /// conflict names the change, not who approved it).
    ///
    /// With `exclusive` (the server refuses conflicts), the lookup first takes a lock on the
    /// target for the rest of the transaction: shared writers on other replicas
    /// (`Store::write_shared`) would otherwise both find the target free and both go ahead.
    pub async fn changes_live_on(
        &mut self,
        target: &str,
        mine: &Period,
        verification: chrono::Duration,
        exclusive: bool,
    ) -> Result<Vec<LiveChange>, DbError> {
        if exclusive && self.shared {
            sqlx::query(
                "SELECT COUNT(*) FROM (SELECT pg_advisory_xact_lock(7, hashtext($1))) AS l",
            )
            .bind(target.to_string())
            .fetch_one(&mut *self.inner)
            .await?;
        }
        select_live(&mut self.inner, target, mine, verification)
            .await?
            .into_iter()
            .map(|(row, until)| {
                Ok(LiveChange {
                    change: row.into_change(Vec::new())?,
                    verification_until: until.map(from_ms),
                })
            })
            .collect()
    }
}
