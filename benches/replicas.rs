//! Change creation with several server replicas on one PostgreSQL database, beside one server on
//! SQLite and beside PostgreSQL's own single-row commit rate, all in one run.
//!
//! 1. Raw: 32 connections to a fresh, migrated PostgreSQL database each commit single-row
//!    INSERTs into `changes` (autocommit, one row per transaction) as fast as they can.
//! 2. The real binary (`serve`, release build under `cargo bench`): 32 clients, spread evenly
//!    over the servers, post high-risk `blacklist-ip` changes as an L1 with a CHG ticket inside
//!    the Standard window, so each ends `pending_approval`. One server on SQLite; then 1, 2 and 3
//!    replicas on PostgreSQL.
//! 3. Targets (issue 9): 3 replicas ≥ 1.5 × 1 replica, 1 replica ≥ 0.5 × raw. Each phase also
//!    prints how busy the whole machine was (`/proc/stat`): a phase near 100% is bound by this
//!    machine, not by the server's design.
//! 4. The ceiling: the same clients calling `GET /me` on one server, which touches no database.
//!    No change request, which also parses, decides, looks up conflicts and writes three rows,
//!    can go faster than that on the same machine.
//!
//! `cargo bench --bench replicas`; `BENCH_SECONDS=N` sets each phase (default 8);
//! `CB_BIN=/path/to/commandbridge` measures another build (e.g. one from before a change). Needs the
//! PostgreSQL of `scripts/services.sh` (or `CB_TEST_POSTGRES`). Everything shares this machine's
//! cores: the clients, the servers and PostgreSQL.

#[path = "../tests/support/mod.rs"]
mod support;

use commandbridge::client::ApiClient;
use commandbridge::domain::ChangeState;
use hdrhistogram::Histogram;
use sqlx::Connection;
use std::time::{Duration, Instant};
use support::binary::{BinaryOptions, BinaryServer};
use support::db::{Backend, TestDb};
use support::load::pending_request;

const CLIENTS: usize = 32;

type Failure = Box<dyn std::error::Error + Send + Sync>;

struct Rate {
    per_second: f64,
    p99_ms: f64,
    /// How busy the whole machine was meanwhile: on a machine this small, the ceiling that no
    /// change of the server's design can lift.
    cpu_busy: Option<f64>,
}

/// The machine's CPU time so far (busy, total) in clock ticks, from `/proc/stat`.
fn cpu_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let ticks: Vec<u64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .filter_map(|t| t.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal …: idle and iowait are not work.
    let total: u64 = ticks.iter().take(8).sum();
    let idle = ticks.get(3)? + ticks.get(4).unwrap_or(&0);
    Some((total - idle, total))
}

/// The share of the machine's CPU time spent busy between two readings of [`cpu_ticks`].
fn busy_between(before: Option<(u64, u64)>, after: Option<(u64, u64)>) -> Option<f64> {
    let ((b0, t0), (b1, t1)) = (before?, after?);
    (t1 > t0).then(|| (b1 - b0) as f64 / (t1 - t0) as f64)
}

/// What each client does in a loop.
#[derive(Clone, Copy, PartialEq)]
enum Op {
    /// Requests a change that ends `pending_approval`: the figure the issue asks for.
    Create,
    /// `GET /me`: authenticated, and touching no database (the token cache answers). The most
    /// requests per second these clients and one server can make on this machine at all.
    Me,
}

/// 32 clients, client `i` on server `i % n`, for `secs` (after a short warm-up).
async fn create_rate(servers: &[BinaryServer], secs: f64) -> Result<Rate, Failure> {
    rate(servers, secs, Op::Create).await
}

async fn rate(servers: &[BinaryServer], secs: f64, op: Op) -> Result<Rate, Failure> {
    let clients: Vec<ApiClient> = (0..CLIENTS)
        .map(|i| servers[i % servers.len()].client("alice"))
        .collect();
    // Warm-up: connections, statement caches, the token cache.
    for (i, c) in clients.iter().enumerate() {
        let made = c.create_change(&pending_request(i), None).await?;
        if made.state != ChangeState::PendingApproval {
            return Err(format!("a change ended {:?}, not pending_approval", made.state).into());
        }
    }
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let started = Instant::now();
    let cpu_before = cpu_ticks();
    let mut tasks = Vec::new();
    for (i, c) in clients.into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            let mut hist = Histogram::<u64>::new(3).expect("a histogram");
            let mut n = 0u64;
            while Instant::now() < deadline {
                let t = Instant::now();
                match op {
                    Op::Create => c
                        .create_change(&pending_request(i + n as usize), None)
                        .await
                        .map(drop),
                    Op::Me => c.me().await.map(drop),
                }
                .map_err(|e| e.to_string())?;
                hist.record(t.elapsed().as_micros() as u64).ok();
                n += 1;
            }
            Ok::<_, String>((n, hist))
        }));
    }
    let mut total = 0;
    let mut hist = Histogram::<u64>::new(3)?;
    for t in tasks {
        let (n, h) = t.await??;
        total += n;
        hist.add(h)?;
    }
    Ok(Rate {
        per_second: total as f64 / started.elapsed().as_secs_f64(),
        p99_ms: hist.value_at_quantile(0.99) as f64 / 1000.0,
        cpu_busy: busy_between(cpu_before, cpu_ticks()),
    })
}

/// PostgreSQL's own rate: 32 connections, one single-row INSERT per transaction.
async fn raw_rate(url: &str, secs: f64) -> Result<(f64, Option<f64>), Failure> {
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let started = Instant::now();
    let cpu_before = cpu_ticks();
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let url = url.to_string();
        tasks.push(tokio::spawn(async move {
            let mut conn = sqlx::PgConnection::connect(&url).await?;
            let mut n = 0i64;
            while Instant::now() < deadline {
                sqlx::query(
                    "INSERT INTO changes (state, action, risk, ticket, target, params, reason, \
                     requested_by, requested_level, created_at, updated_at, expires_at, \
                     requirements, warnings) VALUES ('pending_approval', 'blacklist-ip', 'high', \
                     'CHG-4711', $1, '{\"ip\":\"203.0.113.7\"}', 'raw', 'bench-l1', 'L1', $2, $2, \
                     $2, '[]', '[]')",
                )
                .bind(format!("edge-{c:02}"))
                .bind(1_795_341_600_000 + n)
                .execute(&mut conn)
                .await?;
                n += 1;
            }
            Ok::<_, sqlx::Error>(n)
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await??;
    }
    Ok((
        total as f64 / started.elapsed().as_secs_f64(),
        busy_between(cpu_before, cpu_ticks()),
    ))
}

async fn servers(backend: Backend, n: usize) -> Vec<BinaryServer> {
    let first = BinaryServer::start(BinaryOptions {
        backend: Some(backend),
        fd_limit: Some(4096),
        bin: std::env::var_os("CB_BIN").map(Into::into),
        ..BinaryOptions::default()
    })
    .await;
    let mut all = vec![];
    for _ in 1..n {
        all.push(first.replica().await);
    }
    all.insert(0, first);
    all
}

fn percent(share: Option<f64>) -> String {
    share.map_or("n/a".into(), |s| format!("{:.0}%", s * 100.0))
}

fn main() -> Result<(), Failure> {
    let secs: f64 = match std::env::var("BENCH_SECONDS") {
        Ok(v) => v
            .parse()
            .ok()
            .filter(|s: &f64| *s > 0.0)
            .ok_or("BENCH_SECONDS must be a positive number of seconds")?,
        Err(_) => 8.0,
    };
    support::db::require_postgres_or_skip();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        println!(
            "replicas: {CLIENTS} clients, {secs:.0} s per phase, {} CPUs",
            std::thread::available_parallelism().map_or(1, |n| n.get())
        );
        let dir = tempfile::tempdir()?;
        let raw_db = TestDb::create_on(Backend::Postgres, dir.path()).await;
        let (raw, raw_busy) = raw_rate(&raw_db.url, secs).await?;
        drop(raw_db);
        println!(
            "{:<36} {:>10.0} commits/s                  CPU busy {}",
            "PostgreSQL raw single-row commits",
            raw,
            percent(raw_busy)
        );

        let sqlite = servers(Backend::Sqlite, 1).await;
        let ceiling = rate(&sqlite, secs, Op::Me).await?;
        println!(
            "{:<36} {:>10.0} requests/s  p99 {:>6.1} ms   CPU busy {}",
            "1 server, GET /me (no database)",
            ceiling.per_second,
            ceiling.p99_ms,
            percent(ceiling.cpu_busy)
        );
        let s = create_rate(&sqlite, secs).await?;
        drop(sqlite);
        println!(
            "{:<36} {:>10.0} changes/s   p99 {:>6.1} ms   CPU busy {}",
            "1 server, SQLite",
            s.per_second,
            s.p99_ms,
            percent(s.cpu_busy)
        );
        let mut pg = Vec::new();
        for n in 1..=3 {
            let replicas = servers(Backend::Postgres, n).await;
            let r = create_rate(&replicas, secs).await?;
            drop(replicas);
            println!(
                "{:<36} {:>10.0} changes/s   p99 {:>6.1} ms   CPU busy {}",
                format!("{n} replica{} on PostgreSQL", if n > 1 { "s" } else { "" }),
                r.per_second,
                r.p99_ms,
                percent(r.cpu_busy)
            );
            pg.push(r.per_second);
        }
        let (one, three) = (pg[0], pg[2]);
        println!(
            "3 replicas / 1 replica: {:.2} (target ≥ 1.5); 1 replica / raw: {:.2} (target ≥ 0.5)",
            three / one,
            one / raw
        );
        Ok(())
    })
}
