//! Header, banner, tabs, activity strip, message line and footer.

use crate::domain::window::human_duration;
use crate::tui::app::{Connection, Modal, Pane, Prompt, Purpose, State, Tone};
use crate::tui::theme::Theme;
use crate::tui::view::fit;
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph};

/// The window status line, counted down from the server's answer with the local clock.
pub fn window_summary(state: &State) -> String {
    let Some(w) = &state.windows.window else {
        return "window: loading…".into();
    };
    let now = state.now;
    match (&w.open, &w.next) {
        (Some(o), _) if o.closes_at > now => format!(
            "{} window open, closes in {}",
            o.kind.label().to_uppercase(),
            human_duration(o.closes_at - now)
        ),
        (_, Some(n)) if n.opens_at > now => format!(
            "outside windows, {} opens {} (in {})",
            n.kind.label(),
            n.opens_at.format("%a %H:%M"),
            human_duration(n.opens_at - now)
        ),
        _ => w.summary.clone(),
    }
}

/// How bad the state on line 1 is: it picks the line's style.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Normal,
    Warn,
    Bad,
}

/// The one state line: the most severe state in force (an open incident, then a pause, then a
/// freeze, then the windows), so line 1 says at once what may run, at every width.
pub fn state_line(state: &State) -> (String, Severity) {
    let now = state.now;
    let w = state.windows.window.as_ref();
    let pause = w.and_then(|w| w.pause.as_ref());
    let freeze = w
        .and_then(|w| w.freeze.as_ref())
        .filter(|f| f.starts_at <= now && f.ends_at > now);
    if let Some(i) = state.incidents.open().next() {
        let more = state.incidents.open().count() - 1;
        return (
            format!(
                "INCIDENT {} {} · IC {} · {} ago{}{}",
                i.ticket,
                i.priority,
                i.commander,
                human_duration(now - i.declared_at),
                if pause.is_some() { " · PAUSED" } else { "" },
                if more > 0 {
                    format!(" · +{more} more")
                } else {
                    String::new()
                }
            ),
            Severity::Bad,
        );
    }
    if let Some(p) = pause {
        return (
            format!(
                "CHANGES PAUSED by {} · {} ago",
                p.paused_by,
                human_duration(now - p.paused_at)
            ),
            Severity::Bad,
        );
    }
    if let Some(f) = freeze {
        return (
            format!(
                "FREEZE '{}' until {}",
                f.name,
                f.ends_at.format("%b %-d %H:%M UTC")
            ),
            Severity::Warn,
        );
    }
    (window_summary(state), Severity::Normal)
}

/// Line 2: what line 1 has no room for, most severe first: a verification alert, then the
/// pause's reason, then a freeze line 1 does not already name.
pub fn banner_text(state: &State) -> Option<String> {
    let mut parts = Vec::new();
    if let Some(a) = &state.alert {
        parts.push(format!(" ⚠ {a} (4 shows it) "));
    }
    let w = state.windows.window.as_ref();
    let incident = state.incidents.open().next().is_some();
    if let Some(p) = w.and_then(|w| w.pause.as_ref()) {
        parts.push(format!(
            " CHANGES PAUSED by {} at {}: {} ",
            p.paused_by,
            p.paused_at.format("%H:%M"),
            p.reason
        ));
    }
    let freeze = w
        .and_then(|w| w.freeze.as_ref())
        .filter(|f| f.starts_at <= state.now && f.ends_at > state.now);
    if let Some(f) = freeze
        && (incident || w.and_then(|w| w.pause.as_ref()).is_some())
    {
        parts.push(format!(
            " FREEZE '{}' until {}: only low-risk actions and P1 incident changes run ",
            f.name,
            f.ends_at.format("%b %-d %H:%M UTC")
        ));
    }
    (!parts.is_empty()).then(|| parts.join("│"))
}

pub fn header(frame: &mut Frame, area: Rect, state: &State, theme: &Theme) {
    let who = match &state.me {
        Some(me) => format!("{} {}", me.name, me.level),
        None => "…".into(),
    };
    let (mark, word, conn_style) = match &state.connection {
        Connection::Connecting => ("○", "connecting", theme.warn()),
        Connection::Live => ("●", "live", theme.good()),
        Connection::Reconnecting(_) => ("◌", "reconnecting", theme.bad()),
    };
    let server = state.server.trim_start_matches("http://").to_string();
    let (window, severity) = state_line(state);
    // First on the line and never dropped for room: whoever glances at the screen knows keys
    // will not act. The word says it; the colour only repeats it.
    let read_only = if state.is_read_only() {
        " READ-ONLY "
    } else {
        ""
    };
    // The state line comes first: on a narrow screen the connection keeps only its mark.
    let full = read_only.len() + who.chars().count() + word.len() + window.chars().count() + 9;
    let conn = if full <= area.width as usize {
        format!("{mark} {word}")
    } else {
        mark.to_string()
    };
    let window_style = match severity {
        Severity::Normal => Style::default(),
        Severity::Warn => theme.warn().add_modifier(Modifier::BOLD),
        Severity::Bad => theme.bad().add_modifier(Modifier::BOLD),
    };
    // Who I am, the connection and the window matter most; the name and server go first when
    // the line is short.
    let essential =
        read_only.len() + who.chars().count() + conn.chars().count() + window.chars().count() + 8;
    let room = area.width as usize;
    let mut spans = Vec::new();
    if !read_only.is_empty() {
        spans.push(Span::styled(
            read_only,
            theme
                .warn()
                .add_modifier(Modifier::BOLD | Modifier::REVERSED),
        ));
    }
    if essential + server.chars().count() + 17 <= room {
        spans.push(Span::styled(
            " CommandBridge │",
            Style::default().add_modifier(Modifier::BOLD),
        ));
    }
    if essential + server.chars().count() + 3 <= room {
        spans.push(Span::raw(format!(" {server} │")));
    }
    spans.extend([
        Span::styled(
            format!(" {who}"),
            Style::default().add_modifier(Modifier::BOLD),
        ),
        Span::styled(" │ ", theme.dim()),
        Span::styled(conn, conn_style),
        Span::styled(" │ ", theme.dim()),
        Span::styled(window, window_style),
    ]);
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

/// Each tab's text, in order: drawn one space apart, and found again by a click.
pub fn tab_texts(state: &State) -> Vec<(Pane, String)> {
    Pane::ALL
        .into_iter()
        .map(|p| {
            let count = match p {
                Pane::Approvals => format!(" ({})", state.approvals.approvable_count()),
                Pane::Verification => {
                    let n = state.active_verifications().count();
                    match (n, state.verification.awaiting_outcome()) {
                        (0, 0) => String::new(),
                        (n, 0) => format!(" ({n})"),
                        (n, w) => format!(" ({n} · {w} to decide)"),
                    }
                }
                _ => String::new(),
            };
            (p, format!(" {} {}{count} ", p.index() + 1, p.title()))
        })
        .collect()
}

pub fn tabs(frame: &mut Frame, area: Rect, state: &State, theme: &Theme) {
    let mut spans = Vec::new();
    for (p, text) in tab_texts(state) {
        let style = if p == state.pane {
            theme.selected()
        } else {
            Style::default()
        };
        spans.push(Span::styled(text, style));
        spans.push(Span::raw(" "));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

pub fn activity(frame: &mut Frame, area: Rect, state: &State, theme: &Theme) {
    let block = Block::default()
        .borders(Borders::TOP)
        .title(" Activity ")
        .border_style(theme.dim());
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let width = inner.width as usize;
    let lines: Vec<Line> = if state.activity.events.is_empty() {
        vec![Line::styled(
            "no activity yet: events appear here as they happen",
            theme.dim(),
        )]
    } else {
        state
            .activity
            .events
            .iter()
            .take(inner.height as usize)
            .map(|e| {
                Line::from(vec![
                    Span::styled(e.at.format("%H:%M:%S ").to_string(), theme.dim()),
                    Span::raw(fit(&e.summary, width.saturating_sub(9))),
                ])
            })
            .collect()
    };
    frame.render_widget(Paragraph::new(lines), inner);
}

const SPINNER: [&str; 4] = ["⠋", "⠙", "⠹", "⠸"];

pub fn message(frame: &mut Frame, area: Rect, state: &State, theme: &Theme) {
    let mut spans = Vec::new();
    if state.in_flight > 0 {
        let i = (state.now.timestamp() as usize) % SPINNER.len();
        spans.push(Span::raw(format!(" {} ", SPINNER[i])));
    }
    if let Some((tone, text)) = &state.message {
        let (mark, style) = match tone {
            Tone::Info => ("", Style::default()),
            Tone::Success => ("✓ ", theme.good()),
            Tone::Error => ("✗ ", theme.bad()),
        };
        spans.push(Span::styled(format!(" {mark}{text}"), style));
    } else if !state.warnings.is_empty() {
        spans.push(Span::styled(
            format!(" ! config: {} (defaults used)", state.warnings.join("; ")),
            theme.warn(),
        ));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

/// The one-line prompts (`/` filter, `:` command line) sit where the message line is, always
/// in the same place, with the cursor in them; the command line lists what it could complete.
pub fn prompt_line(frame: &mut Frame, area: Rect, state: &State, p: &Prompt, theme: &Theme) {
    let lead = if p.purpose == Purpose::Command {
        ":"
    } else {
        "/"
    };
    let value = p.fields.value(0);
    let width = usize::from(area.width).saturating_sub(2).max(1);
    let input = &p.fields.fields[0].input;
    let scroll = input.visual_scroll(width);
    let shown: String = value.chars().skip(scroll).take(width).collect();
    let mut spans = vec![
        Span::styled(lead, theme.selected()),
        Span::raw(shown.clone()),
    ];
    if p.purpose == Purpose::Command {
        let found = crate::tui::app::completions(value, state.is_read_only());
        let word = value.split_whitespace().next().unwrap_or("");
        // A command typed whole says what it does and what it wants (":cancel 42").
        let whole = crate::tui::app::COMMANDS
            .iter()
            .find(|(name, _)| found.as_slice() == [*name] && *name == word);
        let hint = if value.trim().is_empty() {
            p.fields.fields[0].hint.to_string()
        } else if let Some((_, what)) = whole {
            what.to_string()
        } else if found.is_empty() {
            "no such command".to_string()
        } else {
            found.join(" ")
        };
        spans.push(Span::styled(format!("   {hint}"), theme.dim()));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
    let x = area.x + 1 + (input.visual_cursor().saturating_sub(scroll)) as u16;
    frame.set_cursor_position(ratatui::layout::Position::new(
        x.min(area.x + area.width.saturating_sub(1)),
        area.y,
    ));
}

pub fn footer(frame: &mut Frame, area: Rect, state: &State, theme: &Theme) {
    let hints: Vec<(&str, &str)> = match &state.modal {
        _ if state.popup.is_some() => vec![("any key", "close"), ("m", "message log")],
        Some(Modal::Form(form)) => {
            // C-n is offered only while the preview names a window to schedule into (or one
            // is chosen); S-Tab makes room for it at 80 columns.
            let schedule = if form.schedulable().is_some() {
                Some(("C-n", "schedule"))
            } else {
                form.run_at.as_ref().map(|_| ("C-n", "run now"))
            };
            let mut hints = vec![("Tab", "next field")];
            if schedule.is_none() {
                hints.push(("S-Tab", "previous"));
            }
            hints.push(("Enter", "next / submit"));
            hints.extend(schedule);
            hints.extend([("Esc", "cancel"), ("C-c", "quit")]);
            hints
        }
        Some(Modal::Confirm(_)) => vec![("y", "yes"), ("any other key", "no")],
        Some(Modal::Prompt(p)) => match p.purpose {
            Purpose::DenyReason(_) | Purpose::PauseReason => {
                vec![("Enter", "confirm"), ("Esc", "cancel")]
            }
            Purpose::Freeze => vec![
                ("Tab", "next field"),
                ("Enter", "next / confirm"),
                ("Esc", "cancel"),
            ],
            Purpose::Filter => vec![("Enter", "keep filter"), ("Esc", "clear filter")],
            // "Esc cancel" under "Cancel change #6" would read as the opposite of what it does.
            Purpose::CancelReason(_) => vec![("Enter", "cancel the change"), ("Esc", "keep it")],
            Purpose::Command => vec![("Tab", "complete"), ("Enter", "run"), ("Esc", "cancel")],
        },
        Some(Modal::Outcome(_)) => vec![("any key", "close")],
        Some(Modal::Scroll { .. }) => vec![
            ("j/k", "scroll"),
            ("PgUp/PgDn", "page"),
            ("g/G", "top/end"),
            ("Esc", "close"),
        ],
        None => state.keymap.offered(state.pane.scope(), |cmd| {
            crate::tui::app::available(state, cmd).is_ok()
        }),
    };
    let undo = state
        .windows
        .undo
        .as_ref()
        .and_then(|u| u.left(state.now))
        .filter(|_| state.modal.is_none())
        .map(|left| format!("undo ({left} s)"));
    let mut spans = Vec::new();
    if let Some(text) = &undo {
        spans.push(Span::styled("u", theme.selected()));
        spans.push(Span::styled(format!(" {text}  "), theme.warn()));
    }
    let hint = |(key, what): (&str, &str)| {
        [
            Span::styled(key.to_string(), theme.selected()),
            Span::raw(format!(" {what}  ")),
        ]
    };
    let width = |h: &[Span]| h.iter().map(Span::width).sum::<usize>();
    // `?` lists every key, so its hint is the last to go when they do not all fit.
    let help_hint = state
        .keymap
        .bindings
        .iter()
        .find(|b| b.command == crate::tui::keymap::Command::Help)
        .and_then(|b| b.hint);
    let help_at = hints.iter().position(|(_, what)| Some(*what) == help_hint);
    let mut hints: Vec<[Span; 2]> = hints.into_iter().map(hint).collect();
    // The two spaces after the last hint may fall off the edge.
    let room = (usize::from(area.width) + 2).saturating_sub(width(&spans));
    if hints.iter().map(|h| width(h)).sum::<usize>() > room {
        // Too many: whole hints only (one cut at the edge, "? help  q", reads as a key that
        // does nothing), and help stays.
        let help = help_at.map(|i| hints.remove(i));
        let mut left = room.saturating_sub(help.as_ref().map_or(0, |h| width(h)));
        let fit = hints
            .iter()
            .take_while(|h| {
                let w = width(*h);
                let fits = w <= left;
                left = left.saturating_sub(w);
                fits
            })
            .count();
        hints.truncate(fit);
        hints.extend(help);
    }
    spans.extend(hints.into_iter().flatten());
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}
