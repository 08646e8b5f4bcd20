//! The API suite of `tests/all`, the same test files, on PostgreSQL: every server the harness
//! starts gets a fresh database of its own on `CB_TEST_POSTGRES` (default: the local server,
//! trust authentication). `tests/support/db.rs` picks the backend; this file only names the
//! modules. The policy's property tests (`all/policy.rs`) touch no database and run once there.
//!
//! Without a PostgreSQL server, this binary prints that it skipped and passes; with `CI=true` it
//! fails instead (`.ci/run` starts one first).

#[path = "../support/mod.rs"]
mod support;

#[path = "../all/audit.rs"]
mod audit;
#[path = "../all/auth.rs"]
mod auth;
#[path = "../all/calendar.rs"]
mod calendar;
#[path = "../all/changes.rs"]
mod changes;
#[path = "../all/events.rs"]
mod events;
#[path = "../all/input.rs"]
mod input;
#[path = "../all/observers.rs"]
mod observers;
#[path = "../all/proxy.rs"]
mod proxy;
#[path = "../all/replicas.rs"]
mod replicas;
#[path = "../all/restart.rs"]
mod restart;
#[path = "../all/rollback.rs"]
mod rollback;
#[path = "../all/schedule.rs"]
mod schedule;
#[path = "../all/security/mod.rs"]
mod security;
#[path = "../all/system.rs"]
mod system;
#[path = "../all/verification.rs"]
mod verification;
#[path = "../all/webhook.rs"]
mod webhook;
#[path = "../all/windows.rs"]
mod windows;

#[ctor::ctor]
fn on_postgres() {
    // SAFETY: runs before main, while the process has one thread.
    unsafe { std::env::set_var("CB_TEST_BACKEND", "postgres") };
    support::db::require_postgres_or_skip();
}
