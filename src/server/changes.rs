//! The life of a change: requested, approved or denied, expired, refused, executed.
//!
//! Every step reads the policy context and writes the change, its audit entry and its event in
//! one `BEGIN IMMEDIATE` transaction, so a decision is always made on what is committed.

use crate::domain::action::{self, validate_target};
use crate::domain::api::{ChangeRequest, Preview};
use crate::domain::approval;
use crate::domain::approval::Approval;
use crate::domain::change::{Change, ChangeState, ExecutionOutput};
use crate::domain::operator::Operator;
use crate::domain::policy::{self, Decision, Outcome, PolicyInput};
use crate::domain::{ActionSpec, Freeze, Risk, Ticket};
use crate::server::AppState;
use crate::server::api::error::{ApiError, ApiResult, required_text};
use crate::server::executor;
use crate::server::store::batch::Job;
use crate::server::store::{NewChange, Record, Tx};
use chrono::{DateTime, Duration, Utc};
use sha2::{Digest, Sha256};
use sqlx::SqliteConnection;
use std::collections::BTreeMap;

/// A request that passed input checks.
struct Checked<'a> {
    spec: &'a ActionSpec,
    ticket: Ticket,
    target: String,
    params: BTreeMap<String, String>,
    reason: String,
}

/// Input checks; a preview may come before the reason is typed.
fn check<'a>(
    state: &'a AppState,
    req: &ChangeRequest,
    need_reason: bool,
) -> ApiResult<Checked<'a>> {
    let spec = state.config.action(&req.action).ok_or_else(|| {
        let names: Vec<&str> = state
            .config
            .actions
            .iter()
            .map(|a| a.name.as_str())
            .collect();
        ApiError::invalid(format!(
            "unknown action '{}': the catalog has {}",
            req.action.chars().take(64).collect::<String>(),
            names.join(", ")
        ))
    })?;
    let ticket = Ticket::parse(&req.ticket).map_err(ApiError::invalid)?;
    validate_target(&req.target).map_err(ApiError::invalid)?;
    let params = spec
        .validate_params(&req.params)
        .map_err(ApiError::invalid)?;
    let reason = if need_reason || !req.reason.trim().is_empty() {
        required_text("reason", &req.reason, 2000)?
    } else {
        String::new()
    };
    Ok(Checked {
        spec,
        ticket,
        target: req.target.clone(),
        params,
        reason,
    })
}

/// The policy decision for `requester` now, on what `conn` sees (inside the write
/// transaction when the decision is acted on).
async fn decide(
    state: &AppState,
    conn: &mut SqliteConnection,
    spec: &ActionSpec,
    ticket: &Ticket,
    requester: &Operator,
    now: DateTime<Utc>,
) -> ApiResult<Decision> {
    let (stored, pause, incident) = state.store.policy_context(conn, ticket.as_str()).await?;
    let mut freezes: Vec<Freeze> = state.config.configured_freezes();
    freezes.extend(stored);
    Ok(policy::decide(&PolicyInput {
        action: spec,
        ticket,
        requester,
        now,
        schedule: &state.config.windows,
        freezes: &freezes,
        pause: pause.as_ref(),
        incident: incident.as_ref(),
    }))
}

fn refusal_message(d: &Decision) -> String {
    d.reasons.join("; ")
}

pub async fn preview(
    state: &AppState,
    caller: &Operator,
    req: &ChangeRequest,
) -> ApiResult<Preview> {
    let c = check(state, req, false)?;
    // A read connection: a preview records nothing, so it never waits for the writer.
    let mut conn = state.store.read().await?;
    let d = decide(
        state,
        &mut conn,
        c.spec,
        &c.ticket,
        caller,
        state.clock.now(),
    )
    .await?;
    Ok(Preview {
        decision: d.decision,
        reasons: d.reasons,
        approvals_required: d.approvals_required,
        warnings: d.warnings,
    })
}

/// What an Idempotency-Key stands for: the whole request (Stripe's rule), so a retry with the
/// same key and a different body, even only another reason, is refused instead of answered with
/// the first change.
fn fingerprint(req: &ChangeRequest) -> String {
    hex::encode(Sha256::digest(serde_json::to_vec(req).unwrap_or_default()))
}

/// Outcome of a create: the change, and whether it is a replay of an earlier request.
pub struct Created {
    pub change: Change,
    pub replayed: bool,
}

pub async fn create(
    state: &AppState,
    caller: &Operator,
    req: &ChangeRequest,
    idempotency_key: Option<&str>,
) -> ApiResult<Created> {
    let c = check(state, req, true)?;
    let fp = fingerprint(req);
    if let Some(key) = idempotency_key
        && let Some(done) = replay(state, caller, key, &fp).await?
    {
        return Ok(done);
    }
    // The decision and the writes run as one job of a shared commit (group commit).
    let job_state = state.clone();
    let requester = caller.clone();
    let spec = c.spec.clone();
    let (ticket, target, params, reason) = (
        c.ticket.clone(),
        c.target.clone(),
        c.params.clone(),
        c.reason.clone(),
    );
    let key = idempotency_key.map(str::to_string);
    let fp_job = fp.clone();
    let (out_tx, out_rx) = tokio::sync::oneshot::channel::<ApiResult<(Change, bool)>>();
    let job: Job = Box::new(move |tx: &mut Tx| {
        Box::pin(async move {
            let state = &job_state;
            let now = state.clock.now();
            let d = match decide(state, tx.conn(), &spec, &ticket, &requester, now).await {
                Ok(d) => d,
                Err(e) => {
                    let _ = out_tx.send(Err(e));
                    return Ok(());
                }
            };
            if d.decision == Outcome::Blocked {
                let detail = serde_json::json!({
                    "action": spec.name, "ticket": ticket.as_str(), "target": target,
                    "params": params, "rule": d.blocked_by, "reasons": d.reasons,
                });
                tx.audit(now, &requester.name, "change.blocked", "change:-", &detail)
                    .await?;
                let _ = out_tx.send(Err(ApiError::refused(refusal_message(&d))));
                return Ok(());
            }
            let run_now = d.decision == Outcome::Execute;
            let new = NewChange {
                state: initial_state(run_now),
                action: &spec.name,
                risk: spec.risk,
                ticket: ticket.as_str(),
                target: &target,
                params: &params,
                reason: &reason,
                requester: &requester,
                now,
                expires_at: now + Duration::minutes(state.config.server.approval_ttl_minutes),
                requirements: &d.approvals_required,
                warnings: &d.warnings,
                idempotency_key: key.as_deref(),
                fingerprint: Some(&fp_job),
                rollback_of: None,
                emergency: d.emergency.as_deref(),
            };
            let change = match tx.change_insert(new).await {
                Ok(c) => c,
                // Two retries with one key raced; the first one's change is the answer.
                Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                    let _ = out_tx.send(Err(ApiError::conflict(IDEMPOTENCY_RACE)));
                    return Ok(());
                }
                Err(e) => return Err(e),
            };
            if run_now {
                tx.execution_claim(change.id, now).await?;
            }
            let summary = format!(
                "{} requested {}{} on {} ({}){}",
                requester.name,
                emergency_mark(&d),
                spec.name,
                target,
                ticket,
                outlook(run_now, &d)
            );
            record(
                tx,
                now,
                &requester.name,
                "change.requested",
                &change,
                summary,
            )
            .await
            .map_err(|e| sqlx::Error::Protocol(e.message))?;
            let _ = out_tx.send(Ok((change, run_now)));
            Ok(())
        })
    });
    let committed = state.batcher.run(job).await;
    let outcome = out_rx.await.ok();
    match (committed, outcome) {
        (Ok(events), Some(Ok((change, run_now)))) => {
            if events {
                state.events.wake();
            }
            state.metrics.changes_requested.inc();
            let change = if run_now {
                start_and_wait(state, change).await?
            } else {
                change
            };
            Ok(Created {
                change,
                replayed: false,
            })
        }
        (Ok(events), Some(Err(e))) => {
            if events {
                state.events.wake();
            }
            if e.message == IDEMPOTENCY_RACE {
                let key = idempotency_key.unwrap_or_default();
                return replay(state, caller, key, &fp)
                    .await?
                    .ok_or_else(|| ApiError::conflict(IDEMPOTENCY_RACE));
            }
            Err(e)
        }
        (committed, _) => {
            let why = committed
                .err()
                .unwrap_or_else(|| "the job ended without an answer".into());
            tracing::error!(error = %why, "recording a change failed");
            Err(ApiError::new(
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the server could not record the change in its database; retry with the same Idempotency-Key",
            ))
        }
    }
}

const IDEMPOTENCY_RACE: &str = "a concurrent request used this Idempotency-Key";

/// A new change runs at once, or waits for its approvals.
fn initial_state(run_now: bool) -> ChangeState {
    if run_now {
        ChangeState::Executing
    } else {
        ChangeState::PendingApproval
    }
}

/// "EMERGENCY " before the action of an activity line when the change takes the emergency path,
/// so the audit and the dashboard show it as such.
fn emergency_mark(d: &Decision) -> &'static str {
    if d.emergency.is_some() {
        "EMERGENCY "
    } else {
        ""
    }
}

/// ": runs now" or ": needs L2+ approval and …", for an activity line.
fn outlook(run_now: bool, d: &Decision) -> String {
    if run_now {
        ": runs now".to_string()
    } else {
        let needs: Vec<String> = d.approvals_required.iter().map(|r| r.describe()).collect();
        format!(": needs {}", needs.join(" and "))
    }
}

/// Records a new change's `change.requested`, commits, and starts it if it runs now.
async fn announce(
    state: &AppState,
    mut tx: Tx,
    now: DateTime<Utc>,
    caller: &Operator,
    change: Change,
    run_now: bool,
    summary: String,
) -> ApiResult<Change> {
    record(
        &mut tx,
        now,
        &caller.name,
        "change.requested",
        &change,
        summary,
    )
    .await?;
    commit(state, tx).await?;
    if run_now {
        start_and_wait(state, change).await
    } else {
        Ok(change)
    }
}

async fn replay(
    state: &AppState,
    caller: &Operator,
    key: &str,
    fp: &str,
) -> ApiResult<Option<Created>> {
    match state
        .store
        .change_by_idempotency_key(&caller.name, key)
        .await?
    {
        Some((change, stored)) if stored.as_deref() == Some(fp) => Ok(Some(Created {
            change,
            replayed: true,
        })),
        Some((change, _)) => Err(ApiError::invalid(format!(
            "Idempotency-Key '{key}' was already used for change #{} with a different request: \
             use a new key for a new request",
            change.id
        ))),
        None => Ok(None),
    }
}

pub async fn approve(
    state: &AppState,
    caller: &Operator,
    id: i64,
    comment: Option<String>,
) -> ApiResult<Change> {
    let comment = match comment.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(c) => Some(required_text("comment", c, 2000)?),
    };
    let now = state.clock.now();
    let (mut tx, change) = open_pending(state, id, now).await?;
    approval::may_approve(
        &change.approvals_required,
        &change.approvals,
        &change.requested_by,
        caller,
    )
    .map_err(|r| match r {
        approval::ApprovalRefusal::AlreadyApproved => ApiError::conflict(r.message()),
        _ => ApiError::forbidden(r.message()),
    })?;
    let approval = Approval {
        approver: caller.name.clone(),
        level: caller.level,
        comment,
        at: now,
    };
    tx.approval_insert(id, &approval).await?;
    let mut approvals = change.approvals.clone();
    approvals.push(approval);

    // The policy again, as of now: a window may have closed or a freeze begun since the request.
    let spec = state.config.action(&change.action).ok_or_else(|| {
        ApiError::conflict(format!(
            "action {} is no longer in the catalog",
            change.action
        ))
    })?;
    let ticket = Ticket::parse(&change.ticket).map_err(ApiError::invalid)?;
    let requester = Operator {
        name: change.requested_by.clone(),
        level: change.requested_level,
    };
    let mut d = decide(state, tx.conn(), spec, &ticket, &requester, now).await?;
    if change.rollback_of.is_some() && d.decision != Outcome::Blocked {
        require_rollback_level(spec, &requester, &mut d);
    }
    if d.decision == Outcome::Blocked {
        let why = refusal_message(&d);
        tx.change_transition(
            id,
            ChangeState::PendingApproval,
            ChangeState::Refused,
            now,
            Some(&why),
            Some(&caller.name),
        )
        .await?;
        let refused = tx.change(id).await?.unwrap_or(change);
        let summary = format!(
            "change #{id} refused when {} approved it: {}",
            caller.name,
            d.reasons.join("; ")
        );
        record(
            &mut tx,
            now,
            &caller.name,
            "change.refused",
            &refused,
            summary,
        )
        .await?;
        commit(state, tx).await?;
        return Err(ApiError::refused(format!(
            "your approval was recorded, but change #{id} was refused: the policy no longer allows \
             it ({})",
            d.reasons.join("; ")
        )));
    }
    tx.change_set_requirements(
        id,
        &d.approvals_required,
        &d.warnings,
        d.emergency.as_deref(),
    )
    .await?;
    let missing = approval::unmet(&d.approvals_required, &approvals, &change.requested_by);
    let run_now = missing.is_empty();
    if run_now {
        let moved = tx
            .change_transition(
                id,
                ChangeState::PendingApproval,
                ChangeState::Executing,
                now,
                None,
                Some(&caller.name),
            )
            .await?;
        if !moved || !tx.execution_claim(id, now).await? {
            return Err(ApiError::conflict(format!(
                "change #{id} was decided by someone else first"
            )));
        }
    }
    let updated = tx.change(id).await?.unwrap_or(change);
    let summary = if run_now {
        format!(
            "{} approved change #{id} ({} on {}): runs now",
            caller.name, updated.action, updated.target
        )
    } else {
        let needs: Vec<String> = missing.iter().map(|r| r.describe()).collect();
        format!(
            "{} approved change #{id}; it still needs {}",
            caller.name,
            needs.join(" and ")
        )
    };
    record(
        &mut tx,
        now,
        &caller.name,
        "change.approved",
        &updated,
        summary,
    )
    .await?;
    commit(state, tx).await?;
    state.metrics.approvals.inc();
    if run_now {
        start_and_wait(state, updated).await
    } else {
        Ok(updated)
    }
}

pub async fn deny(state: &AppState, caller: &Operator, id: i64, reason: &str) -> ApiResult<Change> {
    let reason = required_text("reason", reason, 2000)?;
    let now = state.clock.now();
    let (mut tx, change) = open_pending(state, id, now).await?;
    // The requester may withdraw; otherwise only someone who could approve may deny.
    if caller.name != change.requested_by {
        let missing = approval::unmet(
            &change.approvals_required,
            &change.approvals,
            &change.requested_by,
        );
        if !missing.iter().any(|r| r.can_be_met_by(caller)) {
            let needs: Vec<String> = missing.iter().map(|r| r.describe()).collect();
            return Err(ApiError::forbidden(format!(
                "only an operator who could approve may deny this change (it needs {}); you are {} {}",
                needs.join(" and "),
                caller.name,
                caller.level
            )));
        }
    }
    if !tx
        .change_transition(
            id,
            ChangeState::PendingApproval,
            ChangeState::Denied,
            now,
            Some(&reason),
            Some(&caller.name),
        )
        .await?
    {
        return Err(ApiError::conflict(format!(
            "change #{id} was decided by someone else first"
        )));
    }
    let denied = tx.change(id).await?.unwrap_or(change);
    let summary = format!(
        "{} denied change #{id} ({} on {}): {reason}",
        caller.name, denied.action, denied.target
    );
    record(
        &mut tx,
        now,
        &caller.name,
        "change.denied",
        &denied,
        summary,
    )
    .await?;
    commit(state, tx).await?;
    Ok(denied)
}

/// Opens the write transaction for deciding change `id`, which must still be pending. An expiry
/// found on the way is committed even though the request then fails.
async fn open_pending(state: &AppState, id: i64, now: DateTime<Utc>) -> ApiResult<(Tx, Change)> {
    let mut tx = state.store.write().await?;
    match pending(&mut tx, id, now).await? {
        Ok(c) => Ok((tx, c)),
        Err(e) => {
            commit(state, tx).await?;
            Err(e)
        }
    }
}

/// Loads a change that must still be pending. An expired one is marked expired (committed) and
/// reported as a conflict.
async fn pending(tx: &mut Tx, id: i64, now: DateTime<Utc>) -> ApiResult<ApiResult<Change>> {
    let change = tx
        .change(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no change #{id}")))?;
    if change.state != ChangeState::PendingApproval {
        let code = if change.state == ChangeState::Expired {
            "expired"
        } else {
            "conflict"
        };
        return Ok(Err(ApiError::new(
            axum::http::StatusCode::CONFLICT,
            code,
            format!(
                "change #{id} is already {}{}: it can no longer be approved or denied",
                change.state,
                change
                    .decided_by
                    .as_ref()
                    .map(|b| format!(" (by {b})"))
                    .unwrap_or_default()
            ),
        )));
    }
    if change.expires_at <= now {
        expire_one(tx, id, now).await?;
        return Ok(Err(ApiError::new(
            axum::http::StatusCode::CONFLICT,
            "expired",
            format!(
                "change #{id} expired unapproved at {}: request it again",
                change.expires_at.format("%Y-%m-%d %H:%M UTC")
            ),
        )));
    }
    Ok(Ok(change))
}

async fn expire_one(tx: &mut Tx, id: i64, now: DateTime<Utc>) -> ApiResult<bool> {
    let why = "no decision within the approval time limit";
    if !tx
        .change_transition(
            id,
            ChangeState::PendingApproval,
            ChangeState::Expired,
            now,
            Some(why),
            None,
        )
        .await?
    {
        return Ok(false);
    }
    if let Some(c) = tx.change(id).await? {
        let summary = format!(
            "change #{id} ({} on {}) expired unapproved",
            c.action, c.target
        );
        record(tx, now, "server", "change.expired", &c, summary).await?;
    }
    Ok(true)
}

/// Expires every pending change past its time limit. Runs periodically.
pub async fn expire_due(state: &AppState) -> ApiResult<usize> {
    let now = state.clock.now();
    let ids = state.store.change_ids_expired(now).await?;
    let mut n = 0;
    for id in ids {
        let mut tx = state.store.write().await?;
        if expire_one(&mut tx, id, now).await? {
            n += 1;
        }
        commit(state, tx).await?;
    }
    Ok(n)
}

/// After a restart, a change left `executing` may or may not have run: it is never started
/// again, but whatever is left of its command is stopped and the change marked failed, saying
/// what became of the command, so an operator checks the target.
pub async fn recover_interrupted(state: &AppState) -> ApiResult<usize> {
    let ids = state.store.change_ids_executing().await?;
    for &id in &ids {
        let process = state.store.execution_process(id).await?;
        let (why, maybe_running) = executor::settle_interrupted(process.as_ref()).await;
        let now = state.clock.now();
        let output = ExecutionOutput {
            exit_code: None,
            stdout: String::new(),
            stderr: why,
            truncated: false,
            simulated: false,
            started_at: now,
            finished_at: now,
        };
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

/// Starts the command of a change that is `executing`, waits a moment so quick commands answer
/// with their outcome, and returns the change as it then stands.
async fn start_and_wait(state: &AppState, change: Change) -> ApiResult<Change> {
    let id = change.id;
    let task = tokio::spawn(execute(state.clone(), change));
    let _ = tokio::time::timeout(std::time::Duration::from_millis(1500), task).await;
    state
        .store
        .change(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no change #{id}")))
}

async fn execute(state: AppState, change: Change) {
    let id = change.id;
    if let Err(e) = execute_inner(&state, change).await {
        tracing::error!(change = id, error = %e.message, "recording the execution failed");
    }
}

fn failure(why: String, clock: &crate::server::clock::Clock) -> ExecutionOutput {
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
) -> ApiResult<(ExecutionOutput, Option<String>)> {
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
        let mut tx = state.store.write().await?;
        let captured = tx.change_captured(original).await?;
        drop(tx);
        if let Some(c) = captured {
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
        captured = Some(out.stdout.trim().to_string());
    }
    Ok((
        executor::run(spec, &change.target, &change.params, clock, track).await,
        captured,
    ))
}

async fn execute_inner(state: &AppState, change: Change) -> ApiResult<()> {
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

/// A rollback may need more than the action itself (a failover reversal is L3 only): a
/// requester below the action's `rollback_level` needs an approval from that level. Applied
/// when the rollback is requested and again whenever the policy is re-checked.
fn require_rollback_level(spec: &ActionSpec, requester: &Operator, d: &mut Decision) {
    let Some(min) = spec.rollback_level else {
        return;
    };
    let covered = d
        .approvals_required
        .iter()
        .any(|r| matches!(r, approval::Requirement::Level { min: m } if *m >= min));
    if requester.level >= min || covered {
        return;
    }
    d.approvals_required
        .retain(|r| !matches!(r, approval::Requirement::Level { .. }));
    d.approvals_required
        .push(approval::Requirement::Level { min });
    d.reasons.push(format!(
        "the rollback of {} needs {min}: it waits for an {min} approval",
        spec.name
    ));
    d.decision = Outcome::NeedsApproval;
}

/// The 409 of a second rollback: one rollback per change.
fn already_rolled_back(id: i64, existing: i64, st: ChangeState) -> ApiError {
    ApiError::conflict(format!(
        "change #{id} already has a rollback: change #{existing} ({st}); a change is rolled \
         back once (a new rollback can be requested only if that one is denied, expires or is \
         refused)"
    ))
}

/// Requests the rollback of an executed change: a linked change running the action's
/// `rollback_command`, through the same policy (and the action's `rollback_level`).
pub async fn rollback(
    state: &AppState,
    caller: &Operator,
    id: i64,
    req: &crate::domain::api::RollbackRequest,
) -> ApiResult<Created> {
    let original = state
        .store
        .change(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no change #{id}")))?;
    if original.rollback_of.is_some() {
        return Err(ApiError::conflict(format!(
            "change #{id} is itself a rollback: roll back the original change, or request a new change"
        )));
    }
    if original.state != ChangeState::Executed {
        return Err(ApiError::conflict(format!(
            "change #{id} is {}: only an executed change can be rolled back",
            original.state
        )));
    }
    let spec = state.config.action(&original.action).ok_or_else(|| {
        ApiError::conflict(format!(
            "action {} is no longer in the catalog",
            original.action
        ))
    })?;
    if !spec.can_roll_back() {
        return Err(ApiError::conflict(format!(
            "the rollback of {} is manual: {}",
            spec.name, spec.rollback
        )));
    }
    let reason = required_text("reason", &req.reason, 2000)?;
    let ticket_text = req
        .ticket
        .clone()
        .unwrap_or_else(|| original.ticket.clone());
    let ticket = Ticket::parse(&ticket_text).map_err(ApiError::invalid)?;
    let now = state.clock.now();
    let mut tx = state.store.write().await?;
    if let Some((existing, st)) = tx.rollback_live(id).await? {
        return Err(already_rolled_back(id, existing, st));
    }
    let mut d = decide(state, tx.conn(), spec, &ticket, caller, now).await?;
    if d.decision == Outcome::Blocked {
        let message = refusal_message(&d);
        let detail = serde_json::json!({ "rollback_of": id, "ticket": ticket.as_str(), "reasons": d.reasons });
        tx.audit(
            now,
            &caller.name,
            "change.blocked",
            &format!("change:{id}"),
            &detail,
        )
        .await?;
        tx.commit().await?;
        return Err(ApiError::refused(message));
    }
    require_rollback_level(spec, caller, &mut d);
    let run_now = d.decision == Outcome::Execute;
    let reason = format!("rollback of #{id}: {reason}");
    let new = NewChange {
        state: initial_state(run_now),
        action: &spec.name,
        risk: spec.risk,
        ticket: ticket.as_str(),
        target: &original.target,
        params: &original.params,
        reason: &reason,
        requester: caller,
        now,
        expires_at: now + Duration::minutes(state.config.server.approval_ttl_minutes),
        requirements: &d.approvals_required,
        warnings: &d.warnings,
        idempotency_key: None,
        fingerprint: None,
        rollback_of: Some(id),
        emergency: d.emergency.as_deref(),
    };
    let change = match tx.change_insert(new).await {
        Ok(c) => c,
        // Only reachable if another writer (another process on this database) slipped a
        // rollback in: the unique index settles it.
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
            drop(tx);
            let mut tx = state.store.write().await?;
            let existing = tx.rollback_live(id).await?;
            return Err(match existing {
                Some((existing, st)) => already_rolled_back(id, existing, st),
                None => ApiError::conflict(format!(
                    "change #{id} was being rolled back by another request at the same moment"
                )),
            });
        }
        Err(e) => return Err(e.into()),
    };
    if run_now {
        tx.execution_claim(change.id, now).await?;
    }
    let summary = format!(
        "{} requested the {}rollback of change #{id} ({} on {}){}",
        caller.name,
        emergency_mark(&d),
        spec.name,
        original.target,
        outlook(run_now, &d)
    );
    let change = announce(state, tx, now, caller, change, run_now, summary).await?;
    Ok(Created {
        change,
        replayed: false,
    })
}

async fn record(
    tx: &mut Tx,
    now: DateTime<Utc>,
    actor: &str,
    kind: &str,
    change: &Change,
    summary: String,
) -> ApiResult<()> {
    tx.record(
        now,
        Record {
            actor,
            kind,
            subject: format!("change:{}", change.id),
            summary,
            data: serde_json::to_value(change).unwrap_or_default(),
        },
    )
    .await?;
    Ok(())
}

/// Commits and wakes the event streams.
pub async fn commit(state: &AppState, tx: Tx) -> ApiResult<()> {
    if tx.commit().await? {
        state.events.wake();
    }
    Ok(())
}
