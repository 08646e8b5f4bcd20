//! Every integration test in one binary, a module per resource: one link for the whole suite
//! instead of one per file (the layout of omicron's `nexus/tests/test_all.rs`). The dashboard's
//! end-to-end run in tmux (`tests/tui_e2e.rs`) stays a binary of its own: it measures how fast
//! an event reaches the screen, which the rest of the suite running beside it would disturb.
//!
//! The harness is `tests/support/`: the real server in-process on a loopback port
//! (`support/mod.rs`), the real binary as a child process (`support/binary.rs`), and real HTTP
//! endpoints the server checks and calls (`support/fakes.rs`).

#[path = "../support/mod.rs"]
mod support;

mod audit;
mod auth;
mod calendar;
mod changes;
mod cloudwatch;
mod events;
mod input;
mod observers;
mod policy;
mod proxy;
mod replicas;
mod restart;
mod rollback;
mod schedule;
mod security;
mod system;
mod tls;
mod verification;
mod webhook;
mod windows;
