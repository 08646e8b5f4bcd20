use crate::domain::api::ErrorBody;
use crate::server::AppState;
use crate::server::api::error::{ApiError, ApiQuery, ApiResult};
use crate::server::auth::Caller;
use crate::server::events;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use axum::response::sse::{KeepAlive, Sse};
use serde::Deserialize;
use std::time::Duration;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct StreamQuery {
    /// Without `Last-Event-ID`: also send up to this many recent events first (at most 500),
    /// e.g. to fill an activity feed.
    #[param(value_type = i64, required = false, minimum = 0, maximum = 500, default = 0)]
    backlog: Option<i64>,
}

/// Server-Sent Events: `id:` is the event's sequence number. The first message is a
/// `stream.ready` event whose id is where the stream starts. A client that sends
/// `Last-Event-ID` then receives every event after it, then live ones; without it, only live
/// ones.
#[utoipa::path(get, path = "/api/v1/events", tag = "events", security(("bearer" = [])),
    params(("Last-Event-ID" = Option<i64>, Header, description = "Replay events after this one"), StreamQuery),
    responses((status = 200, description = "text/event-stream of Event", content_type = "text/event-stream"),
        (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn stream(
    State(state): State<AppState>,
    _caller: Caller,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<StreamQuery>,
) -> ApiResult<impl IntoResponse> {
    let backlog = q.backlog.unwrap_or(0);
    if !(0..=500).contains(&backlog) {
        return Err(ApiError::invalid("backlog must be between 0 and 500"));
    }
    let after = match headers.get("last-event-id") {
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse::<i64>().ok())
            .filter(|n| *n >= 0)
            .ok_or_else(|| ApiError::invalid("Last-Event-ID must be an event sequence number"))?,
        None => (state.store.last_event_seq().await? - backlog).max(0),
    };
    state.metrics.sse_connections.inc();
    let stream = events::stream(state.store.clone(), state.events.clone(), after);
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}
