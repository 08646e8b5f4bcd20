use crate::domain::api::{ErrorBody, Me};
use crate::server::auth::Caller;
use axum::Json;

/// Who the token belongs to.
#[utoipa::path(get, path = "/api/v1/me", tag = "operators", security(("bearer" = [])),
    responses((status = 200, body = Me), (status = 401, body = ErrorBody)))]
pub async fn me(Caller(op): Caller) -> Json<Me> {
    Json(Me {
        name: op.name,
        level: op.level,
    })
}
