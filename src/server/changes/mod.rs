//! The life of a change: requested, approved or denied, expired, refused, executed.
//!
//! Every step reads the policy context and writes the change, its audit entry and its event in
//! one `BEGIN IMMEDIATE` transaction, so a decision is always made on what is committed.
//!
//! `request.rs` (checks, preview, rollback), `create.rs` (create, in batches; `quota.rs` is what
//! one operator may have open), `review.rs`
//! (approve, deny, expiry), `run.rs` (the execution and the verification it opens) and
//! `recovery.rs` (after a restart) share what is here: the policy decision on what a
//! transaction sees, and the record of each step.

mod create;
pub mod quota;
pub mod recovery;
mod request;
mod review;
mod run;
pub mod schedule;

pub use create::{CreateBatcher, Created, create, create_handler};
pub use recovery::{recover_interrupted, recover_periodically};
pub use request::{preview, rollback};
pub use review::{approve, deny, expire_due, withdraw};
pub use run::Executions;
use run::{failure, start_and_wait};
pub use schedule::{cancel, run_due, schedule_periodically};

use crate::domain::action::{self, validate_target};
use crate::domain::api::{ChangeRequest, Preview};
use crate::domain::approval;
use crate::domain::approval::Approval;
use crate::domain::change::{Change, ChangeState, ExecutionOutput};
use crate::domain::incident::Incident;
use crate::domain::operator::Operator;
use crate::domain::policy::{self, Decision, Outcome, PolicyInput};
use crate::domain::verification::VerificationState;
use crate::domain::{ActionSpec, Freeze, Pause, Risk, Ticket};
use crate::server::AppState;
use crate::server::error::{ServiceError, ServiceResult, required_text};
use crate::server::executor;
use crate::server::store::{NewChange, Record, Tx};
use chrono::{DateTime, Duration, Utc};
use sha2::{Digest, Sha256};
use sqlx::AnyConnection;
use std::collections::BTreeMap;

/// How many of the latest verifications are searched for the escalation of a change being
/// rolled back. An escalation is recent while its incident matters; one further back than this
/// belongs to an incident long handled, and its rollback takes the ordinary path.
const ESCALATIONS_SEARCHED: i64 = 500;

/// The incident declared by escalating the verification of change `original`, if any: the one
/// whose emergency path its rollback takes.
async fn escalation_of(
    state: &AppState,
    conn: &mut AnyConnection,
    original: i64,
) -> ServiceResult<Option<Incident>> {
    let list = state
        .store
        .verification_list(false, ESCALATIONS_SEARCHED)
        .await?;
    let Some(ticket) = list
        .into_iter()
        .filter(|v| v.change_id == original && v.state == VerificationState::Escalated)
        .find_map(|v| v.incident)
    else {
        return Ok(None);
    };
    let (_, _, incident) = state.store.policy_context(conn, &ticket).await?;
    Ok(incident)
}

/// The policy decision for `requester` now, on what `conn` sees (inside the write
/// transaction when the decision is acted on). `rollback_of` is the change a rollback undoes.
async fn decide(
    state: &AppState,
    conn: &mut AnyConnection,
    spec: &ActionSpec,
    ticket: &Ticket,
    requester: &Operator,
    now: DateTime<Utc>,
    rollback_of: Option<i64>,
) -> ServiceResult<Decision> {
    let escalated = match rollback_of {
        Some(original) => escalation_of(state, conn, original).await?,
        None => None,
    };
    let (stored, pause, incident) = state.store.policy_context(conn, ticket.as_str()).await?;
    let freezes = with_configured(state, stored);
    let reads = Reads {
        freezes: &freezes,
        pause: pause.as_ref(),
        incident: incident.as_ref(),
        escalated: escalated.as_ref(),
    };
    Ok(decide_on(state, &reads, spec, ticket, requester, now))
}

/// Every freeze the policy knows: the configuration's and the announced ones.
fn with_configured(state: &AppState, stored: Vec<Freeze>) -> Vec<Freeze> {
    let mut all = state.config.configured_freezes();
    all.extend(stored);
    all
}

/// What a decision reads besides the request: read by [`decide`], or once for a batch of
/// requests (`create.rs`).
struct Reads<'a> {
    freezes: &'a [Freeze],
    pause: Option<&'a Pause>,
    incident: Option<&'a Incident>,
    escalated: Option<&'a Incident>,
}

fn decide_on(
    state: &AppState,
    reads: &Reads<'_>,
    spec: &ActionSpec,
    ticket: &Ticket,
    requester: &Operator,
    now: DateTime<Utc>,
) -> Decision {
    policy::decide(&PolicyInput {
        action: spec,
        ticket,
        requester,
        now,
        schedule: &state.config.windows,
        freezes: reads.freezes,
        pause: reads.pause,
        incident: reads.incident,
        escalated: reads.escalated,
        approval_rule: state.config.approval_rule(spec.risk),
    })
}

fn refusal_message(d: &Decision) -> String {
    d.reasons.join("; ")
}

/// Why a stored change may not run after all.
enum Refusal {
    /// The catalog renders another argv than its reviewers approved.
    Command(String),
    /// The policy, asked again, blocks it.
    Policy(String),
}

/// The policy again, for a stored change about to run (at its last approval, and at its
/// scheduled time): its requester must still be an operator; its reviewers approved the argv they were shown, so a catalog that changed
/// it since refuses it, never runs a different command under their names; and the policy as of
/// `at` must still let it through. The decision keeps the approval rule the change was requested
/// under: a rule changed in the configuration since applies to new changes only.
async fn recheck(
    state: &AppState,
    tx: &mut Tx,
    spec: &ActionSpec,
    change: &Change,
    at: DateTime<Utc>,
) -> ServiceResult<Result<Decision, Refusal>> {
    // Its requester's access may have been revoked since: nobody would then stand behind it.
    if !tx.operator_exists(&change.requested_by).await? {
        return Ok(Err(Refusal::Policy(format!(
            "{}'s access was revoked since the request; an active operator must request it again",
            change.requested_by
        ))));
    }
    if let Some(frozen) = tx.change_planned_command(change.id).await? {
        let captured = match change.rollback_of {
            Some(original) => Some(tx.change(original).await?.and_then(|o| o.captured)),
            None => None,
        };
        let now_planned = spec.planned_argv(
            &change.target,
            &change.params,
            captured.as_ref().map(Option::as_deref),
        );
        if now_planned != frozen {
            return Ok(Err(Refusal::Command(
                "the action's command changed since this change was requested; request it again"
                    .into(),
            )));
        }
    }
    let ticket = Ticket::parse(&change.ticket).map_err(ServiceError::invalid)?;
    let requester = Operator {
        name: change.requested_by.clone(),
        level: change.requested_level,
    };
    let mut d = decide(
        state,
        tx.conn(),
        spec,
        &ticket,
        &requester,
        at,
        change.rollback_of,
    )
    .await?;
    if change.rollback_of.is_some() && d.decision != Outcome::Blocked {
        require_rollback_level(spec, &requester, &mut d);
    }
    if d.decision == Outcome::Blocked {
        return Ok(Err(Refusal::Policy(refusal_message(&d))));
    }
    if let Some(kept) = change
        .approvals_required
        .iter()
        .find(|r| matches!(r, approval::Requirement::Level { .. }))
    {
        for r in d.approvals_required.iter_mut() {
            if matches!(r, approval::Requirement::Level { .. }) {
                *r = kept.clone();
            }
        }
    }
    Ok(Ok(d))
}

/// What a new change is: an action on a target with its parameters, under a ticket, and why.
struct What<'a> {
    spec: &'a ActionSpec,
    ticket: &'a Ticket,
    target: &'a str,
    params: &'a BTreeMap<String, String>,
    reason: &'a str,
}

/// The row of a change the policy let through: the one place its columns are filled, for a
/// request and a rollback alike (they add their idempotency key or the change they undo).
fn new_change<'a>(
    state: &AppState,
    what: What<'a>,
    requester: &'a Operator,
    now: DateTime<Utc>,
    d: &'a Decision,
) -> NewChange<'a> {
    NewChange {
        state: initial_state(d.decision == Outcome::Execute),
        action: &what.spec.name,
        risk: what.spec.risk,
        ticket: what.ticket.as_str(),
        target: what.target,
        params: what.params,
        reason: what.reason,
        requester,
        now,
        expires_at: now + Duration::minutes(state.config.server.approval_ttl_minutes),
        requirements: &d.approvals_required,
        warnings: &d.warnings,
        idempotency_key: None,
        fingerprint: None,
        rollback_of: None,
        emergency: d.emergency.as_deref(),
        command: what.spec.planned_argv(what.target, what.params, None),
        run_at: None,
        conflicts: &[],
    }
}

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
        .any(|r| matches!(r, approval::Requirement::Level { min: m, .. } if *m >= min));
    if requester.level >= min || covered {
        return;
    }
    d.approvals_required
        .retain(|r| !matches!(r, approval::Requirement::Level { .. }));
    d.approvals_required
        .push(approval::Requirement::Level { min, count: 1 });
    d.reasons.push(format!(
        "the rollback of {} needs {min}: it waits for an {min} approval",
        spec.name
    ));
    d.decision = Outcome::NeedsApproval;
}

async fn record(
    tx: &mut Tx,
    now: DateTime<Utc>,
    actor: &str,
    kind: &str,
    change: &Change,
    summary: String,
) -> Result<(), sqlx::Error> {
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
pub async fn commit(state: &AppState, tx: Tx) -> ServiceResult<()> {
    if tx.commit().await? {
        state.events.wake();
    }
    Ok(())
}
