//! The records the server keeps and the clients display.

use crate::domain::action::Risk;
use crate::domain::level::Level;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use utoipa::ToSchema;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Operator {
    pub name: String,
    pub level: Level,
}

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
}

impl ChangeState {
    pub const ALL: [ChangeState; 7] = [
        ChangeState::PendingApproval,
        ChangeState::Executing,
        ChangeState::Executed,
        ChangeState::Failed,
        ChangeState::Denied,
        ChangeState::Expired,
        ChangeState::Refused,
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
        }
    }

    /// Whether the change is decided for good: nothing may move it any more.
    pub fn is_final(self) -> bool {
        !matches!(self, ChangeState::PendingApproval | ChangeState::Executing)
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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Approval {
    pub approver: String,
    pub level: Level,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    pub at: DateTime<Utc>,
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
    pub approvals_required: Vec<crate::domain::policy::Requirement>,
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
    /// Set on an emergency change: the incident (INC ticket) whose emergency path lets it
    /// through a freeze, a pause or the hours outside the windows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub emergency: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
pub enum Priority {
    P1,
    P2,
    P3,
    P4,
}

impl Priority {
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::P1 => "P1",
            Priority::P2 => "P2",
            Priority::P3 => "P3",
            Priority::P4 => "P4",
        }
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Priority {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_uppercase().as_str() {
            "P1" => Ok(Priority::P1),
            "P2" => Ok(Priority::P2),
            "P3" => Ok(Priority::P3),
            "P4" => Ok(Priority::P4),
            _ => Err(format!("unknown priority '{s}': use P1, P2, P3 or P4")),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Incident {
    pub id: i64,
    pub ticket: String,
    pub priority: Priority,
    pub title: String,
    pub commander: String,
    pub declared_by: String,
    pub declared_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closed_at: Option<DateTime<Utc>>,
}

impl Incident {
    pub fn is_open(&self) -> bool {
        self.closed_at.is_none()
    }
}

/// The post-change verification of an executed change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Verification {
    pub id: i64,
    pub change_id: i64,
    pub target: String,
    pub action: String,
    pub started_at: DateTime<Utc>,
    pub deadline: DateTime<Utc>,
    pub state: crate::domain::verification::VerificationState,
    /// False when the target has no `[[services]]` entry: only the countdown runs.
    pub health_checked: bool,
    pub error_rate_checked: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_error_rate: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sample: Option<crate::domain::verification::Sample>,
    /// The latest error-rate readings, oldest first, for a sparkline.
    #[serde(default)]
    pub recent_error_rates: Vec<Option<f64>>,
    /// Set at the deadline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<crate::domain::verification::Summary>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// The incident an escalation declared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incident: Option<String>,
}

/// A verification with every sample taken.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct VerificationDetail {
    #[serde(flatten)]
    pub verification: Verification,
    pub samples: Vec<crate::domain::verification::Sample>,
}
