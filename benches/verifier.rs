//! The verifier under load: 1,000 concurrent verifications polled every second by one server.
//!
//! 1. A stub service in a child process (this binary re-executed with `VERIFIER_BENCH_STUB=1`),
//!    so the server's CPU is measured alone: `GET /svc/{name}/healthz` answers 200,
//!    `GET /api/v1/query` answers a Prometheus instant-query vector (error rate 0.002), and
//!    `POST /` answers CloudWatch's JSON-protocol `GetMetricData` (2 errors in 1,000 requests)
//!    to a SigV4-signed request. It counts what it serves (`GET /stats`).
//! 2. The real server in this process, over a SQLite file in a temporary directory, with the
//!    embedded default configuration, `[verification] interval_seconds = 1` and 1,000
//!    `[[services]]` (svc-0000 … svc-0999) pointing at the stub: the even ones read their error
//!    rate from Prometheus, the odd ones from CloudWatch (credentials from the environment, as
//!    from the AWS chain); the clock is pinned inside Tuesday's Standard window.
//! 3. Bob (L2) runs 1,000 medium-risk `restart-pods` changes (CHG ticket, 32 at a time) through
//!    the real `ApiClient`: 1,000 verifications `watching`, checked with
//!    `GET /verifications?active=true`.
//! 4. After a warm-up, a steady window of `BENCH_SECONDS` (default 60): CPU of this process (the
//!    server, its SQLite threads, and a bench thread that mostly sleeps) from /proc, by thread; CPU of the stub;
//!    samples stored per second (rows in `verification_samples`, and `/metrics`) against the
//!    1,000/s expected; lateness of each sample taken in the window (`at - due`, `at` being when
//!    the probe returned) with p50/p99/max; the gap between consecutive samples of one
//!    verification (skipped polls show there); and how far the newest stored sample trails the
//!    clock (a writer falling behind shows there).
//! 5. PASS/FAIL: p99 lateness under 1 s, and samples/s at least 95% of the expected rate; the
//!    CPU figure is informative.
//!
//! `cargo bench --bench verifier`; `BENCH_SECONDS=N` sets the window; `BENCH_WARMUP=N` the
//! warm-up (default 5 s); `BENCH_VERIFICATIONS=N` the load (default 1,000, to find the
//! headroom); `BENCH_DIR` the directory of the database file (default: the system
//! temp dir).

#[path = "support/proc_stat.rs"]
mod proc_stat;

use commandbridge::client::ApiClient;
use commandbridge::config::{DEFAULT_SERVER_TOML, ServerConfig};
use commandbridge::domain::Level;
use commandbridge::domain::api::ChangeRequest;
use commandbridge::server::clock::Clock;
use commandbridge::server::store::{Store, sqlite_options};
use commandbridge::server::{start, users};
use futures::StreamExt;
use hdrhistogram::Histogram;
use proc_stat::{process_cpu, stat_cpu, thread_cpu};
use sqlx::sqlite::SqlitePoolOptions;
use sqlx::{ConnectOptions, Row};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Verifications watched at once, unless `BENCH_VERIFICATIONS` says otherwise (at most 10,000).
const VERIFICATIONS: usize = 1000;
const INTERVAL_SECONDS: u64 = 1;
/// Changes created at once while setting up.
const CREATE_CONCURRENCY: usize = 32;
const TARGET_P99_MS: u64 = 1000;
/// Inside Tuesday's Standard window (09:00–16:00 UTC), no freeze.
const PINNED_CLOCK: &str = "2026-11-24T10:00:00Z";
const STUB_ENV: &str = "VERIFIER_BENCH_STUB";
/// The `[verification]` table of the embedded default, replaced by the bench's.
const DEFAULT_VERIFICATION: &str = "[verification]\nduration_minutes = 15\ninterval_seconds = 30\n";

type Failure = Box<dyn std::error::Error + Send + Sync>;

fn main() -> Result<(), Failure> {
    commandbridge::tls::install_provider();
    if std::env::var_os(STUB_ENV).is_some() {
        return stub_main();
    }
    for (key, value) in [
        ("AWS_ACCESS_KEY_ID", "bench"),
        ("AWS_SECRET_ACCESS_KEY", "bench"),
        // The environment is the whole chain: no profile, no instance metadata to wait for.
        ("AWS_CONFIG_FILE", "/dev/null"),
        ("AWS_SHARED_CREDENTIALS_FILE", "/dev/null"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ] {
        // SAFETY: first thing in main, before any thread exists that could read the environment.
        unsafe { std::env::set_var(key, value) };
    }
    let secs = env_secs("BENCH_SECONDS", 60.0)?;
    let warmup = env_secs("BENCH_WARMUP", 5.0)?;
    let n = match std::env::var("BENCH_VERIFICATIONS") {
        Ok(v) => v
            .parse()
            .ok()
            .filter(|n: &usize| (1..=10_000).contains(n))
            .ok_or("BENCH_VERIFICATIONS must be a number from 1 to 10000")?,
        Err(_) => VERIFICATIONS,
    };
    let base = std::env::var_os("BENCH_DIR")
        .map(Into::into)
        .unwrap_or_else(std::env::temp_dir);
    let dir = tempfile::tempdir_in(&base)?;
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();

    let mut stub = Stub::spawn()?;
    // The server gets a runtime of its own (as in its own process); the bench's runtime only
    // sets up and then sleeps through the window. Named threads let the CPU accounting tell
    // them apart.
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .thread_name("cb-server")
        .enable_all()
        .build()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("bench")
        .enable_all()
        .build()?;
    let result = rt.block_on(run(
        server_rt.handle().clone(),
        &mut stub,
        dir.path(),
        n,
        secs,
        warmup,
    ));
    stub.stop();
    server_rt.shutdown_timeout(Duration::from_secs(5));
    result
}

fn env_secs(name: &str, default: f64) -> Result<f64, Failure> {
    match std::env::var(name) {
        Ok(v) => Ok(v
            .parse()
            .ok()
            .filter(|s: &f64| *s > 0.0)
            .ok_or_else(|| format!("{name} must be a positive number of seconds"))?),
        Err(_) => Ok(default),
    }
}

async fn run(
    server_rt: tokio::runtime::Handle,
    stub: &mut Stub,
    dir: &std::path::Path,
    n: usize,
    secs: f64,
    warmup: f64,
) -> Result<(), Failure> {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "verifier bench: {n} verifications every {INTERVAL_SECONDS} s, window \
         {secs:.0} s after {warmup:.0} s warm-up; {cpus} CPUs; load average at the start: {}",
        load_average()
    );
    println!(
        "stub service: pid {}, http://127.0.0.1:{}",
        stub.child.id(),
        stub.port
    );

    // Long enough that no verification reaches its deadline before the window ends (3 minutes
    // for the default window; setup takes well under a minute).
    let duration_minutes = ((secs + warmup + 115.0) / 60.0).ceil().max(3.0);
    let config_text = config_text(stub.port, n, duration_minutes)?;
    let config = ServerConfig::parse(&config_text, "bench")?;
    let db_url = format!("sqlite://{}", dir.join("cb.db").display());
    let clock = Clock::starting_at(PINNED_CLOCK.parse()?);
    let running = {
        let db_url = db_url.clone();
        server_rt
            .spawn(async move {
                let store = Store::open(&db_url).await?;
                let token = users::add(&store, "bob", Level::L2).await?;
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
                let running = start(config, store, clock, listener).await?;
                Ok::<_, Failure>((running, token))
            })
            .await??
    };
    let (running, token) = running;
    let base = format!("http://{}", running.addr);
    println!("server: {base}, database {db_url}, duration_minutes = {duration_minutes}");

    // ----- setup: 1,000 executed medium-risk changes → 1,000 verifications watching ----------
    let setup = Instant::now();
    let bob = ApiClient::new(&base, &token)?;
    let results: Vec<Result<(), String>> = futures::stream::iter(0..n)
        .map(|i| {
            let bob = bob.clone();
            async move {
                let req = ChangeRequest {
                    action: "restart-pods".into(),
                    ticket: format!("CHG-{}", 10_000 + i),
                    target: service(i),
                    params: BTreeMap::new(),
                    reason: "verifier bench".into(),
                    run_at: None,
                };
                bob.create_change(&req, None)
                    .await
                    .map(|_| ())
                    .map_err(|e| format!("create restart-pods on {}: {e}", req.target))
            }
        })
        .buffer_unordered(CREATE_CONCURRENCY)
        .collect()
        .await;
    if let Some(Err(e)) = results.into_iter().find(Result::is_err) {
        return Err(e.into());
    }
    let created = setup.elapsed();
    commandbridge::tls::install_provider();
    let http = reqwest::Client::new();
    let active = |http: reqwest::Client, base: String, token: String| async move {
        let list: Vec<serde_json::Value> = http
            .get(format!("{base}/api/v1/verifications?active=true"))
            .bearer_auth(token)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        Ok::<_, reqwest::Error>(list)
    };
    let reader = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(
            sqlite_options(&db_url)?
                .read_only(true)
                .disable_statement_logging(),
        )
        .await?;
    // Counted in the database: `GET /verifications` answers at most 500.
    let count_state = |state: &'static str| {
        let reader = reader.clone();
        async move {
            sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM verifications WHERE state = $1")
                .bind(state)
                .fetch_one(&reader)
                .await
                .map(|c| c as usize)
        }
    };
    let mut watching = 0;
    for _ in 0..300 {
        watching = count_state("watching").await?;
        if watching + count_state("degraded").await? == n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let list = active(http.clone(), base.clone(), token.clone()).await?;
    println!(
        "setup: {n} changes created in {:.1} s; {watching} verifications watching after {:.1} s",
        created.as_secs_f64(),
        setup.elapsed().as_secs_f64()
    );
    if watching != n {
        // What the checks said, so a broken check is told from a slow server.
        let failing = list
            .iter()
            .find(|v| v["state"] != "watching")
            .map(|v| v["last_sample"].to_string())
            .unwrap_or_default();
        return Err(
            format!("expected {n} verifications watching, got {watching}; e.g. {failing}").into(),
        );
    }
    tokio::time::sleep(Duration::from_secs_f64(warmup)).await;

    // ----- the steady window -----------------------------------------------------------------
    let count_rows = || async {
        sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM verification_samples")
            .fetch_one(&reader)
            .await
    };
    let metric_before = metric(&http, &base, "commandbridge_verification_samples_total").await?;
    let rows_before = count_rows().await?;
    let stub_before = stub.stats(&http).await?;
    let stub_cpu_before = stub.cpu();
    let cpu_before = thread_cpu();
    let process_before = process_cpu();
    let load_before = load_average();
    let psi_before = pressure();
    let window_start = clock.now();
    let started = Instant::now();
    // Meanwhile, how far the newest stored sample trails the clock: `at` is taken when a probe
    // returns, so lateness alone does not show a writer that falls behind; this does.
    let mut storage_lag = Histogram::<u64>::new(3)?;
    let mut healthz = Histogram::<u64>::new(3)?;
    let end = started + Duration::from_secs_f64(secs);
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    while Instant::now() < end {
        tick.tick().await;
        let newest: Option<i64> =
            sqlx::query_scalar("SELECT at FROM verification_samples ORDER BY id DESC LIMIT 1")
                .fetch_optional(&reader)
                .await?;
        if let Some(at) = newest {
            storage_lag.record((clock.now().timestamp_millis() - at).max(0) as u64)?;
        }
        // And whether the server as a whole answers meanwhile (a starved process is slow here
        // too; a writer stuck on the disk is not).
        let asked = Instant::now();
        http.get(format!("{base}/healthz"))
            .send()
            .await?
            .error_for_status()?;
        healthz.record(asked.elapsed().as_micros() as u64)?;
    }
    tokio::time::sleep(end.saturating_duration_since(Instant::now())).await;
    let elapsed = started.elapsed().as_secs_f64();
    let window_end = clock.now();
    let process_after = process_cpu();
    let cpu_after = thread_cpu();
    let stub_cpu_after = stub.cpu();
    let stub_after = stub.stats(&http).await?;
    let rows_after = count_rows().await?;
    let metric_after = metric(&http, &base, "commandbridge_verification_samples_total").await?;
    let load_after = load_average();
    let psi_after = pressure();
    let still_active = count_state("watching").await? + count_state("degraded").await?;

    // ----- lateness of the samples taken in the window ---------------------------------------
    let rows = sqlx::query(
        "SELECT verification_id, at, due, ok FROM verification_samples \
         WHERE at >= $1 AND at < $2 ORDER BY verification_id, id",
    )
    .bind(window_start.timestamp_millis())
    .bind(window_end.timestamp_millis())
    .fetch_all(&reader)
    .await?;
    let mut lateness = Histogram::<u64>::new(3)?;
    let mut gaps = Histogram::<u64>::new(3)?;
    let mut per_second: BTreeMap<i64, u64> = BTreeMap::new();
    let mut last: Option<(i64, i64)> = None;
    let mut sampled = std::collections::BTreeSet::new();
    // Every stub answer passes: a failing sample means a check that did not work (an unsigned
    // or malformed CloudWatch request, say).
    let mut failing = 0u64;
    for r in &rows {
        if r.try_get::<i64, _>("ok")? == 0 {
            failing += 1;
        }
        let (id, at, due): (i64, i64, i64) = (
            r.try_get("verification_id")?,
            r.try_get("at")?,
            r.try_get("due")?,
        );
        lateness.record((at - due).max(0) as u64)?;
        *per_second
            .entry((at - window_start.timestamp_millis()) / 1000)
            .or_default() += 1;
        if let Some((prev_id, prev_at)) = last
            && prev_id == id
        {
            gaps.record((at - prev_at).max(0) as u64)?;
        }
        last = Some((id, at));
        sampled.insert(id);
    }
    reader.close().await;
    server_rt.spawn(async move { running.stop().await }).await?;

    // ----- summary ---------------------------------------------------------------------------
    let stored = rows_after - rows_before;
    let rate = stored as f64 / elapsed;
    let expected = n as f64 / INTERVAL_SECONDS as f64;
    let in_window = rows.len() as f64 / elapsed;
    let cpu: BTreeMap<String, f64> = cpu_after
        .iter()
        .map(|(k, v)| (k.clone(), v - cpu_before.get(k).copied().unwrap_or(0.0)))
        .collect();
    let process = process_after - process_before;
    let stub_cpu = stub_cpu_after - stub_cpu_before;
    let served = (
        stub_after.0 - stub_before.0,
        stub_after.1 - stub_before.1,
        stub_after.2 - stub_before.2,
    );
    let full_seconds: Vec<u64> = per_second
        .iter()
        .filter(|(s, _)| **s >= 0 && ((**s + 1) as f64) <= elapsed)
        .map(|(_, n)| *n)
        .collect();

    println!();
    println!(
        "=== verifier: {n} verifications, interval {INTERVAL_SECONDS} s, window {elapsed:.1} s ==="
    );
    println!(
        "load average: {load_before} at the window's start, {load_after} at its end ({cpus} CPUs)"
    );
    println!(
        "samples stored: {stored} rows ({:.0}/s), /metrics counter +{:.0}; expected {expected:.0}/s \
         → {:.1}% achieved",
        rate,
        metric_after - metric_before,
        100.0 * rate / expected
    );
    if let (Some(lo), Some(hi)) = (full_seconds.iter().min(), full_seconds.iter().max()) {
        println!(
            "samples per second of the window (by `at`): min {lo}, max {hi}; {} verifications sampled, {still_active} still active at the end",
            sampled.len()
        );
    }
    println!(
        "stub served: {} health + {} Prometheus query + {} CloudWatch GetMetricData requests \
         ({:.0} + {:.0} + {:.0}/s)",
        served.0,
        served.1,
        served.2,
        served.0 as f64 / elapsed,
        served.1 as f64 / elapsed,
        served.2 as f64 / elapsed
    );
    println!(
        "lateness (at - due) of {} samples taken in the window ({in_window:.0}/s): p50 {} ms, \
         p90 {} ms, p99 {} ms, p99.9 {} ms, max {} ms",
        lateness.len(),
        lateness.value_at_quantile(0.5),
        lateness.value_at_quantile(0.9),
        lateness.value_at_quantile(0.99),
        lateness.value_at_quantile(0.999),
        lateness.max()
    );
    println!(
        "gap between consecutive samples of one verification: p50 {} ms, p99 {} ms, max {} ms \
         (interval {} ms)",
        gaps.value_at_quantile(0.5),
        gaps.value_at_quantile(0.99),
        gaps.max(),
        INTERVAL_SECONDS * 1000
    );
    println!(
        "storage lag (now - `at` of the newest stored sample, every 250 ms): p50 {} ms, p99 {} ms, \
         max {} ms",
        storage_lag.value_at_quantile(0.5),
        storage_lag.value_at_quantile(0.99),
        storage_lag.max()
    );
    println!(
        "server responsiveness (GET /healthz, every 250 ms): p50 {:.1} ms, max {:.1} ms",
        healthz.value_at_quantile(0.5) as f64 / 1000.0,
        healthz.max() as f64 / 1000.0
    );
    if let (Some(b), Some(a)) = (psi_before, psi_after) {
        let pct = |i: usize| 100.0 * (a[i] - b[i]) as f64 / 1e6 / elapsed;
        println!(
            "machine pressure over the window (/proc/pressure): some task waiting for a CPU \
             {:.1}% of the time, for I/O {:.1}% (all tasks stalled on I/O {:.1}%)",
            pct(0),
            pct(1),
            pct(2)
        );
    }
    println!(
        "CPU, server process (CommandBridge + its SQLite; the bench thread only sleeps and reads a row every 250 ms): {process:.2} CPU-s \
         = {:.1}% of one core ({:.0} µs per sample); by thread:",
        100.0 * process / elapsed,
        process * 1e6 / stored.max(1) as f64
    );
    let mut by_thread: Vec<_> = cpu.iter().filter(|(_, s)| **s > 0.0).collect();
    by_thread.sort_by(|a, b| b.1.total_cmp(a.1));
    for (name, s) in by_thread {
        println!("    {s:>6.2} CPU-s {:>5.1}%  {name}", 100.0 * s / elapsed);
    }
    println!(
        "CPU, stub service (separate process, not counted above): {stub_cpu:.2} CPU-s = {:.1}% of one core",
        100.0 * stub_cpu / elapsed
    );

    println!(
        "{} failing samples in the window: {failing} of {} (every stub answer passes)",
        if failing == 0 { "PASS" } else { "FAIL" },
        rows.len()
    );
    let p99 = lateness.value_at_quantile(0.99);
    let pass_lateness = !lateness.is_empty() && p99 < TARGET_P99_MS;
    println!();
    println!(
        "{} p99 lateness {p99} ms < {TARGET_P99_MS} ms",
        if pass_lateness { "PASS" } else { "FAIL" }
    );
    println!(
        "{} samples/s {rate:.0} vs {expected:.0} expected ({:.1}%; needs at least 95%)",
        if rate >= 0.95 * expected {
            "PASS"
        } else {
            "FAIL"
        },
        100.0 * rate / expected
    );
    println!(
        "INFO CPU {:.1}% of one core for the server process ({:.1}% of the machine's {cpus} cores)",
        100.0 * process / elapsed,
        100.0 * process / elapsed / cpus.max(1) as f64
    );
    Ok(())
}

fn service(i: usize) -> String {
    format!("svc-{i:04}")
}

/// The embedded default with the bench's `[verification]` table and `n` services.
fn config_text(port: u16, n: usize, duration_minutes: f64) -> Result<String, Failure> {
    if !DEFAULT_SERVER_TOML.contains(DEFAULT_VERIFICATION) {
        return Err(format!(
            "the default configuration no longer holds {DEFAULT_VERIFICATION:?}: update the bench"
        )
        .into());
    }
    let mut text = DEFAULT_SERVER_TOML.replace(
        DEFAULT_VERIFICATION,
        &format!(
            "[verification]\nduration_minutes = {duration_minutes}\ninterval_seconds = {INTERVAL_SECONDS}\n"
        ),
    );
    for i in 0..n {
        let name = service(i);
        text.push_str(&format!(
            r#"
[[services]]
name = "{name}"
health_url = "http://127.0.0.1:{port}/svc/{name}/healthz"

[services.error_rate]
max = 0.01
"#
        ));
        text.push_str(&if i % 2 == 0 {
            format!(
                r#"prometheus_url = "http://127.0.0.1:{port}"
query = 'sum(rate(http_requests_total{{service="{name}",code=~"5.."}}[5m])) / sum(rate(http_requests_total{{service="{name}"}}[5m]))'
"#
            )
        } else {
            format!(
                r#"
[services.error_rate.cloudwatch]
region = "eu-west-1"
namespace = "AWS/ApplicationELB"
errors   = {{ metric = "HTTPCode_Target_5XX_Count", stat = "Sum", dimensions = {{ LoadBalancer = "app/{name}/1" }} }}
requests = {{ metric = "RequestCount", stat = "Sum", dimensions = {{ LoadBalancer = "app/{name}/1" }} }}
endpoint_url = "http://127.0.0.1:{port}/"
"#
            )
        });
    }
    Ok(text)
}

/// A value from `/metrics`.
async fn metric(http: &reqwest::Client, base: &str, name: &str) -> Result<f64, Failure> {
    let text = http
        .get(format!("{base}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            let (key, value) = l.rsplit_once(' ')?;
            (key.split('{').next()? == name).then(|| value.parse().ok())?
        })
        .ok_or_else(|| format!("no metric {name} in /metrics").into())
}

// ----- the stub service (child process) --------------------------------------------------------

struct Stub {
    child: Child,
    port: u16,
}

impl Stub {
    /// Re-executes this binary as the stub; it prints its port, and exits when its stdin closes.
    fn spawn() -> Result<Stub, Failure> {
        let mut child = Command::new(std::env::current_exe()?)
            .env(STUB_ENV, "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let stdout = child.stdout.take().ok_or("no stdout from the stub")?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        let port = line
            .trim()
            .strip_prefix("PORT ")
            .and_then(|p| p.parse().ok())
            .ok_or_else(|| format!("the stub did not say its port: {line:?}"))?;
        Ok(Stub { child, port })
    }

    /// Requests served so far: (health, Prometheus query, CloudWatch).
    async fn stats(&self, http: &reqwest::Client) -> Result<(u64, u64, u64), Failure> {
        let text = http
            .get(format!("http://127.0.0.1:{}/stats", self.port))
            .send()
            .await?
            .text()
            .await?;
        let mut it = text.split_whitespace().map(str::parse::<u64>);
        match (it.next(), it.next(), it.next()) {
            (Some(Ok(h)), Some(Ok(q)), Some(Ok(c))) => Ok((h, q, c)),
            _ => Err(format!("bad stub stats {text:?}").into()),
        }
    }

    fn cpu(&self) -> f64 {
        std::fs::read_to_string(format!("/proc/{}/stat", self.child.id()))
            .map(|s| stat_cpu(&s))
            .unwrap_or(0.0)
    }

    fn stop(&mut self) {
        drop(self.child.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn stub_main() -> Result<(), Failure> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let health = Arc::new(AtomicU64::new(0));
        let query = Arc::new(AtomicU64::new(0));
        let cloudwatch = Arc::new(AtomicU64::new(0));
        let (h, q, sh, sq) = (health.clone(), query.clone(), health, query);
        let (c, sc) = (cloudwatch.clone(), cloudwatch);
        let app = axum::Router::new()
            .route(
                "/svc/{name}/healthz",
                axum::routing::get(move || {
                    let h = h.clone();
                    async move {
                        h.fetch_add(1, Ordering::Relaxed);
                        "ok"
                    }
                }),
            )
            .route(
                "/api/v1/query",
                axum::routing::get(
                    move |axum::extract::Query(params): axum::extract::Query<
                        BTreeMap<String, String>,
                    >| {
                        let q = q.clone();
                        async move {
                            q.fetch_add(1, Ordering::Relaxed);
                            if !params.contains_key("query") {
                                return axum::Json(serde_json::json!({
                                    "status": "error", "errorType": "bad_data",
                                    "error": "no query"
                                }));
                            }
                            let ts = std::time::SystemTime::now()
                                .duration_since(std::time::UNIX_EPOCH)
                                .map_or(0.0, |d| d.as_secs_f64());
                            axum::Json(serde_json::json!({
                                "status": "success",
                                "data": {"resultType": "vector",
                                         "result": [{"metric": {}, "value": [ts, "0.002"]}]}
                            }))
                        }
                    },
                ),
            )
            .route(
                "/",
                axum::routing::post(move |headers: axum::http::HeaderMap, body: String| {
                    let c = c.clone();
                    async move { get_metric_data(&c, &headers, &body) }
                }),
            )
            .route(
                "/stats",
                axum::routing::get(move || {
                    let (sh, sq, sc) = (sh.clone(), sq.clone(), sc.clone());
                    async move {
                        format!(
                            "{} {} {}",
                            sh.load(Ordering::Relaxed),
                            sq.load(Ordering::Relaxed),
                            sc.load(Ordering::Relaxed)
                        )
                    }
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let mut out = std::io::stdout().lock();
        writeln!(out, "PORT {port}")?;
        out.flush()?;
        drop(out);
        // Exit when the parent closes our stdin (or dies).
        std::thread::spawn(|| {
            let mut sink = Vec::new();
            let _ = std::io::stdin().read_to_end(&mut sink);
            std::process::exit(0);
        });
        axum::serve(listener, app).await?;
        Ok(())
    })
}

/// CloudWatch's JSON protocol, as much as the verifier uses: a signed `GetMetricData` for the
/// queries `errors` and `requests`, answered with 2 errors in 1,000 requests. Anything else is
/// refused as CloudWatch would, so a broken request shows up as failing samples.
fn get_metric_data(
    count: &AtomicU64,
    headers: &axum::http::HeaderMap,
    body: &str,
) -> (axum::http::StatusCode, String) {
    use axum::http::StatusCode;
    count.fetch_add(1, Ordering::Relaxed);
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    };
    if header("x-amz-target") != "GraniteServiceVersion20100801.GetMetricData"
        || header("content-type") != "application/x-amz-json-1.0"
    {
        return (
            StatusCode::BAD_REQUEST,
            r#"{"__type":"UnknownOperationException"}"#.into(),
        );
    }
    if !header("authorization").starts_with("AWS4-HMAC-SHA256 Credential=bench/") {
        return (
            StatusCode::FORBIDDEN,
            r#"{"__type":"MissingAuthenticationTokenException","message":"not signed"}"#.into(),
        );
    }
    let Ok(input) = serde_json::from_str::<serde_json::Value>(body) else {
        return (
            StatusCode::BAD_REQUEST,
            r#"{"__type":"SerializationException"}"#.into(),
        );
    };
    let results: Vec<serde_json::Value> = input["MetricDataQueries"]
        .as_array()
        .map(|queries| {
            queries
                .iter()
                .map(|q| {
                    let value = if q["Id"] == "errors" { 2.0 } else { 1000.0 };
                    serde_json::json!({
                        "Id": q["Id"], "Label": q["Id"], "StatusCode": "Complete",
                        "Timestamps": [input["EndTime"]], "Values": [value]
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    (
        StatusCode::OK,
        serde_json::json!({ "MetricDataResults": results, "Messages": [] }).to_string(),
    )
}

// ----- CPU and load (Linux /proc; zeros elsewhere) ----------------------------------------------

/// Pressure stall totals in µs (Linux PSI): cpu some, io some, io full.
fn pressure() -> Option<[u64; 3]> {
    let total = |file: &str, kind: &str| -> Option<u64> {
        let text = std::fs::read_to_string(format!("/proc/pressure/{file}")).ok()?;
        let line = text.lines().find(|l| l.starts_with(kind))?;
        line.split_whitespace()
            .find_map(|f| f.strip_prefix("total="))?
            .parse()
            .ok()
    };
    Some([
        total("cpu", "some")?,
        total("io", "some")?,
        total("io", "full")?,
    ])
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}
