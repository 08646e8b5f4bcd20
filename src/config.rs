//! Server configuration: TOML, with the process's process embedded as the default.

use crate::domain::{ActionSpec, Freeze, Schedule};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::Path;

/// The process's catalog, windows and freeze; used when no `--config` is given.
pub const DEFAULT_SERVER_TOML: &str = include_str!("../assets/default-server.toml");

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    pub server: ServerSection,
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
}

#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ErrorRateConfig {
    /// Base URL of a Prometheus-compatible server; `/api/v1/query` is appended.
    pub prometheus_url: String,
    pub query: String,
    pub max: f64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    pub url: String,
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
                check_http_url(&r.prometheus_url)
                    .map_err(|e| format!("{key}.error_rate.prometheus_url {e}"))?;
                if r.query.trim().is_empty() {
                    return Err(format!("{key}.error_rate.query is empty"));
                }
                if !(r.max.is_finite() && r.max >= 0.0) {
                    return Err(format!(
                        "{key}.error_rate.max must be a number of at least 0"
                    ));
                }
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
        Ok(u) if u.scheme() == "http" => Ok(()),
        Ok(u) if u.scheme() == "https" => Err(format!(
            "'{url}': https is not supported yet; use http (e.g. through a local proxy)"
        )),
        _ => Err(format!("'{url}' is not an http URL")),
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
        let bad_day = DEFAULT_SERVER_TOML.replace("\"tue\", \"wed\"", "\"tue\", \"wday\"");
        let err = ServerConfig::parse(&bad_day, "t").unwrap_err();
        assert!(err.contains("wday") && err.contains("days"), "{err}");
    }
}
