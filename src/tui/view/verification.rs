//! Pane 4: changes in their post-change verification: countdown and gauge, health, an
//! error-rate sparkline against its threshold, and the state.

use crate::domain::verification::Verification;
use crate::domain::verification::VerificationState;
use crate::domain::window::human_duration;
use crate::tui::app::State;
use crate::tui::theme::Theme;
use crate::tui::view::{fit, scroll_offset};
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

const SPARK: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

pub fn draw(frame: &mut Frame, area: Rect, state: &State, theme: &Theme) {
    let area = incidents(frame, area, state, theme);
    let list = &state.verification.list;
    if list.is_empty() {
        frame.render_widget(
            Paragraph::new(
                "no change is under verification: executed changes are watched here after they run",
            )
            .style(theme.dim()),
            area,
        );
        return;
    }
    let w = area.width as usize;
    // Two lines a verification, and one more under the selected one for where its error rate
    // comes from (too long to share a line with the readings at 80 columns).
    let rows = (area.height.saturating_sub(1) as usize / 2).max(1);
    let offset = scroll_offset(list.selected_index(), rows, list.len());
    let mut lines = Vec::new();
    for (i, v) in list.items().iter().enumerate().skip(offset).take(rows) {
        let selected = i == list.selected_index();
        let (first, second) = rows_for(v, state, theme, w, selected);
        lines.push(if selected {
            first.style(theme.selected())
        } else {
            first
        });
        lines.push(second);
        if selected && let Some(source) = rate_source(v) {
            lines.push(Line::from(Span::styled(
                format!("    error rate from {source}"),
                theme.dim(),
            )));
        }
    }
    frame.render_widget(Paragraph::new(lines), area);
}

/// How many incidents the Incidents section lists at most; the open ones come first.
const INCIDENT_ROWS: usize = 3;

/// The Incidents section at the top of the pane: declared incidents with their state, open
/// ones first. Returns the area left for the verifications.
fn incidents(frame: &mut Frame, area: Rect, state: &State, theme: &Theme) -> Rect {
    let all = state.incidents.all();
    if incidents_height(state, area) == 0 {
        return area;
    }
    let mut shown: Vec<_> = all.iter().filter(|i| i.is_open()).collect();
    shown.extend(all.iter().filter(|i| !i.is_open()));
    shown.truncate(INCIDENT_ROWS);
    let w = area.width as usize;
    let mut lines = vec![Line::styled(
        format!(
            "Incidents · {} open of {}",
            state.incidents.open().count(),
            all.len()
        ),
        theme.dim(),
    )];
    for i in shown {
        let (word, style) = match i.closed_at {
            None => ("OPEN  ", theme.bad()),
            Some(_) => ("closed", theme.dim()),
        };
        let text = format!(
            " {} {} · IC {} · {} ago · {}",
            i.ticket,
            i.priority,
            i.commander,
            human_duration(state.now - i.declared_at),
            i.title
        );
        lines.push(Line::from(vec![
            Span::styled(format!("  {word}"), style),
            Span::raw(fit(&text, w.saturating_sub(8))),
        ]));
    }
    lines.push(Line::styled("Verifications", theme.dim()));
    let h = (lines.len() as u16).min(area.height);
    frame.render_widget(Paragraph::new(lines), Rect { height: h, ..area });
    Rect {
        y: area.y + h,
        height: area.height - h,
        ..area
    }
}

/// Rows the Incidents section takes: a heading, up to [`INCIDENT_ROWS`] incidents and the
/// Verifications heading; none on a short pane or with no incident.
fn incidents_height(state: &State, area: Rect) -> u16 {
    let n = state.incidents.all().len();
    if n == 0 || area.height < 8 {
        return 0;
    }
    (n.min(INCIDENT_ROWS) as u16 + 2).min(area.height)
}

/// The verification on row `y` of the pane's inner `area`, for a click.
pub fn row_at(state: &State, area: Rect, y: u16) -> Option<usize> {
    let skip = incidents_height(state, area);
    let list_area = Rect {
        y: area.y + skip,
        height: area.height - skip,
        ..area
    };
    let list = &state.verification.list;
    let rows = (list_area.height as usize / 2).max(1);
    let offset = scroll_offset(list.selected_index(), rows, list.len());
    super::row_in(list_area, y, offset, 2, list.len())
}

/// What the countdown column says: the time left while the window runs, and once it is over,
/// what ended it and when, never a bare "00:00".
fn countdown(v: &Verification, state: &State) -> String {
    let by = v
        .decided_by
        .as_ref()
        .map(|b| format!(" by {b}"))
        .unwrap_or_default();
    match v.state {
        VerificationState::Watching | VerificationState::Degraded => {
            let left = (v.deadline - state.now).num_seconds().max(0);
            format!("{:02}:{:02} left", left / 60, left % 60)
        }
        VerificationState::AwaitingOutcome => {
            format!("deadline {} passed", v.deadline.format("%H:%M"))
        }
        VerificationState::Escalated => {
            let at = v
                .incident
                .as_deref()
                .and_then(|t| state.incidents.find(t))
                .map(|i| format!(" {}", i.declared_at.format("%H:%M")))
                .unwrap_or_default();
            format!("escalated{at}{by}")
        }
        VerificationState::Verified => format!("verified{by}"),
    }
}

fn state_word(v: &Verification) -> &'static str {
    match v.state {
        VerificationState::Watching => "watching",
        VerificationState::Degraded => "DEGRADED",
        VerificationState::AwaitingOutcome => "→ v verified / e escalate",
        VerificationState::Verified | VerificationState::Escalated => "",
    }
}

fn rows_for<'a>(
    v: &'a Verification,
    state: &State,
    theme: &Theme,
    w: usize,
    selected: bool,
) -> (Line<'a>, Line<'a>) {
    let total = (v.deadline - v.started_at).num_seconds().max(1) as f64;
    let left = if v.state.is_active() {
        (v.deadline - state.now).num_seconds().max(0)
    } else {
        0
    };
    let state_style = match v.state {
        VerificationState::Degraded | VerificationState::Escalated => theme.bad(),
        VerificationState::AwaitingOutcome => theme.warn(),
        VerificationState::Verified => theme.good(),
        VerificationState::Watching => Style::default(),
    };
    let what = format!("#{} {} {}", v.change_id, v.action, v.target);
    let what_w = (w / 3).clamp(12, 36);
    let word = state_word(v);
    let clock = countdown(v, state);
    let mut first = vec![
        Span::raw(if selected { "▶ " } else { "  " }),
        Span::raw(format!("{:<what_w$} ", fit(&what, what_w))),
        Span::styled(format!("{clock} "), state_style),
    ];
    // The gauge only while there is time left to show.
    if v.state.is_active() {
        let gauge_w = w
            .saturating_sub(2 + what_w + 1 + clock.chars().count() + 1 + 2 + word.len() + 1)
            .clamp(4, 40);
        let filled = ((left as f64 / total) * gauge_w as f64).round() as usize;
        let filled = filled.min(gauge_w);
        first.push(Span::styled(
            format!("[{}{}] ", "█".repeat(filled), "░".repeat(gauge_w - filled)),
            state_style,
        ));
    }
    first.push(Span::styled(word, state_style));
    let first = Line::from(first);
    let mut detail = vec![Span::raw("    ")];
    // Once the window is over, what it showed matters more than the last sample.
    if !v.state.is_active() {
        match &v.summary {
            Some(s) => detail.push(Span::styled(s.text.clone(), theme.dim())),
            None => detail.push(Span::styled("no summary", theme.dim())),
        }
        if let Some(i) = &v.incident {
            detail.push(Span::styled(format!(" · incident {i}"), theme.bad()));
        }
        if let Some(by) = &v.decided_by {
            detail.push(Span::styled(format!(" · by {by}"), theme.dim()));
        }
        return (first, Line::from(detail));
    }
    if !v.health_checked && !v.error_rate_checked {
        detail.push(Span::styled(
            "no checks configured: countdown only",
            theme.dim(),
        ));
    }
    let sample = v.last_sample.as_ref();
    if v.health_checked {
        match sample.and_then(|s| s.health.as_ref().map(|h| (s.at, h))) {
            Some((at, h)) => detail.push(Span::styled(
                format!(
                    "health {} {} ({}) ",
                    if h.ok { "✓ passing" } else { "✗ FAILING" },
                    at.format("%H:%M:%S"),
                    h.detail
                ),
                if h.ok { theme.good() } else { theme.bad() },
            )),
            None => detail.push(Span::styled("health: first check pending ", theme.dim())),
        }
    }
    if v.error_rate_checked {
        let max = v.max_error_rate.unwrap_or(0.0);
        let spark = sparkline(&v.recent_error_rates, max);
        let (text, style) = match sample.and_then(|s| s.error_rate.as_ref()) {
            Some(r) => (
                format!(
                    " {} max {max} {}",
                    r.value
                        .map(|x| format!("{x:.4}"))
                        .unwrap_or_else(|| "–".into()),
                    if r.ok { "✓" } else { "✗ ABOVE" }
                ),
                if r.ok { theme.good() } else { theme.bad() },
            ),
            None => (format!(" max {max}"), theme.dim()),
        };
        detail.push(Span::raw("errors "));
        detail.push(Span::styled(spark, style));
        detail.push(Span::styled(text, style));
    }
    (first, Line::from(detail))
}

/// "Prometheus" or "CloudWatch AWS/ApplicationELB …", as the latest sample says, while the
/// verification is sampled.
fn rate_source(v: &Verification) -> Option<&str> {
    if !v.state.is_active() {
        return None;
    }
    v.last_sample
        .as_ref()?
        .error_rate
        .as_ref()?
        .source
        .as_deref()
}

/// Readings as bars scaled so the threshold sits at three quarters of the height; a reading
/// with no data is a space.
fn sparkline(values: &[Option<f64>], max: f64) -> String {
    let top = values
        .iter()
        .flatten()
        .fold(max * 4.0 / 3.0, |m, v| m.max(*v))
        .max(f64::MIN_POSITIVE);
    values
        .iter()
        .map(|v| match v {
            None => ' ',
            Some(x) => SPARK[((x / top) * 7.0).round().clamp(0.0, 7.0) as usize],
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::sparkline;

    #[test]
    fn the_threshold_sits_at_three_quarters() {
        assert_eq!(
            sparkline(&[Some(0.0), Some(0.01), None, Some(0.02)], 0.01),
            "▁▅ █"
        );
    }
}
