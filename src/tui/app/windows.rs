//! Pane 3: the deployment windows, the week's calendar, freezes and the pause.

use super::{Effect, Modal, Prompt, Purpose, SelectList, State, Tone};
use crate::domain::Level;
use crate::domain::api::{Calendar, FreezeRequest, PauseRequest, WindowStatus};
use crate::domain::window::Governance;
use crate::tui::form::{Field, Fields};
use crate::tui::keymap::Command;
use chrono::{DateTime, Datelike, Duration, Utc};

#[derive(Debug, Default)]
pub struct WindowsPane {
    pub window: Option<WindowStatus>,
    pub calendar: Option<Calendar>,
    /// Weeks from the current one shown in the calendar.
    pub week_offset: i64,
    /// Freezes in the calendar that can be removed from here (announced over the API): id, name.
    pub freezes: SelectList<(i64, String)>,
}

impl WindowsPane {
    pub fn week_range(&self, now: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
        let monday = now.date_naive() - Duration::days(now.weekday().num_days_from_monday() as i64)
            + Duration::weeks(self.week_offset);
        let from = monday.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc();
        (from, from + Duration::days(7))
    }

    pub(super) fn load_calendar(&self, now: DateTime<Utc>) -> Effect {
        let (from, to) = self.week_range(now);
        Effect::LoadCalendar { from, to }
    }

    /// Whether a window opened or closed, or a freeze began or ended, between two ticks: the
    /// status the header shows is then out of date and is asked for again, so line 1 says so at
    /// once instead of at the next event.
    pub(super) fn boundary_passed(&self, before: DateTime<Utc>, now: DateTime<Utc>) -> bool {
        let crossed = |t: DateTime<Utc>| t > before && t <= now;
        let status = self.window.iter().flat_map(|w| {
            w.open
                .iter()
                .map(|o| o.closes_at)
                .chain(w.next.iter().map(|n| n.opens_at))
                .chain(w.freeze.iter().map(|f| f.ends_at))
        });
        let blocks = self
            .calendar
            .iter()
            .flat_map(|c| c.blocks.iter().flat_map(|b| [b.start, b.end]));
        status.chain(blocks).any(crossed)
    }

    /// After anything that may have changed a freeze or the pause.
    pub(super) fn reload(&self, now: DateTime<Utc>) -> Vec<Effect> {
        vec![Effect::LoadWindowStatus, self.load_calendar(now)]
    }

    pub(super) fn set_calendar(&mut self, c: Calendar) {
        let removable = c
            .blocks
            .iter()
            .filter_map(|b| b.freeze_id.map(|id| (id, b.name.clone())))
            .collect();
        self.calendar = Some(c);
        self.freezes.set_items(removable);
    }
}

pub(super) fn command(state: &mut State, cmd: Command) -> Vec<Effect> {
    let level = state.level();
    match cmd {
        Command::PrevWeek | Command::NextWeek => {
            state.windows.week_offset += if cmd == Command::NextWeek { 1 } else { -1 };
            return vec![state.windows.load_calendar(state.now)];
        }
        Command::AddFreeze => match may(Governance::AnnounceFreeze, level) {
            Err(why) => state.say(Tone::Error, why),
            Ok(()) => {
                let (from, _) = state.windows.week_range(state.now);
                let mut start = Field::new("Starts", "UTC, YYYY-MM-DD HH:MM");
                start.input = tui_input::Input::new(from.format("%Y-%m-%d 00:00").to_string());
                state.modal = Some(Modal::Prompt(Prompt::new(
                    Purpose::Freeze,
                    vec![
                        Field::new("Name", "e.g. Black Friday freeze"),
                        start,
                        Field::new("Ends", "UTC, YYYY-MM-DD HH:MM"),
                    ],
                )));
            }
        },
        Command::RemoveFreeze => {
            if let Err(why) = may(Governance::RemoveFreeze, level) {
                state.say(Tone::Error, why);
            } else if let Some((id, _)) = state.windows.freezes.selected() {
                return vec![Effect::RemoveFreeze(*id)];
            } else {
                state.say(Tone::Info, "no freeze announced over the API in this week (configured freezes are changed in the server's configuration)");
            }
        }
        Command::Pause => match may(Governance::Pause, level) {
            Err(why) => state.say(Tone::Error, why),
            Ok(()) => {
                state.modal = Some(Modal::Prompt(Prompt::new(
                    Purpose::PauseReason,
                    vec![Field::new("Reason", "why all changes are paused")],
                )));
            }
        },
        Command::Resume => match may(Governance::Resume, level) {
            Err(why) => state.say(Tone::Error, why),
            Ok(()) => return vec![Effect::Resume],
        },
        _ => {}
    }
    Vec::new()
}

/// The domain's rule for a governance action; before `/me` answers, the level is unknown and
/// counts as the lowest.
fn may(action: Governance, level: Option<Level>) -> Result<(), String> {
    action.allowed(level.unwrap_or(Level::L1))
}

pub(super) fn pause(fields: &Fields) -> Result<Vec<Effect>, String> {
    let reason = fields.required(0, "a reason is required to pause changes")?;
    Ok(vec![Effect::Pause(PauseRequest { reason })])
}

pub(super) fn add_freeze(fields: &Fields) -> Result<Vec<Effect>, String> {
    let name = fields.required(0, "the freeze needs a name")?;
    let time = |i: usize, what: &str| {
        chrono::NaiveDateTime::parse_from_str(fields.value(i).trim(), "%Y-%m-%d %H:%M")
            .map(|t| t.and_utc())
            .map_err(|_| format!("{what} must be YYYY-MM-DD HH:MM (UTC)"))
    };
    Ok(vec![Effect::AddFreeze(FreezeRequest {
        name,
        starts_at: time(1, "Starts")?,
        ends_at: time(2, "Ends")?,
    })])
}

/// A freeze, pause or resume went through (or not): say so and reload what it changed.
pub(super) fn governance_done(state: &mut State, r: Result<String, String>) -> Vec<Effect> {
    match r {
        Ok(text) => state.say(Tone::Success, text),
        Err(e) => state.say(Tone::Error, e),
    }
    state.windows.reload(state.now)
}

#[cfg(test)]
mod tests {
    use super::super::update;
    use super::*;
    use crate::tui::fixtures::{code, key, scene, typed};
    use crossterm::event::KeyCode;

    #[test]
    fn windows_keys_respect_levels() {
        let mut s = scene("alice", Level::L1);
        update(&mut s, key('3'));
        update(&mut s, key('f'));
        assert!(s.modal.is_none());
        assert!(s.message.as_ref().unwrap().1.contains("L3"));
        update(&mut s, key('p'));
        assert!(s.message.as_ref().unwrap().1.contains("L2"));
        let effects = update(&mut s, key(']'));
        assert!(matches!(effects.as_slice(), [Effect::LoadCalendar { .. }]));
        let mut s = scene("carol", Level::L3);
        update(&mut s, key('3'));
        assert_eq!(update(&mut s, key('x')), vec![Effect::RemoveFreeze(1)]);
        update(&mut s, key('p'));
        typed(&mut s, "checkout degraded");
        assert_eq!(
            update(&mut s, code(KeyCode::Enter)),
            vec![Effect::Pause(PauseRequest {
                reason: "checkout degraded".into()
            })]
        );
    }

    #[test]
    fn the_freeze_form_moves_between_fields_and_says_what_is_wrong() {
        let mut s = scene("carol", Level::L3);
        update(&mut s, key('3'));
        update(&mut s, key('f'));
        // Enter on an earlier field moves on; on the last it submits.
        typed(&mut s, "Launch");
        update(&mut s, code(KeyCode::Enter));
        update(&mut s, code(KeyCode::Enter));
        assert!(update(&mut s, code(KeyCode::Enter)).is_empty());
        assert!(s.message.as_ref().unwrap().1.contains("Ends must be"));
        assert!(matches!(&s.modal, Some(Modal::Prompt(p)) if p.purpose == Purpose::Freeze));
        typed(&mut s, "2026-11-27 06:00");
        let effects = update(&mut s, code(KeyCode::Enter));
        assert!(
            matches!(effects.as_slice(), [Effect::AddFreeze(r)] if r.name == "Launch"),
            "{effects:?}"
        );
        assert!(s.modal.is_none());
    }
}
