use crate::domain::api::{ErrorBody, IncidentRequest};
use crate::domain::incident::Incident;
use crate::server::AppState;
use crate::server::api::error::{ApiJson, ApiResult};
use crate::server::auth::Caller;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;

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
    let incident = crate::server::incidents::declare(&state, &op, &req).await?;
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
