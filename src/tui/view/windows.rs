//! Pane 3: a week of deployment windows and freezes in UTC, with a "now" marker, and the
//! scheduled changes of that week: "⏲" in the slot of their time, listed under the grid with a
//! countdown to their start.

use crate::domain::change::{Change, ChangeState};
use crate::domain::window::human_duration;
use crate::tui::app::{State, WindowsRow, scheduled_in_week, selected_windows_row};
use crate::tui::theme::Theme;
use crate::tui::view::chrome::window_summary;
use crate::tui::view::{fit, scroll_offset};
use chrono::{Duration, Timelike};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

pub fn draw(frame: &mut Frame, area: Rect, state: &State, theme: &Theme) {
    let [status, scale, days, legend, rest] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Length(7),
        Constraint::Length(1),
        Constraint::Min(0),
    ])
    .areas(area);
    frame.render_widget(Paragraph::new(window_summary(state)), status);
    let Some(cal) = &state.windows.calendar else {
        frame.render_widget(
            Paragraph::new("loading the calendar…").style(theme.dim()),
            days,
        );
        return;
    };
    let label_w = 10usize;
    let cells = (area.width as usize).saturating_sub(label_w).max(24);
    let slot_minutes = (24 * 60) as f64 / cells as f64;
    // Hour scale: every 3 hours when there is room, else every 6.
    let step = if cells >= 64 { 3 } else { 6 };
    let mut buf: Vec<char> = vec![' '; label_w + cells];
    for hour in (0..24).step_by(step) {
        let col = label_w + (hour as f64 * 60.0 / slot_minutes) as usize;
        for (k, ch) in format!("{hour:02}").chars().enumerate() {
            if let Some(slot) = buf.get_mut(col + k) {
                *slot = ch;
            }
        }
    }
    let scale_text: String = buf.into_iter().collect();
    frame.render_widget(
        Paragraph::new(fit(&scale_text, area.width as usize)).style(theme.dim()),
        scale,
    );

    let scheduled = scheduled_in_week(state);
    let mut lines = Vec::new();
    for d in 0..7 {
        let day_start = cal.from + Duration::days(d);
        let mut spans = vec![Span::styled(
            format!("{:<label_w$}", day_start.format("%a %d %b")),
            if day_start.date_naive() == state.now.date_naive() {
                theme.selected()
            } else {
                Style::default()
            },
        )];
        for c in 0..cells {
            let t = day_start + Duration::seconds((c as f64 * slot_minutes * 60.0) as i64);
            let t_end =
                day_start + Duration::seconds(((c + 1) as f64 * slot_minutes * 60.0) as i64);
            let now_here = state.now >= t && state.now < t_end;
            let kind = cal
                .blocks
                .iter()
                .filter(|b| b.start < t_end && b.end > t)
                .map(|b| b.kind.as_str())
                .max_by_key(|k| match *k {
                    "freeze" => 3,
                    "standard" => 2,
                    _ => 1,
                });
            let (ch, style) = match kind {
                Some("freeze") => ("╳", theme.freeze_block()),
                Some("standard") => ("█", theme.standard_block()),
                Some("off_peak") => ("▒", theme.off_peak_block()),
                _ => ("·", theme.dim()),
            };
            let change_here = scheduled
                .iter()
                .any(|c| c.run_at.is_some_and(|r| r >= t && r < t_end));
            if now_here {
                spans.push(Span::styled("┃", theme.bad()));
            } else if change_here {
                spans.push(Span::styled(
                    SCHEDULED_MARK,
                    theme.state(ChangeState::Scheduled),
                ));
            } else {
                spans.push(Span::styled(ch, style));
            }
        }
        lines.push(Line::from(spans));
    }
    frame.render_widget(Paragraph::new(lines), days);
    frame.render_widget(
        Paragraph::new(Line::from(vec![
            Span::styled("█", theme.standard_block()),
            Span::raw(" Standard  "),
            Span::styled("▒", theme.off_peak_block()),
            Span::raw(" Off-peak  "),
            Span::styled("╳", theme.freeze_block()),
            Span::raw(" Freeze  "),
            Span::styled(SCHEDULED_MARK, theme.state(ChangeState::Scheduled)),
            Span::raw(" Change  "),
            Span::styled("┃", theme.bad()),
            Span::raw(format!(
                " now {}  (UTC; h/l week)",
                state.now.format("%a %H:%M")
            )),
        ])),
        legend,
    );
    let mut info = Vec::new();
    let selected = selected_windows_row(state);
    // Where the selected row lands in `info`, to keep it in sight below.
    let mut selected_at = None;
    for b in cal.blocks.iter().filter(|b| b.kind == "freeze") {
        let removable = b.freeze_id.is_some();
        let is_selected = b
            .freeze_id
            .is_some_and(|id| selected == Some(WindowsRow::Freeze(id)));
        if is_selected {
            selected_at = Some(info.len());
        }
        let line = Line::from(vec![
            Span::raw(if is_selected { "▶ " } else { "  " }),
            Span::styled("FREEZE ", theme.freeze_block()),
            Span::raw(format!(
                "'{}' {} → {}{}",
                b.name,
                b.start.format("%b %-d %H:%M"),
                b.end.format("%b %-d %H:%M"),
                if removable { "" } else { " (configured)" }
            )),
        ]);
        info.push(if is_selected {
            line.style(theme.selected())
        } else {
            line
        });
    }
    if let Some(p) = &cal.pause {
        info.push(Line::styled(
            format!(
                "  PAUSED since {} by {}: {}",
                p.paused_at.format("%H:%M"),
                p.paused_by,
                p.reason
            ),
            theme.bad(),
        ));
    }
    for c in &scheduled {
        let is_selected = selected == Some(WindowsRow::Change(c.id));
        if is_selected {
            selected_at = Some(info.len());
        }
        info.push(scheduled_line(c, state, theme, is_selected));
    }
    // More than the room under the grid: the list scrolls to keep the selected row in sight,
    // and the last line says how many are out of sight.
    let room = rest.height as usize;
    if info.len() > room && room > 0 {
        let shown = room - 1;
        let hidden = info.len() - shown;
        let start = selected_at.map_or(0, |i| scroll_offset(i, shown, info.len()));
        info = info.into_iter().skip(start).take(shown).collect();
        info.push(Line::styled(
            format!("  … {hidden} more out of sight (j/k scrolls)"),
            theme.dim(),
        ));
    }
    if info.is_empty() {
        info.push(Line::styled(
            format!(
                "  no freeze or scheduled change this week · now {:02}:{:02} UTC",
                state.now.hour(),
                state.now.minute()
            ),
            theme.dim(),
        ));
    }
    frame.render_widget(Paragraph::new(info), rest);
}

/// The grid's mark for a scheduled change, as the Approvals queue marks one ("⏲ 22:00").
const SCHEDULED_MARK: &str = "⏲";

/// "⏲ #42 Tue 22:00 · in 11h30m · scheduled · restart-pods on checkout by bob": when and the
/// countdown first, so a narrow pane cuts the tail, never the time.
fn scheduled_line<'a>(c: &Change, state: &State, theme: &Theme, selected: bool) -> Line<'a> {
    let Some(run_at) = c.run_at else {
        return Line::default();
    };
    let countdown = if run_at > state.now {
        format!("in {}", human_duration(run_at - state.now))
    } else {
        "due now".to_string()
    };
    let status = if c.state == ChangeState::PendingApproval {
        "awaiting approval"
    } else {
        "scheduled"
    };
    let line = Line::from(vec![
        Span::raw(if selected { "▶ " } else { "  " }),
        Span::styled(
            format!("{SCHEDULED_MARK} #{}", c.id),
            theme.state(ChangeState::Scheduled),
        ),
        Span::raw(format!(" {} · ", run_at.format("%a %H:%M"))),
        Span::styled(countdown, theme.warn()),
        Span::raw(" · "),
        Span::styled(status, theme.state(c.state)),
        Span::raw(format!(
            " · {} on {} by {}",
            c.action, c.target, c.requested_by
        )),
    ]);
    if selected {
        line.style(theme.selected())
    } else {
        line
    }
}
