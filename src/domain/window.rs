//! Deployment windows, freezes and change pauses: when a change may run.

use crate::domain::level::{Act, Level};
use chrono::{DateTime, Datelike, Duration, NaiveTime, TimeZone, Utc, Weekday};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use utoipa::ToSchema;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum WindowKind {
    Standard,
    OffPeak,
}

impl WindowKind {
    pub fn label(self) -> &'static str {
        match self {
            WindowKind::Standard => "Standard",
            WindowKind::OffPeak => "Off-peak",
        }
    }
}

impl fmt::Display for WindowKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// One recurring block: on each of `days`, from `start` to `end` (UTC). An `end` at or before
/// `start` runs into the next morning, and belongs to the day it started on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WindowSpec {
    #[serde(with = "weekdays")]
    #[schema(value_type = Vec<String>)]
    pub days: Vec<Weekday>,
    #[serde(with = "hhmm")]
    #[schema(value_type = String, example = "09:00")]
    pub start: NaiveTime,
    #[serde(with = "hhmm")]
    #[schema(value_type = String, example = "16:00")]
    pub end: NaiveTime,
}

/// The configured windows.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    #[serde(default)]
    pub standard: Vec<WindowSpec>,
    #[serde(default)]
    pub off_peak: Vec<WindowSpec>,
}

/// A concrete stretch of time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Interval {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

impl Interval {
    pub fn contains(&self, t: DateTime<Utc>) -> bool {
        self.start <= t && t < self.end
    }
}

impl WindowSpec {
    /// The occurrence that starts on `day`, if this block runs that day.
    fn occurrence_on(&self, day: chrono::NaiveDate) -> Option<Interval> {
        if !self.days.contains(&day.weekday()) {
            return None;
        }
        let start = Utc.from_utc_datetime(&day.and_time(self.start));
        let mut end = Utc.from_utc_datetime(&day.and_time(self.end));
        if end <= start {
            end += Duration::days(1);
        }
        Some(Interval { start, end })
    }
}

impl Schedule {
    fn blocks(&self) -> impl Iterator<Item = (WindowKind, &WindowSpec)> {
        self.standard
            .iter()
            .map(|w| (WindowKind::Standard, w))
            .chain(self.off_peak.iter().map(|w| (WindowKind::OffPeak, w)))
    }

    /// Every window occurrence overlapping `[from, to)`, sorted by start.
    pub fn occurrences(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Vec<(WindowKind, Interval)> {
        let mut out = Vec::new();
        // A block that started the day before may still be running at `from`.
        let mut day = from.date_naive() - Duration::days(1);
        while day <= to.date_naive() {
            for (kind, spec) in self.blocks() {
                if let Some(iv) = spec.occurrence_on(day)
                    && iv.end > from
                    && iv.start < to
                {
                    out.push((kind, iv));
                }
            }
            day += Duration::days(1);
        }
        out.sort_by_key(|(_, iv)| iv.start);
        out
    }

    /// The window open at `t`, with the time it closes. Standard wins where blocks overlap.
    pub fn open_at(&self, t: DateTime<Utc>) -> Option<(WindowKind, DateTime<Utc>)> {
        let open: Vec<_> = self
            .occurrences(t, t + Duration::seconds(1))
            .into_iter()
            .filter(|(_, iv)| iv.contains(t))
            .collect();
        let kind = if open.iter().any(|(k, _)| *k == WindowKind::Standard) {
            WindowKind::Standard
        } else {
            open.first()?.0
        };
        let close = open
            .iter()
            .filter(|(k, _)| *k == kind)
            .map(|(_, iv)| iv.end)
            .max()?;
        Some((kind, close))
    }

    /// The next window to open strictly after `t` (within two weeks).
    pub fn next_opening(&self, t: DateTime<Utc>) -> Option<(WindowKind, DateTime<Utc>)> {
        self.occurrences(t, t + Duration::days(14))
            .into_iter()
            .find(|(_, iv)| iv.start > t)
            .map(|(k, iv)| (k, iv.start))
    }
}

/// A change freeze: only low-risk actions and P1 incident response run inside it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Freeze {
    /// Freezes from the server's configuration have no id and cannot be removed over the API.
    pub id: Option<i64>,
    pub name: String,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
}

impl Freeze {
    pub fn active_at(&self, t: DateTime<Utc>) -> bool {
        self.starts_at <= t && t < self.ends_at
    }
}

/// A change pause: like a freeze, but open-ended until someone resumes changes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Pause {
    pub reason: String,
    pub paused_by: String,
    pub paused_at: DateTime<Utc>,
}

/// The calendar's governance actions, and who may take them. A freeze stops every team's changes
/// for days, so only an L3 announces or removes one; a pause is the process's escalation step
/// ("immediately pause further changes"), which an L2 or L3 takes and ends. The server enforces
/// this and the dashboard asks it before sending, so both say the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Governance {
    AnnounceFreeze,
    RemoveFreeze,
    Pause,
    Resume,
}

impl Governance {
    pub fn min_level(self) -> Level {
        match self {
            Governance::AnnounceFreeze | Governance::RemoveFreeze => Level::L3,
            Governance::Pause | Governance::Resume => Level::L2,
        }
    }

    /// Whether an operator of `level` may take this action; if not, a sentence that says who may.
    pub fn allowed(self, level: Level) -> Result<(), String> {
        let act = match self {
            Governance::AnnounceFreeze => Act::Freeze,
            Governance::RemoveFreeze => Act::RemoveFreeze,
            Governance::Pause => Act::Pause,
            Governance::Resume => Act::Resume,
        };
        act.may(level)?;
        let what = match self {
            Governance::AnnounceFreeze => "announcing a freeze",
            Governance::RemoveFreeze => "removing a freeze",
            Governance::Pause => "pausing changes",
            Governance::Resume => "resuming changes",
        };
        match self.min_level() {
            _ if level >= self.min_level() => Ok(()),
            Level::L3 => Err(format!("{what} needs an L3 operator")),
            _ => Err(format!("{what} needs an L2 or L3 operator")),
        }
    }
}

/// What the calendar says at one instant: the window open (Standard wins an overlap, as in
/// [`Schedule::open_at`]) and the freeze in force. A change pause is left out: it has no end
/// until someone resumes changes, so it never makes a transition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Phase {
    pub window: Option<WindowKind>,
    pub freeze: Option<String>,
}

impl Phase {
    pub fn at(schedule: &Schedule, freezes: &[Freeze], t: DateTime<Utc>) -> Phase {
        Phase {
            window: schedule.open_at(t).map(|(k, _)| k),
            freeze: freezes
                .iter()
                .find(|f| f.active_at(t))
                .map(|f| f.name.clone()),
        }
    }
}

/// The first instant after `t` at which the [`Phase`] differs, and the phases either side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub at: DateTime<Utc>,
    pub before: Phase,
    pub after: Phase,
}

impl Transition {
    /// "Standard window closes", "Off-peak window opens; freeze 'Q4 freeze' ends".
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        match (&self.before.freeze, &self.after.freeze) {
            (Some(a), Some(b)) if a != b => {
                parts.push(format!("freeze '{a}' ends and freeze '{b}' starts"))
            }
            (Some(a), None) => parts.push(format!("freeze '{a}' ends")),
            (None, Some(b)) => parts.push(format!("freeze '{b}' starts")),
            _ => {}
        }
        match (self.before.window, self.after.window) {
            (Some(a), Some(b)) if a != b => {
                parts.push(format!("{a} window closes and {b} window opens"))
            }
            (Some(a), None) => parts.push(format!("{a} window closes")),
            (None, Some(b)) => parts.push(format!("{b} window opens")),
            _ => {}
        }
        parts.join("; ")
    }
}

/// The next transition after `t`: a window opening or closing (looked for within two weeks, as
/// [`Schedule::next_opening`]), or a freeze starting or ending (at any distance). Only the
/// instants where a block starts or ends can change the phase, so only those are examined.
pub fn next_transition(
    schedule: &Schedule,
    freezes: &[Freeze],
    t: DateTime<Utc>,
) -> Option<Transition> {
    let mut edges: Vec<DateTime<Utc>> = schedule
        .occurrences(t, t + Duration::days(14))
        .into_iter()
        .flat_map(|(_, iv)| [iv.start, iv.end])
        .chain(freezes.iter().flat_map(|f| [f.starts_at, f.ends_at]))
        .filter(|e| *e > t)
        .collect();
    edges.sort();
    edges.dedup();
    let before = Phase::at(schedule, freezes, t);
    edges.into_iter().find_map(|at| {
        let after = Phase::at(schedule, freezes, at);
        (after != before).then(|| Transition {
            at,
            before: before.clone(),
            after,
        })
    })
}

/// `2h13m`, `47m`, `3d4h`: how a countdown reads in a status line.
pub fn human_duration(d: Duration) -> String {
    let mins = d.num_minutes().max(0);
    let (days, hours, m) = (mins / 1440, (mins % 1440) / 60, mins % 60);
    match (days, hours) {
        (0, 0) if mins == 0 => format!("{}s", d.num_seconds().max(0)),
        (0, 0) => format!("{m}m"),
        (0, h) => format!("{h}h{m:02}m"),
        (d, h) => format!("{d}d{h}h"),
    }
}

mod weekdays {
    use super::*;
    pub fn serialize<S: Serializer>(days: &[Weekday], s: S) -> Result<S::Ok, S::Error> {
        let names: Vec<String> = days.iter().map(|d| d.to_string().to_lowercase()).collect();
        names.serialize(s)
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Weekday>, D::Error> {
        let names = Vec::<String>::deserialize(d)?;
        names
            .iter()
            .map(|n| {
                n.parse::<Weekday>().map_err(|_| {
                    serde::de::Error::custom(format!(
                        "unknown day '{n}': use mon, tue, wed, thu, fri, sat or sun"
                    ))
                })
            })
            .collect()
    }
}

mod hhmm {
    use super::*;
    pub fn serialize<S: Serializer>(t: &NaiveTime, s: S) -> Result<S::Ok, S::Error> {
        t.format("%H:%M").to_string().serialize(s)
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<NaiveTime, D::Error> {
        let s = String::deserialize(d)?;
        NaiveTime::parse_from_str(&s, "%H:%M").map_err(|_| {
            serde::de::Error::custom(format!("time '{s}' is not valid: use HH:MM, e.g. 09:00"))
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn seed() -> Schedule {
        use Weekday::*;
        let t = |s: &str| NaiveTime::parse_from_str(s, "%H:%M").unwrap();
        Schedule {
            standard: vec![WindowSpec {
                days: vec![Tue, Wed, Thu],
                start: t("09:00"),
                end: t("16:00"),
            }],
            off_peak: vec![WindowSpec {
                days: vec![Mon, Tue, Wed, Thu, Fri],
                start: t("22:00"),
                end: t("06:00"),
            }],
        }
    }

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    /// The process's "Deployment Windows" table, hour by hour. 2026-11-23 is a Monday.
    #[test]
    fn seed_windows_row_by_row() {
        let s = seed();
        let cases = [
            ("2026-11-23T10:00:00Z", None), // Mon day: no standard
            ("2026-11-23T22:00:00Z", Some(WindowKind::OffPeak)), // Mon night
            ("2026-11-24T05:59:59Z", Some(WindowKind::OffPeak)), // into Tue morning
            ("2026-11-24T06:00:00Z", None),
            ("2026-11-24T08:59:59Z", None),
            ("2026-11-24T09:00:00Z", Some(WindowKind::Standard)), // Tue
            ("2026-11-25T15:59:59Z", Some(WindowKind::Standard)), // Wed
            ("2026-11-26T12:00:00Z", Some(WindowKind::Standard)), // Thu
            ("2026-11-26T16:00:00Z", None),
            ("2026-11-27T12:00:00Z", None), // Fri day
            ("2026-11-27T23:00:00Z", Some(WindowKind::OffPeak)), // Fri night
            ("2026-11-28T05:00:00Z", Some(WindowKind::OffPeak)), // Sat morning, from Fri
            ("2026-11-28T23:00:00Z", None), // Sat night
            ("2026-11-29T23:00:00Z", None), // Sun night
            ("2026-11-30T03:00:00Z", None), // Mon early: Sun started none
        ];
        for (t, expected) in cases {
            assert_eq!(s.open_at(at(t)).map(|(k, _)| k), expected, "{t}");
        }
    }

    #[test]
    fn closing_and_next_opening() {
        let s = seed();
        assert_eq!(
            s.open_at(at("2026-11-24T13:47:00Z")),
            Some((WindowKind::Standard, at("2026-11-24T16:00:00Z")))
        );
        assert_eq!(
            s.next_opening(at("2026-11-24T16:00:00Z")),
            Some((WindowKind::OffPeak, at("2026-11-24T22:00:00Z")))
        );
        assert_eq!(
            s.next_opening(at("2026-11-28T12:00:00Z")),
            Some((WindowKind::OffPeak, at("2026-11-30T22:00:00Z")))
        );
    }

    #[test]
    fn occurrences_cover_a_week() {
        let s = seed();
        let week = s.occurrences(at("2026-11-23T00:00:00Z"), at("2026-11-30T00:00:00Z"));
        let standard = week
            .iter()
            .filter(|(k, _)| *k == WindowKind::Standard)
            .count();
        let off_peak = week
            .iter()
            .filter(|(k, _)| *k == WindowKind::OffPeak)
            .count();
        assert_eq!((standard, off_peak), (3, 5));
    }

    fn freeze(name: &str, from: &str, to: &str) -> Freeze {
        Freeze {
            id: Some(7),
            name: name.into(),
            starts_at: at(from),
            ends_at: at(to),
            created_by: None,
        }
    }

    #[test]
    fn next_transition_follows_windows_and_freezes() {
        let s = seed();
        let next = |t: &str, freezes: &[Freeze]| {
            let tr = next_transition(&s, freezes, at(t)).expect("a transition");
            (tr.at, tr.describe())
        };
        // Inside Tuesday's Standard window: it closes at 16:00.
        assert_eq!(
            next("2026-11-24T10:00:00Z", &[]),
            (at("2026-11-24T16:00:00Z"), "Standard window closes".into())
        );
        // Saturday: nothing until Monday's Off-peak.
        assert_eq!(
            next("2026-11-28T12:00:00Z", &[]),
            (at("2026-11-30T22:00:00Z"), "Off-peak window opens".into())
        );
        // A boundary instant belongs to what starts there.
        assert_eq!(
            next("2026-11-24T16:00:00Z", &[]),
            (at("2026-11-24T22:00:00Z"), "Off-peak window opens".into())
        );
        // A freeze starting inside a window comes first, and its end is the next one after.
        let f = [freeze(
            "Q4 freeze",
            "2026-11-24T12:00:00Z",
            "2026-11-24T14:00:00Z",
        )];
        assert_eq!(
            next("2026-11-24T10:00:00Z", &f),
            (
                at("2026-11-24T12:00:00Z"),
                "freeze 'Q4 freeze' starts".into()
            )
        );
        assert_eq!(
            next("2026-11-24T12:30:00Z", &f),
            (at("2026-11-24T14:00:00Z"), "freeze 'Q4 freeze' ends".into())
        );
        // A freeze ending as a window opens: both said, freeze first.
        let f = [freeze(
            "weekend",
            "2026-11-28T00:00:00Z",
            "2026-11-30T22:00:00Z",
        )];
        assert_eq!(
            next("2026-11-29T12:00:00Z", &f).1,
            "freeze 'weekend' ends; Off-peak window opens"
        );
        // No windows and no freezes: nothing ever changes.
        assert_eq!(
            next_transition(&Schedule::default(), &[], at("2026-11-24T10:00:00Z")),
            None
        );
    }

    #[test]
    fn durations_read_like_a_clock() {
        assert_eq!(human_duration(Duration::minutes(133)), "2h13m");
        assert_eq!(human_duration(Duration::minutes(47)), "47m");
        assert_eq!(human_duration(Duration::seconds(30)), "30s");
        assert_eq!(human_duration(Duration::hours(76)), "3d4h");
    }

    #[test]
    fn freezes_are_for_l3_and_pauses_for_l2_and_up() {
        use Governance::*;
        for (action, l1, l2, l3) in [
            (AnnounceFreeze, false, false, true),
            (RemoveFreeze, false, false, true),
            (Pause, false, true, true),
            (Resume, false, true, true),
        ] {
            let got = [Level::L1, Level::L2, Level::L3].map(|l| action.allowed(l).is_ok());
            assert_eq!(got, [l1, l2, l3], "{action:?}");
        }
        assert_eq!(
            AnnounceFreeze.allowed(Level::L2),
            Err("announcing a freeze needs an L3 operator".into())
        );
        assert_eq!(
            Pause.allowed(Level::L1),
            Err("pausing changes needs an L2 or L3 operator".into())
        );
    }
}
