//! The change policy as one pure function: who may run what, when, with whose approval.
//!
//! The server calls [`decide`] when a change is requested or previewed, and again when the last
//! approval arrives, so a window that closed in between refuses the change.

use crate::domain::action::{ActionSpec, Risk};
use crate::domain::approval::{ApprovalRule, Requirement};
use crate::domain::incident::{Incident, Priority};
use crate::domain::level::{Act, Level};
use crate::domain::operator::Operator;
use crate::domain::ticket::{Ticket, TicketKind};
use crate::domain::window::{Freeze, Governance, Pause, Schedule, WindowKind, human_duration};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Everything the policy looks at. The caller looks up the incident the ticket names.
#[derive(Debug, Clone, Copy)]
pub struct PolicyInput<'a> {
    pub action: &'a ActionSpec,
    pub ticket: &'a Ticket,
    pub requester: &'a Operator,
    pub now: DateTime<Utc>,
    pub schedule: &'a Schedule,
    pub freezes: &'a [Freeze],
    pub pause: Option<&'a Pause>,
    /// The incident declared in CommandBridge under this ticket, if any.
    pub incident: Option<&'a Incident>,
    /// The server's stricter approval rule for this action's risk, if it has one.
    pub approval_rule: Option<&'a ApprovalRule>,
    /// For the rollback of a change whose verification escalated: the incident that escalation
    /// declared. Undoing the change that caused an incident is that incident's response, so the
    /// rollback takes the emergency path (its commander approves) through the pause the
    /// escalation started, whatever ticket it carries.
    pub escalated: Option<&'a Incident>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Execute,
    NeedsApproval,
    Blocked,
}

/// The rule that blocked a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    Freeze,
    Pause,
    Window,
    Emergency,
    /// The requester is an observer, who requests nothing whatever the risk or the hour.
    Observer,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Decision {
    pub decision: Outcome,
    /// Why, in sentences an operator can act on.
    pub reasons: Vec<String>,
    pub approvals_required: Vec<Requirement>,
    pub warnings: Vec<String>,
    /// Set when the decision is `blocked`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocked_by: Option<Rule>,
    /// The incident whose emergency path lets this change through a freeze, a pause or the
    /// hours outside the windows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub emergency: Option<String>,
}

impl Decision {
    fn blocked(rule: Rule, reason: String) -> Decision {
        Decision {
            decision: Outcome::Blocked,
            reasons: vec![reason],
            approvals_required: Vec::new(),
            warnings: Vec::new(),
            blocked_by: Some(rule),
            emergency: None,
        }
    }
}

fn at(t: DateTime<Utc>, now: DateTime<Utc>) -> String {
    format!(
        "{} (in {})",
        t.format("%a %Y-%m-%d %H:%M UTC"),
        human_duration(t - now)
    )
}

/// "an L3" or "an L2 or L3": who meets a level requirement.
fn an_approver_of(min: Level) -> &'static str {
    if min == Level::L3 {
        "an L3"
    } else {
        "an L2 or L3"
    }
}

/// The refusal during a pause: what may still run, and how changes resume and who may resume
/// them, so whoever reads it at 3 a.m. knows the next step.
fn paused(pause: &Pause, requester: &Operator) -> String {
    let who = Governance::Resume.min_level();
    let you = if requester.level >= who {
        "you may resume them yourself".to_string()
    } else {
        format!("you are {}: ask one of them", requester.level)
    };
    format!(
        "changes are paused since {} by {}: \"{}\"; only low-risk actions, changes for a \
         declared P1 incident and the rollback of the change that escalated may run. To resume, \
         {} resumes changes once the incident is under control (dashboard: Windows pane; API: \
         DELETE /api/v1/pause); {you}",
        pause.paused_at.format("%Y-%m-%d %H:%M UTC"),
        pause.paused_by,
        pause.reason,
        an_approver_of(who),
    )
}

/// The decision for a change requested now, before any approval.
pub fn decide(input: &PolicyInput) -> Decision {
    let PolicyInput {
        action,
        ticket,
        requester,
        now,
        schedule,
        ..
    } = *input;
    let risk = action.risk;
    let mut reasons = Vec::new();
    let mut warnings = Vec::new();
    let mut required = Vec::new();

    // The API refuses an observer's request before asking; what `GET /windows/at` tells one
    // must not be an L1's answer ("executes directly") for a change they cannot make.
    if let Err(why) = Act::Request.may(requester.level) {
        return Decision::blocked(Rule::Observer, why);
    }
    if risk == Risk::Low {
        reasons.push(format!(
            "{} is low risk: it needs a ticket but no window or approval",
            action.name
        ));
        return Decision {
            decision: Outcome::Execute,
            reasons,
            approvals_required: required,
            warnings,
            blocked_by: None,
            emergency: None,
        };
    }

    let escalated = input.escalated.filter(|i| i.is_open());
    let incident = input
        .incident
        .filter(|i| ticket.kind == TicketKind::Incident && i.ticket == ticket.as_str())
        .or(escalated);
    let open_p1 = incident.filter(|i| i.is_open() && i.priority == Priority::P1);
    let next_window = schedule
        .next_opening(now)
        .map(|(kind, t)| format!("the {kind} window opens {}", at(t, now)))
        .unwrap_or_else(|| "no window is configured in the next two weeks".into());

    // A freeze or a pause lets through only response to a declared P1 incident.
    let mut emergency = None;
    if let Some(freeze) = input.freezes.iter().find(|f| f.active_at(now)) {
        let Some(p1) = open_p1 else {
            return Decision::blocked(
                Rule::Freeze,
                format!(
                    "change freeze '{}' is in force until {}: only low-risk actions and changes \
                     for a declared P1 incident may run; wait until it ends, or use the INC \
                     ticket of a P1 incident declared in CommandBridge",
                    freeze.name,
                    at(freeze.ends_at, now)
                ),
            );
        };
        reasons.push(format!(
            "freeze '{}' is in force; allowed as response to P1 incident {}",
            freeze.name, p1.ticket
        ));
        emergency = Some(p1);
    }
    if let Some(pause) = input.pause {
        if let Some(p1) = open_p1 {
            reasons.push(format!(
                "changes are paused; allowed as response to P1 incident {}",
                p1.ticket
            ));
            emergency = Some(p1);
        } else if let Some(inc) = escalated {
            reasons.push(format!(
                "changes are paused; allowed as the rollback of the change whose escalation \
                 declared incident {}",
                inc.ticket
            ));
            emergency = Some(inc);
        } else {
            return Decision::blocked(Rule::Pause, paused(pause, requester));
        }
    }

    // The rollback of an escalated change is incident response whatever its ticket says.
    let kind = if escalated.is_some() {
        TicketKind::Incident
    } else {
        ticket.kind
    };
    match (schedule.open_at(now), kind) {
        (Some((kind, closes)), _) => {
            reasons.push(format!(
                "inside the {kind} window, which closes {}",
                at(closes, now)
            ));
            if kind == WindowKind::Standard && risk >= Risk::High {
                warnings.push(format!(
                    "off-peak preferred: {risk}-risk changes belong in the Off-peak window"
                ));
            }
        }
        (None, TicketKind::Change) => {
            return Decision::blocked(
                Rule::Window,
                format!(
                    "outside the deployment windows: a {risk}-risk change with a CHG ticket runs \
                     only in a Standard or Off-peak window; {next_window}. For incident \
                     response, use the INC ticket of a P1 or P2 incident declared in CommandBridge"
                ),
            );
        }
        (None, TicketKind::Incident) => {
            let inc = match incident {
                None => {
                    return Decision::blocked(
                        Rule::Emergency,
                        format!(
                            "outside the deployment windows, a change with an INC ticket is an \
                             emergency change, and {ticket} is not an incident declared in \
                             CommandBridge: declare it as P1 or P2 (incident declare) and use the \
                             ticket it gets, or wait: {next_window}"
                        ),
                    );
                }
                Some(i) if !i.is_open() => {
                    return Decision::blocked(
                        Rule::Emergency,
                        format!(
                            "incident {ticket} is closed, so it allows no emergency change; \
                             {next_window}"
                        ),
                    );
                }
                Some(i) if i.priority > Priority::P2 => {
                    return Decision::blocked(
                        Rule::Emergency,
                        format!(
                            "emergency changes outside the windows are for P1 and P2 incidents \
                             only, and {} is {}; {next_window}",
                            i.ticket, i.priority
                        ),
                    );
                }
                Some(i) => i,
            };
            reasons.push(format!(
                "outside the deployment windows: emergency change for {} incident {}",
                inc.priority, inc.ticket
            ));
            emergency = Some(inc);
        }
    }

    let rule = input.approval_rule;
    let needed = match rule {
        Some(r) => Some(r.min_level),
        None => risk.approval_needed(requester.level),
    };
    let count = rule.map_or(1, |r| r.count.max(1));
    match needed {
        Some(min) if count > 1 => reasons.push(format!(
            "{risk} risk: the server's approval rule asks for {count} distinct approvers of {}, \
             never the requester",
            an_approver_of(min)
        )),
        Some(min) => reasons.push(format!(
            "{risk} risk requested by {}: needs the approval of {}",
            requester.level,
            an_approver_of(min)
        )),
        None => reasons.push(format!(
            "{risk} risk: {} executes directly",
            requester.level
        )),
    }
    // The emergency, freeze and pause paths always involve someone besides the requester: the
    // commander, or (when the requester commands the incident) an L2+ reviewer; and always
    // someone of L2 or above.
    let mut level = needed;
    if let Some(inc) = emergency {
        if inc.commander == requester.name {
            let min = needed.unwrap_or(Level::L2).max(Level::L2);
            reasons.push(format!(
                "you command {}, and an emergency change is never approved by its requester \
                 alone: it needs the approval of {} other than you",
                inc.ticket,
                an_approver_of(min)
            ));
            level = Some(min);
        } else {
            let min = needed.unwrap_or(Level::L2).max(Level::L2);
            match inc.commander_level {
                // A commander revoked since can approve nothing: an L2+ stands in for them.
                None => {
                    reasons.push(format!(
                        "{}, who commands {}, is no longer an operator: an emergency change \
                         needs the approval of {} in their place",
                        inc.commander,
                        inc.ticket,
                        an_approver_of(min)
                    ));
                    level = Some(min);
                }
                Some(commander_level) => {
                    required.push(Requirement::Commander {
                        name: inc.commander.clone(),
                        incident: inc.ticket.clone(),
                    });
                    // Anyone may declare an incident and name its commander: two L1s (one
                    // declaring a P1 and commanding it, one requesting) would otherwise get
                    // changes through a freeze or a pause an L3 or L2 set, with nobody above L1.
                    if commander_level < Level::L2 {
                        reasons.push(format!(
                            "{}, who commands {}, is {commander_level}: an emergency change also \
                             needs the approval of {}",
                            inc.commander,
                            inc.ticket,
                            an_approver_of(min)
                        ));
                        level = Some(min);
                    }
                }
            }
        }
    }
    if let Some(min) = level {
        required.push(Requirement::Level { min, count });
    }

    Decision {
        decision: if required.is_empty() {
            Outcome::Execute
        } else {
            Outcome::NeedsApproval
        },
        reasons,
        approvals_required: required,
        warnings,
        blocked_by: None,
        emergency: emergency.map(|i| i.ticket.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::action::ActionSpec;
    use crate::domain::approval::{Approval, unmet};

    fn schedule() -> Schedule {
        crate::domain::window::tests::seed()
    }

    fn action(risk: Risk) -> ActionSpec {
        ActionSpec {
            name: format!("{risk}-action"),
            risk,
            description: String::new(),
            params: vec![],
            rollback: String::new(),
            command: None,
            timeout_secs: 10,
            capture_command: None,
            rollback_command: None,
            rollback_level: None,
        }
    }

    fn op(name: &str, level: Level) -> Operator {
        Operator {
            name: name.into(),
            level,
        }
    }

    fn incident(ticket: &str, priority: Priority, commander: &str) -> Incident {
        Incident {
            id: 1,
            ticket: ticket.into(),
            priority,
            title: "checkout down".into(),
            commander: commander.into(),
            commander_level: Some(Level::L3),
            declared_by: commander.into(),
            declared_at: "2026-11-20T00:00:00Z".parse().unwrap(),
            closed_at: None,
        }
    }

    const STANDARD: &str = "2026-11-24T10:00:00Z"; // Tuesday
    const OFF_PEAK: &str = "2026-11-24T23:00:00Z";
    const OUTSIDE: &str = "2026-11-28T12:00:00Z"; // Saturday

    struct Case {
        risk: Risk,
        requester: Operator,
        ticket: String,
        now: String,
        incident: Option<Incident>,
        freeze: bool,
        pause: bool,
        escalated: Option<Incident>,
    }

    impl Case {
        fn decide(&self) -> Decision {
            let action = action(self.risk);
            let ticket = Ticket::parse(&self.ticket).unwrap();
            let schedule = schedule();
            let freezes = [Freeze {
                id: None,
                name: "Q4 freeze".into(),
                starts_at: "2026-11-01T00:00:00Z".parse().unwrap(),
                ends_at: "2026-12-31T00:00:00Z".parse().unwrap(),
                created_by: None,
            }];
            let pause = Pause {
                reason: "checkout degraded".into(),
                paused_by: "carol".into(),
                paused_at: "2026-11-20T00:00:00Z".parse().unwrap(),
            };
            decide(&PolicyInput {
                action: &action,
                ticket: &ticket,
                requester: &self.requester,
                now: self.now.parse().unwrap(),
                schedule: &schedule,
                freezes: if self.freeze { &freezes } else { &[] },
                pause: self.pause.then_some(&pause),
                incident: self.incident.as_ref(),
                escalated: self.escalated.as_ref(),
                approval_rule: None,
            })
        }
    }

    fn case(risk: Risk, level: Level, ticket: &str, now: &str) -> Case {
        Case {
            risk,
            requester: op("alice", level),
            ticket: ticket.into(),
            now: now.into(),
            incident: None,
            freeze: false,
            pause: false,
            escalated: None,
        }
    }

    /// Every cell of the process's approval table, inside a window with a CHG ticket.
    #[test]
    fn approval_table() {
        use Level::*;
        use Outcome::*;
        let rows = [
            (
                Risk::Low,
                [(Execute, None), (Execute, None), (Execute, None)],
            ),
            (
                Risk::Medium,
                [(Execute, None), (Execute, None), (Execute, None)],
            ),
            (
                Risk::High,
                [(NeedsApproval, Some(L2)), (Execute, None), (Execute, None)],
            ),
            (
                Risk::Critical,
                [
                    (NeedsApproval, Some(L3)),
                    (NeedsApproval, Some(L3)),
                    (Execute, None),
                ],
            ),
        ];
        for (risk, cells) in rows {
            for (level, (outcome, min)) in [L1, L2, L3].into_iter().zip(cells) {
                let d = case(risk, level, "CHG-1234", OFF_PEAK).decide();
                assert_eq!(d.decision, outcome, "{risk} by {level}: {d:?}");
                let expected: Vec<Requirement> = min
                    .map(|min| Requirement::Level { min, count: 1 })
                    .into_iter()
                    .collect();
                assert_eq!(d.approvals_required, expected, "{risk} by {level}");
            }
        }
    }

    /// An observer is told they request nothing, at any risk, in a window or not.
    #[test]
    fn an_observer_requests_nothing() {
        for risk in Risk::ALL {
            for now in [STANDARD, OUTSIDE] {
                let d = case(risk, Level::Observer, "CHG-1", now).decide();
                assert_eq!(d.decision, Outcome::Blocked, "{risk} at {now}: {d:?}");
                assert_eq!(d.blocked_by, Some(Rule::Observer));
                assert!(
                    d.reasons[0].starts_with("observers cannot request changes"),
                    "{d:?}"
                );
            }
        }
    }

    /// The process's windows table: Standard, Off-peak, Freeze, Emergency.
    #[test]
    fn windows_table() {
        // Standard: normal process, with the off-peak warning for high and critical.
        let d = case(Risk::High, Level::L3, "CHG-release-v2", STANDARD).decide();
        assert_eq!(d.decision, Outcome::Execute);
        assert!(d.warnings[0].contains("off-peak preferred"), "{d:?}");
        let d = case(Risk::Medium, Level::L1, "CHG-1", STANDARD).decide();
        assert!(d.warnings.is_empty());
        // Off-peak: preferred for high risk, no warning.
        let d = case(Risk::Critical, Level::L3, "CHG-1", OFF_PEAK).decide();
        assert_eq!((d.decision, d.warnings.len()), (Outcome::Execute, 0));
        // Outside: a CHG change is refused, saying when the next window opens.
        let d = case(Risk::Medium, Level::L3, "CHG-1", OUTSIDE).decide();
        assert_eq!(d.blocked_by, Some(Rule::Window));
        assert!(
            d.reasons[0].contains("Off-peak window opens Mon 2026-11-30 22:00"),
            "{d:?}"
        );
        // Low risk needs no window.
        let d = case(Risk::Low, Level::L1, "CHG-1", OUTSIDE).decide();
        assert_eq!(d.decision, Outcome::Execute);
    }

    #[test]
    fn emergency_changes_need_a_declared_p1_or_p2_incident_and_its_commander() {
        let t = "INC-2026-1128-001";
        // Not declared.
        let d = case(Risk::Medium, Level::L2, t, OUTSIDE).decide();
        assert_eq!(d.blocked_by, Some(Rule::Emergency));
        assert!(d.reasons[0].contains("not an incident declared"), "{d:?}");
        // P3 is not enough.
        let mut c = case(Risk::Medium, Level::L2, t, OUTSIDE);
        c.incident = Some(incident(t, Priority::P3, "carol"));
        assert_eq!(c.decide().blocked_by, Some(Rule::Emergency));
        // P2: the commander's approval is needed.
        c.incident = Some(incident(t, Priority::P2, "carol"));
        let d = c.decide();
        assert_eq!(d.decision, Outcome::NeedsApproval);
        assert_eq!(
            d.approvals_required,
            vec![Requirement::Commander {
                name: "carol".into(),
                incident: t.into()
            }]
        );
        // A requester who commands the incident still needs someone else: an L2 or L3.
        c.incident = Some(incident(t, Priority::P1, "alice"));
        let d = c.decide();
        assert_eq!(d.decision, Outcome::NeedsApproval, "{d:?}");
        assert_eq!(
            d.approvals_required,
            vec![Requirement::Level {
                min: Level::L2,
                count: 1
            }]
        );
        assert_eq!(d.emergency.as_deref(), Some(t));
        // Or the level the risk needs, if higher.
        let mut critical = case(Risk::Critical, Level::L1, t, OUTSIDE);
        critical.incident = Some(incident(t, Priority::P1, "alice"));
        assert_eq!(
            critical.decide().approvals_required,
            vec![Requirement::Level {
                min: Level::L3,
                count: 1
            }]
        );
        // A commander of L1 is not enough alone: two L1s, one declaring and commanding, one
        // requesting, would get changes through freezes and pauses.
        let mut by_l1 = incident(t, Priority::P1, "mal");
        by_l1.commander_level = Some(Level::L1);
        c.incident = Some(by_l1.clone());
        let d = c.decide();
        let l2 = Requirement::Level {
            min: Level::L2,
            count: 1,
        };
        assert_eq!(
            d.approvals_required,
            vec![
                Requirement::Commander {
                    name: "mal".into(),
                    incident: t.into()
                },
                l2.clone()
            ]
        );
        assert!(
            d.reasons.iter().any(|r| r.contains("mal, who commands")),
            "{d:?}"
        );
        // A commander revoked since can approve nothing: an L2+ approves in their place.
        by_l1.commander_level = None;
        c.incident = Some(by_l1);
        let d = c.decide();
        assert_eq!(d.approvals_required, vec![l2]);
        assert!(
            d.reasons.iter().any(|r| r.contains("in their place")),
            "{d:?}"
        );
        // A closed incident allows nothing.
        let mut closed = incident(t, Priority::P1, "carol");
        closed.closed_at = Some("2026-11-27T00:00:00Z".parse().unwrap());
        c.incident = Some(closed);
        assert_eq!(c.decide().blocked_by, Some(Rule::Emergency));
        // The incident must be the one the ticket names.
        c.incident = Some(incident("INC-2026-1128-002", Priority::P1, "carol"));
        assert_eq!(c.decide().blocked_by, Some(Rule::Emergency));
    }

    #[test]
    fn one_approval_counts_for_commander_and_level() {
        let t = "INC-001";
        let mut c = case(Risk::Critical, Level::L1, t, OUTSIDE);
        c.incident = Some(incident(t, Priority::P1, "carol"));
        let d = c.decide();
        assert_eq!(d.approvals_required.len(), 2);
        let carol = Approval {
            approver: "carol".into(),
            level: Level::L3,
            comment: None,
            at: OUTSIDE.parse().unwrap(),
        };
        assert!(unmet(&d.approvals_required, std::slice::from_ref(&carol), "alice").is_empty());
        // An L2 commander meets only the commander requirement.
        let bob_commander = Approval {
            approver: "carol".into(),
            level: Level::L2,
            ..carol
        };
        let left = unmet(&d.approvals_required, &[bob_commander], "alice");
        assert_eq!(
            left,
            vec![&Requirement::Level {
                min: Level::L3,
                count: 1
            }]
        );
    }

    /// The escalation's pause blocks everything but the one response the commander needs: the
    /// rollback of the change that escalated, which the commander approves.
    #[test]
    fn the_rollback_of_an_escalated_change_runs_through_the_pause_with_the_commanders_approval() {
        let inc = incident("INC-2026-1124-001", Priority::P2, "carol");
        let mut c = case(Risk::High, Level::L2, "CHG-1234", STANDARD);
        c.pause = true;
        let refused = c.decide();
        assert_eq!(refused.blocked_by, Some(Rule::Pause));
        assert!(
            refused.reasons[0].contains("To resume, an L2 or L3 resumes changes")
                && refused.reasons[0].contains("you may resume them yourself"),
            "{refused:?}"
        );
        c.escalated = Some(inc.clone());
        let d = c.decide();
        assert_eq!(d.decision, Outcome::NeedsApproval, "{d:?}");
        assert_eq!(
            d.approvals_required,
            vec![Requirement::Commander {
                name: "carol".into(),
                incident: inc.ticket.clone()
            }]
        );
        assert_eq!(d.emergency.as_deref(), Some(inc.ticket.as_str()));
        // Requested by the commander: someone else approves, as on every emergency path.
        c.requester = op("carol", Level::L3);
        let d = c.decide();
        assert_eq!(
            d.approvals_required,
            vec![Requirement::Level {
                min: Level::L2,
                count: 1
            }],
            "{d:?}"
        );
        // Outside the windows too (the escalation's incident is P2).
        c.now = OUTSIDE.into();
        assert_eq!(c.decide().decision, Outcome::NeedsApproval);
        // Once the incident is resolved, the pause applies to the rollback like to anything.
        let mut closed = inc.clone();
        closed.closed_at = Some("2026-11-24T09:00:00Z".parse().unwrap());
        c.escalated = Some(closed);
        c.now = STANDARD.into();
        assert_eq!(c.decide().blocked_by, Some(Rule::Pause));
        // A freeze still lets through only P1 response.
        let mut frozen = case(Risk::High, Level::L2, "CHG-1234", STANDARD);
        frozen.freeze = true;
        frozen.escalated = Some(inc);
        assert_eq!(frozen.decide().blocked_by, Some(Rule::Freeze));
        // An L1 is told whom to ask.
        let mut l1 = case(Risk::Medium, Level::L1, "CHG-1234", STANDARD);
        l1.pause = true;
        assert!(l1.decide().reasons[0].contains("you are L1: ask one of them"));
    }

    #[test]
    fn freezes_and_pauses_let_only_p1_response_and_low_risk_through() {
        let t = "INC-2026-1124-001";
        for (freeze, pause, rule) in [(true, false, Rule::Freeze), (false, true, Rule::Pause)] {
            let mut c = case(Risk::Medium, Level::L3, "CHG-1", STANDARD);
            (c.freeze, c.pause) = (freeze, pause);
            let d = c.decide();
            assert_eq!(d.blocked_by, Some(rule));
            c.ticket = t.into();
            c.incident = Some(incident(t, Priority::P2, "carol"));
            assert_eq!(c.decide().blocked_by, Some(rule), "P2 in a {rule:?}");
            c.incident = Some(incident(t, Priority::P1, "carol"));
            let d = c.decide();
            assert_eq!(d.decision, Outcome::NeedsApproval, "{d:?}");
            assert!(matches!(
                d.approvals_required[0],
                Requirement::Commander { .. }
            ));
            // The freeze and pause paths: an L1 commanding a P1 of their own still needs an
            // L2 or L3 besides themselves (the self-declared-incident bypass).
            let mut own = case(Risk::Medium, Level::L1, t, STANDARD);
            (own.freeze, own.pause) = (freeze, pause);
            own.incident = Some(incident(t, Priority::P1, "alice"));
            let d = own.decide();
            assert_eq!(
                (d.decision, d.approvals_required.clone()),
                (
                    Outcome::NeedsApproval,
                    vec![Requirement::Level {
                        min: Level::L2,
                        count: 1
                    }]
                ),
                "{rule:?}: {d:?}"
            );
            let mut low = case(Risk::Low, Level::L1, "CHG-1", STANDARD);
            (low.freeze, low.pause) = (freeze, pause);
            assert_eq!(low.decide().decision, Outcome::Execute);
        }
        let mut c = case(Risk::High, Level::L3, "CHG-1", STANDARD);
        c.freeze = true;
        assert!(c.decide().reasons[0].contains("until Thu 2026-12-31 00:00 UTC"));
    }
}
