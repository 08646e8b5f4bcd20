//! The calendar shared outside the dashboard: what the policy says at any instant
//! (`GET /windows/at`), the iCalendar feed of windows, freezes and scheduled changes
//! (`GET /calendar.ics`, encoded by `ics.rs`), and the secret feed URLs that let a calendar app
//! read that feed without a bearer token. The handlers in `api/calendar.rs` only translate HTTP.
//!
//! Every answer comes from the domain's own rules: the window logic of `domain/window.rs` and
//! the policy's `decide` (`domain/policy.rs`), asked as a change request at that instant would
//! ask it, so `window at` and a request at that time cannot disagree.

use crate::domain::Ticket;
use crate::domain::action::Risk;
use crate::domain::api::OpenWindow;
use crate::domain::calendar::{
    CalendarOpen, CalendarState, Feed, FeedCreated, RiskAt, TransitionBody,
};
use crate::domain::change::{Change, ChangeState};
use crate::domain::operator::Operator;
use crate::domain::policy::{self, PolicyInput};
use crate::domain::window::{Freeze, Interval, WindowKind, next_transition};
use crate::server::AppState;
use crate::server::auth;
use crate::server::changes::commit;
use crate::server::error::{ServiceError, ServiceResult};
use crate::server::ics;
use chrono::{DateTime, Duration, Utc};

/// How far ahead the feed reaches.
pub const FEED_WEEKS: i64 = 8;

/// Scheduled changes the feed lists at most, the soonest first: every calendar app's fetch
/// builds the whole feed, so an L1 scheduling thousands of changes must not make each fetch
/// (and the answer) grow with them.
pub const FEED_MAX_CHANGES: usize = 500;

/// How often calendar apps are asked to fetch the feed again.
const FEED_REFRESH_MINUTES: u32 = 15;

/// The ticket the policy is asked about: a planned change. An INC ticket would need a declared
/// incident, which is the emergency path, not the calendar.
const PLANNED_TICKET: &str = "CHG-1";

/// Freezes from the configuration and those announced over the API.
pub(crate) async fn all_freezes(state: &AppState) -> ServiceResult<Vec<Freeze>> {
    let mut freezes = state.config.configured_freezes();
    freezes.extend(state.store.freezes().await?);
    Ok(freezes)
}

/// `GET /windows/at`: what the policy would tell `caller` about a planned change at `t`.
pub async fn state_at(
    state: &AppState,
    caller: &Operator,
    t: DateTime<Utc>,
) -> ServiceResult<CalendarState> {
    let schedule = &state.config.windows;
    let freezes = all_freezes(state).await?;
    // A pause has no end until someone resumes: in force at any instant after it started.
    let pause = state.store.pause().await?.filter(|p| p.paused_at <= t);
    let ticket = Ticket::parse(PLANNED_TICKET).map_err(ServiceError::invalid)?;
    let mut risks = Vec::new();
    for risk in Risk::ALL {
        let actions: Vec<_> = state
            .config
            .actions
            .iter()
            .filter(|a| a.risk == risk)
            .collect();
        // The decision turns on the action's risk, never its name: one action stands for all.
        let Some(spec) = actions.first() else {
            continue;
        };
        let d = policy::decide(&PolicyInput {
            action: spec,
            ticket: &ticket,
            requester: caller,
            now: t,
            schedule,
            freezes: &freezes,
            pause: pause.as_ref(),
            incident: None,
            escalated: None,
            approval_rule: state.config.approval_rule(risk),
        });
        risks.push(RiskAt {
            risk,
            actions: actions.iter().map(|a| a.name.clone()).collect(),
            decision: d.decision,
            blocked_by: d.blocked_by,
            reasons: d.reasons,
            warnings: d.warnings,
        });
    }
    let open = schedule.open_at(t);
    let freeze = freezes.iter().find(|f| f.active_at(t)).cloned();
    let next = next_transition(schedule, &freezes, t).map(|tr| TransitionBody::from(&tr));
    let verdict = if open.is_some() && freeze.is_none() && pause.is_none() {
        CalendarOpen::Open
    } else {
        CalendarOpen::Closed
    };
    let mut summary = match (&freeze, &pause, open) {
        (Some(f), _, _) => format!(
            "CLOSED: freeze '{}' until {}",
            f.name,
            f.ends_at.format("%a %Y-%m-%d %H:%M UTC")
        ),
        (None, Some(p), _) => format!("CLOSED: changes paused by {}: {}", p.paused_by, p.reason),
        (None, None, Some((kind, closes))) => format!(
            "OPEN: {kind} window until {}",
            closes.format("%a %Y-%m-%d %H:%M UTC")
        ),
        (None, None, None) => "CLOSED: outside the deployment windows".to_string(),
    };
    if let Some(n) = &next {
        summary.push_str(&format!(
            "; next: {} at {}",
            n.change,
            n.at.format("%a %Y-%m-%d %H:%M UTC")
        ));
    }
    Ok(CalendarState {
        time: t,
        state: verdict,
        open: open.map(|(kind, closes_at)| OpenWindow { kind, closes_at }),
        freeze,
        pause,
        risks,
        next_transition: next,
        summary,
    })
}

/// `window-offpeak-20261207T220000Z@commandbridge`: the same window occurrence has the same
/// UID on every fetch.
fn window_uid(kind: WindowKind, start: DateTime<Utc>) -> String {
    let kind = match kind {
        WindowKind::Standard => "standard",
        WindowKind::OffPeak => "offpeak",
    };
    format!("window-{kind}-{}@commandbridge", ics::utc(start))
}

/// `freeze-7@commandbridge` for a freeze announced over the API; a configured freeze has no id,
/// so its name (letters and digits) and start stand for it.
fn freeze_uid(f: &Freeze) -> String {
    match f.id {
        Some(id) => format!("freeze-{id}@commandbridge"),
        None => {
            let slug: String = f
                .name
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() {
                        c.to_ascii_lowercase()
                    } else {
                        '-'
                    }
                })
                .collect();
            format!(
                "freeze-config-{}-{}@commandbridge",
                slug.trim_matches('-'),
                ics::utc(f.starts_at)
            )
        }
    }
}

/// What each window is for, in the process's words ("Deployment Windows").
fn window_description(kind: WindowKind) -> &'static str {
    match kind {
        WindowKind::Standard => {
            "Standard deployment window: planned changes (CHG ticket) of medium risk and above \
             may run, with the approvals their risk needs; high- and critical-risk changes \
             prefer the Off-peak window. Low-risk actions run at any time."
        }
        WindowKind::OffPeak => {
            "Off-peak deployment window: planned changes (CHG ticket) of medium risk and above \
             may run, with the approvals their risk needs; preferred for high- and \
             critical-risk changes. Low-risk actions run at any time."
        }
    }
}

/// The feed's events from `now` for [`FEED_WEEKS`]: every window occurrence and freeze that
/// overlaps that stretch (one already running included).
pub async fn feed_events(state: &AppState, now: DateTime<Utc>) -> ServiceResult<Vec<ics::Event>> {
    let to = now + Duration::weeks(FEED_WEEKS);
    let freezes: Vec<Freeze> = all_freezes(state)
        .await?
        .into_iter()
        .filter(|f| f.ends_at > now && f.starts_at < to)
        .collect();
    let mut events = Vec::new();
    for (kind, iv) in state.config.windows.occurrences(now, to) {
        let mut description = window_description(kind).to_string();
        for f in freezes.iter().filter(|f| overlaps(f, iv)) {
            description.push_str(&format!(
                "\nFreeze '{}' is in force from {} to {}: then only low-risk actions and \
                 changes for a declared P1 incident run.",
                f.name,
                f.starts_at.format("%Y-%m-%d %H:%M UTC"),
                f.ends_at.format("%Y-%m-%d %H:%M UTC")
            ));
        }
        events.push(ics::Event {
            uid: window_uid(kind, iv.start),
            start: iv.start,
            end: iv.end,
            summary: format!("{kind} window"),
            description,
            category: "window",
            transparent: true,
        });
    }
    for f in &freezes {
        let by = f
            .created_by
            .as_deref()
            .map(|b| format!(", announced by {b}"))
            .unwrap_or_else(|| " (server configuration)".into());
        events.push(ics::Event {
            uid: freeze_uid(f),
            start: f.starts_at,
            end: f.ends_at,
            summary: format!("Change freeze: {}", f.name),
            description: format!(
                "Change freeze '{}'{by}: only low-risk actions and changes for a declared P1 \
                 incident may run.",
                f.name
            ),
            category: "freeze",
            transparent: false,
        });
    }
    // Scheduled changes, one whose time has just come included until its grace period ends
    // (it may still start): from `run_at` to the end of its verification, the stretch in which
    // it conflicts with others on its target.
    let grace = Duration::minutes(state.config.server.schedule_grace_minutes);
    let verification = state.config.verification.duration();
    let mut changes = state
        .store
        .changes_scheduled(now - grace, to, FEED_MAX_CHANGES as i64 + 1)
        .await?;
    let unlisted = (changes.len() > FEED_MAX_CHANGES).then(|| changes.split_off(FEED_MAX_CHANGES));
    for c in &changes {
        let Some(run_at) = c.run_at else { continue };
        events.push(change_event(c, run_at, verification));
    }
    if let Some(run_at) = unlisted.and_then(|u| u.first().and_then(|c| c.run_at)) {
        events.push(more_changes_event(run_at));
    }
    events.sort_by(|a, b| a.start.cmp(&b.start).then_with(|| a.uid.cmp(&b.uid)));
    Ok(events)
}

/// Where the feed's list of scheduled changes stops, at the first one it leaves out: a calendar
/// app shows the reader that there are more rather than a calendar that looks complete.
fn more_changes_event(from: DateTime<Utc>) -> ics::Event {
    ics::Event {
        uid: "more-changes@commandbridge".into(),
        start: from,
        end: from + Duration::minutes(1),
        summary: "More scheduled changes than this feed lists".into(),
        description: format!(
            "The feed lists the first {FEED_MAX_CHANGES} scheduled changes; those from here on \
             are not in it. The dashboard's Windows pane and `commandbridge change list` show \
             them all."
        ),
        category: "notice",
        transparent: true,
    }
}

/// `change-42@commandbridge`: a change has one occurrence, its scheduled run.
fn change_event(c: &Change, run_at: DateTime<Utc>, verification: Duration) -> ics::Event {
    let waiting = if c.state == ChangeState::PendingApproval {
        " (awaiting approval)"
    } else {
        ""
    };
    let mut description = vec![
        format!(
            "Change #{} {} on {} ({} risk), ticket {}, requested by {} ({}).",
            c.id, c.action, c.target, c.risk, c.ticket, c.requested_by, c.requested_level
        ),
        format!("State: {}{waiting}.", c.state),
        format!("Reason: {}", c.reason),
        format!(
            "Runs at {} if the policy still allows it then, and is watched for {} minutes \
             after.",
            run_at.format("%Y-%m-%d %H:%M UTC"),
            verification.num_minutes()
        ),
    ];
    if !c.conflicts.is_empty() {
        description.extend(
            c.conflicts
                .iter()
                .map(|x| format!("Conflict: {}", x.message)),
        );
    }
    ics::Event {
        uid: format!("change-{}@commandbridge", c.id),
        start: run_at,
        end: run_at + verification.max(Duration::minutes(1)),
        summary: format!("#{} {} on {}{waiting}", c.id, c.action, c.target),
        description: description.join("\n"),
        category: "change",
        transparent: false,
    }
}

fn overlaps(f: &Freeze, iv: Interval) -> bool {
    f.starts_at < iv.end && iv.start < f.ends_at
}

/// The whole feed, as of the server's clock.
pub async fn feed(state: &AppState) -> ServiceResult<String> {
    let now = state.clock.now();
    let events = feed_events(state, now).await?;
    Ok(ics::calendar(
        "CommandBridge change calendar",
        now,
        FEED_REFRESH_MINUTES,
        &events,
    ))
}

/// The path of the feed on this server; the secret goes in the query.
pub const FEED_PATH: &str = "/api/v1/calendar.ics";

/// The most feeds one page of `GET /calendar/feeds` holds, and the page without `limit`:
/// revoked feeds stay listed for ever, so a whole list would grow with every create and
/// revoke; a page is built in memory, so its size is bounded here, not by the caller.
pub const MAX_FEEDS_PAGE: i64 = 500;
pub const DEFAULT_FEEDS_PAGE: i64 = 200;

/// Creates a feed URL for `op`: the secret is returned this once, only its SHA-256 is kept.
/// Refused (rate limited) while `op` has `[server.quotas] feeds_per_operator` active feeds:
/// every feed is a row the list carries and a secret that reads the calendar, and one token must
/// not mint them without end. Revoking one makes room for another.
pub async fn create_feed(
    state: &AppState,
    op: &Operator,
    label: &str,
) -> ServiceResult<FeedCreated> {
    crate::server::error::may(crate::domain::Act::CalendarFeed, op)?;
    let label = match label.trim() {
        "" => "calendar feed".to_string(),
        l => crate::domain::text::required_text("label", l, 120).map_err(ServiceError::Invalid)?,
    };
    let secret = auth::new_feed_secret()
        .map_err(|e| ServiceError::Unavailable(format!("no randomness for a secret: {e}")))?;
    let now = state.clock.now();
    // Counted in the write transaction, which excludes every other writer (BEGIN IMMEDIATE,
    // or the exclusive advisory lock on PostgreSQL): two creations at once are counted one
    // after the other, so the cap holds exactly.
    let mut tx = state.store.write().await?;
    let active = tx.calendar_feeds_active_by(&op.name).await?;
    if active >= state.config.server.quotas.feeds_per_operator {
        return Err(ServiceError::rate_limited(format!(
            "you have {active} active calendar feeds, the most one operator may: revoke one you \
             no longer use (`commandbridge calendar feeds` lists them, `commandbridge calendar \
             revoke ID` revokes one) and create this one again"
        )));
    }
    let feed = tx
        .calendar_feed_insert(&label, &auth::token_hash(&secret), &op.name, now)
        .await?;
    // The audit names the feed, never its secret.
    tx.audit(
        now,
        &op.name,
        "calendar_feed.created",
        &format!("calendar_feed:{}", feed.id),
        &serde_json::to_value(&feed).unwrap_or_default(),
    )
    .await?;
    commit(state, tx).await?;
    Ok(FeedCreated {
        path: format!("{FEED_PATH}?feed={secret}"),
        secret,
        feed,
    })
}

/// One page of feeds, newest first: at most `limit` (1 to [`MAX_FEEDS_PAGE`]) with ids below
/// `before`, and whether more follow.
pub async fn feeds(
    state: &AppState,
    before: Option<i64>,
    limit: i64,
) -> ServiceResult<(Vec<Feed>, bool)> {
    if !(1..=MAX_FEEDS_PAGE).contains(&limit) {
        return Err(ServiceError::invalid(format!(
            "limit must be between 1 and {MAX_FEEDS_PAGE}; follow the Link header (or pass \
             before=<id>) for more"
        )));
    }
    if before.is_some_and(|b| b < 1) {
        return Err(ServiceError::invalid(
            "before must be a feed id (1 or more)",
        ));
    }
    // One row more than asked says whether a next page exists, so the last page has no link.
    let mut page = state.store.calendar_feeds(before, limit + 1).await?;
    let more = page.len() as i64 > limit;
    page.truncate(limit as usize);
    Ok((page, more))
}

/// Revokes feed `id`: its creator or an L3 may. From the commit on, its secret is refused.
pub async fn revoke_feed(state: &AppState, op: &Operator, id: i64) -> ServiceResult<Feed> {
    crate::server::error::may(crate::domain::Act::CalendarFeed, op)?;
    let now = state.clock.now();
    let mut tx = state.store.write().await?;
    let feed = tx
        .calendar_feed(id)
        .await?
        .ok_or_else(|| ServiceError::not_found(format!("no calendar feed #{id}")))?;
    if feed.created_by != op.name && op.level < crate::domain::Level::L3 {
        return Err(ServiceError::forbidden(format!(
            "calendar feed #{id} was created by {}: only they or an L3 may revoke it",
            feed.created_by
        )));
    }
    if !tx.calendar_feed_revoke(id, &op.name, now).await? {
        return Err(ServiceError::conflict(format!(
            "calendar feed #{id} is already revoked"
        )));
    }
    tx.audit(
        now,
        &op.name,
        "calendar_feed.revoked",
        &format!("calendar_feed:{id}"),
        &serde_json::json!({ "id": id, "label": feed.label, "created_by": feed.created_by }),
    )
    .await?;
    commit(state, tx).await?;
    Ok(Feed {
        revoked_at: Some(now),
        revoked_by: Some(op.name.clone()),
        ..feed
    })
}
