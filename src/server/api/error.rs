//! The one error type of the API: a status, a stable code and a message that says what to fix.

use crate::domain::api::ErrorBody;
use crate::server::error::ServiceError;
use axum::Json;
use axum::extract::rejection::{BytesRejection, JsonRejection, PathRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// What went wrong inside (a database error), for the server log only: the logging
    /// middleware in `api/mod.rs` writes it, the caller never sees it.
    pub internal: Option<String>,
}

/// The internal cause of a 5xx, carried on the response to the logging middleware.
#[derive(Debug, Clone)]
pub struct InternalCause(pub String);

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            internal: None,
        }
    }
    /// A request the server cannot read at all (a query parameter missing or malformed).
    pub fn bad_request(m: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", m)
    }
    pub fn invalid(m: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", m)
    }
    pub fn unauthorized(m: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", m)
    }
    pub fn forbidden(m: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, "forbidden", m)
    }
    pub fn not_found(m: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", m)
    }
    pub fn conflict(m: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, "conflict", m)
    }
    /// Refused by a window, a freeze, a pause or an emergency rule.
    pub fn refused(m: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, "refused", m)
    }
    /// Too many requests of one kind from one operator; the message says when to retry.
    pub fn rate_limited(m: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", m)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: self.code.to_string(),
            message: self.message,
        };
        let mut response = (self.status, Json(body)).into_response();
        if let Some(cause) = self.internal {
            response.extensions_mut().insert(InternalCause(cause));
        }
        response
    }
}

/// The edge: a service's error becomes a status code, a stable code and its message.
impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> ApiError {
        use ServiceError::*;
        match e {
            Invalid(m) => ApiError::invalid(m),
            NotFound(m) => ApiError::not_found(m),
            Forbidden(m) => ApiError::forbidden(m),
            Conflict(m) => ApiError::conflict(m),
            Expired(m) => ApiError::new(StatusCode::CONFLICT, "expired", m),
            Refused(m) => ApiError::refused(m),
            RateLimited(m) => ApiError::rate_limited(m),
            IdempotencyRace => ApiError::conflict(IdempotencyRace.to_string()),
            Unavailable(m) => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", m),
            Storage(e) => ApiError::from(e),
        }
    }
}

/// Whether a database error is the database being out of reach or overloaded for a moment (a
/// replica lost its connection, PostgreSQL restarts, a lock wait hit the statement timeout), as
/// opposed to a fault: those answer 503 and the client retries; the pool reconnects by itself.
fn transient(e: &sqlx::Error) -> Option<&'static str> {
    use sqlx::Error::*;
    match e {
        PoolTimedOut | PoolClosed | Io(_) | WorkerCrashed | Tls(_) => Some(
            "the server cannot reach its database right now; retry in a moment (it reconnects \
             by itself)",
        ),
        Database(d) => {
            let code = d.code().unwrap_or_default();
            let message = d.message();
            // PostgreSQL: 08 connection, 53 resources, 57 operator intervention (a restart, a
            // statement timeout), 40001/40P01 serialisation and deadlock. SQLite: busy, locked.
            let busy = ["08", "53", "57", "40001", "40P01"]
                .iter()
                .any(|c| code.starts_with(c))
                || message.contains("locked")
                || message.contains("busy");
            busy.then_some("the database is busy; retry in a moment")
        }
        _ => None,
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> ApiError {
        let mut error = match transient(&e) {
            Some(why) => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", why),
            None => ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "the server could not read or write its database; see the server log",
            ),
        };
        error.internal = Some(format!("database error: {e}"));
        error
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> ApiError {
        let status = r.status();
        let text = r.body_text();
        match status {
            StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(
                status,
                "payload_too_large",
                "the request body is too large: the limit is 64 KiB",
            ),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::new(
                status,
                "unsupported_media_type",
                "send the body as JSON with the header Content-Type: application/json",
            ),
            _ => ApiError::invalid(format!("the request body is not valid: {text}")),
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> ApiError {
        ApiError::invalid(format!("the query string is not valid: {}", r.body_text()))
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> ApiError {
        ApiError::not_found(format!(
            "no such resource: {} (ids are numbers)",
            r.body_text()
        ))
    }
}

impl From<BytesRejection> for ApiError {
    fn from(r: BytesRejection) -> ApiError {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                r.status(),
                "payload_too_large",
                "the request body is too large: the limit is 64 KiB",
            )
        } else {
            ApiError::invalid(format!(
                "the request body could not be read: {}",
                r.body_text()
            ))
        }
    }
}

/// A raw body whose rejections answer in the API's error format.
pub struct ApiBytes(pub axum::body::Bytes);

impl<S: Send + Sync> axum::extract::FromRequest<S> for ApiBytes {
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        Ok(ApiBytes(axum::body::Bytes::from_request(req, state).await?))
    }
}

/// `axum::Json` whose rejections answer in the API's error format.
#[derive(axum::extract::FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct ApiJson<T>(pub T);

#[derive(axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct ApiQuery<T>(pub T);

/// The id in a path (`/changes/{id}`): a positive number written plainly. `+1`, `01` or ` 1`
/// would otherwise name change 1 too, and every spelling of an id must be the one the server
/// shows.
pub struct ApiId(pub i64);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for ApiId {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, ApiError> {
        let axum::extract::Path(raw) =
            axum::extract::Path::<String>::from_request_parts(parts, state).await?;
        let plain = !raw.is_empty()
            && raw.len() <= 18
            && raw.bytes().all(|b| b.is_ascii_digit())
            && !raw.starts_with('0');
        match raw.parse::<i64>() {
            Ok(id) if plain => Ok(ApiId(id)),
            _ => Err(ApiError::not_found(format!(
                "no such resource: '{}' is not an id (ids are positive numbers of at most 18 \
                 digits, written plainly, e.g. 12)",
                raw.chars().take(40).collect::<String>()
            ))),
        }
    }
}

/// Answers unknown routes in the API's error format.
pub async fn no_route(uri: axum::http::Uri) -> ApiError {
    ApiError::not_found(format!(
        "no route {}: see /api/v1/openapi.json for the API",
        uri.path()
    ))
}

/// Answers a known route called with the wrong method in the API's error format.
pub async fn wrong_method(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!(
            "{} is not allowed on {}: see /api/v1/openapi.json for the methods it takes",
            method,
            uri.path()
        ),
    )
}
