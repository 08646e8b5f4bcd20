//! Verification samples, outcomes and the webhook outbox.

use super::rows::{VerificationRow, from_ms, ms};
use super::{DbError, Store, Tx};
use crate::config::ServiceConfig;
use crate::domain::change::Change;
use crate::domain::verification::{Sample, Summary, VerificationState, after_sample};
use crate::domain::verification::{Verification, VerificationDetail};
use chrono::{DateTime, Utc};
use sqlx::Row;

/// How many error-rate readings the list keeps for a sparkline.
pub const RECENT_KEEP: usize = 30;

/// A webhook message waiting for delivery.
#[derive(Debug, Clone)]
pub struct OutboxMessage {
    pub id: i64,
    pub kind: String,
    pub payload: String,
    pub attempts: i64,
}

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
             ORDER BY deadline DESC, id DESC LIMIT $1) ORDER BY deadline, id"
        } else {
            "SELECT * FROM (SELECT * FROM verifications \
             ORDER BY deadline DESC, id DESC LIMIT $1) ORDER BY deadline, id"
        };
        let rows: Vec<VerificationRow> = sqlx::query_as(sql)
            .bind(limit)
            .fetch_all(&self.reader)
            .await?;
        rows.into_iter()
            .map(VerificationRow::into_verification)
            .collect()
    }

    /// Active verifications with the checks they run, for the verifier.
    pub async fn active_checks(
        &self,
    ) -> Result<Vec<(Verification, Option<ServiceConfig>)>, DbError> {
        let rows: Vec<VerificationRow> = sqlx::query_as(
            "SELECT * FROM verifications WHERE state IN ('watching', 'degraded') ORDER BY deadline, id",
        )
        .fetch_all(&self.writer)
        .await?;
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

    pub async fn due_outbox(
        &self,
        now: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<OutboxMessage>, DbError> {
        let rows = sqlx::query(
            "SELECT id, kind, payload, attempts FROM outbox \
             WHERE delivered_at IS NULL AND next_attempt_at <= $1 ORDER BY id LIMIT $2",
        )
        .bind(ms(now))
        .bind(limit)
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(OutboxMessage {
                    id: r.try_get("id")?,
                    kind: r.try_get("kind")?,
                    payload: r.try_get("payload")?,
                    attempts: r.try_get("attempts")?,
                })
            })
            .collect()
    }

    /// When the next undelivered message is due, if any.
    pub async fn next_outbox_due(&self) -> Result<Option<DateTime<Utc>>, DbError> {
        let t: Option<i64> = sqlx::query_scalar(
            "SELECT MIN(next_attempt_at) FROM outbox WHERE delivered_at IS NULL",
        )
        .fetch_one(&self.reader)
        .await?;
        Ok(t.map(from_ms))
    }

    pub async fn outbox_delivered(&self, id: i64, now: DateTime<Utc>) -> Result<(), DbError> {
        sqlx::query("UPDATE outbox SET delivered_at = $1, attempts = attempts + 1, last_error = NULL WHERE id = $2")
            .bind(ms(now))
            .bind(id)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    pub async fn outbox_failed(
        &self,
        id: i64,
        next: DateTime<Utc>,
        error: &str,
    ) -> Result<(), DbError> {
        sqlx::query("UPDATE outbox SET attempts = attempts + 1, next_attempt_at = $1, last_error = $2 WHERE id = $3")
            .bind(ms(next))
            .bind(error.to_string())
            .bind(id)
            .execute(&self.writer)
            .await?;
        Ok(())
    }
}

async fn samples<'e, E: sqlx::SqliteExecutor<'e>>(
    conn: E,
    id: i64,
) -> Result<Vec<Sample>, DbError> {
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
    pub async fn insert_verification(
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
    pub async fn add_sample(
        &mut self,
        before: &Verification,
        sample: &Sample,
    ) -> Result<Option<Verification>, DbError> {
        if !before.state.is_active() {
            return Ok(None);
        }
        let state = after_sample(before.state, sample);
        let data = serde_json::to_string(sample).unwrap_or_default();
        sqlx::query(
            "INSERT INTO verification_samples (verification_id, at, due, ok, data) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(before.id)
        .bind(ms(sample.at))
        .bind(ms(sample.due))
        .bind(i64::from(sample.ok()))
        .bind(data.clone())
        .execute(&mut *self.inner)
        .await?;
        let mut recent = before.recent_error_rates.clone();
        if let Some(r) = &sample.error_rate {
            recent.push(r.value);
            let excess = recent.len().saturating_sub(RECENT_KEEP);
            recent.drain(..excess);
        }
        let row: Option<VerificationRow> = sqlx::query_as(
            "UPDATE verifications SET state = $1, last_sample = $2, recent = $3 \
             WHERE id = $4 AND state IN ('watching', 'degraded') RETURNING *",
        )
        .bind(state.as_str())
        .bind(data)
        .bind(serde_json::to_string(&recent).unwrap_or_else(|_| "[]".into()))
        .bind(before.id)
        .fetch_optional(&mut *self.inner)
        .await?;
        row.map(VerificationRow::into_verification).transpose()
    }

    /// Moves an active verification to `awaiting_outcome` with its summary; false if it was no
    /// longer active.
    pub async fn reach_deadline(&mut self, id: i64, summary: &Summary) -> Result<bool, DbError> {
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
    pub async fn close_verification(
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

    /// Queues a webhook message, in the same transaction as what it reports.
    pub async fn enqueue(
        &mut self,
        kind: &str,
        payload: &serde_json::Value,
        now: DateTime<Utc>,
    ) -> Result<i64, DbError> {
        sqlx::query_scalar(
            "INSERT INTO outbox (created_at, kind, payload, next_attempt_at) VALUES ($1, $2, $3, $1) RETURNING id",
        )
        .bind(ms(now))
        .bind(kind.to_string())
        .bind(payload.to_string())
        .fetch_one(&mut *self.inner)
        .await
    }

    pub async fn set_captured(&mut self, change_id: i64, captured: &str) -> Result<(), DbError> {
        sqlx::query("UPDATE changes SET captured = $1 WHERE id = $2")
            .bind(captured.to_string())
            .bind(change_id)
            .execute(&mut *self.inner)
            .await?;
        Ok(())
    }

    pub async fn captured(&mut self, change_id: i64) -> Result<Option<String>, DbError> {
        let v: Option<Option<String>> =
            sqlx::query_scalar("SELECT captured FROM changes WHERE id = $1")
                .bind(change_id)
                .fetch_optional(&mut *self.inner)
                .await?;
        Ok(v.flatten())
    }
}
