//! The records the server keeps and the clients display.

use crate::domain::action::Risk;
use crate::domain::approval::{Approval, Requirement};
use crate::domain::level::Level;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use utoipa::ToSchema;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChangeState {
    PendingApproval,
    Executing,
    Executed,
    Failed,
    Denied,
    Expired,
    Refused,
    /// Taken back by its requester before anyone decided it.
    Withdrawn,
    /// Approved (or needing no approval) and waiting for its `run_at`.
    Scheduled,
    /// A scheduled change that could not start within the grace period after its `run_at`
    /// (the server was down, its approvals came too late): it was not run late.
    Missed,
    /// A scheduled change cancelled by its requester or an L2+ before it ran.
    Cancelled,
}

impl ChangeState {
    pub const ALL: [ChangeState; 11] = [
        ChangeState::PendingApproval,
        ChangeState::Executing,
        ChangeState::Executed,
        ChangeState::Failed,
        ChangeState::Denied,
        ChangeState::Expired,
        ChangeState::Refused,
        ChangeState::Withdrawn,
        ChangeState::Scheduled,
        ChangeState::Missed,
        ChangeState::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ChangeState::PendingApproval => "pending_approval",
            ChangeState::Executing => "executing",
            ChangeState::Executed => "executed",
            ChangeState::Failed => "failed",
            ChangeState::Denied => "denied",
            ChangeState::Expired => "expired",
            ChangeState::Refused => "refused",
            ChangeState::Withdrawn => "withdrawn",
            ChangeState::Scheduled => "scheduled",
            ChangeState::Missed => "missed",
            ChangeState::Cancelled => "cancelled",
        }
    }

    /// Whether the change is decided for good: nothing may move it any more.
    pub fn is_final(self) -> bool {
        !matches!(
            self,
            ChangeState::PendingApproval | ChangeState::Executing | ChangeState::Scheduled
        )
    }
}

impl fmt::Display for ChangeState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ChangeState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ChangeState::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| {
                let all: Vec<&str> = ChangeState::ALL.iter().map(|s| s.as_str()).collect();
                format!("unknown state '{s}': use one of {}", all.join(", "))
            })
    }
}

/// Another change on the same target whose active period overlaps this one's: pending, scheduled
/// (from its `run_at` to the end of its verification), executing or under verification.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Conflict {
    /// The other change.
    pub change_id: i64,
    pub action: String,
    pub target: String,
    pub state: ChangeState,
    /// Who requested the other change.
    pub requested_by: String,
    /// `pending`, `scheduled`, `executing` or `under verification`: what makes it active.
    pub activity: String,
    /// When its active period starts, if it has not yet (a scheduled change's `run_at`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<DateTime<Utc>>,
    /// When its active period ends, if known (the end of its verification).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<DateTime<Utc>>,
    /// The sentence, e.g. "conflicts with #12 restart-pods on checkout (under verification
    /// until 10:45 UTC, by dave)".
    pub message: String,
}

/// What the command printed and how it ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ExecutionOutput {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    /// True when stdout or stderr was cut at the capture limit.
    pub truncated: bool,
    /// True when no command is configured and the built-in simulator stood in.
    pub simulated: bool,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Change {
    pub id: i64,
    pub state: ChangeState,
    pub action: String,
    pub risk: Risk,
    pub ticket: String,
    pub target: String,
    #[schema(value_type = Object)]
    pub params: BTreeMap<String, String>,
    pub reason: String,
    pub requested_by: String,
    pub requested_level: Level,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// A pending change expires, unapproved, at this instant.
    pub expires_at: DateTime<Utc>,
    pub approvals: Vec<Approval>,
    /// What the policy asks for, in words ("L2 or L3 approval", "approval of incident commander carol").
    pub approvals_required: Vec<Requirement>,
    pub warnings: Vec<String>,
    /// Why the change ended denied, expired or refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome_reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<ExecutionOutput>,
    /// Set on a rollback: the change it undoes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_of: Option<i64>,
    /// What the action's capture command printed before the change ran: the value its rollback
    /// restores (`{captured}`), shown so that whoever approves the rollback sees what will run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub captured: Option<String>,
    /// Set on an emergency change: the incident (INC ticket) whose emergency path lets it
    /// through a freeze, a pause or the hours outside the windows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub emergency: Option<String>,
    /// The exact argv the change runs (for a rollback, the rollback's), fixed when it was
    /// requested: what its reviewers approve. Absent when the simulator stands in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// When a scheduled change is to run; absent for a change that runs as soon as it may.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_at: Option<DateTime<Utc>>,
    /// The conflicts the server warned about when the change was requested.
    #[serde(default)]
    pub conflicts: Vec<Conflict>,
}
