//! What the policy reads besides the request: freezes, the change pause and incidents; and their writes.

use super::*;

/// An incident with its commander's level now (none once they are revoked): the policy asks for
/// an L2 or L3 besides an L1 commander (`domain/policy.rs`).
const INCIDENT_SELECT: &str = "SELECT i.*, o.level AS commander_level FROM incidents i \
     LEFT JOIN operators o ON o.name = i.commander AND o.revoked_at IS NULL";

async fn select_freezes(conn: &mut AnyConnection) -> Result<Vec<Freeze>, DbError> {
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

async fn select_pause(conn: &mut AnyConnection) -> Result<Option<Pause>, DbError> {
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

impl Store {
    /// The newest `limit` incidents, newest first.
    pub async fn incidents(&self, limit: i64) -> Result<Vec<Incident>, DbError> {
        let rows: Vec<IncidentRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "{INCIDENT_SELECT} ORDER BY i.id DESC LIMIT $1"
        )))
        .bind(limit)
        .fetch_all(&self.reader)
        .await?;
        rows.into_iter().map(IncidentRow::into_incident).collect()
    }

    pub async fn freezes(&self) -> Result<Vec<Freeze>, DbError> {
        let mut conn = self.reader.acquire().await?;
        select_freezes(&mut conn).await
    }

    pub async fn pause(&self) -> Result<Option<Pause>, DbError> {
        let mut conn = self.reader.acquire().await?;
        select_pause(&mut conn).await
    }

    /// What the policy reads besides the request: freezes announced over the API, the change
    /// pause, and the incident the ticket names. `conn` is the transaction deciding (or a read
    /// connection for a preview).
    pub async fn policy_context(
        &self,
        conn: &mut AnyConnection,
        ticket: &str,
    ) -> Result<(Vec<Freeze>, Option<Pause>, Option<Incident>), DbError> {
        // One small read per decision: the cached lists are used only at the version that is
        // committed now (on PostgreSQL possibly by another replica).
        let version: i64 = sqlx::query_scalar("SELECT version FROM policy_version WHERE id = 1")
            .fetch_one(&mut *conn)
            .await?;
        let cached = lock(&self.policy_cache)
            .as_ref()
            .filter(|(v, _, _)| *v == version)
            .map(|(_, f, p)| (f.clone(), p.clone()));
        let (freezes, pause) = match cached {
            Some(v) => v,
            None => {
                let (f, p) = (select_freezes(conn).await?, select_pause(conn).await?);
                // A reader in an older snapshot must not replace a newer entry.
                let mut c = lock(&self.policy_cache);
                if c.as_ref().is_none_or(|(v, _, _)| *v < version) {
                    *c = Some((version, f.clone(), p.clone()));
                }
                (f, p)
            }
        };
        // Only an incident ticket can name a declared incident; a CHG ticket saves the query.
        let row: Option<IncidentRow> = if ticket.starts_with("INC-") {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "{INCIDENT_SELECT} WHERE i.ticket = $1"
            )))
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

impl Tx {
    /// Every write to freezes or the pause calls this, in its transaction (see `policy_context`).
    async fn policy_bump(&mut self) -> Result<(), DbError> {
        sqlx::query("UPDATE policy_version SET version = version + 1 WHERE id = 1")
            .execute(&mut *self.inner)
            .await?;
        Ok(())
    }

    pub async fn freezes(&mut self) -> Result<Vec<Freeze>, DbError> {
        select_freezes(&mut self.inner).await
    }

    pub async fn pause(&mut self) -> Result<Option<Pause>, DbError> {
        select_pause(&mut self.inner).await
    }

    /// Declares an incident with the next `INC-YYYY-MMDD-NNN` of its day. The number grows past
    /// 999 (`INC-2026-1124-1000`) rather than running out.
    pub async fn incident_insert(
        &mut self,
        priority: crate::domain::Priority,
        title: &str,
        commander: &str,
        declared_by: &str,
        now: DateTime<Utc>,
        by_escalation: bool,
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
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO incidents (ticket, priority, title, commander, declared_by, declared_at, \
             by_escalation) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
        )
        .bind(ticket)
        .bind(priority.as_str())
        .bind(title.to_string())
        .bind(commander.to_string())
        .bind(declared_by.to_string())
        .bind(ms(now))
        .bind(i64::from(by_escalation))
        .fetch_one(&mut *self.inner)
        .await?;
        // Read back with its commander's level.
        self.incident(id)
            .await?
            .ok_or_else(|| DbError::Protocol("an incident just inserted is gone".into()))
    }

    /// When `by` declared incidents (not by escalating) since `since`, oldest first: the
    /// declaration rate limit.
    pub async fn incidents_declared_since(
        &mut self,
        by: &str,
        since: DateTime<Utc>,
    ) -> Result<Vec<DateTime<Utc>>, DbError> {
        let times: Vec<i64> = sqlx::query_scalar(
            "SELECT declared_at FROM incidents WHERE declared_by = $1 AND declared_at > $2 \
             AND by_escalation = 0 ORDER BY declared_at",
        )
        .bind(by.to_string())
        .bind(ms(since))
        .fetch_all(&mut *self.inner)
        .await?;
        Ok(times.into_iter().map(from_ms).collect())
    }

    /// Closes an open incident; `None` when it is unknown or already closed.
    pub async fn incident_close(
        &mut self,
        id: i64,
        now: DateTime<Utc>,
    ) -> Result<Option<Incident>, DbError> {
        let closed: Option<i64> = sqlx::query_scalar(
            "UPDATE incidents SET closed_at = $1 WHERE id = $2 AND closed_at IS NULL RETURNING id",
        )
        .bind(ms(now))
        .bind(id)
        .fetch_optional(&mut *self.inner)
        .await?;
        match closed {
            Some(id) => self.incident(id).await,
            None => Ok(None),
        }
    }

    /// One incident by id.
    pub async fn incident(&mut self, id: i64) -> Result<Option<Incident>, DbError> {
        let row: Option<IncidentRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "{INCIDENT_SELECT} WHERE i.id = $1"
        )))
        .bind(id)
        .fetch_optional(&mut *self.inner)
        .await?;
        row.map(IncidentRow::into_incident).transpose()
    }

    pub async fn freeze_insert(
        &mut self,
        name: &str,
        starts_at: DateTime<Utc>,
        ends_at: DateTime<Utc>,
        by: &str,
        now: DateTime<Utc>,
    ) -> Result<Freeze, DbError> {
        self.policy_bump().await?;
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

    pub async fn freeze_delete(
        &mut self,
        id: i64,
        now: DateTime<Utc>,
    ) -> Result<Option<Freeze>, DbError> {
        self.policy_bump().await?;
        let freeze = select_freezes(&mut self.inner)
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

    pub async fn pause_insert(
        &mut self,
        reason: &str,
        by: &str,
        now: DateTime<Utc>,
    ) -> Result<Pause, DbError> {
        self.policy_bump().await?;
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

    pub async fn pause_end(&mut self, by: &str, now: DateTime<Utc>) -> Result<bool, DbError> {
        self.policy_bump().await?;
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
