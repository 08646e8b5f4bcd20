//! The action catalog: what can be run, how risky it is, and how its input is checked.

use crate::domain::level::Level;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use utoipa::ToSchema;

/// Risk tier of an action, as in the process's approval table.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Risk {
    Low,
    Medium,
    High,
    Critical,
}

impl Risk {
    pub const ALL: [Risk; 4] = [Risk::Low, Risk::Medium, Risk::High, Risk::Critical];

    pub fn as_str(self) -> &'static str {
        match self {
            Risk::Low => "low",
            Risk::Medium => "medium",
            Risk::High => "high",
            Risk::Critical => "critical",
        }
    }

    /// The process's approval matrix: the level whose approval a requester of `requester` level
    /// needs before a change of this risk runs, or `None` when they execute directly. Observers
    /// request nothing (the services refuse them first); their row is L1's so that this table
    /// never lets them further than an L1.
    pub fn approval_needed(self, requester: Level) -> Option<Level> {
        match (self, requester) {
            (Risk::Low | Risk::Medium, _) => None,
            (Risk::High, Level::Observer | Level::L1) => Some(Level::L2),
            (Risk::High, _) => None,
            (Risk::Critical, Level::Observer | Level::L1 | Level::L2) => Some(Level::L3),
            (Risk::Critical, Level::L3) => None,
        }
    }
}

impl fmt::Display for Risk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Risk {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Risk::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| format!("unknown risk '{s}': use low, medium, high or critical"))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ParamKind {
    Integer,
    Ip,
    String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ParamSpec {
    pub name: String,
    pub kind: ParamKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<i64>,
    /// For a string: a regular expression the whole value must match (anchor it with `^…$`),
    /// e.g. `^[a-z]{2}-[a-z]+-[0-9]$` for a region. Without one, a string still has the safe
    /// default shape (see [`ParamSpec::check`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
}

/// One entry of the catalog, as configured in `[[actions]]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ActionSpec {
    pub name: String,
    pub risk: Risk,
    pub description: String,
    #[serde(default)]
    pub params: Vec<ParamSpec>,
    /// The documented rollback procedure (the process's "Rollback Procedures").
    pub rollback: String,
    /// argv template; `None` runs the built-in simulator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
    /// argv template run before the change; its output is kept as `{captured}` for the
    /// rollback (e.g. the replica count before scaling).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capture_command: Option<Vec<String>>,
    /// argv template that undoes the change; `None` means the rollback is manual.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_command: Option<Vec<String>>,
    /// The level a rollback needs (e.g. L3 for a failover reversal); a requester below it needs
    /// an approval from that level.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_level: Option<Level>,
}

fn default_timeout() -> u64 {
    120
}

/// Longest string parameter accepted; argv arguments have no business being longer.
const MAX_STRING_PARAM: usize = 256;

/// A target names a service or host: `^[a-z0-9][a-z0-9._-]{0,62}$`.
pub fn validate_target(target: &str) -> Result<(), String> {
    let bytes = target.as_bytes();
    let ok = !bytes.is_empty()
        && bytes.len() <= 63
        && (bytes[0].is_ascii_lowercase() || bytes[0].is_ascii_digit())
        && bytes.iter().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
        });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "target '{}' is not valid: use 1 to 63 characters of a-z, 0-9, '.', '_' or '-', \
             starting with a letter or digit",
            target.chars().take(80).collect::<String>()
        ))
    }
}

impl ActionSpec {
    /// Checks the caller's parameters against the spec and returns them as the strings that
    /// fill the command template. Unknown and missing parameters are errors.
    pub fn validate_params(
        &self,
        given: &BTreeMap<String, serde_json::Value>,
    ) -> Result<BTreeMap<String, String>, String> {
        if let Some(unknown) = given
            .keys()
            .find(|k| !self.params.iter().any(|p| &p.name == *k))
        {
            let known: Vec<&str> = self.params.iter().map(|p| p.name.as_str()).collect();
            return Err(if known.is_empty() {
                format!(
                    "{} takes no parameters, but '{unknown}' was given",
                    self.name
                )
            } else {
                format!(
                    "{} has no parameter '{unknown}'; its parameters are: {}",
                    self.name,
                    known.join(", ")
                )
            });
        }
        let mut out = BTreeMap::new();
        for spec in &self.params {
            let value = given.get(&spec.name).ok_or_else(|| {
                format!(
                    "parameter '{}' is required for {} ({})",
                    spec.name,
                    self.name,
                    spec.describe()
                )
            })?;
            out.insert(spec.name.clone(), spec.check(value)?);
        }
        Ok(out)
    }

    /// Fills the argv template. Placeholders only ever fill parts of single arguments, so a
    /// value can never become an extra argument or reach a shell.
    pub fn render_command(
        &self,
        target: &str,
        params: &BTreeMap<String, String>,
    ) -> Option<Vec<String>> {
        render(self.command.as_ref()?, target, params)
    }
}

impl ActionSpec {
    /// The argv a change of this action will run, as its reviewers see it: the command with
    /// `{target}` and its params filled in; for a rollback (`Some(captured)`, what the original's
    /// capture command printed) the rollback command. `None`: the simulator stands in.
    pub fn planned_argv(
        &self,
        target: &str,
        params: &BTreeMap<String, String>,
        rollback: Option<Option<&str>>,
    ) -> Option<Vec<String>> {
        let Some(captured) = rollback else {
            return self.render_command(target, params);
        };
        let mut params = params.clone();
        if let Some(c) = captured {
            params.insert("captured".into(), c.to_string());
        }
        render(self.rollback_command.as_ref()?, target, &params)
    }

    /// Whether CommandBridge can run the rollback: a rollback command, or the simulator when
    /// the action has no command at all. Otherwise the rollback is manual.
    pub fn can_roll_back(&self) -> bool {
        self.rollback_command.is_some() || self.command.is_none()
    }
}

/// An argv as a reader would type it in a POSIX shell: plain words as they are, others in single
/// quotes, so a reviewer sees where each argument begins and ends. (It is never run by a shell.)
pub fn display_argv(argv: &[String]) -> String {
    argv.iter()
        .map(|a| {
            let plain = !a.is_empty()
                && a.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_@%+=:,./-".contains(c));
            if plain {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Fills an argv template; `params` may also hold `captured`.
pub fn render(
    argv: &[String],
    target: &str,
    params: &BTreeMap<String, String>,
) -> Option<Vec<String>> {
    Some(argv.iter().map(|arg| fill(arg, target, params)).collect())
}

fn fill(template: &str, target: &str, params: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        match after.find('}') {
            Some(close) => {
                let key = &after[..close];
                match (key, params.get(key)) {
                    ("target", _) => out.push_str(target),
                    (_, Some(v)) => out.push_str(v),
                    _ => out.push_str(&rest[open..open + close + 2]),
                }
                rest = &after[close + 1..];
            }
            None => {
                out.push_str(&rest[open..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

impl ParamSpec {
    fn describe(&self) -> String {
        match (self.kind, self.min, self.max) {
            (ParamKind::Integer, Some(lo), Some(hi)) => format!("an integer from {lo} to {hi}"),
            (ParamKind::Integer, Some(lo), None) => format!("an integer of at least {lo}"),
            (ParamKind::Integer, None, Some(hi)) => format!("an integer of at most {hi}"),
            (ParamKind::Integer, None, None) => "an integer".into(),
            (ParamKind::Ip, ..) => {
                "an IP address or CIDR such as 203.0.113.7 or 198.51.100.0/24".into()
            }
            (ParamKind::String, ..) => match &self.pattern {
                Some(p) => format!("text matching {p}"),
                None => format!(
                    "text of 1 to {MAX_STRING_PARAM} characters, not starting with '-', without \
                     control or invisible characters"
                ),
            },
        }
    }

    /// The compiled `pattern`, or why it does not compile (checked when the catalog loads).
    pub fn compiled_pattern(&self) -> Result<Option<regex::Regex>, String> {
        self.pattern
            .as_deref()
            // Anchored whole: an unanchored `[a-z]+` would otherwise accept `--x=y…` around it.
            .map(|p| {
                regex::Regex::new(&format!("^(?:{p})$"))
                    .map_err(|e| format!("pattern {p:?} is not valid: {e}"))
            })
            .transpose()
    }

    /// The value as the text that fills the command template. Strict on purpose: what a reviewer
    /// approves is exactly what runs, so nothing is trimmed, re-read or guessed.
    fn check(&self, value: &serde_json::Value) -> Result<String, String> {
        let shown = truncate(&value.to_string(), 80);
        let bad = |why: &str| {
            format!(
                "parameter '{}' must be {}{why}, got {shown}",
                self.name,
                self.describe(),
            )
        };
        match self.kind {
            ParamKind::Integer => {
                let n = match value {
                    serde_json::Value::Number(n) => n.as_i64(),
                    serde_json::Value::String(s) if is_plain_integer(s) => s.parse::<i64>().ok(),
                    serde_json::Value::String(_) => {
                        return Err(bad(
                            " written plainly (digits with an optional leading '-', no spaces, \
                             '+' or leading zeros)",
                        ));
                    }
                    _ => None,
                }
                .ok_or_else(|| bad(""))?;
                if self.min.is_some_and(|lo| n < lo) || self.max.is_some_and(|hi| n > hi) {
                    return Err(bad(""));
                }
                Ok(n.to_string())
            }
            ParamKind::Ip => {
                let s = value.as_str().ok_or_else(|| bad(""))?;
                if s.parse::<IpAddr>().is_ok() || s.parse::<ipnet::IpNet>().is_ok() {
                    Ok(s.to_string())
                } else {
                    Err(bad(" (no spaces around it)"))
                }
            }
            ParamKind::String => {
                let s = match value {
                    serde_json::Value::String(s) => s.clone(),
                    serde_json::Value::Number(n) => n.to_string(),
                    _ => return Err(bad("")),
                };
                // The safe shape always holds; an action's own pattern narrows it further.
                crate::domain::text::argument_shape(&s, MAX_STRING_PARAM)
                    .map_err(|why| bad(&format!(" ({why})")))?;
                if let Some(re) = self.compiled_pattern()?
                    && !re.is_match(&s)
                {
                    return Err(bad(""));
                }
                Ok(s)
            }
        }
    }
}

/// `-12`, `0`, `400`: what an integer looks like when typed plainly.
fn is_plain_integer(s: &str) -> bool {
    let digits = s.strip_prefix('-').unwrap_or(s);
    !digits.is_empty()
        && digits.len() <= 18
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0'))
        && s != "-0"
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(max).collect::<String>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argv_is_shown_with_each_argument_visible() {
        let argv: Vec<String> = ["kubectl", "scale", "--replicas=3", "a b", "it's", ""]
            .map(String::from)
            .into();
        assert_eq!(
            display_argv(&argv),
            r"kubectl scale --replicas=3 'a b' 'it'\''s' ''"
        );
    }
    use serde_json::json;

    fn scale() -> ActionSpec {
        ActionSpec {
            name: "scale-service".into(),
            risk: Risk::Medium,
            description: "Change the replica count".into(),
            params: vec![ParamSpec {
                name: "replicas".into(),
                kind: ParamKind::Integer,
                min: Some(0),
                max: Some(500),
                pattern: None,
            }],
            rollback: "Scale back".into(),
            command: Some(vec![
                "kubectl".into(),
                "scale".into(),
                "deployment/{target}".into(),
                "--replicas={replicas}".into(),
            ]),
            timeout_secs: 120,
            capture_command: None,
            rollback_command: None,
            rollback_level: None,
        }
    }

    #[test]
    fn approval_matrix_is_the_seed_table() {
        use Level::*;
        let table = [
            (Risk::Low, [None, None, None]),
            (Risk::Medium, [None, None, None]),
            (Risk::High, [Some(L2), None, None]),
            (Risk::Critical, [Some(L3), Some(L3), None]),
        ];
        for (risk, row) in table {
            for (level, expected) in [L1, L2, L3].into_iter().zip(row) {
                assert_eq!(risk.approval_needed(level), expected, "{risk} by {level}");
            }
        }
    }

    #[test]
    fn targets() {
        for ok in ["checkout", "a", "web-01.eu_west", "0cache", &"a".repeat(63)] {
            assert!(validate_target(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "-x",
            ".x",
            "Checkout",
            "a b",
            "a;rm",
            "$(id)",
            &"a".repeat(64),
            "ä",
        ] {
            assert!(validate_target(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn params_are_checked_and_rendered_into_single_arguments() {
        let spec = scale();
        let params = spec
            .validate_params(&[("replicas".to_string(), json!(3))].into())
            .unwrap();
        assert_eq!(
            spec.render_command("checkout", &params).unwrap(),
            ["kubectl", "scale", "deployment/checkout", "--replicas=3"]
        );
        for bad in [
            json!(501),
            json!(-1),
            json!("3; rm -rf /"),
            json!(1.5),
            json!(null),
        ] {
            let err = spec
                .validate_params(&[("replicas".to_string(), bad.clone())].into())
                .unwrap_err();
            assert!(err.contains("from 0 to 500"), "{bad}: {err}");
        }
        assert!(
            spec.validate_params(&BTreeMap::new())
                .unwrap_err()
                .contains("required")
        );
        let err = spec
            .validate_params(&[("replica".to_string(), json!(3))].into())
            .unwrap_err();
        assert!(err.contains("replicas"), "{err}");
    }

    #[test]
    fn ip_params_accept_addresses_and_cidrs_only() {
        let spec = ParamSpec {
            name: "ip".into(),
            kind: ParamKind::Ip,
            min: None,
            max: None,
            pattern: None,
        };
        for ok in [
            "203.0.113.7",
            "198.51.100.0/24",
            "2001:db8::1",
            "2001:db8::/32",
        ] {
            assert_eq!(spec.check(&json!(ok)).unwrap(), ok);
        }
        for bad in [
            json!("203.0.113.300"),
            json!("10.0.0.0/33"),
            json!("example.com"),
            json!(" 203.0.113.7"),
            json!(7),
        ] {
            assert!(spec.check(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn integers_are_taken_only_when_written_plainly() {
        let spec = &scale().params[0];
        for (ok, n) in [
            (json!(3), "3"),
            (json!("3"), "3"),
            (json!("0"), "0"),
            (json!(0), "0"),
        ] {
            assert_eq!(spec.check(&ok).unwrap(), n, "{ok}");
        }
        for bad in [" 3 ", "+3", "03", "3 ", "", "-0", "0x3", "3e0", "٣"] {
            let err = spec.check(&json!(bad)).unwrap_err();
            assert!(err.contains("written plainly"), "{bad:?}: {err}");
        }
    }

    fn string_param(pattern: Option<&str>) -> ParamSpec {
        ParamSpec {
            name: "region".into(),
            kind: ParamKind::String,
            min: None,
            max: None,
            pattern: pattern.map(str::to_string),
        }
    }

    #[test]
    fn strings_cannot_become_options_or_hide_characters() {
        let spec = string_param(None);
        for ok in ["eu-west-1", "v2.3", "a b", "été"] {
            assert_eq!(spec.check(&json!(ok)).unwrap(), ok);
        }
        for (bad, says) in [
            ("--kubeconfig=/etc/shadow", "leading '-'"),
            ("-n", "leading '-'"),
            ("eu\u{2028}west", "U+2028"),
            ("eu\u{202E}tsew", "U+202E"),
            ("eu\u{200B}west", "U+200B"),
            ("\u{FEFF}eu", "U+FEFF"),
            ("eu\twest", "U+0009"),
            ("", "1 to 256"),
        ] {
            let err = spec.check(&json!(bad)).unwrap_err();
            assert!(
                err.contains("parameter 'region'") && err.contains(says),
                "{bad:?}: {err}"
            );
        }
        assert!(spec.check(&json!("x".repeat(257))).is_err());
    }

    #[test]
    fn an_action_may_declare_its_own_pattern() {
        let spec = string_param(Some("^[a-z]{2}-[a-z]+-[0-9]$"));
        assert_eq!(spec.check(&json!("eu-west-1")).unwrap(), "eu-west-1");
        for bad in ["eu-west-12", "EU-west-1", "eu-west-1\n", "--eu-west-1"] {
            let err = spec.check(&json!(bad)).unwrap_err();
            assert!(
                err.contains("text matching ^[a-z]{2}-[a-z]+-[0-9]$"),
                "{bad:?}: {err}"
            );
        }
        assert!(string_param(Some("(")).compiled_pattern().is_err());
    }

    #[test]
    fn unknown_placeholders_are_left_alone() {
        let p = BTreeMap::new();
        assert_eq!(fill("{nope}-{target}-{", "t", &p), "{nope}-t-{");
    }
}
