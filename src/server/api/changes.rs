use crate::domain::api::{
    ApproveRequest, CancelRequest, ChangeRequest, DenyRequest, ErrorBody, Preview, RollbackRequest,
    WithdrawRequest,
};
use crate::domain::change::{Change, ChangeState};
use crate::server::AppState;
use crate::server::api::error::{ApiBytes, ApiError, ApiId, ApiJson, ApiQuery, ApiResult};
use crate::server::auth::Caller;
use crate::server::changes as flow;
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde::Deserialize;

/// What would happen to this change now. Records nothing.
#[utoipa::path(post, path = "/api/v1/changes/preview", tag = "changes", security(("bearer" = [])),
    request_body = ChangeRequest,
    responses((status = 200, body = Preview), (status = 401, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn preview(
    State(state): State<AppState>,
    Caller(op): Caller,
    ApiJson(req): ApiJson<ChangeRequest>,
) -> ApiResult<Json<Preview>> {
    Ok(Json(flow::preview(&state, &op, &req).await?))
}

/// Request a change. It runs at once when the policy allows; a command still running after a
/// moment leaves the change `executing`. With `run_at` it is scheduled instead: `scheduled`
/// (or `pending_approval` until approved), run at its time if the policy still allows it then.
/// With `[policy] conflicts = "block"`, a change that conflicts with another on its target is
/// refused (409); otherwise the conflicts are recorded on it.
#[utoipa::path(post, path = "/api/v1/changes", tag = "changes", security(("bearer" = [])),
    request_body = ChangeRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Retries with the same key return the same change")),
    responses((status = 201, body = Change), (status = 200, description = "Replay of an earlier request with the same Idempotency-Key", body = Change),
        (status = 401, body = ErrorBody), (status = 409, description = "Refused by a window, freeze or pause, or by a conflict with `[policy] conflicts = \"block\"`", body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 429, description = "This operator already has as many changes waiting for their time as allowed (a run_at); cancel some", body = ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    Caller(op): Caller,
    headers: HeaderMap,
    ApiJson(req): ApiJson<ChangeRequest>,
) -> ApiResult<(StatusCode, Json<Change>)> {
    let key = match headers.get("idempotency-key") {
        None => None,
        Some(v) => Some(
            std::str::from_utf8(v.as_bytes())
                .ok()
                .filter(|k| (1..=200).contains(&k.len()) && k.bytes().all(|b| b.is_ascii_graphic()))
                .ok_or_else(|| {
                    ApiError::invalid(
                        "Idempotency-Key must be 1 to 200 visible ASCII characters (letters, \
                         digits and punctuation; no spaces, tabs or control characters)",
                    )
                })?,
        ),
    };
    let created = flow::create(&state, &op, &req, key).await?;
    let status = if created.replayed {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, Json(created.change)))
}

/// The most changes one page holds: a page is built in memory, so its size must not be the
/// caller's choice (20,000 changes were 24 MB per request).
pub const MAX_PAGE: i64 = 500;
const DEFAULT_PAGE: i64 = 200;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Only changes in this state, e.g. `pending_approval`.
    #[param(value_type = ChangeState, required = false)]
    state: Option<String>,
    /// At most this many (default 200, at most 500).
    #[param(value_type = i64, required = false, minimum = 1, maximum = 500, default = 200)]
    limit: Option<i64>,
    /// Only changes with an id below this one: the cursor for the next page, as given in the
    /// `Link` header of the previous one.
    #[param(value_type = i64, required = false, minimum = 1)]
    before: Option<i64>,
}

/// Changes, newest first, a page at a time. When more may follow, the `Link` header holds the
/// next page's URL (`rel="next"`); the last page has none.
#[utoipa::path(get, path = "/api/v1/changes", tag = "changes", security(("bearer" = [])),
    params(ListQuery),
    responses((status = 200, body = Vec<Change>,
            headers(("Link" = String, description = "`<URL of the next page>; rel=\"next\"`, absent on the last page"))),
        (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    _caller: Caller,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<(HeaderMap, Json<Vec<Change>>)> {
    let filter = q
        .state
        .as_deref()
        .map(str::parse::<ChangeState>)
        .transpose()
        .map_err(ApiError::invalid)?;
    let limit = q.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::invalid(format!(
            "limit must be between 1 and {MAX_PAGE}; follow the Link header (or pass before=<id>) for more"
        )));
    }
    if q.before.is_some_and(|b| b < 1) {
        return Err(ApiError::invalid("before must be a change id (1 or more)"));
    }
    // One row more than asked says whether a next page exists, so the last page has no link.
    let mut page = state.store.changes(filter, q.before, limit + 1).await?;
    let mut headers = HeaderMap::new();
    if page.len() as i64 > limit {
        page.truncate(limit as usize);
        if let Some(last) = page.last() {
            let state = filter
                .map(|s| format!("&state={}", s.as_str()))
                .unwrap_or_default();
            headers = super::next_page("/api/v1/changes", limit, last.id, &state);
        }
    }
    Ok((headers, Json(page)))
}

/// One change with its approvals and output.
#[utoipa::path(get, path = "/api/v1/changes/{id}", tag = "changes", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Change id")),
    responses((status = 200, body = Change), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn show(
    State(state): State<AppState>,
    _caller: Caller,
    ApiId(id): ApiId,
) -> ApiResult<Json<Change>> {
    state
        .store
        .change(id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no change #{id}")))
}

/// Approve a pending change. The last required approval runs it at once, if the policy still
/// allows it.
#[utoipa::path(post, path = "/api/v1/changes/{id}/approve", tag = "changes", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Change id")), request_body = ApproveRequest,
    responses((status = 200, body = Change), (status = 401, body = ErrorBody),
        (status = 403, description = "Own change, or level too low", body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "Already decided, expired, or refused by the policy", body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn approve(
    State(state): State<AppState>,
    Caller(op): Caller,
    ApiId(id): ApiId,
    ApiBytes(body): ApiBytes,
) -> ApiResult<Json<Change>> {
    // The body is optional: an approval needs no comment.
    let comment = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        serde_json::from_slice::<ApproveRequest>(&body)
            .map_err(|e| ApiError::invalid(format!("the request body is not valid: {e}")))?
            .comment
    };
    Ok(Json(flow::approve(&state, &op, id, comment).await?))
}

/// Withdraw your own pending change (the reason is optional): it ends `withdrawn`.
#[utoipa::path(post, path = "/api/v1/changes/{id}/withdraw", tag = "changes", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Change id")), request_body = WithdrawRequest,
    responses((status = 200, body = Change), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn withdraw(
    State(state): State<AppState>,
    Caller(op): Caller,
    ApiId(id): ApiId,
    ApiJson(body): ApiJson<WithdrawRequest>,
) -> ApiResult<Json<Change>> {
    Ok(Json(
        flow::withdraw(&state, &op, id, body.reason.as_deref()).await?,
    ))
}

/// Cancel a scheduled change, or one waiting for approval with a `run_at` (a reason is
/// required): its requester, or an L2 or L3. It ends `cancelled` and never runs.
#[utoipa::path(post, path = "/api/v1/changes/{id}/cancel", tag = "changes", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Change id")), request_body = CancelRequest,
    responses((status = 200, body = Change), (status = 401, body = ErrorBody),
        (status = 403, description = "Neither its requester nor an L2 or L3", body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "Not scheduled (already started, decided, or without a run_at)", body = ErrorBody),
        (status = 422, description = "No reason given", body = ErrorBody)))]
pub async fn cancel(
    State(state): State<AppState>,
    Caller(op): Caller,
    ApiId(id): ApiId,
    ApiJson(body): ApiJson<CancelRequest>,
) -> ApiResult<Json<Change>> {
    Ok(Json(flow::cancel(&state, &op, id, &body.reason).await?))
}

/// Deny a pending change (a reason is required). The requester's own is recorded as withdrawn.
#[utoipa::path(post, path = "/api/v1/changes/{id}/deny", tag = "changes", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Change id")), request_body = DenyRequest,
    responses((status = 200, body = Change), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn deny(
    State(state): State<AppState>,
    Caller(op): Caller,
    ApiId(id): ApiId,
    ApiJson(body): ApiJson<DenyRequest>,
) -> ApiResult<Json<Change>> {
    Ok(Json(flow::deny(&state, &op, id, &body.reason).await?))
}

/// Roll back an executed change: a linked change that runs the action's rollback command,
/// through the same policy (and the action's rollback level, e.g. L3 for a failover reversal).
#[utoipa::path(post, path = "/api/v1/changes/{id}/rollback", tag = "changes", security(("bearer" = [])),
    params(("id" = i64, Path, description = "The change to roll back")), request_body = RollbackRequest,
    responses((status = 201, body = Change), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "Not executed, manual rollback, or refused by the policy", body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn rollback(
    State(state): State<AppState>,
    Caller(op): Caller,
    ApiId(id): ApiId,
    ApiJson(req): ApiJson<RollbackRequest>,
) -> ApiResult<(StatusCode, Json<Change>)> {
    let created = flow::rollback(&state, &op, id, &req).await?;
    Ok((StatusCode::CREATED, Json(created.change)))
}
