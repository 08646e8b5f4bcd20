use crate::domain::api::{ErrorBody, IncidentRequest};
use crate::domain::incident::Incident;
use crate::server::AppState;
use crate::server::api::error::{ApiError, ApiJson, ApiResult, required_text};
use crate::server::auth::Caller;
use crate::server::changes::commit;
use crate::server::store::Record;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;

/// How many incidents one operator may declare within [`DECLARATION_WINDOW`]: enough for any
/// real incident, too few to flood the incident list or the ticket numbering.
const DECLARATIONS_PER_WINDOW: usize = 5;
const DECLARATION_WINDOW: chrono::TimeDelta = chrono::TimeDelta::minutes(15);

/// Declare an incident. Its ticket (`INC-YYYY-MMDD-NNN`) is what emergency changes cite.
#[utoipa::path(post, path = "/api/v1/incidents", tag = "incidents", security(("bearer" = [])),
    request_body = IncidentRequest,
    responses((status = 201, body = Incident), (status = 401, body = ErrorBody),
        (status = 422, body = ErrorBody),
        (status = 429, description = "Too many declarations by this operator lately; the message says when to retry", body = ErrorBody)))]
pub async fn declare(
    State(state): State<AppState>,
    Caller(op): Caller,
    ApiJson(req): ApiJson<IncidentRequest>,
) -> ApiResult<(StatusCode, Json<Incident>)> {
    let title = required_text("title", &req.title, 200)?;
    let commander = req.commander.trim();
    let now = state.clock.now();
    let mut tx = state.store.write().await?;
    if !tx.operator_exists(commander).await? {
        return Err(ApiError::invalid(format!(
            "commander '{}' is not an operator: name an existing operator",
            commander.chars().take(64).collect::<String>()
        )));
    }
    let recent = tx
        .incidents_declared_since(&op.name, now - DECLARATION_WINDOW)
        .await?;
    if recent.len() >= DECLARATIONS_PER_WINDOW
        && let Some(oldest) = recent.first()
    {
        let retry = *oldest + DECLARATION_WINDOW;
        return Err(ApiError::rate_limited(format!(
            "you declared {} incidents in the last {} minutes, the most one operator may: retry \
             after {} (in {}), or ask another operator to declare it; escalating a verification \
             is never limited",
            recent.len(),
            DECLARATION_WINDOW.num_minutes(),
            retry.format("%H:%M:%S UTC"),
            crate::domain::window::human_duration(retry - now)
        )));
    }
    let incident = tx
        .incident_insert(req.priority, &title, commander, &op.name, now)
        .await?;
    let summary = format!(
        "{} declared {} incident {}: {} (commander {})",
        op.name, incident.priority, incident.ticket, incident.title, incident.commander
    );
    tx.record(
        now,
        Record {
            actor: &op.name,
            kind: "incident.declared",
            subject: format!("incident:{}", incident.ticket),
            summary,
            data: serde_json::to_value(&incident).unwrap_or_default(),
        },
    )
    .await?;
    commit(&state, tx).await?;
    Ok((StatusCode::CREATED, Json(incident)))
}

/// Incidents, newest first.
#[utoipa::path(get, path = "/api/v1/incidents", tag = "incidents", security(("bearer" = [])),
    responses((status = 200, body = Vec<Incident>), (status = 401, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    _caller: Caller,
) -> ApiResult<Json<Vec<Incident>>> {
    Ok(Json(state.store.incidents().await?))
}
