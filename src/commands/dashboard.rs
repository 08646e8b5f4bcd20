//! `commandbridge` / `commandbridge tui`, and `commandbridge demo`: the only place that starts
//! a server and the dashboard in one process.

use crate::cli::{DashboardArgs, DemoArgs};
use crate::client::{ApiClient, settings};
use crate::commands::demo_service;
use crate::config::ServerConfig;
use crate::domain::api::{ChangeRequest, DenyRequest, FreezeRequest, IncidentRequest};
use crate::domain::{Level, Priority};
use crate::server::{self, clock::Clock, store::Store, users};
use crate::tui::keymap::Keymap;
use crate::tui::runtime::{self, Options};
use crate::tui::theme::Theme;
use chrono::{DateTime, Datelike, Duration, Utc};
use color_eyre::eyre::{Result, WrapErr, eyre};
use std::collections::BTreeMap;

/// The dashboard's options from the config file (theme, keys, mouse, read-only) and the
/// command line, with the warnings of anything in the file that could not be used.
fn preferences(args: &DashboardArgs, mut warnings: Vec<String>, notice: Option<String>) -> Options {
    // A file another user could have written is not used; the dashboard says why. (`tui` has
    // refused it already, in `resolve`; this is for `demo`.)
    let file = match settings::load() {
        Ok((file, _)) => file,
        Err(e) => {
            warnings.push(e.to_string());
            settings::Settings::default()
        }
    };
    let (theme, bad_theme) = Theme::from_env(file.theme.as_deref());
    let (keymap, bad_keys) = Keymap::with_overrides(&file.keys);
    warnings.extend(bad_theme);
    warnings.extend(bad_keys);
    Options {
        theme,
        keymap,
        warnings,
        notice,
        mouse: file.mouse.unwrap_or(true),
        // Either asks for it; nothing on the command line turns the file's `true` off.
        read_only: args.read_only || file.read_only.unwrap_or(false),
    }
}

pub async fn tui(args: &DashboardArgs) -> Result<()> {
    let (creds, warnings) = settings::resolve().map_err(|e| eyre!("{e}"))?;
    let client = ApiClient::with_ca_file(&creds.server, &creds.token, creds.ca_file.as_deref())
        .map_err(|e| eyre!("{e}"))?;
    runtime::run(client, preferences(args, warnings, None)).await
}

const DEMO_USERS: [(&str, Level); 5] = [
    ("alice", Level::L1),
    ("bob", Level::L2),
    ("carol", Level::L3),
    ("dave", Level::L2),
    // Watches, changes nothing: `demo --as olga` opens a read-only dashboard.
    ("olga", Level::Observer),
];

pub async fn demo(args: &DemoArgs) -> Result<()> {
    let Some(&(me, my_level)) = DEMO_USERS.iter().find(|(n, _)| *n == args.as_user) else {
        return Err(eyre!(
            "--as must be alice (L1), bob (L2), carol (L3) or olga (observer), not '{}'",
            args.as_user
        ));
    };
    let mut config = ServerConfig::embedded_default();
    let (services, service_task) = demo_service::start().await?;
    config.services = services;
    // Samples every few seconds, so the Verification pane moves while someone watches.
    config.verification.interval_seconds = 5;
    let (clock, clock_note) = demo_clock(&config, args.now.as_deref())?;
    let dir = tempfile::Builder::new()
        .prefix("commandbridge-demo-")
        .tempdir()
        .wrap_err("cannot create a temporary directory for the demo database")?;
    let url = format!("sqlite://{}", dir.path().join("demo.db").display());
    let store = Store::open(&url)
        .await
        .wrap_err("cannot create the demo database")?;
    let mut tokens = BTreeMap::new();
    for (name, level) in DEMO_USERS {
        tokens.insert(
            name,
            users::add(&store, name, level)
                .await
                .map_err(|e| eyre!(e))?,
        );
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let running = server::start(config, store, clock, listener).await?;
    let base = format!("http://{}", running.addr);
    let client = |name: &str| ApiClient::new(&base, &tokens[name]).map_err(|e| eyre!("{e}"));
    let seeded = seed(
        &client("alice")?,
        &client("bob")?,
        &client("carol")?,
        &client("dave")?,
        clock.now(),
    )
    .await;
    let notice = match seeded {
        Ok(()) => format!(
            "demo: server {base}, you are {me}; {clock_note}. {} '{}' degrades in a minute (4).",
            if my_level.is_observer() {
                "You watch (observer): ? lists the keys that work."
            } else {
                "Try 2 (Approvals), a to approve, ? for keys."
            },
            demo_service::DEGRADING
        ),
        Err(e) => format!("demo: seeding stopped early: {e}"),
    };
    // An error is reported by `preferences`, which reads the file again.
    let load_warnings = settings::load().map(|(_, w)| w).unwrap_or_default();
    let result = runtime::run(
        client(me)?,
        preferences(&args.dashboard, load_warnings, Some(notice)),
    )
    .await;
    running.stop().await;
    service_task.abort();
    drop(dir);
    result
}

/// The real time when a window is open; otherwise half an hour into the next Standard window,
/// so a newcomer sees changes run rather than refused.
fn demo_clock(config: &ServerConfig, now: Option<&str>) -> Result<(Clock, String)> {
    if let Some(t) = now {
        let t = DateTime::parse_from_rfc3339(t)
            .wrap_err_with(|| format!("--now '{t}' is not RFC 3339, e.g. 2026-11-24T10:30:00Z"))?
            .with_timezone(&Utc);
        return Ok((
            Clock::starting_at(t),
            format!("clock set to {}", t.format("%a %H:%M UTC")),
        ));
    }
    let real = Utc::now();
    if config.windows.open_at(real).is_some() {
        return Ok((Clock::real(), "real clock".into()));
    }
    let mut t = real;
    while let Some((kind, opens)) = config.windows.next_opening(t) {
        if kind == crate::domain::WindowKind::Standard {
            let start = opens + Duration::minutes(30);
            return Ok((
                Clock::starting_at(start),
                format!(
                    "simulated clock at {} (inside the Standard window)",
                    start.format("%a %H:%M UTC")
                ),
            ));
        }
        t = opens;
    }
    Ok((Clock::real(), "real clock".into()))
}

/// One change of the demo's scene: who asks, for what, and why.
struct Ask<'a> {
    by: &'a ApiClient,
    action: &'a str,
    ticket: &'a str,
    target: &'a str,
    params: Vec<(&'a str, serde_json::Value)>,
    reason: &'a str,
}

impl Ask<'_> {
    async fn send(&self) -> Result<crate::domain::change::Change> {
        self.send_at(None).await
    }

    /// The request with a `run_at` (RFC 3339 or `next_window`): scheduled, not run now.
    async fn send_at(&self, run_at: Option<&str>) -> Result<crate::domain::change::Change> {
        let req = ChangeRequest {
            action: self.action.into(),
            ticket: self.ticket.into(),
            target: self.target.into(),
            params: self
                .params
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
            reason: self.reason.into(),
            run_at: run_at.map(str::to_string),
        };
        self.by
            .create_change(&req, None)
            .await
            .map_err(|e| eyre!("{e}"))
    }
}

/// A living scene, made through the API so every piece went through the policy and the audit.
async fn seed(
    alice: &ApiClient,
    bob: &ApiClient,
    carol: &ApiClient,
    dave: &ApiClient,
    now: DateTime<Utc>,
) -> Result<()> {
    let e = |e: crate::client::ClientError| eyre!("{e}");
    let ask = |by, action, ticket, target, params, reason| Ask {
        by,
        action,
        ticket,
        target,
        params,
        reason,
    };
    // History: a read-only look, and changes that ran and are now under verification; the one
    // on search degrades a minute in (the simulated search service starts failing).
    let history = [
        ask(
            alice,
            "pull-logs",
            "CHG-4711",
            "checkout",
            vec![("lines", 500.into())],
            "look for the 502s reported by support",
        ),
        ask(
            bob,
            "scale-service",
            "CHG-4711",
            "checkout",
            vec![("replicas", 6.into())],
            "Black Friday traffic: 4 → 6 replicas",
        ),
        ask(
            alice,
            "restart-pods",
            "CHG-4712",
            "search",
            vec![],
            "memory leak, pods at 95% after 3 days",
        ),
    ];
    for a in &history {
        a.send().await?;
    }
    // Denied: a failover that belongs in the off-peak window.
    let failover = ask(
        alice,
        "failover-region",
        "CHG-release-v2",
        "payments",
        vec![("region", "eu-west-2".into())],
        "region drill",
    )
    .send()
    .await?;
    carol
        .deny(
            failover.id,
            &DenyRequest {
                reason: "drills run off-peak: request it again after 22:00".into(),
            },
        )
        .await
        .map_err(e)?;
    // An incident, and the queue: others' changes waiting for bob, one above bob, one of bob's own.
    let incident = carol
        .declare_incident(&IncidentRequest {
            priority: Priority::P2,
            title: "checkout p99 latency above 2s".into(),
            commander: "carol".into(),
        })
        .await
        .map_err(e)?;
    let queue = [
        ask(
            alice,
            "blacklist-ip",
            &incident.ticket,
            "edge-1",
            vec![("ip", "203.0.113.7".into())],
            "credential stuffing from one address",
        ),
        ask(
            alice,
            "maintenance-mode",
            "CHG-4713",
            "reports",
            vec![],
            "schema migration needs 10 minutes of quiet",
        ),
        ask(
            dave,
            "rotate-secrets",
            "CHG-4714",
            "payments",
            vec![],
            "quarterly key rotation",
        ),
        ask(
            bob,
            "rotate-secrets",
            "CHG-4715",
            "checkout",
            vec![],
            "API key leaked in a support ticket",
        ),
    ];
    for a in &queue {
        a.send().await?;
    }
    // A freeze in this week's calendar.
    let monday = (now - Duration::days(now.weekday().num_days_from_monday() as i64)).date_naive();
    let friday = (monday + Duration::days(4))
        .and_hms_opt(0, 0, 0)
        .unwrap_or_default()
        .and_utc();
    carol
        .create_freeze(&FreezeRequest {
            name: "Black Friday".into(),
            starts_at: friday,
            ends_at: friday + Duration::days(1),
        })
        .await
        .map_err(e)?;
    // The denied drill asked again as carol said, scheduled into the next Off-peak window (it
    // waits for an L2's approval), and a cache purge of bob's scheduled there too: the Windows
    // pane marks both in the grid and counts down to them.
    let next = Some(crate::domain::schedule::NEXT_WINDOW);
    ask(
        alice,
        "failover-region",
        "CHG-release-v2",
        "payments",
        vec![("region", "eu-west-2".into())],
        "region drill, off-peak as carol asked",
    )
    .send_at(next)
    .await?;
    ask(
        bob,
        "purge-cache",
        "CHG-4716",
        "catalog",
        vec![],
        "new price list goes live overnight",
    )
    .send_at(next)
    .await?;
    Ok(())
}
