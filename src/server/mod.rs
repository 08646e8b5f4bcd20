//! `commandbridge serve`: decides, records and executes every change.

pub mod api;
pub mod audit_check;
pub mod auth;
pub mod calendar;
pub mod changes;
pub mod clock;
pub mod cloudwatch;
pub mod error;
pub mod events;
pub mod executor;
pub mod ics;
pub mod incidents;
pub mod listener;
pub mod memory;
pub mod metrics;
pub mod store;
pub mod users;
pub mod verifications;
pub mod verifier;
pub mod webhook;
pub mod windows;

use crate::config::ServerConfig;
use clock::Clock;
use events::EventBus;
use metrics::Metrics;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use store::Store;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

#[derive(Clone)]
pub struct AppState {
    pub config: Arc<ServerConfig>,
    pub store: Store,
    pub clock: Clock,
    pub events: EventBus,
    pub metrics: Arc<Metrics>,
    /// Wakes the verifier when a verification starts.
    pub verifier: Arc<tokio::sync::Notify>,
    /// Wakes the webhook sender when a message is queued.
    pub outbox: Arc<tokio::sync::Notify>,
    pub tokens: Arc<auth::TokenCache>,
    /// Shares commits between concurrent change requests.
    pub batcher: changes::CreateBatcher,
    /// Places for commands running at once on this server (`[server.quotas] commands_at_once`).
    pub executions: Arc<changes::Executions>,
}

/// How long a stopping server lets requests in flight finish.
const DRAIN: Duration = Duration::from_secs(4);

/// A running server: its address, and a handle to stop it.
pub struct Running {
    pub addr: SocketAddr,
    /// Whether the listener speaks TLS (`[server.tls]`).
    pub tls: bool,
    pub state: AppState,
    shutdown: tokio::sync::watch::Sender<bool>,
    task: JoinHandle<std::io::Result<()>>,
    workers: Vec<JoinHandle<()>>,
}

impl Running {
    /// Stops accepting, lets in-flight requests finish, closes the database.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        self.state.events.close();
        for w in &self.workers {
            w.abort();
        }
        // Connections get a moment to finish; a client that holds one open does not keep the
        // server from stopping. The serve loop closes stragglers itself after `DRAIN`; this is the
        // backstop.
        let mut task = self.task;
        if tokio::time::timeout(DRAIN + Duration::from_secs(1), &mut task)
            .await
            .is_err()
        {
            task.abort();
        }
        self.state.store.close().await;
    }

    /// The server's base URL: `https://ADDR` with `[server.tls]`, else `http://ADDR`.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// Resolves when the server has stopped by itself (it does not, unless it fails).
    pub async fn wait(&mut self) -> std::io::Result<()> {
        (&mut self.task).await.unwrap_or(Ok(()))
    }
}

/// The database URL: the flag, else the configuration, else a file in the data directory.
pub fn database_url(config: &ServerConfig, flag: Option<&str>) -> Result<String, String> {
    if let Some(url) = flag.or(config.server.database.as_deref()) {
        return Ok(url.to_string());
    }
    let dirs = directories::ProjectDirs::from("", "", "commandbridge")
        .ok_or("no home directory: pass --database sqlite://PATH")?;
    let dir: PathBuf = dirs.data_dir().to_path_buf();
    // The database and the log in it are the server user's alone.
    let fixed = crate::private_fs::ensure_private_dir(&dir)
        .map_err(|e| format!("cannot use the data directory {}: {e}", dir.display()))?;
    if let Some(what) = fixed {
        tracing::warn!("{what}");
    }
    Ok(format!(
        "sqlite://{}",
        dir.join("commandbridge.db").display()
    ))
}

/// Opens the store, recovers interrupted work, and serves on `listener` until stopped. Files the
/// configuration names (the server's certificate and key, CA files) are read first: a missing or
/// bad one stops the start with an error naming its key and path.
pub async fn start(
    config: ServerConfig,
    store: Store,
    clock: Clock,
    listener: TcpListener,
) -> std::io::Result<Running> {
    let tls = match &config.server.tls {
        Some(t) => Some(tokio_rustls::TlsAcceptor::from(
            crate::tls::server_config(
                &t.cert_file,
                &t.key_file,
                "server.tls.cert_file",
                "server.tls.key_file",
            )
            .map_err(std::io::Error::other)?,
        )),
        None => None,
    };
    let prober = Arc::new(verifier::Prober::for_config(&config).map_err(std::io::Error::other)?);
    let webhook_http = match &config.ticket_webhook {
        Some(hook) => Some(
            webhook::client(hook.ca_file.as_deref())
                .map_err(|e| std::io::Error::other(format!("ticket_webhook.ca_file {e}")))?,
        ),
        None => None,
    };
    let (batcher, batch_queue) = changes::CreateBatcher::channel();
    let limits = listener::Limits::for_config(&config.server);
    let state = AppState {
        batcher,
        events: EventBus::with_limits(events::StreamLimits::for_connections(
            limits.max_connections,
            config.server.max_event_streams,
        )),
        config: Arc::new(config),
        store,
        clock,
        metrics: Arc::new(Metrics::default()),
        verifier: Arc::default(),
        outbox: Arc::default(),
        tokens: Arc::default(),
        executions: Arc::new(changes::Executions::new(limits.commands_at_once)),
    };
    let batch_task = state.batcher.start(
        state.store.clone(),
        batch_queue,
        changes::create_handler(state.clone()),
    );
    match changes::recover_interrupted(&state).await {
        Ok(0) => {}
        Ok(n) => tracing::warn!(
            count = n,
            "changes interrupted by a stopped server marked failed"
        ),
        Err(e) => tracing::error!(error = %e, "recovering interrupted changes failed"),
    }
    // Before serving: a stream must not open before the tail reader knows where it starts.
    let tail = match events::tail::start(&state.store, &state.events).await {
        Ok(tasks) => tasks,
        Err(e) => {
            batch_task.abort();
            return Err(std::io::Error::other(format!(
                "reading the event table: {e}"
            )));
        }
    };
    let addr = listener.local_addr()?;
    let (shutdown, stopped) = tokio::sync::watch::channel(false);
    let app = api::router(state.clone());
    let serves_tls = tls.is_some();
    let task = tokio::spawn(listener::serve(listener, app, limits, tls, stopped, DRAIN));
    let mut workers = vec![
        batch_task,
        tokio::spawn(sweep_expired(state.clone())),
        tokio::spawn(changes::recover_periodically(state.clone())),
        tokio::spawn(changes::schedule_periodically(state.clone())),
        tokio::spawn(verifier::run(state.clone(), prober.clone())),
    ];
    workers.extend(tail);
    if let (Some(hook), Some(http)) = (&state.config.ticket_webhook, webhook_http) {
        workers.push(tokio::spawn(webhook::run(
            state.clone(),
            hook.url.clone(),
            http,
        )));
    }
    let uses_cloudwatch = state.config.services.iter().any(|s| {
        s.error_rate
            .as_ref()
            .is_some_and(|r| r.cloudwatch.is_some())
    });
    if uses_cloudwatch {
        workers.push(tokio::spawn(warn_without_aws_credentials(prober)));
    }
    Ok(Running {
        addr,
        tls: serves_tls,
        state,
        shutdown,
        task,
        workers,
    })
}

/// Once, at the start: CloudWatch checks cannot pass without credentials, and an operator
/// should learn that from the log now rather than from the first degraded verification.
async fn warn_without_aws_credentials(prober: Arc<verifier::Prober>) {
    if let Err(why) = prober.aws().await.credentials().await {
        tracing::warn!("CloudWatch error rates will fail every sample: {why}");
    }
}

async fn sweep_expired(state: AppState) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tick.tick().await;
        if let Err(e) = changes::expire_due(&state).await {
            tracing::warn!(error = %e, "expiring pending changes failed");
        }
    }
}
