//! Observers read everything and change nothing (issue 12). The refusal lives here, once, at the
//! edge: a layer on every API route answers any request that is not a read (GET, HEAD, OPTIONS)
//! with 403 "observers cannot …" when its token is an observer's, before the handler runs and
//! so before its body or path is read. A new endpoint is covered without doing anything; the
//! table test in `tests/all/observers.rs` walks every operation of the OpenAPI document to keep
//! it so. The services ask [`Act::may`] again, for any caller that is not this router.

use crate::domain::Act;
use crate::server::AppState;
use crate::server::api::error::ApiError;
use crate::server::auth::Caller;
use axum::extract::{FromRequestParts, MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// The route layer (see `router` in `api/mod.rs`).
pub async fn refuse_writes(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        return next.run(req).await;
    }
    let (mut parts, body) = req.into_parts();
    // A missing or bad token is left to the handler's own `Caller`, which says what to fix; a
    // good one is cached, so the handler's second look costs no query.
    if let Ok(Caller(op)) = Caller::from_request_parts(&mut parts, &state).await
        && op.level.is_observer()
    {
        let path = parts.extensions.get::<MatchedPath>().map(|p| p.as_str());
        let act = act(&parts.method, path.unwrap_or_default());
        return ApiError::forbidden(act.observer_refusal()).into_response();
    }
    next.run(Request::from_parts(parts, body)).await
}

/// What a write route does, for the refusal's words. A route missing here is still refused
/// (as [`Act::Other`]); this table only chooses the sentence.
fn act(method: &Method, path: &str) -> Act {
    let post = *method == Method::POST;
    match path.strip_prefix("/api/v1").unwrap_or(path) {
        "/changes" if post => Act::Request,
        "/changes/preview" => Act::Preview,
        "/changes/{id}/approve" => Act::Approve,
        "/changes/{id}/deny" => Act::Deny,
        "/changes/{id}/withdraw" => Act::Withdraw,
        "/changes/{id}/rollback" => Act::Rollback,
        "/verifications/{id}/outcome" => Act::Outcome,
        "/freezes" if post => Act::Freeze,
        "/freezes/{id}" => Act::RemoveFreeze,
        "/pause" if post => Act::Pause,
        "/pause" => Act::Resume,
        "/incidents" if post => Act::DeclareIncident,
        "/incidents/{id}/close" => Act::CloseIncident,
        "/changes/{id}/cancel" => Act::Cancel,
        "/calendar/feeds" | "/calendar/feeds/{id}" => Act::CalendarFeed,
        _ => Act::Other,
    }
}
