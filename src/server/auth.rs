//! Bearer tokens: random, shown once, stored as SHA-256, compared in constant time.

use crate::domain::Operator;
use crate::server::AppState;
use crate::server::api::error::ApiError;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};
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
        if let Some(op) = state.tokens.get(&hash) {
            return Ok(Caller(op));
        }
        match state.store.operator_by_token_hash(&hash).await? {
            Some((op, stored)) if bool::from(stored.as_bytes().ct_eq(hash.as_bytes())) => {
                state.tokens.put(hash, op.clone());
                Ok(Caller(op))
            }
            _ => Err(ApiError::unauthorized(
                "unknown or revoked token: ask an admin for a new one ('commandbridge user add')",
            )),
        }
    }
}

/// How long a token, once checked, is trusted without asking the database again. A revocation
/// (`commandbridge user revoke`, which may run in another process) takes effect within this.
pub const TOKEN_CACHE_TTL: Duration = Duration::from_secs(1);

/// Recently checked tokens (by hash): every request carries one, and the lookup is the most
/// expensive statement a request runs.
#[derive(Default)]
pub struct TokenCache {
    map: Mutex<HashMap<String, (Operator, Instant)>>,
}

impl TokenCache {
    fn get(&self, hash: &str) -> Option<Operator> {
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.get(hash)
            .filter(|(_, at)| at.elapsed() < TOKEN_CACHE_TTL)
            .map(|(op, _)| op.clone())
    }

    fn put(&self, hash: String, op: Operator) {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= 10_000 {
            map.retain(|_, (_, at)| at.elapsed() < TOKEN_CACHE_TTL);
        }
        map.insert(hash, (op, Instant::now()));
    }
}
