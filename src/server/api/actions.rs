use crate::domain::api::{CatalogEntry, ErrorBody};
use crate::server::AppState;
use crate::server::auth::Caller;
use axum::Json;
use axum::extract::State;

/// The action catalog, with what the caller may do with each action.
#[utoipa::path(get, path = "/api/v1/actions", tag = "actions", security(("bearer" = [])),
    responses((status = 200, body = Vec<CatalogEntry>), (status = 401, body = ErrorBody)))]
pub async fn list(State(state): State<AppState>, Caller(op): Caller) -> Json<Vec<CatalogEntry>> {
    Json(
        state
            .config
            .actions
            .iter()
            .map(|a| CatalogEntry::new(a, op.level))
            .collect(),
    )
}
