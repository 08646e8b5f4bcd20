use crate::domain::api::{CatalogEntry, ErrorBody};
use crate::domain::policy::may_do;
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
            .map(|a| CatalogEntry {
                name: a.name.clone(),
                risk: a.risk,
                description: a.description.clone(),
                params: a.params.clone(),
                rollback: a.rollback.clone(),
                has_command: a.command.is_some(),
                has_rollback_command: a.can_roll_back(),
                you_may: may_do(a.risk, op.level),
            })
            .collect(),
    )
}
