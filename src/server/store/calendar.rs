//! Secret feed URLs of the iCalendar feed: stored as SHA-256 like operators' tokens
//! (`operators.rs`), looked up by hash, revoked by setting `revoked_at`.

use super::*;
use crate::domain::calendar::Feed;

/// `SELECT` of a feed's columns, then the rest of the statement (a literal, as sqlx wants).
macro_rules! select_feeds {
    ($rest:literal) => {
        concat!(
            "SELECT id, label, created_by, created_at, revoked_at, revoked_by, secret_sha256 ",
            $rest
        )
    };
}

fn feed_of(r: &AnyRow) -> Result<Feed, DbError> {
    Ok(Feed {
        id: r.try_get("id")?,
        label: r.try_get("label")?,
        created_by: r.try_get("created_by")?,
        created_at: from_ms(r.try_get("created_at")?),
        revoked_at: r.try_get::<Option<i64>, _>("revoked_at")?.map(from_ms),
        revoked_by: r.try_get("revoked_by")?,
    })
}

async fn select_feed(conn: &mut AnyConnection, id: i64) -> Result<Option<Feed>, DbError> {
    let row = sqlx::query(select_feeds!("FROM calendar_feeds WHERE id = $1"))
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
    row.as_ref().map(feed_of).transpose()
}

impl Store {
    /// The live (not revoked) feed whose secret hashes to `hash`, with the stored hash for the
    /// constant-time comparison.
    pub async fn calendar_feed_by_secret_hash(
        &self,
        hash: &str,
    ) -> Result<Option<(Feed, String)>, DbError> {
        let row = sqlx::query(select_feeds!(
            "FROM calendar_feeds WHERE secret_sha256 = $1 AND revoked_at IS NULL \
             AND EXISTS (SELECT 1 FROM operators o WHERE o.name = calendar_feeds.created_by \
             AND o.revoked_at IS NULL)"
        ))
        .bind(hash.to_string())
        .fetch_optional(&self.reader)
        .await?;
        row.map(|r| Ok((feed_of(&r)?, r.try_get("secret_sha256")?)))
            .transpose()
    }

    /// At most `limit` feeds, revoked ones too, newest first, with ids below `before` when
    /// given: revoked feeds stay listed for ever, so the list is read a page at a time.
    pub async fn calendar_feeds(
        &self,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<Feed>, DbError> {
        let rows = sqlx::query(select_feeds!(
            "FROM calendar_feeds WHERE id < $1 ORDER BY id DESC LIMIT $2"
        ))
        .bind(before.unwrap_or(i64::MAX))
        .bind(limit)
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(feed_of).collect()
    }
}

impl Tx {
    pub async fn calendar_feed_insert(
        &mut self,
        label: &str,
        secret_hash: &str,
        by: &str,
        now: DateTime<Utc>,
    ) -> Result<Feed, DbError> {
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO calendar_feeds (secret_sha256, label, created_by, created_at) \
             VALUES ($1, $2, $3, $4) RETURNING id",
        )
        .bind(secret_hash.to_string())
        .bind(label.to_string())
        .bind(by.to_string())
        .bind(ms(now))
        .fetch_one(&mut *self.inner)
        .await?;
        Ok(Feed {
            id,
            label: label.to_string(),
            created_by: by.to_string(),
            created_at: from_ms(ms(now)),
            revoked_at: None,
            revoked_by: None,
        })
    }

    /// How many feeds `by` created that are not revoked, counted inside the write
    /// transaction so that two creations at once cannot both pass the cap.
    pub async fn calendar_feeds_active_by(&mut self, by: &str) -> Result<i64, DbError> {
        sqlx::query_scalar(
            "SELECT COUNT(*) FROM calendar_feeds WHERE created_by = $1 AND revoked_at IS NULL",
        )
        .bind(by.to_string())
        .fetch_one(&mut *self.inner)
        .await
    }

    pub async fn calendar_feed(&mut self, id: i64) -> Result<Option<Feed>, DbError> {
        select_feed(&mut self.inner, id).await
    }

    /// Revokes feed `id`; false when it was already revoked (or does not exist).
    pub async fn calendar_feed_revoke(
        &mut self,
        id: i64,
        by: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, DbError> {
        let done = sqlx::query(
            "UPDATE calendar_feeds SET revoked_at = $1, revoked_by = $2 \
             WHERE id = $3 AND revoked_at IS NULL",
        )
        .bind(ms(now))
        .bind(by.to_string())
        .bind(id)
        .execute(&mut *self.inner)
        .await?;
        Ok(done.rows_affected() == 1)
    }
}
