use crate::domain::api::{ErrorBody, OutcomeRequest};
use crate::domain::verification::{Verification, VerificationDetail};
use crate::server::AppState;
use crate::server::api::error::{ApiError, ApiId, ApiJson, ApiQuery, ApiResult};
use crate::server::auth::Caller;
use crate::server::verifications;
use axum::Json;
use axum::extract::State;
use serde::Deserialize;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Only those still being sampled (`watching` or `degraded`); default false.
    #[param(value_type = bool, required = false, default = false)]
    active: Option<bool>,
    /// At most this many, the latest by deadline (default and most 500).
    #[param(value_type = i64, required = false, minimum = 1, maximum = 500, default = 500)]
    limit: Option<i64>,
}

/// The most verifications one answer holds: the history grows with every executed change.
const MAX_LIST: i64 = 500;

/// Post-change verifications, soonest deadline first, with their latest sample: the latest
/// `limit` by deadline, so every active one is there unless more than `limit` are active.
#[utoipa::path(get, path = "/api/v1/verifications", tag = "verifications", security(("bearer" = [])),
    params(ListQuery),
    responses((status = 200, body = Vec<Verification>), (status = 401, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    _caller: Caller,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<Vec<Verification>>> {
    let limit = q.limit.unwrap_or(MAX_LIST);
    if !(1..=MAX_LIST).contains(&limit) {
        return Err(ApiError::invalid(format!(
            "limit must be between 1 and {MAX_LIST}"
        )));
    }
    Ok(Json(
        state
            .store
            .verification_list(q.active.unwrap_or(false), limit)
            .await?,
    ))
}

/// One verification with every sample taken.
#[utoipa::path(get, path = "/api/v1/verifications/{id}", tag = "verifications", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Verification id")),
    responses((status = 200, body = VerificationDetail), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn show(
    State(state): State<AppState>,
    _caller: Caller,
    ApiId(id): ApiId,
) -> ApiResult<Json<VerificationDetail>> {
    state
        .store
        .verification_detail(id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no verification #{id}")))
}

/// End a verification: `verified` (after its deadline) records the ticket's outcome;
/// `escalated` declares an incident (P2 unless given; the caller commands unless one is named)
/// and pauses all changes.
#[utoipa::path(post, path = "/api/v1/verifications/{id}/outcome", tag = "verifications", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Verification id")), request_body = OutcomeRequest,
    responses((status = 200, body = Verification), (status = 401, body = ErrorBody),
        (status = 403, description = "Not the change's requester or approver, and below L2", body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, description = "Already closed, or verified before its deadline", body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn decide(
    State(state): State<AppState>,
    Caller(op): Caller,
    ApiId(id): ApiId,
    ApiJson(req): ApiJson<OutcomeRequest>,
) -> ApiResult<Json<Verification>> {
    Ok(Json(verifications::end(&state, &op, id, &req).await?))
}
