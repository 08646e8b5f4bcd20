//! Runs an action's command: argv only (never a shell), with a timeout and capped output.

use crate::domain::ActionSpec;
use crate::domain::change::ExecutionOutput;
use crate::server::clock::Clock;
use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;

/// How much of stdout and of stderr is kept.
pub const OUTPUT_CAP: usize = 64 * 1024;

/// Runs the change's command, or the simulator when the action has none. Never fails: a
/// command that cannot start, times out or exits non-zero is reported in the output.
pub async fn run(
    spec: &ActionSpec,
    target: &str,
    params: &BTreeMap<String, String>,
    clock: &Clock,
) -> ExecutionOutput {
    let Some(argv) = spec.render_command(target, params) else {
        return simulated(spec, target, params, clock);
    };
    run_argv(&argv, spec.timeout_secs, clock).await
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
pub async fn run_argv(argv: &[String], timeout_secs: u64, clock: &Clock) -> ExecutionOutput {
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
    let mut child = match Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
    {
        Ok(c) => c,
        Err(e) => return failed(format!("could not start {program}: {e}")),
    };
    let (Some(out), Some(err)) = (child.stdout.take(), child.stderr.take()) else {
        return failed("could not capture the command's output".into());
    };
    let work = async {
        let (stdout, stderr, status) = tokio::join!(capped(out), capped(err), child.wait());
        (stdout, stderr, status)
    };
    match tokio::time::timeout(Duration::from_secs(timeout_secs), work).await {
        Ok(((stdout, t1), (stderr, t2), status)) => ExecutionOutput {
            exit_code: status.ok().and_then(|s| s.code()),
            stdout,
            stderr,
            truncated: t1 || t2,
            simulated: false,
            started_at,
            finished_at: clock.now(),
        },
        Err(_) => {
            // kill_on_drop ends the child once `work` is dropped here.
            failed(format!(
                "timed out after {timeout_secs}s; the command was killed"
            ))
        }
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
        let out = run(&s, "t", &BTreeMap::new(), &Clock::real()).await;
        assert_eq!(out.exit_code, Some(3));
        assert_eq!(out.stdout.len(), OUTPUT_CAP);
        assert!(out.truncated);
        assert_eq!(out.stderr, "oops\n");
    }

    #[tokio::test]
    async fn times_out_and_reports_it() {
        let s = spec(&["sleep", "5"], 1);
        let out = run(&s, "t", &BTreeMap::new(), &Clock::real()).await;
        assert_eq!(out.exit_code, None);
        assert!(out.stderr.contains("timed out after 1s"), "{}", out.stderr);
    }

    #[tokio::test]
    async fn a_missing_program_is_a_failure_not_a_panic() {
        let s = spec(&["/nonexistent/kubectl"], 1);
        let out = run(&s, "t", &BTreeMap::new(), &Clock::real()).await;
        assert_eq!(out.exit_code, None);
        assert!(out.stderr.contains("could not start"));
    }
}
