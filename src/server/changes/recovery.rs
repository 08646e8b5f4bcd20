//! Changes left `executing` by a server that died: failed, never run again, and the record says
//! what became of their commands (`executor/process.rs`).
//!
//! Every server runs this at start and then every few seconds, because with several replicas
//! the server that died is not always the one that restarts. An execution is taken over only
//! when its server is certainly gone: its lease ran out (`executions.lease_until`, renewed while
//! the command runs), or it ran on this machine and its process no longer exists. The take-over
//! is a conditional update in the write transaction, so one server records it, once.

use super::*;
use crate::server::store::{EXECUTION_LEASE_MS, ExecutionLease, lease_now};

/// How often a server looks for executions whose server is gone.
pub const RECOVERY_INTERVAL: std::time::Duration =
    std::time::Duration::from_millis(EXECUTION_LEASE_MS as u64 / 3);

fn orphaned(lease: &ExecutionLease, now: i64) -> bool {
    match (&lease.owner, lease.lease_until) {
        // Recorded before leases existed, or never claimed: no server holds it.
        (None, _) | (_, None) => true,
        (Some(owner), Some(until)) => until < now || executor::server_is_gone(owner),
    }
}

/// Fails the executions whose server is gone, saying what became of their commands; returns
/// how many this server took over.
pub async fn recover_interrupted(state: &AppState) -> ServiceResult<usize> {
    let now = lease_now();
    let leases = state.store.executions_of_others().await?;
    let mut recovered = 0;
    for lease in leases.iter().filter(|l| orphaned(l, now)) {
        let id = lease.change_id;
        // Claimed first, so the command's leftovers are settled by one server only.
        let mut tx = state.store.write().await?;
        if !tx.execution_take_over(lease).await? {
            continue;
        }
        commit(state, tx).await?;
        let process = state.store.execution_process(id).await?;
        let (why, maybe_running) = executor::settle_interrupted(process.as_ref()).await;
        let output = failure(why, &state.clock);
        let now = output.finished_at;
        let reason = if maybe_running {
            "interrupted: its server stopped; the command may still be running"
        } else {
            "interrupted: its server stopped"
        };
        let mut tx = state.store.write().await?;
        if tx
            .execution_finish(id, ChangeState::Failed, &output, Some(reason))
            .await?
            && let Some(c) = tx.change(id).await?
        {
            let summary = format!("change #{id} ({} on {}) was {reason}", c.action, c.target);
            record(&mut tx, now, "server", "change.failed", &c, summary).await?;
            recovered += 1;
        }
        commit(state, tx).await?;
    }
    Ok(recovered)
}

/// Runs [`recover_interrupted`] every [`RECOVERY_INTERVAL`] until the server stops.
pub async fn recover_periodically(state: AppState) {
    let mut tick = tokio::time::interval(RECOVERY_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match recover_interrupted(&state).await {
            Ok(0) => {}
            Ok(n) => tracing::warn!(
                count = n,
                "changes interrupted by a stopped server marked failed"
            ),
            Err(e) => tracing::warn!(error = %e, "recovering interrupted changes failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_expired_lease_or_a_dead_server_is_orphaned() {
        let lease = |owner: Option<&str>, until: Option<i64>| ExecutionLease {
            change_id: 1,
            owner: owner.map(str::to_string),
            lease_until: until,
        };
        // Another machine's server: only the lease's end tells.
        let remote = "another-boot/4242/99";
        assert!(!orphaned(&lease(Some(remote), Some(2_000)), 1_000));
        assert!(orphaned(&lease(Some(remote), Some(999)), 1_000));
        // This very process is alive, whatever its lease says.
        let me = executor::server_identity();
        assert!(!orphaned(&lease(Some(&me), Some(2_000)), 1_000));
        // No lease at all: nobody holds it.
        assert!(orphaned(&lease(None, None), 1_000));
    }
}
