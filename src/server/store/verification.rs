//! Verifications, their samples and their outcomes.

use super::rows::{VerificationRow, ms};
use super::{DbError, Store, Tx, lease_now};
use crate::config::ServiceConfig;
use crate::domain::change::Change;
use crate::domain::verification::{Sample, Summary, VerificationState, after_sample};
use crate::domain::verification::{Verification, VerificationDetail};
use chrono::{DateTime, Utc};

/// How many error-rate readings the list keeps for a sparkline.
pub const RECENT_KEEP: usize = 30;

impl Store {
    /// Verifications, soonest deadline first; `active_only` keeps those still sampled.
    /// The `limit` latest verifications by deadline (active ones have the latest), returned
    /// soonest deadline first.
    pub async fn verification_list(
        &self,
        active_only: bool,
        limit: i64,
    ) -> Result<Vec<Verification>, DbError> {
        let sql = if active_only {
            "SELECT * FROM (SELECT * FROM verifications WHERE state IN ('watching', 'degraded') \
             ORDER BY deadline DESC, id DESC LIMIT $1) AS latest ORDER BY deadline, id"
        } else {
            "SELECT * FROM (SELECT * FROM verifications \
             ORDER BY deadline DESC, id DESC LIMIT $1) AS latest ORDER BY deadline, id"
        };
        let rows: Vec<VerificationRow> = sqlx::query_as(sql)
            .bind(limit)
            .fetch_all(&self.reader)
            .await?;
        rows.into_iter()
            .map(VerificationRow::into_verification)
            .collect()
    }

    /// Leases the active verifications that no live server polls (or that this server already
    /// holds) to this server until `lease_ms` from now, and returns them with their checks: the
    /// verifier polls only these. A lease held by a server `is_gone` says has died is taken over
    /// at once; any other runs out first.
    ///
    /// One conditional UPDATE per step: on PostgreSQL a row another replica is claiming at the
    /// same moment is re-checked after its lock is released, so each verification has one
    /// holder.
    pub async fn verification_lease(
        &self,
        lease_ms: i64,
        is_gone: impl Fn(&str) -> bool,
    ) -> Result<Vec<(Verification, Option<ServiceConfig>)>, DbError> {
        let now = lease_now();
        let holders: Vec<String> = sqlx::query_scalar(
            "SELECT DISTINCT lease_owner FROM verifications \
             WHERE state IN ('watching', 'degraded') AND lease_owner IS NOT NULL \
             AND lease_owner <> $1 AND lease_until >= $2",
        )
        .bind(self.owner().to_string())
        .bind(now)
        .fetch_all(&self.writer)
        .await?;
        for gone in holders.iter().filter(|h| is_gone(h)) {
            sqlx::query("UPDATE verifications SET lease_until = 0 WHERE lease_owner = $1")
                .bind(gone.clone())
                .execute(&self.writer)
                .await?;
        }
        let mut rows: Vec<VerificationRow> = sqlx::query_as(
            "UPDATE verifications SET lease_owner = $1, lease_until = $2 \
             WHERE state IN ('watching', 'degraded') \
             AND (lease_owner = $1 OR lease_owner IS NULL OR lease_until < $3) RETURNING *",
        )
        .bind(self.owner().to_string())
        .bind(now + lease_ms)
        .bind(now)
        .fetch_all(&self.writer)
        .await?;
        rows.sort_by_key(|r| (r.deadline(), r.id()));
        rows.into_iter()
            .map(|r| {
                let checks = r.checks()?;
                Ok((r.into_verification()?, checks))
            })
            .collect()
    }

    pub async fn verification_detail(
        &self,
        id: i64,
    ) -> Result<Option<VerificationDetail>, DbError> {
        let row: Option<VerificationRow> =
            sqlx::query_as("SELECT * FROM verifications WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.reader)
                .await?;
        let Some(row) = row else { return Ok(None) };
        let samples = samples(&self.reader, id).await?;
        Ok(Some(VerificationDetail {
            verification: row.into_verification()?,
            samples,
        }))
    }
}

async fn samples<'e, E: sqlx::AnyExecutor<'e>>(conn: E, id: i64) -> Result<Vec<Sample>, DbError> {
    let rows: Vec<String> = sqlx::query_scalar(
        "SELECT data FROM verification_samples WHERE verification_id = $1 ORDER BY id",
    )
    .bind(id)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|d| serde_json::from_str(d).map_err(|e| DbError::Decode(Box::new(e))))
        .collect()
}

impl Tx {
    pub async fn verification_insert(
        &mut self,
        change: &Change,
        started_at: DateTime<Utc>,
        deadline: DateTime<Utc>,
        checks: Option<&ServiceConfig>,
    ) -> Result<Verification, DbError> {
        let row: VerificationRow = sqlx::query_as(
            "INSERT INTO verifications (change_id, target, action, started_at, deadline, state, checks) \
             VALUES ($1, $2, $3, $4, $5, 'watching', $6) RETURNING *",
        )
        .bind(change.id)
        .bind(change.target.clone())
        .bind(change.action.clone())
        .bind(ms(started_at))
        .bind(ms(deadline))
        .bind(checks.map(|c| serde_json::to_string(c).unwrap_or_default()))
        .fetch_one(&mut *self.inner)
        .await?;
        row.into_verification()
    }

    pub async fn verification(&mut self, id: i64) -> Result<Option<Verification>, DbError> {
        let row: Option<VerificationRow> =
            sqlx::query_as("SELECT * FROM verifications WHERE id = $1")
                .bind(id)
                .fetch_optional(&mut *self.inner)
                .await?;
        row.map(VerificationRow::into_verification).transpose()
    }

    pub async fn samples(&mut self, id: i64) -> Result<Vec<Sample>, DbError> {
        samples(&mut *self.inner, id).await
    }

    /// Stores a sample of `before` (as just read in this transaction) and moves the
    /// verification to the state the sample implies, if it is still active. Returns the
    /// verification as it now stands.
    pub async fn sample_insert(
        &mut self,
        before: &Verification,
        sample: &Sample,
    ) -> Result<Option<Verification>, DbError> {
        if !before.state.is_active() {
            return Ok(None);
        }
        let state = after_sample(before.state, sample);
        let data = serde_json::to_string(sample).unwrap_or_default();
        let mut recent = before.recent_error_rates.clone();
        if let Some(r) = &sample.error_rate {
            recent.push(r.value);
            let excess = recent.len().saturating_sub(RECENT_KEEP);
            recent.drain(..excess);
        }
        // Only the lease holder's samples count: a server that lost its lease (it stalled and
        // another took over) must not add a second sample for the same moment.
        let row: Option<VerificationRow> = sqlx::query_as(
            "UPDATE verifications SET state = $1, last_sample = $2, recent = $3 \
             WHERE id = $4 AND state IN ('watching', 'degraded') AND lease_owner = $5 RETURNING *",
        )
        .bind(state.as_str())
        .bind(data.clone())
        .bind(serde_json::to_string(&recent).unwrap_or_else(|_| "[]".into()))
        .bind(before.id)
        .bind(self.owner.to_string())
        .fetch_optional(&mut *self.inner)
        .await?;
        if row.is_some() {
            sqlx::query(
                "INSERT INTO verification_samples (verification_id, at, due, ok, data) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(before.id)
            .bind(ms(sample.at))
            .bind(ms(sample.due))
            .bind(i64::from(sample.ok()))
            .bind(data)
            .execute(&mut *self.inner)
            .await?;
        }
        row.map(VerificationRow::into_verification).transpose()
    }

    /// Moves an active verification to `awaiting_outcome` with its summary; false if it was no
    /// longer active.
    pub async fn verification_reach_deadline(
        &mut self,
        id: i64,
        summary: &Summary,
    ) -> Result<bool, DbError> {
        let done = sqlx::query(
            "UPDATE verifications SET state = 'awaiting_outcome', summary = $1 \
             WHERE id = $2 AND state IN ('watching', 'degraded')",
        )
        .bind(serde_json::to_string(summary).unwrap_or_default())
        .bind(id)
        .execute(&mut *self.inner)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Records the outcome; false if the verification was already closed.
    pub async fn verification_close(
        &mut self,
        id: i64,
        state: VerificationState,
        by: &str,
        note: Option<&str>,
        incident: Option<&str>,
        summary: Option<&Summary>,
    ) -> Result<bool, DbError> {
        let done = sqlx::query(
            "UPDATE verifications SET state = $1, decided_by = $2, note = $3, incident = $4, \
             summary = COALESCE(summary, $5) \
             WHERE id = $6 AND state NOT IN ('verified', 'escalated')",
        )
        .bind(state.as_str())
        .bind(by.to_string())
        .bind(note.map(str::to_string))
        .bind(incident.map(str::to_string))
        .bind(summary.map(|s| serde_json::to_string(s).unwrap_or_default()))
        .bind(id)
        .execute(&mut *self.inner)
        .await?;
        Ok(done.rows_affected() == 1)
    }
}
