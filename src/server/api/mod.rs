//! The HTTP API: one file per resource. The OpenAPI document is generated from the handlers'
//! annotations as the router is built, so it cannot drift from the routes.

pub mod actions;
pub mod audit;
pub mod changes;
pub mod error;
pub mod events;
pub mod incidents;
pub mod me;
pub mod system;
pub mod verifications;
pub mod windows;

use crate::server::AppState;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
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
        .routes(routes!(windows::calendar))
        .routes(routes!(windows::current))
        .routes(routes!(windows::add_freeze))
        .routes(routes!(windows::remove_freeze))
        .routes(routes!(windows::pause, windows::resume))
        .routes(routes!(incidents::declare, incidents::list))
        .routes(routes!(audit::list))
        .routes(routes!(events::stream))
        .routes(routes!(verifications::list))
        .routes(routes!(verifications::show))
        .routes(routes!(verifications::decide))
        .routes(routes!(changes::rollback))
        .routes(routes!(system::healthz))
        .split_for_parts();
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
        count_responses,
    ))
    .with_state(state)
}

async fn count_responses(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let res = next.run(req).await;
    state.metrics.count_status(res.status().as_u16());
    res
}
