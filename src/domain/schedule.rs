//! Scheduled changes and conflicts (issue 11), as pure rules: when a `run_at` is acceptable,
//! which window `next_window` means, when a scheduled change is missed, and which changes on
//! the same target overlap a new one.
//!
//! The server (`server/changes/schedule.rs`, `request.rs`) reads the clock and the database and
//! asks these functions; the policy itself (`policy.rs`) is asked as of the `run_at`.

use crate::domain::action::Risk;
use crate::domain::change::{Change, ChangeState, Conflict};
use crate::domain::level::Level;
use crate::domain::operator::Operator;
use crate::domain::window::{Freeze, Schedule, WindowKind};
use chrono::{DateTime, Duration, Utc};

/// How far ahead a change may be scheduled. Further out, the catalog, the windows and the
/// people who approved it have all moved on; request it nearer the time.
pub const HORIZON_DAYS: i64 = 90;

/// What a request's `run_at` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunAt {
    At(DateTime<Utc>),
    NextWindow,
}

/// The value `run_at` takes for "the next usable window", in the API and the CLI (which also
/// accepts `next-window`).
pub const NEXT_WINDOW: &str = "next_window";

impl RunAt {
    /// `next_window` (or `next-window`), or an RFC 3339 time.
    pub fn parse(s: &str) -> Result<RunAt, String> {
        let s = s.trim();
        if s == NEXT_WINDOW || s == "next-window" {
            return Ok(RunAt::NextWindow);
        }
        DateTime::parse_from_rfc3339(s)
            .map(|t| RunAt::At(t.with_timezone(&Utc)))
            .map_err(|_| {
                format!(
                    "run_at '{}' is not a time: give an RFC 3339 time such as \
                     2026-11-24T22:00:00Z, or \"{NEXT_WINDOW}\"",
                    s.chars().take(64).collect::<String>()
                )
            })
    }
}

fn when(t: DateTime<Utc>) -> String {
    t.format("%a %Y-%m-%d %H:%M UTC").to_string()
}

/// Whether `run_at` may be asked for at `now`: in the future, and within [`HORIZON_DAYS`].
pub fn check_run_at(run_at: DateTime<Utc>, now: DateTime<Utc>) -> Result<(), String> {
    if run_at <= now {
        return Err(format!(
            "run_at {} is not in the future (the server's time is {}): give a later time, or \
             \"{NEXT_WINDOW}\", or leave run_at out to run the change now",
            when(run_at),
            when(now)
        ));
    }
    if run_at > now + Duration::days(HORIZON_DAYS) {
        return Err(format!(
            "run_at {} is more than {HORIZON_DAYS} days ahead: schedule it at most {HORIZON_DAYS} \
             days ahead (until {}), or request it nearer the time",
            when(run_at),
            when(now + Duration::days(HORIZON_DAYS))
        ));
    }
    Ok(())
}

/// The next opening after `now` of a window a change of `risk` may use: one that no freeze
/// covers at its opening, and for high and critical risk an Off-peak one if there is any within
/// the horizon (the process: "Off-peak: preferred for high-risk changes").
pub fn next_window(
    schedule: &Schedule,
    freezes: &[Freeze],
    risk: Risk,
    now: DateTime<Utc>,
) -> Option<(WindowKind, DateTime<Utc>)> {
    let openings: Vec<(WindowKind, DateTime<Utc>)> = schedule
        .occurrences(now, now + Duration::days(HORIZON_DAYS))
        .into_iter()
        .filter(|(_, iv)| iv.start > now)
        .filter(|(_, iv)| !freezes.iter().any(|f| f.active_at(iv.start)))
        .map(|(k, iv)| (k, iv.start))
        .collect();
    let preferred = (risk >= Risk::High)
        .then(|| openings.iter().find(|(k, _)| *k == WindowKind::OffPeak))
        .flatten();
    preferred.or(openings.first()).copied()
}

/// Whether a change due at `run_at` may still start at `now`: not once `grace` has passed.
pub fn missed(run_at: DateTime<Utc>, now: DateTime<Utc>, grace: Duration) -> bool {
    now >= run_at + grace
}

/// The sentence a missed change ends with.
pub fn missed_reason(state: ChangeState, run_at: DateTime<Utc>, grace: Duration) -> String {
    let why = if state == ChangeState::PendingApproval {
        "it was still waiting for approval"
    } else {
        "the server could not start it (was it stopped?)"
    };
    format!(
        "missed: not started within {} minutes of its time ({}): {why}; a scheduled change is \
         never run late, so request it again",
        grace.num_minutes(),
        when(run_at)
    )
}

/// Why an operator may not cancel a change. The server and the dashboard each put it in their
/// own words (a 403 or 409 there, one message line here), from this one rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelRefusal {
    /// Neither its requester nor an L2 or L3.
    NotTheirs,
    /// Not waiting for its time: neither scheduled nor waiting for approval with a `run_at`.
    NotWaiting,
}

/// Whether `who` may cancel `c`: its requester or an L2+, while it waits for its time (a change
/// waiting for approval without a `run_at` is withdrawn or denied instead). Observers are
/// refused before this is asked ([`crate::domain::Act::Cancel`]).
pub fn may_cancel(c: &Change, who: &Operator) -> Result<(), CancelRefusal> {
    if who.name != c.requested_by && who.level < Level::L2 {
        return Err(CancelRefusal::NotTheirs);
    }
    let waiting = c.state == ChangeState::Scheduled
        || (c.state == ChangeState::PendingApproval && c.run_at.is_some());
    if waiting {
        Ok(())
    } else {
        Err(CancelRefusal::NotWaiting)
    }
}

/// A stretch of time a change keeps its target busy; `end: None` is open-ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    pub start: DateTime<Utc>,
    pub end: Option<DateTime<Utc>>,
}

impl Period {
    fn overlaps(&self, other: &Period) -> bool {
        let before = |end: Option<DateTime<Utc>>, start| end.is_some_and(|e| e <= start);
        !before(self.end, other.start) && !before(other.end, self.start)
    }
}

/// The period a new change will keep its target busy: from its `run_at` (or now) to the end of
/// its verification; a change waiting for approval without a `run_at` may run any time until
/// it expires.
pub fn period_of_new(
    run_at: Option<DateTime<Utc>>,
    waits_for_approval: bool,
    expires_at: DateTime<Utc>,
    now: DateTime<Utc>,
    verification: Duration,
) -> Period {
    match run_at {
        Some(t) => Period {
            start: t,
            end: Some(t + verification),
        },
        None if waits_for_approval => Period {
            start: now,
            end: Some(expires_at + verification),
        },
        None => Period {
            start: now,
            end: Some(now + verification),
        },
    }
}

/// The active period of an existing change, and what makes it active; `None` when it is not
/// active (decided, or executed and verified).
fn active(
    c: &Change,
    verification_until: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    verification: Duration,
) -> Option<(Period, &'static str)> {
    let after_run = |t: DateTime<Utc>| Some(t + verification);
    match c.state {
        ChangeState::PendingApproval => Some(match c.run_at {
            Some(t) => (
                Period {
                    start: t,
                    end: after_run(t),
                },
                "scheduled, waiting for approval",
            ),
            None => (
                Period {
                    start: c.created_at,
                    end: after_run(c.expires_at),
                },
                "pending approval",
            ),
        }),
        ChangeState::Scheduled => {
            let t = c.run_at.unwrap_or(now);
            Some((
                Period {
                    start: t,
                    end: after_run(t),
                },
                "scheduled",
            ))
        }
        // Its verification starts when the command ends, which nobody knows yet.
        ChangeState::Executing => Some((
            Period {
                start: c.updated_at,
                end: None,
            },
            "executing",
        )),
        ChangeState::Executed => verification_until.map(|until| {
            (
                Period {
                    start: c.updated_at,
                    end: Some(until),
                },
                "under verification",
            )
        }),
        _ => None,
    }
}

/// `10:45 UTC` today (as `now` reads), else `Tue 2026-11-24 10:45 UTC`.
fn short_time(t: DateTime<Utc>, now: DateTime<Utc>) -> String {
    if t.date_naive() == now.date_naive() {
        t.format("%H:%M UTC").to_string()
    } else {
        when(t)
    }
}

/// Whether a change of `risk` takes part in conflicts: a low-risk action is read-only by the
/// process's table (pull-logs: "execute directly", no window, not watched afterwards), so it
/// neither keeps a target busy nor is held back by a change that does.
pub fn may_conflict(risk: Risk) -> bool {
    risk != Risk::Low
}

/// The changes among `live` (on the same target, with the deadline of a running verification)
/// whose active period overlaps `mine`, each with its sentence: "conflicts with #12
/// restart-pods on checkout (under verification until 10:45 UTC, by dave)". `except` is the
/// change itself, when it is already stored. Low-risk changes are left out (see
/// [`may_conflict`]).
pub fn conflicts<'a>(
    mine: Period,
    live: impl IntoIterator<Item = (&'a Change, Option<DateTime<Utc>>)>,
    except: Option<i64>,
    now: DateTime<Utc>,
    verification: Duration,
) -> Vec<Conflict> {
    let mut out: Vec<Conflict> = live
        .into_iter()
        .filter(|(c, _)| Some(c.id) != except && may_conflict(c.risk))
        .filter_map(|(c, until)| {
            let (period, activity) = active(c, until, now, verification)?;
            if !period.overlaps(&mine) {
                return None;
            }
            let (from, until) = match c.state {
                ChangeState::Scheduled | ChangeState::PendingApproval if c.run_at.is_some() => {
                    (Some(period.start), period.end)
                }
                ChangeState::Executed => (None, period.end),
                _ => (None, None),
            };
            let detail = match (from, until) {
                (Some(f), _) if c.state == ChangeState::PendingApproval => {
                    format!("scheduled for {}, waiting for approval", short_time(f, now))
                }
                (Some(f), _) => format!("{activity} for {}", short_time(f, now)),
                (None, Some(u)) => format!("{activity} until {}", short_time(u, now)),
                (None, None) => activity.to_string(),
            };
            Some(Conflict {
                change_id: c.id,
                action: c.action.clone(),
                target: c.target.clone(),
                state: c.state,
                requested_by: c.requested_by.clone(),
                activity: activity.to_string(),
                from,
                until,
                message: format!(
                    "conflicts with #{} {} on {} ({detail}, by {})",
                    c.id, c.action, c.target, c.requested_by
                ),
            })
        })
        .collect();
    out.sort_by_key(|c| c.change_id);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn change(id: i64, state: ChangeState, run_at: Option<&str>) -> Change {
        let created = at("2026-11-24T10:00:00Z");
        Change {
            id,
            state,
            action: "restart-pods".into(),
            risk: Risk::Medium,
            ticket: "CHG-1".into(),
            target: "checkout".into(),
            params: Default::default(),
            reason: "r".into(),
            requested_by: "dave".into(),
            requested_level: Level::L2,
            created_at: created,
            updated_at: created,
            expires_at: created + Duration::hours(4),
            approvals: vec![],
            approvals_required: vec![],
            warnings: vec![],
            outcome_reason: None,
            decided_by: None,
            output: None,
            rollback_of: None,
            emergency: None,
            captured: None,
            command: None,
            run_at: run_at.map(at),
            conflicts: vec![],
        }
    }

    #[test]
    fn a_change_is_cancelled_by_its_requester_or_an_l2_while_it_waits_for_its_time() {
        let who = |name: &str, level| Operator {
            name: name.into(),
            level,
        };
        let t = Some("2026-11-24T22:00:00Z");
        let scheduled = change(1, ChangeState::Scheduled, t);
        let waiting = change(2, ChangeState::PendingApproval, t);
        let pending = change(3, ChangeState::PendingApproval, None);
        let ran = change(4, ChangeState::Executed, t);
        for c in [&scheduled, &waiting] {
            assert_eq!(may_cancel(c, &who("dave", Level::L2)), Ok(()));
            assert_eq!(may_cancel(c, &who("bob", Level::L2)), Ok(()));
            assert_eq!(
                may_cancel(c, &who("alice", Level::L1)),
                Err(CancelRefusal::NotTheirs)
            );
        }
        let mut own = scheduled.clone();
        own.requested_by = "alice".into();
        assert_eq!(may_cancel(&own, &who("alice", Level::L1)), Ok(()));
        for c in [&pending, &ran] {
            assert_eq!(
                may_cancel(c, &who("dave", Level::L2)),
                Err(CancelRefusal::NotWaiting)
            );
        }
    }

    #[test]
    fn run_at_is_a_time_or_next_window() {
        assert_eq!(RunAt::parse("next_window"), Ok(RunAt::NextWindow));
        assert_eq!(RunAt::parse("next-window"), Ok(RunAt::NextWindow));
        assert_eq!(
            RunAt::parse("2026-11-24T23:00:00+01:00"),
            Ok(RunAt::At(at("2026-11-24T22:00:00Z")))
        );
        let err = RunAt::parse("tonight").unwrap_err();
        assert!(
            err.contains("RFC 3339") && err.contains("next_window"),
            "{err}"
        );
    }

    #[test]
    fn run_at_must_be_ahead_but_not_too_far() {
        let now = at("2026-11-24T10:00:00Z");
        assert!(check_run_at(at("2026-11-24T22:00:00Z"), now).is_ok());
        let past = check_run_at(at("2026-11-24T09:00:00Z"), now).unwrap_err();
        assert!(past.contains("not in the future"), "{past}");
        assert!(check_run_at(now, now).is_err());
        let far = check_run_at(now + Duration::days(HORIZON_DAYS + 1), now).unwrap_err();
        assert!(far.contains("more than 90 days ahead"), "{far}");
        assert!(check_run_at(now + Duration::days(HORIZON_DAYS), now).is_ok());
    }

    #[test]
    fn next_window_prefers_off_peak_for_high_risk_and_skips_freezes() {
        let s = crate::domain::window::tests::seed();
        // Monday 10:00: the next opening is Monday's Off-peak at 22:00 either way.
        let mon = at("2026-11-23T10:00:00Z");
        assert_eq!(
            next_window(&s, &[], Risk::Medium, mon),
            Some((WindowKind::OffPeak, at("2026-11-23T22:00:00Z")))
        );
        // Tuesday 07:00: Standard opens at 09:00, Off-peak at 22:00.
        let tue = at("2026-11-24T07:00:00Z");
        assert_eq!(
            next_window(&s, &[], Risk::Medium, tue),
            Some((WindowKind::Standard, at("2026-11-24T09:00:00Z")))
        );
        assert_eq!(
            next_window(&s, &[], Risk::High, tue),
            Some((WindowKind::OffPeak, at("2026-11-24T22:00:00Z")))
        );
        // A freeze over Tuesday night moves a high-risk change to Wednesday night.
        let freeze = Freeze {
            id: Some(1),
            name: "launch".into(),
            starts_at: at("2026-11-24T20:00:00Z"),
            ends_at: at("2026-11-25T12:00:00Z"),
            created_by: None,
        };
        assert_eq!(
            next_window(&s, std::slice::from_ref(&freeze), Risk::Critical, tue),
            Some((WindowKind::OffPeak, at("2026-11-25T22:00:00Z")))
        );
        assert_eq!(
            next_window(&Schedule::default(), &[], Risk::High, tue),
            None
        );
    }

    #[test]
    fn missed_after_the_grace_period_only() {
        let t = at("2026-11-24T22:00:00Z");
        let grace = Duration::minutes(10);
        assert!(!missed(t, t, grace));
        assert!(!missed(t, t + Duration::minutes(9), grace));
        assert!(missed(t, t + Duration::minutes(10), grace));
        let why = missed_reason(ChangeState::Scheduled, t, grace);
        assert!(
            why.contains("not started within 10 minutes") && why.contains("never run late"),
            "{why}"
        );
    }

    #[test]
    fn conflicts_name_the_overlapping_changes() {
        let now = at("2026-11-24T10:30:00Z");
        let ver = Duration::minutes(15);
        let mut verifying = change(12, ChangeState::Executed, None);
        verifying.updated_at = at("2026-11-24T10:30:00Z");
        let scheduled = change(13, ChangeState::Scheduled, Some("2026-11-24T22:00:00Z"));
        let pending = change(14, ChangeState::PendingApproval, None);
        let done = change(15, ChangeState::Executed, None);
        let denied = change(16, ChangeState::Denied, None);
        let live = [
            (&verifying, Some(at("2026-11-24T10:45:00Z"))),
            (&scheduled, None),
            (&pending, None),
            (&done, None),
            (&denied, None),
        ];
        // Now, for fifteen minutes: the verification and the pending change.
        let mine = period_of_new(None, false, now, now, ver);
        let found = conflicts(mine, live, None, now, ver);
        let ids: Vec<i64> = found.iter().map(|c| c.change_id).collect();
        assert_eq!(ids, vec![12, 14]);
        assert_eq!(
            found[0].message,
            "conflicts with #12 restart-pods on checkout (under verification until 10:45 UTC, \
             by dave)"
        );
        assert_eq!(
            found[1].message,
            "conflicts with #14 restart-pods on checkout (pending approval, by dave)"
        );
        // At 22:05: the scheduled one (22:00 to 22:15) and the pending one (it may run until
        // 14:00 and be verified until 14:15) no longer.
        let later = period_of_new(Some(at("2026-11-24T22:05:00Z")), true, now, now, ver);
        let found = conflicts(later, live, None, now, ver);
        assert_eq!(found.len(), 1);
        assert_eq!(
            found[0].message,
            "conflicts with #13 restart-pods on checkout (scheduled for 22:00 UTC, by dave)"
        );
        assert_eq!(found[0].from, Some(at("2026-11-24T22:00:00Z")));
        // At 22:15 exactly, the scheduled one's verification is over: no overlap.
        let after = period_of_new(Some(at("2026-11-24T22:15:00Z")), false, now, now, ver);
        assert!(conflicts(after, live, None, now, ver).is_empty());
        // A change does not conflict with itself.
        assert!(conflicts(later, live, Some(13), now, ver).is_empty());
        // A low-risk (read-only) change keeps no target busy.
        let mut logs = change(17, ChangeState::Executing, None);
        logs.risk = Risk::Low;
        assert!(conflicts(mine, [(&logs, None)], None, now, ver).is_empty());
        assert!(!may_conflict(Risk::Low) && may_conflict(Risk::Medium));
    }
}
