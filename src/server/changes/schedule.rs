//! Scheduled changes (issue 11): resolving a request's `run_at`, the conflicts of a new change,
//! the scheduler that starts due changes (or ends them `missed` or `refused`), and cancelling.
//!
//! Every server runs the scheduler, as it runs `recovery.rs`: a due change is claimed by the
//! conditional `scheduled` → `executing` update and the unique execution row in one write
//! transaction, so of several replicas exactly one runs it, once. The rules (horizon, grace,
//! `next_window`, overlap) are pure, in `domain/schedule.rs`; the policy at run time is the
//! same [`recheck`] an approval makes.

use super::*;
use crate::config::ConflictMode;
use crate::domain::api::NextWindow;
use crate::domain::change::Conflict;
use crate::domain::schedule::{self as rules, RunAt};
use crate::domain::ticket::{Ticket, TicketKind};
use crate::server::store::LiveChange;

/// How often the scheduler looks for due changes at the most; it wakes earlier when a `run_at`
/// is nearer than this.
pub const SCHEDULER_TICK: std::time::Duration = std::time::Duration::from_secs(1);

fn when(t: DateTime<Utc>) -> String {
    t.format("%a %Y-%m-%d %H:%M UTC").to_string()
}

fn grace(state: &AppState) -> Duration {
    Duration::minutes(state.config.server.schedule_grace_minutes)
}

/// Every freeze the policy knows: the configuration's and the announced ones.
async fn freezes(state: &AppState, conn: &mut AnyConnection) -> ServiceResult<Vec<Freeze>> {
    // An empty ticket names no incident: only the freezes and the pause are read.
    let (stored, _, _) = state.store.policy_context(conn, "").await?;
    Ok(with_configured(state, stored))
}

/// The next usable window for `spec` after `now` (see [`rules::next_window`]).
pub(super) async fn next_window(
    state: &AppState,
    conn: &mut AnyConnection,
    spec: &ActionSpec,
    now: DateTime<Utc>,
) -> ServiceResult<Option<NextWindow>> {
    let freezes = freezes(state, conn).await?;
    Ok(
        rules::next_window(&state.config.windows, &freezes, spec.risk, now)
            .map(|(kind, opens_at)| NextWindow { kind, opens_at }),
    )
}

/// A request's `run_at` as a time: checked against the horizon, or the next usable window.
pub(super) async fn resolve_run_at(
    state: &AppState,
    conn: &mut AnyConnection,
    spec: &ActionSpec,
    run_at: Option<RunAt>,
    now: DateTime<Utc>,
) -> ServiceResult<Option<DateTime<Utc>>> {
    match run_at {
        None => Ok(None),
        Some(RunAt::At(t)) => {
            rules::check_run_at(t, now).map_err(ServiceError::invalid)?;
            Ok(Some(t))
        }
        Some(RunAt::NextWindow) => match next_window(state, conn, spec, now).await? {
            Some(w) => Ok(Some(w.opens_at)),
            None => Err(ServiceError::invalid(format!(
                "run_at \"{}\": no window that a {}-risk change may use opens in the next {} \
                 days (none is configured, or freezes cover them): give a time instead",
                rules::NEXT_WINDOW,
                spec.risk,
                rules::HORIZON_DAYS
            ))),
        },
    }
}

/// A scheduled change runs in a window, on the ordinary path: the emergency path is for
/// incident response now, not for a plan.
pub(super) fn check_schedulable(
    run_at: Option<DateTime<Utc>>,
    ticket: &Ticket,
    d: &Decision,
) -> ServiceResult<()> {
    let Some(t) = run_at else {
        return Ok(());
    };
    // An incident ticket is refused whatever the decision at run_at says: the incident may be
    // declared by then, and its emergency path would then let the change past the window.
    if ticket.kind == TicketKind::Incident || d.emergency.is_some() {
        return Err(ServiceError::invalid(format!(
            "{} is an incident ticket: its emergency path is for incident response now, not for \
             a schedule (it would run at {} outside the windows' rules); request it without \
             run_at, or schedule it into a window with a CHG ticket",
            ticket.as_str(),
            when(t)
        )));
    }
    Ok(())
}

/// The conflicts of a new change of `spec` that keeps its target busy for `mine`, among `live`
/// (the live changes on that target).
pub(super) fn conflicts_among(
    state: &AppState,
    spec: &ActionSpec,
    mine: rules::Period,
    live: &[LiveChange],
    now: DateTime<Utc>,
) -> Vec<Conflict> {
    if !rules::may_conflict(spec.risk) {
        return Vec::new();
    }
    rules::conflicts(
        mine,
        live.iter().map(|l| (&l.change, l.verification_until)),
        None,
        now,
        state.config.verification.duration(),
    )
}

/// The period a new change keeps its target busy.
pub(super) fn period(
    state: &AppState,
    run_at: Option<DateTime<Utc>>,
    d: &Decision,
    now: DateTime<Utc>,
) -> rules::Period {
    rules::period_of_new(
        run_at,
        d.decision == Outcome::NeedsApproval,
        expires_at(state, run_at, now),
        now,
        state.config.verification.duration(),
    )
}

/// When a new change waiting for approval expires: after the approval time limit, or, for a
/// scheduled one, when its time (plus the grace period) has passed; reviewers have until then.
pub(super) fn expires_at(
    state: &AppState,
    run_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> DateTime<Utc> {
    match run_at {
        Some(t) => t + grace(state),
        None => now + Duration::minutes(state.config.server.approval_ttl_minutes),
    }
}

/// ": scheduled for Tue 2026-11-24 22:00 UTC", or ": needs L2+ approval, then runs at …", for
/// an activity line.
pub(super) fn outlook_scheduled(t: DateTime<Utc>, d: &Decision) -> String {
    if d.decision == Outcome::Execute {
        format!(": scheduled for {}", when(t))
    } else {
        let needs: Vec<String> = d.approvals_required.iter().map(|r| r.describe()).collect();
        format!(": needs {}, then runs at {}", needs.join(" and "), when(t))
    }
}

/// Whether the server refuses conflicting changes (`[policy] conflicts = "block"`).
pub(super) fn conflicts_block(state: &AppState) -> bool {
    state.config.policy.conflicts == ConflictMode::Block
}

/// With `[policy] conflicts = "block"`, the refusal of a conflicting change (409).
pub(super) fn blocked_by_conflicts(state: &AppState, found: &[Conflict]) -> Option<String> {
    if !conflicts_block(state) || found.is_empty() {
        return None;
    }
    let each: Vec<&str> = found.iter().map(|c| c.message.as_str()).collect();
    Some(format!(
        "this change {}; the server refuses conflicting changes ([policy] conflicts = \"block\"): \
         wait until they are done, cancel or withdraw them, or pick another time",
        each.join("; ")
    ))
}

/// Ends a change that is still `from` as missed (the scheduler, or an approval that came too
/// late); false if it was no longer `from`.
pub(super) async fn miss_one(
    tx: &mut Tx,
    change: &Change,
    from: ChangeState,
    run_at: DateTime<Utc>,
    grace: Duration,
    now: DateTime<Utc>,
) -> ServiceResult<bool> {
    let why = rules::missed_reason(from, run_at, grace);
    if !tx
        .change_transition(change.id, from, ChangeState::Missed, now, Some(&why), None)
        .await?
    {
        return Ok(false);
    }
    let missed = tx
        .change(change.id)
        .await?
        .unwrap_or_else(|| change.clone());
    let summary = format!(
        "change #{} ({} on {}) {why}",
        missed.id, missed.action, missed.target
    );
    record(tx, now, "server", "change.missed", &missed, summary).await?;
    Ok(true)
}

/// Ends a due scheduled change `refused` with why the policy, asked again, blocks it.
async fn refuse_due(
    state: &AppState,
    mut tx: Tx,
    change: &Change,
    now: DateTime<Utc>,
    why: &str,
) -> ServiceResult<()> {
    let id = change.id;
    if tx
        .change_transition(
            id,
            ChangeState::Scheduled,
            ChangeState::Refused,
            now,
            Some(why),
            Some("server"),
        )
        .await?
    {
        let refused = tx.change(id).await?.unwrap_or_else(|| change.clone());
        let summary = format!(
            "change #{id} ({} on {}) refused at its scheduled time: {why}",
            refused.action, refused.target
        );
        record(&mut tx, now, "server", "change.refused", &refused, summary).await?;
    }
    commit(state, tx).await
}

/// One due change: missed after the grace period, else (once approved) the policy again, then
/// claimed and started. Returns whether this server started or ended it.
async fn run_one(state: &AppState, id: i64, now: DateTime<Utc>) -> ServiceResult<bool> {
    let mut tx = state.store.write().await?;
    let Some(change) = tx.change(id).await? else {
        return Ok(false);
    };
    let Some(run_at) = change.run_at else {
        return Ok(false);
    };
    let waiting = matches!(
        change.state,
        ChangeState::Scheduled | ChangeState::PendingApproval
    );
    if !waiting || run_at > now {
        return Ok(false);
    }
    if rules::missed(run_at, now, grace(state)) {
        let done = miss_one(&mut tx, &change, change.state, run_at, grace(state), now).await?;
        commit(state, tx).await?;
        return Ok(done);
    }
    // Still waiting for its approvals: it may get them within the grace period.
    if change.state != ChangeState::Scheduled {
        return Ok(false);
    }
    let Some(spec) = state.config.action(&change.action) else {
        let why = format!("action {} is no longer in the catalog", change.action);
        refuse_due(state, tx, &change, now, &why).await?;
        return Ok(true);
    };
    let d = match recheck(state, &mut tx, spec, &change, now).await? {
        Ok(d) => d,
        Err(Refusal::Command(why) | Refusal::Policy(why)) => {
            refuse_due(state, tx, &change, now, &why).await?;
            return Ok(true);
        }
    };
    // A schedule never takes the emergency path (see `check_schedulable`), even if the policy
    // at its time would offer it.
    if let Some(incident) = &d.emergency {
        let why = format!(
            "at its time it would take the emergency path of incident {incident}, which a \
             scheduled change never does; request it again under a CHG ticket"
        );
        refuse_due(state, tx, &change, now, &why).await?;
        return Ok(true);
    }
    let missing = approval::unmet(
        &d.approvals_required,
        &change.approvals,
        &change.requested_by,
    );
    if !missing.is_empty() {
        let needs: Vec<String> = missing.iter().map(|r| r.describe()).collect();
        let why = format!(
            "at its time the policy asks for {}, which it does not have; request it again",
            needs.join(" and ")
        );
        refuse_due(state, tx, &change, now, &why).await?;
        return Ok(true);
    }
    // The claim: of several servers, one moves it and inserts its execution row.
    let moved = tx
        .change_transition(
            id,
            ChangeState::Scheduled,
            ChangeState::Executing,
            now,
            None,
            None,
        )
        .await?;
    if !moved || !tx.execution_claim(id, now).await? {
        return Ok(false);
    }
    tx.change_set_requirements(
        id,
        &d.approvals_required,
        &d.warnings,
        d.emergency.as_deref(),
    )
    .await?;
    let started = tx.change(id).await?.unwrap_or(change);
    let summary = format!(
        "change #{id} ({} on {}) started at its scheduled time, {}",
        started.action,
        started.target,
        when(run_at)
    );
    record(&mut tx, now, "server", "change.started", &started, summary).await?;
    commit(state, tx).await?;
    run::start(state, started);
    Ok(true)
}

/// Starts, refuses or misses every change whose time has come; returns how many this server
/// settled.
pub async fn run_due(state: &AppState) -> ServiceResult<usize> {
    let now = state.clock.now();
    let mut n = 0;
    for (id, st, run_at) in state.store.changes_due(now).await? {
        // One still waiting for approval within its grace period needs nothing yet; no write
        // transaction for it every second.
        if st == ChangeState::PendingApproval && !rules::missed(run_at, now, grace(state)) {
            continue;
        }
        if run_one(state, id, now).await? {
            n += 1;
        }
    }
    Ok(n)
}

/// The scheduler: [`run_due`] every [`SCHEDULER_TICK`], or at the next `run_at` when that is
/// sooner, until the server stops.
pub async fn schedule_periodically(state: AppState) {
    loop {
        if let Err(e) = run_due(&state).await {
            tracing::warn!(error = %e, "running scheduled changes failed");
        }
        let mut wait = SCHEDULER_TICK;
        if let Ok(Some(next)) = state.store.schedule_next().await
            && let Ok(until) = (next - state.clock.now()).to_std()
        {
            wait = wait.min(until);
        }
        tokio::time::sleep(wait).await;
    }
}

/// Cancels a scheduled change, or one waiting for approval with a `run_at`: its requester, or
/// an L2 or L3, with a reason.
pub async fn cancel(
    state: &AppState,
    caller: &Operator,
    id: i64,
    reason: &str,
) -> ServiceResult<Change> {
    crate::server::error::may(crate::domain::Act::Cancel, caller)?;
    let reason = required_text("reason", reason, 2000)?;
    let now = state.clock.now();
    let mut tx = state.store.write().await?;
    let change = tx
        .change(id)
        .await?
        .ok_or_else(|| ServiceError::not_found(format!("no change #{id}")))?;
    match rules::may_cancel(&change, caller) {
        Ok(()) => {}
        Err(rules::CancelRefusal::NotTheirs) => {
            return Err(ServiceError::forbidden(format!(
                "only its requester ({}) or an L2 or L3 may cancel change #{id}; you are {} {}",
                change.requested_by, caller.name, caller.level
            )));
        }
        Err(rules::CancelRefusal::NotWaiting) => {
            let instead = if change.state == ChangeState::PendingApproval {
                ": it has no run_at; its requester withdraws it, a reviewer denies it"
            } else {
                ""
            };
            return Err(ServiceError::conflict(format!(
                "change #{id} is {}: only a scheduled change (or one waiting for approval with a \
                 run_at) can be cancelled{instead}",
                change.state
            )));
        }
    }
    if !tx
        .change_transition(
            id,
            change.state,
            ChangeState::Cancelled,
            now,
            Some(&reason),
            Some(&caller.name),
        )
        .await?
    {
        return Err(ServiceError::conflict(format!(
            "change #{id} moved on while it was being cancelled (it started, or someone else \
             decided it first)"
        )));
    }
    let cancelled = tx.change(id).await?.unwrap_or(change);
    let summary = format!(
        "{} cancelled change #{id} ({} on {}{}): {reason}",
        caller.name,
        cancelled.action,
        cancelled.target,
        cancelled
            .run_at
            .map(|t| format!(", scheduled for {}", when(t)))
            .unwrap_or_default()
    );
    record(
        &mut tx,
        now,
        &caller.name,
        "change.cancelled",
        &cancelled,
        summary,
    )
    .await?;
    commit(state, tx).await?;
    Ok(cancelled)
}
