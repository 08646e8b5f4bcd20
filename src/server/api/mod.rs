//! The HTTP API: one file per resource. The OpenAPI document is generated from the handlers'
//! annotations as the router is built, so it cannot drift from the routes.

pub mod actions;
pub mod audit;
pub mod calendar;
pub mod changes;
pub mod error;
pub mod events;
pub mod incidents;
pub mod me;
pub mod observers;
pub mod system;
pub mod verifications;
pub mod windows;

use crate::server::AppState;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::HeaderMap;
use axum::middleware::{self, Next};
use axum::response::Response;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Request bodies above this get 413.
pub const BODY_LIMIT: usize = 64 * 1024;

#[derive(OpenApi)]
#[openapi(
    info(title = "CommandBridge", description = "Change control for on-call operations"),
    modifiers(&BearerAuth)
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        // The calendar feed's secret (`server/calendar.rs`): good for GET /calendar.ics only.
        components.add_security_scheme(
            "feed_secret",
            SecurityScheme::ApiKey(utoipa::openapi::security::ApiKey::Query(
                utoipa::openapi::security::ApiKeyValue::new("feed"),
            )),
        );
    }
}

pub fn router(state: AppState) -> Router {
    let (api, doc) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(me::me))
        .routes(routes!(actions::list))
        .routes(routes!(changes::preview))
        .routes(routes!(changes::create, changes::list))
        .routes(routes!(changes::show))
        .routes(routes!(changes::approve))
        .routes(routes!(changes::deny))
        .routes(routes!(changes::withdraw))
        .routes(routes!(changes::cancel))
        .routes(routes!(windows::calendar))
        .routes(routes!(windows::current))
        .routes(routes!(calendar::at))
        .routes(routes!(calendar::ics))
        .routes(routes!(calendar::create_feed, calendar::feeds))
        .routes(routes!(calendar::revoke_feed))
        .routes(routes!(windows::add_freeze))
        .routes(routes!(windows::remove_freeze))
        .routes(routes!(windows::pause, windows::resume))
        .routes(routes!(incidents::declare, incidents::list))
        .routes(routes!(incidents::close))
        .routes(routes!(audit::list))
        .routes(routes!(events::stream))
        .routes(routes!(verifications::list))
        .routes(routes!(verifications::show))
        .routes(routes!(verifications::decide))
        .routes(routes!(changes::rollback))
        .routes(routes!(system::healthz))
        .split_for_parts();
    // Every API route, read or write: observers' writes stop here (`observers.rs`), before any
    // handler reads a body. Routes added below are reads outside the API (the document, metrics).
    let api = api.route_layer(middleware::from_fn_with_state(
        state.clone(),
        observers::refuse_writes,
    ));
    let mut doc = doc;
    document_body_errors(&mut doc);
    document_observer_refusal(&mut doc);
    let doc = std::sync::Arc::new(doc);
    api.route(
        "/api/v1/openapi.json",
        axum::routing::get(move || {
            let doc = doc.clone();
            async move { axum::Json(doc.as_ref().clone()) }
        }),
    )
    .route("/metrics", axum::routing::get(system::metrics))
    .fallback(error::no_route)
    .method_not_allowed_fallback(error::wrong_method)
    .layer(DefaultBodyLimit::max(BODY_LIMIT))
    .layer(middleware::from_fn_with_state(
        state.clone(),
        observe_responses,
    ))
    .with_state(state)
}

/// A documented error response: an `ErrorBody` under `description`.
fn error(description: &str) -> utoipa::openapi::RefOr<utoipa::openapi::Response> {
    use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
    RefOr::T(
        ResponseBuilder::new()
            .description(description)
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("ErrorBody")))
                    .build(),
            )
            .build(),
    )
}

/// Every operation that writes (POST, PUT, PATCH, DELETE) in the document.
fn write_operations(
    doc: &mut utoipa::openapi::OpenApi,
) -> impl Iterator<Item = &mut utoipa::openapi::path::Operation> {
    doc.paths.paths.values_mut().flat_map(|item| {
        [
            &mut item.post,
            &mut item.put,
            &mut item.patch,
            &mut item.delete,
        ]
        .into_iter()
        .flatten()
    })
}

/// Every operation that takes a body can answer 413 (over [`BODY_LIMIT`]) and 415 (not sent as
/// JSON): the extractors in `error.rs` produce both for every handler, so they are documented
/// here for every handler, in one place, rather than in each annotation.
fn document_body_errors(doc: &mut utoipa::openapi::OpenApi) {
    for op in write_operations(doc).filter(|op| op.request_body.is_some()) {
        let responses = &mut op.responses.responses;
        responses
            .entry("413".into())
            .or_insert_with(|| error("The body is over the 64 KiB limit"));
        responses
            .entry("415".into())
            .or_insert_with(|| error("The body is missing or not sent as application/json"));
    }
}

/// Every write operation answers 403 to an observer (`observers.rs`), whatever else it
/// documents; said here once, like the body errors above.
fn document_observer_refusal(doc: &mut utoipa::openapi::OpenApi) {
    for op in write_operations(doc) {
        op.responses
            .responses
            .entry("403".into())
            .or_insert_with(|| error("Not allowed for this operator (observers change nothing)"));
    }
}

/// Counts every response by status, and logs the internal cause of a 5xx (a database error),
/// which the caller is not shown: logging lives here, not in the error conversions.
async fn observe_responses(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let (method, path) = (req.method().clone(), req.uri().path().to_string());
    let res = next.run(req).await;
    state.metrics.count_status(res.status().as_u16());
    if let Some(error::InternalCause(cause)) = res.extensions().get() {
        tracing::error!(%method, %path, status = res.status().as_u16(), error = %cause, "request failed");
    }
    res
}

/// The headers of a page of a list read newest first by id (`/changes`, `/calendar/feeds`) that
/// has more after it: `Link` to the next page, which starts below `last_id`. `extra` is the rest
/// of the query (`&state=…`), kept so the next page lists the same things.
fn next_page(path: &str, limit: i64, last_id: i64, extra: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    let link = format!("<{path}?limit={limit}&before={last_id}{extra}>; rel=\"next\"");
    if let Ok(v) = link.parse() {
        headers.insert(axum::http::header::LINK, v);
    }
    headers
}
