//! Running a change: its one execution (capture, command or rollback command) and, once it ran,
//! the opening of its post-change verification.

use super::*;

/// Starts the command of a change that is `executing`, waits a moment so quick commands answer
/// with their outcome, and returns the change as it then stands.
pub(super) async fn start_and_wait(state: &AppState, change: Change) -> ServiceResult<Change> {
    let id = change.id;
    let task = tokio::spawn(execute(state.clone(), change));
    let _ = tokio::time::timeout(std::time::Duration::from_millis(1500), task).await;
    state
        .store
        .change(id)
        .await?
        .ok_or_else(|| ServiceError::not_found(format!("no change #{id}")))
}

/// Starts the command of a change that is `executing` in the background (the scheduler's start:
/// nobody waits for its answer).
pub(super) fn start(state: &AppState, change: Change) {
    tokio::spawn(execute(state.clone(), change));
}

async fn execute(state: AppState, change: Change) {
    let id = change.id;
    // While the command runs, this server's lease on it is renewed: other replicas take over
    // (and fail) an execution only once its server is gone (see `recovery.rs`).
    let renewing = tokio::spawn({
        let store = state.store.clone();
        async move {
            let every = crate::server::changes::recovery::RECOVERY_INTERVAL;
            loop {
                tokio::time::sleep(every).await;
                match store.execution_renew(id).await {
                    Ok(true) => {}
                    Ok(false) => return,
                    Err(e) => {
                        tracing::warn!(change = id, error = %e, "renewing the execution lease failed")
                    }
                }
            }
        }
    });
    let place = state.executions.place().await;
    // While it waited, its lease may have been lost and the change failed by another replica
    // (`recovery.rs`): the command must then not run under a record that says it did not.
    match state.store.execution_renew(id).await {
        Ok(true) => {
            if let Err(e) = execute_inner(&state, change).await {
                tracing::error!(change = id, error = %e, "recording the execution failed");
            }
        }
        Ok(false) => {
            tracing::warn!(
                change = id,
                "the execution was taken over while it waited; not run"
            )
        }
        Err(e) => tracing::error!(
            change = id,
            error = %e,
            "the execution's lease could not be renewed after its wait; not run (recovery fails it)"
        ),
    }
    drop(place);
    renewing.abort();
}

/// Places for the commands this server runs at once (`[server.quotas] commands_at_once`): the
/// next changes wait for one, still `executing`, their lease renewed. Without a bound, low-risk
/// requests (which run at once, even in a freeze) took every file descriptor, and the server
/// could accept no connection and start no command, an approved emergency one included.
pub struct Executions {
    places: std::sync::Arc<tokio::sync::Semaphore>,
    size: usize,
    waiting: std::sync::atomic::AtomicUsize,
}

impl Executions {
    pub fn new(size: usize) -> Executions {
        Executions {
            places: std::sync::Arc::new(tokio::sync::Semaphore::new(size)),
            size,
            waiting: Default::default(),
        }
    }

    /// Waits for a place; the command runs while it is held.
    async fn place(&self) -> tokio::sync::OwnedSemaphorePermit {
        use std::sync::atomic::Ordering::Relaxed;
        self.waiting.fetch_add(1, Relaxed);
        // The semaphore is never closed, so a place always comes.
        let place = self.places.clone().acquire_owned().await;
        self.waiting.fetch_sub(1, Relaxed);
        place.expect("the semaphore of executions is never closed")
    }

    /// (commands running, changes waiting for a place), for `/metrics`.
    pub fn load(&self) -> (usize, usize) {
        let running = self.size - self.places.available_permits();
        (
            running,
            self.waiting.load(std::sync::atomic::Ordering::Relaxed),
        )
    }
}

/// The record of a command that did not run to its end, with why.
pub(super) fn failure(why: String, clock: &crate::server::clock::Clock) -> ExecutionOutput {
    let now = clock.now();
    ExecutionOutput {
        exit_code: None,
        stdout: String::new(),
        stderr: why,
        truncated: false,
        simulated: false,
        started_at: now,
        finished_at: now,
    }
}

/// Runs what the change asks for: the action's command (after its capture command), or, for a
/// rollback, the rollback command with what was captured before the original ran.
async fn run_change(
    state: &AppState,
    change: &Change,
) -> ServiceResult<(ExecutionOutput, Option<String>)> {
    let clock = &state.clock;
    // Recorded, so a restart after a crash can find and stop what is left of the command.
    let track = Some(executor::Track {
        store: &state.store,
        change_id: change.id,
    });
    let Some(spec) = state.config.action(&change.action) else {
        return Ok((
            failure(
                format!("action {} is no longer in the catalog", change.action),
                clock,
            ),
            None,
        ));
    };
    if let Some(original) = change.rollback_of {
        let Some(argv) = &spec.rollback_command else {
            // No command at all: the simulator stands in for the rollback too.
            if spec.command.is_none() {
                let mut out = executor::simulated(spec, &change.target, &change.params, clock);
                out.stdout = format!(
                    "[simulator] rollback of change #{original}: {}\n{}",
                    spec.rollback, out.stdout
                );
                return Ok((out, None));
            }
            return Ok((
                failure(
                    format!("{} has no rollback_command: {}", spec.name, spec.rollback),
                    clock,
                ),
                None,
            ));
        };
        let mut params = change.params.clone();
        if let Some(c) = state.store.change(original).await?.and_then(|o| o.captured) {
            params.insert("captured".into(), c);
        }
        let argv = action::render(argv, &change.target, &params).unwrap_or_default();
        return Ok((
            executor::run_argv(&argv, spec.timeout_secs, clock, track).await,
            None,
        ));
    }
    let mut captured = None;
    if let Some(argv) = &spec.capture_command {
        let argv = action::render(argv, &change.target, &change.params).unwrap_or_default();
        let out = executor::run_argv(&argv, spec.timeout_secs, clock, track).await;
        if out.exit_code != Some(0) {
            return Ok((
                failure(
                    format!(
                        "the capture command failed, so the change was not run (its rollback \
                         would have nothing to restore): {}",
                        out.stderr.trim()
                    ),
                    clock,
                ),
                None,
            ));
        }
        let value = out.stdout.trim().to_string();
        // It becomes one argument of the rollback: the same shape as a parameter, or the change
        // does not run (a rollback that could not restore it would be worse than none).
        if let Err(why) = crate::domain::text::argument_shape(&value, 256) {
            return Ok((
                failure(
                    format!(
                        "the capture command printed {:?}, which cannot be passed to the rollback \
                         as one argument ({why}), so the change was not run",
                        value.chars().take(80).collect::<String>()
                    ),
                    clock,
                ),
                None,
            ));
        }
        captured = Some(value);
    }
    Ok((
        executor::run(spec, &change.target, &change.params, clock, track).await,
        captured,
    ))
}

async fn execute_inner(state: &AppState, change: Change) -> ServiceResult<()> {
    let (output, captured) = run_change(state, &change).await?;
    let ok = output.exit_code == Some(0);
    let to = if ok {
        ChangeState::Executed
    } else {
        ChangeState::Failed
    };
    let why = (!ok).then(|| match output.exit_code {
        Some(code) => format!("the command exited with status {code}"),
        None => output
            .stderr
            .lines()
            .next()
            .unwrap_or("the command failed")
            .to_string(),
    });
    let now = output.finished_at;
    let mut tx = state.store.write().await?;
    if !tx
        .execution_finish(change.id, to, &output, why.as_deref())
        .await?
    {
        return Ok(());
    }
    if let Some(c) = &captured {
        tx.change_set_captured(change.id, c).await?;
    }
    let done = tx.change(change.id).await?.unwrap_or(change);
    let what = match done.rollback_of {
        Some(orig) => format!("rollback of #{orig}: {} on {}", done.action, done.target),
        None => format!("{} on {}", done.action, done.target),
    };
    let summary = match &why {
        None => format!("change #{} executed: {what}", done.id),
        Some(w) => format!("change #{} failed: {what}: {w}", done.id),
    };
    let kind = if ok {
        "change.executed"
    } else {
        "change.failed"
    };
    record(&mut tx, now, "executor", kind, &done, summary).await?;
    let mut started = false;
    if ok && done.risk != Risk::Low {
        let checks = state.config.service(&done.target);
        let deadline = now + state.config.verification.duration();
        let v = tx.verification_insert(&done, now, deadline, checks).await?;
        let summary = format!(
            "verification of change #{} ({} on {}) started: until {}{}",
            done.id,
            done.action,
            done.target,
            v.deadline.format("%H:%M:%S UTC"),
            if checks.is_none() {
                ", no checks configured"
            } else {
                ""
            }
        );
        tx.record(
            now,
            Record {
                actor: "server",
                kind: "verification.started",
                subject: format!("verification:{}", v.id),
                summary,
                data: serde_json::to_value(&v).unwrap_or_default(),
            },
        )
        .await?;
        started = true;
    }
    commit(state, tx).await?;
    if started {
        state.verifier.notify_one();
    }
    if ok {
        state.metrics.executed.inc();
    } else {
        state.metrics.failed.inc();
    }
    Ok(())
}
