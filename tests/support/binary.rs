//! The real `commandbridge serve` binary as a child process, for the tests that need what only a
//! process has: its own file-descriptor limit, its RSS in `/proc`, being killed with SIGKILL.
//!
//! The server gets the same configuration as the in-process [`super::TestServer`] (the default
//! catalog plus the test actions) and a database in its own temporary directory, with alice
//! (L1), bob (L2), carol (L3) and dave (L2).

use super::TestServer;
use commandbridge::client::ApiClient;
use commandbridge::server::{store::Store, users};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;
use tempfile::TempDir;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

pub const BIN: &str = env!("CARGO_BIN_EXE_commandbridge");

/// How to start the binary.
#[derive(Default, Clone)]
pub struct BinaryOptions {
    /// `--now` for the server's clock (RFC 3339); default: the Standard window of
    /// [`super::TUESDAY_10`].
    pub now: Option<String>,
    /// The soft and hard `RLIMIT_NOFILE` of the server process (`ulimit -n`).
    pub fd_limit: Option<u64>,
    /// TOML appended to the configuration.
    pub extra_config: String,
    /// Another build of the binary (a benchmark's baseline); default [`BIN`].
    pub bin: Option<PathBuf>,
    /// The database backend; default: the test binary's (see `db::backend`).
    pub backend: Option<super::db::Backend>,
    /// Environment variables set for the server (e.g. the AWS credential chain's).
    pub env: Vec<(String, String)>,
}

pub struct BinaryServer {
    /// Shared with its replicas (see [`BinaryServer::replica`]).
    pub db: Arc<super::TestDb>,
    pub dir: Arc<TempDir>,
    child: Option<Child>,
    pub base: String,
    pub addr: std::net::SocketAddr,
    tokens: BTreeMap<String, String>,
    options: BinaryOptions,
}

impl BinaryServer {
    pub async fn start(options: BinaryOptions) -> BinaryServer {
        // Tests build reqwest clients of their own, which need the process's TLS provider.
        commandbridge::tls::install_provider();
        let dir = tempfile::tempdir().expect("a temporary directory");
        let mut server = BinaryServer {
            db: Arc::new(
                super::TestDb::create_on(
                    options.backend.unwrap_or_else(super::db::backend),
                    dir.path(),
                )
                .await,
            ),
            dir: Arc::new(dir),
            child: None,
            base: String::new(),
            addr: "127.0.0.1:1".parse().expect("an address"),
            tokens: BTreeMap::new(),
            options,
        };
        // The operators go into the database before the server opens it, as `user add` would.
        {
            let store = Store::open(&server.db_url()).await.expect("open the store");
            for (name, level) in super::OPERATORS {
                let token = users::add(&store, name, level)
                    .await
                    .expect("add an operator");
                server.tokens.insert(name.to_string(), token);
            }
            store.close().await;
        }
        server.boot().await;
        server
    }

    /// Another `serve` process on the same database, configuration and operators: a replica,
    /// as a second server behind a load balancer would be.
    pub async fn replica(&self) -> BinaryServer {
        let mut replica = BinaryServer {
            db: self.db.clone(),
            dir: self.dir.clone(),
            child: None,
            base: String::new(),
            addr: "127.0.0.1:1".parse().expect("an address"),
            tokens: self.tokens.clone(),
            options: self.options.clone(),
        };
        replica.boot().await;
        replica
    }

    pub fn db_path(&self) -> PathBuf {
        self.dir.path().join("cb.db")
    }

    pub fn db_url(&self) -> String {
        self.db.url.clone()
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("server.toml")
    }

    pub fn runs_log_path(&self) -> PathBuf {
        self.dir.path().join("runs.log")
    }

    pub fn pid(&self) -> u32 {
        self.child
            .as_ref()
            .and_then(Child::id)
            .expect("the server is running")
    }

    /// Starts the binary (again, after [`BinaryServer::kill`]) on the same database, on a new
    /// port, and waits until it serves.
    pub async fn boot(&mut self) {
        assert!(self.child.is_none(), "the server is already running");
        // The same configuration text as the in-process harness, for this directory; for another
        // build (a benchmark's baseline, `CB_BIN`) from before `[server.quotas]` existed, without
        // that table, which it would refuse (it has no quotas to lift either).
        let mut config = TestServer::config_text_for(self.dir.path(), &self.options.extra_config);
        if let Some(bin) = &self.options.bin
            && !knows_quotas(bin)
        {
            config = config.replacen(super::LIFTED_QUOTAS, "", 1);
        }
        std::fs::write(self.config_path(), config).expect("write the configuration");
        let now = self
            .options
            .now
            .clone()
            .unwrap_or_else(|| super::TUESDAY_10.to_string());
        let bin = self
            .options
            .bin
            .as_ref()
            .map_or_else(|| BIN.to_string(), |b| b.display().to_string());
        let mut argv = vec![
            bin,
            "serve".into(),
            "--config".into(),
            self.config_path().display().to_string(),
            "--database".into(),
            self.db_url(),
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--now".into(),
            now,
        ];
        let mut cmd = match self.options.fd_limit {
            // `ulimit` in a shell that then becomes the server: no extra crate, and the limit is
            // the process's own, as it would be under systemd's LimitNOFILE.
            Some(n) => {
                let mut c = Command::new("sh");
                argv.insert(0, format!("ulimit -n {n} && exec \"$@\""));
                argv.insert(1, "sh".into());
                c.arg("-c").args(&argv);
                c
            }
            None => {
                let mut c = Command::new(&argv[0]);
                c.args(&argv[1..]);
                c
            }
        };
        let mut child = cmd
            .envs(self.options.env.iter().map(|(k, v)| (k, v)))
            .env("NO_COLOR", "1")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start commandbridge serve");
        let stderr = child.stderr.take().expect("the server's stderr");
        let mut lines = BufReader::new(stderr).lines();
        let found = tokio::time::timeout(Duration::from_secs(30), async {
            let mut seen = Vec::new();
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(url) = line.strip_prefix("commandbridge serving on ") {
                    return Ok(url.trim().to_string());
                }
                seen.push(line);
            }
            Err(seen.join("\n"))
        })
        .await
        .expect("the server starts within 30 s");
        let base = found.unwrap_or_else(|out| panic!("the server did not start:\n{out}"));
        // Keep reading stderr so the server never blocks on a full pipe; CB_SERVER_STDERR=1
        // shows it (the server's warnings, when a benchmark or a test behaves oddly).
        let show = std::env::var_os("CB_SERVER_STDERR").is_some();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                if show {
                    eprintln!("[server] {line}");
                }
            }
        });
        self.addr = base
            .trim_start_matches("http://")
            .parse()
            .expect("a socket address");
        self.base = base;
        self.child = Some(child);
    }

    /// SIGKILL: the server gets no chance to clean up, as in a crash or an OOM kill.
    pub async fn kill(&mut self) {
        let mut child = self.child.take().expect("the server is running");
        child.start_kill().expect("kill the server");
        let _ = child.wait().await;
    }

    /// SIGTERM, then waits for the process to end.
    pub async fn stop(&mut self) {
        let mut child = self.child.take().expect("the server is running");
        if let Some(pid) = child.id() {
            let _ = std::process::Command::new("kill")
                .arg(pid.to_string())
                .status();
        }
        let _ = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;
    }

    pub fn token(&self, name: &str) -> &str {
        self.tokens
            .get(name)
            .unwrap_or_else(|| panic!("no operator {name}"))
    }

    /// The real client, as operator `name`.
    pub fn client(&self, name: &str) -> ApiClient {
        ApiClient::new(&self.base, self.token(name)).expect("a client")
    }

    /// Stops the process (SIGSTOP) until the returned guard is dropped (SIGCONT). While it is
    /// stopped the kernel still completes connections and queues what clients send, so a test can
    /// have a request be there before the server looks, however loaded the machine is.
    pub fn pause(&self) -> Paused {
        signal(self.pid(), "-STOP");
        Paused(self.pid())
    }

    /// The server's resident set size in bytes, from `/proc/<pid>/status`.
    pub fn rss_bytes(&self) -> u64 {
        rss_of(self.pid())
    }

    /// A value from the server's `/metrics`.
    pub async fn metric(&self, name: &str) -> f64 {
        self.try_metric(name)
            .await
            .unwrap_or_else(|| panic!("no metric {name} in the server's /metrics"))
    }

    /// A value from the server's `/metrics`, if it has that metric (an older build measured by a
    /// benchmark may not).
    pub async fn try_metric(&self, name: &str) -> Option<f64> {
        commandbridge::tls::install_provider();
        let text = super::metrics_text(&reqwest::Client::new(), &self.base).await;
        super::metric_in(&text, name)
    }

    /// Waits until the server has been idle for a while (at most `within`): whatever a test set
    /// going (streams writing until their sockets are full, say) is then done, however slow the
    /// machine is. Idle means no thread of it runnable and (almost) no CPU used: CPU alone reads
    /// a server starved of CPU on a loaded machine as idle. Panics naming `what` if it is still
    /// busy after `within`.
    pub async fn quiet(&self, what: &str, within: Duration) {
        const STILL: Duration = Duration::from_millis(600);
        let t = std::time::Instant::now();
        let mut last = cpu_ticks_of(self.pid());
        let mut still_since = std::time::Instant::now();
        loop {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let now = cpu_ticks_of(self.pid());
            // One tick (10 ms) now and then is the server's own timers (the tail reader's poll,
            // the verifier).
            if now > last + 1 || any_thread_runnable(self.pid()) {
                still_since = std::time::Instant::now();
                last = now;
            } else if still_since.elapsed() >= STILL {
                return;
            }
            assert!(
                t.elapsed() < within,
                "the server was still busy with {what} after {within:?}"
            );
        }
    }
}

/// A server stopped by [`BinaryServer::pause`]; dropping this (also when a test panics) resumes
/// it.
pub struct Paused(u32);

impl Drop for Paused {
    fn drop(&mut self) {
        signal(self.0, "-CONT");
    }
}

fn signal(pid: u32, which: &str) {
    let status = std::process::Command::new("kill")
        .args([which, &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill {which} {pid} failed");
}

/// CPU time a process has used (user and system), in clock ticks (10 ms).
fn cpu_ticks_of(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc stat");
    // The fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')').expect("a command name in /proc stat") + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
    fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime")
}

/// Whether the build at `bin` reads `[server.quotas]`: its serde field names are in the binary.
fn knows_quotas(bin: &std::path::Path) -> bool {
    let needle = b"commands_at_once";
    std::fs::read(bin)
        .map(|b| b.windows(needle.len()).any(|w| w == needle))
        .unwrap_or(true)
}

/// Whether a thread of the process is running or waiting for a CPU (state R).
fn any_thread_runnable(pid: u32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    tasks.flatten().any(|task| {
        std::fs::read_to_string(task.path().join("stat")).is_ok_and(|stat| {
            stat.rfind(')')
                .and_then(|i| stat[i + 1..].split_whitespace().next())
                == Some("R")
        })
    })
}

/// VmRSS of a process, in bytes.
pub fn rss_of(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .expect("VmRSS in /proc status")
}
