//! The rules of the change-management process (`docs/change-management-process.md`, "the
//! process" in comments), as pure functions and plain data.
//!
//! Nothing in here does I/O, reads the clock or knows about HTTP or SQL: the server and the
//! clients both import it, and its tests need nothing but values.

pub mod action;
pub mod api;
pub mod approval;
pub mod calendar;
pub mod change;
pub mod incident;
pub mod level;
pub mod operator;
pub mod policy;
pub mod schedule;
pub mod text;
pub mod ticket;
pub mod verification;
pub mod window;

pub use action::{ActionSpec, ParamKind, ParamSpec, Risk};
pub use approval::{Approval, Requirement};
pub use change::{Change, ChangeState};
pub use incident::{Incident, Priority};
pub use level::{Act, Level};
pub use operator::Operator;
pub use policy::{Decision, Outcome, PolicyInput};
pub use ticket::{Ticket, TicketKind};
pub use verification::Verification;
pub use window::{Freeze, Pause, Schedule, WindowKind, WindowSpec};
