//! A fixed scene for reducer and snapshot tests and the TUI benchmark: no clock, no network.

use crate::config::ServerConfig;
use crate::domain::api::{
    Calendar, CalendarBlock, CatalogEntry, Event, Me, NextWindow, OpenWindow, WindowStatus,
};
use crate::domain::approval::Approval;
use crate::domain::approval::Requirement;
use crate::domain::change::{Change, ChangeState};
use crate::domain::verification::Verification;
use crate::domain::verification::{HealthCheck, RateCheck, Sample, VerificationState};
use crate::domain::window::Pause;
use crate::domain::{Incident, Level, Priority, Risk, WindowKind};
use crate::tui::app::{Effect, Msg, State, update};
use chrono::{DateTime, Duration, Utc};
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

pub fn key(c: char) -> Msg {
    code(KeyCode::Char(c))
}

pub fn code(k: KeyCode) -> Msg {
    Msg::Key(KeyEvent::new(k, KeyModifiers::NONE))
}

/// Types `text` key by key; what the keys asked the server for.
pub fn typed(s: &mut State, text: &str) -> Vec<Effect> {
    text.chars().flat_map(|c| update(s, key(c))).collect()
}

/// Tuesday 10:30 UTC, inside the Standard window.
pub fn now() -> DateTime<Utc> {
    "2026-11-24T10:30:00Z".parse().unwrap()
}

pub fn catalog(level: Level) -> Vec<CatalogEntry> {
    ServerConfig::embedded_default()
        .actions
        .iter()
        .map(|a| CatalogEntry::new(a, level))
        .collect()
}

pub fn change(
    id: i64,
    action: &str,
    risk: Risk,
    by: &str,
    by_level: Level,
    minutes_ago: i64,
) -> Change {
    let created = now() - Duration::minutes(minutes_ago);
    let approvals_required = match risk.approval_needed(by_level) {
        Some(min) => vec![Requirement::Level { min, count: 1 }],
        None => vec![],
    };
    Change {
        id,
        state: if approvals_required.is_empty() {
            ChangeState::Executed
        } else {
            ChangeState::PendingApproval
        },
        action: action.into(),
        risk,
        ticket: format!("CHG-{}", 4700 + id),
        target: ["checkout", "edge-1", "payments", "search"][id as usize % 4].into(),
        params: Default::default(),
        reason: "traffic spike after the campaign mail".into(),
        requested_by: by.into(),
        requested_level: by_level,
        created_at: created,
        updated_at: created,
        expires_at: created + Duration::hours(4),
        approvals: Vec::<Approval>::new(),
        approvals_required,
        warnings: vec![],
        outcome_reason: None,
        decided_by: None,
        output: None,
        rollback_of: None,
        emergency: None,
        captured: None,
        command: None,
        run_at: None,
        conflicts: Vec::new(),
    }
}

/// Dave's medium-risk change scheduled `minutes` from [`now`]: `Scheduled`, or waiting for
/// its approval when `approved` is false.
pub fn scheduled(id: i64, minutes: i64, approved: bool) -> Change {
    let mut c = change(id, "restart-pods", Risk::Medium, "dave", Level::L2, 1);
    c.state = if approved {
        ChangeState::Scheduled
    } else {
        ChangeState::PendingApproval
    };
    c.run_at = Some(now() + Duration::minutes(minutes));
    c
}

/// `who` looking at the scene with dave's change #20 scheduled for tonight and his #21 waiting
/// for approval to run tomorrow night, on the pane whose number key is `pane`.
pub fn with_schedule(who: &str, level: Level, pane: char) -> State {
    let mut s = scene(who, level);
    update(
        &mut s,
        Msg::Changes(Ok(vec![
            scheduled(20, 11 * 60 + 30, true),
            scheduled(21, 36 * 60, false),
        ])),
    );
    update(&mut s, key(pane));
    s
}

/// The dashboard's message line, or nothing.
pub fn said(s: &State) -> String {
    s.message.as_ref().map(|m| m.1.clone()).unwrap_or_default()
}

const REQUESTERS: [(&str, Level); 6] = [
    ("alice", Level::L1),
    ("dave", Level::L2),
    ("erin", Level::L1),
    ("bob", Level::L2),
    ("frank", Level::L1),
    ("grace-long-name", Level::L2),
];
const ACTIONS: [(&str, Risk); 5] = [
    ("blacklist-ip", Risk::High),
    ("maintenance-mode", Risk::High),
    ("failover-region", Risk::High),
    ("pause-enrolments", Risk::High),
    ("rotate-secrets", Risk::Critical),
];
const TARGETS: [&str; 5] = [
    "checkout",
    "edge-1",
    "payments",
    "search",
    "reports-eu-west-2",
];

/// One change of a busy day, requester, action and target spread by id; pending unless its
/// risk needs no approval from its requester.
pub fn busy_change(id: i64, seconds_ago: i64) -> Change {
    let (by, by_level) = REQUESTERS[id as usize % REQUESTERS.len()];
    let (action, risk) = ACTIONS[(id as usize / 7) % ACTIONS.len()];
    let mut c = change(id, action, risk, by, by_level, 0);
    c.created_at = now() - Duration::seconds(seconds_ago);
    c.updated_at = c.created_at;
    c.expires_at = c.created_at + Duration::hours(4);
    c.target = TARGETS[id as usize % TARGETS.len()].into();
    c.params = [("ip".to_string(), format!("203.0.113.{}", id % 250))].into();
    c.reason = "credential stuffing from one address after the campaign mail".into();
    c.warnings = vec!["off-peak preferred: high-risk changes belong in the Off-peak window".into()];
    c
}

/// `n` pending changes (and the odd executed one, for history), ages spread over four hours.
pub fn busy_queue(n: usize) -> Vec<Change> {
    let mut out = Vec::with_capacity(n + n / 4);
    let mut id = 1;
    let mut pending = 0;
    while pending < n {
        let c = busy_change(id, (id * 7919) % (4 * 3600));
        if c.state == ChangeState::PendingApproval {
            pending += 1;
        }
        out.push(c);
        id += 1;
    }
    out
}

pub fn event(seq: i64, kind: &str, summary: &str, data: serde_json::Value) -> Event {
    Event {
        seq,
        at: now() - Duration::seconds(100 - seq),
        kind: kind.into(),
        actor: "alice".into(),
        summary: summary.into(),
        data,
    }
}

/// The dashboard as `me` sees it once everything has loaded.
pub fn scene(me: &str, level: Level) -> State {
    scene_with(
        me,
        level,
        vec![
            change(1, "blacklist-ip", Risk::High, "alice", Level::L1, 12),
            change(2, "rotate-secrets", Risk::Critical, "dave", Level::L2, 40),
            change(3, "maintenance-mode", Risk::High, "alice", Level::L1, 3),
            change(4, "rotate-secrets", Risk::Critical, "bob", Level::L2, 5),
            change(5, "scale-service", Risk::Medium, "bob", Level::L2, 30),
        ],
        vec![watched()],
    )
}

/// Change #5 under verification, sampled healthy, with 11m40s to go.
pub fn watched() -> Verification {
    Verification {
        id: 1,
        change_id: 5,
        target: "search".into(),
        action: "scale-service".into(),
        started_at: now() - Duration::seconds(200),
        deadline: now() + Duration::seconds(700),
        state: VerificationState::Watching,
        health_checked: true,
        error_rate_checked: true,
        max_error_rate: Some(0.01),
        last_sample: Some(Sample {
            at: now() - Duration::seconds(2),
            due: now() - Duration::seconds(2),
            health: Some(HealthCheck {
                ok: true,
                detail: "200 in 3 ms".into(),
            }),
            error_rate: Some(
                RateCheck::reading(0.0042, 0.01)
                    .from_source("CloudWatch AWS/ApplicationELB Target_5XX/RequestCount".into()),
            ),
        }),
        recent_error_rates: vec![
            Some(0.001),
            Some(0.002),
            Some(0.0015),
            None,
            Some(0.004),
            Some(0.0042),
        ],
        summary: None,
        decided_by: None,
        note: None,
        incident: None,
    }
}

/// 3 a.m.: carol escalated the verification of change #5 ten minutes ago, declaring P2 incident
/// INC-2026-1124-001 with herself in command, and changes are paused.
pub fn escalated_scene(me: &str, level: Level) -> State {
    let mut v = watched();
    v.state = VerificationState::Escalated;
    v.decided_by = Some("carol".into());
    v.incident = Some(INCIDENT.into());
    v.note = Some("5xx on search".into());
    let mut s = scene_with(
        me,
        level,
        scene("bob", Level::L2)
            .approvals
            .changes()
            .values()
            .cloned()
            .collect(),
        vec![v],
    );
    let declared = now() - Duration::minutes(10);
    update(
        &mut s,
        Msg::Incidents(Ok(vec![Incident {
            id: 1,
            ticket: INCIDENT.into(),
            priority: Priority::P2,
            title: "change #5 (scale-service on search) caused unexpected impact: 5xx on search"
                .into(),
            commander: "carol".into(),
            commander_level: Some(crate::domain::Level::L3),
            declared_by: "carol".into(),
            declared_at: declared,
            closed_at: None,
        }])),
    );
    let mut status = s.windows.window.clone().expect("the scene's window status");
    status.pause = Some(Pause {
        reason: format!("escalation of change #5 ({INCIDENT}): 5xx on search"),
        paused_by: "carol".into(),
        paused_at: declared,
    });
    update(&mut s, Msg::WindowStatus(Ok(status)));
    s.message = None;
    s
}

/// The incident of [`escalated_scene`].
pub const INCIDENT: &str = "INC-2026-1124-001";

/// The dashboard as `me` sees it once `changes` and `verifications` have loaded.
pub fn scene_with(
    me: &str,
    level: Level,
    changes: Vec<Change>,
    verifications: Vec<Verification>,
) -> State {
    let mut s = State::new("http://127.0.0.1:7878", now());
    let _ = s.initial_effects();
    update(
        &mut s,
        Msg::Me(Ok(Me {
            name: me.into(),
            level,
        })),
    );
    update(&mut s, Msg::Actions(Ok(catalog(level))));
    update(&mut s, Msg::Changes(Ok(changes)));
    let today = now().date_naive().and_hms_opt(0, 0, 0).unwrap().and_utc();
    update(
        &mut s,
        Msg::WindowStatus(Ok(WindowStatus {
            now: now(),
            open: Some(OpenWindow {
                kind: WindowKind::Standard,
                closes_at: today + Duration::hours(16),
            }),
            next: Some(NextWindow {
                kind: WindowKind::OffPeak,
                opens_at: today + Duration::hours(22),
            }),
            freeze: None,
            pause: None,
            summary: "STANDARD window open, closes in 5h30m".into(),
        })),
    );
    let monday = today - Duration::days(1);
    let schedule = ServerConfig::embedded_default().windows;
    let mut blocks: Vec<CalendarBlock> = schedule
        .occurrences(monday, monday + Duration::days(7))
        .into_iter()
        .map(|(k, iv)| CalendarBlock {
            kind: if k == WindowKind::Standard {
                "standard"
            } else {
                "off_peak"
            }
            .into(),
            name: k.label().into(),
            start: iv.start,
            end: iv.end,
            freeze_id: None,
        })
        .collect();
    blocks.push(CalendarBlock {
        kind: "freeze".into(),
        name: "Black Friday".into(),
        start: monday + Duration::days(4),
        end: monday + Duration::days(5),
        freeze_id: Some(1),
    });
    update(
        &mut s,
        Msg::Calendar(Ok(Calendar {
            from: monday,
            to: monday + Duration::days(7),
            blocks,
            pause: None,
        })),
    );
    update(&mut s, Msg::Verifications(Ok(verifications)));
    update(&mut s, Msg::Incidents(Ok(Vec::new())));
    update(&mut s, Msg::StreamUp);
    for (i, summary) in [
        "bob requested scale-service on search (CHG-4705): runs now",
        "change #5 executed: scale-service on search",
        "alice requested blacklist-ip on edge-1 (CHG-4701): needs L2+ approval",
    ]
    .into_iter()
    .enumerate()
    {
        update(
            &mut s,
            Msg::ServerEvent(Box::new(event(
                i as i64 + 1,
                "note",
                summary,
                serde_json::json!({}),
            ))),
        );
    }
    s.message = None;
    s
}
