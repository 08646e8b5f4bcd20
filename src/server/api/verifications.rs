use crate::domain::api::ErrorBody;
use crate::domain::change::Verification;
use crate::server::AppState;
use crate::server::api::error::ApiResult;
use crate::server::auth::Caller;
use axum::Json;
use axum::extract::State;

/// Post-change verifications, soonest deadline first.
#[utoipa::path(get, path = "/api/v1/verifications", tag = "verifications", security(("bearer" = [])),
    responses((status = 200, body = Vec<Verification>), (status = 401, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    _caller: Caller,
) -> ApiResult<Json<Vec<Verification>>> {
    Ok(Json(state.store.verifications().await?))
}
