//! CPU time from `/proc`, shared by the benchmarks (each includes this file as a module).
// Not every benchmark uses every function.
#![allow(dead_code)]

use std::collections::BTreeMap;

/// USER_HZ on Linux: the unit of utime and stime.
pub const TICKS_PER_SEC: f64 = 100.0;

/// utime + stime, in seconds, from the text of a `/proc/…/stat` file.
pub fn stat_cpu(stat: &str) -> f64 {
    let Some(close) = stat.rfind(')') else {
        return 0.0;
    };
    // After the name: state, ppid, …; utime is the 12th field from there, stime the 13th.
    let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
    [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i)?.parse::<f64>().ok())
        .sum::<f64>()
        / TICKS_PER_SEC
}

/// CPU seconds used so far by process `pid` (every thread, live or exited).
pub fn pid_cpu(pid: u32) -> Option<f64> {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .map(|s| stat_cpu(&s))
}

/// A `Vm…:` line of `/proc/<pid>/status` (e.g. `VmRSS:`), in MB.
pub fn vm_mb(pid: u32, field: &str) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix(field))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

/// CPU seconds of this whole process (every thread, live or exited).
pub fn process_cpu() -> f64 {
    std::fs::read_to_string("/proc/self/stat")
        .map(|s| stat_cpu(&s))
        .unwrap_or(0.0)
}

/// CPU seconds used so far by this process's live threads, by thread name with any trailing
/// number dropped (`sqlx-sqlite-worker-3` counts as `sqlx-sqlite-worker`).
pub fn thread_cpu() -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for task in tasks.flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let name = stat[open + 1..close]
            .trim_end_matches(|c: char| c.is_ascii_digit())
            .trim_end_matches('-')
            .to_string();
        *out.entry(name).or_default() += stat_cpu(&stat);
    }
    out
}
