//! Drawing: a pure function of the state. One file per pane and for the modals.

mod actions;
mod approvals;
mod chrome;
mod modal;
pub mod scrolled;
mod verification;
mod windows;
pub mod words;

#[cfg(test)]
mod tests;

use crate::tui::app::{Modal, Pane, Purpose, State, WIDE_HEIGHT, WIDE_WIDTH};
use crate::tui::theme::Theme;
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph, Wrap};

/// Below this the dashboard shows a message instead of panes.
pub const MIN_WIDTH: u16 = 60;
pub const MIN_HEIGHT: u16 = 16;

pub fn draw(frame: &mut Frame, state: &State, theme: &Theme) {
    let area = frame.area();
    if area.width < MIN_WIDTH || area.height < MIN_HEIGHT {
        let text = format!(
            "terminal too small: {}×{}\nCommandBridge needs at least {MIN_WIDTH}×{MIN_HEIGHT}.\nEnlarge the window, or press q to quit.",
            area.width, area.height
        );
        frame.render_widget(Paragraph::new(text).wrap(Wrap { trim: true }), area);
        return;
    }
    let wide = area.width >= WIDE_WIDTH && area.height >= WIDE_HEIGHT;
    // The reducer decides redraws by the same rule.
    let banner = chrome::banner_text(state);
    let activity_h = if wide { 8 } else { 4 };
    let [header, banner_area, tabs, body, activity, message, footer] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(u16::from(banner.is_some())),
        Constraint::Length(1),
        Constraint::Min(6),
        Constraint::Length(activity_h),
        Constraint::Length(1),
        Constraint::Length(1),
    ])
    .areas(area);
    chrome::header(frame, header, state, theme);
    if let Some(text) = banner {
        frame.render_widget(Paragraph::new(text).style(theme.banner()), banner_area);
    }
    chrome::tabs(frame, tabs, state, theme);
    if wide {
        let [top, bottom] =
            Layout::vertical([Constraint::Percentage(55), Constraint::Percentage(45)]).areas(body);
        let [tl, tr] =
            Layout::horizontal([Constraint::Percentage(45), Constraint::Percentage(55)]).areas(top);
        let [bl, br] = Layout::horizontal([Constraint::Percentage(55), Constraint::Percentage(45)])
            .areas(bottom);
        pane(frame, Pane::Actions, tl, state, theme);
        pane(frame, Pane::Approvals, tr, state, theme);
        pane(frame, Pane::Windows, bl, state, theme);
        pane(frame, Pane::Verification, br, state, theme);
    } else {
        pane(frame, state.pane, body, state, theme);
    }
    chrome::activity(frame, activity, state, theme);
    match &state.modal {
        Some(Modal::Prompt(p)) if matches!(p.purpose, Purpose::Filter | Purpose::Command) => {
            chrome::prompt_line(frame, message, p, theme)
        }
        _ => chrome::message(frame, message, state, theme),
    }
    chrome::footer(frame, footer, state, theme);
    modal::draw(frame, area, state, theme);
    if let Some(text) = &state.popup {
        modal::error(frame, area, text, theme);
    }
}

fn pane(frame: &mut Frame, which: Pane, area: Rect, state: &State, theme: &Theme) {
    let focused = state.pane == which;
    let title = match which {
        Pane::Approvals => format!(
            " {} Approvals · {} you can approve ",
            which.index() + 1,
            state.approvals.approvable_count()
        ),
        _ => format!(" {} {} ", which.index() + 1, which.title()),
    };
    let block = Block::default()
        .borders(Borders::ALL)
        .title(Line::from(Span::styled(
            if focused {
                format!("▶{title}")
            } else {
                title
            },
            if focused {
                theme.focused_border()
            } else {
                Style::default()
            },
        )))
        .border_style(if focused {
            theme.focused_border()
        } else {
            theme.dim()
        });
    let inner = block.inner(area);
    frame.render_widget(block, area);
    match which {
        Pane::Actions => actions::draw(frame, inner, state, theme),
        Pane::Approvals => approvals::draw(frame, inner, state, theme),
        Pane::Windows => windows::draw(frame, inner, state, theme),
        Pane::Verification => verification::draw(frame, inner, state, theme),
    }
}

/// Cuts text to `width` columns with an ellipsis.
pub fn fit(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        s.to_string()
    } else if width == 0 {
        String::new()
    } else {
        let mut out: String = s.chars().take(width - 1).collect();
        out.push('…');
        out
    }
}

/// The first row to show so that `selected` stays visible in `height` rows.
pub fn scroll_offset(selected: usize, height: usize, len: usize) -> usize {
    if height == 0 || len <= height {
        return 0;
    }
    selected.saturating_sub(height - 1).min(len - height)
}
