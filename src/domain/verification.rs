//! Post-change verification: the process's "monitor for 15 minutes, verify health checks, check
//! error rates, update the ticket, close or escalate", as states and pure rules.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use utoipa::ToSchema;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum VerificationState {
    /// Inside the window, every recent check passing (or none configured).
    Watching,
    /// The latest sample failed; back to watching when a later one passes.
    Degraded,
    /// The deadline passed: someone must mark it verified or escalate.
    AwaitingOutcome,
    Verified,
    Escalated,
}

impl VerificationState {
    pub const ALL: [VerificationState; 5] = [
        VerificationState::Watching,
        VerificationState::Degraded,
        VerificationState::AwaitingOutcome,
        VerificationState::Verified,
        VerificationState::Escalated,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            VerificationState::Watching => "watching",
            VerificationState::Degraded => "degraded",
            VerificationState::AwaitingOutcome => "awaiting_outcome",
            VerificationState::Verified => "verified",
            VerificationState::Escalated => "escalated",
        }
    }

    /// Still being sampled.
    pub fn is_active(self) -> bool {
        matches!(
            self,
            VerificationState::Watching | VerificationState::Degraded
        )
    }

    /// Closed for good.
    pub fn is_closed(self) -> bool {
        matches!(
            self,
            VerificationState::Verified | VerificationState::Escalated
        )
    }
}

impl fmt::Display for VerificationState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for VerificationState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        VerificationState::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| format!("unknown verification state '{s}'"))
    }
}

/// One health check: 2xx within the time limit passes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HealthCheck {
    pub ok: bool,
    /// e.g. "200 in 12 ms", "503 in 4 ms", "no answer within 5 s".
    pub detail: String,
}

/// One error-rate reading against its maximum.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RateCheck {
    /// `None` when the query returned no data or could not be read.
    pub value: Option<f64>,
    pub max: f64,
    pub ok: bool,
    pub detail: String,
    /// Where the rate came from: "Prometheus", "CloudWatch AWS/ApplicationELB …".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

impl RateCheck {
    pub fn reading(value: f64, max: f64) -> RateCheck {
        let ok = value.is_finite() && value <= max;
        RateCheck {
            value: Some(value),
            max,
            ok,
            detail: if ok {
                format!("{value:.4} ≤ {max}")
            } else {
                format!("{value:.4} above the maximum {max}")
            },
            source: None,
        }
    }

    /// The metric could not be read: that is a failing check, since nobody can say the change
    /// is healthy.
    pub fn unreadable(max: f64, why: String) -> RateCheck {
        RateCheck {
            value: None,
            max,
            ok: false,
            detail: why,
            source: None,
        }
    }

    /// The source answered, but there was no traffic to take a rate of: nothing failed, and
    /// the summary counts it.
    pub fn no_data(max: f64, why: String) -> RateCheck {
        RateCheck {
            value: None,
            max,
            ok: true,
            detail: why,
            source: None,
        }
    }

    pub fn is_no_data(&self) -> bool {
        self.ok && self.value.is_none()
    }

    pub fn from_source(mut self, source: String) -> RateCheck {
        self.source = Some(source);
        self
    }
}

/// Everything one poll found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Sample {
    pub at: DateTime<Utc>,
    /// When the poll was due; `at - due` is how late it came.
    pub due: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<HealthCheck>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_rate: Option<RateCheck>,
}

impl Sample {
    pub fn ok(&self) -> bool {
        self.health.as_ref().is_none_or(|h| h.ok) && self.error_rate.as_ref().is_none_or(|r| r.ok)
    }
}

/// The state after a sample: degraded on a failure, watching again on a pass.
pub fn after_sample(state: VerificationState, sample: &Sample) -> VerificationState {
    match state {
        VerificationState::Watching | VerificationState::Degraded => {
            if sample.ok() {
                VerificationState::Watching
            } else {
                VerificationState::Degraded
            }
        }
        other => other,
    }
}

/// What the window showed, for the deadline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Summary {
    pub samples: usize,
    pub failing_samples: usize,
    /// `None` when no health check is configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_all_passed: Option<bool>,
    /// `None` when no error-rate check is configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_rate_exceeded: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_error_rate: Option<f64>,
    /// One line: "health passed 30/30; error rate peaked at 0.0021 (max 0.01)".
    pub text: String,
}

pub fn summarize(samples: &[Sample], health_checked: bool, rate_checked: bool) -> Summary {
    let failing = samples.iter().filter(|s| !s.ok()).count();
    let health: Vec<&HealthCheck> = samples.iter().filter_map(|s| s.health.as_ref()).collect();
    let rates: Vec<&RateCheck> = samples
        .iter()
        .filter_map(|s| s.error_rate.as_ref())
        .collect();
    let peak = rates
        .iter()
        .filter_map(|r| r.value)
        .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))));
    let health_all_passed =
        health_checked.then(|| !health.is_empty() && health.iter().all(|h| h.ok));
    let error_rate_exceeded = rate_checked.then(|| rates.iter().any(|r| !r.ok));
    let mut parts = Vec::new();
    if samples.is_empty() && (health_checked || rate_checked) {
        parts.push("no samples were taken".to_string());
    }
    if health_checked {
        let passed = health.iter().filter(|h| h.ok).count();
        parts.push(format!("health passed {passed}/{}", health.len()));
    }
    if rate_checked {
        let max = rates.first().map(|r| r.max).unwrap_or_default();
        let no_traffic = rates.iter().filter(|r| r.is_no_data()).count();
        parts.push(match (peak, error_rate_exceeded) {
            (Some(p), Some(true)) => format!("error rate exceeded its max {max} (peak {p:.4})"),
            (Some(p), _) => format!("error rate peaked at {p:.4} (max {max})"),
            (None, _) if no_traffic > 0 && no_traffic == rates.len() => {
                "error rate: no traffic in any sample".into()
            }
            (None, _) => "error rate never readable".into(),
        });
        if no_traffic > 0 && no_traffic < rates.len() {
            parts.push(format!(
                "{no_traffic} of {} samples had no traffic",
                rates.len()
            ));
        }
    }
    if !health_checked && !rate_checked {
        parts.push("no checks configured".into());
    }
    Summary {
        samples: samples.len(),
        failing_samples: failing,
        health_all_passed,
        error_rate_exceeded,
        peak_error_rate: peak,
        text: parts.join("; "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(health: Option<bool>, rate: Option<f64>) -> Sample {
        let t: DateTime<Utc> = "2026-11-24T10:00:00Z".parse().unwrap();
        Sample {
            at: t,
            due: t,
            health: health.map(|ok| HealthCheck {
                ok,
                detail: String::new(),
            }),
            error_rate: rate.map(|v| RateCheck::reading(v, 0.01)),
        }
    }

    #[test]
    fn a_failing_sample_degrades_and_a_passing_one_recovers() {
        use VerificationState::*;
        assert_eq!(after_sample(Watching, &sample(Some(false), None)), Degraded);
        assert_eq!(
            after_sample(Degraded, &sample(Some(true), Some(0.001))),
            Watching
        );
        assert_eq!(
            after_sample(Watching, &sample(Some(true), Some(0.02))),
            Degraded
        );
        assert_eq!(
            after_sample(AwaitingOutcome, &sample(Some(false), None)),
            AwaitingOutcome
        );
        assert_eq!(after_sample(Watching, &sample(None, None)), Watching);
    }

    #[test]
    fn the_summary_says_what_the_window_showed() {
        let s = summarize(
            &[
                sample(Some(true), Some(0.002)),
                sample(Some(false), Some(0.03)),
                sample(Some(true), Some(0.001)),
            ],
            true,
            true,
        );
        assert_eq!(s.health_all_passed, Some(false));
        assert_eq!(s.error_rate_exceeded, Some(true));
        assert_eq!(s.peak_error_rate, Some(0.03));
        assert_eq!(s.failing_samples, 1);
        assert_eq!(
            s.text,
            "health passed 2/3; error rate exceeded its max 0.01 (peak 0.0300)"
        );
        let none = summarize(&[sample(None, None)], false, false);
        assert_eq!(none.text, "no checks configured");
        assert_eq!(
            (none.health_all_passed, none.error_rate_exceeded),
            (None, None)
        );
    }

    #[test]
    fn samples_without_traffic_are_counted_not_failed() {
        let mut quiet = sample(Some(true), None);
        quiet.error_rate = Some(RateCheck::no_data(0.01, "no requests".into()));
        assert!(quiet.ok());
        let s = summarize(
            &[
                sample(Some(true), Some(0.002)),
                quiet.clone(),
                quiet.clone(),
            ],
            true,
            true,
        );
        assert_eq!(s.failing_samples, 0);
        assert_eq!(
            s.text,
            "health passed 3/3; error rate peaked at 0.0020 (max 0.01); 2 of 3 samples had no traffic"
        );
        let all_quiet = summarize(&[quiet], true, true);
        assert_eq!(all_quiet.error_rate_exceeded, Some(false));
        assert!(
            all_quiet
                .text
                .ends_with("error rate: no traffic in any sample"),
            "{}",
            all_quiet.text
        );
    }

    #[test]
    fn an_unreadable_metric_fails_and_nan_is_not_ok() {
        assert!(!RateCheck::unreadable(0.01, "connection refused".into()).ok);
        assert!(!RateCheck::reading(f64::NAN, 0.01).ok);
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
    pub state: VerificationState,
    /// False when the target has no `[[services]]` entry: only the countdown runs.
    pub health_checked: bool,
    pub error_rate_checked: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_error_rate: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sample: Option<Sample>,
    /// The latest error-rate readings, oldest first, for a sparkline.
    #[serde(default)]
    pub recent_error_rates: Vec<Option<f64>>,
    /// Set at the deadline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<Summary>,
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
    pub samples: Vec<Sample>,
}
