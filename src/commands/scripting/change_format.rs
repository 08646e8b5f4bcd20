//! How a change and a preview read for people: one line per change in a list, a block of
//! `  label: value` lines for one change (its risk, command, approvals still needed, output) and
//! the policy's answer for a preview. This is the largest part of the CLI's output and the part
//! most often adjusted, so it is kept apart from the calls that fetch what it prints.

use super::{outcome_str, when};
use crate::domain::api::{ChangeRequest, Preview};
use crate::domain::approval::Requirement;
use crate::domain::change::{Change, ChangeState};
use std::fmt::Write as _;

/// Free text that may hold line breaks (a reason, a comment), with its later lines indented
/// under the field, so a line in it cannot pass for one of the block's own `  label:` lines.
fn nested(text: &str) -> String {
    text.replace('\n', "\n      ")
}

fn needs_line(required: &[Requirement]) -> Option<String> {
    (!required.is_empty()).then(|| {
        let parts: Vec<String> = required.iter().map(Requirement::describe).collect();
        format!("  needs: {}", parts.join(", "))
    })
}

/// `#12 pending_approval  blacklist-ip  target=edge-1  ticket=CHG-1  by alice`
fn change_head(c: &Change, id_width: usize) -> String {
    format!(
        "{:<id_width$} {:<16}  {}  target={}  ticket={}  by {}",
        format!("#{}", c.id),
        c.state.as_str(),
        c.action,
        c.target,
        c.ticket,
        c.requested_by,
    )
}

pub(super) fn format_change(c: &Change) -> String {
    let mut s = change_head(c, 0);
    let mut line = |text: String| {
        s.push('\n');
        s.push_str(&text);
    };
    let params: Vec<String> = c.params.iter().map(|(k, v)| format!("{k}={v}")).collect();
    line(if params.is_empty() {
        format!("  risk: {}", c.risk)
    } else {
        format!("  risk: {}  params: {}", c.risk, params.join(" "))
    });
    if let Some(inc) = &c.emergency {
        line(format!("  EMERGENCY change for incident {inc}"));
    }
    line(match &c.command {
        Some(argv) => format!("  runs: {}", crate::domain::action::display_argv(argv)),
        None => "  runs: the simulator (the action has no command)".to_string(),
    });
    if let Some(captured) = &c.captured {
        line(format!(
            "  captured before it ran (its rollback restores it): {captured}"
        ));
    }
    line(format!("  reason: {}", nested(&c.reason)));
    if let Some(t) = c.run_at {
        line(format!("  run at: {}", when(t)));
    }
    for conflict in &c.conflicts {
        line(format!("  conflict: {}", conflict.message));
    }
    if let Some(why) = &c.outcome_reason {
        match &c.decided_by {
            Some(by) => line(format!("  {}: {} (by {by})", c.state, nested(why))),
            None => line(format!("  {}: {}", c.state, nested(why))),
        }
    }
    if c.state == ChangeState::PendingApproval {
        if let Some(needs) = needs_line(&c.approvals_required) {
            line(needs);
        }
        for r in &c.approvals_required {
            if matches!(r, Requirement::Level { count, .. } if *count > 1) {
                line(format!(
                    "  progress: {}",
                    r.progress(&c.approvals, &c.requested_by)
                ));
            }
        }
        line(format!("  expires: {}", when(c.expires_at)));
    }
    for a in &c.approvals {
        let comment = a
            .comment
            .as_deref()
            .map(|t| format!(": {}", nested(t)))
            .unwrap_or_default();
        line(format!(
            "  approved by {} ({}) at {}{comment}",
            a.approver,
            a.level,
            when(a.at)
        ));
    }
    for w in &c.warnings {
        line(format!("  warning: {w}"));
    }
    if let Some(o) = &c.output {
        let mut head = match o.exit_code {
            Some(code) => format!("  output: exit {code}"),
            None => "  output: no exit code (killed or timed out)".to_string(),
        };
        let secs = (o.finished_at - o.started_at).num_milliseconds() as f64 / 1000.0;
        let _ = write!(head, ", {secs:.1}s");
        if o.simulated {
            head.push_str(", simulated");
        }
        if o.truncated {
            head.push_str(", truncated");
        }
        line(head);
        for (name, text) in [("stdout", &o.stdout), ("stderr", &o.stderr)] {
            if text.trim().is_empty() {
                continue;
            }
            line(format!("  {name}:"));
            for l in text.trim_end().lines() {
                line(format!("    {l}"));
            }
        }
    }
    s
}

pub(super) fn format_change_list(changes: &[Change]) -> String {
    if changes.is_empty() {
        return "no changes".to_string();
    }
    let id_width = changes
        .iter()
        .map(|c| c.id.to_string().len() + 1)
        .max()
        .unwrap_or(0);
    changes
        .iter()
        .map(|c| change_head(c, id_width))
        .collect::<Vec<_>>()
        .join("\n")
}

pub(super) fn format_preview(req: &ChangeRequest, p: &Preview) -> String {
    let mut lines = vec![format!(
        "{}  {}  target={}  ticket={}",
        outcome_str(p.decision),
        req.action,
        req.target,
        req.ticket
    )];
    lines.extend(p.reasons.iter().map(|r| format!("  reason: {r}")));
    lines.extend(needs_line(&p.approvals_required));
    lines.extend(p.warnings.iter().map(|w| format!("  warning: {w}")));
    if let Some(t) = p.run_at {
        lines.push(format!("  run at: {}", when(t)));
    }
    if let Some(w) = &p.next_window {
        lines.push(format!(
            "  next window: {} opens {} (--at next-window schedules it)",
            w.kind,
            when(w.opens_at)
        ));
    }
    lines.extend(
        p.conflicts
            .iter()
            .map(|c| format!("  conflict: {}", c.message)),
    );
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::scripting::fixtures::{change, t};
    use crate::domain::approval::Approval;
    use crate::domain::change::ExecutionOutput;
    use crate::domain::level::Level;
    use crate::domain::policy::Outcome;

    #[test]
    fn a_pending_change_reads_in_one_glance() {
        let text = format_change(&change(12, ChangeState::PendingApproval));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "#12 pending_approval  blacklist-ip  target=edge-1  ticket=CHG-1  by alice"
        );
        assert!(text.contains("  needs: L2+ approval"), "{text}");
        assert!(text.contains("  expires: 2025-01-06 14:00 UTC"), "{text}");
        assert!(text.contains("params: ip=203.0.113.7"), "{text}");
    }

    #[test]
    fn a_scheduled_change_shows_its_time_and_conflicts() {
        let mut c = change(14, ChangeState::Scheduled);
        c.run_at = Some(t(22, 0));
        c.conflicts.push(crate::domain::change::Conflict {
            change_id: 12,
            action: "restart-pods".into(),
            target: "edge-1".into(),
            state: ChangeState::Executed,
            requested_by: "dave".into(),
            activity: "under verification".into(),
            from: None,
            until: Some(t(22, 10)),
            message: "conflicts with #12 restart-pods on edge-1 (under verification until \
                      22:10 UTC, by dave)"
                .into(),
        });
        let text = format_change(&c);
        assert!(text.starts_with("#14 scheduled "), "{text}");
        assert!(text.contains("  run at: 2025-01-06 22:00 UTC"), "{text}");
        assert!(
            text.contains("  conflict: conflicts with #12 restart-pods on edge-1"),
            "{text}"
        );
    }

    #[test]
    fn an_executed_change_shows_approvals_and_output() {
        let mut c = change(3, ChangeState::Executed);
        c.approvals.push(Approval {
            approver: "bob".into(),
            level: Level::L2,
            comment: Some("ok".into()),
            at: t(10, 5),
        });
        c.warnings.push("verify within 15 minutes".into());
        c.output = Some(ExecutionOutput {
            exit_code: Some(0),
            stdout: "blocked 203.0.113.7\n".into(),
            stderr: String::new(),
            truncated: false,
            simulated: true,
            started_at: t(10, 5),
            finished_at: t(10, 5),
        });
        let text = format_change(&c);
        assert!(!text.contains("needs:"), "{text}");
        assert!(text.contains("  approved by bob (L2) at 2025-01-06 10:05 UTC: ok"));
        assert!(text.contains("  warning: verify within 15 minutes"));
        assert!(text.contains("  output: exit 0, 0.0s, simulated"), "{text}");
        assert!(
            text.contains("  stdout:\n    blocked 203.0.113.7"),
            "{text}"
        );
        assert!(!text.contains("stderr"), "{text}");
    }

    #[test]
    fn output_that_drives_a_terminal_is_printed_inert() {
        let mut c = change(4, ChangeState::Executed);
        c.reason = "rotate\n  approved by carol (L3) at 2025-01-06 10:05 UTC".into();
        c.output = Some(ExecutionOutput {
            exit_code: Some(0),
            stdout: "\u{1b}]52;c;cm0gLXJmIC8=\u{7}\u{1b}[2Jall clear\rLOOKS FINE\n".into(),
            stderr: "\u{9b}31mred\u{202e}txt.exe\n".into(),
            truncated: false,
            simulated: false,
            started_at: t(10, 5),
            finished_at: t(10, 5),
        });
        // What `change show` prints: the formatter's text through the CLI's one printer.
        let text = crate::commands::scripting::printable(&format_change(&c)).into_owned();
        for raw in ['\u{1b}', '\u{7}', '\u{9b}', '\r', '\u{202e}'] {
            assert!(!text.contains(raw), "U+{:04X} in {text:?}", raw as u32);
        }
        assert!(
            text.contains("    \\x1b]52;c;cm0gLXJmIC8=\\x07\\x1b[2Jall clear\\rLOOKS FINE"),
            "{text}"
        );
        assert!(text.contains("    \\u{9b}31mred\\u{202e}txt.exe"), "{text}");
        // A line break in a reason stays under the reason, not at a field's indent.
        assert!(
            text.contains("  reason: rotate\n        approved by carol"),
            "{text}"
        );
        assert!(!text.contains("\n  approved by"), "{text}");
    }

    #[test]
    fn list_lines_align_ids() {
        let text = format_change_list(&[
            change(10, ChangeState::Executed),
            change(9, ChangeState::PendingApproval),
        ]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(
            lines[0].starts_with("#10 executed          blacklist-ip"),
            "{text}"
        );
        assert!(
            lines[1].starts_with("#9  pending_approval  blacklist-ip"),
            "{text}"
        );
        assert_eq!(format_change_list(&[]), "no changes");
    }

    #[test]
    fn a_preview_lists_reasons_needs_and_warnings() {
        let req = ChangeRequest {
            action: "restart-service".into(),
            ticket: "CHG-9".into(),
            target: "api".into(),
            ..ChangeRequest::default()
        };
        let p = Preview {
            decision: Outcome::Blocked,
            reasons: vec!["a freeze is in force until Monday".into()],
            approvals_required: Vec::new(),
            warnings: vec!["no rollback tested".into()],
            run_at: None,
            next_window: None,
            conflicts: Vec::new(),
        };
        assert_eq!(
            format_preview(&req, &p),
            "blocked  restart-service  target=api  ticket=CHG-9\n  \
             reason: a freeze is in force until Monday\n  warning: no rollback tested"
        );
    }
}
