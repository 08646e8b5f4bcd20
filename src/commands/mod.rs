//! What each subcommand does; `main.rs` only dispatches here.

pub mod calendar;
pub mod dashboard;
pub mod demo_service;
pub mod scripting;
pub mod server_admin;
