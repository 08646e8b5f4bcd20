//! The ticket webhook's durable outbox: messages written with the state change they report, sent
//! and retried by `server/webhook.rs`.

use super::*;

/// A webhook message waiting for delivery.
#[derive(Debug, Clone)]
pub struct OutboxMessage {
    pub id: i64,
    pub kind: String,
    pub payload: String,
    pub attempts: i64,
}

impl Store {
    /// Takes up to `limit` messages that are due, for this server to send: each is hidden from
    /// other servers (its next attempt moved to `hold_until`) until this one records how the
    /// attempt went, so with several replicas one of them sends it. A server that dies holding
    /// messages leaves them to be retried at `hold_until`.
    pub async fn outbox_claim(
        &self,
        now: DateTime<Utc>,
        hold_until: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<OutboxMessage>, DbError> {
        // The due test is repeated in the outer WHERE: on PostgreSQL, a row another replica
        // claimed meanwhile is re-checked against it and skipped.
        let rows = sqlx::query(
            "UPDATE outbox SET next_attempt_at = $1 \
             WHERE id IN (SELECT id FROM outbox WHERE delivered_at IS NULL \
                          AND next_attempt_at <= $2 ORDER BY id LIMIT $3) \
             AND delivered_at IS NULL AND next_attempt_at <= $2 \
             RETURNING id, kind, payload, attempts",
        )
        .bind(ms(hold_until))
        .bind(ms(now))
        .bind(limit)
        .fetch_all(&self.writer)
        .await?;
        let mut messages = rows
            .iter()
            .map(|r| {
                Ok(OutboxMessage {
                    id: r.try_get("id")?,
                    kind: r.try_get("kind")?,
                    payload: r.try_get("payload")?,
                    attempts: r.try_get("attempts")?,
                })
            })
            .collect::<Result<Vec<_>, DbError>>()?;
        messages.sort_by_key(|m| m.id);
        Ok(messages)
    }

    /// When the next undelivered message is due, if any.
    pub async fn outbox_next_due(&self) -> Result<Option<DateTime<Utc>>, DbError> {
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

impl Tx {
    /// Queues a webhook message, in the same transaction as what it reports.
    pub async fn outbox_enqueue(
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
}
