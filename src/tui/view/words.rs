//! The words the dashboard shows for risk and approval requirements (never colour alone). The
//! reducer's status lines use them too, so a requirement reads the same everywhere.

use crate::domain::approval::{self, Requirement};
use crate::domain::change::Change;
use crate::domain::{Level, Risk};

/// Risk as a word, for tables.
pub fn risk_word(r: Risk) -> &'static str {
    match r {
        Risk::Low => "low",
        Risk::Medium => "medium",
        Risk::High => "HIGH",
        Risk::Critical => "CRITICAL",
    }
}

/// What a pending change still needs, e.g. "needs L3", "needs L2+ + IC alice", or for a rule of
/// several approvers its progress, "needs 1 of 2 L3 approvals: carol".
pub fn needs(c: &Change) -> String {
    let missing = approval::unmet(&c.approvals_required, &c.approvals, &c.requested_by);
    let words: Vec<String> = missing
        .iter()
        .map(|r| match r {
            Requirement::Level { count, .. } if *count > 1 => {
                r.progress(&c.approvals, &c.requested_by)
            }
            _ => short_requirement(r),
        })
        .collect();
    format!("needs {}", words.join(" + "))
}

pub fn short_requirement(r: &Requirement) -> String {
    match r {
        Requirement::Level {
            min: Level::L3,
            count: 1,
        } => "L3".into(),
        Requirement::Level { min, count: 1 } => format!("{min}+"),
        Requirement::Level {
            min: Level::L3,
            count,
        } => format!("{count}×L3"),
        Requirement::Level { min, count } => format!("{count}×{min}+"),
        Requirement::Commander { name, .. } => format!("IC {name}"),
    }
}
