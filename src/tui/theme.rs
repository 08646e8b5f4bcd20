//! Colours. Every colour repeats something already said in words or symbols, so the mono theme
//! (and `NO_COLOR`) loses nothing.

use crate::domain::Risk;
use crate::domain::change::ChangeState;
use ratatui::style::{Color, Modifier, Style};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Theme {
    pub mono: bool,
}

impl Theme {
    /// The configured theme (`default` or `mono`), mono anyway when `NO_COLOR` is set. An
    /// unknown name falls back to the default with a warning naming it.
    pub fn from_env(configured: Option<&str>) -> (Theme, Option<String>) {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        let (mono, warning) = match configured {
            None | Some("default") => (false, None),
            Some("mono") => (true, None),
            Some(other) => (
                false,
                Some(format!(
                    "theme = '{other}' is not a theme: use default or mono"
                )),
            ),
        };
        (
            Theme {
                mono: mono || no_color,
            },
            warning,
        )
    }

    fn fg(&self, c: Color) -> Style {
        if self.mono {
            Style::default()
        } else {
            Style::default().fg(c)
        }
    }

    pub fn risk(&self, r: Risk) -> Style {
        match r {
            Risk::Low => self.fg(Color::Green),
            Risk::Medium => self.fg(Color::Yellow),
            Risk::High => self.fg(Color::LightRed).add_modifier(Modifier::BOLD),
            Risk::Critical => self
                .fg(Color::Red)
                .add_modifier(Modifier::BOLD | Modifier::REVERSED),
        }
    }

    pub fn state(&self, s: ChangeState) -> Style {
        match s {
            ChangeState::Executed => self.fg(Color::Green),
            ChangeState::Executing | ChangeState::PendingApproval => self.fg(Color::Yellow),
            ChangeState::Scheduled => self.fg(Color::Cyan),
            _ => self.fg(Color::Red),
        }
    }

    pub fn selected(&self) -> Style {
        Style::default().add_modifier(Modifier::REVERSED)
    }

    pub fn focused_border(&self) -> Style {
        self.fg(Color::Cyan).add_modifier(Modifier::BOLD)
    }

    pub fn dim(&self) -> Style {
        if self.mono {
            Style::default()
        } else {
            Style::default().add_modifier(Modifier::DIM)
        }
    }

    pub fn good(&self) -> Style {
        self.fg(Color::Green)
    }

    pub fn warn(&self) -> Style {
        self.fg(Color::Yellow)
    }

    pub fn bad(&self) -> Style {
        self.fg(Color::Red).add_modifier(Modifier::BOLD)
    }

    /// The freeze / pause banner: reversed so it stands out in mono too.
    pub fn banner(&self) -> Style {
        let s = Style::default().add_modifier(Modifier::BOLD | Modifier::REVERSED);
        if self.mono { s } else { s.fg(Color::Red) }
    }

    pub fn standard_block(&self) -> Style {
        self.fg(Color::Green)
    }

    pub fn off_peak_block(&self) -> Style {
        self.fg(Color::Blue)
    }

    pub fn freeze_block(&self) -> Style {
        self.fg(Color::Red)
    }
}
