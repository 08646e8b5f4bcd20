//! Governance of the calendar: freezes announced and removed, changes paused and resumed. Who
//! may do each is the domain's rule (`Governance` in `domain/window.rs`), which the dashboard
//! asks too; the handlers in `api/windows.rs` only translate HTTP.

use crate::domain::api::{FreezeRequest, PauseRequest};
use crate::domain::operator::Operator;
use crate::domain::window::Governance;
use crate::domain::{Freeze, Pause};
use crate::server::AppState;
use crate::server::changes::commit;
use crate::server::error::{ServiceError, ServiceResult, required_text};
use crate::server::store::{Record, Tx};
use chrono::{DateTime, Utc};

fn allowed(action: Governance, op: &Operator) -> ServiceResult<()> {
    action.allowed(op.level).map_err(ServiceError::Forbidden)
}

pub async fn announce_freeze(
    state: &AppState,
    op: &Operator,
    req: &FreezeRequest,
) -> ServiceResult<Freeze> {
    allowed(Governance::AnnounceFreeze, op)?;
    let name = required_text("name", &req.name, 120)?;
    if req.ends_at <= req.starts_at {
        return Err(ServiceError::invalid("ends_at must be after starts_at"));
    }
    let now = state.clock.now();
    let mut tx = state.store.write().await?;
    let f = tx
        .freeze_insert(&name, req.starts_at, req.ends_at, &op.name, now)
        .await?;
    let summary = format!(
        "{} announced freeze '{}' from {} to {}",
        op.name,
        f.name,
        f.starts_at.format("%Y-%m-%d %H:%M"),
        f.ends_at.format("%Y-%m-%d %H:%M UTC")
    );
    tx.record(
        now,
        Record {
            actor: &op.name,
            kind: "freeze.created",
            subject: format!("freeze:{}", f.id.unwrap_or_default()),
            summary,
            data: serde_json::to_value(&f).unwrap_or_default(),
        },
    )
    .await?;
    commit(state, tx).await?;
    Ok(f)
}

/// Freezes from the configuration stay: only those announced over the API can be removed.
pub async fn remove_freeze(state: &AppState, op: &Operator, id: i64) -> ServiceResult<()> {
    allowed(Governance::RemoveFreeze, op)?;
    let now = state.clock.now();
    let mut tx = state.store.write().await?;
    let f = tx.freeze_delete(id, now).await?.ok_or_else(|| {
        ServiceError::not_found(format!(
            "no freeze #{id} (freezes from the server configuration are changed there)"
        ))
    })?;
    tx.record(
        now,
        Record {
            actor: &op.name,
            kind: "freeze.deleted",
            subject: format!("freeze:{id}"),
            summary: format!("{} removed freeze '{}'", op.name, f.name),
            data: serde_json::to_value(&f).unwrap_or_default(),
        },
    )
    .await?;
    commit(state, tx).await
}

pub async fn pause(state: &AppState, op: &Operator, req: &PauseRequest) -> ServiceResult<Pause> {
    allowed(Governance::Pause, op)?;
    let reason = required_text("reason", &req.reason, 500)?;
    let now = state.clock.now();
    let mut tx = state.store.write().await?;
    if let Some(p) = tx.pause().await? {
        return Err(ServiceError::conflict(format!(
            "changes are already paused by {} since {}",
            p.paused_by,
            p.paused_at.format("%H:%M UTC")
        )));
    }
    let p = start_pause(&mut tx, &reason, &op.name, now).await?;
    commit(state, tx).await?;
    Ok(p)
}

/// Pauses changes inside `tx` and records it: a pause asked for, or the one an escalation
/// starts (`verifications.rs`).
pub(crate) async fn start_pause(
    tx: &mut Tx,
    reason: &str,
    by: &str,
    now: DateTime<Utc>,
) -> Result<Pause, sqlx::Error> {
    let p = tx.pause_insert(reason, by, now).await?;
    tx.record(
        now,
        Record {
            actor: by,
            kind: "pause.started",
            subject: "pause".into(),
            summary: format!("{by} paused all changes: {reason}"),
            data: serde_json::to_value(&p).unwrap_or_default(),
        },
    )
    .await?;
    Ok(p)
}

pub async fn resume(state: &AppState, op: &Operator) -> ServiceResult<()> {
    allowed(Governance::Resume, op)?;
    let now = state.clock.now();
    let mut tx = state.store.write().await?;
    if !tx.pause_end(&op.name, now).await? {
        return Err(ServiceError::conflict("changes are not paused"));
    }
    tx.record(
        now,
        Record {
            actor: &op.name,
            kind: "pause.ended",
            subject: "pause".into(),
            summary: format!("{} resumed changes", op.name),
            data: serde_json::json!({ "resumed_by": op.name }),
        },
    )
    .await?;
    commit(state, tx).await
}
