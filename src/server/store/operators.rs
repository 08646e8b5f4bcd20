//! Operators and their tokens.

use super::*;

impl Store {
    pub async fn operator_by_token_hash(
        &self,
        hash: &str,
    ) -> Result<Option<(Operator, String)>, DbError> {
        let row = sqlx::query(
            "SELECT name, level, token_sha256 FROM operators \
             WHERE token_sha256 = $1 AND revoked_at IS NULL",
        )
        .bind(hash.to_string())
        .fetch_optional(&self.reader)
        .await?;
        row.map(|r| {
            Ok((
                Operator {
                    name: r.try_get("name")?,
                    level: parse_col(&r, "level")?,
                },
                r.try_get("token_sha256")?,
            ))
        })
        .transpose()
    }

    pub async fn operator(&self, name: &str) -> Result<Option<Operator>, DbError> {
        let row =
            sqlx::query("SELECT name, level FROM operators WHERE name = $1 AND revoked_at IS NULL")
                .bind(name.to_string())
                .fetch_optional(&self.reader)
                .await?;
        row.map(|r| {
            Ok(Operator {
                name: r.try_get("name")?,
                level: parse_col(&r, "level")?,
            })
        })
        .transpose()
    }

    /// All operators: (operator, created_at, revoked_at).
    pub async fn operators(
        &self,
    ) -> Result<Vec<(Operator, DateTime<Utc>, Option<DateTime<Utc>>)>, DbError> {
        let rows =
            sqlx::query("SELECT name, level, created_at, revoked_at FROM operators ORDER BY name")
                .fetch_all(&self.reader)
                .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    Operator {
                        name: r.try_get("name")?,
                        level: parse_col(r, "level")?,
                    },
                    from_ms(r.try_get("created_at")?),
                    r.try_get::<Option<i64>, _>("revoked_at")?.map(from_ms),
                ))
            })
            .collect()
    }
}

impl Tx {
    pub async fn operator_insert(
        &mut self,
        name: &str,
        level: Level,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, DbError> {
        let done = sqlx::query(
            "INSERT INTO operators (name, level, token_sha256, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(name.to_string())
        .bind(level.as_str())
        .bind(token_hash.to_string())
        .bind(ms(now))
        .execute(&mut *self.inner)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn operator_revoke(
        &mut self,
        name: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, DbError> {
        let done = sqlx::query(
            "UPDATE operators SET revoked_at = $1 WHERE name = $2 AND revoked_at IS NULL",
        )
        .bind(ms(now))
        .bind(name.to_string())
        .execute(&mut *self.inner)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn operator_exists(&mut self, name: &str) -> Result<bool, DbError> {
        Ok(self.operator_level(name).await?.is_some())
    }

    /// The level of the operator `name`, if they exist and are not revoked.
    pub async fn operator_level(&mut self, name: &str) -> Result<Option<Level>, DbError> {
        let row = sqlx::query("SELECT level FROM operators WHERE name = $1 AND revoked_at IS NULL")
            .bind(name.to_string())
            .fetch_optional(&mut *self.inner)
            .await?;
        row.map(|r| parse_col(&r, "level")).transpose()
    }
}
