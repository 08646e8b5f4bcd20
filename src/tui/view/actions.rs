//! Pane 1: the action catalog and what I may do with each action.

use crate::tui::app::State;
use crate::tui::theme::Theme;
use crate::tui::view::words::risk_word;
use crate::tui::view::{fit, scroll_offset};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Wrap};

/// The list and the detail of the selected action.
fn areas(area: Rect) -> [Rect; 2] {
    let detail_h = if area.height >= 12 { 4 } else { 2 };
    Layout::vertical([Constraint::Min(1), Constraint::Length(detail_h)]).areas(area)
}

/// The action on row `y` of the pane's inner `area`, for a click.
pub fn row_at(state: &State, area: Rect, y: u16) -> Option<usize> {
    let [list, _] = areas(area);
    let actions = &state.actions.list;
    let offset = scroll_offset(
        actions.selected_index(),
        list.height as usize,
        actions.len(),
    );
    super::row_in(list, y, offset, 1, actions.len())
}

pub fn draw(frame: &mut Frame, area: Rect, state: &State, theme: &Theme) {
    let actions = &state.actions.list;
    if actions.is_empty() {
        frame.render_widget(
            Paragraph::new("loading the catalog…").style(theme.dim()),
            area,
        );
        return;
    }
    let [list, detail] = areas(area);
    let rows = list.height as usize;
    let offset = scroll_offset(actions.selected_index(), rows, actions.len());
    let name_w = 18usize;
    let lines: Vec<Line> = actions
        .items()
        .iter()
        .enumerate()
        .skip(offset)
        .take(rows)
        .map(|(i, a)| {
            let selected = i == actions.selected_index();
            let may_style = if a.you_may == "run" {
                theme.good()
            } else {
                theme.warn()
            };
            let mut line = Line::from(vec![
                Span::raw(if selected { "▶ " } else { "  " }),
                Span::styled(
                    format!("{:<name_w$} ", fit(&a.name, name_w)),
                    Style::default().add_modifier(Modifier::BOLD),
                ),
                Span::styled(format!("{:<9}", risk_word(a.risk)), theme.risk(a.risk)),
                Span::styled(a.you_may.clone(), may_style),
            ]);
            if selected {
                line = line.style(theme.selected());
            }
            line
        })
        .collect();
    frame.render_widget(Paragraph::new(lines), list);
    if let Some(a) = actions.selected() {
        let text = vec![
            Line::from(vec![
                Span::styled("What: ", theme.dim()),
                Span::raw(a.description.clone()),
            ]),
            Line::from(vec![
                Span::styled("Rollback: ", theme.dim()),
                Span::raw(a.rollback.clone()),
            ]),
            Line::styled(
                format!(
                    "{}{}",
                    if a.has_command {
                        "Runs its configured command."
                    } else {
                        "Simulated (no command configured)."
                    },
                    // A read-only dashboard requests nothing (`app/read_only.rs`).
                    if state.is_read_only() {
                        ""
                    } else {
                        " Enter: request it."
                    }
                ),
                theme.dim(),
            ),
        ];
        frame.render_widget(Paragraph::new(text).wrap(Wrap { trim: true }), detail);
    }
}
