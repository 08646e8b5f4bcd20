//! Runs an action's command: argv only (never a shell), with a timeout and capped output, in
//! a process group of its own that dies with the server (see [`process`]).

mod process;
pub use process::{server_identity, server_is_gone, server_retired};

use crate::domain::ActionSpec;
use crate::domain::change::ExecutionOutput;
use crate::server::clock::Clock;
use crate::server::store::{CommandProcess, Store};
use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;

/// How much of stdout and of stderr is kept.
pub const OUTPUT_CAP: usize = 64 * 1024;

/// Where a running command's process group is recorded: its change's execution row, read
/// back by [`settle_interrupted`] after a crash.
#[derive(Clone, Copy)]
pub struct Track<'a> {
    pub store: &'a Store,
    pub change_id: i64,
}

impl Track<'_> {
    async fn set(&self, process: Option<&CommandProcess>) {
        let saved = async {
            let mut tx = self.store.write().await?;
            tx.execution_set_process(self.change_id, process).await?;
            tx.commit().await
        }
        .await;
        if let Err(e) = saved {
            // The command runs regardless, but a restart after a crash could not find it.
            tracing::warn!(
                change = self.change_id,
                error = %e,
                "recording the command's process group failed: if the server dies now, the \
                 restart cannot stop what is left of the command"
            );
        }
    }
}

/// Runs the change's command, or the simulator when the action has none. Never fails: a
/// command that cannot start, times out or exits non-zero is reported in the output.
pub async fn run(
    spec: &ActionSpec,
    target: &str,
    params: &BTreeMap<String, String>,
    clock: &Clock,
    track: Option<Track<'_>>,
) -> ExecutionOutput {
    let Some(argv) = spec.render_command(target, params) else {
        return simulated(spec, target, params, clock);
    };
    run_argv(&argv, spec.timeout_secs, clock, track).await
}

/// What the simulator reports for an action without a command.
pub fn simulated(
    spec: &ActionSpec,
    target: &str,
    params: &BTreeMap<String, String>,
    clock: &Clock,
) -> ExecutionOutput {
    let started_at = clock.now();
    let params: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
    ExecutionOutput {
        exit_code: Some(0),
        stdout: format!(
            "[simulator] no command is configured for {}: nothing was changed.\n\
                 [simulator] would run {} on target {}{}{}\n",
            spec.name,
            spec.name,
            target,
            if params.is_empty() { "" } else { " with " },
            params.join(" ")
        ),
        stderr: String::new(),
        truncated: false,
        simulated: true,
        started_at,
        finished_at: clock.now(),
    }
}

/// Runs a filled-in argv (never through a shell) with a timeout, capturing capped output.
/// With `track`, the command's process group is recorded while it runs.
pub async fn run_argv(
    argv: &[String],
    timeout_secs: u64,
    clock: &Clock,
    track: Option<Track<'_>>,
) -> ExecutionOutput {
    let started_at = clock.now();
    let failed = |stderr: String| ExecutionOutput {
        exit_code: None,
        stdout: String::new(),
        stderr,
        truncated: false,
        simulated: false,
        started_at,
        finished_at: clock.now(),
    };
    let Some((program, args)) = argv.split_first() else {
        return failed("the command is empty".into());
    };
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .process_group(0);
    process::die_with_server(&mut cmd);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return failed(format!("could not start {program}: {e}")),
    };
    let Some(group) = child.id().map(process::Group::led_by) else {
        return failed("the command ended before it could be watched".into());
    };
    if let Some(t) = track {
        t.set(Some(&group.record())).await;
    }
    let output = match (child.stdout.take(), child.stderr.take()) {
        (Some(out), Some(err)) => {
            let work = async {
                let (stdout, stderr, status) = tokio::join!(capped(out), capped(err), child.wait());
                (stdout, stderr, status)
            };
            match tokio::time::timeout(Duration::from_secs(timeout_secs), work).await {
                Ok(((stdout, t1), (stderr, t2), status)) => {
                    group.ended();
                    ExecutionOutput {
                        exit_code: status.ok().and_then(|s| s.code()),
                        stdout,
                        stderr,
                        truncated: t1 || t2,
                        simulated: false,
                        started_at,
                        finished_at: clock.now(),
                    }
                }
                Err(_) => {
                    drop(group);
                    failed(format!(
                        "timed out after {timeout_secs}s; the command was killed"
                    ))
                }
            }
        }
        // Dropping the group kills what was started.
        _ => failed("could not capture the command's output".into()),
    };
    if let Some(t) = track {
        t.set(None).await;
    }
    output
}

/// What to record for a change whose command was running when the server stopped, after
/// stopping whatever of it is left (`process` is what the execution row recorded). Returns the
/// explanation and whether the command may still be running.
pub async fn settle_interrupted(process: Option<&CommandProcess>) -> (String, bool) {
    const CHECK: &str = "It was not run again. It may have partly taken effect: check the target.";
    let Some(p) = process else {
        return (
            format!(
                "the server stopped while this change was executing, and no command of it was \
                 recorded as running (none had started yet, or it was between two). {CHECK}"
            ),
            false,
        );
    };
    let group = p.pgid;
    match process::stop_leftovers(p).await {
        process::Leftover::Gone => (
            format!(
                "the server stopped while the command was running; the command was killed with \
                 it (process group {group}). {CHECK}"
            ),
            false,
        ),
        process::Leftover::Killed(n) => (
            format!(
                "the server stopped while the command was running; {n} of its processes \
                 (process group {group}) outlived the server and were killed at restart. {CHECK}"
            ),
            false,
        ),
        process::Leftover::Rebooted => (
            format!(
                "the machine restarted while the command was running, which ended it (process \
                 group {group}). {CHECK}"
            ),
            false,
        ),
        process::Leftover::MaybeRunning(why) => (
            format!(
                "the server stopped while the command was running, and the command (process \
                 group {group}) MAY STILL BE RUNNING: {why}. It was not run again. Check the \
                 target and that process group before acting."
            ),
            true,
        ),
    }
}

/// Reads a pipe to the end, keeping the first [`OUTPUT_CAP`] bytes; draining the rest keeps
/// a chatty command from blocking on a full pipe.
async fn capped(mut pipe: impl AsyncRead + Unpin) -> (String, bool) {
    let mut kept = Vec::new();
    let mut buf = [0u8; 8192];
    let mut truncated = false;
    loop {
        match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let room = OUTPUT_CAP.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
                truncated |= n > room;
            }
        }
    }
    (String::from_utf8_lossy(&kept).into_owned(), truncated)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Risk;

    fn spec(command: &[&str], timeout_secs: u64) -> ActionSpec {
        ActionSpec {
            name: "t".into(),
            risk: Risk::Medium,
            description: String::new(),
            params: vec![],
            rollback: String::new(),
            command: Some(command.iter().map(|s| s.to_string()).collect()),
            timeout_secs,
            capture_command: None,
            rollback_command: None,
            rollback_level: None,
        }
    }

    #[tokio::test]
    async fn placeholders_never_reach_a_shell() {
        let s = spec(&["echo", "{target}"], 5);
        let out = run(
            &s,
            "a;touch /tmp/cb-pwned",
            &BTreeMap::new(),
            &Clock::real(),
            None,
        )
        .await;
        assert_eq!(out.stdout, "a;touch /tmp/cb-pwned\n");
        assert_eq!(out.exit_code, Some(0));
    }

    #[tokio::test]
    async fn captures_exit_code_stderr_and_caps_output() {
        let s = spec(
            &[
                "sh",
                "-c",
                "head -c 200000 /dev/zero | tr '\\0' x; echo oops >&2; exit 3",
            ],
            5,
        );
        let out = run(&s, "t", &BTreeMap::new(), &Clock::real(), None).await;
        assert_eq!(out.exit_code, Some(3));
        assert_eq!(out.stdout.len(), OUTPUT_CAP);
        assert!(out.truncated);
        assert_eq!(out.stderr, "oops\n");
    }

    #[tokio::test]
    async fn times_out_and_reports_it() {
        let s = spec(&["sleep", "5"], 1);
        let out = run(&s, "t", &BTreeMap::new(), &Clock::real(), None).await;
        assert_eq!(out.exit_code, None);
        assert!(out.stderr.contains("timed out after 1s"), "{}", out.stderr);
    }

    /// A timed-out command's own children go too: killing only its first process would leave
    /// them running while the record says "killed".
    #[tokio::test]
    async fn a_timeout_kills_the_whole_process_group() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("pid");
        let script = format!("sleep 30 & echo $! > {}; wait", pidfile.display());
        let out = run(
            &spec(&["sh", "-c", &script], 1),
            "t",
            &BTreeMap::new(),
            &Clock::real(),
            None,
        )
        .await;
        assert!(out.stderr.contains("timed out"), "{}", out.stderr);
        let pid = std::fs::read_to_string(&pidfile).unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", pid.trim())).unwrap_or_default();
        let state = stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .split_whitespace()
            .next();
        assert!(
            matches!(state, None | Some("Z")),
            "the grandchild still runs: {stat}"
        );
    }

    #[tokio::test]
    async fn a_missing_program_is_a_failure_not_a_panic() {
        let s = spec(&["/nonexistent/kubectl"], 1);
        let out = run(&s, "t", &BTreeMap::new(), &Clock::real(), None).await;
        assert_eq!(out.exit_code, None);
        assert!(out.stderr.contains("could not start"));
    }
}
