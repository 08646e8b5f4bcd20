//! Pane 2: the approval queue, riskiest first, with the selected change's detail.

use crate::domain::change::Change;
use crate::domain::window::human_duration;
use crate::tui::app::{Stance, State};
use crate::tui::theme::Theme;
use crate::tui::view::words::risk_word;
use crate::tui::view::{fit, scroll_offset};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Wrap};

/// The filter line, the column heads, the queue and the selected change's detail.
fn areas(state: &State, area: Rect) -> [Rect; 4] {
    let filter_h = u16::from(!state.approvals.filter().is_empty());
    let len = state.approvals.queue_len();
    // The list is as tall as its rows (and leaves the detail at least a few lines); the detail
    // of the selected change gets the rest, so no blank rows sit above a cut-off policy line.
    let detail_min = if area.height >= 16 {
        6
    } else if area.height >= 10 {
        3
    } else {
        0
    };
    let avail = area.height.saturating_sub(filter_h + 1);
    let list_h = (len.max(1) as u16).min(avail.saturating_sub(detail_min).max(1));
    let detail_h = avail.saturating_sub(list_h);
    let [filter, head, list, detail] = Layout::vertical([
        Constraint::Length(filter_h),
        Constraint::Length(1),
        Constraint::Length(list_h),
        Constraint::Length(detail_h),
    ])
    .areas(area);
    [filter, head, list, detail]
}

/// The queue position on row `y` of the pane's inner `area`, for a click.
pub fn row_at(state: &State, area: Rect, y: u16) -> Option<usize> {
    let [_, _, list, _] = areas(state, area);
    let len = state.approvals.queue_len();
    let offset = scroll_offset(state.approvals.selected_index(), list.height as usize, len);
    super::row_in(list, y, offset, 1, len)
}

pub fn draw(frame: &mut Frame, area: Rect, state: &State, theme: &Theme) {
    let filter_h = u16::from(!state.approvals.filter().is_empty());
    let len = state.approvals.queue_len();
    let [filter, head, list, detail] = areas(state, area);
    if filter_h > 0 {
        frame.render_widget(
            Paragraph::new(format!(
                "filter: {}  ({len} shown; / changes it, Esc clears it)",
                state.approvals.filter()
            ))
            .style(theme.warn()),
            filter,
        );
    }
    if len == 0 {
        let text = if state.approvals.filter().is_empty() {
            "no change is waiting for approval"
        } else {
            "no pending change matches the filter"
        };
        frame.render_widget(Paragraph::new(text).style(theme.dim()), list);
        return;
    }
    let wide = area.width >= 100;
    let w = area.width as usize;
    // Age, risk, action, target, [ticket], by, then what it needs in the rest.
    let (act_w, tgt_w, by_w) = if wide { (16, 14, 8) } else { (14, 11, 6) };
    let tkt_w = if wide { 18 } else { 0 };
    let fixed = 2 + 5 + 9 + act_w + 1 + tgt_w + 1 + if wide { tkt_w + 1 } else { 0 } + by_w + 1;
    let need_w = w.saturating_sub(fixed).max(4);
    let mut header = format!(
        "  {:<5}{:<9}{:<act_w$} {:<tgt_w$} ",
        "AGE", "RISK", "ACTION", "TARGET"
    );
    if wide {
        header.push_str(&format!("{:<tkt_w$} ", "TICKET"));
    }
    header.push_str(&format!("{:<by_w$} {}", "BY", "STATUS"));
    frame.render_widget(Paragraph::new(fit(&header, w)).style(theme.dim()), head);

    let rows = list.height as usize;
    let offset = scroll_offset(state.approvals.selected_index(), rows, len);
    let lines: Vec<Line> = state
        .approvals
        .queue_rows(offset, rows)
        .map(|(i, c)| {
            let selected = i == state.approvals.selected_index();
            let (stance, stance_style) = match state.approvals.stance(c) {
                Stance::CanApprove => ("you can approve".to_string(), theme.good()),
                Stance::Yours => ("yours".to_string(), theme.dim()),
                Stance::Approved => ("you approved".to_string(), theme.dim()),
                Stance::Other(n) => (n, theme.warn()),
            };
            let mut spans = vec![
                Span::raw(if selected { "▶ " } else { "  " }),
                Span::raw(format!("{:<5}", age(c, state))),
                Span::styled(format!("{:<9}", risk_word(c.risk)), theme.risk(c.risk)),
                Span::raw(format!("{:<act_w$} ", fit(&what(c), act_w))),
                Span::raw(format!("{:<tgt_w$} ", fit(&c.target, tgt_w))),
            ];
            if wide {
                spans.push(Span::raw(format!("{:<tkt_w$} ", fit(&c.ticket, tkt_w))));
            }
            spans.push(Span::raw(format!("{:<by_w$} ", fit(&c.requested_by, by_w))));
            // Words and symbols first, colour second: "⚠ #12" conflicts, "⏲ 22:00" scheduled.
            let marks = marks(c, state);
            let marks_w = marks.chars().count().min(need_w);
            if marks_w > 0 {
                spans.push(Span::styled(fit(&marks, marks_w), theme.warn()));
            }
            spans.push(Span::styled(
                fit(&stance, need_w.saturating_sub(marks_w)),
                stance_style,
            ));
            let line = Line::from(spans);
            if selected {
                line.style(theme.selected())
            } else {
                line
            }
        })
        .collect();
    frame.render_widget(Paragraph::new(lines), list);
    if detail.height > 0
        && let Some(c) = state.approvals.selected_change()
    {
        frame.render_widget(
            Paragraph::new(detail_lines(c, state, theme)).wrap(Wrap { trim: true }),
            detail,
        );
    }
}

/// The queue's marks before the status: "⚠ #12 " when the change conflicts with others on its
/// target, "⏲ 22:00 " when it is scheduled (a day name when not today).
fn marks(c: &Change, state: &State) -> String {
    let mut out = String::new();
    let conflicts = state.approvals.conflicts_of(c, state.now);
    if let Some(first) = conflicts.first() {
        out.push_str(&format!("⚠ #{first}"));
        if conflicts.len() > 1 {
            out.push_str(&format!("+{}", conflicts.len() - 1));
        }
        out.push(' ');
    }
    if let Some(t) = c.run_at {
        out.push_str(&format!("⏲ {} ", short_time(t, state)));
    }
    out
}

fn short_time(t: chrono::DateTime<chrono::Utc>, state: &State) -> String {
    if t.date_naive() == state.now.date_naive() {
        t.format("%H:%M").to_string()
    } else {
        t.format("%a %H:%M").to_string()
    }
}

/// The action column: a rollback is named by the change it undoes (its action is in the
/// detail), so it never reads as a second, unrelated request.
fn what(c: &Change) -> String {
    match c.rollback_of {
        Some(original) => format!("rollback of #{original}"),
        None => c.action.clone(),
    }
}

fn age(c: &Change, state: &State) -> String {
    let d = state.now - c.created_at;
    if d.num_minutes() < 1 {
        "now".into()
    } else {
        human_duration(d)
    }
}

fn detail_lines<'a>(c: &'a Change, state: &State, theme: &Theme) -> Vec<Line<'a>> {
    let rollback = state
        .actions
        .find(&c.action)
        .map(|a| a.rollback.clone())
        .unwrap_or_default();
    let params: Vec<String> = c.params.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let mut lines = vec![
        Line::from(vec![
            Span::styled(format!("#{} ", c.id), Style::default()),
            // An emergency change skips the windows or a freeze: the reviewer must see that first.
            Span::styled(
                c.emergency
                    .as_ref()
                    .map(|inc| format!("EMERGENCY for {inc} · "))
                    .unwrap_or_default(),
                theme.warn(),
            ),
            Span::raw(format!(
                "{} on {} {} · {} · by {} ({})",
                c.action,
                c.target,
                params.join(" "),
                c.ticket,
                c.requested_by,
                c.requested_level
            )),
        ]),
        Line::from(vec![
            Span::styled("Reason: ", theme.dim()),
            Span::raw(c.reason.clone()),
        ]),
        Line::from(vec![
            Span::styled("Rollback: ", theme.dim()),
            Span::raw(rollback),
        ]),
    ];
    let needs: Vec<String> = c.approvals_required.iter().map(|r| r.describe()).collect();
    let approved: Vec<String> = c
        .approvals
        .iter()
        .map(|a| format!("{} ({})", a.approver, a.level))
        .collect();
    lines.push(Line::from(vec![
        Span::styled("Policy: ", theme.dim()),
        Span::raw(format!(
            "requires {}; approved by {}; expires {}",
            if needs.is_empty() {
                "nothing".into()
            } else {
                needs.join(" and ")
            },
            if approved.is_empty() {
                "nobody yet".into()
            } else {
                approved.join(", ")
            },
            c.expires_at.format("%H:%M UTC")
        )),
    ]));
    if let Some(t) = c.run_at {
        lines.push(Line::from(vec![
            Span::styled("Scheduled: ", theme.dim()),
            Span::raw(format!(
                "runs {} (in {}) once approved, if the policy still allows it then",
                t.format("%a %Y-%m-%d %H:%M UTC"),
                human_duration(t - state.now)
            )),
        ]));
    }
    for conflict in &c.conflicts {
        lines.push(Line::styled(
            format!("⚠ {}", conflict.message),
            theme.warn(),
        ));
    }
    for other in state.approvals.newer_pending(c) {
        lines.push(Line::styled(
            format!(
                "⚠ newer request on {}: #{} {} by {}",
                other.target, other.id, other.action, other.requested_by
            ),
            theme.warn(),
        ));
    }
    for w in &c.warnings {
        lines.push(Line::styled(format!("⚠ {w}"), theme.warn()));
    }
    lines
}
