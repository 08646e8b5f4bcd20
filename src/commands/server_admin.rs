//! The commands that run on the server's machine: `serve`, `user`, `audit verify`.

use crate::cli::{AuditCommand, ServeArgs, StoreArgs, UserCommand};
use crate::config::ServerConfig;
use crate::server::store::{PoolSettings, SchemaState, Store, redact};
use crate::server::{self, audit_check, clock::Clock, users};
use chrono::{DateTime, Utc};
use color_eyre::eyre::{Result, WrapErr, eyre};
use std::time::Duration;

async fn open_store(args: &StoreArgs) -> Result<(ServerConfig, Store)> {
    let config = ServerConfig::load(args.config.as_deref()).map_err(|e| eyre!(e))?;
    let url = server::database_url(&config, args.database.as_deref()).map_err(|e| eyre!(e))?;
    let pool = &config.server.database_pool;
    let settings = PoolSettings {
        max_connections: pool.max_connections,
        statement_timeout: Duration::from_secs_f64(pool.statement_timeout_seconds),
        acquire_timeout: Duration::from_secs_f64(pool.acquire_timeout_seconds),
    };
    // The database's own message says what to do (run migrate, a newer release): one line.
    let store = Store::open_with(&url, &settings)
        .await
        .map_err(|e| eyre!("cannot open the database {}: {e}", redact(&url)))?;
    Ok((config, store))
}

/// `commandbridge migrate`: brings the database to this binary's schema (a PostgreSQL database
/// before its servers start or after an upgrade; SQLite is migrated when a server opens it).
pub async fn migrate(args: &StoreArgs) -> Result<()> {
    let config = ServerConfig::load(args.config.as_deref()).map_err(|e| eyre!(e))?;
    let url = server::database_url(&config, args.database.as_deref()).map_err(|e| eyre!(e))?;
    let state = Store::migrate(&url)
        .await
        .map_err(|e| eyre!("cannot migrate the database {}: {e}", redact(&url)))?;
    match state {
        SchemaState::Current(v) => println!("{}: schema at version {v}, up to date", redact(&url)),
        other => {
            return Err(eyre!(
                "the database is not at this binary's schema: {other:?}"
            ));
        }
    }
    Ok(())
}

pub async fn serve(args: &ServeArgs) -> Result<()> {
    let (mut config, store) = open_store(&args.store).await?;
    if let Some(listen) = &args.listen {
        config.server.listen = listen.clone();
    }
    let clock = match &args.now {
        None => Clock::real(),
        Some(t) => {
            let start: DateTime<Utc> = DateTime::parse_from_rfc3339(t)
                .wrap_err_with(|| {
                    format!("--now '{t}' is not RFC 3339, e.g. 2026-11-24T10:00:00Z")
                })?
                .with_timezone(&Utc);
            if !(1970..=9999).contains(&chrono::Datelike::year(&start)) {
                return Err(eyre!("--now must be between the years 1970 and 9999"));
            }
            tracing::warn!(now = %start, "SIMULATED CLOCK: the server's time starts at --now and runs on from there");
            Clock::starting_at(start)
        }
    };
    let listener = tokio::net::TcpListener::bind(&config.server.listen)
        .await
        .wrap_err_with(|| format!("cannot listen on {}", config.server.listen))?;
    let mut running = server::start(config, store, clock, listener).await?;
    tracing::info!(addr = %running.addr, "commandbridge serving");
    eprintln!("commandbridge serving on http://{}", running.addr);
    tokio::select! {
        r = running.wait() => r?,
        _ = shutdown_signal() => {
            tracing::info!("shutting down");
            running.stop().await;
        }
    }
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).ok();
    let term = async {
        match term.as_mut() {
            Some(t) => {
                t.recv().await;
            }
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}

pub async fn user(cmd: &UserCommand) -> Result<()> {
    match cmd {
        UserCommand::Add { name, level, store } => {
            let level = level.parse().map_err(|e: String| eyre!(e))?;
            let (_, store) = open_store(store).await?;
            let token = users::add(&store, name, level).await.map_err(|e| eyre!(e));
            store.close().await;
            println!("{}", token?);
        }
        UserCommand::List { store } => {
            let (_, store) = open_store(store).await?;
            let ops = users::list(&store).await.map_err(|e| eyre!(e));
            store.close().await;
            for (op, created, revoked) in ops? {
                println!(
                    "{:<20} {}  created {}{}",
                    op.name,
                    op.level,
                    created.format("%Y-%m-%d %H:%M UTC"),
                    revoked
                        .map(|r| format!("  REVOKED {}", r.format("%Y-%m-%d %H:%M UTC")))
                        .unwrap_or_default()
                );
            }
        }
        UserCommand::Revoke { name, store } => {
            let (_, store) = open_store(store).await?;
            let done = users::revoke(&store, name).await.map_err(|e| eyre!(e));
            store.close().await;
            done?;
            println!("revoked {name}");
        }
    }
    Ok(())
}

pub async fn audit(cmd: &AuditCommand) -> Result<()> {
    let AuditCommand::Verify { store } = cmd;
    let (_, store) = open_store(store).await?;
    let verdict = audit_check::verify(&store).await;
    store.close().await;
    match verdict? {
        audit_check::Verdict::Intact { entries, head } => {
            println!("audit log intact: {entries} entries, head {head}");
            Ok(())
        }
        audit_check::Verdict::Broken { seq, why } => {
            Err(eyre!("audit log broken at entry {seq}: {why}"))
        }
    }
}
