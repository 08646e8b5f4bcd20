//! Deployment windows, freezes and change pauses.

use crate::domain::api::{
    Calendar, CalendarBlock, ErrorBody, FreezeRequest, NextWindow, OpenWindow, PauseRequest,
    WindowStatus,
};
use crate::domain::window::human_duration;
use crate::domain::{Freeze, Pause, WindowKind};
use crate::server::AppState;
use crate::server::api::error::{ApiError, ApiId, ApiJson, ApiQuery, ApiResult};
use crate::server::auth::Caller;
use crate::server::windows as service;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Datelike, Duration, Utc};
use serde::Deserialize;

async fn all_freezes(state: &AppState) -> ApiResult<Vec<Freeze>> {
    Ok(crate::server::calendar::all_freezes(state).await?)
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct CalendarQuery {
    /// Start (RFC 3339); default: this week's Monday 00:00 UTC.
    #[param(value_type = String, format = DateTime, required = false)]
    from: Option<DateTime<Utc>>,
    /// End (RFC 3339); default: seven days after `from`. At most 92 days after `from`.
    #[param(value_type = String, format = DateTime, required = false)]
    to: Option<DateTime<Utc>>,
}

/// Window and freeze blocks between two instants, for a calendar.
#[utoipa::path(get, path = "/api/v1/windows", tag = "windows", security(("bearer" = [])),
    params(CalendarQuery),
    responses((status = 200, body = Calendar), (status = 401, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn calendar(
    State(state): State<AppState>,
    _caller: Caller,
    ApiQuery(q): ApiQuery<CalendarQuery>,
) -> ApiResult<Json<Calendar>> {
    let now = state.clock.now();
    let monday = now.date_naive() - Duration::days(now.weekday().num_days_from_monday() as i64);
    let from = q
        .from
        .unwrap_or_else(|| monday.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc());
    for (name, t) in [("from", Some(from)), ("to", q.to)] {
        if let Some(t) = t
            && !(1970..=9999).contains(&t.year())
        {
            return Err(ApiError::invalid(format!(
                "'{name}' must be between the years 1970 and 9999"
            )));
        }
    }
    let to = q.to.unwrap_or(from + Duration::days(7));
    if to <= from {
        return Err(ApiError::invalid("'to' must be after 'from'"));
    }
    if to - from > Duration::days(92) {
        return Err(ApiError::invalid("the range may span at most 92 days"));
    }
    let mut blocks: Vec<CalendarBlock> = state
        .config
        .windows
        .occurrences(from, to)
        .into_iter()
        .map(|(kind, iv)| CalendarBlock {
            kind: match kind {
                WindowKind::Standard => "standard",
                WindowKind::OffPeak => "off_peak",
            }
            .into(),
            name: kind.label().into(),
            start: iv.start,
            end: iv.end,
            freeze_id: None,
        })
        .collect();
    blocks.extend(
        all_freezes(&state)
            .await?
            .into_iter()
            .filter(|f| f.ends_at > from && f.starts_at < to)
            .map(|f| CalendarBlock {
                kind: "freeze".into(),
                name: f.name,
                start: f.starts_at,
                end: f.ends_at,
                freeze_id: f.id,
            }),
    );
    blocks.sort_by_key(|b| b.start);
    Ok(Json(Calendar {
        from,
        to,
        blocks,
        pause: state.store.pause().await?,
    }))
}

/// What is open now, what opens next, and any freeze or pause in force.
#[utoipa::path(get, path = "/api/v1/windows/current", tag = "windows", security(("bearer" = [])),
    responses((status = 200, body = WindowStatus), (status = 401, body = ErrorBody)))]
pub async fn current(
    State(state): State<AppState>,
    _caller: Caller,
) -> ApiResult<Json<WindowStatus>> {
    let now = state.clock.now();
    let open = state.config.windows.open_at(now);
    let next = state.config.windows.next_opening(now);
    let freeze = all_freezes(&state)
        .await?
        .into_iter()
        .find(|f| f.active_at(now));
    let pause = state.store.pause().await?;
    let mut parts = Vec::new();
    if let Some(f) = &freeze {
        parts.push(format!(
            "FREEZE '{}' until {}",
            f.name,
            f.ends_at.format("%b %-d %H:%M UTC")
        ));
    }
    if let Some(p) = &pause {
        parts.push(format!("CHANGES PAUSED by {}: {}", p.paused_by, p.reason));
    }
    parts.push(match (open, next) {
        (Some((kind, closes)), _) => format!(
            "{} window open, closes in {}",
            kind.label().to_uppercase(),
            human_duration(closes - now)
        ),
        (None, Some((kind, opens))) => format!(
            "outside windows, {kind} opens {} (in {})",
            if opens - now < Duration::hours(24) {
                opens.format("%H:%M").to_string()
            } else {
                opens.format("%a %H:%M").to_string()
            },
            human_duration(opens - now)
        ),
        (None, None) => "outside windows, none configured".into(),
    });
    Ok(Json(WindowStatus {
        now,
        open: open.map(|(kind, closes_at)| OpenWindow { kind, closes_at }),
        next: next.map(|(kind, opens_at)| NextWindow { kind, opens_at }),
        freeze,
        pause,
        summary: parts.join(" · "),
    }))
}

/// Announce a freeze (L3).
#[utoipa::path(post, path = "/api/v1/freezes", tag = "windows", security(("bearer" = [])),
    request_body = FreezeRequest,
    responses((status = 201, body = Freeze), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn add_freeze(
    State(state): State<AppState>,
    Caller(op): Caller,
    ApiJson(req): ApiJson<FreezeRequest>,
) -> ApiResult<(StatusCode, Json<Freeze>)> {
    let f = service::announce_freeze(&state, &op, &req).await?;
    Ok((StatusCode::CREATED, Json(f)))
}

/// Remove a freeze announced over the API (L3). Freezes from the configuration stay.
#[utoipa::path(delete, path = "/api/v1/freezes/{id}", tag = "windows", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Freeze id")),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn remove_freeze(
    State(state): State<AppState>,
    Caller(op): Caller,
    ApiId(id): ApiId,
) -> ApiResult<StatusCode> {
    service::remove_freeze(&state, &op, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Pause all changes but low-risk ones and P1 incident response (L2 and up).
#[utoipa::path(post, path = "/api/v1/pause", tag = "windows", security(("bearer" = [])),
    request_body = PauseRequest,
    responses((status = 201, body = Pause), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn pause(
    State(state): State<AppState>,
    Caller(op): Caller,
    ApiJson(req): ApiJson<PauseRequest>,
) -> ApiResult<(StatusCode, Json<Pause>)> {
    let p = service::pause(&state, &op, &req).await?;
    Ok((StatusCode::CREATED, Json(p)))
}

/// Resume changes (L2 and up).
#[utoipa::path(delete, path = "/api/v1/pause", tag = "windows", security(("bearer" = [])),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 409, body = ErrorBody)))]
pub async fn resume(State(state): State<AppState>, Caller(op): Caller) -> ApiResult<StatusCode> {
    service::resume(&state, &op).await?;
    Ok(StatusCode::NO_CONTENT)
}
