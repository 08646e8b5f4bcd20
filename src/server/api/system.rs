use crate::domain::api::Health;
use crate::domain::change::ChangeState;
use crate::server::AppState;
use crate::server::api::error::ApiResult;
use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

/// Liveness, and the server's clock (which `serve --now` may have moved).
#[utoipa::path(get, path = "/healthz", tag = "system", responses((status = 200, body = Health)))]
pub async fn healthz(State(state): State<AppState>) -> Json<Health> {
    Json(Health {
        status: "ok".into(),
        now: state.clock.now(),
        simulated_clock: state.clock.is_simulated(),
    })
}

/// Prometheus text format.
pub async fn metrics(State(state): State<AppState>) -> ApiResult<impl IntoResponse> {
    let pending = state
        .store
        .changes_count(ChangeState::PendingApproval)
        .await?;
    let last = state.store.event_last_seq().await?;
    Ok((
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(pending, last),
    ))
}
