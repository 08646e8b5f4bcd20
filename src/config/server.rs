//! `[server]`: where and how the server listens (address, TLS, connection caps, timeouts), which
//! database it uses and with how many connections, and the clocks of approvals and schedules.
//! These settings belong to the process and its sockets rather than to the change policy, and
//! their checks speak in seconds, addresses and descriptor counts, so they live apart from the
//! rules about actions and verification.

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;

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
    /// `[server.quotas]`: what one operator may have open at once.
    #[serde(default)]
    pub quotas: Quotas,
}

/// `[server.quotas]`: what one operator may have open at once (past it a request gets 429 saying
/// what to do; `src/server/changes/quota.rs`), and how many commands a server runs at once.
/// Without them an L1 token could, with requests the policy allows, fill the reviewers' queue,
/// the calendar and the scheduler's passes, or start commands until the server had no process
/// or file descriptor left.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Quotas {
    /// Changes of one operator's executing at once. On call, one runs one change at a time.
    pub executing_per_operator: i64,
    /// Changes waiting for approval without a time: the reviewers' queue.
    pub pending_per_operator: i64,
    /// Changes waiting for their time (scheduled, or waiting for approval with a `run_at`): a
    /// schedule is a promise reviewers and the calendar feed carry for weeks.
    pub scheduled_per_operator: i64,
    /// Active (not revoked) calendar feed URLs.
    pub feeds_per_operator: i64,
    /// Commands this server runs at once; the next changes stay `executing` until a place is
    /// free. The listener keeps file descriptors for them out of the connection cap.
    pub commands_at_once: usize,
}

impl Default for Quotas {
    fn default() -> Self {
        Quotas {
            executing_per_operator: 4,
            pending_per_operator: 50,
            scheduled_per_operator: 50,
            feeds_per_operator: 20,
            commands_at_once: 32,
        }
    }
}

impl Quotas {
    fn check(&self) -> Result<(), String> {
        for (key, v) in [
            ("executing_per_operator", self.executing_per_operator),
            ("pending_per_operator", self.pending_per_operator),
            ("scheduled_per_operator", self.scheduled_per_operator),
            ("feeds_per_operator", self.feeds_per_operator),
        ] {
            if !(1..=1_000_000).contains(&v) {
                return Err(format!(
                    "server.quotas.{key} must be from 1 to 1000000 (it is {v})"
                ));
            }
        }
        if !(1..=1024).contains(&self.commands_at_once) {
            return Err(format!(
                "server.quotas.commands_at_once must be from 1 to 1024 (it is {}): each running \
                 command holds a process and a few file descriptors",
                self.commands_at_once
            ));
        }
        Ok(())
    }
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

impl ServerSection {
    /// Everything in `[server]` but the database pool, which [`DatabasePool::check`] covers.
    pub(super) fn check(&self) -> Result<(), String> {
        self.listen.parse::<SocketAddr>().map_err(|_| {
            format!(
                "server.listen = '{}' is not an address: use IP:PORT, e.g. 127.0.0.1:7878",
                self.listen
            )
        })?;
        if self.approval_ttl_minutes <= 0 {
            return Err("server.approval_ttl_minutes must be a positive number of minutes".into());
        }
        if !(1..=1440).contains(&self.schedule_grace_minutes) {
            return Err(
                "server.schedule_grace_minutes must be from 1 to 1440 minutes, e.g. 10".into(),
            );
        }
        let timeout = self.header_timeout_seconds;
        if !(timeout > 0.0 && timeout <= 300.0) {
            return Err(
                "server.header_timeout_seconds must be more than 0 and at most 300, e.g. 10".into(),
            );
        }
        if self.max_connections == Some(0) {
            return Err("server.max_connections must be at least 1 (or unset)".into());
        }
        if self.max_event_streams == Some(0) {
            return Err("server.max_event_streams must be at least 1 (or unset)".into());
        }
        self.quotas.check()
    }
}

impl DatabasePool {
    pub(super) fn check(&self) -> Result<(), String> {
        if !(1..=200).contains(&self.max_connections) {
            return Err("server.database_pool.max_connections must be from 1 to 200".into());
        }
        for (key, v) in [
            ("statement_timeout_seconds", self.statement_timeout_seconds),
            ("acquire_timeout_seconds", self.acquire_timeout_seconds),
        ] {
            if !(v.is_finite() && (0.1..=3600.0).contains(&v)) {
                return Err(format!(
                    "server.database_pool.{key} must be from 0.1 to 3600 (seconds)"
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{ServerConfig, with};
    use std::path::PathBuf;

    #[test]
    fn the_schedule_grace_defaults_and_names_its_key() {
        let cfg = ServerConfig::embedded_default();
        assert_eq!(cfg.server.schedule_grace_minutes, 10);
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
        let ok =
            with("[server.tls]\ncert_file = \"/etc/cb/tls.crt\"\nkey_file = \"/etc/cb/tls.key\"\n")
                .expect("server.tls");
        let tls = ok.server.tls.expect("tls");
        assert_eq!(tls.key_file, PathBuf::from("/etc/cb/tls.key"));
        let err = with("[server.tls]\ncert_file = \"/x\"\n").unwrap_err();
        assert!(err.contains("key_file"), "{err}");
    }

    #[test]
    fn quotas_have_defaults_and_a_bad_one_names_its_key() {
        let q = ServerConfig::embedded_default().server.quotas;
        assert_eq!(q, super::Quotas::default());
        assert_eq!((q.executing_per_operator, q.commands_at_once), (4, 32));
        let ok = ServerConfig::parse("[server.quotas]\npending_per_operator = 200\n", "t")
            .expect("one quota set");
        assert_eq!(ok.server.quotas.pending_per_operator, 200);
        assert_eq!(
            ok.server.quotas.scheduled_per_operator, 50,
            "the others keep theirs"
        );
        for (text, key) in [
            (
                "executing_per_operator = 0",
                "server.quotas.executing_per_operator",
            ),
            (
                "pending_per_operator = -1",
                "server.quotas.pending_per_operator",
            ),
            (
                "scheduled_per_operator = 0",
                "server.quotas.scheduled_per_operator",
            ),
            (
                "feeds_per_operator = 2000000",
                "server.quotas.feeds_per_operator",
            ),
            ("commands_at_once = 0", "server.quotas.commands_at_once"),
            ("commands_at_once = 5000", "server.quotas.commands_at_once"),
            ("running = 3", "running"),
        ] {
            let err = ServerConfig::parse(&format!("[server.quotas]\n{text}\n"), "t").unwrap_err();
            assert!(err.contains(key), "{text}: {err}");
        }
    }

    #[test]
    fn database_pool_errors_name_the_key() {
        let pool = ServerConfig::embedded_default().server.database_pool;
        assert_eq!(pool.max_connections, 8);
        for (text, key) in [
            (
                "max_connections = 0",
                "server.database_pool.max_connections",
            ),
            (
                "max_connections = 201",
                "server.database_pool.max_connections",
            ),
            (
                "statement_timeout_seconds = 0.05",
                "server.database_pool.statement_timeout_seconds",
            ),
            (
                "acquire_timeout_seconds = inf",
                "server.database_pool.acquire_timeout_seconds",
            ),
        ] {
            let err =
                ServerConfig::parse(&format!("[server.database_pool]\n{text}\n"), "t").unwrap_err();
            assert!(err.contains(key), "{text}: {err}");
        }
    }
}
