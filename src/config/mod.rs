//! Server configuration: TOML, with the seed's change process embedded as the default.
//!
//! This room holds the file as a whole: the top-level [`ServerConfig`], reading and parsing it,
//! the order its sections are checked in (so the first error a user sees is stable), and the small
//! sections that need no room of their own (windows, freezes, the ticket webhook). Each larger
//! section lives in its own module with its checks and lookups: `server` (`[server]`: sockets,
//! database, clocks), `policy` (actions, approval rules, conflicts) and `verification`
//! (`[verification]` and `[[services]]`). Their types are re-exported here, so callers name them
//! as `crate::config::X`.

mod policy;
mod server;
mod verification;

pub use policy::{ConflictMode, PolicySection};
pub use server::{DatabasePool, Quotas, ServerSection, ServerTlsConfig};
pub use verification::{
    CloudWatchConfig, ErrorRateConfig, MetricSpec, ServiceConfig, VerificationConfig,
};

use crate::domain::{ActionSpec, Freeze, Schedule};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// The process's catalog, windows and freeze; used when no `--config` is given.
pub const DEFAULT_SERVER_TOML: &str = include_str!("../../assets/default-server.toml");

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

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    pub url: String,
    /// Extra CA certificates (PEM) trusted for an https `url`, besides the system's.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
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

    /// Section by section, in the order the checks have always run: a file with several
    /// mistakes reports the same one first as before.
    fn check(&self) -> Result<(), String> {
        self.server.check()?;
        policy::check_actions(&self.actions)?;
        policy::check_approvals(&self.approvals)?;
        self.server.database_pool.check()?;
        self.verification.check()?;
        verification::check_services(&self.services)?;
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

/// The embedded default with `extra` appended: how the sections' tests write a configuration.
#[cfg(test)]
fn with(extra: &str) -> Result<ServerConfig, String> {
    ServerConfig::parse(&format!("{DEFAULT_SERVER_TOML}\n{extra}"), "test.toml")
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

    #[test]
    fn a_bad_window_names_the_key() {
        let bad_day = DEFAULT_SERVER_TOML.replace("\"tue\", \"wed\"", "\"tue\", \"wday\"");
        let err = ServerConfig::parse(&bad_day, "t").unwrap_err();
        assert!(err.contains("wday") && err.contains("days"), "{err}");
    }
}
