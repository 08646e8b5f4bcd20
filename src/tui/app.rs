//! The dashboard's state and its one reducer: `update(&mut State, Msg) -> Vec<Effect>`.
//!
//! Nothing here touches the terminal or the network: keys and server results come in as
//! messages, requests go out as effects, so every flow is testable with plain values.

use crate::domain::api::{
    ApproveRequest, Calendar, CatalogEntry, ChangeRequest, DenyRequest, Event, FreezeRequest, Me,
    OutcomeKind, OutcomeRequest, PauseRequest, Preview, RollbackRequest, WindowStatus,
};
use crate::domain::approval;
use crate::domain::approval::Requirement;
use crate::domain::change::{Change, ChangeState};
use crate::domain::verification::Verification;
use crate::domain::verification::VerificationState;
use crate::domain::window::Governance;
use crate::domain::{Level, Operator, Risk};
use crate::tui::form::{ChangeForm, Field, Fields};
use crate::tui::keymap::{Command, Keymap, Scope};
use chrono::{DateTime, Datelike, Duration, Utc};
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use std::collections::{BTreeMap, VecDeque};

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

/// A modal on top of the panes; it gets the keys first.
#[derive(Debug, Clone)]
pub enum Modal {
    Help,
    Form(Box<ChangeForm>),
    /// What became of a submitted change.
    Outcome(Box<Change>),
    ConfirmApprove(i64),
    DenyReason(i64, Fields),
    Filter(Fields),
    FreezeForm(Fields),
    PauseReason(Fields),
    ConfirmQuit,
    ConfirmDiscard(Box<ChangeForm>),
    /// Escalate verification #id: declares an incident and pauses changes.
    ConfirmEscalate(i64),
    /// Roll back change #id.
    ConfirmRollback(i64),
}

/// Messages: keys, ticks and what the server said.
#[derive(Debug, Clone)]
pub enum Msg {
    Key(KeyEvent),
    Resize(u16, u16),
    /// Once a second; `now` is the server's clock.
    Tick(DateTime<Utc>),
    Me(Result<Me, String>),
    Actions(Result<Vec<CatalogEntry>, String>),
    Changes(Result<Vec<Change>, String>),
    WindowStatus(Result<WindowStatus, String>),
    Calendar(Result<Calendar, String>),
    Verifications(Result<Vec<Verification>, String>),
    /// The periodic refresh of live samples.
    VerificationsPolled(Result<Vec<Verification>, String>),
    VerificationDecided(Result<Verification, String>),
    RolledBack(Result<Change, String>),
    Preview(u64, Result<Preview, String>),
    Submitted(Result<Change, String>),
    Decided(Result<Change, String>),
    /// A freeze, pause or resume went through (or not).
    Done(Result<String, String>),
    StreamUp,
    StreamDown(String),
    ServerEvent(Box<Event>),
    /// SIGTERM or SIGHUP.
    Terminate,
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
    PollVerifications,
    Preview(u64, ChangeRequest),
    Outcome(i64, OutcomeRequest),
    Rollback(i64, RollbackRequest),
    Create(ChangeRequest),
    Approve(i64, ApproveRequest),
    Deny(i64, DenyRequest),
    AddFreeze(FreezeRequest),
    RemoveFreeze(i64),
    Pause(PauseRequest),
    Resume,
}

const ACTIVITY_KEEP: usize = 200;

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
    pub actions: Vec<CatalogEntry>,
    pub action_sel: usize,
    /// Every change the dashboard knows, by id.
    pub changes: BTreeMap<i64, Change>,
    pub approval_sel: usize,
    pub filter: String,
    /// The approval queue's order (ids), kept sorted as changes arrive rather than per frame.
    queue_ids: Vec<i64>,
    approvable: usize,
    pub window: Option<WindowStatus>,
    pub calendar: Option<Calendar>,
    /// Weeks from the current one shown in the calendar.
    pub week_offset: i64,
    pub freeze_sel: usize,
    pub verifications: Vec<Verification>,
    pub verification_sel: usize,
    pub activity: VecDeque<Event>,
    pub modal: Option<Modal>,
    pub message: Option<(Tone, String)>,
    pub in_flight: usize,
    pub quit: bool,
    /// Something on screen changed since the last draw.
    pub dirty: bool,
    pub warnings: Vec<String>,
    pub keymap: Keymap,
    /// A verification degraded or reached its deadline while another pane was shown.
    pub alert: Option<String>,
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
            actions: Vec::new(),
            action_sel: 0,
            changes: BTreeMap::new(),
            approval_sel: 0,
            filter: String::new(),
            queue_ids: Vec::new(),
            approvable: 0,
            window: None,
            calendar: None,
            week_offset: 0,
            freeze_sel: 0,
            verifications: Vec::new(),
            verification_sel: 0,
            activity: VecDeque::new(),
            modal: None,
            message: None,
            in_flight: 0,
            quit: false,
            dirty: true,
            warnings: Vec::new(),
            keymap: Keymap::default(),
            alert: None,
        }
    }

    /// The loads that fill every pane: at start, after a reconnect, and on `R`.
    pub fn initial_effects(&mut self) -> Vec<Effect> {
        let (from, to) = self.week_range();
        let effects = vec![
            Effect::LoadMe,
            Effect::LoadActions,
            Effect::LoadChanges,
            Effect::LoadWindowStatus,
            Effect::LoadCalendar { from, to },
            Effect::LoadVerifications,
        ];
        self.in_flight += effects.len();
        effects
    }

    fn operator(&self) -> Option<Operator> {
        self.me.as_ref().map(|m| Operator {
            name: m.name.clone(),
            level: m.level,
        })
    }

    /// Pending changes, riskiest first and oldest first within a risk, after the filter.
    pub fn queue(&self) -> impl ExactSizeIterator<Item = &Change> + '_ {
        self.queue_ids.iter().map(|id| &self.changes[id])
    }

    pub fn queue_len(&self) -> usize {
        self.queue_ids.len()
    }

    /// Rows `offset..offset + rows` of the queue with their positions, without walking (and
    /// looking up) the rows above: `queue().skip(n)` costs n map lookups.
    pub fn queue_rows(
        &self,
        offset: usize,
        rows: usize,
    ) -> impl Iterator<Item = (usize, &Change)> + '_ {
        let end = offset.saturating_add(rows).min(self.queue_ids.len());
        let start = offset.min(end);
        self.queue_ids[start..end]
            .iter()
            .enumerate()
            .map(move |(i, id)| (start + i, &self.changes[id]))
    }

    /// Recomputes the queue order and the approvable count.
    fn refresh_queue(&mut self) {
        let needle = self.filter.to_lowercase();
        let mut q: Vec<&Change> = self
            .changes
            .values()
            .filter(|c| c.state == ChangeState::PendingApproval)
            .filter(|c| {
                needle.is_empty()
                    || [&c.action, &c.target, &c.ticket, &c.requested_by]
                        .iter()
                        .any(|f| f.to_lowercase().contains(&needle))
            })
            .collect();
        q.sort_by(|a, b| {
            b.risk
                .cmp(&a.risk)
                .then(a.created_at.cmp(&b.created_at))
                .then(a.id.cmp(&b.id))
        });
        let ids: Vec<i64> = q.iter().map(|c| c.id).collect();
        // Only "can I approve it?" matters here: no per-change operator clone or wording.
        let approvable = match self.operator() {
            Some(me) => q
                .iter()
                .filter(|c| {
                    approval::may_approve(&c.approvals_required, &c.approvals, &c.requested_by, &me)
                        .is_ok()
                })
                .count(),
            None => 0,
        };
        self.queue_ids = ids;
        self.approvable = approvable;
        self.clamp();
    }

    pub fn selected_change(&self) -> Option<&Change> {
        self.queue_ids
            .get(self.approval_sel)
            .map(|id| &self.changes[id])
    }

    /// What the operator can do about a pending change, in words for the queue.
    pub fn stance(&self, c: &Change) -> Stance {
        let Some(me) = self.operator() else {
            return Stance::Other(needs(c));
        };
        match approval::may_approve(&c.approvals_required, &c.approvals, &c.requested_by, &me) {
            Ok(()) => Stance::CanApprove,
            Err(approval::ApprovalRefusal::OwnChange) => Stance::Yours,
            Err(approval::ApprovalRefusal::AlreadyApproved) => Stance::Approved,
            Err(approval::ApprovalRefusal::NotEligible(_)) => Stance::Other(needs(c)),
        }
    }

    pub fn approvable_count(&self) -> usize {
        self.approvable
    }

    /// Verifications still counting down.
    pub fn active_verifications(&self) -> impl Iterator<Item = &Verification> {
        self.verifications
            .iter()
            .filter(move |v| v.state.is_active() && v.deadline > self.now)
    }

    /// Verifications waiting for someone to mark them verified or escalate.
    pub fn awaiting_outcome(&self) -> usize {
        self.verifications
            .iter()
            .filter(|v| v.state == VerificationState::AwaitingOutcome)
            .count()
    }

    pub fn selected_verification(&self) -> Option<&Verification> {
        self.verifications.get(self.verification_sel)
    }

    fn week_range(&self) -> (DateTime<Utc>, DateTime<Utc>) {
        let monday = self.now.date_naive()
            - Duration::days(self.now.weekday().num_days_from_monday() as i64)
            + Duration::weeks(self.week_offset);
        let from = monday.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc();
        (from, from + Duration::days(7))
    }

    /// Whether the four panes are on screen side by side.
    pub fn wide(&self) -> bool {
        self.size.0 >= WIDE_WIDTH && self.size.1 >= WIDE_HEIGHT
    }

    pub fn level(&self) -> Option<Level> {
        self.me.as_ref().map(|m| m.level)
    }

    /// Freezes in the calendar that can be removed from here (announced over the API).
    pub fn removable_freezes(&self) -> Vec<(i64, String)> {
        self.calendar
            .iter()
            .flat_map(|c| &c.blocks)
            .filter_map(|b| b.freeze_id.map(|id| (id, b.name.clone())))
            .collect()
    }

    fn say(&mut self, tone: Tone, text: impl Into<String>) {
        self.message = Some((tone, text.into()));
    }

    /// Keeps the newer copy of a change (an event and a reload may arrive in either order).
    /// Call [`State::refresh_queue`] after a batch.
    fn upsert(&mut self, c: Change) {
        match self.changes.get(&c.id) {
            Some(old) if old.updated_at > c.updated_at => {}
            _ => {
                self.changes.insert(c.id, c);
            }
        }
    }

    fn clamp(&mut self) {
        let n = self.queue_ids.len();
        self.approval_sel = self.approval_sel.min(n.saturating_sub(1));
        self.action_sel = self.action_sel.min(self.actions.len().saturating_sub(1));
        self.verification_sel = self
            .verification_sel
            .min(self.verifications.len().saturating_sub(1));
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stance {
    CanApprove,
    Yours,
    Approved,
    /// Someone else must approve: "needs L3 approval".
    Other(String),
}

fn needs(c: &Change) -> String {
    let missing = approval::unmet(&c.approvals_required, &c.approvals, &c.requested_by);
    let words: Vec<String> = missing.iter().map(|r| short_requirement(r)).collect();
    format!("needs {}", words.join(" + "))
}

pub fn short_requirement(r: &Requirement) -> String {
    match r {
        Requirement::Level { min: Level::L3 } => "L3".into(),
        Requirement::Level { min } => format!("{min}+"),
        Requirement::Commander { name, .. } => format!("IC {name}"),
    }
}

/// The reducer.
pub fn update(state: &mut State, msg: Msg) -> Vec<Effect> {
    state.dirty = true;
    match msg {
        Msg::Key(key) => return key_pressed(state, key),
        Msg::Resize(w, h) => state.size = (w, h),
        Msg::Tick(now) => {
            let before = state.now;
            state.now = now;
            // Redraw only if something on screen shows seconds, or a minute turned.
            let countdown_shown = state.wide() || state.pane == Pane::Verification;
            let counting = (countdown_shown && state.active_verifications().next().is_some())
                || state
                    .verifications
                    .iter()
                    .any(|v| v.deadline > before && v.deadline <= now);
            state.dirty = counting || before.timestamp() / 60 != now.timestamp() / 60;
            // Live samples: refresh the list every few seconds while something is watched.
            let polling = state.verifications.iter().any(|v| v.state.is_active());
            if polling && before.timestamp() / POLL_SECS != now.timestamp() / POLL_SECS {
                return vec![Effect::PollVerifications];
            }
            if before.date_naive().iso_week() != now.date_naive().iso_week() {
                let (from, to) = state.week_range();
                state.in_flight += 1;
                return vec![Effect::LoadCalendar { from, to }];
            }
        }
        Msg::Me(r) => loaded(state, r, |s, me| {
            s.me = Some(me);
            s.refresh_queue();
        }),
        Msg::Actions(r) => loaded(state, r, |s, a| {
            s.actions = a;
            s.clamp();
        }),
        Msg::Changes(r) => loaded(state, r, |s, list| {
            for c in list {
                s.upsert(c);
            }
            s.refresh_queue();
        }),
        Msg::WindowStatus(r) => loaded(state, r, |s, w| s.window = Some(w)),
        Msg::Calendar(r) => loaded(state, r, |s, c| {
            s.calendar = Some(c);
            s.freeze_sel = s
                .freeze_sel
                .min(s.removable_freezes().len().saturating_sub(1));
        }),
        Msg::Verifications(r) => loaded(state, r, set_verifications),
        Msg::VerificationsPolled(r) => {
            // A background refresh: no spinner, and a failure waits for the next one.
            if let Ok(v) = r {
                set_verifications(state, v);
            }
        }
        Msg::VerificationDecided(r) => {
            state.in_flight = state.in_flight.saturating_sub(1);
            match r {
                Ok(v) => {
                    let text = match v.state {
                        VerificationState::Escalated => format!(
                            "escalated: incident {} declared, changes paused",
                            v.incident.clone().unwrap_or_default()
                        ),
                        s => format!("change #{} {s}", v.change_id),
                    };
                    state.say(Tone::Success, text);
                    upsert_verification(state, v);
                }
                Err(e) => state.say(Tone::Error, e),
            }
            let (from, to) = state.week_range();
            state.in_flight += 2;
            return vec![Effect::LoadWindowStatus, Effect::LoadCalendar { from, to }];
        }
        Msg::RolledBack(r) => {
            state.in_flight = state.in_flight.saturating_sub(1);
            match r {
                Ok(c) => {
                    let text = match c.state {
                        ChangeState::PendingApproval => format!(
                            "rollback requested as change #{}: it {} (Approvals, 2)",
                            c.id,
                            needs(&c)
                        ),
                        s => format!("rollback change #{} {s}", c.id),
                    };
                    changed(state, c, text);
                }
                Err(e) => state.say(Tone::Error, e),
            }
        }
        Msg::Preview(generation, r) => return preview_arrived(state, generation, r),
        Msg::Submitted(r) => {
            state.in_flight = state.in_flight.saturating_sub(1);
            match r {
                Ok(c) => {
                    let text = match c.state {
                        ChangeState::PendingApproval => format!(
                            "change #{} is waiting for approval: it is in the Approvals queue (2)",
                            c.id
                        ),
                        s => format!("change #{} {s}", c.id),
                    };
                    changed(state, c.clone(), text);
                    state.modal = Some(Modal::Outcome(Box::new(c)));
                }
                Err(e) => {
                    if let Some(Modal::Form(f)) = &mut state.modal {
                        f.submitting = false;
                    }
                    state.say(Tone::Error, e);
                }
            }
        }
        Msg::Decided(r) => {
            state.in_flight = state.in_flight.saturating_sub(1);
            match r {
                Ok(c) => {
                    let text = match c.state {
                        ChangeState::Executed => format!("approved: change #{} executed", c.id),
                        ChangeState::Executing => {
                            format!("approved: change #{} is executing", c.id)
                        }
                        ChangeState::PendingApproval => {
                            format!("approved change #{}; it still {}", c.id, needs(&c))
                        }
                        s => format!("change #{} is now {s}", c.id),
                    };
                    changed(state, c, text);
                }
                Err(e) => {
                    state.say(Tone::Error, e);
                    state.in_flight += 1;
                    return vec![Effect::LoadChanges];
                }
            }
        }
        Msg::Done(r) => {
            state.in_flight = state.in_flight.saturating_sub(1);
            match r {
                Ok(text) => state.say(Tone::Success, text),
                Err(e) => state.say(Tone::Error, e),
            }
            let (from, to) = state.week_range();
            state.in_flight += 2;
            return vec![Effect::LoadWindowStatus, Effect::LoadCalendar { from, to }];
        }
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

/// Says what became of a change (an error tone when it failed) and shows it everywhere.
fn changed(state: &mut State, c: Change, text: String) {
    let tone = if c.state == ChangeState::Failed {
        Tone::Error
    } else {
        Tone::Success
    };
    state.say(tone, text);
    state.upsert(c);
    state.refresh_queue();
}

fn loaded<T>(state: &mut State, r: Result<T, String>, apply: impl FnOnce(&mut State, T)) {
    state.in_flight = state.in_flight.saturating_sub(1);
    match r {
        Ok(v) => apply(state, v),
        Err(e) => state.say(Tone::Error, e),
    }
}

fn server_event(state: &mut State, e: Event) -> Vec<Effect> {
    let mut effects = Vec::new();
    if e.kind.starts_with("change.") {
        if let Ok(c) = serde_json::from_value::<Change>(e.data.clone()) {
            state.upsert(c);
            state.refresh_queue();
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
            upsert_verification(state, v);
        }
    } else if e.kind.starts_with("freeze.") || e.kind.starts_with("pause.") {
        let (from, to) = state.week_range();
        state.in_flight += 2;
        effects = vec![Effect::LoadWindowStatus, Effect::LoadCalendar { from, to }];
    }
    state.activity.push_front(e);
    state.activity.truncate(ACTIVITY_KEEP);
    effects
}

fn upsert_verification(state: &mut State, v: Verification) {
    let mut list = state.verifications.clone();
    list.retain(|x| x.id != v.id);
    list.push(v);
    set_verifications(state, list);
}

/// Replaces the list, keeping the same verification selected as it moves in the order.
fn set_verifications(state: &mut State, mut list: Vec<Verification>) {
    let selected = state.selected_verification().map(|v| v.id);
    sort_verifications(&mut list);
    state.verifications = list;
    if let Some(i) = selected.and_then(|id| state.verifications.iter().position(|v| v.id == id)) {
        state.verification_sel = i;
    }
    state.clamp();
}

/// Open ones first (soonest deadline first), then closed ones, newest first.
fn sort_verifications(list: &mut [Verification]) {
    list.sort_by(|a, b| {
        a.state
            .is_closed()
            .cmp(&b.state.is_closed())
            .then_with(|| {
                if a.state.is_closed() {
                    b.deadline.cmp(&a.deadline)
                } else {
                    a.deadline.cmp(&b.deadline)
                }
            })
            .then(a.id.cmp(&b.id))
    });
}

fn preview_arrived(state: &mut State, generation: u64, r: Result<Preview, String>) -> Vec<Effect> {
    let Some(Modal::Form(form)) = &mut state.modal else {
        return Vec::new();
    };
    form.preview_in_flight = false;
    if generation == form.preview_generation {
        form.preview = Some(r);
    }
    if form.preview_stale {
        return ask_preview(form);
    }
    Vec::new()
}

/// One preview in flight at a time; edits meanwhile ask for one more when it returns.
fn ask_preview(form: &mut ChangeForm) -> Vec<Effect> {
    if !form.previewable() {
        form.preview = None;
        form.preview_stale = false;
        return Vec::new();
    }
    if form.preview_in_flight {
        form.preview_stale = true;
        return Vec::new();
    }
    form.preview_generation += 1;
    form.preview_in_flight = true;
    form.preview_stale = false;
    vec![Effect::Preview(form.preview_generation, form.request())]
}

fn key_pressed(state: &mut State, key: KeyEvent) -> Vec<Effect> {
    if key.code == KeyCode::Char('c') && key.modifiers == KeyModifiers::CONTROL {
        state.quit = true;
        return Vec::new();
    }
    if let Some(modal) = state.modal.take() {
        return modal_key(state, modal, key);
    }
    state.message = None;
    let Some(cmd) = state.keymap.lookup(state.pane.scope(), &key) else {
        state.dirty = false;
        return Vec::new();
    };
    command(state, cmd)
}

fn command(state: &mut State, cmd: Command) -> Vec<Effect> {
    let level = state.level();
    match cmd {
        Command::Quit | Command::ForceQuit => state.quit = true,
        Command::Help => state.modal = Some(Modal::Help),
        Command::NextPane => {
            state.pane = Pane::ALL[(state.pane.index() + 1) % 4];
            if state.pane == Pane::Verification {
                state.alert = None;
            }
        }
        Command::PrevPane => state.pane = Pane::ALL[(state.pane.index() + 3) % 4],
        Command::GoPane(i) => {
            state.pane = Pane::ALL[i as usize % 4];
            if state.pane == Pane::Verification {
                state.alert = None;
            }
        }
        Command::MarkVerified => match state.selected_verification() {
            None => state.say(Tone::Info, "no verification selected"),
            Some(v) if v.state != VerificationState::AwaitingOutcome => {
                let text = format!(
                    "change #{} is {}: it can be marked verified after its deadline ({}); e escalates now",
                    v.change_id,
                    v.state,
                    v.deadline.format("%H:%M:%S")
                );
                state.say(Tone::Error, text);
            }
            Some(v) => {
                let id = v.id;
                state.in_flight += 1;
                return vec![Effect::Outcome(
                    id,
                    OutcomeRequest {
                        outcome: OutcomeKind::Verified,
                        note: None,
                        priority: None,
                        commander: None,
                    },
                )];
            }
        },
        Command::Escalate => match state.selected_verification() {
            Some(v) if !v.state.is_closed() => state.modal = Some(Modal::ConfirmEscalate(v.id)),
            Some(v) => {
                let text = format!(
                    "verification of change #{} is already {}",
                    v.change_id, v.state
                );
                state.say(Tone::Info, text);
            }
            None => state.say(Tone::Info, "no verification selected"),
        },
        Command::Rollback => match state.selected_verification() {
            Some(v) => {
                let change_id = v.change_id;
                let manual = state
                    .actions
                    .iter()
                    .find(|a| a.name == v.action)
                    .filter(|a| !a.has_rollback_command)
                    .map(|a| a.rollback.clone());
                match manual {
                    Some(text) => state.say(
                        Tone::Error,
                        format!("the rollback of {} is manual: {text}", v.action),
                    ),
                    None => state.modal = Some(Modal::ConfirmRollback(change_id)),
                }
            }
            None => state.say(Tone::Info, "no verification selected"),
        },
        Command::Down | Command::Up => {
            let down = cmd == Command::Down;
            let (sel, len) = match state.pane {
                Pane::Actions => (&mut state.action_sel, state.actions.len()),
                Pane::Approvals => (&mut state.approval_sel, state.queue_ids.len()),
                Pane::Windows => {
                    let n = state.removable_freezes().len();
                    (&mut state.freeze_sel, n)
                }
                Pane::Verification => (&mut state.verification_sel, state.verifications.len()),
            };
            *sel = if down {
                (*sel + 1).min(len.saturating_sub(1))
            } else {
                sel.saturating_sub(1)
            };
        }
        Command::Open => {
            if let Some(a) = state.actions.get(state.action_sel) {
                state.modal = Some(Modal::Form(Box::new(ChangeForm::new(a.clone()))));
            }
        }
        Command::Approve => match state.selected_change() {
            None => state.say(Tone::Info, "nothing to approve"),
            Some(c) => {
                let id = c.id;
                match state.stance(c) {
                    Stance::CanApprove => state.modal = Some(Modal::ConfirmApprove(id)),
                    Stance::Yours => state.say(
                        Tone::Error,
                        "this is your own change: someone else must approve it",
                    ),
                    Stance::Approved => {
                        state.say(Tone::Info, "you have already approved this change")
                    }
                    Stance::Other(n) => state.say(
                        Tone::Error,
                        format!("you cannot approve change #{id}: it {n}"),
                    ),
                }
            }
        },
        Command::Deny => match state.selected_change() {
            None => state.say(Tone::Info, "nothing to deny"),
            Some(c) => {
                let id = c.id;
                state.modal = Some(Modal::DenyReason(
                    id,
                    Fields::new(vec![Field::new(
                        "Reason",
                        "why the change is denied (required)",
                    )]),
                ));
            }
        },
        Command::Filter => {
            let mut f = Field::new(
                "Filter",
                "action, target, ticket or requester; empty shows all",
            );
            f.input = tui_input::Input::new(state.filter.clone());
            state.modal = Some(Modal::Filter(Fields::new(vec![f])));
        }
        Command::Refresh => return state.initial_effects(),
        Command::PrevWeek | Command::NextWeek => {
            state.week_offset += if cmd == Command::NextWeek { 1 } else { -1 };
            let (from, to) = state.week_range();
            state.in_flight += 1;
            return vec![Effect::LoadCalendar { from, to }];
        }
        Command::AddFreeze => {
            if let Err(why) = may(Governance::AnnounceFreeze, level) {
                state.say(Tone::Error, why);
            } else {
                let (from, _) = state.week_range();
                let mut start = Field::new("Starts", "UTC, YYYY-MM-DD HH:MM");
                start.input = tui_input::Input::new(from.format("%Y-%m-%d 00:00").to_string());
                state.modal = Some(Modal::FreezeForm(Fields::new(vec![
                    Field::new("Name", "e.g. Black Friday freeze"),
                    start,
                    Field::new("Ends", "UTC, YYYY-MM-DD HH:MM"),
                ])));
            }
        }
        Command::RemoveFreeze => {
            if let Err(why) = may(Governance::RemoveFreeze, level) {
                state.say(Tone::Error, why);
            } else if let Some((id, _)) = state.removable_freezes().get(state.freeze_sel).cloned() {
                state.in_flight += 1;
                return vec![Effect::RemoveFreeze(id)];
            } else {
                state.say(Tone::Info, "no freeze announced over the API in this week (configured freezes are changed in the server's configuration)");
            }
        }
        Command::Pause => {
            if let Err(why) = may(Governance::Pause, level) {
                state.say(Tone::Error, why);
            } else {
                state.modal = Some(Modal::PauseReason(Fields::new(vec![Field::new(
                    "Reason",
                    "why all changes are paused",
                )])));
            }
        }
        Command::Resume => {
            if let Err(why) = may(Governance::Resume, level) {
                state.say(Tone::Error, why);
            } else {
                state.in_flight += 1;
                return vec![Effect::Resume];
            }
        }
    }
    Vec::new()
}

/// The domain's rule for a governance action; before `/me` answers, the level is unknown and
/// counts as the lowest.
fn may(action: Governance, level: Option<Level>) -> Result<(), String> {
    action.allowed(level.unwrap_or(Level::L1))
}

fn is(key: &KeyEvent, code: KeyCode) -> bool {
    key.code == code && !key.modifiers.contains(KeyModifiers::CONTROL)
}

fn modal_key(state: &mut State, modal: Modal, key: KeyEvent) -> Vec<Effect> {
    match modal {
        Modal::Help => {
            // Any key closes the help; q closes it without quitting.
        }
        Modal::Outcome(_) => {}
        Modal::ConfirmQuit => {
            if is(&key, KeyCode::Char('y')) {
                state.quit = true;
            }
        }
        Modal::ConfirmDiscard(form) => {
            if !is(&key, KeyCode::Char('y')) {
                state.modal = Some(Modal::Form(form));
            }
        }
        Modal::ConfirmEscalate(id) => {
            if is(&key, KeyCode::Char('y')) {
                state.in_flight += 1;
                return vec![Effect::Outcome(
                    id,
                    OutcomeRequest {
                        outcome: OutcomeKind::Escalated,
                        note: None,
                        priority: None,
                        commander: None,
                    },
                )];
            }
            state.say(Tone::Info, "escalation cancelled");
        }
        Modal::ConfirmRollback(change_id) => {
            if is(&key, KeyCode::Char('y')) {
                state.in_flight += 1;
                return vec![Effect::Rollback(
                    change_id,
                    RollbackRequest {
                        reason: "rolled back from the dashboard during post-change verification"
                            .into(),
                        ticket: None,
                    },
                )];
            }
            state.say(Tone::Info, "rollback cancelled");
        }
        Modal::ConfirmApprove(id) => {
            if is(&key, KeyCode::Char('y')) {
                state.in_flight += 1;
                state.say(Tone::Info, format!("approving change #{id}…"));
                return vec![Effect::Approve(id, ApproveRequest::default())];
            }
            state.say(Tone::Info, "approval cancelled");
        }
        Modal::DenyReason(id, mut fields) => {
            if is(&key, KeyCode::Esc) {
                state.say(Tone::Info, "deny cancelled");
            } else if is(&key, KeyCode::Enter) {
                let reason = fields.value(0).trim().to_string();
                if reason.is_empty() {
                    state.say(Tone::Error, "a reason is required to deny a change");
                    state.modal = Some(Modal::DenyReason(id, fields));
                } else {
                    state.in_flight += 1;
                    return vec![Effect::Deny(id, DenyRequest { reason })];
                }
            } else {
                fields.edit(key);
                state.modal = Some(Modal::DenyReason(id, fields));
            }
        }
        Modal::Filter(mut fields) => {
            if is(&key, KeyCode::Esc) {
                state.filter.clear();
            } else if is(&key, KeyCode::Enter) {
                state.filter = fields.value(0).trim().to_string();
            } else {
                fields.edit(key);
                state.filter = fields.value(0).trim().to_string();
                state.modal = Some(Modal::Filter(fields));
            }
            state.approval_sel = 0;
            state.refresh_queue();
        }
        Modal::PauseReason(mut fields) => {
            if is(&key, KeyCode::Esc) {
            } else if is(&key, KeyCode::Enter) {
                let reason = fields.value(0).trim().to_string();
                if reason.is_empty() {
                    state.say(Tone::Error, "a reason is required to pause changes");
                    state.modal = Some(Modal::PauseReason(fields));
                } else {
                    state.in_flight += 1;
                    return vec![Effect::Pause(PauseRequest { reason })];
                }
            } else {
                fields.edit(key);
                state.modal = Some(Modal::PauseReason(fields));
            }
        }
        Modal::FreezeForm(mut fields) => {
            if is(&key, KeyCode::Esc) {
            } else if is(&key, KeyCode::Tab) || is(&key, KeyCode::Down) {
                fields.next();
                state.modal = Some(Modal::FreezeForm(fields));
            } else if key.code == KeyCode::BackTab || is(&key, KeyCode::Up) {
                fields.prev();
                state.modal = Some(Modal::FreezeForm(fields));
            } else if is(&key, KeyCode::Enter) && !fields.is_last() {
                fields.next();
                state.modal = Some(Modal::FreezeForm(fields));
            } else if is(&key, KeyCode::Enter) {
                match freeze_request(&fields) {
                    Ok(req) => {
                        state.in_flight += 1;
                        return vec![Effect::AddFreeze(req)];
                    }
                    Err(e) => {
                        state.say(Tone::Error, e);
                        state.modal = Some(Modal::FreezeForm(fields));
                    }
                }
            } else {
                fields.edit(key);
                state.modal = Some(Modal::FreezeForm(fields));
            }
        }
        Modal::Form(form) => return form_key(state, form, key),
    }
    Vec::new()
}

fn freeze_request(fields: &Fields) -> Result<FreezeRequest, String> {
    let name = fields.value(0).trim();
    if name.is_empty() {
        return Err("the freeze needs a name".into());
    }
    let time = |i: usize, what: &str| {
        chrono::NaiveDateTime::parse_from_str(fields.value(i).trim(), "%Y-%m-%d %H:%M")
            .map(|t| t.and_utc())
            .map_err(|_| format!("{what} must be YYYY-MM-DD HH:MM (UTC)"))
    };
    Ok(FreezeRequest {
        name: name.to_string(),
        starts_at: time(1, "Starts")?,
        ends_at: time(2, "Ends")?,
    })
}

fn form_key(state: &mut State, mut form: Box<ChangeForm>, key: KeyEvent) -> Vec<Effect> {
    if form.submitting {
        // Keys wait while the request is on its way; Ctrl-C is handled before this.
        state.modal = Some(Modal::Form(form));
        state.dirty = false;
        return Vec::new();
    }
    if is(&key, KeyCode::Esc) {
        if form.fields.holds_input() {
            state.modal = Some(Modal::ConfirmDiscard(form));
        }
        return Vec::new();
    }
    if is(&key, KeyCode::Tab) || is(&key, KeyCode::Down) {
        form.fields.next();
    } else if key.code == KeyCode::BackTab || is(&key, KeyCode::Up) {
        form.fields.prev();
    } else if is(&key, KeyCode::Enter) && !form.fields.is_last() {
        form.fields.next();
    } else if is(&key, KeyCode::Enter) {
        if let Some(Err(e)) = form.ticket_check() {
            state.say(Tone::Error, e);
        } else {
            form.submitting = true;
            let req = form.request();
            state.in_flight += 1;
            state.modal = Some(Modal::Form(form));
            return vec![Effect::Create(req)];
        }
    } else if form.fields.edit(key) {
        let effects = ask_preview(&mut form);
        state.modal = Some(Modal::Form(form));
        return effects;
    }
    state.modal = Some(Modal::Form(form));
    Vec::new()
}

/// Risk as a word, for tables (never colour alone).
pub fn risk_word(r: Risk) -> &'static str {
    match r {
        Risk::Low => "low",
        Risk::Medium => "medium",
        Risk::High => "HIGH",
        Risk::Critical => "CRITICAL",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tui::fixtures::{change, event, now, scene};

    fn key(c: char) -> Msg {
        Msg::Key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE))
    }

    fn code(k: KeyCode) -> Msg {
        Msg::Key(KeyEvent::new(k, KeyModifiers::NONE))
    }

    fn typed(s: &mut State, text: &str) -> Vec<Effect> {
        text.chars().flat_map(|c| update(s, key(c))).collect()
    }

    fn queue_ids(s: &State) -> Vec<i64> {
        s.queue().map(|c| c.id).collect()
    }

    #[test]
    fn queue_is_riskiest_first_then_oldest_and_counts_what_i_can_approve() {
        let s = scene("bob", Level::L2);
        // critical: #2 (40 min), #4 (5 min); high: #1 (12 min), #3 (3 min).
        assert_eq!(queue_ids(&s), vec![2, 4, 1, 3]);
        assert_eq!(s.approvable_count(), 2);
        let c = &s.changes[&4];
        assert_eq!(s.stance(c), Stance::Yours);
        assert_eq!(s.stance(&s.changes[&2]), Stance::Other("needs L3".into()));
    }

    #[test]
    fn request_flow_previews_live_and_submits_the_typed_request() {
        let mut s = scene("alice", Level::L1);
        update(&mut s, key('1'));
        let i = s
            .actions
            .iter()
            .position(|a| a.name == "blacklist-ip")
            .unwrap();
        for _ in 0..i {
            update(&mut s, key('j'));
        }
        update(&mut s, code(KeyCode::Enter));
        assert!(matches!(&s.modal, Some(Modal::Form(f)) if f.action.name == "blacklist-ip"));
        // A bad ticket is flagged as it is typed, and asks the server nothing.
        assert!(typed(&mut s, "CHG-Bad").is_empty());
        let Some(Modal::Form(f)) = &s.modal else {
            panic!()
        };
        assert!(f.ticket_check().unwrap().is_err());
        for _ in 0..3 {
            update(&mut s, code(KeyCode::Backspace));
        }
        typed(&mut s, "1234");
        update(&mut s, code(KeyCode::Tab));
        let effects = typed(&mut s, "e");
        let [Effect::Preview(g1, req)] = effects.as_slice() else {
            panic!("{effects:?}")
        };
        assert_eq!(
            (req.ticket.as_str(), req.target.as_str()),
            ("CHG-1234", "e")
        );
        // While that preview is out, more typing asks for exactly one more when it returns.
        assert!(typed(&mut s, "dge-1").is_empty());
        let again = update(&mut s, Msg::Preview(*g1, Err("stale".into())));
        let [Effect::Preview(g2, req)] = again.as_slice() else {
            panic!("{again:?}")
        };
        assert_eq!(req.target, "edge-1");
        let preview = Preview {
            decision: crate::domain::policy::Outcome::NeedsApproval,
            reasons: vec!["high risk requested by L1".into()],
            approvals_required: vec![Requirement::Level { min: Level::L2 }],
            warnings: vec!["off-peak preferred".into()],
        };
        update(&mut s, Msg::Preview(*g2, Ok(preview.clone())));
        let Some(Modal::Form(f)) = &s.modal else {
            panic!()
        };
        assert_eq!(f.preview, Some(Ok(preview)));
        update(&mut s, code(KeyCode::Tab));
        typed(&mut s, "203.0.113.7");
        update(&mut s, code(KeyCode::Tab));
        typed(&mut s, "scraper");
        let submit = update(&mut s, code(KeyCode::Enter));
        let [Effect::Create(req)] = submit.as_slice() else {
            panic!("{submit:?}")
        };
        assert_eq!(req.params["ip"], serde_json::json!("203.0.113.7"));
        assert_eq!(req.reason, "scraper");
        // Keys wait while it is on its way; then the outcome shows and the queue has it.
        assert!(update(&mut s, key('x')).is_empty());
        let mut created = change(9, "blacklist-ip", Risk::High, "alice", Level::L1, 0);
        created.target = "edge-1".into();
        update(&mut s, Msg::Submitted(Ok(created)));
        assert!(matches!(&s.modal, Some(Modal::Outcome(c)) if c.id == 9));
        assert!(queue_ids(&s).contains(&9));
        assert!(s.message.as_ref().unwrap().1.contains("Approvals queue"));
    }

    #[test]
    fn a_refused_submission_keeps_the_form_and_says_why() {
        let mut s = scene("alice", Level::L1);
        update(&mut s, key('1'));
        update(&mut s, code(KeyCode::Enter));
        typed(&mut s, "CHG-1");
        let n = if let Some(Modal::Form(f)) = &s.modal {
            f.fields.fields.len()
        } else {
            0
        };
        for _ in 1..n {
            update(&mut s, code(KeyCode::Enter));
        }
        assert!(matches!(
            update(&mut s, code(KeyCode::Enter)).as_slice(),
            [Effect::Create(_)]
        ));
        update(
            &mut s,
            Msg::Submitted(Err("409 refused: outside the deployment windows".into())),
        );
        assert!(matches!(&s.modal, Some(Modal::Form(f)) if !f.submitting));
        assert!(
            s.message
                .as_ref()
                .unwrap()
                .1
                .contains("outside the deployment windows")
        );
    }

    #[test]
    fn approve_asks_first_and_refuses_locally_what_the_server_would() {
        let mut s = scene("bob", Level::L2);
        update(&mut s, key('2'));
        // Selected: #2, rotate-secrets by dave, needs L3.
        assert!(update(&mut s, key('a')).is_empty());
        assert!(s.modal.is_none());
        assert!(s.message.as_ref().unwrap().1.contains("needs L3"));
        update(&mut s, key('j')); // #4: bob's own
        update(&mut s, key('a'));
        assert!(s.message.as_ref().unwrap().1.contains("your own change"));
        update(&mut s, key('j')); // #1: alice's high-risk change
        update(&mut s, key('a'));
        assert!(matches!(s.modal, Some(Modal::ConfirmApprove(1))));
        // Anything but y cancels.
        assert!(update(&mut s, key('n')).is_empty());
        assert!(s.modal.is_none());
        update(&mut s, key('a'));
        let effects = update(&mut s, key('y'));
        assert_eq!(effects, vec![Effect::Approve(1, ApproveRequest::default())]);
        let mut done = s.changes[&1].clone();
        done.state = ChangeState::Executed;
        done.updated_at = now();
        update(&mut s, Msg::Decided(Ok(done)));
        assert_eq!(queue_ids(&s), vec![2, 4, 3]);
        assert_eq!(s.approvable_count(), 1);
        assert!(s.message.as_ref().unwrap().1.contains("executed"));
    }

    #[test]
    fn a_failed_approval_is_shown_and_the_queue_reloaded() {
        let mut s = scene("bob", Level::L2);
        let effects = update(
            &mut s,
            Msg::Decided(Err("409 conflict: already executed".into())),
        );
        assert_eq!(effects, vec![Effect::LoadChanges]);
        assert_eq!(s.message.as_ref().unwrap().0, Tone::Error);
    }

    #[test]
    fn deny_needs_a_reason() {
        let mut s = scene("carol", Level::L3);
        update(&mut s, key('2'));
        update(&mut s, key('d'));
        assert!(matches!(s.modal, Some(Modal::DenyReason(2, _))));
        assert!(update(&mut s, code(KeyCode::Enter)).is_empty());
        assert!(s.message.as_ref().unwrap().1.contains("reason is required"));
        typed(&mut s, "not during the campaign");
        let effects = update(&mut s, code(KeyCode::Enter));
        assert_eq!(
            effects,
            vec![Effect::Deny(
                2,
                DenyRequest {
                    reason: "not during the campaign".into()
                }
            )]
        );
        assert!(s.modal.is_none());
    }

    #[test]
    fn filter_narrows_the_queue_and_esc_clears_it() {
        let mut s = scene("bob", Level::L2);
        update(&mut s, key('2'));
        update(&mut s, key('/'));
        typed(&mut s, "edge");
        assert_eq!(queue_ids(&s), vec![1]);
        update(&mut s, code(KeyCode::Enter));
        assert_eq!(s.filter, "edge");
        assert_eq!(queue_ids(&s), vec![1]);
        update(&mut s, key('/'));
        update(&mut s, code(KeyCode::Esc));
        assert_eq!(queue_ids(&s).len(), 4);
    }

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
        assert!(queue_ids(&s).contains(&10));
        assert_eq!(s.approvable_count(), 3);
        assert_eq!(s.activity[0].seq, 50);
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
        assert_eq!(s.changes[&10].state, ChangeState::Executed);
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
        s.verifications.clear();
        update(&mut s, Msg::Tick(now() + Duration::seconds(2)));
        assert!(!s.dirty, "nothing on screen changed");
        update(&mut s, Msg::Tick(now() + Duration::seconds(61)));
        assert!(s.dirty, "the minute turned: the window countdown changed");
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
    fn esc_in_a_form_with_input_asks_before_dropping_it() {
        let mut s = scene("alice", Level::L1);
        update(&mut s, key('1'));
        update(&mut s, code(KeyCode::Enter));
        typed(&mut s, "CHG-1");
        update(&mut s, code(KeyCode::Esc));
        assert!(matches!(s.modal, Some(Modal::ConfirmDiscard(_))));
        update(&mut s, key('n'));
        assert!(matches!(s.modal, Some(Modal::Form(_))));
        update(&mut s, code(KeyCode::Esc));
        update(&mut s, key('y'));
        assert!(s.modal.is_none());
        assert!(!s.quit);
        update(&mut s, key('q'));
        assert!(s.quit);
    }

    fn watched(
        id: i64,
        change_id: i64,
        state: VerificationState,
        seconds_left: i64,
    ) -> Verification {
        let mut v = scene("bob", Level::L2).verifications[0].clone();
        v.id = id;
        v.change_id = change_id;
        v.state = state;
        v.deadline = now() + Duration::seconds(seconds_left);
        v
    }

    #[test]
    fn verification_keys_ask_the_server_for_outcomes_and_rollbacks() {
        let mut s = scene("bob", Level::L2);
        update(&mut s, key('4'));
        // Verified only after the deadline: said locally, nothing sent.
        assert!(update(&mut s, key('v')).is_empty());
        assert!(s.message.as_ref().unwrap().1.contains("after its deadline"));
        let ev = |seq, kind: &str, v: &Verification| {
            Msg::ServerEvent(Box::new(event(
                seq,
                kind,
                "deadline",
                serde_json::to_value(v).unwrap(),
            )))
        };
        update(
            &mut s,
            ev(
                60,
                "verification.deadline",
                &watched(1, 5, VerificationState::AwaitingOutcome, 0),
            ),
        );
        let effects = update(&mut s, key('v'));
        assert!(
            matches!(effects.as_slice(), [Effect::Outcome(1, r)] if r.outcome == OutcomeKind::Verified),
            "{effects:?}"
        );
        // Escalation and rollback ask first.
        update(&mut s, key('e'));
        assert!(matches!(s.modal, Some(Modal::ConfirmEscalate(1))));
        let effects = update(&mut s, key('y'));
        assert!(
            matches!(effects.as_slice(), [Effect::Outcome(1, r)] if r.outcome == OutcomeKind::Escalated)
        );
        update(&mut s, key('r'));
        assert!(matches!(s.modal, Some(Modal::ConfirmRollback(5))));
        assert!(update(&mut s, key('n')).is_empty());
        update(&mut s, key('r'));
        assert!(matches!(
            update(&mut s, key('y')).as_slice(),
            [Effect::Rollback(5, _)]
        ));
    }

    #[test]
    fn trouble_elsewhere_raises_an_alert_until_the_pane_is_seen() {
        let mut s = scene("bob", Level::L2);
        update(&mut s, key('2'));
        let degraded = watched(1, 5, VerificationState::Degraded, 300);
        update(
            &mut s,
            Msg::ServerEvent(Box::new(event(
                61,
                "verification.degraded",
                "change #5 DEGRADED",
                serde_json::to_value(&degraded).unwrap(),
            ))),
        );
        assert_eq!(s.alert.as_deref(), Some("change #5 DEGRADED"));
        assert_eq!(s.verifications[0].state, VerificationState::Degraded);
        update(&mut s, key('4'));
        assert!(s.alert.is_none());
    }

    #[test]
    fn the_selected_verification_stays_selected_as_the_list_reorders() {
        let mut s = scene("bob", Level::L2);
        update(&mut s, key('4'));
        update(
            &mut s,
            Msg::Verifications(Ok(vec![
                watched(1, 5, VerificationState::Watching, 100),
                watched(2, 6, VerificationState::Watching, 200),
            ])),
        );
        update(&mut s, key('j'));
        assert_eq!(s.selected_verification().unwrap().id, 2);
        // A new one with an earlier deadline arrives first in the order.
        let new = watched(3, 7, VerificationState::Watching, 50);
        update(
            &mut s,
            Msg::ServerEvent(Box::new(event(
                62,
                "verification.started",
                "",
                serde_json::to_value(&new).unwrap(),
            ))),
        );
        assert_eq!(s.selected_verification().unwrap().id, 2);
    }
}
