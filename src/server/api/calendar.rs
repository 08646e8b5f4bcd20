//! The calendar outside the dashboard: the state at an instant, the iCalendar feed and its
//! secret feed URLs. The work is in `server/calendar.rs`.

use crate::domain::api::ErrorBody;
use crate::domain::calendar::{CalendarState, Feed, FeedCreated, FeedRequest};
use crate::server::AppState;
use crate::server::api::error::{ApiError, ApiId, ApiJson, ApiQuery, ApiResult};
use crate::server::auth::{Caller, FeedReader};
use crate::server::calendar as service;
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use chrono::{DateTime, Datelike, Utc};
use serde::Deserialize;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AtQuery {
    /// The instant to ask about: RFC 3339 (e.g. `2026-12-07T22:30:00Z`), or `now` for the
    /// server's clock.
    #[param(value_type = String, required = true, example = "2026-12-07T22:30:00Z")]
    time: Option<String>,
}

const TIME_FORMAT: &str = "an RFC 3339 instant such as 2026-12-07T22:30:00Z (or \
                           2026-12-07T23:30:00+01:00), or 'now'";

/// The `time` parameter, or a 400 that names it and the format it takes.
fn parse_time(raw: Option<&str>, now: DateTime<Utc>) -> ApiResult<DateTime<Utc>> {
    let raw = raw
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "the query parameter 'time' is required: {TIME_FORMAT}"
            ))
        })?;
    if raw.eq_ignore_ascii_case("now") {
        return Ok(now);
    }
    let t = DateTime::parse_from_rfc3339(raw)
        .map_err(|e| {
            ApiError::bad_request(format!(
                "the query parameter 'time' ('{}') is not valid ({e}): use {TIME_FORMAT}",
                raw.chars().take(40).collect::<String>()
            ))
        })?
        .with_timezone(&Utc);
    // The answer names times after `t` (the window's end, the next transition, up to 14 days on):
    // 9999 would let them fall in the year 10000, which RFC 3339 cannot write.
    if !(1970..=9998).contains(&t.year()) {
        return Err(ApiError::bad_request(
            "the query parameter 'time' must be between the years 1970 and 9998",
        ));
    }
    Ok(t)
}

/// What the policy would say at an instant, like AWS Change Calendar's GetCalendarState: the
/// window open, any freeze or pause in force, per risk what a planned (CHG) change requested by
/// the caller at that instant would be told, and the next transition.
#[utoipa::path(get, path = "/api/v1/windows/at", tag = "windows", security(("bearer" = [])),
    params(AtQuery),
    responses((status = 200, body = CalendarState),
        (status = 400, description = "'time' is missing or not an RFC 3339 instant", body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn at(
    State(state): State<AppState>,
    Caller(op): Caller,
    ApiQuery(q): ApiQuery<AtQuery>,
) -> ApiResult<Json<CalendarState>> {
    let t = parse_time(q.time.as_deref(), state.clock.now())?;
    Ok(Json(service::state_at(&state, &op, t).await?))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FeedQuery {
    /// A feed secret from `POST /calendar/feeds`, for calendar apps that cannot send a bearer
    /// header. It grants nothing but this feed.
    #[param(required = false)]
    #[allow(dead_code)] // read by the `FeedReader` extractor; here for the document
    feed: Option<String>,
}

/// The calendar as iCalendar (RFC 5545): the windows, freezes and scheduled changes (the first
/// 500, then an event saying more follow) of the next eight weeks from the server's clock, with
/// UIDs stable across fetches and times in UTC.
/// Authenticated by a bearer token or by `?feed=SECRET`.
#[utoipa::path(get, path = "/api/v1/calendar.ics", tag = "calendar",
    security(("bearer" = []), ("feed_secret" = [])),
    params(FeedQuery),
    responses((status = 200, description = "The feed", content_type = "text/calendar", body = String),
        (status = 401, body = ErrorBody)))]
pub async fn ics(
    State(state): State<AppState>,
    _reader: FeedReader,
) -> ApiResult<impl IntoResponse> {
    let body = service::feed(&state).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/calendar; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "inline; filename=\"commandbridge.ics\"",
            ),
            // The URL carries a secret: no shared cache keeps the answer.
            (header::CACHE_CONTROL, "private, no-store"),
        ],
        body,
    ))
}

/// Create a feed URL for calendar apps. The secret is shown in this answer only; only its
/// SHA-256 is stored. Audited. An operator has at most 20 active (not revoked) feeds; the 21st
/// is refused with 429 until they revoke one.
#[utoipa::path(post, path = "/api/v1/calendar/feeds", tag = "calendar", security(("bearer" = [])),
    request_body = FeedRequest,
    responses((status = 201, body = FeedCreated), (status = 401, body = ErrorBody),
        (status = 422, body = ErrorBody),
        (status = 429, description = "The caller already has 20 active feeds: revoke one first", body = ErrorBody)))]
pub async fn create_feed(
    State(state): State<AppState>,
    Caller(op): Caller,
    ApiJson(req): ApiJson<FeedRequest>,
) -> ApiResult<(StatusCode, Json<FeedCreated>)> {
    let created = service::create_feed(&state, &op, &req.label).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct FeedsQuery {
    /// At most this many (default 200, at most 500).
    #[param(value_type = i64, required = false, minimum = 1, maximum = 500, default = 200)]
    limit: Option<i64>,
    /// Only feeds with an id below this one: the cursor for the next page, as given in the
    /// `Link` header of the previous one.
    #[param(value_type = i64, required = false, minimum = 1)]
    before: Option<i64>,
}

/// Feed URLs, revoked ones too (never their secrets), newest first, a page at a time (at most
/// 500). When more may follow, the `Link` header holds the next page's URL (`rel="next"`).
#[utoipa::path(get, path = "/api/v1/calendar/feeds", tag = "calendar", security(("bearer" = [])),
    params(FeedsQuery),
    responses((status = 200, body = Vec<Feed>,
            headers(("Link" = String, description = "`<URL of the next page>; rel=\"next\"`, absent on the last page"))),
        (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn feeds(
    State(state): State<AppState>,
    _caller: Caller,
    ApiQuery(q): ApiQuery<FeedsQuery>,
) -> ApiResult<(HeaderMap, Json<Vec<Feed>>)> {
    let limit = q.limit.unwrap_or(service::DEFAULT_FEEDS_PAGE);
    let (page, more) = service::feeds(&state, q.before, limit).await?;
    let headers = match (more, page.last()) {
        (true, Some(last)) => super::next_page("/api/v1/calendar/feeds", limit, last.id, ""),
        _ => HeaderMap::new(),
    };
    Ok((headers, Json(page)))
}

/// Revoke a feed URL (its creator, or an L3): its secret is refused from now on. Audited.
#[utoipa::path(delete, path = "/api/v1/calendar/feeds/{id}", tag = "calendar", security(("bearer" = [])),
    params(("id" = i64, Path, description = "The feed's id")),
    responses((status = 200, body = Feed), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "Already revoked", body = ErrorBody)))]
pub async fn revoke_feed(
    State(state): State<AppState>,
    Caller(op): Caller,
    ApiId(id): ApiId,
) -> ApiResult<Json<Feed>> {
    Ok(Json(service::revoke_feed(&state, &op, id).await?))
}
