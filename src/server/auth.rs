//! Bearer tokens: random, shown once, stored as SHA-256, compared in constant time.

use crate::domain::Operator;
use crate::server::AppState;
use crate::server::api::error::ApiError;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// A new token: `cb_` and 64 hex digits (256 random bits).
pub fn new_token() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    Ok(format!("cb_{}", hex::encode(bytes)))
}

pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// The authenticated operator making the request.
pub struct Caller(pub Operator);

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .ok_or_else(|| {
                ApiError::unauthorized(
                    "missing Authorization header: send 'Authorization: Bearer <token>' \
                     (tokens come from 'commandbridge user add')",
                )
            })?;
        let token = header
            .to_str()
            .ok()
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                ApiError::unauthorized("the Authorization header must be 'Bearer <token>'")
            })?;
        let hash = token_hash(token);
        match state.store.operator_by_token_hash(&hash).await? {
            Some((op, stored)) if bool::from(stored.as_bytes().ct_eq(hash.as_bytes())) => {
                Ok(Caller(op))
            }
            _ => Err(ApiError::unauthorized(
                "unknown or revoked token: ask an admin for a new one ('commandbridge user add')",
            )),
        }
    }
}
