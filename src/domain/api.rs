//! The JSON bodies of the HTTP API, shared by the server and the clients so they cannot drift.

use crate::domain::action::{ActionSpec, ParamSpec, Risk};
use crate::domain::change::Priority;
use crate::domain::level::Level;
use crate::domain::policy::{Outcome, Requirement};
use crate::domain::window::{Freeze, Pause, WindowKind};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RollbackRequest {
    /// Why it is rolled back.
    pub reason: String,
    /// Ticket for the rollback; default: the original change's ticket. Outside the windows,
    /// give the INC ticket of the incident.
    #[serde(default)]
    pub ticket: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OutcomeKind {
    Verified,
    Escalated,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OutcomeRequest {
    pub outcome: OutcomeKind,
    #[serde(default)]
    pub note: Option<String>,
    /// Escalation only: the incident's priority (default P2).
    #[serde(default)]
    pub priority: Option<Priority>,
    /// Escalation only: the incident commander (default: the caller).
    #[serde(default)]
    pub commander: Option<String>,
}

/// Every error the API returns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// A stable code: `unauthorized`, `forbidden`, `not_found`, `conflict`, `refused`, `expired`,
    /// `payload_too_large`, `invalid`, `internal`.
    pub error: String,
    /// What went wrong and what to do about it.
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Me {
    pub name: String,
    pub level: Level,
}

/// A catalog entry with what the caller may do with it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CatalogEntry {
    pub name: String,
    pub risk: Risk,
    pub description: String,
    pub params: Vec<ParamSpec>,
    pub rollback: String,
    /// False when the built-in simulator stands in for a real command.
    pub has_command: bool,
    /// True when a rollback can be run from CommandBridge; false means it is manual.
    pub has_rollback_command: bool,
    /// "run", "needs L2+ approval" or "needs L3 approval", for the caller's level.
    pub you_may: String,
}

impl CatalogEntry {
    /// The catalog entry of `spec` as an operator of `level` sees it.
    pub fn new(spec: &ActionSpec, level: Level) -> CatalogEntry {
        CatalogEntry {
            name: spec.name.clone(),
            risk: spec.risk,
            description: spec.description.clone(),
            params: spec.params.clone(),
            rollback: spec.rollback.clone(),
            has_command: spec.command.is_some(),
            has_rollback_command: spec.can_roll_back(),
            you_may: crate::domain::policy::may_do(spec.risk, level),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangeRequest {
    pub action: String,
    pub ticket: String,
    pub target: String,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub params: BTreeMap<String, serde_json::Value>,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Preview {
    pub decision: Outcome,
    pub reasons: Vec<String>,
    pub approvals_required: Vec<Requirement>,
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApproveRequest {
    #[serde(default)]
    pub comment: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DenyRequest {
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IncidentRequest {
    pub priority: Priority,
    pub title: String,
    pub commander: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FreezeRequest {
    pub name: String,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PauseRequest {
    pub reason: String,
}

/// One block of the calendar.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CalendarBlock {
    /// `standard`, `off_peak` or `freeze`.
    pub kind: String,
    pub name: String,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub freeze_id: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Calendar {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub blocks: Vec<CalendarBlock>,
    /// A change pause, which has no end until someone resumes changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause: Option<Pause>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct OpenWindow {
    pub kind: WindowKind,
    pub closes_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NextWindow {
    pub kind: WindowKind,
    pub opens_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WindowStatus {
    pub now: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open: Option<OpenWindow>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<NextWindow>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub freeze: Option<Freeze>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause: Option<Pause>,
    /// The status line, e.g. "STANDARD window open, closes in 2h13m".
    pub summary: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AuditEntry {
    pub seq: i64,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub kind: String,
    pub subject: String,
    #[schema(value_type = Object)]
    pub detail: serde_json::Value,
    pub prev_hash: String,
    pub hash: String,
}

/// The kind of the first message of every event stream. Its `seq` is the newest event the
/// stream starts after, so a client that connected without `Last-Event-ID` knows where to
/// resume; it is not an event of its own.
pub const STREAM_READY: &str = "stream.ready";

/// A server event, as sent over `GET /events` (the SSE `data:` field).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Event {
    pub seq: i64,
    pub at: DateTime<Utc>,
    /// e.g. `change.requested`, `change.approved`, `change.executed`, `verification.started`.
    pub kind: String,
    pub actor: String,
    /// One line for an activity feed.
    pub summary: String,
    /// The record the event is about (a change, an incident, a freeze…).
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Health {
    pub status: String,
    pub now: DateTime<Utc>,
    /// True when the server runs on a simulated clock (`serve --now`).
    pub simulated_clock: bool,
}
