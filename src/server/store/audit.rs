//! The hash-chained audit log and the event table, appended together by [`Tx::record`].

use super::*;

/// The hash before the first audit entry.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

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

fn audit_from_row(r: &AnyRow) -> Result<AuditEntry, DbError> {
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

/// The raw audit rows, for `audit verify`: (seq, at, actor, kind, subject, detail, prev, hash).
pub type RawAuditRow = (i64, i64, String, String, String, String, String, String);

/// The whole audit log and the chain head as one snapshot saw them.
pub struct AuditSnapshot {
    pub rows: Vec<RawAuditRow>,
    pub head: Option<(i64, String)>,
}

impl Store {
    pub async fn audit_list(&self, after: i64, limit: i64) -> Result<Vec<AuditEntry>, DbError> {
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

    pub async fn event_last_seq(&self) -> Result<i64, DbError> {
        sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) FROM events")
            .fetch_one(&self.reader)
            .await
    }

    /// Reads the head and the log in one read transaction: a server appending meanwhile moves
    /// both together, so two separate reads could see a head newer than the log they read.
    pub async fn audit_snapshot(&self) -> Result<AuditSnapshot, DbError> {
        let mut tx = self.snapshot().await?;
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

impl Tx {
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
}
