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
    /// Approvals by `count` distinct operators of at least this level, never the requester: the
    /// approval matrix (one), or the stricter rule of `[approvals.<risk>]` in the server config.
    Level {
        min: Level,
        #[serde(default = "one", skip_serializing_if = "is_one")]
        #[schema(default = 1, minimum = 1, maximum = 5)]
        count: u8,
    },
    /// The approval of the incident commander (emergency changes).
    Commander { name: String, incident: String },
}

fn one() -> u8 {
    1
}

fn is_one(n: &u8) -> bool {
    *n == 1
}

/// "L3" or "L2+": who may give a level approval.
fn level_words(min: Level) -> String {
    match min {
        Level::L3 => "L3".into(),
        min => format!("{min}+"),
    }
}

impl Requirement {
    pub fn describe(&self) -> String {
        match self {
            Requirement::Level { min, count: 1 } => format!("{} approval", level_words(*min)),
            Requirement::Level { min, count } => {
                format!("{count} {} approvals", level_words(*min))
            }
            Requirement::Commander { name, incident } => {
                format!("approval of incident commander {name} ({incident})")
            }
        }
    }

    /// The approvals (never the requester's) that count towards this requirement.
    fn counted<'a>(&self, approvals: &'a [Approval], requester: &str) -> Vec<&'a Approval> {
        approvals
            .iter()
            .filter(|a| a.approver != requester)
            .filter(|a| match self {
                Requirement::Level { min, .. } => a.level >= *min,
                Requirement::Commander { name, .. } => &a.approver == name,
            })
            .collect()
    }

    fn needed(&self) -> usize {
        match self {
            Requirement::Level { count, .. } => usize::from(*count).max(1),
            Requirement::Commander { .. } => 1,
        }
    }

    /// How far the approvals given are: "1 of 2 L3 approvals: carol".
    pub fn progress(&self, approvals: &[Approval], requester: &str) -> String {
        let got: Vec<&str> = self
            .counted(approvals, requester)
            .iter()
            .map(|a| a.approver.as_str())
            .collect();
        let of = match self {
            Requirement::Level { min, .. } => format!("{} approvals", level_words(*min)),
            Requirement::Commander { name, .. } => format!("approval of commander {name}"),
        };
        if got.is_empty() {
            format!("0 of {} {of}", self.needed())
        } else {
            format!(
                "{} of {} {of}: {}",
                got.len().min(self.needed()),
                self.needed(),
                got.join(", ")
            )
        }
    }

    /// Whether `op`'s approval would meet this requirement.
    pub fn can_be_met_by(&self, op: &Operator) -> bool {
        match self {
            Requirement::Level { min, .. } => op.level >= *min,
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
        .filter(|req| req.counted(approvals, requester).len() < req.needed())
        .collect()
}

/// A stricter approval rule for one risk (`[approvals.<risk>]` in the server config): `count`
/// distinct approvers of at least `min_level`, never the requester, for every change of that
/// risk. Without one, the process's table applies (one approval of the level it names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalRule {
    pub count: u8,
    #[serde(deserialize_with = "approver_level")]
    pub min_level: Level,
}

/// An approval rule's level: L1, L2 or L3. An observer approves nothing, so a rule naming
/// observers could never be met; the config is refused naming the key instead.
fn approver_level<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Level, D::Error> {
    let text = String::deserialize(d)?;
    match text.parse::<Level>() {
        Ok(Level::Observer) => Err(serde::de::Error::custom(
            "min_level must be L1, L2 or L3: observers approve nothing",
        )),
        Ok(level) => Ok(level),
        Err(e) => Err(serde::de::Error::custom(e)),
    }
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
    // Not even as the commander an emergency change names: observers change nothing.
    if approver.level.is_observer() {
        return Err(ApprovalRefusal::NotEligible(
            crate::domain::level::Act::Approve.observer_refusal(),
        ));
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
    if level.is_observer() {
        return "nothing (observer)".into();
    }
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
        let required = vec![Requirement::Level {
            min: Level::L3,
            count: 1,
        }];
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

    #[test]
    fn observers_approve_nothing_and_name_no_rule() {
        // Even as the commander an emergency change names, an observer's approval is refused.
        let required = vec![Requirement::Commander {
            name: "olga".into(),
            incident: "INC-1".into(),
        }];
        let err = may_approve(&required, &[], "alice", &op("olga", Level::Observer)).unwrap_err();
        assert!(
            err.message().starts_with("observers cannot approve"),
            "{err:?}"
        );
        assert_eq!(may_do(Risk::Low, Level::Observer), "nothing (observer)");
        let rule: Result<ApprovalRule, _> = toml::from_str("count = 2\nmin_level = \"observer\"");
        assert!(
            rule.unwrap_err()
                .to_string()
                .contains("observers approve nothing"),
            "an approval rule may not name observers"
        );
        let rule: ApprovalRule = toml::from_str("count = 2\nmin_level = \"L3\"").unwrap();
        assert_eq!(rule.min_level, Level::L3);
    }
}
