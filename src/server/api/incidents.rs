use crate::domain::api::{ErrorBody, IncidentRequest};
use crate::domain::incident::Incident;
use crate::server::AppState;
use crate::server::api::error::{ApiError, ApiId, ApiJson, ApiQuery, ApiResult};
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

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// At most this many, the newest (default 200, at most 500).
    #[param(value_type = i64, required = false, minimum = 1, maximum = 500, default = 200)]
    limit: Option<i64>,
}

/// Incidents, newest first.
#[utoipa::path(get, path = "/api/v1/incidents", tag = "incidents", security(("bearer" = [])),
    params(ListQuery),
    responses((status = 200, body = Vec<Incident>), (status = 401, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    _caller: Caller,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<Vec<Incident>>> {
    let limit = q.limit.unwrap_or(200);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::invalid("limit must be between 1 and 500"));
    }
    Ok(Json(state.store.incidents(limit).await?))
}

/// Close an incident: it is over, and its ticket opens no emergency path any more. Its commander
/// or an L2/L3 closes it. A change pause stays until someone resumes.
#[utoipa::path(post, path = "/api/v1/incidents/{id}/close", tag = "incidents", security(("bearer" = [])),
    params(("id" = i64, Path, description = "The incident's id")),
    responses((status = 200, body = Incident), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "Already closed", body = ErrorBody)))]
pub async fn close(
    State(state): State<AppState>,
    Caller(op): Caller,
    ApiId(id): ApiId,
) -> ApiResult<Json<Incident>> {
    Ok(Json(
        crate::server::incidents::close(&state, &op, id).await?,
    ))
}
