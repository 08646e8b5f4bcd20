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

/// What a pending change still needs, e.g. "needs L3" or "needs L2+ + IC alice".
pub fn needs(c: &Change) -> String {
    let missing = approval::unmet(&c.approvals_required, &c.approvals, &c.requested_by);
    let words: Vec<String> = missing.iter().map(|r| short_requirement(r)).collect();
    format!("needs {}", words.join(" + "))
}

pub fn short_requirement(r: &Requirement) -> String {
    match r {
        Requirement::Level { min: Level::L3 } => "L3".into(),
        Requirement::Level { min } => format!("{min}+"),
        Requirement::Commander { name, .. } => format!("IC {name}"),
    }
}
