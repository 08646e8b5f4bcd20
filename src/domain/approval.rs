//! Approvals: what a change still needs (the process's approval matrix and the commander's sign-off),
//! who may give it, and whether the approvals given meet it. The requester's own approval never
//! counts.

use crate::domain::action::Risk;
use crate::domain::level::Level;
use crate::domain::operator::Operator;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Approval {
    pub approver: String,
    pub level: Level,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    pub at: DateTime<Utc>,
}

/// One approval a change still needs before it runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Requirement {
    /// An approval by an operator of at least this level (the approval matrix).
    Level { min: Level },
    /// The approval of the incident commander (emergency changes).
    Commander { name: String, incident: String },
}

impl Requirement {
    pub fn describe(&self) -> String {
        match self {
            Requirement::Level { min: Level::L3 } => "L3 approval".to_string(),
            Requirement::Level { min } => format!("{min}+ approval"),
            Requirement::Commander { name, incident } => {
                format!("approval of incident commander {name} ({incident})")
            }
        }
    }

    fn met_by(&self, approval: &Approval) -> bool {
        match self {
            Requirement::Level { min } => approval.level >= *min,
            Requirement::Commander { name, .. } => &approval.approver == name,
        }
    }

    /// Whether `op`'s approval would meet this requirement.
    pub fn can_be_met_by(&self, op: &Operator) -> bool {
        match self {
            Requirement::Level { min } => op.level >= *min,
            Requirement::Commander { name, .. } => &op.name == name,
        }
    }
}

/// The requirements that the approvals given so far do not meet. One approval may meet several
/// (a commander who also holds the required level). The requester's own approvals never count.
pub fn unmet<'r>(
    required: &'r [Requirement],
    approvals: &[Approval],
    requester: &str,
) -> Vec<&'r Requirement> {
    required
        .iter()
        .filter(|req| {
            !approvals
                .iter()
                .any(|a| a.approver != requester && req.met_by(a))
        })
        .collect()
}

/// Why an operator may not approve a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApprovalRefusal {
    /// The requester never approves their own change.
    OwnChange,
    AlreadyApproved,
    /// Nothing this operator could sign for is still missing; the message says who can.
    NotEligible(String),
}

impl ApprovalRefusal {
    pub fn message(&self) -> String {
        match self {
            ApprovalRefusal::OwnChange => {
                "you requested this change, and nobody approves their own change: ask a \
                 reviewer"
                    .into()
            }
            ApprovalRefusal::AlreadyApproved => "you have already approved this change".into(),
            ApprovalRefusal::NotEligible(m) => m.clone(),
        }
    }
}

/// Whether `approver` may add an approval: not the requester, not twice, and only if their
/// approval meets a requirement that is still unmet.
pub fn may_approve(
    required: &[Requirement],
    approvals: &[Approval],
    requester: &str,
    approver: &Operator,
) -> Result<(), ApprovalRefusal> {
    if approver.name == requester {
        return Err(ApprovalRefusal::OwnChange);
    }
    if approvals.iter().any(|a| a.approver == approver.name) {
        return Err(ApprovalRefusal::AlreadyApproved);
    }
    let missing = unmet(required, approvals, requester);
    if missing.iter().any(|r| r.can_be_met_by(approver)) {
        return Ok(());
    }
    let needs: Vec<String> = missing.iter().map(|r| r.describe()).collect();
    Err(ApprovalRefusal::NotEligible(if needs.is_empty() {
        "this change needs no further approval".into()
    } else {
        format!(
            "this change needs {}; you are {} {}",
            needs.join(" and "),
            approver.name,
            approver.level
        )
    }))
}

/// A short phrase for the catalog: what this operator may do with an action of this risk.
pub fn may_do(risk: Risk, level: Level) -> String {
    match risk.approval_needed(level) {
        None => "run".into(),
        Some(Level::L3) => "needs L3 approval".into(),
        Some(min) => format!("needs {min}+ approval"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(name: &str, level: Level) -> Operator {
        Operator {
            name: name.into(),
            level,
        }
    }

    #[test]
    fn approvers() {
        let required = vec![Requirement::Level { min: Level::L3 }];
        let bob = op("bob", Level::L2);
        let carol = op("carol", Level::L3);
        assert_eq!(
            may_approve(&required, &[], "carol", &carol),
            Err(ApprovalRefusal::OwnChange)
        );
        let err = may_approve(&required, &[], "alice", &bob).unwrap_err();
        assert!(
            err.message().contains("needs L3 approval; you are bob L2"),
            "{err:?}"
        );
        assert_eq!(may_approve(&required, &[], "alice", &carol), Ok(()));
        assert_eq!(may_do(Risk::High, Level::L1), "needs L2+ approval");
        assert_eq!(may_do(Risk::Critical, Level::L2), "needs L3 approval");
        assert_eq!(may_do(Risk::Critical, Level::L3), "run");
    }
}
