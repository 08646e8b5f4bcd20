//! Modals: the change form with its live decision, confirmations, prompts, outcome and help.

use crate::domain::change::{Change, ChangeState};
use crate::domain::policy::Outcome;
use crate::domain::window::human_duration;
use crate::tui::app::{Confirmed, Modal, Purpose, State, UNDO_SECS};
use crate::tui::form::{ChangeForm, Fields, TICKET};
use crate::tui::theme::Theme;
use crate::tui::view::words::risk_word;
use chrono::{DateTime, Utc};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Position, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Wrap};

pub fn draw(frame: &mut Frame, area: Rect, state: &State, theme: &Theme) {
    let Some(modal) = &state.modal else { return };
    match modal {
        Modal::Scroll { what, offset } => {
            super::scrolled::draw(frame, area, state, what, *offset, theme)
        }
        Modal::Form(form) => change_form(frame, area, form, state.now, theme),
        Modal::Outcome(c) => outcome(frame, area, c, theme),
        Modal::Confirm(what) => {
            let (title, text) = confirm_text(what, state);
            confirm(frame, area, title, &text, theme);
        }
        // Drawn on the message line (chrome::prompt_line).
        Modal::Prompt(p) if matches!(p.purpose, Purpose::Filter | Purpose::Command) => {}
        Modal::Prompt(p) => {
            let title = match p.purpose {
                Purpose::DenyReason(id) => format!("Deny change #{id}"),
                Purpose::Filter | Purpose::Command => String::new(),
                Purpose::PauseReason => "Pause all changes".into(),
                Purpose::Freeze => "Announce a freeze (UTC)".into(),
                Purpose::CancelReason(id) => format!("Cancel change #{id}"),
            };
            let about = match p.purpose {
                Purpose::CancelReason(id) => cancelled(state, id, theme),
                _ => Vec::new(),
            };
            prompt(frame, area, &title, about, &p.fields, theme);
        }
    }
}

/// The title and the question of a confirmation.
fn confirm_text(what: &Confirmed, state: &State) -> (&'static str, String) {
    let changes = state.approvals.changes();
    match what {
        Confirmed::Approve(id) => {
            let change = changes.get(id);
            let what = change
                .map(|c| {
                    format!(
                        "{} on {} ({}, {} risk)",
                        c.action,
                        c.target,
                        c.ticket,
                        risk_word(c.risk)
                    )
                })
                .unwrap_or_default();
            let when = match change.and_then(|c| c.run_at) {
                Some(t) => format!(
                    "If it is the last approval it is scheduled for {}.",
                    t.format("%a %Y-%m-%d %H:%M UTC")
                ),
                None => "If it is the last approval it runs at once.".into(),
            };
            // A newer request on the same target may supersede this one: say so before it runs.
            let newer: Vec<String> = change
                .map(|c| state.approvals.newer_pending(c))
                .unwrap_or_default()
                .iter()
                .map(|o| format!("#{} {} by {}", o.id, o.action, o.requested_by))
                .collect();
            let warning = if newer.is_empty() {
                String::new()
            } else {
                format!(
                    "\n⚠ A NEWER change on the same target is pending: {}. Approve this older one anyway?",
                    newer.join(", ")
                )
            };
            (
                "Approve",
                format!("Approve change #{id}: {what}?\n{when}{warning}"),
            )
        }
        Confirmed::Quit => ("Quit", "Quit CommandBridge?".into()),
        Confirmed::Withdraw(id) => {
            let what = changes
                .get(id)
                .map(|c| format!(" ({} on {}, {})", c.action, c.target, c.ticket))
                .unwrap_or_default();
            (
                "Withdraw",
                format!(
                    "Withdraw your change #{id}{what}?\nIt is recorded as withdrawn and never runs; request it again if you need it."
                ),
            )
        }
        Confirmed::Escalate(id) => {
            let what = state
                .verification
                .list
                .items()
                .iter()
                .find(|v| v.id == *id)
                .map(|v| format!("change #{} ({} on {})", v.change_id, v.action, v.target))
                .unwrap_or_default();
            (
                "Escalate",
                format!(
                    "Escalate {what}?\nThis declares a P2 incident with you as commander and PAUSES ALL CHANGES. {}\nThe rollback of this change still runs during the pause.",
                    held(state, "would be refused if approved while paused")
                ),
            )
        }
        Confirmed::Rollback(change_id) => {
            let change = changes.get(change_id);
            let what = change
                .map(|c| format!("{} on {}", c.action, c.target))
                .unwrap_or_default();
            let how = change
                .and_then(|c| state.actions.find(&c.action))
                .map(|a| a.rollback.clone())
                .unwrap_or_default();
            (
                "Roll back",
                format!(
                    "Roll back change #{change_id} ({what})?\n{how}\n{}",
                    rollback_path(state, *change_id)
                ),
            )
        }
        Confirmed::Discard(_) => (
            "Discard",
            "Discard the change request you are typing?".into(),
        ),
        Confirmed::DiscardPrompt(p) => (
            "Discard",
            format!(
                "Drop {} you typed? Nothing has been sent.",
                p.purpose.doing()
            ),
        ),
        Confirmed::Deny(id, p) => {
            let what = changes
                .get(id)
                .map(|c| format!(" ({} on {}, by {})", c.action, c.target, c.requested_by))
                .unwrap_or_default();
            (
                "Deny",
                format!(
                    "Deny change #{id}{what}?\nReason: {}\nThe requester sees the reason; the change never runs.",
                    p.fields.value(0).trim()
                ),
            )
        }
        Confirmed::Freeze(p) => (
            "Announce a freeze",
            format!(
                "Announce freeze '{}' from {} to {} UTC?\nWhile it is in force only low-risk actions and P1 incident changes run, for every team. {}",
                p.fields.value(0).trim(),
                p.fields.value(1).trim(),
                p.fields.value(2).trim(),
                held(state, "would be refused if approved during it")
            ),
        ),
        Confirmed::RemoveFreeze(id) => {
            let name = state
                .windows
                .freezes
                .iter()
                .find(|(f, _)| f == id)
                .map(|(_, f)| {
                    format!(
                        "'{}' ({} to {} UTC)",
                        f.name,
                        f.starts_at.format("%a %d %b %H:%M"),
                        f.ends_at.format("%a %d %b %H:%M")
                    )
                })
                .unwrap_or_else(|| format!("#{id}"));
            (
                "Remove a freeze",
                format!(
                    "Remove freeze {name}?\nChanges may run again in its time, for every team. {}\nu undoes it for {UNDO_SECS} s.",
                    held(state, "could run once approved")
                ),
            )
        }
        Confirmed::Pause(p) => (
            "Pause all changes",
            format!(
                "Pause ALL changes? Reason: {}\nOnly low-risk actions and P1 incident changes run until an L2 or L3 resumes. {}",
                p.fields.value(0).trim(),
                held(state, "would be refused if approved while paused")
            ),
        ),
        Confirmed::Resume => {
            let since = state
                .windows
                .pause()
                .map(|p| {
                    format!(
                        " (paused by {} at {}: {})",
                        p.paused_by,
                        p.paused_at.format("%H:%M"),
                        p.reason
                    )
                })
                .unwrap_or_default();
            (
                "Resume changes",
                format!(
                    "Resume changes{since}?\nEvery team may change things again. {}\nu undoes it for {UNDO_SECS} s.",
                    held(state, "could run once approved")
                ),
            )
        }
    }
}

/// Which path a rollback takes: the emergency path of the incident its change's escalation
/// declared (through the pause, with the commander's approval), or the normal policy.
fn rollback_path(state: &State, change_id: i64) -> String {
    let incident = state
        .verification
        .list
        .items()
        .iter()
        .filter(|v| v.change_id == change_id)
        .find_map(|v| v.incident.as_deref())
        .and_then(|t| state.incidents.find(t))
        .filter(|i| i.is_open());
    let Some(i) = incident else {
        return "It goes through the normal policy.".into();
    };
    let me = state.me.as_ref().map(|m| m.name.as_str());
    let approver = if me == Some(i.commander.as_str()) {
        "you command it, so an L2 or L3 other than you approves".to_string()
    } else {
        format!("its commander {} approves", i.commander)
    };
    format!(
        "It answers incident {}: it runs even while changes are paused; {approver}.",
        i.ticket
    )
}

/// "3 pending changes …": how many changes waiting for approval a freeze or pause decides.
fn held(state: &State, what: &str) -> String {
    match state.approvals.pending_governed() {
        0 => "No pending change is affected.".into(),
        1 => format!("1 pending change {what}."),
        n => format!("{n} pending changes {what}."),
    }
}

fn centered(area: Rect, width: u16, height: u16) -> Rect {
    let w = width.min(area.width);
    let h = height.min(area.height);
    Rect::new(
        area.x + (area.width - w) / 2,
        area.y + (area.height - h) / 2,
        w,
        h,
    )
}

fn popup(frame: &mut Frame, rect: Rect, title: &str, theme: &Theme) -> Rect {
    frame.render_widget(Clear, rect);
    let block = Block::default()
        .borders(Borders::ALL)
        .title(format!(" {title} "))
        .border_style(theme.focused_border());
    let inner = block.inner(rect);
    frame.render_widget(block, rect);
    inner
}

/// A popup as tall as its wrapped text plus a last line, at most the screen.
fn boxed<'a>(
    frame: &mut Frame,
    area: Rect,
    title: &str,
    mut lines: Vec<Line<'a>>,
    last: Line<'a>,
    theme: &Theme,
) {
    let width = 64u16.min(area.width);
    let inner_w = width.saturating_sub(2).max(1) as usize;
    // Wrapping at words takes a little more room than the characters alone: one row of slack
    // per paragraph keeps the last line inside the border.
    let text_h: usize = lines
        .iter()
        .map(|l| {
            let w = l.width();
            w.div_ceil(inner_w).max(1) + usize::from(w > inner_w)
        })
        .sum();
    let rect = centered(area, width, text_h as u16 + 4);
    let inner = popup(frame, rect, title, theme);
    lines.push(Line::raw(""));
    lines.push(last);
    frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: true }), inner);
}

fn confirm(frame: &mut Frame, area: Rect, title: &str, text: &str, theme: &Theme) {
    let lines: Vec<Line> = text.lines().map(|l| Line::raw(l.to_string())).collect();
    let last = Line::from(vec![
        Span::styled(" y ", theme.selected()),
        Span::raw(" yes   any other key: no"),
    ]);
    boxed(frame, area, title, lines, last, theme);
}

/// An error too long for the message line, whole and wrapped.
pub fn error(frame: &mut Frame, area: Rect, text: &str, theme: &Theme) {
    let lines = vec![Line::styled(format!("✗ {text}"), theme.bad())];
    let last = Line::styled("any key closes · m: the message log keeps it", theme.dim());
    boxed(frame, area, "Not done", lines, last, theme);
}

/// Draws fields as "Label: value" lines with the hint dimmed, and puts the cursor in the
/// focused one.
fn field_lines(frame: &mut Frame, area: Rect, fields: &Fields, theme: &Theme) {
    let label_w = fields
        .fields
        .iter()
        .map(|f| f.label.chars().count())
        .max()
        .unwrap_or(0)
        + 3;
    let value_w = (area.width as usize).saturating_sub(label_w + 1).max(1);
    for (i, f) in fields.fields.iter().enumerate() {
        let y = area.y + (i as u16) * 2;
        if y + 1 >= area.y + area.height {
            break;
        }
        let focused = i == fields.focus;
        let scroll = f.input.visual_scroll(value_w);
        let shown: String = f.value().chars().skip(scroll).take(value_w).collect();
        let label_style = if focused {
            Style::default().add_modifier(Modifier::BOLD)
        } else {
            theme.dim()
        };
        let line = Line::from(vec![
            Span::styled(
                format!(
                    "{}{:<w$}",
                    if focused { "▶" } else { " " },
                    format!("{}:", f.label),
                    w = label_w - 1
                ),
                label_style,
            ),
            Span::styled(
                shown,
                if focused {
                    Style::default().add_modifier(Modifier::UNDERLINED)
                } else {
                    Style::default()
                },
            ),
        ]);
        frame.render_widget(Paragraph::new(line), Rect::new(area.x, y, area.width, 1));
        frame.render_widget(
            Paragraph::new(Line::styled(
                format!("{:label_w$}{}", "", f.hint),
                theme.dim(),
            )),
            Rect::new(area.x, y + 1, area.width, 1),
        );
        if focused {
            let x =
                area.x + label_w as u16 + (f.input.visual_cursor().saturating_sub(scroll)) as u16;
            frame.set_cursor_position(Position::new(
                x.min(area.x + area.width.saturating_sub(1)),
                y,
            ));
        }
    }
}

/// A prompt's fields under the lines `about` what it acts on (and a blank line after them).
fn prompt(
    frame: &mut Frame,
    area: Rect,
    title: &str,
    about: Vec<Line>,
    fields: &Fields,
    theme: &Theme,
) {
    let about_h = if about.is_empty() {
        0
    } else {
        about.len() as u16 + 1
    };
    let h = about_h + (fields.fields.len() as u16) * 2 + 2;
    let rect = centered(area, 72, h);
    let inner = popup(frame, rect, title, theme);
    let [top, rest] =
        Layout::vertical([Constraint::Length(about_h), Constraint::Min(0)]).areas(inner);
    frame.render_widget(Paragraph::new(about), top);
    field_lines(frame, rest, fields, theme);
}

/// What "Cancel change #id" ends: the change, when it was to run, and that it is for good.
fn cancelled<'a>(state: &State, id: i64, theme: &Theme) -> Vec<Line<'a>> {
    let Some(c) = state.approvals.changes().get(&id) else {
        return Vec::new();
    };
    let when = c
        .run_at
        .map(|t| {
            let left = if t > state.now {
                format!("in {}", human_duration(t - state.now))
            } else {
                "due now".into()
            };
            format!(" {} UTC ({left})", t.format("%a %d %b %H:%M"))
        })
        .unwrap_or_default();
    let status = if c.state == ChangeState::PendingApproval {
        format!("waiting for approval, to run{when}")
    } else {
        format!("scheduled for{when}")
    };
    vec![
        Line::raw(format!(
            "{} on {} · {} · by {}",
            c.action, c.target, c.ticket, c.requested_by
        )),
        Line::styled(status, theme.warn()),
        Line::raw("It will not run; to run it after all, request it again."),
    ]
}

fn change_form(
    frame: &mut Frame,
    area: Rect,
    form: &ChangeForm,
    now: DateTime<Utc>,
    theme: &Theme,
) {
    let rect = centered(
        area,
        area.width.saturating_sub(4).min(120),
        area.height.saturating_sub(2).min(30),
    );
    let title = format!(
        "Request {} ({} risk)",
        form.action.name,
        risk_word(form.action.risk)
    );
    let inner = popup(frame, rect, &title, theme);
    let side_by_side = inner.width >= 90;
    let field_h = (form.fields.fields.len() as u16) * 2;
    let (fields_area, decision_area) = if side_by_side {
        let [l, r] = Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)])
            .areas(inner);
        (l, r)
    } else {
        let [t, b] = Layout::vertical([
            Constraint::Length(field_h.min(inner.height / 2 + 2)),
            Constraint::Min(3),
        ])
        .areas(inner);
        (t, b)
    };
    field_lines(frame, fields_area, &form.fields, theme);

    let mut lines = Vec::new();
    match form.ticket_check() {
        Some(Ok(())) => lines.push(Line::styled(
            format!("✓ ticket {}", form.fields.value(TICKET).trim()),
            theme.good(),
        )),
        Some(Err(e)) => lines.push(Line::styled(format!("✗ {e}"), theme.bad())),
        None => lines.push(Line::styled(
            "a ticket is required on every action",
            theme.dim(),
        )),
    }
    match &form.preview {
        _ if form.submitting => lines.push(Line::raw("submitting…")),
        None => lines.push(Line::styled(
            "the server's decision appears here as you type",
            theme.dim(),
        )),
        Some(Err(e)) => lines.push(Line::styled(format!("✗ {e}"), theme.bad())),
        Some(Ok(p)) => {
            let (head, style) = match (p.decision, p.run_at) {
                (Outcome::Execute, None) => {
                    ("▶ RUNS NOW when you submit".to_string(), theme.good())
                }
                (Outcome::Execute, Some(t)) => (
                    format!("⏲ SCHEDULED for {} when you submit", schedule_time(t, now)),
                    theme.good(),
                ),
                (Outcome::NeedsApproval, _) => {
                    let needs: Vec<String> =
                        p.approvals_required.iter().map(|r| r.describe()).collect();
                    (
                        format!("⏸ NEEDS APPROVAL: {}", needs.join(" and ")),
                        theme.warn(),
                    )
                }
                (Outcome::Blocked, _) => ("⛔ BLOCKED".to_string(), theme.bad()),
            };
            lines.push(Line::styled(head, style.add_modifier(Modifier::BOLD)));
            if let (Outcome::NeedsApproval, Some(t)) = (p.decision, p.run_at) {
                lines.push(Line::styled(
                    format!("⏲ then runs at {}", schedule_time(t, now)),
                    theme.good(),
                ));
            }
            for r in &p.reasons {
                lines.push(Line::raw(format!("· {r}")));
            }
            for w in &p.warnings {
                lines.push(Line::styled(format!("⚠ {w}"), theme.warn()));
            }
            for c in &p.conflicts {
                lines.push(Line::styled(format!("⚠ {}", c.message), theme.warn()));
            }
            if let Some(w) = form.schedulable() {
                lines.push(Line::styled(
                    format!(
                        "⏲ Ctrl-N schedules it for the {} window opening {}",
                        w.kind,
                        schedule_time(w.opens_at, now)
                    ),
                    theme.good().add_modifier(Modifier::BOLD),
                ));
            } else if form.run_at.is_some() {
                lines.push(Line::styled("Ctrl-N: run it now instead", theme.dim()));
            }
        }
    }
    lines.push(Line::raw(""));
    lines.push(Line::from(vec![
        Span::styled("Rollback: ", theme.dim()),
        Span::raw(form.action.rollback.clone()),
    ]));
    let block = Block::default()
        .borders(if side_by_side {
            Borders::LEFT
        } else {
            Borders::TOP
        })
        .border_style(theme.dim());
    let inner_decision = block.inner(decision_area);
    frame.render_widget(block, decision_area);
    frame.render_widget(
        Paragraph::new(lines).wrap(Wrap { trim: true }),
        inner_decision,
    );
}

/// `Tue 22:00 UTC (in 3h05m)`: when a scheduled change runs, and how soon.
fn schedule_time(t: DateTime<Utc>, now: DateTime<Utc>) -> String {
    format!(
        "{} (in {})",
        t.format("%a %H:%M UTC"),
        crate::domain::window::human_duration(t - now)
    )
}

fn outcome(frame: &mut Frame, area: Rect, c: &Change, theme: &Theme) {
    let width = area.width.saturating_sub(6).min(100);
    let mut lines = vec![Line::from(vec![
        Span::styled(
            c.state.as_str().to_uppercase().replace('_', " "),
            theme.state(c.state).add_modifier(Modifier::BOLD),
        ),
        Span::raw(format!("  {} on {} ({})", c.action, c.target, c.ticket)),
    ])];
    match c.state {
        ChangeState::PendingApproval => {
            let needs: Vec<String> = c.approvals_required.iter().map(|r| r.describe()).collect();
            lines.push(Line::raw(format!(
                "Waiting for {}. It is in the Approvals queue (2).",
                needs.join(" and ")
            )));
        }
        ChangeState::Executing => lines.push(Line::raw(
            "The command is running; its outcome appears in Activity.",
        )),
        _ => {}
    }
    if let (Some(t), ChangeState::PendingApproval | ChangeState::Scheduled) = (c.run_at, c.state) {
        lines.push(Line::raw(format!(
            "Scheduled for {}: the server checks the policy again then and runs it once; \
             not started within the grace period, it ends missed.",
            t.format("%a %Y-%m-%d %H:%M UTC")
        )));
    }
    for conflict in &c.conflicts {
        lines.push(Line::styled(
            format!("⚠ {}", conflict.message),
            theme.warn(),
        ));
    }
    if let Some(r) = &c.outcome_reason {
        lines.push(Line::styled(r.clone(), theme.bad()));
    }
    for w in &c.warnings {
        lines.push(Line::styled(format!("⚠ {w}"), theme.warn()));
    }
    if let Some(o) = &c.output {
        lines.push(Line::styled(
            format!(
                "exit {}{}",
                o.exit_code
                    .map(|c| c.to_string())
                    .unwrap_or_else(|| "-".into()),
                if o.simulated { " · simulated" } else { "" }
            ),
            theme.dim(),
        ));
        for l in o.stdout.lines().chain(o.stderr.lines()) {
            lines.push(Line::raw(l.to_string()));
        }
    }
    lines.push(Line::styled("press any key", theme.dim()));
    // As tall as what it says (wrapped), up to most of the screen.
    let inner_w = width.saturating_sub(2).max(1) as usize;
    let text_h: usize = lines
        .iter()
        .map(|l| l.width().div_ceil(inner_w).max(1))
        .sum();
    let rect = centered(
        area,
        width,
        (text_h as u16 + 2).min(area.height.saturating_sub(4)),
    );
    let inner = popup(frame, rect, &format!("Change #{}", c.id), theme);
    frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }), inner);
}
