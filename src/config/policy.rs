//! What the change policy reads from the configuration: the action catalog (`[[actions]]`), the
//! stricter approval rules by risk (`[approvals.<risk>]`) and how conflicting changes are treated
//! (`[policy]`). These are the rules operators argue about and reviewers read, so their checks
//! (names, params, command placeholders, approval counts) and the lookups the services use sit
//! together, apart from the server's sockets and the verifier's data sources.

use super::ServerConfig;
use crate::domain::ActionSpec;
use crate::domain::approval::ApprovalRule;
use serde::Deserialize;
use std::collections::{BTreeMap, HashSet};

/// `[policy]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySection {
    /// `warn` (default): a change whose active period overlaps another's on the same target is
    /// recorded with the conflict, which its reviewers see; `block`: it is refused (409).
    #[serde(default)]
    pub conflicts: ConflictMode,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum ConflictMode {
    #[default]
    Warn,
    Block,
}

impl TryFrom<String> for ConflictMode {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        match s.as_str() {
            "warn" => Ok(ConflictMode::Warn),
            "block" => Ok(ConflictMode::Block),
            other => Err(format!(
                "policy.conflicts = \"{}\" is not a mode: use \"warn\" (record and show \
                 conflicts) or \"block\" (refuse a conflicting change)",
                other.chars().take(32).collect::<String>()
            )),
        }
    }
}

impl ServerConfig {
    /// The stricter approval rule for `risk`, if the configuration has one.
    pub fn approval_rule(&self, risk: crate::domain::Risk) -> Option<&ApprovalRule> {
        self.approvals.get(risk.as_str())
    }

    pub fn action(&self, name: &str) -> Option<&ActionSpec> {
        self.actions.iter().find(|a| a.name == name)
    }
}

/// `[[actions]]`: names unique and well formed, params consistent, and a command that uses no
/// placeholder the action cannot fill.
pub(super) fn check_actions(actions: &[ActionSpec]) -> Result<(), String> {
    let mut names = HashSet::new();
    for (i, a) in actions.iter().enumerate() {
        let key = format!("actions[{i}] ({})", a.name);
        if crate::domain::action::validate_target(&a.name).is_err() {
            return Err(format!(
                "{key}.name must be lowercase letters, digits and '-', e.g. scale-service"
            ));
        }
        if !names.insert(a.name.as_str()) {
            return Err(format!("{key}.name is used twice"));
        }
        if a.timeout_secs == 0 {
            return Err(format!("{key}.timeout_secs must be at least 1"));
        }
        for p in &a.params {
            if let (Some(lo), Some(hi)) = (p.min, p.max)
                && lo > hi
            {
                return Err(format!("{key}.params.{}: min is above max", p.name));
            }
            if p.name == "target" {
                return Err(format!("{key}.params: 'target' is reserved"));
            }
            if p.pattern.is_some() && p.kind != crate::domain::ParamKind::String {
                return Err(format!(
                    "{key}.params.{}.pattern applies to kind = \"string\" only",
                    p.name
                ));
            }
            p.compiled_pattern()
                .map_err(|e| format!("{key}.params.{}.{e}", p.name))?;
        }
        if let Some(argv) = &a.command {
            if argv.first().is_none_or(|p| p.is_empty()) {
                return Err(format!("{key}.command must start with a program name"));
            }
            for arg in argv {
                for placeholder in placeholders(arg) {
                    if placeholder != "target" && !a.params.iter().any(|p| p.name == placeholder) {
                        return Err(format!(
                            "{key}.command uses {{{placeholder}}}, which is neither {{target}} \
                             nor one of its params"
                        ));
                    }
                }
            }
        }
    }
    Ok(())
}

/// `[approvals.<risk>]`: only for risks that need approval, and a count a team can meet.
pub(super) fn check_approvals(approvals: &BTreeMap<String, ApprovalRule>) -> Result<(), String> {
    for (risk, rule) in approvals {
        if !["medium", "high", "critical"].contains(&risk.as_str()) {
            return Err(format!(
                "approvals.{risk}: a rule is for medium, high or critical risk (low-risk \
                 changes need no approval)"
            ));
        }
        if !(1..=5).contains(&rule.count) {
            return Err(format!("approvals.{risk}.count must be from 1 to 5"));
        }
    }
    Ok(())
}

fn placeholders(arg: &str) -> impl Iterator<Item = &str> {
    arg.split('{')
        .skip(1)
        .filter_map(|rest| rest.split_once('}').map(|(name, _)| name))
}

#[cfg(test)]
mod tests {
    use super::ConflictMode;
    use crate::config::{ServerConfig, with};

    #[test]
    fn conflict_settings_default_and_name_their_key() {
        let cfg = ServerConfig::embedded_default();
        assert_eq!(cfg.policy.conflicts, ConflictMode::Warn);
        let cfg = with("[policy]\nconflicts = \"block\"\n").expect("block is a mode");
        assert_eq!(cfg.policy.conflicts, ConflictMode::Block);
        let err = with("[policy]\nconflicts = \"blok\"\n").unwrap_err();
        assert!(
            err.contains("policy.conflicts = \"blok\"") && err.contains("\"block\""),
            "{err}"
        );
    }

    #[test]
    fn action_errors_name_the_key() {
        let err = with(
            "[[actions]]\nname = \"x\"\nrisk = \"severe\"\ndescription = \"\"\nrollback = \"\"\n",
        )
        .unwrap_err();
        assert!(err.contains("severe") && err.contains("risk"), "{err}");
        let err = with(
            "[[actions]]\nname = \"x\"\nrisk = \"low\"\ndescription = \"\"\nrollback = \"\"\n\
             command = [\"echo\", \"{nope}\"]\n",
        )
        .unwrap_err();
        assert!(err.contains("{nope}"), "{err}");
        let err = with(
            "[[actions]]\nname = \"pull-logs\"\nrisk = \"low\"\ndescription = \"\"\nrollback = \"\"\n",
        )
        .unwrap_err();
        assert!(err.contains("used twice"), "{err}");
    }
}
