//! Server throughput against the raw SQLite commit rate, in one run.
//!
//! 1. Raw commits: single-row `BEGIN IMMEDIATE … COMMIT` transactions into the `changes` table of
//!    a freshly migrated file, with the server's own connection settings
//!    (`server::store::sqlite_options`: WAL, `synchronous=FULL`) and the server's single-writer
//!    pool, one after another.
//! 2. The real server, in process, over HTTP on loopback: 32 clients (each its own `ApiClient`,
//!    so its own connection) post high-risk `blacklist-ip` changes as an L1 with a CHG ticket,
//!    with the clock pinned inside the Standard window, so every change ends `pending_approval`.
//! 3. The ratio of the two rates (target ≥ 0.5) and the p99 latency (target < 20 ms).
//!
//! Then a short probe counts the SQL statements one `POST /changes` runs (from sqlx's own
//! statement events) and where their time goes.
//!
//! `cargo bench --bench server_throughput`; `BENCH_SECONDS=N` sets the server phase to N seconds
//! (default 10; the raw phase takes half as long). `BENCH_DIR` picks the directory the temporary
//! database files go in (default: the system temp dir), since the commit rate is the disk's.

#[path = "support/proc_stat.rs"]
mod proc_stat;
#[path = "../tests/support/mod.rs"]
mod support;

use commandbridge::client::ApiClient;
use commandbridge::config::ServerConfig;
use commandbridge::domain::{ChangeState, Level};
use commandbridge::server::clock::Clock;
use commandbridge::server::store::{Store, sqlite_options};
use commandbridge::server::{start, users};
use hdrhistogram::Histogram;
use proc_stat::thread_cpu;
use sqlx::sqlite::SqlitePoolOptions;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use support::load::pending_request;
use tracing_subscriber::layer::SubscriberExt;

const CLIENTS: usize = 32;
const TARGET_RATIO: f64 = 0.5;
const TARGET_P99_MS: f64 = 20.0;
/// Inside Tuesday's Standard window (09:00–16:00 UTC), no freeze.
const PINNED_CLOCK: &str = "2026-11-24T10:00:00Z";

type Failure = Box<dyn std::error::Error + Send + Sync>;

fn main() -> Result<(), Failure> {
    let server_secs: f64 = match std::env::var("BENCH_SECONDS") {
        Ok(v) => v
            .parse()
            .ok()
            .filter(|s: &f64| *s > 0.0)
            .ok_or("BENCH_SECONDS must be a positive number of seconds")?,
        Err(_) => 10.0,
    };
    let raw_secs = server_secs / 2.0;
    let warmup = Duration::from_secs_f64((server_secs / 10.0).min(1.0));
    let base = std::env::var_os("BENCH_DIR")
        .map(Into::into)
        .unwrap_or_else(std::env::temp_dir);
    let dir = tempfile::tempdir_in(&base)?;

    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(Probe))?;
    // The server gets a runtime of its own, as it would in its own process; named threads let
    // the CPU accounting tell server, clients and SQLite apart.
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .thread_name("cb-server")
        .enable_all()
        .build()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .thread_name("bench-client")
        .enable_all()
        .build()?;
    let server_handle = server_rt.handle().clone();
    rt.block_on(async {
        println!("load average at the start: {}", load_average());
        println!(
            "server_throughput: databases in {}, {} CPUs, server phase {server_secs:.1} s with \
             {CLIENTS} clients, raw phase {raw_secs:.1} s",
            dir.path().display(),
            std::thread::available_parallelism().map_or(0, |n| n.get()),
        );
        // Half the raw commits before the server phase and half after, so a change in the
        // machine's load during the run shows (the two rates differ) and weighs on both sides.
        let mut raw_db = RawDb::open(dir.path()).await?;
        let (mut before, mut after) = (Run::new(), Run::new());
        let half = Duration::from_secs_f64(raw_secs / 2.0);
        raw_db.commit_for(half, &mut before).await?;

        let server = server_run(
            &server_handle,
            dir.path(),
            warmup,
            Duration::from_secs_f64(server_secs),
        )
        .await?;
        raw_db.commit_for(half, &mut after).await?;
        raw_db.pool.close().await;
        let mut raw = Run::new();
        for part in [&before, &after] {
            raw.count += part.count;
            raw.elapsed += part.elapsed;
            raw.cpu += part.cpu;
            raw.latency.add(&part.latency)?;
        }
        raw.print("(1) raw SQLite commits (1 row / BEGIN IMMEDIATE…COMMIT, sequential)");
        println!(
            "    {:.0}/s before the server phase, {:.0}/s after",
            before.rate(),
            after.rate()
        );
        server
            .run
            .print("(2) POST /api/v1/changes → pending_approval (32 concurrent clients)");
        println!(
            "    verified via API: {} changes pending_approval (GET /changes and /metrics), \
             {} created incl. warm-up, {} errors",
            server.verified_pending, server.created, server.errors
        );

        let ratio = server.run.rate() / raw.rate();
        let p99 = server.run.ms(99.0);
        println!("(3) targets");
        println!(
            "    {} ratio server/raw = {:.0}/{:.0} = {ratio:.2} (target ≥ {TARGET_RATIO})",
            verdict(ratio >= TARGET_RATIO),
            server.run.rate(),
            raw.rate(),
        );
        println!(
            "    {} p99 latency = {p99:.2} ms (target < {TARGET_P99_MS} ms, {CLIENTS} clients)",
            verdict(p99 < TARGET_P99_MS),
        );
        print_cpu(&server.cpu, server.run.count);
        print_probe(&server.probe);
        println!("load average at the end: {}", load_average());
        Ok::<_, Failure>(())
    })?;
    drop(rt);
    drop(server_rt);
    drop(dir);
    Ok(())
}

fn verdict(ok: bool) -> &'static str {
    if ok { "PASS" } else { "FAIL" }
}

/// Completed operations over a measured stretch, with their latencies in microseconds.
struct Run {
    count: u64,
    elapsed: Duration,
    latency: Histogram<u64>,
    /// CPU-seconds the whole process used meanwhile (0 where /proc is unavailable).
    cpu: f64,
}

impl Run {
    fn new() -> Run {
        Run {
            count: 0,
            elapsed: Duration::ZERO,
            cpu: 0.0,
            latency: Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds"),
        }
    }

    fn record(&mut self, took: Duration) {
        self.count += 1;
        self.latency.saturating_record(took.as_micros() as u64);
    }

    fn rate(&self) -> f64 {
        self.count as f64 / self.elapsed.as_secs_f64()
    }

    fn ms(&self, percentile: f64) -> f64 {
        self.latency.value_at_percentile(percentile) as f64 / 1000.0
    }

    fn print(&self, title: &str) {
        println!("{title}");
        println!(
            "    {} in {:.2} s = {:.0}/s; latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; \
             {:.0} µs CPU each",
            self.count,
            self.elapsed.as_secs_f64(),
            self.rate(),
            self.ms(50.0),
            self.ms(99.0),
            self.latency.max() as f64 / 1000.0,
            self.cpu * 1e6 / self.count.max(1) as f64,
        );
    }
}

// ----- (1) raw commits -----------------------------------------------------------------------

/// A change row as the server writes it for the benchmark's request (same columns, same sizes).
const INSERT_CHANGE: &str = "INSERT INTO changes (state, action, risk, ticket, target, params, \
     reason, requested_by, requested_level, created_at, updated_at, expires_at, requirements, \
     warnings, idempotency_key, fingerprint) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10, $11, $12, $13, $14, $15)";

/// The baseline database: the server's schema and connection settings, nothing else.
struct RawDb {
    pool: sqlx::SqlitePool,
    rows: i64,
}

impl RawDb {
    async fn open(dir: &Path) -> Result<RawDb, Failure> {
        let url = format!("sqlite://{}", dir.join("raw.db").display());
        // The server's schema, migrated by the server's own code; then a pool like its writer.
        Store::open(&url).await?.close().await;
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(sqlite_options(&url)?)
            .await?;
        let journal: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(&pool)
            .await?;
        let synchronous: i64 = sqlx::query_scalar("PRAGMA synchronous")
            .fetch_one(&pool)
            .await?;
        if journal != "wal" || synchronous != 2 {
            return Err(format!(
                "sqlite_options gave journal_mode={journal} synchronous={synchronous}, \
                 expected wal and 2 (FULL)"
            )
            .into());
        }
        Ok(RawDb { pool, rows: 0 })
    }

    /// Commits single-row transactions one after another for `duration`, adding to `run`.
    async fn commit_for(&mut self, duration: Duration, run: &mut Run) -> Result<(), Failure> {
        let warning = "off-peak preferred: high-risk changes belong in the Off-peak window";
        let requirements = r#"[{"kind":"level","min":"L2"}]"#;
        let cpu_before: f64 = thread_cpu().values().sum();
        let started = Instant::now();
        while started.elapsed() < duration {
            self.rows += 1;
            let n = self.rows;
            let t = Instant::now();
            let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
            sqlx::query(INSERT_CHANGE)
                .bind("pending_approval")
                .bind("blacklist-ip")
                .bind("high")
                .bind("CHG-4711")
                .bind(format!("edge-{:02}", n % 32))
                .bind(r#"{"ip":"203.0.113.7"}"#)
                .bind("throughput benchmark")
                .bind("bench-l1")
                .bind("L1")
                .bind(1_795_341_600_000 + n)
                .bind(1_795_356_000_000 + n)
                .bind(requirements)
                .bind(format!(r#"["{warning}"]"#))
                .bind(None::<String>)
                .bind(format!("{n:064x}"))
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            run.record(t.elapsed());
        }
        run.elapsed += started.elapsed();
        run.cpu += thread_cpu().values().sum::<f64>() - cpu_before;
        Ok(())
    }
}

// ----- (2) the server ------------------------------------------------------------------------

struct ServerResult {
    run: Run,
    created: u64,
    errors: u64,
    verified_pending: i64,
    /// CPU seconds per thread group during the measured stretch.
    cpu: BTreeMap<String, f64>,
    probe: ProbeResult,
}

async fn server_run(
    rt: &tokio::runtime::Handle,
    dir: &Path,
    warmup: Duration,
    duration: Duration,
) -> Result<ServerResult, Failure> {
    let url = format!("sqlite://{}", dir.join("server.db").display());
    let (server, token) = rt
        .spawn(async move {
            let store = Store::open(&url).await?;
            let token = users::add(&store, "bench-l1", Level::L1).await?;
            let clock = Clock::starting_at(PINNED_CLOCK.parse()?);
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            let server = start(ServerConfig::embedded_default(), store, clock, listener).await?;
            Ok::<_, Failure>((server, token))
        })
        .await??;
    let base = format!("http://{}", server.addr);

    let measure_from = Instant::now() + warmup;
    let measure_until = measure_from + duration;
    let mut tasks = Vec::new();
    for i in 0..CLIENTS {
        let client = ApiClient::new(&base, &token)?;
        tasks.push(tokio::spawn(async move {
            let req = pending_request(i);
            let mut run = Run::new();
            let (mut created, mut errors) = (0u64, 0u64);
            loop {
                let t = Instant::now();
                if t >= measure_until {
                    break;
                }
                let result = client.create_change(&req, None).await;
                let took = t.elapsed();
                match result {
                    Ok(change) if change.state == ChangeState::PendingApproval => {
                        created += 1;
                        if t >= measure_from && t + took <= measure_until {
                            run.record(took);
                        }
                    }
                    Ok(change) => {
                        created += 1;
                        errors += 1;
                        eprintln!(
                            "change #{} ended {}, not pending_approval",
                            change.id, change.state
                        );
                    }
                    Err(e) => {
                        errors += 1;
                        if errors <= 3 {
                            eprintln!("client {i}: {e}");
                        }
                    }
                }
            }
            (run, created, errors)
        }));
    }
    tokio::time::sleep_until(measure_from.into()).await;
    let cpu_before = thread_cpu();
    tokio::time::sleep_until(measure_until.into()).await;
    let cpu: BTreeMap<String, f64> = thread_cpu()
        .into_iter()
        .map(|(name, secs)| {
            let before = cpu_before.get(&name).copied().unwrap_or(0.0);
            (name, secs - before)
        })
        .collect();
    let mut run = Run::new();
    let (mut created, mut errors) = (0, 0);
    for task in tasks {
        let (r, c, e) = task.await?;
        run.count += r.count;
        run.latency.add(&r.latency)?;
        created += c;
        errors += e;
    }
    run.elapsed = duration;
    run.cpu = cpu.values().sum();

    // What the server says it holds, over the API.
    let client = ApiClient::new(&base, &token)?;
    let pending = client
        .changes_following(Some(ChangeState::PendingApproval), None, Some(20_000))
        .await?
        .items;
    let all = client
        .changes_following(None, None, Some(20_000))
        .await?
        .items;
    let metrics = reqwest::get(format!("{base}/metrics"))
        .await?
        .text()
        .await?;
    let gauge: i64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("commandbridge_changes_pending "))
        .and_then(|v| v.trim().parse().ok())
        .ok_or("/metrics has no commandbridge_changes_pending")?;
    if gauge != created as i64
        || (created < 20_000 && (pending.len() as u64 != created || all.len() as u64 != created))
    {
        return Err(format!(
            "the clients saw {created} changes created pending_approval, but the server lists \
             {} pending of {} (metrics gauge {gauge})",
            pending.len(),
            all.len()
        )
        .into());
    }

    let probe = probe(&client).await?;
    rt.spawn(server.stop()).await?;
    Ok(ServerResult {
        run,
        created,
        errors,
        verified_pending: gauge,
        cpu,
        probe,
    })
}

// ----- where a request's time goes -----------------------------------------------------------

/// Counts sqlx's statement events (target `sqlx::query`) while probing, and sums their time.
/// Off outside the probe, so the measured phases pay nothing for it.
struct Probe;

static PROBING: AtomicBool = AtomicBool::new(false);
static STATEMENTS: Mutex<BTreeMap<String, (u64, f64)>> = Mutex::new(BTreeMap::new());

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Probe {
    fn register_callsite(
        &self,
        meta: &'static tracing::Metadata<'static>,
    ) -> tracing::subscriber::Interest {
        if meta.target() == "sqlx::query" {
            tracing::subscriber::Interest::sometimes()
        } else {
            tracing::subscriber::Interest::never()
        }
    }

    fn enabled(
        &self,
        meta: &tracing::Metadata<'_>,
        _: tracing_subscriber::layer::Context<'_, S>,
    ) -> bool {
        meta.target() == "sqlx::query" && PROBING.load(Ordering::Relaxed)
    }

    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        #[derive(Default)]
        struct Fields {
            summary: String,
            secs: f64,
        }
        impl tracing::field::Visit for Fields {
            fn record_str(&mut self, f: &tracing::field::Field, v: &str) {
                if f.name() == "summary" {
                    self.summary = v.trim_end_matches(" …").to_string();
                }
            }
            fn record_f64(&mut self, f: &tracing::field::Field, v: f64) {
                if f.name() == "elapsed_secs" {
                    self.secs = v;
                }
            }
            fn record_debug(&mut self, f: &tracing::field::Field, v: &dyn std::fmt::Debug) {
                if f.name() == "summary" && self.summary.is_empty() {
                    self.summary = format!("{v:?}").trim_matches('"').to_string();
                }
            }
        }
        let mut fields = Fields::default();
        event.record(&mut fields);
        let mut map = STATEMENTS.lock().unwrap_or_else(|e| e.into_inner());
        let entry = map.entry(fields.summary).or_default();
        entry.0 += 1;
        entry.1 += fields.secs;
    }
}

struct ProbeResult {
    requests: u64,
    latency: Run,
    statements: BTreeMap<String, (u64, f64)>,
}

/// One client, one request at a time: what a single `POST /changes` costs without queueing.
async fn probe(client: &ApiClient) -> Result<ProbeResult, Failure> {
    const REQUESTS: u64 = 200;
    let mut latency = Run::new();
    let started = Instant::now();
    PROBING.store(true, Ordering::Relaxed);
    for i in 0..REQUESTS {
        let t = Instant::now();
        let change = client
            .create_change(&pending_request(i as usize), None)
            .await?;
        latency.record(t.elapsed());
        if change.state != ChangeState::PendingApproval {
            return Err(format!("probe change #{} ended {}", change.id, change.state).into());
        }
    }
    PROBING.store(false, Ordering::Relaxed);
    latency.elapsed = started.elapsed();
    let statements = std::mem::take(&mut *STATEMENTS.lock().unwrap_or_else(|e| e.into_inner()));
    Ok(ProbeResult {
        requests: REQUESTS,
        latency,
        statements,
    })
}

fn print_probe(p: &ProbeResult) {
    let n = p.requests as f64;
    let total: u64 = p.statements.values().map(|(c, _)| c).sum();
    let secs: f64 = p.statements.values().map(|(_, s)| s).sum();
    println!(
        "profile: {} sequential requests, one client: {:.0}/s, p50 {:.2} ms; per request {:.1} SQL \
         statements taking {:.3} ms in SQLite:",
        p.requests,
        p.latency.rate(),
        p.latency.ms(50.0),
        total as f64 / n,
        secs * 1000.0 / n,
    );
    let mut rows: Vec<_> = p.statements.iter().collect();
    rows.sort_by(|a, b| b.1.1.total_cmp(&a.1.1));
    for (summary, (count, s)) in rows {
        println!(
            "    {:>5.2}× {:>8.3} ms  {summary}",
            *count as f64 / n,
            s * 1000.0 / n
        );
    }
}

// ----- CPU per thread group, machine load (Linux /proc; nothing elsewhere) ---------------------

fn print_cpu(cpu: &BTreeMap<String, f64>, requests: u64) {
    let total: f64 = cpu.values().sum();
    if total <= 0.0 {
        return;
    }
    let per_request = |secs: f64| secs * 1e6 / requests.max(1) as f64;
    println!(
        "cpu during (2): {total:.2} CPU-s = {:.0} µs per request; by thread:",
        per_request(total)
    );
    let mut rows: Vec<_> = cpu.iter().filter(|(_, s)| **s > 0.0).collect();
    rows.sort_by(|a, b| b.1.total_cmp(a.1));
    for (name, secs) in rows {
        println!(
            "    {secs:>6.2} s {:>5.0} µs/request  {name}",
            per_request(*secs)
        );
    }
}

/// The machine's 1, 5 and 15 minute load averages: other work on the machine skews the figures.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}
