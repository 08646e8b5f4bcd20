//! Pane 3: the deployment windows, the week's calendar, freezes and the pause.

use super::{Confirmed, Effect, Modal, Motion, Prompt, Purpose, SelectList, State, Tone};
use crate::domain::Level;
use crate::domain::api::{Calendar, FreezeRequest, PauseRequest, WindowStatus};
use crate::domain::change::{Change, ChangeState};
use crate::domain::window::Governance;
use crate::tui::form::{Field, Fields};
use crate::tui::keymap::Command;
use chrono::{DateTime, Datelike, Duration, Timelike, Utc};

#[derive(Debug, Default)]
pub struct WindowsPane {
    pub window: Option<WindowStatus>,
    pub calendar: Option<Calendar>,
    /// Weeks from the current one shown in the calendar.
    pub week_offset: i64,
    /// Freezes in the calendar that can be removed from here (announced over the API).
    pub freezes: Vec<(i64, FreezeRequest)>,
    /// The selected row of the list under the grid (see [`rows`]); kept inside it when read.
    cursor: usize,
    /// Removing a freeze or resuming changes can be undone for a moment after it went through.
    pub undo: Option<Undo>,
    /// The undo of a removal or resume on its way to the server, armed when it is answered.
    armed: Option<(String, Effect)>,
}

/// How long "u undo" is offered after removing a freeze or resuming changes.
pub const UNDO_SECS: i64 = 10;

/// An offer to undo a governance action: what it undoes, until when, and the request that does.
#[derive(Debug, Clone, PartialEq)]
pub struct Undo {
    pub what: String,
    pub until: DateTime<Utc>,
    effect: Effect,
}

impl Undo {
    /// Seconds left to undo, if any.
    pub fn left(&self, now: DateTime<Utc>) -> Option<i64> {
        let left = (self.until - now).num_seconds();
        (left > 0).then_some(left)
    }
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

    pub fn pause(&self) -> Option<&crate::domain::window::Pause> {
        self.window.as_ref().and_then(|w| w.pause.as_ref())
    }

    /// After anything that may have changed a freeze or the pause.
    pub(super) fn reload(&self, now: DateTime<Utc>) -> Vec<Effect> {
        vec![Effect::LoadWindowStatus, self.load_calendar(now)]
    }

    pub(super) fn set_calendar(&mut self, c: Calendar) {
        let removable = c
            .blocks
            .iter()
            .filter_map(|b| {
                b.freeze_id.map(|id| {
                    (
                        id,
                        FreezeRequest {
                            name: b.name.clone(),
                            starts_at: b.start,
                            ends_at: b.end,
                        },
                    )
                })
            })
            .collect();
        self.calendar = Some(c);
        self.freezes = removable;
    }

    pub(super) fn select(&mut self, i: usize) {
        self.cursor = i;
    }
}

/// A row of the list under the grid that can be selected: a freeze announced over the API
/// (`x` removes it) or a scheduled change of the week shown (`C` cancels it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Row {
    Freeze(i64),
    Change(i64),
}

/// The selectable rows, in the order they are listed: the freezes, then the scheduled changes
/// by time. Made from the calendar and the changes each time, so an event that adds or ends a
/// change never leaves a stale copy behind.
pub fn rows(state: &State) -> Vec<Row> {
    let freezes = state.windows.freezes.iter().map(|(id, _)| Row::Freeze(*id));
    let changes = scheduled_in_week(state)
        .into_iter()
        .map(|c| Row::Change(c.id));
    freezes.chain(changes).collect()
}

/// The selected row, if the list has any.
pub fn selected_row(state: &State) -> Option<Row> {
    let rows = rows(state);
    let last = rows.len().checked_sub(1)?;
    rows.get(state.windows.cursor.min(last)).copied()
}

/// j/k and the other motions move over [`rows`], as they move over every pane's list.
pub(super) fn go(state: &mut State, motion: Motion, page: usize) {
    let mut list = SelectList::default();
    list.set_items(rows(state));
    list.select(state.windows.cursor);
    list.go(motion, page);
    state.windows.cursor = list.selected_index();
}

/// The scheduled changes whose time falls in the week shown, by time: approved ones and those
/// still waiting for approval (they run at their time once approved). The dashboard's changes
/// are the Approvals pane's (kept current by the event stream; the runtime loads every
/// scheduled one at start), so the grid and the queue never disagree.
pub fn scheduled_in_week(state: &State) -> Vec<&Change> {
    let (from, to) = state.windows.week_range(state.now);
    let mut out: Vec<&Change> = state
        .approvals
        .changes()
        .values()
        .filter(|c| {
            matches!(
                c.state,
                ChangeState::Scheduled | ChangeState::PendingApproval
            ) && c.run_at.is_some_and(|t| from <= t && t < to)
        })
        .collect();
    out.sort_by_key(|c| (c.run_at, c.id));
    out
}

/// Whether a scheduled change shown in the Windows pane is less than a minute from its time:
/// its countdown then reads in seconds, so each tick changes the screen. Further off, it reads
/// in minutes and the minute's turn redraws it (DESIGN.md: a tick redraws only what counts).
pub(super) fn counting_down(state: &State) -> bool {
    scheduled_in_week(state).iter().any(|c| {
        c.run_at
            .is_some_and(|t| t > state.now && t - state.now <= Duration::seconds(60))
    })
}

/// Whether the operator may take a governance action now, and if not, why (the domain's rule
/// for their level, then whether there is anything to act on).
pub(super) fn check(state: &State, cmd: Command) -> Result<(), String> {
    let level = state.level();
    let w = &state.windows;
    match cmd {
        Command::AddFreeze => may(Governance::AnnounceFreeze, level),
        Command::RemoveFreeze => {
            may(Governance::RemoveFreeze, level)?;
            match selected_row(state) {
                Some(Row::Freeze(_)) => Ok(()),
                _ if w.freezes.is_empty() => Err(
                    "no freeze announced over the API in this week (configured freezes \
                     are changed in the server's configuration)"
                        .into(),
                ),
                _ => Err("x removes the selected freeze: select one (k)".into()),
            }
        }
        Command::Pause => {
            may(Governance::Pause, level)?;
            match w.pause() {
                Some(p) => Err(format!(
                    "changes are already paused, by {} since {}",
                    p.paused_by,
                    p.paused_at.format("%H:%M")
                )),
                None => Ok(()),
            }
        }
        Command::Resume => {
            may(Governance::Resume, level)?;
            match w.pause() {
                Some(_) => Ok(()),
                None => Err("changes are not paused".into()),
            }
        }
        Command::Undo => match &w.undo {
            Some(u) if u.left(state.now).is_some() => Ok(()),
            _ => Err(format!(
                "nothing to undo: removing a freeze or resuming can be undone for {UNDO_SECS} s"
            )),
        },
        _ => Ok(()),
    }
}

pub(super) fn command(state: &mut State, cmd: Command) -> Vec<Effect> {
    match cmd {
        Command::PrevWeek | Command::NextWeek => {
            state.windows.week_offset += if cmd == Command::NextWeek { 1 } else { -1 };
            return vec![state.windows.load_calendar(state.now)];
        }
        Command::AddFreeze => {
            let (from, _) = state.windows.week_range(state.now);
            let mut start = Field::new("Starts", "UTC, YYYY-MM-DD HH:MM, not in the past");
            start.input = tui_input::Input::new(
                default_start(from, state.now)
                    .format("%Y-%m-%d %H:%M")
                    .to_string(),
            );
            state.modal = Some(Modal::Prompt(Prompt::new(
                Purpose::Freeze,
                vec![
                    Field::new("Name", "e.g. Black Friday freeze"),
                    start,
                    Field::new("Ends", "UTC, YYYY-MM-DD HH:MM"),
                ],
            )));
        }
        Command::RemoveFreeze => {
            if let Some(Row::Freeze(id)) = selected_row(state) {
                state.modal = Some(Modal::Confirm(Confirmed::RemoveFreeze(id)));
            }
        }
        Command::Pause => {
            state.modal = Some(Modal::Prompt(Prompt::new(
                Purpose::PauseReason,
                vec![Field::new("Reason", "why all changes are paused")],
            )));
        }
        Command::Resume => state.modal = Some(Modal::Confirm(Confirmed::Resume)),
        Command::Undo => {
            if let Some(u) = state.windows.undo.take() {
                state.say(Tone::Info, format!("undoing the {}…", u.what));
                return vec![u.effect];
            }
        }
        _ => {}
    }
    Vec::new()
}

/// The freeze form's start: the next full hour, or the first day of a later week shown, never
/// a moment already past (a freeze that starts in the past is in force the moment it is sent).
fn default_start(week: DateTime<Utc>, now: DateTime<Utc>) -> DateTime<Utc> {
    let next_hour = now
        .date_naive()
        .and_hms_opt(now.hour(), 0, 0)
        .unwrap_or_default()
        .and_utc()
        + Duration::hours(1);
    week.max(next_hour)
}

/// Confirmed: remove freeze #id, with an undo that announces it again.
pub(super) fn remove_freeze(state: &mut State, id: i64) -> Vec<Effect> {
    let again = state
        .windows
        .freezes
        .iter()
        .find(|(f, _)| *f == id)
        .map(|(_, req)| req.clone());
    state.windows.armed = again.map(|req| {
        (
            format!("removal of freeze '{}'", req.name),
            Effect::AddFreeze(req),
        )
    });
    vec![Effect::RemoveFreeze(id)]
}

/// Confirmed: resume changes, with an undo that pauses them again for the same reason.
pub(super) fn resume(state: &mut State) -> Vec<Effect> {
    state.windows.armed = state.windows.pause().map(|p| {
        (
            "resume".to_string(),
            Effect::Pause(PauseRequest {
                reason: p.reason.clone(),
            }),
        )
    });
    vec![Effect::Resume]
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

pub(super) fn add_freeze(fields: &Fields, now: DateTime<Utc>) -> Result<Vec<Effect>, String> {
    let name = fields.required(0, "the freeze needs a name")?;
    let time = |i: usize, what: &str| {
        chrono::NaiveDateTime::parse_from_str(fields.value(i).trim(), "%Y-%m-%d %H:%M")
            .map(|t| t.and_utc())
            .map_err(|_| format!("{what} must be YYYY-MM-DD HH:MM (UTC)"))
    };
    let (starts_at, ends_at) = (time(1, "Starts")?, time(2, "Ends")?);
    // A minute's grace: the form's own default start may have passed while it was filled in.
    if starts_at < now - Duration::minutes(1) {
        return Err(format!(
            "Starts {} is in the past: the freeze would be in force at once; start it at {} or later",
            starts_at.format("%Y-%m-%d %H:%M"),
            now.format("%Y-%m-%d %H:%M")
        ));
    }
    if ends_at <= starts_at {
        return Err("Ends must be after Starts".into());
    }
    Ok(vec![Effect::AddFreeze(FreezeRequest {
        name,
        starts_at,
        ends_at,
    })])
}

/// A freeze, pause or resume went through (or not): say so, offer the undo of a removal or a
/// resume, and reload what it changed.
pub(super) fn governance_done(state: &mut State, r: Result<String, String>) -> Vec<Effect> {
    let armed = state.windows.armed.take();
    match r {
        Ok(text) => match armed {
            Some((what, effect)) => {
                state.say(
                    Tone::Success,
                    format!("{text} · u undoes it for {UNDO_SECS} s"),
                );
                state.windows.undo = Some(Undo {
                    what,
                    until: state.now + Duration::seconds(UNDO_SECS),
                    effect,
                });
            }
            None => state.say(Tone::Success, text),
        },
        Err(e) => state.say(Tone::Error, e),
    }
    state.windows.reload(state.now)
}

#[cfg(test)]
mod tests {
    use super::super::{Msg, update};
    use super::*;
    use crate::tui::fixtures::{code, key, now, scene, scheduled, typed};
    use crossterm::event::KeyCode;

    #[test]
    fn the_week_shows_the_scheduled_changes_whose_time_falls_in_it() {
        let mut s = scene("bob", Level::L2);
        let tonight = scheduled(20, 11 * 60 + 30, true);
        let waiting = scheduled(21, 36 * 60, false);
        let next_week = scheduled(22, 7 * 24 * 60, true);
        let mut cancelled = scheduled(23, 60, true);
        cancelled.state = ChangeState::Cancelled;
        update(
            &mut s,
            Msg::Changes(Ok(vec![
                waiting.clone(),
                tonight.clone(),
                next_week.clone(),
                cancelled,
            ])),
        );
        update(&mut s, key('3'));
        let ids = |s: &State| {
            scheduled_in_week(s)
                .iter()
                .map(|c| c.id)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            ids(&s),
            vec![20, 21],
            "this week's, by time; not the cancelled one"
        );
        // The next week shows the next week's.
        update(&mut s, key(']'));
        assert_eq!(ids(&s), vec![22]);
        update(&mut s, key('['));
        // The event stream keeps it current: one that ran leaves the list.
        let mut ran = tonight;
        ran.state = ChangeState::Executing;
        ran.updated_at = now();
        update(
            &mut s,
            Msg::ServerEvent(Box::new(crate::tui::fixtures::event(
                90,
                "change.started",
                "change #20 started",
                serde_json::to_value(&ran).unwrap(),
            ))),
        );
        assert_eq!(ids(&s), vec![21]);
    }

    /// Enter on a scheduled change opens all of it, to read before cancelling it; on a freeze
    /// it says what Enter opens here.
    #[test]
    fn enter_opens_the_selected_scheduled_change() {
        let mut s = scene("bob", Level::L2);
        update(&mut s, Msg::Changes(Ok(vec![scheduled(20, 60, true)])));
        update(&mut s, key('3'));
        assert!(update(&mut s, code(KeyCode::Enter)).is_empty());
        assert!(s.modal.is_none(), "the freeze is selected");
        let said = &s.message.as_ref().expect("why not").1;
        assert!(said.contains("Enter opens a scheduled change"), "{said}");
        update(&mut s, key('j'));
        update(&mut s, code(KeyCode::Enter));
        assert!(matches!(
            s.modal,
            Some(Modal::Scroll {
                what: super::super::Scrolled::Change(20),
                ..
            })
        ));
        let shown = crate::tui::view::scrolled::lines(&s, &super::super::Scrolled::Change(20));
        assert!(
            shown
                .iter()
                .any(|(_, l)| l.starts_with("Scheduled   Tue 2026-11-24 11:30 UTC (in ")),
            "{shown:?}"
        );
    }

    /// Minutes-long countdowns change on the minute's turn; under a minute the countdown
    /// reads in seconds and each tick redraws, but only while the Windows pane is on screen.
    #[test]
    fn a_scheduled_change_counts_down_in_seconds_only_in_its_last_minute() {
        let mut s = crate::tui::fixtures::scene_with("bob", Level::L2, vec![], vec![]);
        let mut soon = scheduled(30, 0, true);
        soon.run_at = Some(now() + Duration::seconds(45));
        update(&mut s, Msg::Changes(Ok(vec![scheduled(31, 120, true)])));
        update(&mut s, key('3'));
        update(&mut s, Msg::Tick(now() + Duration::seconds(1)));
        assert!(!s.dirty, "2 hours off: the minute's turn redraws it");
        update(&mut s, Msg::Changes(Ok(vec![soon])));
        update(&mut s, Msg::Tick(now() + Duration::seconds(2)));
        assert!(s.dirty, "45 s off: counting down in seconds");
        update(&mut s, key('2'));
        update(&mut s, Msg::Tick(now() + Duration::seconds(3)));
        assert!(!s.dirty, "the countdown is on another pane");
        update(&mut s, key('3'));
        update(&mut s, Msg::Tick(now() + Duration::seconds(50)));
        assert!(!s.dirty, "its time passed: nothing counts any more");
    }

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
        update(&mut s, key('p'));
        typed(&mut s, "checkout degraded");
        assert!(update(&mut s, code(KeyCode::Enter)).is_empty());
        assert!(matches!(s.modal, Some(Modal::Confirm(Confirmed::Pause(_)))));
        assert_eq!(
            update(&mut s, key('y')),
            vec![Effect::Pause(PauseRequest {
                reason: "checkout degraded".into()
            })]
        );
    }

    /// `x` asks first, saying what it removes; the removal can be undone for 10 s, by
    /// announcing the same freeze again.
    #[test]
    fn removing_a_freeze_asks_first_and_can_be_undone_for_ten_seconds() {
        let mut s = scene("carol", Level::L3);
        update(&mut s, key('3'));
        assert!(update(&mut s, key('x')).is_empty(), "x removed at once");
        assert!(matches!(
            s.modal,
            Some(Modal::Confirm(Confirmed::RemoveFreeze(1)))
        ));
        assert!(update(&mut s, key('n')).is_empty());
        assert!(s.message.as_ref().unwrap().1.contains("the freeze stays"));
        update(&mut s, key('x'));
        assert_eq!(update(&mut s, key('y')), vec![Effect::RemoveFreeze(1)]);
        update(&mut s, Msg::GovernanceDone(Ok("freeze removed".into())));
        assert!(s.message.as_ref().unwrap().1.contains("u undoes it"));
        let effects = update(&mut s, key('u'));
        assert!(
            matches!(effects.as_slice(), [Effect::AddFreeze(r)] if r.name == "Black Friday"),
            "{effects:?}"
        );
        // Once, and only within the 10 s.
        assert!(update(&mut s, key('u')).is_empty());
        update(&mut s, key('x'));
        update(&mut s, key('y'));
        update(&mut s, Msg::GovernanceDone(Ok("freeze removed".into())));
        update(&mut s, Msg::Tick(now() + Duration::seconds(1)));
        assert!(s.dirty, "the footer counts the undo down");
        update(&mut s, Msg::Tick(now() + Duration::seconds(UNDO_SECS)));
        assert!(s.windows.undo.is_none());
        assert!(update(&mut s, key('u')).is_empty());
        assert!(s.message.as_ref().unwrap().1.contains("nothing to undo"));
        // A removal the server refused offers no undo.
        update(&mut s, key('x'));
        update(&mut s, key('y'));
        update(&mut s, Msg::GovernanceDone(Err("forbidden".into())));
        assert!(s.windows.undo.is_none());
    }

    #[test]
    fn resume_asks_first_and_its_undo_pauses_again_for_the_same_reason() {
        let mut s = crate::tui::fixtures::escalated_scene("bob", Level::L2);
        update(&mut s, key('3'));
        update(&mut s, key('s'));
        assert!(matches!(s.modal, Some(Modal::Confirm(Confirmed::Resume))));
        assert_eq!(update(&mut s, key('y')), vec![Effect::Resume]);
        update(&mut s, Msg::GovernanceDone(Ok("changes resumed".into())));
        let effects = update(&mut s, key('u'));
        assert!(
            matches!(effects.as_slice(), [Effect::Pause(p)] if p.reason.contains("escalation of change #5")),
            "{effects:?}"
        );
        // Not paused: nothing to resume, nothing asked.
        let mut calm = scene("bob", Level::L2);
        update(&mut calm, key('3'));
        assert!(update(&mut calm, key('s')).is_empty());
        assert!(calm.modal.is_none());
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
        assert!(update(&mut s, code(KeyCode::Enter)).is_empty());
        assert!(matches!(
            s.modal,
            Some(Modal::Confirm(Confirmed::Freeze(_)))
        ));
        let effects = update(&mut s, key('y'));
        assert!(
            matches!(effects.as_slice(), [Effect::AddFreeze(r)] if r.name == "Launch" && r.starts_at == "2026-11-24T11:00:00Z".parse::<DateTime<Utc>>().unwrap()),
            "{effects:?}"
        );
        assert!(s.modal.is_none());
    }

    /// "Oops Tab Tab … Enter" must not put a freeze in force at once: the default start is the
    /// next full hour, and a start in the past is refused with the earliest one allowed.
    #[test]
    fn the_freeze_form_never_starts_in_the_past() {
        let mut s = scene("carol", Level::L3);
        update(&mut s, key('3'));
        update(&mut s, key('f'));
        let Some(Modal::Prompt(p)) = &s.modal else {
            panic!("no freeze form")
        };
        assert_eq!(p.fields.value(1), "2026-11-24 11:00");
        // A later week starts on its Monday.
        update(&mut s, code(KeyCode::Esc));
        update(&mut s, key(']'));
        update(&mut s, key('f'));
        let Some(Modal::Prompt(p)) = &s.modal else {
            panic!("no freeze form")
        };
        assert_eq!(p.fields.value(1), "2026-11-30 00:00");
        let mut fields = p.fields.clone();
        fields.fields[0].input = tui_input::Input::new("Oops".into());
        fields.fields[1].input = tui_input::Input::new("2026-11-23 00:00".into());
        fields.fields[2].input = tui_input::Input::new("2026-11-27 00:00".into());
        let why = add_freeze(&fields, now()).unwrap_err();
        assert!(
            why.contains("in the past") && why.contains("2026-11-24 10:30 or later"),
            "{why}"
        );
    }
}
