use crate::domain::api::Health;
use crate::domain::change::ChangeState;
use crate::server::AppState;
use crate::server::api::error::ApiResult;
use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;

/// Whether this server can serve: it answers, and it reaches its database (so a load balancer
/// takes a replica that lost its database out); and the server's clock (which `serve --now`
/// may have moved).
#[utoipa::path(get, path = "/healthz", tag = "system", responses(
    (status = 200, description = "serving", body = Health),
    (status = 503, description = "the database cannot be reached", body = Health),
))]
pub async fn healthz(State(state): State<AppState>) -> (StatusCode, Json<Health>) {
    let reached = tokio::time::timeout(HEALTH_DB_TIMEOUT, state.store.ping()).await;
    let (status, database) = match reached {
        Ok(Ok(())) => (StatusCode::OK, "ok".to_string()),
        Ok(Err(e)) => (StatusCode::SERVICE_UNAVAILABLE, format!("unreachable: {e}")),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("no answer within {} s", HEALTH_DB_TIMEOUT.as_secs()),
        ),
    };
    let health = Health {
        status: if status == StatusCode::OK {
            "ok"
        } else {
            "unavailable"
        }
        .into(),
        database,
        now: state.clock.now(),
        simulated_clock: state.clock.is_simulated(),
    };
    (status, Json(health))
}

/// A health check waits this long for the database before it says the database is out of reach.
const HEALTH_DB_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Prometheus text format.
pub async fn metrics(State(state): State<AppState>) -> ApiResult<impl IntoResponse> {
    let pending = state
        .store
        .changes_count(ChangeState::PendingApproval)
        .await?;
    let last = state.store.event_last_seq().await?;
    Ok((
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(pending, last, state.executions.load()),
    ))
}
