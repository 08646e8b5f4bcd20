use crate::domain::api::{ErrorBody, IncidentRequest};
use crate::domain::change::Incident;
use crate::server::AppState;
use crate::server::api::error::{ApiError, ApiJson, ApiResult, required_text};
use crate::server::auth::Caller;
use crate::server::changes::commit;
use crate::server::store::Record;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;

/// Declare an incident. Its ticket (`INC-YYYY-MMDD-NNN`) is what emergency changes cite.
#[utoipa::path(post, path = "/api/v1/incidents", tag = "incidents", security(("bearer" = [])),
    request_body = IncidentRequest,
    responses((status = 201, body = Incident), (status = 401, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
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
    let incident = tx
        .insert_incident(req.priority, &title, commander, &op.name, now)
        .await?
        .ok_or_else(|| ApiError::conflict("999 incidents were declared today already"))?;
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
