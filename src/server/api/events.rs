use crate::domain::api::ErrorBody;
use crate::server::AppState;
use crate::server::api::error::{ApiError, ApiQuery, ApiResult};
use crate::server::auth::Caller;
use crate::server::events;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::response::sse::{KeepAlive, Sse};
use serde::Deserialize;
use std::time::Duration;

/// Below the idle timeouts of proxies as usually set up (nginx's default `proxy_read_timeout` is
/// 60 s; Debian's stock haproxy.cfg has `timeout server 50s`), so an idle stream is not cut.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct StreamQuery {
    /// Without `Last-Event-ID`: also send up to this many recent events first (at most 500),
    /// e.g. to fill an activity feed.
    #[param(value_type = i64, required = false, minimum = 0, maximum = 500, default = 0)]
    backlog: Option<i64>,
    /// Replay the events after this one, as `Last-Event-ID` does (which wins when both are
    /// sent), for clients that cannot set headers, e.g. a browser's first `EventSource`.
    #[param(value_type = i64, required = false, minimum = 0)]
    after: Option<i64>,
}

/// Server-Sent Events: `id:` is the event's sequence number. The first message is a
/// `stream.ready` event whose id is where the stream starts. A client that sends
/// `Last-Event-ID` (or `?after=`) then receives every event after it, then live ones; without
/// it, only live ones. Proxies are asked not to buffer the stream, and a comment line every 15 s
/// keeps an idle one from timing it out.
///
/// An operator may have 8 streams open at once, and the server a few hundred in all (half its
/// connection cap, at most 512, or `[server] max_event_streams`).
#[utoipa::path(get, path = "/api/v1/events", tag = "events", security(("bearer" = [])),
    params(("Last-Event-ID" = Option<i64>, Header, description = "Replay events after this one"), StreamQuery),
    responses((status = 200, description = "text/event-stream of Event", content_type = "text/event-stream"),
        (status = 401, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 429, description = "This operator already has as many streams open as allowed; close one", body = ErrorBody),
        (status = 503, description = "The server already has as many streams open as it allows; retry later", body = ErrorBody)))]
pub async fn stream(
    State(state): State<AppState>,
    Caller(op): Caller,
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
        None => match q.after {
            Some(n) if n < 0 => return Err(ApiError::invalid("after must be 0 or more")),
            Some(n) => n,
            None => (state.store.event_last_seq().await? - backlog).max(0),
        },
    };
    let permit = state
        .events
        .open_stream(&op.name)
        .map_err(|refused| match refused {
            events::StreamRefused::PerOperator(n) => ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_streams",
                format!(
                    "{} already has {n} event streams open, the most allowed; close one first",
                    op.name
                ),
            ),
            events::StreamRefused::Total(n) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                format!(
                    "the server already has {n} event streams open, the most it allows; retry later"
                ),
            ),
        })?;
    state.metrics.sse_connections.inc();
    let stream = events::stream(state.store.clone(), &state.events, after, permit);
    Ok((
        [
            // nginx buffers responses by default, which would hold events back until its
            // buffer fills; this header turns that off for this response only.
            ("x-accel-buffering", "no"),
            ("cache-control", "no-cache"),
        ],
        Sse::new(stream).keep_alive(KeepAlive::new().interval(KEEP_ALIVE)),
    ))
}
