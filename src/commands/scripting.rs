//! The scripting commands: `login`, `change`, `window`, `incident` and `verification`.
//!
//! Each one resolves the server and token, makes one or two API calls and prints either the
//! server's body (`--json`, for scripts) or a compact form for people. Failures come back as
//! errors whose text is the server's own message; `main` prints it and exits non-zero.

use crate::cli::{
    ChangeCommand, ChangeSpecArgs, IncidentCommand, LoginArgs, VerificationCommand, WindowCommand,
};
use crate::client::{ApiClient, settings};
use crate::domain::api::{
    ApproveRequest, CancelRequest, ChangeRequest, DenyRequest, IncidentRequest, OutcomeKind,
    OutcomeRequest, Preview, RollbackRequest, WindowStatus,
};
use crate::domain::approval::Requirement;
use crate::domain::change::{Change, ChangeState};
use crate::domain::incident::{Incident, Priority};
use crate::domain::policy::Outcome;
use chrono::{DateTime, Utc};
use color_eyre::eyre::{Result, WrapErr, bail, eyre};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{self, Write as _};

/// `commandbridge login`: checks the token against the server, then stores both.
pub async fn login(args: &LoginArgs) -> Result<()> {
    let token = match args.token.as_deref() {
        Some(t) if t != "-" => {
            eprintln!(
                "warning: a token on the command line shows in `ps` and the shell's history; \
                 leave --token out to type it at a prompt or pipe it in"
            );
            t.to_string()
        }
        _ => read_token()?,
    };
    // Without --ca-file (or CB_CA_FILE), the one saved by an earlier login still applies.
    let saved_ca = settings::load().0.ca_file.map(std::path::PathBuf::from);
    let ca_file = args.ca_file.clone().or(saved_ca);
    let client = ApiClient::with_ca_file(&args.server, &token, ca_file.as_deref())?;
    // Saving a token the server rejects would only move the failure to the next command.
    let me = client.me().await?;
    let (path, fixed) = settings::save_login(client.server(), &token, args.ca_file.as_deref())?;
    if let Some(what) = fixed {
        eprintln!("warning: {what}");
    }
    out(&format!(
        "logged in to {} as {} ({})",
        client.server(),
        me.name,
        me.level
    ))?;
    eprintln!("saved to {} (mode 0600)", path.display());
    Ok(())
}

/// The token from standard input: typed at a prompt that does not echo it when a person is at a
/// terminal, else the first line of what is piped in (`pass show cb | commandbridge login …`).
fn read_token() -> Result<String> {
    use std::io::IsTerminal;
    let token = if io::stdin().is_terminal() {
        // rpassword turns echo off on the terminal itself and restores it even on Ctrl-C;
        // crossterm's raw mode would mean re-implementing line editing and signal handling.
        rpassword::prompt_password("token: ").wrap_err("cannot read the token from the terminal")?
    } else {
        let mut line = String::new();
        io::stdin()
            .read_line(&mut line)
            .wrap_err("cannot read the token from standard input")?;
        line
    };
    let token = token.trim();
    if token.is_empty() {
        bail!(
            "no token given: type it at the prompt or pipe it on standard input (the token \
             `commandbridge user add` printed)"
        );
    }
    Ok(token.to_string())
}

/// `commandbridge change …`.
pub async fn change(cmd: &ChangeCommand) -> Result<()> {
    let client = connect()?;
    match cmd {
        ChangeCommand::Create {
            spec,
            idempotency_key,
            json,
        } => {
            let req = change_request(spec)?;
            let change = client
                .create_change(&req, idempotency_key.as_deref())
                .await?;
            emit(*json, &change, format_change)?;
            settled(&change)
        }
        ChangeCommand::Preview { spec, json } => {
            let req = change_request(spec)?;
            let preview = client.preview(&req).await?;
            emit(*json, &preview, |p| format_preview(&req, p))
        }
        ChangeCommand::List {
            state,
            limit,
            before,
            json,
        } => {
            let state = state
                .as_deref()
                .map(str::parse::<ChangeState>)
                .transpose()
                .map_err(|e| eyre!(e))?;
            let page = client
                .changes_following(state, *before, Some(*limit as usize))
                .await?;
            emit(*json, &page.items, |c| format_change_list(c))?;
            if let Some(next) = page.next_before {
                // On stderr, so `--json` output stays one document.
                eprintln!("more changes: --before {next}");
            }
            Ok(())
        }
        ChangeCommand::Show { id, json } => {
            let change = client.change(*id).await?;
            emit(*json, &change, format_change)
        }
        ChangeCommand::Approve { id, comment, json } => {
            let req = ApproveRequest {
                comment: comment.clone(),
            };
            let change = client.approve(*id, &req).await?;
            emit(*json, &change, format_change)?;
            settled(&change)
        }
        ChangeCommand::Deny { id, reason, json } => {
            let req = DenyRequest {
                reason: reason.clone(),
            };
            let change = client.deny(*id, &req).await?;
            emit(*json, &change, format_change)
        }
        ChangeCommand::Cancel { id, reason, json } => {
            let req = CancelRequest {
                reason: reason.clone(),
            };
            let change = client.cancel(*id, &req).await?;
            emit(*json, &change, format_change)
        }
        ChangeCommand::Rollback {
            id,
            reason,
            ticket,
            json,
        } => {
            let req = RollbackRequest {
                reason: reason.clone(),
                ticket: ticket.clone(),
            };
            let change = client.rollback(*id, &req).await?;
            emit(*json, &change, format_change)?;
            settled(&change)
        }
    }
}

/// `commandbridge verification …`.
pub async fn verification(cmd: &VerificationCommand) -> Result<()> {
    let outcome = |outcome,
                   note: &Option<String>,
                   priority: Option<Priority>,
                   commander: &Option<String>| OutcomeRequest {
        outcome,
        note: note.clone(),
        priority,
        commander: commander.clone(),
    };
    match cmd {
        VerificationCommand::List { active, json } => {
            let client = connect()?;
            let mut list = client.verifications().await?;
            if *active {
                list.retain(|v| v.state.is_active());
            }
            emit(*json, &list, |l| {
                if l.is_empty() {
                    "no verifications".to_string()
                } else {
                    l.iter()
                        .map(format_verification)
                        .collect::<Vec<_>>()
                        .join("\n")
                }
            })
        }
        VerificationCommand::Show { id, json } => {
            let client = connect()?;
            let detail = client.verification(*id).await?;
            emit(*json, &detail, |d| {
                let mut out = format_verification(&d.verification);
                for s in &d.samples {
                    out.push_str(&format!(
                        "\n  {} {}",
                        s.at.format("%H:%M:%S"),
                        if s.ok() { "ok" } else { "FAILING" }
                    ));
                    if let Some(h) = &s.health {
                        out.push_str(&format!("  health {}", h.detail));
                    }
                    if let Some(r) = &s.error_rate {
                        out.push_str(&format!("  error rate {}", r.detail));
                    }
                }
                out
            })
        }
        VerificationCommand::Verified { id, note, json } => {
            let client = connect()?;
            let v = client
                .verification_outcome(*id, &outcome(OutcomeKind::Verified, note, None, &None))
                .await?;
            emit(*json, &v, format_verification)
        }
        VerificationCommand::Escalate {
            id,
            note,
            priority,
            commander,
            json,
        } => {
            let priority = priority
                .as_deref()
                .map(str::parse::<Priority>)
                .transpose()
                .map_err(|e| eyre!(e))?;
            let client = connect()?;
            let v = client
                .verification_outcome(
                    *id,
                    &outcome(OutcomeKind::Escalated, note, priority, commander),
                )
                .await?;
            emit(*json, &v, format_verification)
        }
    }
}

fn format_verification(v: &crate::domain::verification::Verification) -> String {
    let mut line = format!(
        "#{} {:<17} change #{} {} on {}  deadline {}",
        v.id,
        v.state.as_str(),
        v.change_id,
        v.action,
        v.target,
        v.deadline.format("%Y-%m-%d %H:%M:%S UTC")
    );
    if !v.health_checked && !v.error_rate_checked {
        line.push_str("  (no checks configured)");
    }
    if let Some(s) = &v.summary {
        line.push_str(&format!("\n  summary: {}", s.text));
    }
    if let Some(i) = &v.incident {
        line.push_str(&format!("\n  incident: {i}"));
    }
    line
}

/// `commandbridge window …`.
pub async fn window(cmd: &WindowCommand) -> Result<()> {
    let client = connect()?;
    match cmd {
        WindowCommand::Now { json } => {
            let status = client.current_window().await?;
            emit(*json, &status, format_window)
        }
        WindowCommand::At { time, json } => super::calendar::window_at(&client, time, *json).await,
        WindowCommand::Export { ics: _, output } => {
            super::calendar::export_ics(&client, output.as_deref()).await
        }
    }
}

/// `commandbridge incident …`.
pub async fn incident(cmd: &IncidentCommand) -> Result<()> {
    match cmd {
        IncidentCommand::Declare {
            priority,
            title,
            commander,
            json,
        } => {
            // Checked before connecting, so a typo is reported as one even when offline.
            let priority: Priority = priority.parse().map_err(|e: String| eyre!(e))?;
            let client = connect()?;
            let req = IncidentRequest {
                priority,
                title: title.clone(),
                commander: commander.clone(),
            };
            let incident = client.declare_incident(&req).await?;
            emit(*json, &incident, format_incident)
        }
        IncidentCommand::Close { incident, json } => {
            let client = connect()?;
            let id = match incident.parse::<i64>() {
                Ok(id) => id,
                Err(_) => client
                    .incidents()
                    .await?
                    .into_iter()
                    .find(|i| i.ticket == *incident)
                    .map(|i| i.id)
                    .ok_or_else(|| eyre!("no incident {incident}: give its INC ticket or id"))?,
            };
            let closed = client.close_incident(id).await?;
            emit(*json, &closed, format_incident)
        }
        IncidentCommand::List { json } => {
            let client = connect()?;
            let incidents = client.incidents().await?;
            emit(*json, &incidents, |list| {
                if list.is_empty() {
                    "no incidents".to_string()
                } else {
                    list.iter()
                        .map(format_incident)
                        .collect::<Vec<_>>()
                        .join("\n")
                }
            })
        }
    }
}

/// Parses `-p NAME=VALUE` arguments. A value written as a plain integer (`3`, `-2`) is sent as
/// a JSON number, anything else as a string.
pub fn parse_params(args: &[String]) -> Result<BTreeMap<String, serde_json::Value>> {
    let mut params = BTreeMap::new();
    for arg in args {
        let Some((name, value)) = arg.split_once('=') else {
            bail!("bad parameter '{arg}': write it as NAME=VALUE, e.g. -p replicas=3");
        };
        let name = name.trim();
        if name.is_empty() {
            bail!("bad parameter '{arg}': the name before '=' is empty");
        }
        let value = match value.parse::<i64>() {
            // Only when the number prints back as written: `007` or `+5` may be an identifier,
            // and the server would store the number's digits, not what was typed.
            Ok(n) if n.to_string() == value => serde_json::Value::from(n),
            _ => serde_json::Value::String(value.to_string()),
        };
        if params.insert(name.to_string(), value).is_some() {
            bail!("parameter '{name}' is given more than once");
        }
    }
    Ok(params)
}

fn change_request(spec: &ChangeSpecArgs) -> Result<ChangeRequest> {
    Ok(ChangeRequest {
        action: spec.action.clone(),
        ticket: spec.ticket.clone(),
        target: spec.target.clone(),
        params: parse_params(&spec.params)?,
        reason: spec.reason.clone(),
        // `next-window` and `next_window` both name the next window; the server checks a time.
        run_at: spec.at.clone(),
    })
}

pub(super) fn connect() -> Result<ApiClient> {
    let (creds, warnings) = settings::resolve()?;
    for warning in warnings {
        eprintln!("warning: {warning}");
    }
    Ok(ApiClient::with_ca_file(
        &creds.server,
        &creds.token,
        creds.ca_file.as_deref(),
    )?)
}

/// A change the call itself drove to failure or refusal is an error for scripts: the request
/// was accepted, but what it asked for did not happen.
fn settled(change: &Change) -> Result<()> {
    match change.state {
        ChangeState::Failed => {
            let how = change
                .output
                .as_ref()
                .and_then(|o| o.exit_code)
                .map(|code| format!("exit code {code}"))
                .or_else(|| change.outcome_reason.clone())
                .unwrap_or_else(|| "see its output".to_string());
            bail!("change #{} ran and failed ({how})", change.id)
        }
        ChangeState::Refused
        | ChangeState::Denied
        | ChangeState::Expired
        | ChangeState::Withdrawn
        | ChangeState::Missed
        | ChangeState::Cancelled => bail!(
            "change #{} was {}: {}",
            change.id,
            change.state,
            change
                .outcome_reason
                .as_deref()
                .unwrap_or("no reason given")
        ),
        _ => Ok(()),
    }
}

/// Prints the server's body as pretty JSON, or the human form.
pub(super) fn emit<T: Serialize>(
    json: bool,
    value: &T,
    human: impl FnOnce(&T) -> String,
) -> Result<()> {
    let text = if json {
        serde_json::to_string_pretty(value).wrap_err("cannot print the answer as JSON")?
    } else {
        human(value)
    };
    out(&text)
}

/// `println!`, except that a reader who went away (`| head`) is not a panic.
pub(super) fn out(text: &str) -> Result<()> {
    let mut stdout = io::stdout().lock();
    match writeln!(stdout, "{text}").and_then(|()| stdout.flush()) {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => Err(e).wrap_err("cannot write output"),
        _ => Ok(()),
    }
}

pub(super) fn when(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

pub(super) fn outcome_str(o: Outcome) -> &'static str {
    match o {
        Outcome::Execute => "execute",
        Outcome::NeedsApproval => "needs_approval",
        Outcome::Blocked => "blocked",
    }
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

fn format_change(c: &Change) -> String {
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
    line(format!("  reason: {}", c.reason));
    if let Some(t) = c.run_at {
        line(format!("  run at: {}", when(t)));
    }
    for conflict in &c.conflicts {
        line(format!("  conflict: {}", conflict.message));
    }
    if let Some(why) = &c.outcome_reason {
        match &c.decided_by {
            Some(by) => line(format!("  {}: {why} (by {by})", c.state)),
            None => line(format!("  {}: {why}", c.state)),
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
            .map(|t| format!(": {t}"))
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

fn format_change_list(changes: &[Change]) -> String {
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

fn format_preview(req: &ChangeRequest, p: &Preview) -> String {
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

fn format_window(w: &WindowStatus) -> String {
    let mut lines = vec![w.summary.clone()];
    if let Some(open) = &w.open {
        lines.push(format!(
            "  open: {} window until {}",
            open.kind,
            when(open.closes_at)
        ));
    }
    if let Some(next) = &w.next {
        lines.push(format!(
            "  next: {} window opens {}",
            next.kind,
            when(next.opens_at)
        ));
    }
    if let Some(f) = &w.freeze {
        lines.push(format!(
            "  freeze: {} from {} until {}",
            f.name,
            when(f.starts_at),
            when(f.ends_at)
        ));
    }
    if let Some(p) = &w.pause {
        lines.push(format!(
            "  paused: {} (by {} since {})",
            p.reason,
            p.paused_by,
            when(p.paused_at)
        ));
    }
    lines.push(format!("  server time: {}", when(w.now)));
    lines.join("\n")
}

fn format_incident(i: &Incident) -> String {
    let state = match i.closed_at {
        Some(t) => format!("closed {}", when(t)),
        None => "open".to_string(),
    };
    format!(
        "{}  {}  {}  {}  commander={}  declared by {} at {}",
        i.ticket,
        i.priority,
        state,
        i.title,
        i.commander,
        i.declared_by,
        when(i.declared_at)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::action::Risk;
    use crate::domain::approval::Approval;
    use crate::domain::change::ExecutionOutput;
    use crate::domain::level::Level;
    use chrono::TimeZone;
    use serde_json::json;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn params_become_numbers_only_when_they_are_plain_integers() {
        let p = parse_params(&args(&[
            "replicas=3",
            "delta=-2",
            "ip=203.0.113.7",
            "code=007",
            "plus=+5",
            "note=a=b",
            "empty=",
            "big=99999999999999999999",
        ]))
        .expect("valid");
        assert_eq!(p["replicas"], json!(3));
        assert_eq!(p["delta"], json!(-2));
        assert_eq!(p["ip"], json!("203.0.113.7"));
        assert_eq!(p["code"], json!("007"));
        assert_eq!(p["plus"], json!("+5"));
        assert_eq!(p["note"], json!("a=b"));
        assert_eq!(p["empty"], json!(""));
        assert_eq!(p["big"], json!("99999999999999999999"));
    }

    #[test]
    fn a_param_without_equals_is_an_error_naming_it() {
        let err = parse_params(&args(&["replicas=3", "replicas3"])).expect_err("no '='");
        let text = err.to_string();
        assert!(text.contains("'replicas3'"), "{text}");
        assert!(text.contains("NAME=VALUE"), "{text}");
    }

    #[test]
    fn a_param_without_name_or_given_twice_is_an_error() {
        let err = parse_params(&args(&["=3"])).expect_err("no name");
        assert!(err.to_string().contains("'=3'"), "{err}");
        let err = parse_params(&args(&["n=1", "n=2"])).expect_err("twice");
        assert!(err.to_string().contains("'n'"), "{err}");
    }

    #[test]
    fn no_params_is_an_empty_map() {
        assert!(parse_params(&[]).expect("valid").is_empty());
    }

    fn t(h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 1, 6, h, m, 0)
            .single()
            .expect("valid time")
    }

    fn change(id: i64, state: ChangeState) -> Change {
        Change {
            id,
            state,
            action: "blacklist-ip".into(),
            risk: Risk::High,
            ticket: "CHG-1".into(),
            target: "edge-1".into(),
            params: BTreeMap::from([("ip".to_string(), "203.0.113.7".to_string())]),
            reason: "abusive client".into(),
            requested_by: "alice".into(),
            requested_level: Level::L1,
            created_at: t(10, 0),
            updated_at: t(10, 0),
            expires_at: t(14, 0),
            approvals: Vec::new(),
            approvals_required: vec![Requirement::Level {
                min: Level::L2,
                count: 1,
            }],
            warnings: Vec::new(),
            outcome_reason: None,
            decided_by: None,
            output: None,
            rollback_of: None,
            emergency: None,
            captured: None,
            command: None,
            run_at: None,
            conflicts: Vec::new(),
        }
    }

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
    fn a_failed_or_refused_change_is_an_error_for_scripts() {
        assert!(settled(&change(1, ChangeState::Executed)).is_ok());
        assert!(settled(&change(1, ChangeState::PendingApproval)).is_ok());
        let mut refused = change(2, ChangeState::Refused);
        refused.outcome_reason = Some("the standard window closed".into());
        let err = settled(&refused).expect_err("refused");
        assert_eq!(
            err.to_string(),
            "change #2 was refused: the standard window closed"
        );
        let mut failed = change(3, ChangeState::Failed);
        failed.output = Some(ExecutionOutput {
            exit_code: Some(2),
            stdout: String::new(),
            stderr: "boom".into(),
            truncated: false,
            simulated: false,
            started_at: t(10, 0),
            finished_at: t(10, 1),
        });
        assert_eq!(
            settled(&failed).expect_err("failed").to_string(),
            "change #3 ran and failed (exit code 2)"
        );
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
