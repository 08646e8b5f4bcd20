//! The rules of the change-management process, as pure functions and plain data.
//!
//! Nothing in here does I/O, reads the clock or knows about HTTP or SQL: the server and the
//! clients both import it, and its tests need nothing but values.

pub mod action;
pub mod api;
pub mod change;
pub mod level;
pub mod policy;
pub mod text;
pub mod ticket;
pub mod verification;
pub mod window;

pub use action::{ActionSpec, ParamKind, ParamSpec, Risk};
pub use change::{Approval, Change, ChangeState, Incident, Operator, Priority, Verification};
pub use level::Level;
pub use policy::{Decision, Outcome, PolicyInput, Requirement};
pub use ticket::{Ticket, TicketKind};
pub use window::{Freeze, Pause, Schedule, WindowKind, WindowSpec};
