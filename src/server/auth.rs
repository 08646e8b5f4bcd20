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

/// A new calendar feed secret: `cbf_` and 64 hex digits. It is kept apart from operators'
/// tokens (its own table, `store/calendar.rs`), so as a bearer token it names no operator (401
/// everywhere), and [`FeedReader`] accepts it on the feed alone.
pub fn new_feed_secret() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    Ok(format!("cbf_{}", hex::encode(bytes)))
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

/// Who reads the calendar feed: an operator by bearer token, as on every other route, or a
/// calendar app by the feed secret in `?feed=` (apps cannot send a header). A revoked secret is
/// refused from the commit of its revocation on: feeds are read seldom, so no cache.
pub enum FeedReader {
    Operator(Operator),
    Feed(crate::domain::calendar::Feed),
}

#[derive(serde::Deserialize)]
struct FeedQuery {
    feed: Option<String>,
}

impl FromRequestParts<AppState> for FeedReader {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if parts
            .headers
            .contains_key(axum::http::header::AUTHORIZATION)
        {
            let Caller(op) = Caller::from_request_parts(parts, state).await?;
            return Ok(FeedReader::Operator(op));
        }
        let secret = axum::extract::Query::<FeedQuery>::try_from_uri(&parts.uri)
            .ok()
            .and_then(|q| q.0.feed)
            .filter(|s| !s.trim().is_empty())
            .ok_or_else(|| {
                ApiError::unauthorized(
                    "send 'Authorization: Bearer <token>', or use a feed URL with ?feed=SECRET \
                     (from 'commandbridge calendar feed-url')",
                )
            })?;
        let hash = token_hash(secret.trim());
        match state.store.calendar_feed_by_secret_hash(&hash).await? {
            Some((feed, stored)) if bool::from(stored.as_bytes().ct_eq(hash.as_bytes())) => {
                Ok(FeedReader::Feed(feed))
            }
            _ => Err(ApiError::unauthorized(
                "unknown or revoked feed secret: create a new feed URL with \
                 'commandbridge calendar feed-url'",
            )),
        }
    }
}
