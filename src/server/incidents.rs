//! Declaring incidents: what emergency changes cite (`INC-YYYY-MMDD-NNN`), declared directly or
//! by the escalation of a verification (`verifications.rs`).

use crate::domain::Priority;
use crate::domain::api::IncidentRequest;
use crate::domain::incident::Incident;
use crate::domain::operator::Operator;
use crate::server::AppState;
use crate::server::changes::commit;
use crate::server::error::{ServiceError, ServiceResult, required_text};
use crate::server::store::{Record, Tx};
use chrono::{DateTime, Utc};

/// How many incidents one operator may declare within [`DECLARATION_WINDOW`]: enough for any
/// real incident, too few to flood the incident list or the ticket numbering.
const DECLARATIONS_PER_WINDOW: usize = 5;
const DECLARATION_WINDOW: chrono::TimeDelta = chrono::TimeDelta::minutes(15);

/// `POST /incidents`: rate-limited per operator.
pub async fn declare(
    state: &AppState,
    op: &Operator,
    req: &IncidentRequest,
) -> ServiceResult<Incident> {
    crate::server::error::may(crate::domain::Act::DeclareIncident, op)?;
    let title = required_text("title", &req.title, 200)?;
    let now = state.clock.now();
    let mut tx = state.store.write().await?;
    let recent = tx
        .incidents_declared_since(&op.name, now - DECLARATION_WINDOW)
        .await?;
    if recent.len() >= DECLARATIONS_PER_WINDOW
        && let Some(oldest) = recent.first()
    {
        let retry = *oldest + DECLARATION_WINDOW;
        return Err(ServiceError::rate_limited(format!(
            "you declared {} incidents in the last {} minutes, the most one operator may: retry \
             after {} (in {}), or ask another operator to declare it; escalating a verification \
             is never limited",
            recent.len(),
            DECLARATION_WINDOW.num_minutes(),
            retry.format("%H:%M:%S UTC"),
            crate::domain::window::human_duration(retry - now)
        )));
    }
    let incident = declare_in(&mut tx, req.priority, &title, &req.commander, op, now, None).await?;
    commit(state, tx).await?;
    Ok(incident)
}

/// `POST /incidents/{id}/close`: the incident is over. Its commander or an L2/L3 closes it; from
/// then on its ticket opens no emergency path. A pause it caused stays until someone resumes.
pub async fn close(state: &AppState, op: &Operator, id: i64) -> ServiceResult<Incident> {
    crate::server::error::may(crate::domain::Act::CloseIncident, op)?;
    let now = state.clock.now();
    let mut tx = state.store.write().await?;
    let Some(incident) = tx.incident(id).await? else {
        return Err(ServiceError::not_found(format!("no incident #{id}")));
    };
    if op.name != incident.commander && op.level < crate::domain::Level::L2 {
        return Err(ServiceError::forbidden(format!(
            "only its commander ({}) or an L2 or L3 closes incident {}; you are {} {}",
            incident.commander, incident.ticket, op.name, op.level
        )));
    }
    let Some(closed) = tx.incident_close(id, now).await? else {
        return Err(ServiceError::conflict(format!(
            "incident {} is already closed",
            incident.ticket
        )));
    };
    tx.record(
        now,
        Record {
            actor: &op.name,
            kind: "incident.closed",
            subject: format!("incident:{}", closed.ticket),
            summary: format!(
                "{} closed {} incident {}: {}",
                op.name, closed.priority, closed.ticket, closed.title
            ),
            data: serde_json::to_value(&closed).unwrap_or_default(),
        },
    )
    .await?;
    commit(state, tx).await?;
    Ok(closed)
}

/// Declares an incident inside `tx` and records it: the one place both a declaration and an
/// escalation (of the verification of change `escalating`) go through, so both name a commander
/// who exists.
pub(crate) async fn declare_in(
    tx: &mut Tx,
    priority: Priority,
    title: &str,
    commander: &str,
    by: &Operator,
    now: DateTime<Utc>,
    escalating: Option<i64>,
) -> ServiceResult<Incident> {
    let commander = commander.trim();
    match tx.operator_level(commander).await? {
        None => {
            return Err(ServiceError::invalid(format!(
                "commander '{}' is not an operator: name an existing operator",
                commander.chars().take(64).collect::<String>()
            )));
        }
        // A commander approves the incident's emergency changes and closes it: an observer
        // can do neither, so the incident would wait for an approval that never comes.
        Some(crate::domain::Level::Observer) => {
            return Err(ServiceError::invalid(format!(
                "commander '{commander}' is an observer, who approves nothing: name an L1, L2 \
                 or L3 operator"
            )));
        }
        Some(_) => {}
    }
    let incident = tx
        .incident_insert(
            priority,
            title,
            commander,
            &by.name,
            now,
            escalating.is_some(),
        )
        .await?;
    let summary = match escalating {
        None => format!(
            "{} declared {} incident {}: {} (commander {})",
            by.name, incident.priority, incident.ticket, incident.title, incident.commander
        ),
        Some(c) => format!(
            "{} escalated the verification of change #{c}: declared {} incident {} (commander {})",
            by.name, incident.priority, incident.ticket, incident.commander
        ),
    };
    tx.record(
        now,
        Record {
            actor: &by.name,
            kind: "incident.declared",
            subject: format!("incident:{}", incident.ticket),
            summary,
            data: serde_json::to_value(&incident).unwrap_or_default(),
        },
    )
    .await?;
    Ok(incident)
}
