//! Pane 4: changes in their post-change verification, counting down.

use crate::domain::change::VERIFICATION_MINUTES;
use crate::tui::app::State;
use crate::tui::theme::Theme;
use crate::tui::view::{fit, scroll_offset};
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

pub fn draw(frame: &mut Frame, area: Rect, state: &State, theme: &Theme) {
    if state.verifications.is_empty() {
        frame.render_widget(
            Paragraph::new(
                "no change is under verification: executed changes are watched here for 15 minutes",
            )
            .style(theme.dim()),
            area,
        );
        return;
    }
    let w = area.width as usize;
    let rows = area.height as usize;
    let offset = scroll_offset(state.verification_sel, rows, state.verifications.len());
    let total = (VERIFICATION_MINUTES * 60) as f64;
    let lines: Vec<Line> = state
        .verifications
        .iter()
        .enumerate()
        .skip(offset)
        .take(rows)
        .map(|(i, v)| {
            let left = (v.deadline - state.now).num_seconds().max(0);
            let (countdown, label, style) = if left > 0 {
                (
                    format!("{:02}:{:02}", left / 60, left % 60),
                    v.state.clone(),
                    theme.warn(),
                )
            } else {
                (
                    "00:00".to_string(),
                    "deadline reached".to_string(),
                    theme.bad(),
                )
            };
            let what = format!("#{} {} {}", v.change_id, v.action, v.target);
            let what_w = (w / 3).clamp(12, 40);
            let gauge_w = w.saturating_sub(2 + what_w + 1 + 6 + 20).clamp(4, 40);
            let filled = ((left as f64 / total) * gauge_w as f64).round() as usize;
            let gauge = format!(
                "[{}{}]",
                "█".repeat(filled.min(gauge_w)),
                "░".repeat(gauge_w - filled.min(gauge_w))
            );
            let line = Line::from(vec![
                Span::raw(if i == state.verification_sel {
                    "▶ "
                } else {
                    "  "
                }),
                Span::raw(format!("{:<what_w$} ", fit(&what, what_w))),
                Span::styled(format!("{countdown} "), style),
                Span::styled(gauge, style),
                Span::raw(format!(" {label}")),
            ]);
            if i == state.verification_sel {
                line.style(theme.selected())
            } else {
                line
            }
        })
        .collect();
    frame.render_widget(Paragraph::new(lines), area);
}
