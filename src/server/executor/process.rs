//! A command's processes live and die with the server, and what a crash left behind is found
//! and stopped at restart.
//!
//! Each command runs in its own process group. On Linux its first process gets SIGKILL when the
//! server dies, however it dies (`PR_SET_PDEATHSIG`); processes it started itself do not inherit
//! that, so the group is recorded in the change's execution row while the command runs, and a
//! restarted server kills whatever of the group is still alive. A command that ends normally or
//! times out, or whose server stops gracefully, has its group killed on the way out
//! ([`Group`]'s drop), so the record never says "killed" of something still running.

use crate::server::store::CommandProcess;
use std::time::Duration;
use tokio::process::Command;

/// Makes the command's first process die with the server.
#[cfg(target_os = "linux")]
pub fn die_with_server(cmd: &mut Command) {
    let server = std::process::id() as libc::pid_t;
    // SAFETY: the closure runs in the forked child before exec, where only async-signal-safe
    // functions may be called: prctl and getppid are, and building an io::Error from an errno
    // allocates nothing. It captures only a pid_t.
    //
    // The death signal follows the *thread* that forked: commands are spawned from tokio's
    // worker threads, which live as long as the runtime (nothing here uses block_in_place).
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            // The server died between fork and prctl: the signal will never come.
            if libc::getppid() != server {
                return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
pub fn die_with_server(_cmd: &mut Command) {}

/// The process group of a running command. Dropped before [`Group::ended`] (a timeout, a
/// server stopping), it kills the whole group, not only its first process as `kill_on_drop`
/// would.
pub struct Group {
    pgid: libc::pid_t,
    armed: bool,
}

impl Group {
    /// The group led by `pid`, a child spawned with `process_group(0)`.
    pub fn led_by(pid: u32) -> Group {
        Group {
            pgid: pid as libc::pid_t,
            armed: true,
        }
    }

    /// What a restarted server needs to find the group again.
    pub fn record(&self) -> CommandProcess {
        CommandProcess {
            pgid: i64::from(self.pgid),
            leader_start: stat(self.pgid).map(|s| s.start),
            boot_id: boot_id(),
        }
    }

    /// The command ended by itself: leave alone anything it deliberately left running.
    pub fn ended(mut self) {
        self.armed = false;
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        if self.armed {
            // The leader has not been reaped yet (it is still ours, alive or a zombie), so its
            // pid, and with it the group id, cannot have been reused.
            // SAFETY: kill has no memory-safety preconditions.
            unsafe {
                libc::kill(-self.pgid, libc::SIGKILL);
            }
        }
    }
}

/// What became of a command that was running when its server stopped.
#[derive(Debug, PartialEq, Eq)]
pub enum Leftover {
    /// Nothing of it was running any more: it was killed with the server.
    Gone,
    /// This many of its processes had outlived the server; they have now been killed.
    Killed(usize),
    /// The machine restarted since, which ended it.
    Rebooted,
    /// It may still be running, for the reason given.
    MaybeRunning(String),
}

/// Finds what is left of a recorded command's process group and kills it.
pub async fn stop_leftovers(p: &CommandProcess) -> Leftover {
    let Some(now) = boot_id() else {
        return Leftover::MaybeRunning(
            "this system does not let the server check its processes (no /proc boot id)".into(),
        );
    };
    match p.boot_id.as_deref() {
        Some(then) if then != now => return Leftover::Rebooted,
        Some(_) => {}
        None => {
            return Leftover::MaybeRunning(
                "the server could not record which boot it ran in, so it cannot tell".into(),
            );
        }
    }
    let Ok(pgid) = libc::pid_t::try_from(p.pgid) else {
        return Leftover::MaybeRunning(format!("the recorded process group {} is invalid", p.pgid));
    };
    // A live leader that started at another time is an unrelated process that got the id:
    // the id can only be reused once nothing is left in our group.
    if let Some(leader) = stat(pgid)
        && p.leader_start.is_some_and(|start| start != leader.start)
    {
        return Leftover::Gone;
    }
    let found = match live_members(pgid) {
        Ok(found) if found.is_empty() => return Leftover::Gone,
        Ok(found) => found.len(),
        Err(e) => return Leftover::MaybeRunning(format!("cannot list processes: {e}")),
    };
    // SAFETY: kill has no memory-safety preconditions.
    if unsafe { libc::kill(-pgid, libc::SIGKILL) } == -1 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::ESRCH) {
            return Leftover::MaybeRunning(format!("killing it failed: {e}"));
        }
    }
    // SIGKILL lands when a process next leaves the kernel; give a stuck one a moment.
    for _ in 0..40 {
        match live_members(pgid) {
            Ok(left) if left.is_empty() => return Leftover::Killed(found),
            Ok(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            Err(e) => return Leftover::MaybeRunning(format!("cannot list processes: {e}")),
        }
    }
    Leftover::MaybeRunning("it did not stop within 2 s of SIGKILL".into())
}

/// The kernel's id of this boot.
/// The servers (stores) open in this process, by instance number: a process may stop one server
/// and start another on the same database (the tests' restarts do), and the stopped one's
/// leases must count as abandoned although its process lives on.
static LIVE_INSTANCES: std::sync::Mutex<Vec<u64>> = std::sync::Mutex::new(Vec::new());
static NEXT_INSTANCE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

fn live_instances() -> std::sync::MutexGuard<'static, Vec<u64>> {
    LIVE_INSTANCES.lock().unwrap_or_else(|e| e.into_inner())
}

/// A new signature for the leases a server holds (`executions.owner`,
/// `verifications.lease_owner`): boot, pid, process start time and instance, so
/// [`server_is_gone`] can tell, on the same machine, that a lease's holder has stopped without
/// waiting for the lease to run out. [`server_retired`] ends it.
pub fn server_identity() -> String {
    let pid = std::process::id() as libc::pid_t;
    let instance = NEXT_INSTANCE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    live_instances().push(instance);
    format!(
        "{}/{pid}/{}/{instance}",
        boot_id().unwrap_or_else(|| "-".into()),
        stat(pid).map_or(0, |s| s.start)
    )
}

/// The server that signed `owner` has stopped (its store is closed).
pub fn server_retired(owner: &str) {
    if let Some(instance) = owner.rsplit('/').next().and_then(|i| i.parse::<u64>().ok()) {
        live_instances().retain(|i| *i != instance);
    }
}

/// Whether the server that signed `owner` (see [`server_identity`]) certainly no longer runs:
/// it ran in this boot of this machine and its process is gone (or the pid is another's now), or
/// it ran in this process and was stopped. Anything else (another machine, no /proc) is not
/// known to be gone: its lease must run out.
pub fn server_is_gone(owner: &str) -> bool {
    let parts: Vec<&str> = owner.split('/').collect();
    let [boot, pid, start, instance] = parts[..] else {
        return false;
    };
    let (Ok(pid), Ok(start), Ok(instance)) = (
        pid.parse::<libc::pid_t>(),
        start.parse::<i64>(),
        instance.parse::<u64>(),
    ) else {
        return false;
    };
    if boot == "-" || boot_id().as_deref() != Some(boot) {
        return false;
    }
    if pid == std::process::id() as libc::pid_t && stat(pid).is_none_or(|s| s.start == start) {
        return !live_instances().contains(&instance);
    }
    match stat(pid) {
        None => true,
        Some(s) => s.start != start || s.state == 'Z' || s.state == 'X',
    }
}

fn boot_id() -> Option<String> {
    let id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    Some(id.trim().to_string()).filter(|id| !id.is_empty())
}

/// The fields of `/proc/PID/stat` used here.
struct Stat {
    /// R, S, D, Z (zombie: dead, waiting to be reaped), X …
    state: char,
    pgrp: libc::pid_t,
    /// Start time, in clock ticks since boot.
    start: i64,
}

fn stat(pid: libc::pid_t) -> Option<Stat> {
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

fn parse_stat(text: &str) -> Option<Stat> {
    // The command name, in parentheses, may itself hold spaces and parentheses.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state (field 3), ppid, pgrp (5), …, starttime (22).
    Some(Stat {
        state: fields.first()?.chars().next()?,
        pgrp: fields.get(2)?.parse().ok()?,
        start: fields.get(19)?.parse().ok()?,
    })
}

/// The processes of group `pgid` that are still running (zombies are dead already).
fn live_members(pgid: libc::pid_t) -> std::io::Result<Vec<libc::pid_t>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc")? {
        let Some(pid) = entry?
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<libc::pid_t>().ok())
        else {
            continue;
        };
        // A process that ended while we looked has no stat any more.
        if let Some(s) = stat(pid)
            && s.pgrp == pgid
            && !matches!(s.state, 'Z' | 'X' | 'x')
        {
            found.push(pid);
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_survives_a_name_with_spaces_and_parentheses() {
        let line = "4242 (a (b) c) S 1 4200 4200 0 -1 4194560 100 0 0 0 0 0 0 0 20 0 1 0 \
                    987654 1000 10 18446744073709551615";
        let s = parse_stat(line).expect("parsed");
        assert_eq!((s.state, s.pgrp, s.start), ('S', 4200, 987654));
    }

    #[tokio::test]
    async fn leftovers_of_a_group_are_killed_and_a_second_look_finds_none() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "sleep 30 & wait"]).process_group(0);
        let mut child = cmd.spawn().expect("sh");
        let group = Group::led_by(child.id().expect("pid"));
        let record = group.record();
        group.ended();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(stop_leftovers(&record).await, Leftover::Killed(2));
        let _ = child.wait().await;
        assert_eq!(stop_leftovers(&record).await, Leftover::Gone);
        let rebooted = CommandProcess {
            boot_id: Some("another boot".into()),
            ..record
        };
        assert_eq!(stop_leftovers(&rebooted).await, Leftover::Rebooted);
        let unknown = CommandProcess {
            boot_id: None,
            ..rebooted
        };
        assert!(matches!(
            stop_leftovers(&unknown).await,
            Leftover::MaybeRunning(_)
        ));
    }
}
