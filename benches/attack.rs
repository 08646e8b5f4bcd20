//! Two attacks on the real `commandbridge serve` binary, measured rather than asserted (the
//! assertions are in `tests/security/resources.rs`):
//!
//! 1. Slow SSE readers: 300 event streams opened with `Last-Event-ID: 0` over a history of
//!    2,000 events and never read (a small receive window, as across a slow network). The
//!    server's RSS and heap in use (`commandbridge_heap_in_use_bytes`) before, with the streams
//!    open, and 3 s after they closed, and what the kernel holds in their send queues; twice, so
//!    memory kept for reuse shows apart from memory that grows with every stream.
//! 2. Slowloris: 3,000 half-open connections attempted (and held) against a server whose
//!    file-descriptor limit is 2,048, while a new client asks `/healthz` every 50 ms on a fresh
//!    connection; p50/p99 latency and how many probes got no answer within 5 s, while the
//!    attack builds up and then for 5 s while every connection it made is held.
//!
//! `cargo bench --bench attack`. `CB_BIN=/path/to/commandbridge` measures another build (e.g. a
//! baseline from before a change) with the same load. `BENCH_STREAMS`, `BENCH_HALF_OPEN` and
//! `BENCH_FD_LIMIT` change the three numbers above. Loopback only; it stops by itself.

#[path = "../tests/support/mod.rs"]
mod support;

use hdrhistogram::Histogram;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};
use support::binary::{BIN, BinaryOptions, BinaryServer};
use support::load;

type Failure = Box<dyn std::error::Error + Send + Sync>;

const HISTORY: usize = 2_000;
const PROBE_EVERY: Duration = Duration::from_millis(50);
const PROBE_PATIENCE: Duration = Duration::from_secs(5);
/// However slowly a server accepts, the attack stops making connections after this long.
const ATTACK_AT_MOST: Duration = Duration::from_secs(60);
/// Probing goes on this long after the last half-open connection is made, all still held.
const HOLD: Duration = Duration::from_secs(5);

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

fn main() -> Result<(), Failure> {
    commandbridge::tls::install_provider();
    let streams = support::load::env_number("BENCH_STREAMS", 300)?;
    let half_open = support::load::env_number("BENCH_HALF_OPEN", 3_000)?;
    let fd_limit = support::load::env_number("BENCH_FD_LIMIT", 2_048)?;
    let bin = std::env::var_os("CB_BIN").map(std::path::PathBuf::from);
    println!(
        "binary: {}",
        bin.as_ref()
            .map_or(BIN.to_string(), |b| b.display().to_string())
    );
    println!("load average at start: {}", loadavg());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        slow_readers(bin.clone(), streams).await?;
        slowloris(bin, half_open, fd_limit).await
    })?;
    println!("load average at end: {}", loadavg());
    Ok(())
}

async fn slow_readers(bin: Option<std::path::PathBuf>, streams: usize) -> Result<(), Failure> {
    let mut server = BinaryServer::start(BinaryOptions {
        bin,
        ..Default::default()
    })
    .await;
    load::pending_changes(&server.base, server.token("alice"), HISTORY, 8).await;
    // A server allows a few streams per operator: enough operators for every stream.
    let tokens = load::add_operators(&server.db_url(), streams.div_ceil(8)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    println!(
        "slow SSE readers: {streams} streams from Last-Event-ID 0 over {HISTORY} events, never \
         read"
    );
    // A second round tells memory kept for reuse (allocator, SQLite page caches) from memory
    // that grows with every stream ever opened.
    const HEAP: &str = "commandbridge_heap_in_use_bytes";
    let heap = |bytes: Option<f64>| bytes.map_or("?".into(), |b| format!("{:.1}", mib(b as u64)));
    for round in 1..=2 {
        let before = server.rss_bytes();
        let heap_before = server.try_metric(HEAP).await;
        let mut open = Vec::new();
        let mut refused = 0;
        for i in 0..streams {
            let (status, stream) = load::unread_stream(server.addr, &tokens[i / 8], 0).await;
            if status == 200 {
                open.push(stream);
            } else {
                refused += 1;
            }
        }
        // Until the server has written all it can into the full sockets.
        server
            .quiet("the streams' replays", Duration::from_secs(120))
            .await;
        let with = server.rss_bytes();
        let heap_with = server.try_metric(HEAP).await;
        let kernel: u64 = load::server_queues(server.addr)
            .iter()
            .map(|&(tx, _)| tx)
            .sum();
        drop(open);
        tokio::time::sleep(Duration::from_secs(3)).await;
        let after = server.rss_bytes();
        println!(
            "  round {round}: RSS before {:.1} MiB, with the streams {:.1} MiB (+{:.1} MiB, \
             {:.0} KiB a stream, {refused} refused), 3 s after they closed {:.1} MiB",
            mib(before),
            mib(with),
            mib(with.saturating_sub(before)),
            with.saturating_sub(before) as f64 / 1024.0 / streams as f64,
            mib(after)
        );
        println!(
            "           heap in use before {} MiB, with the streams {} MiB; kernel send queues \
             {:.1} MiB ({:.0} KiB a stream)",
            heap(heap_before),
            heap(heap_with),
            mib(kernel),
            kernel as f64 / 1024.0 / streams as f64
        );
    }
    server.stop().await;
    Ok(())
}

/// `/healthz` probes from new clients: latencies of the answered ones, and how many got none.
struct Probes {
    latency: Histogram<u64>,
    failed: u64,
}

impl Default for Probes {
    fn default() -> Self {
        Probes {
            latency: Histogram::new(3).expect("a histogram"),
            failed: 0,
        }
    }
}

impl Probes {
    fn add(&mut self, latency: Option<Duration>) {
        match latency {
            Some(l) => self.latency.saturating_record(l.as_micros() as u64),
            None => self.failed += 1,
        }
    }

    fn report(&self, when: &str) {
        let ms = |q: f64| self.latency.value_at_quantile(q) as f64 / 1000.0;
        println!(
            "  /healthz from new clients {when}: {} answered, p50 {:.1} ms, p99 {:.1} ms, \
             max {:.1} ms; {} without an answer within {} s",
            self.latency.len(),
            ms(0.5),
            ms(0.99),
            self.latency.max() as f64 / 1000.0,
            self.failed,
            PROBE_PATIENCE.as_secs()
        );
    }
}

async fn slowloris(
    bin: Option<std::path::PathBuf>,
    half_open: usize,
    fd_limit: usize,
) -> Result<(), Failure> {
    let mut server = BinaryServer::start(BinaryOptions {
        bin,
        fd_limit: Some(fd_limit as u64),
        ..Default::default()
    })
    .await;
    // 0 while the attack builds up, 1 while every connection it made is held, 2 when done.
    let phase = Arc::new(AtomicU8::new(0));
    let prober = {
        let phase = phase.clone();
        let url = format!("{}/healthz", server.base);
        tokio::spawn(async move {
            commandbridge::tls::install_provider();
            // No pooling: every probe is a new client that needs a new connection.
            let http = reqwest::Client::builder()
                .pool_max_idle_per_host(0)
                .timeout(PROBE_PATIENCE)
                .build()
                .expect("an HTTP client");
            let mut probes = Vec::new();
            let mut tick = tokio::time::interval(PROBE_EVERY);
            loop {
                tick.tick().await;
                let during = phase.load(Ordering::Relaxed);
                if during == 2 {
                    break;
                }
                let (http, url) = (http.clone(), url.clone());
                // Each probe on its own, so one that hangs does not delay the next.
                probes.push(tokio::spawn(async move {
                    let t = Instant::now();
                    let ok =
                        matches!(http.get(&url).send().await, Ok(r) if r.status().is_success());
                    (during, ok.then(|| t.elapsed()))
                }));
            }
            let mut by_phase = [Probes::default(), Probes::default()];
            for p in probes {
                let (during, latency) = p.await.expect("a probe");
                by_phase[usize::from(during)].add(latency);
            }
            by_phase
        })
    };
    let t = Instant::now();
    let (connected, held) =
        load::slowloris(server.addr, half_open, half_open, ATTACK_AT_MOST).await;
    let attack_secs = t.elapsed().as_secs_f64();
    phase.store(1, Ordering::Relaxed);
    tokio::time::sleep(HOLD).await;
    let open_fds = std::fs::read_dir(format!("/proc/{}/fd", server.pid()))
        .map(|d| d.count())
        .unwrap_or(0);
    phase.store(2, Ordering::Relaxed);
    let [building, holding] = prober.await?;
    drop(held);
    println!(
        "slowloris: {half_open} half-open connections attempted in {attack_secs:.1} s \
         ({connected} connected), fd limit {fd_limit}, server holding {open_fds} descriptors \
         {} s later",
        HOLD.as_secs()
    );
    building.report("while the attack builds up");
    holding.report(&format!(
        "while all {connected} are held ({} s)",
        HOLD.as_secs()
    ));
    server.stop().await;
    Ok(())
}
