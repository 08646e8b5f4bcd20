//! CommandBridge: keyboard-first change control for on-call operations.
//!
//! `domain` holds the rules and imports nothing else of ours; `server` and `client` build on it.

pub mod domain;
