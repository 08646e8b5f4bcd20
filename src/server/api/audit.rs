use crate::domain::api::{AuditEntry, ErrorBody};
use crate::server::AppState;
use crate::server::api::error::{ApiError, ApiQuery, ApiResult};
use crate::server::auth::Caller;
use axum::Json;
use axum::extract::State;
use serde::Deserialize;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// Entries after this sequence number (default 0).
    #[param(value_type = i64, required = false, minimum = 0, default = 0)]
    after: Option<i64>,
    /// At most this many (default 100, at most 1000).
    #[param(value_type = i64, required = false, minimum = 1, maximum = 1000, default = 100)]
    limit: Option<i64>,
}

/// The audit log, oldest first, with each entry's hash and the hash before it.
#[utoipa::path(get, path = "/api/v1/audit", tag = "audit", security(("bearer" = [])),
    params(AuditQuery),
    responses((status = 200, body = Vec<AuditEntry>), (status = 401, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    _caller: Caller,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> ApiResult<Json<Vec<AuditEntry>>> {
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::invalid("limit must be between 1 and 1000"));
    }
    let after = q.after.unwrap_or(0);
    if after < 0 {
        return Err(ApiError::invalid(
            "after must be 0 or a sequence number from the log",
        ));
    }
    Ok(Json(state.store.audit_list(after, limit).await?))
}
