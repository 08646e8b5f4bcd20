//! Ending a verification: verified (the ticket's outcome is recorded), or escalated (the process's
//! "pause further changes, declare an incident").

use crate::domain::Level;
use crate::domain::api::{OutcomeKind, OutcomeRequest};
use crate::domain::change::Change;
use crate::domain::operator::Operator;
use crate::domain::verification::Verification;
use crate::domain::verification::VerificationState;
use crate::domain::{Priority, verification::summarize};
use crate::server::AppState;
use crate::server::changes::commit;
use crate::server::error::{ServiceError, ServiceResult, required_text};
use crate::server::incidents::declare_in;
use crate::server::store::Record;
use crate::server::windows::start_pause;

/// Who may end a verification: those who answer for the change (its requester, who the process
/// asks to escalate, and its approvers) and L2 and up. Escalating pauses every change, which an
/// L1 may not do on their own otherwise.
fn may_end_verification(change: &Change, caller: &Operator) -> bool {
    caller.level >= Level::L2
        || change.requested_by == caller.name
        || change.approvals.iter().any(|a| a.approver == caller.name)
}

pub async fn end(
    state: &AppState,
    caller: &Operator,
    id: i64,
    req: &OutcomeRequest,
) -> ServiceResult<Verification> {
    crate::server::error::may(crate::domain::Act::Outcome, caller)?;
    let note = match req.note.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(n) => Some(required_text("note", n, 2000)?),
    };
    let now = state.clock.now();
    let mut tx = state.store.write().await?;
    let v = tx
        .verification(id)
        .await?
        .ok_or_else(|| ServiceError::not_found(format!("no verification #{id}")))?;
    if v.state.is_closed() {
        return Err(ServiceError::conflict(format!(
            "verification #{id} is already {}{}",
            v.state,
            v.decided_by
                .as_ref()
                .map(|b| format!(" (by {b})"))
                .unwrap_or_default()
        )));
    }
    let change = tx.change(v.change_id).await?;
    let Some(c) = &change else {
        return Err(ServiceError::conflict(format!(
            "verification #{id} has no change on record, so nobody can answer for it: ask an \
             admin to check the database"
        )));
    };
    if !may_end_verification(c, caller) {
        return Err(ServiceError::forbidden(format!(
            "only the requester of change #{} ({}), its approvers, or an L2 or L3 may mark its \
             verification verified or escalate it; you are {} {}: ask one of them",
            c.id, c.requested_by, caller.name, caller.level
        )));
    }
    let ticket = change
        .as_ref()
        .map(|c| c.ticket.clone())
        .unwrap_or_default();
    let samples = tx.samples(id).await?;
    let summary = v
        .summary
        .clone()
        .unwrap_or_else(|| summarize(&samples, v.health_checked, v.error_rate_checked));
    let (closed, incident) = match req.outcome {
        OutcomeKind::Verified => {
            if req.priority.is_some() || req.commander.is_some() {
                return Err(ServiceError::invalid(
                    "priority and commander apply to an escalation only",
                ));
            }
            if v.state != VerificationState::AwaitingOutcome {
                return Err(ServiceError::conflict(format!(
                    "verification #{id} is still {} until {}: it can be marked verified after its \
                     deadline; escalate now if something is wrong",
                    v.state,
                    v.deadline.format("%H:%M:%S UTC")
                )));
            }
            (VerificationState::Verified, None)
        }
        OutcomeKind::Escalated => {
            let commander = req.commander.clone().unwrap_or_else(|| caller.name.clone());
            let priority = req.priority.unwrap_or(Priority::P2);
            let title = format!(
                "change #{} ({} on {}) caused unexpected impact: {}",
                v.change_id,
                v.action,
                v.target,
                note.clone().unwrap_or_else(|| summary.text.clone())
            );
            let title: String = title.chars().take(200).collect();
            let incident = declare_in(
                &mut tx,
                priority,
                &title,
                &commander,
                caller,
                now,
                Some(v.change_id),
            )
            .await?;
            if tx.pause().await?.is_none() {
                let reason = format!(
                    "escalation of change #{} ({}): {}",
                    v.change_id, incident.ticket, title
                );
                let reason: String = reason.chars().take(500).collect();
                start_pause(&mut tx, &reason, &caller.name, now).await?;
            }
            (VerificationState::Escalated, Some(incident))
        }
    };
    let ticket_of_incident = incident.as_ref().map(|i| i.ticket.as_str());
    if !tx
        .verification_close(
            id,
            closed,
            &caller.name,
            note.as_deref(),
            ticket_of_incident,
            Some(&summary),
        )
        .await?
    {
        return Err(ServiceError::conflict(format!(
            "verification #{id} was closed by someone else first"
        )));
    }
    let v = tx.verification(id).await?.unwrap_or(v);
    let line = match &incident {
        None => format!(
            "{} marked change #{} ({} on {}) verified: {}",
            caller.name, v.change_id, v.action, v.target, summary.text
        ),
        Some(i) => format!(
            "{} ESCALATED change #{} ({} on {}): incident {}, changes paused",
            caller.name, v.change_id, v.action, v.target, i.ticket
        ),
    };
    let kind = if incident.is_some() {
        "verification.escalated"
    } else {
        "verification.verified"
    };
    tx.record(
        now,
        Record {
            actor: &caller.name,
            kind,
            subject: format!("verification:{id}"),
            summary: line.clone(),
            data: serde_json::to_value(&v).unwrap_or_default(),
        },
    )
    .await?;
    if state.config.ticket_webhook.is_some() {
        let payload = serde_json::json!({
            "kind": if incident.is_some() { "escalation" } else { "outcome" },
            "ticket": ticket,
            "outcome": closed.as_str(),
            "summary": line,
            "note": note,
            "by": caller.name,
            "at": now,
            "change": change,
            "verification": v,
            "incident": incident,
        });
        tx.outbox_enqueue(
            if incident.is_some() {
                "escalation"
            } else {
                "outcome"
            },
            &payload,
            now,
        )
        .await?;
    }
    commit(state, tx).await?;
    state.verifier.notify_one();
    state.outbox.notify_one();
    Ok(v)
}
