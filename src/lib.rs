//! CommandBridge: keyboard-first change control for on-call operations.
//!
//! `domain` holds the rules and imports nothing else of ours; `server` and `client` build on it
//! and never on each other.

pub mod cli;
pub mod client;
pub mod commands;
pub mod config;
pub mod domain;
pub mod private_fs;
pub mod server;
pub mod tls;
pub mod tui;
