//! Requesting a change: input checks, the preview and the rollback of an executed change (the
//! create itself, in a shared group commit, is `create.rs`).

use super::create::Created;
use super::schedule::{self as sched};
use super::*;
use crate::domain::policy::Rule;
use crate::domain::schedule::RunAt;

/// A request that passed input checks.
pub(super) struct Checked<'a> {
    pub(super) spec: &'a ActionSpec,
    pub(super) ticket: Ticket,
    pub(super) target: String,
    pub(super) params: BTreeMap<String, String>,
    pub(super) reason: String,
    pub(super) run_at: Option<RunAt>,
}

/// Input checks; a preview may come before the reason is typed.
pub(super) fn check<'a>(
    state: &'a AppState,
    req: &ChangeRequest,
    need_reason: bool,
) -> ServiceResult<Checked<'a>> {
    let spec = state.config.action(&req.action).ok_or_else(|| {
        let names: Vec<&str> = state
            .config
            .actions
            .iter()
            .map(|a| a.name.as_str())
            .collect();
        ServiceError::invalid(format!(
            "unknown action '{}': the catalog has {}",
            req.action.chars().take(64).collect::<String>(),
            names.join(", ")
        ))
    })?;
    let ticket = Ticket::parse(&req.ticket).map_err(ServiceError::invalid)?;
    validate_target(&req.target).map_err(ServiceError::invalid)?;
    let params = spec
        .validate_params(&req.params)
        .map_err(ServiceError::invalid)?;
    let reason = if need_reason || !req.reason.trim().is_empty() {
        required_text("reason", &req.reason, 2000)?
    } else {
        String::new()
    };
    let run_at = req
        .run_at
        .as_deref()
        .map(RunAt::parse)
        .transpose()
        .map_err(ServiceError::invalid)?;
    Ok(Checked {
        spec,
        ticket,
        target: req.target.clone(),
        params,
        reason,
        run_at,
    })
}

pub async fn preview(
    state: &AppState,
    caller: &Operator,
    req: &ChangeRequest,
) -> ServiceResult<Preview> {
    crate::server::error::may(crate::domain::Act::Preview, caller)?;
    let c = check(state, req, false)?;
    let now = state.clock.now();
    // A read connection: a preview records nothing, so it never waits for the writer.
    let mut conn = state.store.read().await?;
    let run_at = sched::resolve_run_at(state, &mut conn, c.spec, c.run_at, now).await?;
    // A scheduled change is judged as of its time (and again when that comes).
    let d = decide(
        state,
        &mut conn,
        c.spec,
        &c.ticket,
        caller,
        run_at.unwrap_or(now),
        None,
    )
    .await?;
    sched::check_schedulable(run_at, &c.ticket, &d)?;
    let mut preview = Preview {
        decision: d.decision,
        reasons: d.reasons.clone(),
        approvals_required: d.approvals_required.clone(),
        warnings: d.warnings.clone(),
        run_at,
        next_window: None,
        conflicts: Vec::new(),
    };
    if d.decision == Outcome::Blocked {
        // Refused only by the window: say when the next usable one opens.
        if run_at.is_none() && d.blocked_by == Some(Rule::Window) {
            preview.next_window = sched::next_window(state, &mut conn, c.spec, now).await?;
            if let Some(w) = &preview.next_window {
                preview.reasons.push(format!(
                    "run_at: \"{}\" would schedule it for the {} window opening {}",
                    crate::domain::schedule::NEXT_WINDOW,
                    w.kind,
                    w.opens_at.format("%a %Y-%m-%d %H:%M UTC")
                ));
            }
        }
        return Ok(preview);
    }
    drop(conn);
    let mine = sched::period(state, run_at, &d, now);
    let live = state
        .store
        .changes_live_on(&c.target, &mine, state.config.verification.duration())
        .await?;
    preview.conflicts = sched::conflicts_among(state, c.spec, mine, &live, now);
    if let Some(refusal) = sched::blocked_by_conflicts(state, &preview.conflicts) {
        preview.decision = Outcome::Blocked;
        preview.reasons.push(refusal);
    }
    Ok(preview)
}

/// The 409 of a second rollback: one rollback per change.
fn already_rolled_back(id: i64, existing: i64, st: ChangeState) -> ServiceError {
    ServiceError::conflict(format!(
        "change #{id} already has a rollback: change #{existing} ({st}); a change is rolled \
         back once (a new rollback can be requested only if that one is denied, expires or is \
         refused)"
    ))
}

/// The lowest level whose own request of `spec`'s rollback runs without waiting for approval,
/// by the process's approval matrix and the action's `rollback_level`; `None` when the
/// server's `[approvals.<risk>]` rule makes every request wait.
fn runs_unapproved_from(state: &AppState, spec: &ActionSpec) -> Option<crate::domain::Level> {
    use crate::domain::Level;
    if state.config.approval_rule(spec.risk).is_some() {
        return None;
    }
    [Level::L1, Level::L2, Level::L3].into_iter().find(|l| {
        spec.risk.approval_needed(*l).is_none() && spec.rollback_level.is_none_or(|r| *l >= r)
    })
}

/// The 409 of a rollback requested while another waits for approval and the new one would wait
/// too: it says who may end the wait (a reviewer) and who may replace it.
fn rollback_waiting(
    state: &AppState,
    spec: &ActionSpec,
    id: i64,
    existing: &Change,
) -> ServiceError {
    use crate::domain::Level;
    let needs: Vec<String> = approval::unmet(
        &existing.approvals_required,
        &existing.approvals,
        &existing.requested_by,
    )
    .iter()
    .map(|r| r.describe())
    .collect();
    let replace = match runs_unapproved_from(state, spec) {
        Some(Level::L3) => "; an L3, whose own request runs without waiting, may request the \
                            rollback again and replace it"
            .to_string(),
        Some(l) => format!(
            "; an operator of {l} or above, whose own request runs without waiting, may \
             request the rollback again and replace it"
        ),
        None => String::new(),
    };
    ServiceError::conflict(format!(
        "change #{id} already has a rollback waiting for approval: change #{} requested by {} \
         ({}); a reviewer approves or denies it (it needs {}){replace}",
        existing.id,
        existing.requested_by,
        existing.requested_level,
        if needs.is_empty() {
            "no more approvals".to_string()
        } else {
            needs.join(" and ")
        }
    ))
}

/// Requests the rollback of an executed change: a linked change running the action's
/// `rollback_command`, through the same policy (and the action's `rollback_level`).
pub async fn rollback(
    state: &AppState,
    caller: &Operator,
    id: i64,
    req: &crate::domain::api::RollbackRequest,
) -> ServiceResult<Created> {
    crate::server::error::may(crate::domain::Act::Rollback, caller)?;
    let original = state
        .store
        .change(id)
        .await?
        .ok_or_else(|| ServiceError::not_found(format!("no change #{id}")))?;
    if original.rollback_of.is_some() {
        return Err(ServiceError::conflict(format!(
            "change #{id} is itself a rollback: roll back the original change, or request a new change"
        )));
    }
    if original.state != ChangeState::Executed {
        return Err(ServiceError::conflict(format!(
            "change #{id} is {}: only an executed change can be rolled back",
            original.state
        )));
    }
    let spec = state.config.action(&original.action).ok_or_else(|| {
        ServiceError::conflict(format!(
            "action {} is no longer in the catalog",
            original.action
        ))
    })?;
    if !spec.can_roll_back() {
        return Err(ServiceError::conflict(format!(
            "the rollback of {} is manual: {}",
            spec.name, spec.rollback
        )));
    }
    let needs_capture = spec
        .rollback_command
        .iter()
        .flatten()
        .any(|arg| arg.contains("{captured}"));
    if needs_capture && original.captured.is_none() {
        return Err(ServiceError::conflict(format!(
            "nothing was captured before change #{id} ran, so its rollback command has nothing to \
             restore: roll it back by hand ({})",
            spec.rollback
        )));
    }
    let reason = required_text("reason", &req.reason, 2000)?;
    let ticket_text = req
        .ticket
        .clone()
        .unwrap_or_else(|| original.ticket.clone());
    let ticket = Ticket::parse(&ticket_text).map_err(ServiceError::invalid)?;
    let now = state.clock.now();
    let mut tx = state.store.write().await?;
    // A change is rolled back once. A rollback still waiting for approval, though, may be
    // replaced by one that runs at once: the process has an L1's high-risk request wait for an
    // L2/L3 while an L2/L3 "executes directly", so during an incident the L1's pending request
    // must not hold the change's one rollback against the operator who may run it now. Rank
    // alone replaces nothing: a request that would wait too gains no time (the same reviewers
    // decide either), and it would let anyone senior discard a colleague's request.
    let waiting = match tx.rollback_live(id).await? {
        None => None,
        Some((existing, ChangeState::PendingApproval)) => Some(
            tx.change(existing)
                .await?
                .ok_or_else(|| already_rolled_back(id, existing, ChangeState::PendingApproval))?,
        ),
        Some((existing, st)) => return Err(already_rolled_back(id, existing, st)),
    };
    let mut d = decide(state, tx.conn(), spec, &ticket, caller, now, Some(id)).await?;
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
        return Err(ServiceError::refused(message));
    }
    require_rollback_level(spec, caller, &mut d);
    let run_now = d.decision == Outcome::Execute;
    if let Some(existing) = &waiting
        && !run_now
    {
        return Err(rollback_waiting(state, spec, id, existing));
    }
    let reason = format!("rollback of #{id}: {reason}");
    let what = What {
        spec,
        ticket: &ticket,
        target: &original.target,
        params: &original.params,
        reason: &reason,
    };
    // The replaced rollback ends first, in this transaction: the one-rollback index counts
    // only live rollbacks, and both commit together or not at all.
    if let Some(old) = &waiting
        && !tx
            .change_transition(
                old.id,
                ChangeState::PendingApproval,
                ChangeState::Withdrawn,
                now,
                None,
                Some(&caller.name),
            )
            .await?
    {
        return Err(already_rolled_back(id, old.id, old.state));
    }
    let new = NewChange {
        rollback_of: Some(id),
        command: spec.planned_argv(
            &original.target,
            &original.params,
            Some(original.captured.as_deref()),
        ),
        ..new_change(state, what, caller, now, &d)
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
                None => ServiceError::conflict(format!(
                    "change #{id} was being rolled back by another request at the same moment"
                )),
            });
        }
        Err(e) => return Err(e.into()),
    };
    if let Some(old) = waiting {
        supersede(&mut tx, now, caller, old, &change).await?;
    }
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

/// Gives the rollback `old`, withdrawn above, its reason naming `new`, the rollback that
/// replaced it (only known once inserted), and records its end as a withdrawal.
async fn supersede(
    tx: &mut Tx,
    now: DateTime<Utc>,
    caller: &Operator,
    old: Change,
    new: &Change,
) -> ServiceResult<()> {
    let why = format!(
        "replaced by rollback #{} requested by {} ({}), which runs without waiting for approval",
        new.id, caller.name, caller.level
    );
    // Withdrawn to withdrawn: the same conditional UPDATE, here only to set its reason.
    tx.change_transition(
        old.id,
        ChangeState::Withdrawn,
        ChangeState::Withdrawn,
        now,
        Some(&why),
        Some(&caller.name),
    )
    .await?;
    let ended = tx.change(old.id).await?.unwrap_or(old);
    let summary = format!(
        "{} replaced the pending rollback #{} ({} on {}, requested by {}) with #{}",
        caller.name, ended.id, ended.action, ended.target, ended.requested_by, new.id
    );
    record(tx, now, &caller.name, "change.withdrawn", &ended, summary).await?;
    Ok(())
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
) -> ServiceResult<Change> {
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
