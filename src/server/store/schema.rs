//! The schema's version: `commandbridge migrate` brings a database to this binary's schema;
//! a server refuses a database whose schema it does not know (newer) or that is behind.
//!
//! One list of migrations, written once per dialect (`migrations/sqlite`, `migrations/postgres`,
//! same versions and names): the same tables, columns and constraints on both.

use super::{AnyPool, Backend, DbError, Store};
use sqlx::migrate::Migrator;

static SQLITE: Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES: Migrator = sqlx::migrate!("./migrations/postgres");

fn migrator(backend: Backend) -> &'static Migrator {
    match backend {
        Backend::Sqlite => &SQLITE,
        Backend::Postgres => &POSTGRES,
    }
}

/// Where a database's schema stands against this binary's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SchemaState {
    Current(i64),
    /// Applied up to the first, this binary knows up to the second.
    Behind(i64, i64),
    /// Migrations this binary does not know were applied (a newer CommandBridge ran).
    Newer(i64, i64),
}

fn latest(backend: Backend) -> i64 {
    migrator(backend)
        .iter()
        .map(|m| m.version)
        .max()
        .unwrap_or(0)
}

async fn applied(pool: &AnyPool) -> Result<i64, DbError> {
    // No table yet is version 0; the query fails on an empty database, so ask first.
    let exists: bool =
        sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM _sqlx_migrations WHERE success = TRUE")
            .fetch_one(pool)
            .await
            .is_ok();
    if !exists {
        return Ok(0);
    }
    sqlx::query_scalar(
        "SELECT COALESCE(MAX(version), 0) FROM _sqlx_migrations WHERE success = TRUE",
    )
    .fetch_one(pool)
    .await
}

async fn state_of(backend: Backend, pool: &AnyPool) -> Result<SchemaState, DbError> {
    let (have, know) = (applied(pool).await?, latest(backend));
    Ok(match have.cmp(&know) {
        std::cmp::Ordering::Equal => SchemaState::Current(have),
        std::cmp::Ordering::Less => SchemaState::Behind(have, know),
        std::cmp::Ordering::Greater => SchemaState::Newer(have, know),
    })
}

fn newer(have: i64, know: i64) -> DbError {
    DbError::Configuration(
        format!(
            "the database's schema is at version {have}, newer than this CommandBridge knows \
             ({know}): run the CommandBridge release that migrated it, or a newer one"
        )
        .into(),
    )
}

/// Applies the migrations this binary has and the database lacks; refuses a newer database.
pub async fn migrate(backend: Backend, pool: &AnyPool) -> Result<SchemaState, DbError> {
    if let SchemaState::Newer(have, know) = state_of(backend, pool).await? {
        return Err(newer(have, know));
    }
    migrator(backend).run(pool).await?;
    state_of(backend, pool).await
}

impl Store {
    /// `commandbridge migrate`: brings the database to this binary's schema.
    pub async fn migrate(url: &str) -> Result<SchemaState, DbError> {
        sqlx::any::install_default_drivers();
        let backend = Backend::of(url)?;
        if backend == Backend::Sqlite {
            // Opening a SQLite store migrates it.
            let store = Store::open(url).await?;
            let state = state_of(backend, &store.writer).await;
            store.close().await;
            return state;
        }
        let pool = sqlx::any::AnyPoolOptions::new()
            .max_connections(1)
            .connect(url)
            .await?;
        let state = migrate(backend, &pool).await;
        pool.close().await;
        state
    }

    pub async fn schema_state(&self) -> Result<SchemaState, DbError> {
        state_of(self.backend, &self.reader).await
    }

    /// A server starts only on the schema it was built for.
    pub(super) async fn schema_check(&self) -> Result<(), DbError> {
        match self.schema_state().await? {
            SchemaState::Current(_) => Ok(()),
            SchemaState::Newer(have, know) => Err(newer(have, know)),
            SchemaState::Behind(have, know) => Err(DbError::Configuration(
                format!(
                    "the database's schema is at version {have} and this CommandBridge needs \
                     {know}: run `commandbridge migrate --database URL` first"
                )
                .into(),
            )),
        }
    }
}
