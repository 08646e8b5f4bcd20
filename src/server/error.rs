//! The one error type of the server's services (changes, windows and incidents, verification
//! outcomes): what went wrong, in the domain's words. It knows nothing of HTTP; the API edge
//! (`api/error.rs`) turns it into a status code and a body, the way omicron's external `Error`
//! becomes an `HttpError` at its edge. Nothing recognises an error by its message text.

/// Why a service refused or failed a request. Every message says what to do instead.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The request itself is wrong (a bad field, an unknown action).
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    /// The caller may not do this (level, own change, not theirs to end).
    #[error("{0}")]
    Forbidden(String),
    /// The state moved on (already decided, already rolled back).
    #[error("{0}")]
    Conflict(String),
    /// A pending change passed its approval time limit.
    #[error("{0}")]
    Expired(String),
    /// Refused by a window, a freeze, a pause or an emergency rule.
    #[error("{0}")]
    Refused(String),
    /// Too many requests of one kind from one operator; the message says when to retry.
    #[error("{0}")]
    RateLimited(String),
    /// Two requests with one Idempotency-Key raced; the first one's change is the answer.
    #[error("a concurrent request used this Idempotency-Key")]
    IdempotencyRace,
    /// The request could not be recorded; retrying it is safe.
    #[error("{0}")]
    Unavailable(String),
    /// The database failed. The edge logs it and tells the caller only that it happened.
    #[error("database error: {0}")]
    Storage(#[from] sqlx::Error),
}

pub type ServiceResult<T> = Result<T, ServiceError>;

impl ServiceError {
    pub fn invalid(m: impl Into<String>) -> ServiceError {
        ServiceError::Invalid(m.into())
    }
    pub fn not_found(m: impl Into<String>) -> ServiceError {
        ServiceError::NotFound(m.into())
    }
    pub fn forbidden(m: impl Into<String>) -> ServiceError {
        ServiceError::Forbidden(m.into())
    }
    pub fn conflict(m: impl Into<String>) -> ServiceError {
        ServiceError::Conflict(m.into())
    }
    pub fn refused(m: impl Into<String>) -> ServiceError {
        ServiceError::Refused(m.into())
    }
    pub fn rate_limited(m: impl Into<String>) -> ServiceError {
        ServiceError::RateLimited(m.into())
    }
}

/// Refuses an observer any `act` (the API edge already did, in `api/observers.rs`; this keeps
/// the services safe for any other caller).
pub fn may(act: crate::domain::Act, op: &crate::domain::Operator) -> ServiceResult<()> {
    act.may(op.level).map_err(ServiceError::Forbidden)
}

/// Free text such as a reason, checked by the domain's rule (`domain/text.rs`).
pub fn required_text(field: &str, value: &str, max: usize) -> ServiceResult<String> {
    crate::domain::text::required_text(field, value, max).map_err(ServiceError::Invalid)
}
