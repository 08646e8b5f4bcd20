//! Operator management from the command line (`commandbridge user …`): it writes the database
//! directly, so the first admin can be created before anyone can log in.

use crate::domain::action::validate_target;
use crate::domain::{Level, Operator};
use crate::server::auth::{new_token, token_hash};
use crate::server::store::{Record, Store};
use chrono::{DateTime, Utc};

/// Creates an operator; returns the token, which is stored only as its hash.
pub async fn add(store: &Store, name: &str, level: Level) -> Result<String, String> {
    validate_target(name).map_err(|_| {
        format!(
            "operator name '{name}' is not valid: use lowercase letters, digits, '.', '_' or '-'"
        )
    })?;
    let token = new_token().map_err(|e| format!("no randomness available for a token: {e}"))?;
    let now = Utc::now();
    let db = |e: sqlx::Error| format!("database error: {e}");
    let mut tx = store.write().await.map_err(db)?;
    if !tx
        .operator_insert(name, level, &token_hash(&token), now)
        .await
        .map_err(db)?
    {
        return Err(format!(
            "operator '{name}' already exists: revoke it first (commandbridge user revoke {name})"
        ));
    }
    let op = Operator {
        name: name.to_string(),
        level,
    };
    tx.record(
        now,
        Record {
            actor: "cli",
            kind: "operator.created",
            subject: format!("operator:{name}"),
            summary: format!("operator {name} ({level}) created"),
            data: serde_json::to_value(&op).unwrap_or_default(),
        },
    )
    .await
    .map_err(db)?;
    tx.commit().await.map_err(db)?;
    Ok(token)
}

pub async fn revoke(store: &Store, name: &str) -> Result<(), String> {
    let now = Utc::now();
    let db = |e: sqlx::Error| format!("database error: {e}");
    let mut tx = store.write().await.map_err(db)?;
    if !tx.operator_revoke(name, now).await.map_err(db)? {
        return Err(format!("no active operator named '{name}'"));
    }
    tx.record(
        now,
        Record {
            actor: "cli",
            kind: "operator.revoked",
            subject: format!("operator:{name}"),
            summary: format!("operator {name} revoked"),
            data: serde_json::json!({ "name": name }),
        },
    )
    .await
    .map_err(db)?;
    tx.commit().await.map_err(db)?;
    Ok(())
}

pub async fn list(
    store: &Store,
) -> Result<Vec<(Operator, DateTime<Utc>, Option<DateTime<Utc>>)>, String> {
    store
        .operators()
        .await
        .map_err(|e| format!("database error: {e}"))
}
