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

/// An audit entry (and the event, if it is a state change) waiting for the commit.
pub(super) struct Pending {
    at: i64,
    actor: String,
    kind: String,
    subject: String,
    detail: String,
    /// The event's summary and data; `None` for an audit entry without an event.
    event: Option<(String, String)>,
}

/// Rows per INSERT when appending: well under SQLite's limit on bound parameters.
const APPEND_CHUNK: usize = 64;

impl Tx {
    /// Adds the audit entry (hash-chained) and the event of a state change to this
    /// transaction; both are written at its commit (see [`Tx::flush`]).
    pub async fn record(&mut self, now: DateTime<Utc>, r: Record<'_>) -> Result<(), DbError> {
        // The audit entry's detail and the event's data are the same JSON: encoded once.
        let data = r.data.to_string();
        self.pending.push(Pending {
            at: ms(now),
            actor: r.actor.to_string(),
            kind: r.kind.to_string(),
            subject: r.subject,
            detail: data.clone(),
            event: Some((r.summary, data)),
        });
        Ok(())
    }

    /// Adds an audit entry without an event (e.g. a refused request, which changes nothing).
    pub async fn audit(
        &mut self,
        now: DateTime<Utc>,
        actor: &str,
        kind: &str,
        subject: &str,
        detail: &serde_json::Value,
    ) -> Result<(), DbError> {
        self.pending.push(Pending {
            at: ms(now),
            actor: actor.to_string(),
            kind: kind.to_string(),
            subject: subject.to_string(),
            detail: detail.to_string(),
            event: None,
        });
        Ok(())
    }

    /// Appends the transaction's audit entries and events, just before its commit: the only
    /// moment the chain and the event ids need the writers in line. A shared writer on
    /// PostgreSQL (`Store::write_shared`) takes the append lock for it, held to the commit, so
    /// the chain stays unbroken and event ids become visible in commit order; an exclusive
    /// writer already excludes every other. Returns whether events were written.
    pub(super) async fn flush(&mut self) -> Result<bool, DbError> {
        if self.pending.is_empty() {
            return Ok(false);
        }
        let (mut seq, mut hash) = self.lock_head().await?;
        let pending = std::mem::take(&mut self.pending);
        let wrote_events = pending.iter().any(|p| p.event.is_some());
        for chunk in pending.chunks(APPEND_CHUNK) {
            let mut links = Vec::with_capacity(chunk.len());
            for p in chunk {
                let prev = std::mem::take(&mut hash);
                seq += 1;
                hash = audit_hash(seq, p.at, &p.actor, &p.kind, &p.subject, &p.detail, &prev);
                links.push((seq, prev, hash.clone()));
            }
            let events: Vec<&Pending> = chunk.iter().filter(|p| p.event.is_some()).collect();
            let audit_sql = values_insert(
                "INSERT INTO audit_log (seq, at, actor, kind, subject, detail, prev_hash, hash)",
                8,
                0,
                chunk.len(),
            );
            let events_sql = |first| {
                values_insert(
                    "INSERT INTO events (at, kind, actor, summary, data)",
                    5,
                    first,
                    events.len(),
                )
            };
            // PostgreSQL takes both inserts in one statement (one round trip, under the append
            // lock); SQLite, in process and without data-modifying WITH, in two.
            let together = self.postgres && !events.is_empty();
            let sql = if together {
                format!(
                    "WITH audit AS ({audit_sql}) {}",
                    events_sql(8 * chunk.len())
                )
            } else {
                audit_sql
            };
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for (p, (seq, prev, hash)) in chunk.iter().zip(links) {
                q = q
                    .bind(seq)
                    .bind(p.at)
                    .bind(p.actor.clone())
                    .bind(p.kind.clone())
                    .bind(p.subject.clone())
                    .bind(p.detail.clone())
                    .bind(prev)
                    .bind(hash);
            }
            if together {
                q = bind_events(q, &events);
            }
            // The trigger audit_head_follows moves the head in the same statement.
            q.execute(&mut *self.inner).await?;
            if !together && !events.is_empty() {
                let q = sqlx::query(sqlx::AssertSqlSafe(events_sql(0)));
                bind_events(q, &events).execute(&mut *self.inner).await?;
            }
        }
        Ok(wrote_events)
    }

    /// The chain head, read after taking the append lock where one is needed, in one round
    /// trip: a simple-protocol message of two statements, each with its own snapshot, so the
    /// read sees every append committed before the lock was granted.
    async fn lock_head(&mut self) -> Result<(i64, String), DbError> {
        const HEAD: &str = "SELECT seq, hash FROM audit_head WHERE id = 1";
        let rows = if self.shared {
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!("{APPEND_LOCK}; {HEAD}")))
                .fetch_all(&mut *self.inner)
                .await?
        } else {
            sqlx::query(HEAD).fetch_all(&mut *self.inner).await?
        };
        // The lock's own row (a count) has one column; the head's has two.
        match rows.iter().find(|r| r.columns().len() == 2) {
            Some(r) => Ok((r.try_get::<i64, _>("seq")?, r.try_get::<String, _>("hash")?)),
            None => Ok((0, GENESIS_HASH.to_string())),
        }
    }
}

fn bind_events<'q>(
    mut q: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>,
    events: &[&Pending],
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments> {
    for p in events {
        let (summary, data) = p.event.clone().unwrap_or_default();
        q = q
            .bind(p.at)
            .bind(p.kind.clone())
            .bind(p.actor.clone())
            .bind(summary)
            .bind(data);
    }
    q
}

/// `INSERT … VALUES ($first+1, …), …` for `rows` rows of `columns` values each.
fn values_insert(head: &str, columns: usize, first: usize, rows: usize) -> String {
    let mut sql = format!("{head} VALUES ");
    for r in 0..rows {
        let params: Vec<String> = (1..=columns)
            .map(|c| format!("${}", first + r * columns + c))
            .collect();
        if r > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        sql.push_str(&params.join(", "));
        sql.push(')');
    }
    sql
}
