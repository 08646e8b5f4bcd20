//! The scrollable full-screen views: the help grouped by pane, the full view of a change, and
//! the message log. Their lines are built here once, for drawing and for the reducer, which
//! needs their number to keep the scroll inside them.

use crate::domain::approval;
use crate::domain::change::{Change, ChangeState};
use crate::domain::verification::Verification;
use crate::domain::window::human_duration;
use crate::tui::app::{Scrolled, State, Tone};
use crate::tui::keymap::Scope;
use crate::tui::theme::Theme;
use crate::tui::view::words::{needs, risk_word};
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Borders, Clear, Paragraph};

/// How a line looks; the theme turns it into a style when it is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Look {
    Plain,
    Heading,
    Dim,
    Warn,
    Bad,
    Good,
}

impl Look {
    fn style(self, theme: &Theme) -> Style {
        match self {
            Look::Plain => Style::default(),
            Look::Heading => Style::default().add_modifier(Modifier::BOLD),
            Look::Dim => theme.dim(),
            Look::Warn => theme.warn(),
            Look::Bad => theme.bad(),
            Look::Good => theme.good(),
        }
    }
}

/// The rectangle a scrolled view takes on a screen of `area`.
pub fn rect(area: Rect) -> Rect {
    let w = area.width.saturating_sub(2).min(120);
    let h = area.height.saturating_sub(2);
    Rect::new(
        area.x + (area.width - w) / 2,
        area.y + (area.height - h) / 2,
        w,
        h,
    )
}

/// Rows of text a scrolled view shows at once on a screen of `size`.
pub fn page(size: (u16, u16)) -> usize {
    rect(Rect::new(0, 0, size.0, size.1))
        .height
        .saturating_sub(2)
        .max(1) as usize
}

fn title(what: &Scrolled) -> String {
    match what {
        Scrolled::Help => "Keys".into(),
        Scrolled::Change(id) => format!("Change #{id}"),
        Scrolled::Messages => "Messages (newest first)".into(),
    }
}

/// The view's lines, wrapped to the width it is drawn at.
pub fn lines(state: &State, what: &Scrolled) -> Vec<(Look, String)> {
    let width = rect(Rect::new(0, 0, state.size.0, state.size.1))
        .width
        .saturating_sub(2)
        .max(10) as usize;
    let logical = match what {
        Scrolled::Help => help(state),
        Scrolled::Change(id) => change(state, *id),
        Scrolled::Messages => messages(state),
    };
    logical
        .into_iter()
        .flat_map(|(look, text)| wrap(&text, width).into_iter().map(move |l| (look, l)))
        .collect()
}

/// Draws the view at `offset` with a position marker in its title.
pub fn draw(
    frame: &mut Frame,
    area: Rect,
    state: &State,
    what: &Scrolled,
    offset: usize,
    theme: &Theme,
) {
    let all = lines(state, what);
    let r = rect(area);
    let rows = r.height.saturating_sub(2) as usize;
    let offset = offset.min(all.len().saturating_sub(rows));
    let end = (offset + rows).min(all.len());
    let position = if all.len() > rows {
        format!(
            " · {}–{} of {} · j/k PgUp/PgDn g/G",
            offset + 1,
            end,
            all.len()
        )
    } else {
        String::new()
    };
    frame.render_widget(Clear, r);
    let block = Block::default()
        .borders(Borders::ALL)
        .title(format!(" {}{position} · Esc closes ", title(what)))
        .border_style(theme.focused_border());
    let inner = block.inner(r);
    frame.render_widget(block, r);
    let shown: Vec<Line> = all[offset..end]
        .iter()
        .map(|(look, text)| Line::styled(text.clone(), look.style(theme)))
        .collect();
    frame.render_widget(Paragraph::new(shown), inner);
}

/// Where the continuation of a line starts: under its value when it is a label and a value
/// set apart by two spaces or more ("Reason      …", "  Enter   …"), else under its first word.
fn hanging_indent(text: &str) -> usize {
    let lead = text.len() - text.trim_start_matches(' ').len();
    let rest = &text[lead..];
    match rest.find("  ") {
        Some(gap) if !rest[..gap].contains(' ') => {
            let value = rest[gap..].len() - rest[gap..].trim_start_matches(' ').len();
            lead + rest[..gap].chars().count() + value
        }
        _ => lead,
    }
}

/// Breaks `text` into lines of at most `width` characters, at spaces where it can; the
/// continuation lines hang under the value (see [`hanging_indent`]). Spacing inside the first
/// line is kept, so columns stay aligned.
fn wrap(text: &str, width: usize) -> Vec<String> {
    if text.chars().count() <= width {
        return vec![text.to_string()];
    }
    let hang = hanging_indent(text);
    let hang = if hang * 2 > width { 0 } else { hang };
    let mut out = Vec::new();
    let mut rest = text;
    let mut prefix = 0;
    loop {
        let room = width.saturating_sub(prefix).max(1);
        if rest.chars().count() <= room {
            out.push(format!("{}{rest}", " ".repeat(prefix)));
            return out;
        }
        let cut = rest
            .char_indices()
            .nth(room)
            .map(|(i, _)| i)
            .unwrap_or(rest.len());
        // At the last space that leaves something before it; a word longer than the line is
        // cut where the line ends.
        let brk = if rest[cut..].starts_with(' ') {
            cut
        } else {
            rest[..cut]
                .rfind(' ')
                .filter(|&i| !rest[..i].trim().is_empty())
                .unwrap_or(cut)
        };
        out.push(format!("{}{}", " ".repeat(prefix), rest[..brk].trim_end()));
        rest = rest[brk..].trim_start();
        prefix = hang;
    }
}

fn help(state: &State) -> Vec<(Look, String)> {
    let mut out = Vec::new();
    // Read-only: only the keys that work are listed (the keymap marks the others, once).
    let read_only = state.is_read_only();
    if read_only {
        out.push((
            Look::Heading,
            "READ-ONLY: keys that would change something are not listed".to_string(),
        ));
        out.push((Look::Plain, String::new()));
    }
    for (scope, heading) in [
        (Scope::Global, "Everywhere"),
        (Scope::Actions, "1 Actions"),
        (Scope::Approvals, "2 Approvals"),
        (Scope::Windows, "3 Windows"),
        (Scope::Verification, "4 Verification"),
    ] {
        let bindings: Vec<_> = state
            .keymap
            .bindings
            .iter()
            .filter(|b| b.scope == scope)
            .filter(|b| !read_only || b.command.acts().is_none())
            .collect();
        if bindings.is_empty() {
            continue;
        }
        if out.last().is_some_and(|(_, line)| !line.is_empty()) {
            out.push((Look::Plain, String::new()));
        }
        out.push((Look::Heading, heading.to_string()));
        for b in bindings {
            let text = match b.command.read_only_help() {
                Some(text) if read_only => text,
                _ => b.help,
            };
            out.push((Look::Plain, format!("  {:<8}{text}", b.label)));
        }
    }
    out
}

fn messages(state: &State) -> Vec<(Look, String)> {
    if state.log.is_empty() {
        return vec![(Look::Dim, "no messages yet".into())];
    }
    state
        .log
        .iter()
        .rev()
        .map(|(at, tone, text)| {
            let (look, mark) = match tone {
                Tone::Error => (Look::Bad, "✗ "),
                Tone::Success => (Look::Good, "✓ "),
                Tone::Info => (Look::Plain, ""),
            };
            (look, format!("{} {mark}{text}", at.format("%H:%M:%S")))
        })
        .collect()
}

fn change(state: &State, id: i64) -> Vec<(Look, String)> {
    let Some(c) = state.approvals.changes().get(&id) else {
        return vec![(
            Look::Dim,
            format!("change #{id} is not loaded here (R reloads everything)"),
        )];
    };
    let mut out = vec![(
        Look::Heading,
        format!(
            "{} · {} on {} · {} risk",
            c.state.as_str().to_uppercase().replace('_', " "),
            c.action,
            c.target,
            risk_word(c.risk)
        ),
    )];
    let mut field = |label: &str, value: String| {
        if !value.is_empty() {
            out.push((Look::Plain, format!("{label:<12}{value}")));
        }
    };
    field("Ticket", c.ticket.clone());
    field(
        "Requested",
        format!(
            "by {} ({}) at {}",
            c.requested_by,
            c.requested_level,
            c.created_at.format("%Y-%m-%d %H:%M:%S UTC")
        ),
    );
    // When it runs: what someone about to cancel it (C) reads first.
    if let Some(t) = c.run_at {
        let at = t.format("%a %Y-%m-%d %H:%M UTC");
        let left = human_duration(t - state.now);
        match c.state {
            ChangeState::Scheduled if t > state.now => {
                field("Scheduled", format!("{at} (in {left})"))
            }
            ChangeState::PendingApproval if t > state.now => {
                field("Scheduled", format!("{at} (in {left}), once approved"))
            }
            _ => field("Run at", at.to_string()),
        }
    }
    let params: Vec<String> = c.params.iter().map(|(k, v)| format!("{k}={v}")).collect();
    field("Parameters", params.join(" "));
    field("Reason", c.reason.clone());
    // What the reviewer approves: the argv, as fixed when the change was requested.
    field(
        "Runs",
        match &c.command {
            Some(argv) => crate::domain::action::display_argv(argv),
            None => "the simulator (the action has no command)".into(),
        },
    );
    if let Some(inc) = &c.emergency {
        field("Emergency", format!("for incident {inc}"));
    }
    if let Some(orig) = c.rollback_of {
        field("Rollback of", format!("change #{orig}"));
    }
    let rollback = state
        .actions
        .find(&c.action)
        .map(|a| a.rollback.clone())
        .unwrap_or_default();
    field("Rollback", rollback);
    if let Some(captured) = &c.captured {
        field("Captured", captured.clone());
    }
    policy(c, &mut out);
    let mut tail = |look, text: String| out.push((look, text));
    for w in &c.warnings {
        tail(Look::Warn, format!("⚠ {w}"));
    }
    if let Some(r) = &c.outcome_reason {
        tail(
            Look::Bad,
            format!(
                "Outcome     {r}{}",
                c.decided_by
                    .as_ref()
                    .map(|b| format!(" (by {b})"))
                    .unwrap_or_default()
            ),
        );
    }
    if let Some(o) = &c.output {
        tail(
            Look::Heading,
            format!(
                "Output      exit {}{}{}, {} to {}",
                o.exit_code
                    .map(|c| c.to_string())
                    .unwrap_or_else(|| "-".into()),
                if o.simulated { " · simulated" } else { "" },
                if o.truncated { " · truncated" } else { "" },
                o.started_at.format("%H:%M:%S"),
                o.finished_at.format("%H:%M:%S")
            ),
        );
        for l in o.stdout.lines() {
            tail(Look::Plain, format!("  {l}"));
        }
        for l in o.stderr.lines() {
            tail(Look::Bad, format!("  {l}"));
        }
    }
    if let Some(v) = state
        .verification
        .list
        .items()
        .iter()
        .find(|v| v.change_id == id)
    {
        verification(v, state, &mut out);
    }
    out
}

fn policy(c: &Change, out: &mut Vec<(Look, String)>) {
    let approvals: Vec<String> = c
        .approvals
        .iter()
        .map(|a| {
            format!(
                "{} ({}) at {}{}",
                a.approver,
                a.level,
                a.at.format("%H:%M"),
                a.comment
                    .as_ref()
                    .map(|t| format!(": {t}"))
                    .unwrap_or_default()
            )
        })
        .collect();
    let required: Vec<String> = c.approvals_required.iter().map(|r| r.describe()).collect();
    out.push((Look::Heading, "Policy".into()));
    out.push((
        Look::Plain,
        format!(
            "  requires    {}",
            if required.is_empty() {
                "no approval".into()
            } else {
                required.join(" and ")
            }
        ),
    ));
    // "Nobody yet" only means something while an approval is still wanted.
    if !approvals.is_empty() || !required.is_empty() {
        out.push((
            Look::Plain,
            format!(
                "  approved by {}",
                if approvals.is_empty() {
                    "nobody yet".into()
                } else {
                    approvals.join("; ")
                }
            ),
        ));
    }
    if c.state == crate::domain::change::ChangeState::PendingApproval {
        let missing = approval::unmet(&c.approvals_required, &c.approvals, &c.requested_by);
        let status = if missing.is_empty() {
            "every approval is in: it runs when the policy is checked again".to_string()
        } else {
            needs(c)
        };
        out.push((Look::Plain, format!("  status      {status}")));
        out.push((
            Look::Plain,
            format!(
                "  expires     {}",
                c.expires_at.format("%Y-%m-%d %H:%M UTC")
            ),
        ));
    }
}

fn verification(v: &Verification, state: &State, out: &mut Vec<(Look, String)>) {
    out.push((Look::Heading, "Verification".into()));
    let left = (v.deadline - state.now).num_seconds().max(0);
    out.push((
        Look::Plain,
        format!(
            "  {} · started {} · deadline {}{}",
            v.state,
            v.started_at.format("%H:%M:%S"),
            v.deadline.format("%H:%M:%S"),
            if v.state.is_active() {
                format!(" ({:02}:{:02} left)", left / 60, left % 60)
            } else {
                String::new()
            }
        ),
    ));
    if let Some(s) = &v.summary {
        out.push((Look::Plain, format!("  {}", s.text)));
    }
    if let Some(by) = &v.decided_by {
        out.push((
            Look::Plain,
            format!(
                "  ended by {by}{}",
                v.note
                    .as_ref()
                    .map(|n| format!(": {n}"))
                    .unwrap_or_default()
            ),
        ));
    }
    if let Some(i) = &v.incident {
        out.push((Look::Bad, format!("  incident {i}")));
    }
}

#[cfg(test)]
mod tests {
    use super::wrap;

    #[test]
    fn wrapping_keeps_words_and_columns_and_cuts_what_cannot_fit() {
        assert_eq!(wrap("  abc def ghi", 9), vec!["  abc def", "  ghi"]);
        assert_eq!(wrap("abcdefghij", 4), vec!["abcd", "efgh", "ij"]);
        assert_eq!(wrap("short", 10), vec!["short"]);
        // A key and its help: the help wraps under itself.
        assert_eq!(
            wrap("  x       remove the selected freeze", 24),
            vec![
                "  x       remove the",
                "          selected",
                "          freeze"
            ]
        );
    }
}
