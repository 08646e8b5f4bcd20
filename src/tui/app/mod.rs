//! The dashboard's state and its one reducer: `update(&mut State, Msg) -> Vec<Effect>`.
//!
//! Nothing here touches the terminal or the network: keys and server results come in as
//! messages, requests go out as effects, so every flow is testable with plain values. Each pane
//! owns its state, its keys and its answers in a file of its own; this one keeps what they
//! share, routes messages and keys to them, and counts the requests in flight.

mod actions;
mod activity;
mod approvals;
mod cancel;
mod cmdline;
mod conflicts;
mod incidents;
mod list;
mod modal;
mod mouse;
mod read_only;
mod verification;
mod windows;

pub use actions::ActionsPane;
pub use activity::ActivityPane;
pub use approvals::{ApprovalsPane, Stance};
pub use cmdline::{COMMANDS, completions, placeholder};
pub use incidents::Incidents;
pub use list::{Motion, SelectList};
pub use modal::{Confirmed, Modal, Prompt, Purpose, Scrolled};
pub use verification::VerificationPane;
pub use windows::{
    Row as WindowsRow, UNDO_SECS, Undo, WindowsPane, scheduled_in_week,
    selected_row as selected_windows_row,
};

use crate::domain::api::{
    ApproveRequest, Calendar, CancelRequest, CatalogEntry, ChangeRequest, DenyRequest, Event,
    FreezeRequest, Me, OutcomeRequest, PauseRequest, Preview, RollbackRequest, WindowStatus,
    WithdrawRequest,
};
use crate::domain::change::Change;
use crate::domain::verification::Verification;
use crate::domain::{Incident, Level, Operator};
use crate::tui::keymap::{Command, Keymap, Scope};
use chrono::{DateTime, Datelike, Utc};
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers, MouseEvent};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pane {
    Actions,
    Approvals,
    Windows,
    Verification,
}

impl Pane {
    pub const ALL: [Pane; 4] = [
        Pane::Actions,
        Pane::Approvals,
        Pane::Windows,
        Pane::Verification,
    ];

    pub fn index(self) -> usize {
        Pane::ALL.iter().position(|p| *p == self).unwrap_or(0)
    }

    pub fn title(self) -> &'static str {
        match self {
            Pane::Actions => "Actions",
            Pane::Approvals => "Approvals",
            Pane::Windows => "Windows",
            Pane::Verification => "Verification",
        }
    }

    pub fn scope(self) -> Scope {
        match self {
            Pane::Actions => Scope::Actions,
            Pane::Approvals => Scope::Approvals,
            Pane::Windows => Scope::Windows,
            Pane::Verification => Scope::Verification,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Connection {
    Connecting,
    Live,
    Reconnecting(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    Info,
    Success,
    Error,
}

/// Messages: keys, ticks and what the server said.
#[derive(Debug, Clone)]
pub enum Msg {
    Key(KeyEvent),
    Mouse(MouseEvent),
    Resize(u16, u16),
    /// Once a second; `now` is the server's clock.
    Tick(DateTime<Utc>),
    Me(Result<Me, String>),
    Actions(Result<Vec<CatalogEntry>, String>),
    Changes(Result<Vec<Change>, String>),
    WindowStatus(Result<WindowStatus, String>),
    Calendar(Result<Calendar, String>),
    Verifications(Result<Vec<Verification>, String>),
    Incidents(Result<Vec<Incident>, String>),
    /// The periodic refresh of live samples.
    VerificationsPolled(Result<Vec<Verification>, String>),
    VerificationDecided(Result<Verification, String>),
    RolledBack(Result<Change, String>),
    Preview(u64, Result<Preview, String>),
    Submitted(Result<Change, String>),
    /// An approval, a denial, a withdrawal or a cancellation went through (or not).
    ChangeDecided(Result<Change, String>),
    /// A freeze, pause or resume went through (or not); the text says which.
    GovernanceDone(Result<String, String>),
    StreamUp,
    StreamDown(String),
    ServerEvent(Box<Event>),
    /// SIGTERM or SIGHUP.
    Terminate,
}

impl Msg {
    /// The answer to a request that [`Effect::counts`]: it ends one spinner turn.
    pub fn is_response(&self) -> bool {
        matches!(
            self,
            Msg::Me(_)
                | Msg::Actions(_)
                | Msg::Changes(_)
                | Msg::WindowStatus(_)
                | Msg::Calendar(_)
                | Msg::Verifications(_)
                | Msg::Incidents(_)
                | Msg::VerificationDecided(_)
                | Msg::RolledBack(_)
                | Msg::Submitted(_)
                | Msg::ChangeDecided(_)
                | Msg::GovernanceDone(_)
        )
    }
}

/// Requests for the runtime to carry out; results come back as messages.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    LoadMe,
    LoadActions,
    LoadChanges,
    LoadWindowStatus,
    LoadCalendar {
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    },
    LoadVerifications,
    LoadIncidents,
    PollVerifications,
    Preview(u64, ChangeRequest),
    VerificationOutcome(i64, OutcomeRequest),
    Rollback(i64, RollbackRequest),
    Create(ChangeRequest),
    Approve(i64, ApproveRequest),
    Deny(i64, DenyRequest),
    Withdraw(i64, WithdrawRequest),
    /// Cancel change #id, which waits for its time.
    Cancel(i64, CancelRequest),
    AddFreeze(FreezeRequest),
    RemoveFreeze(i64),
    Pause(PauseRequest),
    Resume,
    /// Put text on the clipboard of the terminal (OSC 52, so over SSH too).
    Copy(String),
}

impl Effect {
    /// Whether the spinner turns while this request is out. Not for the background refresh of
    /// live samples, nor for the form's preview, which shows its own "asking…" line.
    pub fn counts(&self) -> bool {
        !matches!(
            self,
            Effect::PollVerifications | Effect::Preview(..) | Effect::Copy(_)
        )
    }
}

/// How many messages the message log keeps.
pub const LOG_KEEP: usize = 50;

/// How often the verification list is refreshed while a verification is sampled.
const POLL_SECS: i64 = 5;

/// At this size and above, the four panes sit side by side.
pub const WIDE_WIDTH: u16 = 160;
pub const WIDE_HEIGHT: u16 = 40;

pub struct State {
    pub server: String,
    pub me: Option<Me>,
    pub connection: Connection,
    pub pane: Pane,
    pub size: (u16, u16),
    pub now: DateTime<Utc>,
    pub actions: ActionsPane,
    pub approvals: ApprovalsPane,
    pub windows: WindowsPane,
    pub verification: VerificationPane,
    pub activity: ActivityPane,
    pub incidents: Incidents,
    pub modal: Option<Modal>,
    pub message: Option<(Tone, String)>,
    /// The last messages, oldest first: the message log (`m`).
    pub log: std::collections::VecDeque<(DateTime<Utc>, Tone, String)>,
    /// An error too long for the message line, shown whole on top of everything until a key.
    pub popup: Option<String>,
    /// Requests out whose answer has not come back: the spinner turns while this is above 0.
    pub in_flight: usize,
    pub quit: bool,
    /// Something on screen changed since the last draw.
    pub dirty: bool,
    pub warnings: Vec<String>,
    pub keymap: Keymap,
    /// A verification degraded or reached its deadline while another pane was shown.
    pub alert: Option<String>,
    /// `--read-only` or `read_only = true`: no key that acts (see [`State::is_read_only`]).
    pub read_only: bool,
}

impl State {
    pub fn new(server: &str, now: DateTime<Utc>) -> State {
        State {
            server: server.to_string(),
            me: None,
            connection: Connection::Connecting,
            pane: Pane::Approvals,
            size: (80, 24),
            now,
            actions: ActionsPane::default(),
            approvals: ApprovalsPane::default(),
            windows: WindowsPane::default(),
            verification: VerificationPane::default(),
            activity: ActivityPane::default(),
            incidents: Incidents::default(),
            modal: None,
            message: None,
            log: Default::default(),
            popup: None,
            in_flight: 0,
            quit: false,
            dirty: true,
            warnings: Vec::new(),
            keymap: Keymap::default(),
            alert: None,
            read_only: false,
        }
    }

    /// The loads that fill every pane, at start: the runtime sends them before any message.
    pub fn initial_effects(&mut self) -> Vec<Effect> {
        let effects = self.loads();
        self.track(&effects);
        effects
    }

    /// The loads that fill every pane: at start, after a reconnect, and on `R`.
    fn loads(&self) -> Vec<Effect> {
        vec![
            Effect::LoadMe,
            Effect::LoadActions,
            Effect::LoadChanges,
            Effect::LoadWindowStatus,
            self.windows.load_calendar(self.now),
            Effect::LoadVerifications,
            Effect::LoadIncidents,
        ]
    }

    /// The one place requests are counted.
    fn track(&mut self, effects: &[Effect]) {
        self.in_flight += effects.iter().filter(|e| e.counts()).count();
    }

    fn operator(&self) -> Option<Operator> {
        self.me.as_ref().map(|m| Operator {
            name: m.name.clone(),
            level: m.level,
        })
    }

    /// Verifications still counting down.
    pub fn active_verifications(&self) -> impl Iterator<Item = &Verification> {
        self.verification.active(self.now)
    }

    /// Whether the four panes are on screen side by side.
    pub fn wide(&self) -> bool {
        self.size.0 >= WIDE_WIDTH && self.size.1 >= WIDE_HEIGHT
    }

    pub fn level(&self) -> Option<Level> {
        self.me.as_ref().map(|m| m.level)
    }

    /// Whether keys that act are refused here: asked for (`--read-only`, `read_only = true`,
    /// an L3 on a wall screen), or the operator is an observer, whom the server refuses anyway
    /// (learnt from `/me`).
    pub fn is_read_only(&self) -> bool {
        self.read_only || self.level().is_some_and(Level::is_observer)
    }

    /// Puts a message on the message line and in the log; an error longer than the line also
    /// opens in a popup that shows all of it.
    fn say(&mut self, tone: Tone, text: impl Into<String>) {
        let text = text.into();
        if self.log.len() == LOG_KEEP {
            self.log.pop_front();
        }
        self.log.push_back((self.now, tone, text.clone()));
        let room = usize::from(self.size.0).saturating_sub(4);
        if tone == Tone::Error && text.chars().count() > room {
            self.popup = Some(text.clone());
        }
        self.message = Some((tone, text));
    }
}

/// The reducer: the message changes the state, and every request it starts is counted here.
pub fn update(state: &mut State, msg: Msg) -> Vec<Effect> {
    if msg.is_response() {
        state.in_flight = state.in_flight.saturating_sub(1);
    }
    let effects = dispatch(state, msg);
    state.track(&effects);
    effects
}

fn dispatch(state: &mut State, msg: Msg) -> Vec<Effect> {
    state.dirty = true;
    match msg {
        Msg::Key(key) => return key_pressed(state, key),
        Msg::Mouse(ev) => return mouse::event(state, ev),
        Msg::Resize(w, h) => state.size = (w, h),
        Msg::Tick(now) => return tick(state, now),
        Msg::Me(r) => loaded(state, r, |s, me| {
            s.me = Some(me);
            let operator = s.operator();
            s.approvals.set_operator(operator);
        }),
        Msg::Actions(r) => loaded(state, r, |s, a| s.actions.list.set_items(a)),
        Msg::Changes(r) => loaded(state, r, |s, list| s.approvals.reload(list)),
        Msg::WindowStatus(r) => loaded(state, r, |s, w| s.windows.window = Some(w)),
        Msg::Calendar(r) => loaded(state, r, |s, c| s.windows.set_calendar(c)),
        Msg::Verifications(r) => loaded(state, r, |s, v| s.verification.set(v)),
        Msg::Incidents(r) => loaded(state, r, |s, v| s.incidents.set(v)),
        Msg::VerificationsPolled(r) => {
            // A background refresh: no spinner, and a failure waits for the next one.
            if let Ok(v) = r {
                state.verification.set(v);
            }
        }
        Msg::VerificationDecided(r) => return verification::decided(state, r),
        Msg::RolledBack(r) => verification::rolled_back(state, r),
        Msg::Preview(generation, r) => return actions::preview_arrived(state, generation, r),
        Msg::Submitted(r) => actions::submitted(state, r),
        Msg::ChangeDecided(r) => return approvals::decided(state, r),
        Msg::GovernanceDone(r) => return windows::governance_done(state, r),
        Msg::StreamUp => {
            let was_down = matches!(state.connection, Connection::Reconnecting(_));
            state.connection = Connection::Live;
            if was_down {
                state.say(Tone::Info, "reconnected: caught up on missed events");
            }
        }
        Msg::StreamDown(why) => state.connection = Connection::Reconnecting(why),
        Msg::ServerEvent(e) => return server_event(state, *e),
        Msg::Terminate => state.quit = true,
    }
    Vec::new()
}

fn tick(state: &mut State, now: DateTime<Utc>) -> Vec<Effect> {
    let before = state.now;
    state.now = now;
    // Redraw only if something on screen shows seconds, or a minute turned.
    let countdown_shown = state.wide() || state.pane == Pane::Verification;
    let counting = (countdown_shown && state.active_verifications().next().is_some())
        || state.verification.deadline_passed(before, now);
    state.dirty = counting || before.timestamp() / 60 != now.timestamp() / 60;
    // A scheduled change under a minute from its time counts down in seconds (Windows pane).
    if (state.wide() || state.pane == Pane::Windows) && windows::counting_down(state) {
        state.dirty = true;
    }
    // The footer counts the undo down each second, and drops it when it runs out.
    if let Some(u) = &state.windows.undo {
        if u.left(now).is_none() {
            state.windows.undo = None;
        }
        state.dirty = true;
    }
    let mut effects = Vec::new();
    if state.windows.boundary_passed(before, now) {
        effects.push(Effect::LoadWindowStatus);
    }
    // Live samples: refresh the list every few seconds while something is watched.
    if state.verification.sampling()
        && before.timestamp() / POLL_SECS != now.timestamp() / POLL_SECS
    {
        effects.push(Effect::PollVerifications);
    }
    if before.date_naive().iso_week() != now.date_naive().iso_week() {
        effects.push(state.windows.load_calendar(now));
    }
    effects
}

fn loaded<T>(state: &mut State, r: Result<T, String>, apply: impl FnOnce(&mut State, T)) {
    match r {
        Ok(v) => apply(state, v),
        Err(e) => state.say(Tone::Error, e),
    }
}

fn server_event(state: &mut State, e: Event) -> Vec<Effect> {
    let mut effects = Vec::new();
    if e.kind.starts_with("change.") {
        if let Ok(c) = serde_json::from_value::<Change>(e.data.clone()) {
            state.approvals.upsert(c);
        }
    } else if e.kind.starts_with("verification.") {
        if let Ok(v) = serde_json::from_value::<Verification>(e.data.clone()) {
            // Someone looking at another pane still hears about trouble.
            if matches!(
                e.kind.as_str(),
                "verification.degraded" | "verification.deadline"
            ) && !(state.pane == Pane::Verification || state.wide())
            {
                state.alert = Some(e.summary.clone());
            }
            state.verification.upsert(v);
        }
    } else if e.kind.starts_with("incident.") {
        if let Ok(i) = serde_json::from_value::<Incident>(e.data.clone()) {
            state.incidents.upsert(i);
        }
    } else if e.kind.starts_with("freeze.") || e.kind.starts_with("pause.") {
        effects = state.windows.reload(state.now);
    }
    state.activity.push(e);
    effects
}

fn key_pressed(state: &mut State, key: KeyEvent) -> Vec<Effect> {
    if key.code == KeyCode::Char('c') && key.modifiers == KeyModifiers::CONTROL {
        state.quit = true;
        return Vec::new();
    }
    // Esc and a key typed at once reach us as that key with Alt (the terminal cannot tell
    // them apart), and nothing here is bound to Alt: take it as the two keys it was. An
    // upper-case key keeps its Shift (Esc then C is Alt+Shift+C).
    if key.modifiers.contains(KeyModifiers::ALT) && matches!(key.code, KeyCode::Char(_)) {
        let mut effects = key_pressed(state, KeyEvent::new(KeyCode::Esc, KeyModifiers::NONE));
        effects.extend(key_pressed(
            state,
            KeyEvent::new(key.code, key.modifiers.difference(KeyModifiers::ALT)),
        ));
        return effects;
    }
    // The error popup takes the first key, and closes; what was under it stays as it was.
    if state.popup.take().is_some() {
        return Vec::new();
    }
    if let Some(open) = state.modal.take() {
        return modal::key(state, open, key);
    }
    state.message = None;
    // Esc with nothing open clears a filter in force.
    if key.code == KeyCode::Esc
        && state.pane == Pane::Approvals
        && !state.approvals.filter().is_empty()
    {
        state.approvals.clear_filter();
        state.say(Tone::Info, "filter cleared");
        return Vec::new();
    }
    let Some(cmd) = state.keymap.lookup(state.pane.scope(), &key) else {
        state.dirty = false;
        return Vec::new();
    };
    command(state, cmd)
}

/// Whether the operator may use `cmd` here and now, and if not, why: the footer offers only
/// the keys that pass, and a key that does not says why at once, before any prompt opens. The
/// server decides in the end; this asks the same rules first.
pub fn available(state: &State, cmd: Command) -> Result<(), String> {
    read_only::check(state, cmd)?;
    match cmd {
        Command::Approve | Command::Deny | Command::Withdraw => approvals::check(state, cmd),
        Command::AddFreeze
        | Command::RemoveFreeze
        | Command::Pause
        | Command::Resume
        | Command::Undo => windows::check(state, cmd),
        Command::MarkVerified | Command::Escalate | Command::Rollback => {
            verification::check(state, cmd)
        }
        Command::Cancel => cancel::check(state),
        Command::Copy => copied(state).map(|_| ()),
        Command::Open if state.pane == Pane::Windows => match windows::selected_row(state) {
            Some(WindowsRow::Change(_)) => Ok(()),
            _ => Err("Enter opens a scheduled change: select one under the calendar (j/k)".into()),
        },
        _ => Ok(()),
    }
}

/// Global commands here; each pane's own commands go to the pane that owns them.
fn command(state: &mut State, cmd: Command) -> Vec<Effect> {
    if let Err(why) = available(state, cmd) {
        state.say(Tone::Error, why);
        return Vec::new();
    }
    match cmd {
        Command::Quit | Command::ForceQuit => state.quit = true,
        Command::Help => scroll(state, Scrolled::Help),
        Command::Copy => {
            if let Ok(text) = copied(state) {
                state.say(
                    Tone::Success,
                    format!("copied {text} (OSC 52: the terminal must allow clipboard access)"),
                );
                return vec![Effect::Copy(text)];
            }
        }
        Command::CommandLine => {
            state.modal = Some(Modal::Prompt(Prompt::new(
                Purpose::Command,
                vec![crate::tui::form::Field::new(
                    ":",
                    cmdline::placeholder(state.is_read_only()),
                )],
            )));
        }
        Command::Messages => scroll(state, Scrolled::Messages),
        Command::NextPane => show(state, Pane::ALL[(state.pane.index() + 1) % 4]),
        Command::PrevPane => state.pane = Pane::ALL[(state.pane.index() + 3) % 4],
        Command::GoPane(i) => show(state, Pane::ALL[i as usize % 4]),
        Command::Refresh => return state.loads(),
        Command::Move(motion) => {
            let page = list_page(state);
            match state.pane {
                Pane::Actions => state.actions.list.go(motion, page),
                Pane::Approvals => state.approvals.go(motion, page),
                Pane::Windows => windows::go(state, motion, page),
                Pane::Verification => state.verification.list.go(motion, page),
            }
        }
        Command::Open => match state.pane {
            Pane::Actions => actions::open(state),
            Pane::Approvals => {
                if let Some(id) = state.approvals.selected_change().map(|c| c.id) {
                    scroll(state, Scrolled::Change(id));
                }
            }
            Pane::Verification => {
                if let Some(id) = state.verification.list.selected().map(|v| v.change_id) {
                    scroll(state, Scrolled::Change(id));
                }
            }
            Pane::Windows => {
                if let Some(WindowsRow::Change(id)) = windows::selected_row(state) {
                    scroll(state, Scrolled::Change(id));
                }
            }
        },
        Command::Approve | Command::Deny | Command::Withdraw | Command::Filter => {
            return approvals::command(state, cmd);
        }
        Command::PrevWeek
        | Command::NextWeek
        | Command::AddFreeze
        | Command::RemoveFreeze
        | Command::Pause
        | Command::Resume
        | Command::Undo => return windows::command(state, cmd),
        Command::MarkVerified | Command::Escalate | Command::Rollback => {
            return verification::command(state, cmd);
        }
        Command::Cancel => cancel::command(state),
    }
    Vec::new()
}

/// What `c` copies: the selected change's ticket, or "#id" when the dashboard does not know it.
fn copied(state: &State) -> Result<String, String> {
    let id = match state.pane {
        Pane::Approvals => state.approvals.selected_change().map(|c| c.id),
        Pane::Verification => state.verification.list.selected().map(|v| v.change_id),
        Pane::Actions | Pane::Windows => None,
    };
    let Some(id) = id else {
        return Err(
            "c copies the selected change's ticket: select one in Approvals or Verification".into(),
        );
    };
    Ok(state
        .approvals
        .changes()
        .get(&id)
        .map(|c| c.ticket.clone())
        .unwrap_or_else(|| format!("#{id}")))
}

fn scroll(state: &mut State, what: Scrolled) {
    state.modal = Some(Modal::Scroll { what, offset: 0 });
}

fn show(state: &mut State, pane: Pane) {
    state.pane = pane;
    if pane == Pane::Verification {
        state.alert = None;
    }
}

/// About how many rows a pane's list shows: what PgUp and PgDn move by. The header, tabs,
/// activity, message and footer take about ten rows; wide, the panes share the height.
fn list_page(state: &State) -> usize {
    let body = usize::from(state.size.1).saturating_sub(10);
    if state.wide() { body / 2 } else { body }.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Risk;
    use crate::domain::change::ChangeState;
    use crate::tui::fixtures::{change, code, event, key, now, scene};
    use chrono::Duration;

    #[test]
    fn live_events_update_the_queue_and_reconnect_is_announced() {
        let mut s = scene("bob", Level::L2);
        let new = change(10, "pause-enrolments", Risk::High, "alice", Level::L1, 0);
        update(
            &mut s,
            Msg::ServerEvent(Box::new(event(
                50,
                "change.requested",
                "alice requested",
                serde_json::to_value(&new).unwrap(),
            ))),
        );
        assert!(s.approvals.queue_ids().contains(&10));
        assert_eq!(s.approvals.approvable_count(), 3);
        assert_eq!(s.activity.events[0].seq, 50);
        update(&mut s, Msg::StreamDown("connection refused".into()));
        assert!(matches!(s.connection, Connection::Reconnecting(_)));
        update(&mut s, Msg::StreamUp);
        assert_eq!(s.connection, Connection::Live);
        assert!(s.message.as_ref().unwrap().1.contains("reconnected"));
        // A replayed older copy never overwrites a newer one.
        let mut old = new.clone();
        old.state = ChangeState::Denied;
        let mut newer = new.clone();
        newer.state = ChangeState::Executed;
        newer.updated_at = now() + Duration::seconds(5);
        update(
            &mut s,
            Msg::ServerEvent(Box::new(event(
                51,
                "change.executed",
                "",
                serde_json::to_value(&newer).unwrap(),
            ))),
        );
        update(
            &mut s,
            Msg::ServerEvent(Box::new(event(
                49,
                "change.denied",
                "",
                serde_json::to_value(&old).unwrap(),
            ))),
        );
        assert_eq!(s.approvals.changes()[&10].state, ChangeState::Executed);
    }

    #[test]
    fn c_copies_the_selected_changes_ticket() {
        let mut s = scene("bob", Level::L2);
        update(&mut s, key('2'));
        assert_eq!(
            update(&mut s, key('c')),
            vec![Effect::Copy("CHG-4702".into())]
        );
        assert_eq!(s.in_flight, 0, "a copy is not a request");
        update(&mut s, key('4'));
        assert_eq!(
            update(&mut s, key('c')),
            vec![Effect::Copy("CHG-4705".into())]
        );
        update(&mut s, key('1'));
        assert!(update(&mut s, key('c')).is_empty());
        assert!(s.message.as_ref().unwrap().1.contains("select one"));
    }

    /// A freeze that begins, a window that closes: the status is asked for again at that tick,
    /// so line 1 says so at once.
    #[test]
    fn a_window_or_freeze_boundary_reloads_the_status() {
        let mut s = scene("bob", Level::L2);
        // The scene's Standard window closes at 16:00; its freeze begins Friday 00:00.
        let closes: DateTime<Utc> = "2026-11-24T16:00:00Z".parse().unwrap();
        update(&mut s, Msg::Tick(closes - Duration::seconds(1)));
        let effects = update(&mut s, Msg::Tick(closes));
        assert!(effects.contains(&Effect::LoadWindowStatus), "{effects:?}");
        let effects = update(&mut s, Msg::Tick(closes + Duration::seconds(1)));
        assert!(!effects.contains(&Effect::LoadWindowStatus), "{effects:?}");
        let friday: DateTime<Utc> = "2026-11-27T00:00:00Z".parse().unwrap();
        update(&mut s, Msg::Tick(friday - Duration::seconds(1)));
        assert!(update(&mut s, Msg::Tick(friday)).contains(&Effect::LoadWindowStatus));
    }

    #[test]
    fn ticks_redraw_only_while_something_counts_down() {
        let mut s = scene("bob", Level::L2);
        update(&mut s, key('4'));
        update(&mut s, Msg::Tick(now() + Duration::seconds(1)));
        assert!(s.dirty, "a verification is counting down on screen");
        update(&mut s, key('2'));
        update(&mut s, Msg::Tick(now() + Duration::seconds(2)));
        assert!(!s.dirty, "the countdown is on another pane");
        update(&mut s, Msg::Resize(160, 48));
        update(&mut s, Msg::Tick(now() + Duration::seconds(3)));
        assert!(s.dirty, "wide: every pane is on screen");
        s.verification.list.set_items(Vec::new());
        update(&mut s, Msg::Tick(now() + Duration::seconds(2)));
        assert!(!s.dirty, "nothing on screen changed");
        update(&mut s, Msg::Tick(now() + Duration::seconds(61)));
        assert!(s.dirty, "the minute turned: the window countdown changed");
    }

    #[test]
    fn esc_in_a_form_with_input_asks_before_dropping_it() {
        let mut s = scene("alice", Level::L1);
        update(&mut s, key('1'));
        update(&mut s, code(KeyCode::Enter));
        crate::tui::fixtures::typed(&mut s, "CHG-1");
        update(&mut s, code(KeyCode::Esc));
        assert!(matches!(
            s.modal,
            Some(Modal::Confirm(Confirmed::Discard(_)))
        ));
        update(&mut s, key('n'));
        assert!(matches!(s.modal, Some(Modal::Form(_))));
        update(&mut s, code(KeyCode::Esc));
        update(&mut s, key('y'));
        assert!(s.modal.is_none());
        assert!(!s.quit);
        update(&mut s, key('q'));
        assert!(s.quit);
    }

    #[test]
    fn every_request_turns_the_spinner_until_its_answer_and_polls_do_not() {
        let mut s = scene("carol", Level::L3);
        assert_eq!(s.in_flight, 0, "the scene's loads have all answered");
        update(&mut s, key('3'));
        update(&mut s, key('x'));
        let out = update(&mut s, key('y'));
        assert_eq!(out, vec![Effect::RemoveFreeze(1)]);
        assert_eq!(s.in_flight, 1);
        let reloads = update(&mut s, Msg::GovernanceDone(Ok("freeze removed".into())));
        assert_eq!(reloads.len(), 2);
        assert_eq!(s.in_flight, 2, "the answer ends one; its two reloads start");
        update(&mut s, Msg::WindowStatus(Err("timeout".into())));
        update(&mut s, Msg::Calendar(Err("timeout".into())));
        assert_eq!(s.in_flight, 0);
        // Watching samples: the periodic poll shows no spinner.
        let polls = update(&mut s, Msg::Tick(now() + Duration::seconds(5)));
        assert_eq!(polls, vec![Effect::PollVerifications]);
        assert_eq!(s.in_flight, 0);
        update(&mut s, Msg::VerificationsPolled(Ok(Vec::new())));
        assert_eq!(s.in_flight, 0);
    }
}
