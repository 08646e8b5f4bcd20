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
    pub async fn outbox_due(
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
