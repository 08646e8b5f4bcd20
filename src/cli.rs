//! Command-line definitions. `main.rs` dispatches; the work lives in `server`, `client` and
//! `commands`.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "commandbridge",
    version,
    about = "Keyboard-first change control for on-call operations",
    // `--read-only` belongs to the dashboard: `commandbridge --read-only serve` is an error,
    // not a flag silently ignored.
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// The dashboard's options when no subcommand is given (the dashboard is the default).
    #[command(flatten)]
    pub dashboard: DashboardArgs,
}

/// Options of the dashboard (`commandbridge`, `commandbridge tui`, `commandbridge demo`).
#[derive(Debug, Clone, Default, Args)]
pub struct DashboardArgs {
    /// Watch only: keys that would change something (approve, deny, freeze, pause, rollback …)
    /// are refused on the message line and not offered. Also `read_only = true` in the config;
    /// an observer's dashboard is always read-only.
    #[arg(long)]
    pub read_only: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start a server with demo data in a temporary database and open the dashboard.
    Demo(DemoArgs),
    /// Open the dashboard (the default) against the server from `login` or CB_SERVER/CB_TOKEN.
    Tui(DashboardArgs),
    /// Run the change-control server.
    Serve(ServeArgs),
    /// Manage operators directly in the server's database.
    #[command(subcommand)]
    User(UserCommand),
    /// Check the audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Bring the database to this version's schema (PostgreSQL: before the servers start, and
    /// after each upgrade; SQLite is migrated when the server opens it).
    Migrate(StoreArgs),
    /// Store the server address and your token for the other commands (file mode 0600).
    Login(LoginArgs),
    /// Request, preview, list and decide changes.
    #[command(subcommand)]
    Change(ChangeCommand),
    /// Deployment windows.
    #[command(subcommand)]
    Window(WindowCommand),
    /// The calendar feed (iCalendar) for calendar apps: secret feed URLs, listed and revoked.
    #[command(subcommand)]
    Calendar(CalendarCommand),
    /// Incidents.
    #[command(subcommand)]
    Incident(IncidentCommand),
    /// Post-change verifications: list, show, mark verified, escalate.
    #[command(subcommand)]
    Verification(VerificationCommand),
}

#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    /// Whom to open the dashboard as: alice (L1), bob (L2), carol (L3) or olga (observer).
    #[arg(long = "as", value_name = "NAME", default_value = "bob")]
    pub as_user: String,
    #[command(flatten)]
    pub dashboard: DashboardArgs,
    /// Start the demo's clock at this instant (RFC 3339). By default the real time, or the
    /// next Standard window when none is open.
    #[arg(long, value_name = "RFC3339")]
    pub now: Option<String>,
}

/// Where the server's configuration and database are.
#[derive(Debug, Clone, Args)]
pub struct StoreArgs {
    /// Server configuration (TOML). Without it the embedded default is used.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Database URL: sqlite:///var/lib/commandbridge/cb.db or postgres://USER@HOST/DB.
    /// Overrides the configuration.
    #[arg(long, value_name = "URL")]
    pub database: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Address to listen on, e.g. 127.0.0.1:7878. Overrides the configuration.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// Start the server's clock at this instant (RFC 3339); it then runs on in real time.
    /// For drills and window tests.
    #[arg(long, value_name = "RFC3339")]
    pub now: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create an operator and print their bearer token (shown once).
    Add {
        name: String,
        #[arg(long, value_name = "observer|L1|L2|L3")]
        level: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// List operators.
    List {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Revoke an operator's token.
    Revoke {
        name: String,
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Recompute the hash chain; exits non-zero naming the first bad entry.
    Verify {
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Debug, Args)]
pub struct LoginArgs {
    /// Server URL, e.g. http://127.0.0.1:7878 or https://cb.example.com:7443
    #[arg(long)]
    pub server: String,
    /// Bearer token from `commandbridge user add`. Leave it out (or pass `-`) to type it at a
    /// hidden prompt or pipe it on standard input: on the command line it shows in `ps` and in
    /// the shell's history.
    #[arg(long, value_name = "TOKEN|-")]
    pub token: Option<String>,
    /// A PEM file of CA certificates to trust for an https server (a private CA), besides the
    /// system's roots; saved in config.toml for later commands.
    #[arg(long, value_name = "FILE", env = "CB_CA_FILE")]
    pub ca_file: Option<std::path::PathBuf>,
}

/// The parts of a change request, shared by `create` and `preview`.
#[derive(Debug, Clone, Args)]
pub struct ChangeSpecArgs {
    /// Action name from the catalog, e.g. scale-service.
    pub action: String,
    /// Service or host the action applies to.
    #[arg(long)]
    pub target: String,
    /// INC-… or CHG-… ticket.
    #[arg(long)]
    pub ticket: String,
    /// Why the change is made.
    #[arg(long)]
    pub reason: String,
    /// Action parameter as NAME=VALUE; repeat for several.
    #[arg(long = "param", short = 'p', value_name = "NAME=VALUE")]
    pub params: Vec<String>,
    /// Schedule it instead of running it now: `next-window` (the next window the action may
    /// use; Off-peak for high and critical risk), or an RFC 3339 time such as
    /// 2026-11-24T22:00:00Z.
    #[arg(long, value_name = "next-window|TIME")]
    pub at: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum ChangeCommand {
    /// Request a change; it runs at once when the policy allows.
    Create {
        #[command(flatten)]
        spec: ChangeSpecArgs,
        /// Makes retries safe: the same key returns the same change.
        #[arg(long)]
        idempotency_key: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Ask the server what would happen, without recording anything.
    Preview {
        #[command(flatten)]
        spec: ChangeSpecArgs,
        #[arg(long)]
        json: bool,
    },
    /// List changes, newest first.
    List {
        /// Only this state, e.g. pending_approval.
        #[arg(long)]
        state: Option<String>,
        /// At most this many; more than one page (500) is fetched page by page.
        #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..))]
        limit: u32,
        /// Only changes with an id below this one (where the previous listing stopped).
        #[arg(long, value_parser = clap::value_parser!(i64).range(1..))]
        before: Option<i64>,
        #[arg(long)]
        json: bool,
    },
    /// Show one change with its approvals and output.
    Show {
        id: i64,
        #[arg(long)]
        json: bool,
    },
    /// Approve a pending change.
    Approve {
        id: i64,
        #[arg(long)]
        comment: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Deny a pending change.
    Deny {
        id: i64,
        #[arg(long)]
        reason: String,
        #[arg(long)]
        json: bool,
    },
    /// Withdraw your own change that waits for approval; it never runs.
    Withdraw {
        id: i64,
        #[arg(long)]
        reason: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Cancel a scheduled change (yours, or any as an L2+); it never runs.
    Cancel {
        id: i64,
        #[arg(long)]
        reason: String,
        #[arg(long)]
        json: bool,
    },
    /// Roll back an executed change (a linked change, through the same policy).
    Rollback {
        id: i64,
        #[arg(long)]
        reason: String,
        /// Ticket for the rollback; default: the original change's.
        #[arg(long)]
        ticket: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum VerificationCommand {
    /// Verifications, soonest deadline first.
    List {
        /// Only those still being sampled.
        #[arg(long)]
        active: bool,
        #[arg(long)]
        json: bool,
    },
    /// One verification with its samples.
    Show {
        id: i64,
        #[arg(long)]
        json: bool,
    },
    /// Mark a verification verified (after its deadline).
    Verified {
        id: i64,
        #[arg(long)]
        note: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Escalate: declare an incident and pause all changes.
    Escalate {
        id: i64,
        #[arg(long)]
        note: Option<String>,
        /// Incident priority (default P2).
        #[arg(long, value_name = "P1..P4")]
        priority: Option<String>,
        /// Incident commander (default: you).
        #[arg(long)]
        commander: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum WindowCommand {
    /// What is open now, what opens next, any freeze or pause.
    Now {
        #[arg(long)]
        json: bool,
    },
    /// What the policy would say at TIME: the window open, any freeze or pause, per risk
    /// whether a planned (CHG) change may run, and the next transition.
    At {
        /// An RFC 3339 instant (2026-12-07T22:30:00Z), or `now`.
        time: String,
        #[arg(long)]
        json: bool,
    },
    /// Write the calendar (windows, freezes, scheduled changes; next 8 weeks) as the server's
    /// iCalendar feed.
    Export {
        /// iCalendar (RFC 5545), the only format so far; required so a later format is a flag.
        #[arg(long, required = true)]
        ics: bool,
        /// Write to FILE instead of standard output.
        #[arg(long, short, value_name = "FILE")]
        output: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum CalendarCommand {
    /// Create a feed URL for a calendar app; its secret grants nothing but the feed and is
    /// shown once.
    FeedUrl {
        /// What the feed is for, shown in `calendar feeds`.
        #[arg(long)]
        label: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// List feed URLs (never their secrets), newest first.
    Feeds {
        /// At most this many (one page of the server's, at most 500).
        #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..=500))]
        limit: u32,
        /// Only feeds with an id below this one (where the previous listing stopped).
        #[arg(long, value_parser = clap::value_parser!(i64).range(1..))]
        before: Option<i64>,
        #[arg(long)]
        json: bool,
    },
    /// Revoke a feed URL (its creator, or an L3); the calendar apps using it get 401.
    Revoke {
        /// The feed's id, from `calendar feeds`.
        id: i64,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum IncidentCommand {
    /// Declare an incident; prints its INC ticket.
    Declare {
        #[arg(long, value_name = "P1..P4")]
        priority: String,
        #[arg(long)]
        title: String,
        /// Operator in command of the incident.
        #[arg(long)]
        commander: String,
        #[arg(long)]
        json: bool,
    },
    /// List incidents.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Close an incident (its commander, or an L2/L3): its ticket opens no emergency path any
    /// more. A change pause stays until someone resumes.
    Close {
        /// The incident's ticket (INC-…) or id.
        incident: String,
        #[arg(long)]
        json: bool,
    },
}
