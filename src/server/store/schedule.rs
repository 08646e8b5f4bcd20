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

/// The live changes on `{t}` whose active period may overlap `[{lo}, {hi}]` (ms; `{v}` is
/// the verification time), a superset of what `domain::schedule::conflicts` keeps: the same
/// periods as its `active`, compared inclusively. Read newest first along `changes_by_target`
/// (`migrations/*/0011_conflict_lookup.sql`), so a target with a long history stops early.
/// Only the columns a conflict reads are read; the bulky ones (its own conflicts, output,
/// captured output, command, JSON lists) come back empty, so a busy target costs little.
///
/// The running verification is asked in subqueries, not joined: every condition is then on
/// `changes` alone, and PostgreSQL walks the index backwards and stops at the limit, where a
/// join made it read and sort the target's whole history (20 ms for a batch, against 0.4 ms).
const LIVE_ON_TARGET: &str = "SELECT c.id, c.state, c.action, c.risk, c.ticket, c.target, \
     CAST('{}' AS TEXT) AS params, c.reason, c.requested_by, c.requested_level, c.created_at, \
     c.updated_at, c.expires_at, CAST('[]' AS TEXT) AS requirements, \
     CAST('[]' AS TEXT) AS warnings, CAST(NULL AS TEXT) AS outcome_reason, \
     CAST(NULL AS TEXT) AS decided_by, CAST(NULL AS TEXT) AS output, c.rollback_of, \
     c.emergency, CAST(NULL AS TEXT) AS captured, CAST(NULL AS TEXT) AS command, c.run_at, \
     CAST(NULL AS TEXT) AS conflicts, (SELECT MAX(v.deadline) FROM verifications v \
       WHERE v.change_id = c.id AND v.state IN ('watching', 'degraded')) AS verification_until \
     FROM changes c WHERE c.target = {t} AND c.risk <> 'low' AND ( \
       (c.state = 'pending_approval' AND c.run_at IS NULL \
        AND c.created_at <= {hi} AND c.expires_at + {v} >= {lo}) \
       OR (c.state IN ('pending_approval', 'scheduled') AND c.run_at IS NOT NULL \
        AND c.run_at <= {hi} AND c.run_at + {v} >= {lo}) \
       OR (c.state = 'scheduled' AND c.run_at IS NULL) \
       OR (c.state = 'executing' AND c.updated_at <= {hi}) \
       OR (c.state = 'executed' AND c.updated_at <= {hi} AND EXISTS (SELECT 1 FROM \
        verifications v WHERE v.change_id = c.id AND v.state IN ('watching', 'degraded') \
        AND v.deadline >= {lo}))) \
     ORDER BY c.id DESC LIMIT {n}";

/// One conflict lookup: a target, and the period a new change would keep it busy.
pub struct LiveAsk<'a> {
    pub target: &'a str,
    pub period: Period,
}

/// The statement that answers `asks` lookups at once, with the verification time as `$1` and
/// each ask's (number, target, start, end) after it.
///
/// PostgreSQL: the asks as a VALUES list, each joined LATERAL to one [`LIVE_ON_TARGET`], so
/// the lookup is planned once however many asks there are (as sixteen parts of a UNION ALL it
/// was planned sixteen times at every execution: 4 to 15 ms). SQLite, which has no LATERAL and
/// compiles a statement once: each lookup in a subquery of its own, joined by UNION ALL.
fn live_sql(postgres: bool, asks: usize) -> String {
    let lookup = |t: &str, lo: &str, hi: &str| {
        LIVE_ON_TARGET
            .replace("{t}", t)
            .replace("{lo}", lo)
            .replace("{hi}", hi)
            .replace("{v}", "$1")
            .replace("{n}", &CONFLICTS_NAMED.to_string())
    };
    let p = |k: usize, i: usize| format!("${}", 2 + k * 4 + i);
    if postgres {
        let values: Vec<String> = (0..asks)
            .map(|k| {
                format!(
                    "(CAST({} AS BIGINT), CAST({} AS TEXT), CAST({} AS BIGINT), CAST({} AS BIGINT))",
                    p(k, 0),
                    p(k, 1),
                    p(k, 2),
                    p(k, 3)
                )
            })
            .collect();
        format!(
            "SELECT a.ask, q.* FROM (VALUES {}) AS a(ask, t, lo, hi) CROSS JOIN LATERAL ({}) AS q",
            values.join(", "),
            lookup("a.t", "a.lo", "a.hi")
        )
    } else {
        (0..asks)
            .map(|k| {
                format!(
                    "SELECT CAST({} AS BIGINT) AS ask, q{k}.* FROM ({}) AS q{k}",
                    p(k, 0),
                    lookup(&p(k, 1), &p(k, 2), &p(k, 3))
                )
            })
            .collect::<Vec<_>>()
            .join(" UNION ALL ")
    }
}

/// The rows of the lookups, per ask in the order given: for both the preview's read and the
/// requests' transaction. One round trip however many asks a batch of requests has.
async fn select_live(
    conn: &mut AnyConnection,
    postgres: bool,
    asks: &[LiveAsk<'_>],
    verification: chrono::Duration,
) -> Result<Vec<Vec<(ChangeRow, Option<i64>)>>, DbError> {
    let mut found: Vec<Vec<(ChangeRow, Option<i64>)>> = asks.iter().map(|_| Vec::new()).collect();
    if asks.is_empty() {
        return Ok(found);
    }
    let sql = live_sql(postgres, asks.len());
    // Kept as a prepared statement: its plan is made in a batch transaction, where bitmap
    // scans and sorts are off (`BEGIN_SHARED`), so it walks `changes_by_target` backwards
    // whatever the table looked like when it was planned.
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(verification.num_milliseconds());
    for (k, a) in asks.iter().enumerate() {
        q = q
            .bind(k as i64)
            .bind(a.target.to_string())
            .bind(ms(a.period.start))
            .bind(a.period.end.map_or(i64::MAX, ms));
    }
    for r in q.fetch_all(&mut *conn).await? {
        let ask: i64 = r.try_get("ask")?;
        let slot = usize::try_from(ask)
            .ok()
            .and_then(|k| found.get_mut(k))
            .ok_or_else(|| DbError::Protocol(format!("a conflict lookup answered ask {ask}")))?;
        slot.push((ChangeRow::from_row(&r)?, r.try_get("verification_until")?));
    }
    // Neither form promises an order across asks; within one, newest first.
    for rows in &mut found {
        rows.sort_by_key(|(r, _)| std::cmp::Reverse(r.id));
    }
    Ok(found)
}

fn live_changes(rows: Vec<(ChangeRow, Option<i64>)>) -> Result<Vec<LiveChange>, DbError> {
    rows.into_iter()
        .map(|(row, until)| {
            Ok(LiveChange {
                change: row.into_change(Vec::new())?,
                verification_until: until.map(from_ms),
            })
        })
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
        limit: i64,
    ) -> Result<Vec<Change>, DbError> {
        // Changes that may still run at their `run_at`: waiting for approval, or scheduled; the
        // first `limit` of them.
        let rows: Vec<ChangeRow> = sqlx::query_as(
            "SELECT * FROM changes WHERE run_at >= $1 AND run_at < $2 \
             AND state IN ('pending_approval', 'scheduled') ORDER BY run_at, id LIMIT $3",
        )
        .bind(ms(from))
        .bind(ms(to))
        .bind(limit)
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
        let ask = LiveAsk {
            target,
            period: *mine,
        };
        let postgres = self.backend == Backend::Postgres;
        let rows = select_live(
            &mut conn,
            postgres,
            std::slice::from_ref(&ask),
            verification,
        )
        .await?
        .pop()
        .unwrap_or_default();
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

/// Namespaces of the advisory locks a batch of change requests takes (PostgreSQL).
const LOCK_TARGETS: i32 = 7;
const LOCK_REQUESTERS: i32 = 8;

/// One operator's open changes, as the per-operator quotas count them.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct OpenChanges {
    /// Waiting for their time (a `run_at`): scheduled, or waiting for approval.
    pub waiting: i64,
    /// Waiting for approval, without a time.
    pub pending: i64,
    /// Executing now.
    pub executing: i64,
}

impl Tx {
    /// [`Store::changes_live_on`] for several lookups, inside the write transaction, in one
    /// round trip (approvals are not read: a conflict names the change, not who approved it).
    pub async fn changes_live_on(
        &mut self,
        asks: &[LiveAsk<'_>],
        verification: chrono::Duration,
    ) -> Result<Vec<Vec<LiveChange>>, DbError> {
        select_live(&mut self.inner, self.postgres, asks, verification)
            .await?
            .into_iter()
            .map(live_changes)
            .collect()
    }

    /// Locks `targets` for the rest of the transaction, for a server that refuses conflicts:
    /// shared writers on other replicas (`Store::write_shared`) would otherwise both find a
    /// target free and both go ahead.
    pub async fn targets_lock(&mut self, targets: &[&str]) -> Result<(), DbError> {
        self.advisory_locks(LOCK_TARGETS, targets).await
    }

    /// Locks `requesters` for the rest of the transaction, so that their counts of open changes
    /// (`Tx::changes_open_by`) stay true until it commits: two replicas' batches would otherwise
    /// both count below a quota and both go past it. A batch takes these before its targets.
    pub async fn requesters_lock(&mut self, requesters: &[&str]) -> Result<(), DbError> {
        self.advisory_locks(LOCK_REQUESTERS, requesters).await
    }

    /// Transaction-scoped advisory locks on `keys` in the namespace `space`. All at once and in
    /// one order (by the hash the lock is keyed on, then locked as the rows come), so two batches
    /// never wait for each other crosswise, not even on two keys whose hashes are equal. Nothing to do for an exclusive writer, which no other writer runs beside.
    async fn advisory_locks(&mut self, space: i32, keys: &[&str]) -> Result<(), DbError> {
        if !self.shared || keys.is_empty() {
            return Ok(());
        }
        let mut sorted: Vec<&str> = keys.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        let values: Vec<String> = (2..=sorted.len() + 1).map(|i| format!("(${i})")).collect();
        // Volatile functions in the select list are evaluated after the sort.
        let sql = format!(
            "SELECT COUNT(*) FROM (SELECT pg_advisory_xact_lock($1, hashtext(t)) \
             FROM (VALUES {}) AS v(t) ORDER BY hashtext(t), t) AS l",
            values.join(", ")
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(space);
        for t in sorted {
            q = q.bind(t.to_string());
        }
        q.fetch_one(&mut *self.inner).await?;
        Ok(())
    }

    /// What each of `requesters` has open, read inside the write transaction.
    pub async fn changes_open_by(
        &mut self,
        requesters: &[&str],
    ) -> Result<BTreeMap<String, OpenChanges>, DbError> {
        let mut names: Vec<&str> = requesters.to_vec();
        names.sort_unstable();
        names.dedup();
        if names.is_empty() {
            return Ok(BTreeMap::new());
        }
        let list: Vec<String> = (1..=names.len()).map(|i| format!("${i}")).collect();
        // Answered from the partial index `changes_open_by_requester` (migration 0012): the open
        // changes of these requesters, not their history.
        let sql = format!(
            "SELECT requested_by, \
             SUM(CASE WHEN run_at IS NOT NULL AND state <> 'executing' THEN 1 ELSE 0 END), \
             SUM(CASE WHEN run_at IS NULL AND state = 'pending_approval' THEN 1 ELSE 0 END), \
             SUM(CASE WHEN state = 'executing' THEN 1 ELSE 0 END) \
             FROM changes WHERE state IN ('pending_approval', 'scheduled', 'executing') \
             AND requested_by IN ({}) GROUP BY requested_by",
            list.join(", ")
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for name in names {
            q = q.bind(name.to_string());
        }
        let rows = q.fetch_all(&mut *self.inner).await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get::<String, _>(0)?,
                    OpenChanges {
                        waiting: r.try_get(1)?,
                        pending: r.try_get(2)?,
                        executing: r.try_get(3)?,
                    },
                ))
            })
            .collect()
    }
}
