//! Server configuration: TOML, with the process's process embedded as the default.

use crate::domain::{ActionSpec, Freeze, Schedule};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The process's catalog, windows and freeze; used when no `--config` is given.
pub const DEFAULT_SERVER_TOML: &str = include_str!("../assets/default-server.toml");

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    pub server: ServerSection,
    /// `[approvals.<risk>]`: stricter approval rules, by risk (medium, high, critical).
    #[serde(default)]
    pub approvals: std::collections::BTreeMap<String, crate::domain::approval::ApprovalRule>,
    #[serde(default)]
    pub actions: Vec<ActionSpec>,
    #[serde(default)]
    pub windows: Schedule,
    #[serde(default)]
    pub freezes: Vec<FreezeConfig>,
    #[serde(default)]
    pub verification: VerificationConfig,
    #[serde(default)]
    pub services: Vec<ServiceConfig>,
    #[serde(default)]
    pub ticket_webhook: Option<WebhookConfig>,
    /// `[policy]`: how the server treats conflicting changes.
    #[serde(default)]
    pub policy: PolicySection,
}

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

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    pub url: String,
    /// Extra CA certificates (PEM) trusted for an https `url`, besides the system's.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

/// `[server.tls]`: serve https on `listen` with this certificate.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerTlsConfig {
    /// PEM, the full chain: the server's certificate first, then intermediates.
    pub cert_file: PathBuf,
    /// PEM: PKCS#8, RSA or EC.
    pub key_file: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    #[serde(default = "default_listen")]
    pub listen: String,
    /// `sqlite://PATH` or `postgres://USER@HOST/DB`; unset means a SQLite file in the platform
    /// data directory.
    #[serde(default)]
    pub database: Option<String>,
    /// `[server.database_pool]`: connections to the database.
    #[serde(default)]
    pub database_pool: DatabasePool,
    #[serde(default = "default_ttl")]
    pub approval_ttl_minutes: i64,
    /// A scheduled change that could not start within this many minutes of its `run_at` ends
    /// `missed` instead of running late.
    #[serde(default = "default_schedule_grace")]
    pub schedule_grace_minutes: i64,
    /// Seconds a client gets to send a complete request head, and how long an idle keep-alive
    /// connection is kept: a client that sends nothing must not hold a descriptor for ever. A
    /// request body gets three times as long.
    #[serde(default = "default_header_timeout")]
    pub header_timeout_seconds: f64,
    /// Concurrent connections. Unset: derived from the file-descriptor limit, which is also the
    /// ceiling for a configured value.
    #[serde(default)]
    pub max_connections: Option<usize>,
    /// Event streams open at once, all operators together. Unset: half the connection cap, at
    /// most 512.
    #[serde(default)]
    pub max_event_streams: Option<usize>,
    /// Unset: plain http (loopback, or behind a TLS-terminating proxy).
    #[serde(default)]
    pub tls: Option<ServerTlsConfig>,
}

/// `[server.database_pool]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabasePool {
    /// Read connections per server (writes use one: they take the database's write lock).
    #[serde(default = "default_pool_size")]
    pub max_connections: u32,
    /// PostgreSQL: a statement (or a wait for the write lock) that takes longer fails, and the
    /// request answers 503 instead of hanging.
    #[serde(default = "default_statement_timeout")]
    pub statement_timeout_seconds: f64,
    /// How long a request waits for a free connection, or for a database that is down, before
    /// it answers 503.
    #[serde(default = "default_acquire_timeout")]
    pub acquire_timeout_seconds: f64,
}

impl Default for DatabasePool {
    fn default() -> Self {
        DatabasePool {
            max_connections: default_pool_size(),
            statement_timeout_seconds: default_statement_timeout(),
            acquire_timeout_seconds: default_acquire_timeout(),
        }
    }
}

fn default_pool_size() -> u32 {
    8
}

fn default_statement_timeout() -> f64 {
    30.0
}

fn default_acquire_timeout() -> f64 {
    5.0
}

fn default_listen() -> String {
    "127.0.0.1:7878".into()
}

fn default_ttl() -> i64 {
    240
}

fn default_schedule_grace() -> i64 {
    10
}

fn default_header_timeout() -> f64 {
    10.0
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FreezeConfig {
    pub name: String,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
}

impl ServerConfig {
    /// The stricter approval rule for `risk`, if the configuration has one.
    pub fn approval_rule(
        &self,
        risk: crate::domain::Risk,
    ) -> Option<&crate::domain::approval::ApprovalRule> {
        self.approvals.get(risk.as_str())
    }

    pub fn embedded_default() -> ServerConfig {
        ServerConfig::parse(DEFAULT_SERVER_TOML, "embedded default")
            .expect("the embedded default configuration is valid (tested)")
    }

    pub fn load(path: Option<&Path>) -> Result<ServerConfig, String> {
        match path {
            None => Ok(ServerConfig::embedded_default()),
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .map_err(|e| format!("cannot read configuration {}: {e}", p.display()))?;
                ServerConfig::parse(&text, &p.display().to_string())
            }
        }
    }

    /// Parses and checks a configuration. The error names the file and the offending key.
    pub fn parse(text: &str, origin: &str) -> Result<ServerConfig, String> {
        let cfg: ServerConfig =
            toml::from_str(text).map_err(|e| format!("configuration {origin}: {e}"))?;
        cfg.check()
            .map_err(|e| format!("configuration {origin}: {e}"))?;
        Ok(cfg)
    }

    fn check(&self) -> Result<(), String> {
        self.server.listen.parse::<SocketAddr>().map_err(|_| {
            format!(
                "server.listen = '{}' is not an address: use IP:PORT, e.g. 127.0.0.1:7878",
                self.server.listen
            )
        })?;
        if self.server.approval_ttl_minutes <= 0 {
            return Err("server.approval_ttl_minutes must be a positive number of minutes".into());
        }
        if !(1..=1440).contains(&self.server.schedule_grace_minutes) {
            return Err(
                "server.schedule_grace_minutes must be from 1 to 1440 minutes, e.g. 10".into(),
            );
        }
        let timeout = self.server.header_timeout_seconds;
        if !(timeout > 0.0 && timeout <= 300.0) {
            return Err(
                "server.header_timeout_seconds must be more than 0 and at most 300, e.g. 10".into(),
            );
        }
        if self.server.max_connections == Some(0) {
            return Err("server.max_connections must be at least 1 (or unset)".into());
        }
        if self.server.max_event_streams == Some(0) {
            return Err("server.max_event_streams must be at least 1 (or unset)".into());
        }
        let mut names = HashSet::new();
        for (i, a) in self.actions.iter().enumerate() {
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
                        if placeholder != "target"
                            && !a.params.iter().any(|p| p.name == placeholder)
                        {
                            return Err(format!(
                                "{key}.command uses {{{placeholder}}}, which is neither {{target}} \
                                 nor one of its params"
                            ));
                        }
                    }
                }
            }
        }
        for (risk, rule) in &self.approvals {
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
        let pool = &self.server.database_pool;
        if !(1..=200).contains(&pool.max_connections) {
            return Err("server.database_pool.max_connections must be from 1 to 200".into());
        }
        for (key, v) in [
            ("statement_timeout_seconds", pool.statement_timeout_seconds),
            ("acquire_timeout_seconds", pool.acquire_timeout_seconds),
        ] {
            if !(v.is_finite() && (0.1..=3600.0).contains(&v)) {
                return Err(format!(
                    "server.database_pool.{key} must be from 0.1 to 3600 (seconds)"
                ));
            }
        }
        let v = &self.verification;
        if !(v.duration_minutes.is_finite()
            && v.duration_minutes > 0.0
            && v.duration_minutes <= 1440.0)
        {
            return Err(
                "verification.duration_minutes must be above 0 and at most 1440 (0.25 is 15 s)"
                    .into(),
            );
        }
        if !(1..=3600).contains(&v.interval_seconds) {
            return Err("verification.interval_seconds must be from 1 to 3600".into());
        }
        let mut services = HashSet::new();
        for (i, svc) in self.services.iter().enumerate() {
            let key = format!("services[{i}] ({})", svc.name);
            if !services.insert(svc.name.as_str()) {
                return Err(format!("{key}.name is used twice"));
            }
            if let Some(url) = &svc.health_url {
                check_http_url(url).map_err(|e| format!("{key}.health_url {e}"))?;
            }
            if let Some(r) = &svc.error_rate {
                r.check(&format!("{key}.error_rate"))?;
            }
        }
        if let Some(w) = &self.ticket_webhook {
            check_http_url(&w.url).map_err(|e| format!("ticket_webhook.url {e}"))?;
        }
        for (i, f) in self.freezes.iter().enumerate() {
            if f.ends_at <= f.starts_at {
                return Err(format!(
                    "freezes[{i}] ({}): ends_at must be after starts_at",
                    f.name
                ));
            }
        }
        Ok(())
    }

    pub fn action(&self, name: &str) -> Option<&ActionSpec> {
        self.actions.iter().find(|a| a.name == name)
    }

    /// Freezes announced in the configuration (they have no id: the API cannot remove them).
    pub fn configured_freezes(&self) -> Vec<Freeze> {
        self.freezes
            .iter()
            .map(|f| Freeze {
                id: None,
                name: f.name.clone(),
                starts_at: f.starts_at,
                ends_at: f.ends_at,
                created_by: None,
            })
            .collect()
    }
}

fn check_http_url(url: &str) -> Result<(), String> {
    match reqwest::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => Ok(()),
        _ => Err(format!("'{url}' is not an http or https URL")),
    }
}

impl ServerConfig {
    /// The checks configured for a change's target, if any.
    pub fn service(&self, target: &str) -> Option<&ServiceConfig> {
        self.services.iter().find(|s| s.name == target)
    }
}

fn placeholders(arg: &str) -> impl Iterator<Item = &str> {
    arg.split('{')
        .skip(1)
        .filter_map(|rest| rest.split_once('}').map(|(name, _)| name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Risk;

    #[test]
    fn embedded_default_holds_the_seed() {
        let cfg = ServerConfig::embedded_default();
        let by_risk = |r: Risk| {
            let mut v: Vec<&str> = cfg
                .actions
                .iter()
                .filter(|a| a.risk == r)
                .map(|a| a.name.as_str())
                .collect();
            v.sort();
            v
        };
        assert_eq!(cfg.actions.len(), 10);
        assert_eq!(by_risk(Risk::Low), ["pull-logs"]);
        assert_eq!(
            by_risk(Risk::Medium),
            [
                "drain-traffic",
                "purge-cache",
                "restart-pods",
                "scale-service"
            ]
        );
        assert_eq!(
            by_risk(Risk::High),
            [
                "blacklist-ip",
                "failover-region",
                "maintenance-mode",
                "pause-enrolments"
            ]
        );
        assert_eq!(by_risk(Risk::Critical), ["rotate-secrets"]);
        assert_eq!(
            cfg.action("failover-region").unwrap().rollback,
            "Reverse the Route 53 and RDS failover (L3 only)"
        );
        assert_eq!(cfg.windows.standard.len(), 1);
        assert_eq!(cfg.freezes[0].name, "Q4 freeze");
    }

    fn with(extra: &str) -> Result<ServerConfig, String> {
        ServerConfig::parse(&format!("{DEFAULT_SERVER_TOML}\n{extra}"), "test.toml")
    }

    #[test]
    fn scheduling_and_conflict_settings_default_and_name_their_key() {
        let cfg = ServerConfig::embedded_default();
        assert_eq!(cfg.server.schedule_grace_minutes, 10);
        assert_eq!(cfg.policy.conflicts, ConflictMode::Warn);
        let cfg = with("[policy]\nconflicts = \"block\"\n").expect("block is a mode");
        assert_eq!(cfg.policy.conflicts, ConflictMode::Block);
        let err = with("[policy]\nconflicts = \"blok\"\n").unwrap_err();
        assert!(
            err.contains("policy.conflicts = \"blok\"") && err.contains("\"block\""),
            "{err}"
        );
        for bad in ["0", "-5", "1441"] {
            let err =
                ServerConfig::parse(&format!("[server]\nschedule_grace_minutes = {bad}\n"), "t")
                    .unwrap_err();
            assert!(
                err.contains("server.schedule_grace_minutes"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn errors_name_the_key() {
        let err = ServerConfig::parse("[server]\nlisten = \"x\"\nlisen = 1\n", "t").unwrap_err();
        assert!(err.contains("lisen"), "{err}");
        let err = ServerConfig::parse("[server]\nlisten = \"nowhere\"\n", "t").unwrap_err();
        assert!(err.contains("server.listen"), "{err}");
        let err = ServerConfig::parse("[server]\napproval_ttl_minutes = 0\n", "t").unwrap_err();
        assert!(err.contains("approval_ttl_minutes"), "{err}");
        for (text, key) in [
            (
                "header_timeout_seconds = 0",
                "server.header_timeout_seconds",
            ),
            (
                "header_timeout_seconds = 301",
                "server.header_timeout_seconds",
            ),
            (
                "header_timeout_seconds = nan",
                "server.header_timeout_seconds",
            ),
            ("max_connections = 0", "server.max_connections"),
            ("max_event_streams = 0", "server.max_event_streams"),
        ] {
            let err = ServerConfig::parse(&format!("[server]\n{text}\n"), "t").unwrap_err();
            assert!(err.contains(key), "{text}: {err}");
        }
        let ok = ServerConfig::parse("[server]\nheader_timeout_seconds = 0.5\n", "t").unwrap();
        assert_eq!(ok.server.header_timeout_seconds, 0.5);
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
        let ok =
            with("[server.tls]\ncert_file = \"/etc/cb/tls.crt\"\nkey_file = \"/etc/cb/tls.key\"\n")
                .expect("server.tls");
        let tls = ok.server.tls.expect("tls");
        assert_eq!(tls.key_file, PathBuf::from("/etc/cb/tls.key"));
        let err = with("[server.tls]\ncert_file = \"/x\"\n").unwrap_err();
        assert!(err.contains("key_file"), "{err}");
        let bad_day = DEFAULT_SERVER_TOML.replace("\"tue\", \"wed\"", "\"tue\", \"wday\"");
        let err = ServerConfig::parse(&bad_day, "t").unwrap_err();
        assert!(err.contains("wday") && err.contains("days"), "{err}");
    }

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
