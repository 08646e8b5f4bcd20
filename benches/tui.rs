//! The dashboard's figures (frame time, bytes written, idle CPU, memory, event updates), each
//! with its target, in one run.
//!
//! 1. Frame time: the whole dashboard with the Approvals pane focused and 10,000 pending
//!    changes, drawn by `view::draw` into a `TestBackend` at 200×50 (target < 2 ms a frame),
//!    the selection moving one row (`j`) before each frame so no two frames are alike; once at
//!    the top of the queue and once deep in it. Also the reducer's cost for one live
//!    `change.requested` event with 10,000 pending (target < 0.1 ms: the change takes its place
//!    in the sorted queue by binary search; nothing is re-sorted).
//! 2. Bytes written to the terminal per second while one verification counts down (target
//!    < 300 B/s): `CrosstermBackend` over a byte-counting writer, drawn as `runtime::draw` does
//!    (synchronized-update escapes around `Terminal::draw`), for 60 simulated one-second ticks,
//!    at 80×24 and 160×48. The first full frame is not counted.
//! 3. CPU of the real `commandbridge demo` (dashboard and server in one process) in tmux over
//!    `BENCH_SECONDS` (default 30 s; target < 1%), from /proc/<pid>/stat, once for each of:
//!    Approvals at 80×24 (idle: nothing on screen counts down), Verification at 80×24 (one
//!    countdown), Approvals and Verification at 160×48 (all panes side by side, so the
//!    countdown is on screen in both).
//! 4. Resident memory of the real `commandbridge tui` as an L2 against an in-process server
//!    holding 10,000 pending changes (target < 40 MB), read from /proc/<pid>/status once the
//!    Approvals title shows "10000 you can approve" and two more seconds have passed.
//!
//! `cargo bench --bench tui`; `BENCH_SECONDS=N` shortens the CPU phase; `BENCH_ONLY=1,3` runs
//! only those phases; `BENCH_TUI_ENV="VAR=value …"` adds to the measured dashboard's environment
//! in phase 4 (e.g. `MALLOC_ARENA_MAX=1`, to see what the allocator keeps). Phases 3 and 4 need
//! tmux.

use chrono::Duration as Span;
use commandbridge::client::ApiClient;
use commandbridge::config::ServerConfig;
use commandbridge::domain::api::ChangeRequest;
use commandbridge::domain::approval::Requirement;
use commandbridge::domain::change::ChangeState;
use commandbridge::domain::{Level, Risk};
use commandbridge::server::clock::Clock;
use commandbridge::server::store::Store;
use commandbridge::server::{start, users};
use commandbridge::tui::app::{Msg, Pane, State, update};
use commandbridge::tui::fixtures::{self, busy_change, busy_queue, event, key};
use commandbridge::tui::theme::Theme;
use commandbridge::tui::view;
use crossterm::terminal::{BeginSynchronizedUpdate, EndSynchronizedUpdate};
use hdrhistogram::Histogram;
use ratatui::backend::{CrosstermBackend, TestBackend};
use ratatui::layout::Rect;
use ratatui::{Terminal, TerminalOptions, Viewport};
use std::cell::Cell;
use std::io::Write;
use std::path::Path;
use std::rc::Rc;
use std::time::{Duration, Instant};

#[path = "support/proc_stat.rs"]
mod proc_stat;
#[path = "../tests/support/tmux.rs"]
mod tmux;

use tmux::{Failure, Tmux, sandbox};

const BIN: &str = env!("CARGO_BIN_EXE_commandbridge");
const PENDING: usize = 10_000;
const FRAMES: usize = 500;
const TARGET_FRAME_MS: f64 = 2.0;
const TARGET_EVENT_MS: f64 = 0.1;
const TARGET_BYTES_PER_S: f64 = 300.0;
const TARGET_CPU_PERCENT: f64 = 1.0;
const TARGET_RSS_MB: f64 = 40.0;
/// The server's clock for the memory phase: inside the same window.
const PINNED_CLOCK: &str = "2026-11-24T10:00:00Z";

fn main() -> Result<(), Failure> {
    let cpu_secs: f64 = match std::env::var("BENCH_SECONDS") {
        Ok(v) => v
            .parse()
            .ok()
            .filter(|s: &f64| *s > 0.0)
            .ok_or("BENCH_SECONDS must be a positive number of seconds")?,
        Err(_) => 30.0,
    };
    if !Path::new(BIN).exists() {
        return Err(format!("{BIN} is missing: run `cargo bench --bench tui`").into());
    }
    // `BENCH_ONLY=1,2` runs only those phases (e.g. under a profiler).
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    let run = |phase: &str| only.is_empty() || only.split(',').any(|p| p.trim() == phase);
    let mut summary = Vec::new();

    if run("1") {
        println!("(1) frame time: Approvals focused, {PENDING} pending, 200×50, {FRAMES} frames");
        let frames = frame_times()?;
        for (label, h) in &frames.runs {
            let (mean, p99, max) = (
                ms(h.mean()),
                ms(h.value_at_quantile(0.99) as f64),
                ms(h.max() as f64),
            );
            println!("    {label}: mean {mean:.3} ms, p99 {p99:.3} ms, max {max:.3} ms");
            summary.push(format!(
            "approvals pane 10k @200x50, {label}: mean {mean:.2} ms, p99 {p99:.2} ms  {} (< {TARGET_FRAME_MS} ms)",
            verdict(p99 < TARGET_FRAME_MS)
        ));
        }
        let u = &frames.update;
        println!(
            "    update(ServerEvent change.requested) with {PENDING}+ pending: mean {:.4} ms, p99 {:.4} ms, \
         max {:.4} ms ({} events)",
            ms(u.mean()),
            ms(u.value_at_quantile(0.99) as f64),
            ms(u.max() as f64),
            u.len()
        );
        let mean = ms(u.mean());
        summary.push(format!(
            "update() for one change.requested with 10k pending: mean {mean:.4} ms, p99 {:.4} ms  {} \
             (< {TARGET_EVENT_MS} ms)",
            ms(u.value_at_quantile(0.99) as f64),
            verdict(mean < TARGET_EVENT_MS)
        ));
    }

    if run("2") {
        println!("(2) bytes written while one countdown runs (Verification focused, 60 ticks)");
        for (w, h) in [(80, 24), (160, 48)] {
            let b = countdown_bytes(w, h, 60)?;
            let per_s = b.after_first as f64 / b.seconds as f64;
            println!(
                "    {w}×{h}: first full frame {} B; then {} B in {} s over {} draws = {per_s:.0} B/s \
             (per draw: min {} B, max {} B)",
                b.first, b.after_first, b.seconds, b.draws, b.min_draw, b.max_draw
            );
            summary.push(format!(
                "bytes/s, one countdown, {w}x{h}: {per_s:.0}  {} (< {TARGET_BYTES_PER_S:.0})",
                verdict(per_s < TARGET_BYTES_PER_S)
            ));
        }
    }

    if run("3") {
        println!("(3) CPU of `commandbridge demo` in tmux over {cpu_secs:.0} s (run side by side)");
        let cases = [
            (
                "idle: Approvals 80x24, no countdown on screen",
                80,
                24,
                None,
            ),
            ("Verification 80x24, one countdown", 80, 24, Some("4")),
            (
                "Approvals 160x48 (wide: countdown on screen)",
                160,
                48,
                None,
            ),
            ("Verification 160x48, countdown", 160, 48, Some("4")),
        ];
        let results: Vec<Result<Cpu, Failure>> = std::thread::scope(|scope| {
            let handles: Vec<_> = cases
                .iter()
                .enumerate()
                .map(|(i, &(_, w, h, key))| scope.spawn(move || demo_cpu(i, w, h, key, cpu_secs)))
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err("CPU probe panicked".into()))
                })
                .collect()
        });
        for ((label, ..), r) in cases.iter().zip(results) {
            let cpu = r?;
            println!(
                "    {label}: {:.2} CPU-s in {:.1} s = {:.2}% (pid {}, RSS {:.1} MB)",
                cpu.cpu_secs, cpu.seconds, cpu.percent, cpu.pid, cpu.rss_mb
            );
            summary.push(format!(
                "CPU over {cpu_secs:.0} s, {label}: {:.2}%  {} (< {TARGET_CPU_PERCENT}%)",
                cpu.percent,
                verdict(cpu.percent < TARGET_CPU_PERCENT)
            ));
        }
    }

    if run("4") {
        println!(
            "(4) resident memory of `commandbridge tui` with {PENDING} pending changes, 160×48"
        );
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
        let mem = rt.block_on(memory())?;
        println!(
            "    seeded {PENDING} changes through the API in {:.1} s; the pending changes are {:.1} MB of JSON (fetched in pages of 500)",
            mem.seed_secs,
            mem.json_bytes as f64 / 1e6
        );
        let (b, m) = (&mem.baseline, &mem.loaded);
        println!(
            "    empty queue (same server, before seeding): pid {}: VmRSS {:.1} MB, VmHWM {:.1} MB",
            b.pid, b.rss_mb, b.hwm_mb
        );
        println!(
            "    {PENDING} pending: pid {}: VmRSS {:.1} MB (+{:.1} MB), VmHWM (peak) {:.1} MB; \
         '{}' on screen {:.1} s after start",
            m.pid,
            m.rss_mb,
            m.rss_mb - b.rss_mb,
            m.hwm_mb,
            mem.seen,
            m.load_secs
        );
        summary.push(format!(
        "RSS with 10,000 pending: {:.1} MB (peak {:.1} MB; empty queue {:.1} MB)  {} (< {TARGET_RSS_MB} MB)",
        m.rss_mb,
        m.hwm_mb,
        b.rss_mb,
        verdict(m.rss_mb < TARGET_RSS_MB)
    ));
    }

    println!();
    println!("summary");
    for line in summary {
        println!("{line}");
    }
    Ok(())
}

fn verdict(ok: bool) -> &'static str {
    if ok { "PASS" } else { "FAIL" }
}

fn ms(nanos: f64) -> f64 {
    nanos / 1e6
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("valid bounds")
}

// ----- a dashboard state, as the runtime builds it from the server's answers ------------------

/// The dashboard as bob (L2) sees it with `pending` changes waiting, at `w`×`h`: the test
/// scene (src/tui/fixtures.rs) with a busy queue, and one verification whose countdown is all
/// that moves (no samples).
fn scene(pending: usize, w: u16, h: u16) -> State {
    let mut countdown = fixtures::watched();
    (
        countdown.health_checked,
        countdown.error_rate_checked,
        countdown.max_error_rate,
        countdown.last_sample,
    ) = (false, false, None, None);
    countdown.recent_error_rates.clear();
    let mut s = fixtures::scene_with("bob", Level::L2, busy_queue(pending), vec![countdown]);
    update(&mut s, Msg::Resize(w, h));
    s.dirty = true;
    s
}

// ----- (1) frame time -------------------------------------------------------------------------

struct FrameTimes {
    runs: Vec<(String, Histogram<u64>)>,
    update: Histogram<u64>,
}

fn frame_times() -> Result<FrameTimes, Failure> {
    let theme = Theme { mono: false };
    let (w, h) = (200, 50);
    let mut s = scene(PENDING, w, h);
    s.pane = Pane::Approvals;
    if s.approvals.queue_len() != PENDING {
        return Err(format!(
            "the queue holds {} changes, not {PENDING}",
            s.approvals.queue_len()
        )
        .into());
    }
    let mut term = Terminal::new(TestBackend::new(w, h))?;
    // Warm-up, and a check that the frame shows what it should.
    for _ in 0..20 {
        term.draw(|f| view::draw(f, &s, &theme))?;
    }
    let screen = term.backend().to_string();
    let title = format!("{} you can approve", s.approvals.approvable_count());
    if !screen.contains(&title) || !screen.contains("blacklist-ip") {
        return Err(format!("the Approvals pane is not on screen:\n{screen}").into());
    }
    println!(
        "    queue: {} pending, {} bob can approve",
        s.approvals.queue_len(),
        s.approvals.approvable_count()
    );

    let mut runs = Vec::new();
    for (label, start) in [
        ("top of the queue", 0usize),
        ("deep in the queue (row 9,400+)", 9_400),
    ] {
        s.approvals.select(start);
        let mut hist = histogram();
        for _ in 0..FRAMES {
            update(&mut s, key('j'));
            let t = Instant::now();
            term.draw(|f| view::draw(f, &s, &theme))?;
            hist.record(t.elapsed().as_nanos() as u64)?;
        }
        if s.approvals.selected_index() != start + FRAMES {
            return Err(
                format!("j moved the selection to {}", s.approvals.selected_index()).into(),
            );
        }
        runs.push((label.to_string(), hist));
    }

    // One live request arriving while 10,000 wait: deserialised, upserted, put in its place.
    s.approvals.select(0);
    let mut upd = histogram();
    for k in 0..200 {
        let mut c = busy_change(1_000_000 + k, 0);
        c.requested_by = "alice".into();
        c.requested_level = Level::L1;
        c.risk = Risk::High;
        c.approvals_required = vec![Requirement::Level {
            min: Level::L2,
            count: 1,
        }];
        c.state = ChangeState::PendingApproval;
        let e = event(
            1000 + k,
            "change.requested",
            "alice requested blacklist-ip",
            serde_json::to_value(&c)?,
        );
        let msg = Msg::ServerEvent(Box::new(e));
        let t = Instant::now();
        update(&mut s, msg);
        upd.record(t.elapsed().as_nanos() as u64)?;
    }
    if s.approvals.queue_len() != PENDING + 200 {
        return Err(format!("live events left {} in the queue", s.approvals.queue_len()).into());
    }
    Ok(FrameTimes { runs, update: upd })
}

// ----- (2) bytes per second -------------------------------------------------------------------

/// Counts what the terminal would receive.
#[derive(Clone, Default)]
struct Counter(Rc<Cell<u64>>);

impl Write for Counter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.set(self.0.get() + buf.len() as u64);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

struct Bytes {
    first: u64,
    after_first: u64,
    seconds: u64,
    draws: u64,
    min_draw: u64,
    max_draw: u64,
}

/// As `runtime::draw`: the frame inside a synchronized update. Returns the frame's text.
fn draw_like_runtime(
    term: &mut Terminal<CrosstermBackend<Counter>>,
    out: &mut Counter,
    state: &State,
    theme: &Theme,
) -> std::io::Result<String> {
    crossterm::execute!(out, BeginSynchronizedUpdate)?;
    let frame = term.draw(|f| view::draw(f, state, theme))?;
    let text = frame.buffer.content().iter().map(|c| c.symbol()).collect();
    crossterm::execute!(out, EndSynchronizedUpdate)?;
    Ok(text)
}

fn countdown_bytes(w: u16, h: u16, seconds: u64) -> Result<Bytes, Failure> {
    let theme = Theme { mono: false };
    let mut s = scene(4, w, h);
    update(&mut s, key('4'));
    if s.pane != Pane::Verification || s.active_verifications().count() != 1 {
        return Err("expected the Verification pane with exactly one countdown".into());
    }
    let mut out = Counter::default();
    // A fixed viewport: the writer is not a terminal, so nothing may ask it for its size.
    let mut term = Terminal::with_options(
        CrosstermBackend::new(out.clone()),
        TerminalOptions {
            viewport: Viewport::Fixed(Rect::new(0, 0, w, h)),
        },
    )?;
    let mut screen = draw_like_runtime(&mut term, &mut out, &s, &theme)?;
    s.dirty = false;
    let first = out.0.get();
    let start = s.now;
    let (mut draws, mut min_draw, mut max_draw) = (0, u64::MAX, 0);
    for t in 1..=seconds {
        update(&mut s, Msg::Tick(start + Span::seconds(t as i64)));
        if s.dirty {
            let before = out.0.get();
            screen = draw_like_runtime(&mut term, &mut out, &s, &theme)?;
            s.dirty = false;
            let n = out.0.get() - before;
            draws += 1;
            min_draw = min_draw.min(n);
            max_draw = max_draw.max(n);
        }
    }
    if !screen.contains("10:40") {
        return Err(format!("the countdown is not at 10:40 after 60 s: {screen}").into());
    }
    Ok(Bytes {
        first,
        after_first: out.0.get() - first,
        seconds,
        draws,
        min_draw: if draws == 0 { 0 } else { min_draw },
        max_draw,
    })
}

// ----- /proc ---------------------------------------------------------------------------------

fn cpu_of(pid: u32) -> Result<f64, Failure> {
    proc_stat::pid_cpu(pid).ok_or_else(|| format!("no /proc/{pid}/stat").into())
}

fn mb_of(pid: u32, field: &str) -> Result<f64, Failure> {
    proc_stat::vm_mb(pid, field).ok_or_else(|| format!("no {field} in /proc/{pid}/status").into())
}

// ----- (3) CPU --------------------------------------------------------------------------------

struct Cpu {
    pid: u32,
    cpu_secs: f64,
    seconds: f64,
    percent: f64,
    rss_mb: f64,
}

fn demo_cpu(i: usize, w: u16, h: u16, key: Option<&str>, secs: f64) -> Result<Cpu, Failure> {
    let home = tempfile::tempdir()?;
    let tmux = Tmux::start(
        &format!("bench-cpu{i}"),
        (w, h),
        &sandbox(home.path()),
        &[BIN, "demo"],
    )?;
    let pid = tmux.pid()?;
    tmux.wait_for("● live", Duration::from_secs(30))?;
    if let Some(k) = key {
        tmux.keys(&[k])?;
        tmux.wait_for("▶ 4 Verification", Duration::from_secs(5))?;
    }
    // Let the start-up loads and the seeded events settle.
    std::thread::sleep(Duration::from_secs(2));
    let before = cpu_of(pid)?;
    let t = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(secs));
    let cpu_secs = cpu_of(pid)? - before;
    let seconds = t.elapsed().as_secs_f64();
    let rss_mb = mb_of(pid, "VmRSS:")?;
    // Still the dashboard, still live: the figure is not of a process that died.
    tmux.wait_for("● live", Duration::from_secs(2))?;
    Ok(Cpu {
        pid,
        cpu_secs,
        seconds,
        percent: 100.0 * cpu_secs / seconds,
        rss_mb,
    })
}

// ----- (4) memory -----------------------------------------------------------------------------

struct Memory {
    seed_secs: f64,
    json_bytes: usize,
    /// The same dashboard against the same server while its queue is empty.
    baseline: Rss,
    loaded: Rss,
    seen: String,
}

struct Rss {
    pid: u32,
    rss_mb: f64,
    hwm_mb: f64,
    load_secs: f64,
}

async fn memory() -> Result<Memory, Failure> {
    let dir = tempfile::tempdir()?;
    let url = format!("sqlite://{}", dir.path().join("cb.db").display());
    let store = Store::open(&url).await?;
    let requester = users::add(&store, "alice", Level::L1).await?;
    let reviewer = users::add(&store, "bob", Level::L2).await?;
    let clock = Clock::starting_at(PINNED_CLOCK.parse()?);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let server = start(ServerConfig::embedded_default(), store, clock, listener).await?;
    let base = format!("http://{}", server.addr);

    let home = dir.path().join("home-empty");
    let env = vec![format!("CB_SERVER={base}"), format!("CB_TOKEN={reviewer}")];
    let baseline = tokio::task::spawn_blocking(move || {
        tui_rss(
            "rss-empty",
            &home,
            &env,
            "no change is waiting for approval",
        )
    })
    .await??;

    // 10,000 high-risk changes by an L1: each waits for an L2's approval.
    let t = Instant::now();
    let clients = 64;
    let mut tasks = Vec::new();
    for i in 0..clients {
        let client = ApiClient::new(&base, &requester)?;
        tasks.push(tokio::spawn(async move {
            let mut n = i;
            while n < PENDING {
                let req = ChangeRequest {
                    action: "blacklist-ip".into(),
                    ticket: format!("CHG-{}", 10_000 + n),
                    target: format!("edge-{:02}", n % 32),
                    params: [(
                        "ip".to_string(),
                        serde_json::json!(format!("203.0.{}.{}", n / 250, n % 250)),
                    )]
                    .into(),
                    reason: "credential stuffing from one address".into(),
                    run_at: None,
                };
                let c = client.create_change(&req, None).await?;
                if c.state != ChangeState::PendingApproval {
                    return Err(format!("change #{} ended {}", c.id, c.state).into());
                }
                n += clients;
            }
            Ok::<(), Failure>(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    let seed_secs = t.elapsed().as_secs_f64();
    let bob = ApiClient::new(&base, &reviewer)?;
    let pending = bob
        .changes_following(Some(ChangeState::PendingApproval), None, None)
        .await?
        .items;
    if pending.len() != PENDING {
        return Err(format!("the server holds {} pending, not {PENDING}", pending.len()).into());
    }
    // What the dashboard downloads, page by page, as the server encodes it.
    let json_bytes = serde_json::to_vec(&pending)?.len();

    let mut extra: Vec<String> = std::env::var("BENCH_TUI_ENV")
        .unwrap_or_default()
        .split_whitespace()
        .map(String::from)
        .collect();
    extra.push(format!("CB_SERVER={base}"));
    extra.push(format!("CB_TOKEN={reviewer}"));
    let home = dir.path().join("home");
    let seen = format!("{PENDING} you can approve");
    let seen2 = seen.clone();
    let loaded = tokio::task::spawn_blocking(move || tui_rss("rss", &home, &extra, &seen2)).await;
    server.stop().await;
    Ok(Memory {
        seed_secs,
        json_bytes,
        baseline,
        loaded: loaded??,
        seen,
    })
}

/// `commandbridge tui` in tmux at 160×48: its memory two seconds after `expect` is on screen.
fn tui_rss(tag: &str, home: &Path, env: &[String], expect: &str) -> Result<Rss, Failure> {
    let mut vars = sandbox(home);
    vars.extend_from_slice(env);
    let t = Instant::now();
    let tmux = Tmux::start(&format!("bench-{tag}"), (160, 48), &vars, &[BIN, "tui"])?;
    let pid = tmux.pid()?;
    tmux.wait_for(expect, Duration::from_secs(120))?;
    let load_secs = t.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_secs(2));
    Ok(Rss {
        pid,
        rss_mb: mb_of(pid, "VmRSS:")?,
        hwm_mb: mb_of(pid, "VmHWM:")?,
        load_secs,
    })
}
