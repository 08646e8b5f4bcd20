//! After a restart: changes left `executing` are failed, never run again, and the record says
//! what became of their commands (`executor/process.rs`).

use super::*;

/// After a restart, a change left `executing` may or may not have run: it is never started
/// again, but whatever is left of its command is stopped and the change marked failed, saying
/// what became of the command, so an operator checks the target.
pub async fn recover_interrupted(state: &AppState) -> ServiceResult<usize> {
    let ids = state.store.change_ids_executing().await?;
    for &id in &ids {
        let process = state.store.execution_process(id).await?;
        let (why, maybe_running) = executor::settle_interrupted(process.as_ref()).await;
        let output = failure(why, &state.clock);
        let now = output.finished_at;
        let reason = if maybe_running {
            "interrupted by a server restart; the command may still be running"
        } else {
            "interrupted by a server restart"
        };
        let mut tx = state.store.write().await?;
        if tx
            .execution_finish(id, ChangeState::Failed, &output, Some(reason))
            .await?
            && let Some(c) = tx.change(id).await?
        {
            let summary = format!("change #{id} ({} on {}) was {reason}", c.action, c.target);
            record(&mut tx, now, "server", "change.failed", &c, summary).await?;
        }
        commit(state, tx).await?;
    }
    Ok(ids.len())
}
