//! What the verifier watches after a change has run: how long and how often
//! (`[verification]`), and each service's checks (`[[services]]`): a health URL and an error rate
//! read from Prometheus or CloudWatch. These types are also stored with every verification as
//! JSON, so they carry serde's `Serialize` and must stay readable when fields are added; that
//! constraint, and the long CloudWatch checks, are why they are a room of their own.

use super::{ServerConfig, check_http_url};
use serde::Deserialize;
use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;

/// How long and how often an executed change is watched.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerificationConfig {
    /// May be fractional for drills: 0.25 is 15 s.
    #[serde(default = "default_verification_minutes")]
    pub duration_minutes: f64,
    #[serde(default = "default_interval")]
    pub interval_seconds: u64,
}

impl Default for VerificationConfig {
    fn default() -> Self {
        VerificationConfig {
            duration_minutes: default_verification_minutes(),
            interval_seconds: default_interval(),
        }
    }
}

impl VerificationConfig {
    pub fn duration(&self) -> chrono::Duration {
        chrono::Duration::milliseconds((self.duration_minutes * 60_000.0).round() as i64)
    }

    pub(super) fn check(&self) -> Result<(), String> {
        if !(self.duration_minutes.is_finite()
            && self.duration_minutes > 0.0
            && self.duration_minutes <= 1440.0)
        {
            return Err(
                "verification.duration_minutes must be above 0 and at most 1440 (0.25 is 15 s)"
                    .into(),
            );
        }
        if !(1..=3600).contains(&self.interval_seconds) {
            return Err("verification.interval_seconds must be from 1 to 3600".into());
        }
        Ok(())
    }
}

fn default_verification_minutes() -> f64 {
    15.0
}

fn default_interval() -> u64 {
    30
}

/// What a change's target is checked against while it is verified.
#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    pub name: String,
    #[serde(default)]
    pub health_url: Option<String>,
    #[serde(default)]
    pub error_rate: Option<ErrorRateConfig>,
    /// A PEM file of extra CA certificates trusted (besides the system's) for this service's
    /// https URLs: its health URL, Prometheus and CloudWatch endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
}

/// Where a service's error rate comes from: a Prometheus query, or CloudWatch metrics.
/// (Stored with each verification as JSON, so every field added later needs a default.)
#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ErrorRateConfig {
    /// Base URL of a Prometheus-compatible server; `/api/v1/query` is appended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    pub max: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloudwatch: Option<CloudWatchConfig>,
}

/// `[services.error_rate.cloudwatch]`: the rate over the last `window_minutes`, read with one
/// `GetMetricData` call. Credentials and (unless given here) the region come from the standard
/// AWS chain, never from this file.
#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CloudWatchConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    pub namespace: String,
    #[serde(default = "default_period")]
    pub period_seconds: u32,
    #[serde(default = "default_window")]
    pub window_minutes: u32,
    /// Errors and requests: the rate is the sum of one over the sum of the other.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errors: Option<MetricSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests: Option<MetricSpec>,
    /// Or a metric that already is a rate: the mean of its values over the window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric: Option<MetricSpec>,
    /// Another endpoint than `https://monitoring.REGION.amazonaws.com` (a VPC endpoint).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_url: Option<String>,
}

/// One CloudWatch metric, as `GetMetricData` names it.
#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MetricSpec {
    pub metric: String,
    pub stat: String,
    #[serde(default)]
    pub dimensions: BTreeMap<String, String>,
}

fn default_period() -> u32 {
    60
}

fn default_window() -> u32 {
    5
}

impl ErrorRateConfig {
    /// Where the rate comes from, for the dashboard: "Prometheus", or
    /// "CloudWatch AWS/ApplicationELB Target_5XX/RequestCount".
    pub fn source(&self) -> String {
        // The load balancers' code counts read `HTTPCode_<where>_<class>_Count`: the middle is
        // what tells them apart, and the whole would not fit beside the readings at 80 columns.
        let short = |m: &str| {
            m.strip_prefix("HTTPCode_")
                .and_then(|m| m.strip_suffix("_Count"))
                .unwrap_or(m)
                .to_string()
        };
        match &self.cloudwatch {
            None => "Prometheus".into(),
            Some(cw) => match (&cw.errors, &cw.requests, &cw.metric) {
                (Some(e), Some(r), _) => format!(
                    "CloudWatch {} {}/{}",
                    cw.namespace,
                    short(&e.metric),
                    short(&r.metric)
                ),
                (_, _, Some(m)) => format!("CloudWatch {} {}", cw.namespace, short(&m.metric)),
                _ => format!("CloudWatch {}", cw.namespace),
            },
        }
    }
}

/// The statistics `GetMetricData` takes by name; percentiles (`p99`, `p99.9`) are also accepted.
const STATISTICS: [&str; 5] = ["SampleCount", "Average", "Sum", "Minimum", "Maximum"];

fn check_stat(stat: &str) -> bool {
    STATISTICS.contains(&stat)
        || stat.strip_prefix('p').is_some_and(|p| {
            p.parse::<f64>()
                .is_ok_and(|v| v.is_finite() && (0.0..=100.0).contains(&v))
                && p.chars().all(|c| c.is_ascii_digit() || c == '.')
        })
}

impl CloudWatchConfig {
    fn check(&self, key: &str) -> Result<(), String> {
        if self.namespace.trim().is_empty() {
            return Err(format!(
                "{key}.namespace is empty, e.g. \"AWS/ApplicationELB\""
            ));
        }
        if self.period_seconds == 0 || !self.period_seconds.is_multiple_of(60) {
            return Err(format!(
                "{key}.period_seconds = {} must be a multiple of 60, e.g. 60",
                self.period_seconds
            ));
        }
        if !(1..=1440).contains(&self.window_minutes) {
            return Err(format!("{key}.window_minutes must be from 1 to 1440"));
        }
        if self.window_minutes * 60 < self.period_seconds {
            return Err(format!(
                "{key}.window_minutes ({}) is shorter than one period_seconds ({})",
                self.window_minutes, self.period_seconds
            ));
        }
        let metrics: Vec<(&str, &MetricSpec)> = match (&self.errors, &self.requests, &self.metric) {
            (Some(e), Some(r), None) => vec![("errors", e), ("requests", r)],
            (None, None, Some(m)) => vec![("metric", m)],
            (None, None, None) => {
                return Err(format!(
                    "{key} needs `errors` and `requests` (the rate is their ratio), or `metric` \
                     (a metric that already is a rate)"
                ));
            }
            (_, _, Some(_)) => {
                return Err(format!(
                    "{key}: give either `metric` or `errors` and `requests`, not both"
                ));
            }
            (Some(_), None, _) => {
                return Err(format!("{key}.requests is missing (errors needs it)"));
            }
            (None, Some(_), _) => {
                return Err(format!("{key}.errors is missing (requests needs it)"));
            }
        };
        for (name, m) in metrics {
            if m.metric.trim().is_empty() {
                return Err(format!("{key}.{name}.metric is empty"));
            }
            if !check_stat(&m.stat) {
                return Err(format!(
                    "{key}.{name}.stat = \"{}\" is not a statistic: use one of {} or a \
                     percentile such as p99",
                    m.stat,
                    STATISTICS.join(", ")
                ));
            }
        }
        if let Some(region) = &self.region
            && (region.is_empty()
                || !region
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'))
        {
            return Err(format!(
                "{key}.region = \"{region}\" is not a region name, e.g. eu-west-1"
            ));
        }
        if let Some(url) = &self.endpoint_url {
            check_http_url(url).map_err(|e| format!("{key}.endpoint_url {e}"))?;
        }
        Ok(())
    }
}

impl ErrorRateConfig {
    fn check(&self, key: &str) -> Result<(), String> {
        match (&self.prometheus_url, &self.query, &self.cloudwatch) {
            (Some(_), _, Some(_)) | (_, Some(_), Some(_)) => {
                return Err(format!(
                    "{key}: prometheus_url and [{key}.cloudwatch] are both set; keep one source"
                ));
            }
            (Some(url), Some(query), None) => {
                check_http_url(url).map_err(|e| format!("{key}.prometheus_url {e}"))?;
                if query.trim().is_empty() {
                    return Err(format!("{key}.query is empty"));
                }
            }
            (Some(_), None, None) => return Err(format!("{key}.query is missing")),
            (None, Some(_), None) => return Err(format!("{key}.prometheus_url is missing")),
            (None, None, Some(cw)) => cw.check(&format!("{key}.cloudwatch"))?,
            (None, None, None) => {
                return Err(format!(
                    "{key} needs a source: prometheus_url and query, or [{key}.cloudwatch]"
                ));
            }
        }
        if !(self.max.is_finite() && self.max >= 0.0) {
            return Err(format!("{key}.max must be a number of at least 0"));
        }
        Ok(())
    }
}

/// `[[services]]`: each name once, and every check it configures well formed.
pub(super) fn check_services(services: &[ServiceConfig]) -> Result<(), String> {
    let mut names = HashSet::new();
    for (i, svc) in services.iter().enumerate() {
        let key = format!("services[{i}] ({})", svc.name);
        if !names.insert(svc.name.as_str()) {
            return Err(format!("{key}.name is used twice"));
        }
        if let Some(url) = &svc.health_url {
            check_http_url(url).map_err(|e| format!("{key}.health_url {e}"))?;
        }
        if let Some(r) = &svc.error_rate {
            r.check(&format!("{key}.error_rate"))?;
        }
    }
    Ok(())
}

impl ServerConfig {
    /// The checks configured for a change's target, if any.
    pub fn service(&self, target: &str) -> Option<&ServiceConfig> {
        self.services.iter().find(|s| s.name == target)
    }
}

#[cfg(test)]
mod tests {
    use super::ServiceConfig;
    use crate::config::with;
    use std::path::Path;

    const CLOUDWATCH: &str = r#"
[[services]]
name = "checkout"
health_url = "https://checkout.internal/healthz"
ca_file = "/etc/pki/internal-ca.pem"

[services.error_rate]
max = 0.01

[services.error_rate.cloudwatch]
region = "eu-west-1"
namespace = "AWS/ApplicationELB"
period_seconds = 60
window_minutes = 5
errors   = { metric = "HTTPCode_Target_5XX_Count", stat = "Sum", dimensions = { LoadBalancer = "app/checkout/50dc6c495c0c9188" } }
requests = { metric = "RequestCount",              stat = "Sum", dimensions = { LoadBalancer = "app/checkout/50dc6c495c0c9188" } }
"#;

    #[test]
    fn the_issues_cloudwatch_example_is_read_as_written() {
        let cfg = with(CLOUDWATCH).expect("valid");
        let svc = cfg.service("checkout").expect("the service");
        let rate = svc.error_rate.as_ref().expect("an error rate");
        let cw = rate.cloudwatch.as_ref().expect("cloudwatch");
        assert_eq!(cw.errors.as_ref().expect("errors").stat, "Sum");
        assert_eq!(
            cw.requests.as_ref().expect("requests").dimensions["LoadBalancer"],
            "app/checkout/50dc6c495c0c9188"
        );
        assert_eq!(
            rate.source(),
            "CloudWatch AWS/ApplicationELB Target_5XX/RequestCount"
        );
        assert_eq!(
            svc.ca_file.as_deref(),
            Some(Path::new("/etc/pki/internal-ca.pem"))
        );
        // Stored with each verification as JSON, and read back the same.
        let json = serde_json::to_string(svc).expect("json");
        assert_eq!(
            &serde_json::from_str::<ServiceConfig>(&json).expect("back"),
            svc
        );
        // A verification stored before CloudWatch existed still reads.
        let old = r#"{"name":"x","health_url":null,"error_rate":{"prometheus_url":"http://p","query":"q","max":0.01}}"#;
        let old: ServiceConfig = serde_json::from_str(old).expect("an old row");
        assert_eq!(old.error_rate.expect("rate").source(), "Prometheus");
    }

    #[test]
    fn bad_cloudwatch_config_names_the_key() {
        let key = "services[0] (checkout).error_rate";
        for (from, to, expect) in [
            (
                "max = 0.01\n",
                "max = 0.01\nprometheus_url = \"http://p\"\nquery = \"q\"\n",
                "prometheus_url and [services[0] (checkout).error_rate.cloudwatch] are both set",
            ),
            (
                "errors   = {",
                "# errors   = {",
                ".cloudwatch.errors is missing",
            ),
            (
                "requests = {",
                "metric = {",
                ".cloudwatch: give either `metric` or `errors` and `requests`",
            ),
            (
                "stat = \"Sum\", dimensions",
                "stat = \"Total\", dimensions",
                ".cloudwatch.errors.stat = \"Total\"",
            ),
            (
                "period_seconds = 60",
                "period_seconds = 90",
                ".cloudwatch.period_seconds = 90 must be a multiple of 60",
            ),
            (
                "window_minutes = 5",
                "window_minutes = 0",
                ".cloudwatch.window_minutes",
            ),
            (
                "region = \"eu-west-1\"",
                "region = \"EU West\"",
                ".cloudwatch.region",
            ),
            (
                "namespace = \"AWS/ApplicationELB\"",
                "namespace = \"AWS/ApplicationELB\"\nendpoint_url = \"ftp://x\"",
                ".cloudwatch.endpoint_url",
            ),
        ] {
            let text = CLOUDWATCH.replace(from, to);
            assert_ne!(text, CLOUDWATCH, "{from}");
            let err = with(&text).expect_err(to);
            assert!(
                err.contains(&format!("{key}{expect}")) || err.contains(expect),
                "{to}: {err}"
            );
        }
        // Neither source.
        let text = CLOUDWATCH
            .split("[services.error_rate.cloudwatch]")
            .next()
            .unwrap();
        let err = with(text).expect_err("no source");
        assert!(err.contains(&format!("{key} needs a source")), "{err}");
        // Neither metric nor errors and requests.
        let text = CLOUDWATCH
            .replace("errors   = {", "# errors = {")
            .replace("requests = {", "# requests = {");
        let err = with(&text).expect_err("no metrics");
        assert!(err.contains("needs `errors` and `requests`"), "{err}");
        // Percentiles are statistics too.
        with(&CLOUDWATCH.replace("stat = \"Sum\", dimensions", "stat = \"p99.9\", dimensions"))
            .expect("p99.9");
    }
}
