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
mod schedule_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod windows_tests;

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
    let screen = layout(state, area);
    chrome::header(frame, screen.header, state, theme);
    if let Some(text) = chrome::banner_text(state) {
        frame.render_widget(Paragraph::new(text).style(theme.banner()), screen.banner);
    }
    chrome::tabs(frame, screen.tabs, state, theme);
    for (which, rect) in &screen.panes {
        pane(frame, *which, *rect, state, theme);
    }
    let (activity, message, footer) = (screen.activity, screen.message, screen.footer);
    chrome::activity(frame, activity, state, theme);
    match &state.modal {
        Some(Modal::Prompt(p)) if matches!(p.purpose, Purpose::Filter | Purpose::Command) => {
            chrome::prompt_line(frame, message, state, p, theme)
        }
        _ => chrome::message(frame, message, state, theme),
    }
    chrome::footer(frame, footer, state, theme);
    modal::draw(frame, area, state, theme);
    if let Some(text) = &state.popup {
        modal::error(frame, area, text, theme);
    }
}

/// Where each part of the screen is: for drawing, and for the mouse, which must find what a
/// click hit by the same arithmetic.
pub struct Screen {
    pub header: Rect,
    pub banner: Rect,
    pub tabs: Rect,
    /// The panes on screen (one, or four side by side) and their outer rectangles.
    pub panes: Vec<(Pane, Rect)>,
    pub activity: Rect,
    pub message: Rect,
    pub footer: Rect,
}

pub fn layout(state: &State, area: Rect) -> Screen {
    let wide = area.width >= WIDE_WIDTH && area.height >= WIDE_HEIGHT;
    // The reducer decides redraws by the same rule.
    let banner = chrome::banner_text(state).is_some();
    let activity_h = if wide { 8 } else { 4 };
    let [header, banner, tabs, body, activity, message, footer] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(u16::from(banner)),
        Constraint::Length(1),
        Constraint::Min(6),
        Constraint::Length(activity_h),
        Constraint::Length(1),
        Constraint::Length(1),
    ])
    .areas(area);
    let panes = if wide {
        let [top, bottom] =
            Layout::vertical([Constraint::Percentage(55), Constraint::Percentage(45)]).areas(body);
        let [tl, tr] =
            Layout::horizontal([Constraint::Percentage(45), Constraint::Percentage(55)]).areas(top);
        let [bl, br] = Layout::horizontal([Constraint::Percentage(55), Constraint::Percentage(45)])
            .areas(bottom);
        vec![
            (Pane::Actions, tl),
            (Pane::Approvals, tr),
            (Pane::Windows, bl),
            (Pane::Verification, br),
        ]
    } else {
        vec![(state.pane, body)]
    };
    Screen {
        header,
        banner,
        tabs,
        panes,
        activity,
        message,
        footer,
    }
}

/// The item on row `y` of a list drawn in `list` from item `offset`, `per` rows an item.
fn row_in(list: Rect, y: u16, offset: usize, per: usize, len: usize) -> Option<usize> {
    if y < list.y || y >= list.y + list.height {
        return None;
    }
    let i = offset + usize::from(y - list.y) / per.max(1);
    (i < len).then_some(i)
}

/// What a click at (x, y) hits: a tab, or a row of a pane's list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hit {
    Tab(Pane),
    Pane(Pane),
    Row(Pane, usize),
}

pub fn hit(state: &State, x: u16, y: u16) -> Option<Hit> {
    let area = Rect::new(0, 0, state.size.0, state.size.1);
    if area.width < MIN_WIDTH || area.height < MIN_HEIGHT {
        return None;
    }
    let screen = layout(state, area);
    if y == screen.tabs.y {
        let mut left = screen.tabs.x;
        for (p, text) in chrome::tab_texts(state) {
            let w = text.chars().count() as u16;
            if x >= left && x < left + w {
                return Some(Hit::Tab(p));
            }
            left += w + 1;
        }
        return None;
    }
    let inside = |r: &Rect| x >= r.x && x < r.x + r.width && y >= r.y && y < r.y + r.height;
    let (which, rect) = screen.panes.iter().find(|(_, r)| inside(r))?;
    let inner = Block::default().borders(Borders::ALL).inner(*rect);
    let row = match which {
        Pane::Actions => actions::row_at(state, inner, y),
        Pane::Approvals => approvals::row_at(state, inner, y),
        Pane::Verification => verification::row_at(state, inner, y),
        Pane::Windows => None,
    };
    Some(row.map_or(Hit::Pane(*which), |i| Hit::Row(*which, i)))
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
