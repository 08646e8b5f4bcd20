//! Reviewing a pending change: approve (the policy again, as of now), deny, and expiry.

use super::*;

/// Ends a pending change `refused` when an approval finds it may not run, recorded with `why`
/// (the audit's summary says `summary_why`), and commits.
async fn refuse_at_approval(
    state: &AppState,
    mut tx: Tx,
    change: Change,
    caller: &Operator,
    now: DateTime<Utc>,
    why: &str,
    summary_why: &str,
) -> ServiceResult<()> {
    let id = change.id;
    tx.change_transition(
        id,
        ChangeState::PendingApproval,
        ChangeState::Refused,
        now,
        Some(why),
        Some(&caller.name),
    )
    .await?;
    let refused = tx.change(id).await?.unwrap_or(change);
    let summary = format!(
        "change #{id} refused when {} approved it: {summary_why}",
        caller.name
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
    commit(state, tx).await
}

pub async fn approve(
    state: &AppState,
    caller: &Operator,
    id: i64,
    comment: Option<String>,
) -> ServiceResult<Change> {
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
        approval::ApprovalRefusal::AlreadyApproved => ServiceError::conflict(r.message()),
        _ => ServiceError::forbidden(r.message()),
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
        ServiceError::conflict(format!(
            "action {} is no longer in the catalog",
            change.action
        ))
    })?;
    // A scheduled change is judged as of its time; it is judged again when that comes.
    let judged_at = change.run_at.filter(|t| *t > now).unwrap_or(now);
    let d = match recheck(state, &mut tx, spec, &change, judged_at).await? {
        Ok(d) => d,
        Err(Refusal::Command(why)) => {
            refuse_at_approval(state, tx, change, caller, now, &why, &why).await?;
            return Err(ServiceError::refused(format!(
                "change #{id} was refused: {why}"
            )));
        }
        Err(Refusal::Policy(why)) => {
            refuse_at_approval(state, tx, change, caller, now, &why, &why).await?;
            return Err(ServiceError::refused(format!(
                "your approval was recorded, but change #{id} was refused: the policy no longer \
                 allows it ({why})"
            )));
        }
    };
    tx.change_set_requirements(
        id,
        &d.approvals_required,
        &d.warnings,
        d.emergency.as_deref(),
    )
    .await?;
    let missing = approval::unmet(&d.approvals_required, &approvals, &change.requested_by);
    let run_now = missing.is_empty() && change.run_at.is_none();
    let scheduled = missing.is_empty() && change.run_at.is_some();
    if scheduled
        && !tx
            .change_transition(
                id,
                ChangeState::PendingApproval,
                ChangeState::Scheduled,
                now,
                None,
                Some(&caller.name),
            )
            .await?
    {
        return Err(ServiceError::conflict(format!(
            "change #{id} was decided by someone else first"
        )));
    }
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
            return Err(ServiceError::conflict(format!(
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
    } else if let (true, Some(t)) = (scheduled, updated.run_at) {
        format!(
            "{} approved change #{id} ({} on {}): scheduled for {}",
            caller.name,
            updated.action,
            updated.target,
            t.format("%a %Y-%m-%d %H:%M UTC")
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

pub async fn deny(
    state: &AppState,
    caller: &Operator,
    id: i64,
    reason: &str,
) -> ServiceResult<Change> {
    let reason = required_text("reason", reason, 2000)?;
    let now = state.clock.now();
    let (mut tx, change) = open_pending(state, id, now).await?;
    // The requester's own "deny" is a withdrawal, and is recorded as one; otherwise only
    // someone who could approve may deny.
    if caller.name == change.requested_by {
        return withdraw_in(state, tx, caller, change, Some(reason), now).await;
    }
    if caller.name != change.requested_by {
        let missing = approval::unmet(
            &change.approvals_required,
            &change.approvals,
            &change.requested_by,
        );
        if !missing.iter().any(|r| r.can_be_met_by(caller)) {
            let needs: Vec<String> = missing.iter().map(|r| r.describe()).collect();
            return Err(ServiceError::forbidden(format!(
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
        return Err(ServiceError::conflict(format!(
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

/// The requester takes back their own pending change: it ends `withdrawn`, not "denied" by
/// themselves.
pub async fn withdraw(
    state: &AppState,
    caller: &Operator,
    id: i64,
    reason: Option<&str>,
) -> ServiceResult<Change> {
    let reason = match reason.map(str::trim) {
        None | Some("") => None,
        Some(r) => Some(required_text("reason", r, 2000)?),
    };
    let now = state.clock.now();
    let (tx, change) = open_pending(state, id, now).await?;
    if caller.name != change.requested_by {
        return Err(ServiceError::forbidden(format!(
            "only its requester ({}) may withdraw change #{id}; you are {}: a reviewer denies it \
             instead, with a reason",
            change.requested_by, caller.name
        )));
    }
    withdraw_in(state, tx, caller, change, reason, now).await
}

async fn withdraw_in(
    state: &AppState,
    mut tx: Tx,
    caller: &Operator,
    change: Change,
    reason: Option<String>,
    now: DateTime<Utc>,
) -> ServiceResult<Change> {
    let id = change.id;
    let why = reason.unwrap_or_else(|| "withdrawn by its requester".into());
    if !tx
        .change_transition(
            id,
            ChangeState::PendingApproval,
            ChangeState::Withdrawn,
            now,
            Some(&why),
            Some(&caller.name),
        )
        .await?
    {
        return Err(ServiceError::conflict(format!(
            "change #{id} was decided by someone else first"
        )));
    }
    let withdrawn = tx.change(id).await?.unwrap_or(change);
    let summary = format!(
        "{} withdrew change #{id} ({} on {}): {why}",
        caller.name, withdrawn.action, withdrawn.target
    );
    record(
        &mut tx,
        now,
        &caller.name,
        "change.withdrawn",
        &withdrawn,
        summary,
    )
    .await?;
    commit(state, tx).await?;
    Ok(withdrawn)
}

/// Opens the write transaction for deciding change `id`, which must still be pending. An expiry
/// found on the way is committed even though the request then fails.
async fn open_pending(
    state: &AppState,
    id: i64,
    now: DateTime<Utc>,
) -> ServiceResult<(Tx, Change)> {
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
async fn pending(tx: &mut Tx, id: i64, now: DateTime<Utc>) -> ServiceResult<ServiceResult<Change>> {
    let change = tx
        .change(id)
        .await?
        .ok_or_else(|| ServiceError::not_found(format!("no change #{id}")))?;
    if change.state != ChangeState::PendingApproval {
        let message = format!(
            "change #{id} is already {}{}: it can no longer be approved or denied",
            change.state,
            change
                .decided_by
                .as_ref()
                .map(|b| format!(" (by {b})"))
                .unwrap_or_default()
        );
        return Ok(Err(if change.state == ChangeState::Expired {
            ServiceError::Expired(message)
        } else {
            ServiceError::Conflict(message)
        }));
    }
    if let Some(run_at) = change.run_at
        && change.expires_at <= now
    {
        // A scheduled change waits for its approvals until its time and the grace period:
        // past them it missed its time (see `schedule.rs`), whoever notices first.
        let grace = change.expires_at - run_at;
        let why = crate::domain::schedule::missed_reason(change.state, run_at, grace);
        super::schedule::miss_one(tx, &change, change.state, run_at, grace, now).await?;
        return Ok(Err(ServiceError::Conflict(format!("change #{id} {why}"))));
    }
    if change.expires_at <= now {
        expire_one(tx, id, now).await?;
        return Ok(Err(ServiceError::Expired(format!(
            "change #{id} expired unapproved at {}: request it again",
            change.expires_at.format("%Y-%m-%d %H:%M UTC")
        ))));
    }
    Ok(Ok(change))
}

async fn expire_one(tx: &mut Tx, id: i64, now: DateTime<Utc>) -> ServiceResult<bool> {
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
pub async fn expire_due(state: &AppState) -> ServiceResult<usize> {
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
