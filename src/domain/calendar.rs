//! The JSON bodies of the shared calendar: what the policy says at an instant
//! (`GET /windows/at`), and the secret feed URLs of the iCalendar feed (`/calendar/feeds`).
//! Kept beside `api.rs` rather than in it so the calendar's bodies read as one piece.

use crate::domain::action::Risk;
use crate::domain::api::OpenWindow;
use crate::domain::policy::{Outcome, Rule};
use crate::domain::window::{Freeze, Pause, Transition, WindowKind};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `open` when a planned change (CHG ticket) of medium risk or above may run at the instant,
/// `closed` otherwise (outside the windows, or a freeze or pause in force): AWS Change
/// Calendar's OPEN/CLOSED. Low-risk actions run either way; `risks` says so.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CalendarOpen {
    Open,
    Closed,
}

/// What the policy tells a change of one risk requested with a CHG ticket at the instant, by
/// the caller (the approvals needed depend on who asks).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RiskAt {
    pub risk: Risk,
    /// The catalog's actions of this risk.
    pub actions: Vec<String>,
    pub decision: Outcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocked_by: Option<Rule>,
    /// The policy's own sentences, as a preview at that instant would give them.
    pub reasons: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// One side of a transition: the window open and the freeze in force.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PhaseBody {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<WindowKind>,
    /// The name of the freeze in force.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub freeze: Option<String>,
}

/// The next instant at which the calendar changes, and what changes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TransitionBody {
    pub at: DateTime<Utc>,
    /// E.g. "Standard window closes", "freeze 'Q4 freeze' ends; Off-peak window opens".
    pub change: String,
    pub before: PhaseBody,
    pub after: PhaseBody,
}

impl From<&Transition> for TransitionBody {
    fn from(t: &Transition) -> TransitionBody {
        let phase = |p: &crate::domain::window::Phase| PhaseBody {
            window: p.window,
            freeze: p.freeze.clone(),
        };
        TransitionBody {
            at: t.at,
            change: t.describe(),
            before: phase(&t.before),
            after: phase(&t.after),
        }
    }
}

/// `GET /windows/at`: what the policy would say at `time` (AWS Change Calendar's
/// GetCalendarState).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CalendarState {
    pub time: DateTime<Utc>,
    pub state: CalendarOpen,
    /// The window open at `time`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open: Option<OpenWindow>,
    /// The freeze in force at `time`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub freeze: Option<Freeze>,
    /// The change pause, in force at `time` when it started before then: a pause has no end
    /// until someone resumes changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause: Option<Pause>,
    /// Per risk, low to critical: what a CHG change requested at `time` is told.
    pub risks: Vec<RiskAt>,
    /// Within two weeks for windows; a freeze's start or end at any distance. None when
    /// nothing changes (no windows configured, no freeze ahead).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_transition: Option<TransitionBody>,
    /// One line, e.g. "OPEN: Standard window until 16:00 UTC; next: Standard window closes at …".
    pub summary: String,
}

/// `POST /calendar/feeds`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, ToSchema)]
pub struct FeedRequest {
    /// What the feed is for, e.g. "team calendar"; shown in the list. Default: "calendar feed".
    #[serde(default)]
    pub label: String,
}

/// A JSON object only. serde's derived struct reader also takes an array (`[]` or `["x"]`,
/// fields by position), which the OpenAPI document does not allow; with every field optional,
/// `[]` would pass as `{}`.
impl<'de> Deserialize<'de> for FeedRequest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Object {
            #[serde(default)]
            label: String,
        }
        let value = serde_json::Value::deserialize(d)?;
        if !value.is_object() {
            return Err(serde::de::Error::custom(
                "the body must be a JSON object, e.g. {\"label\": \"team calendar\"}",
            ));
        }
        let o: Object = serde_json::from_value(value).map_err(serde::de::Error::custom)?;
        Ok(FeedRequest { label: o.label })
    }
}

/// A feed URL's record; its secret is never shown again after creation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Feed {
    pub id: i64,
    pub label: String,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_by: Option<String>,
}

/// The answer to `POST /calendar/feeds`: the only time the secret is shown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FeedCreated {
    pub feed: Feed,
    /// Grants nothing but `GET /api/v1/calendar.ics`.
    pub secret: String,
    /// The feed's path and query on this server, e.g.
    /// `/api/v1/calendar.ics?feed=cbf_…`: prefix the server's public address.
    pub path: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_feed_request_is_an_object() {
        let ok = |s: &str| serde_json::from_str::<FeedRequest>(s).map(|r| r.label);
        assert_eq!(ok("{}").unwrap(), "");
        assert_eq!(ok(r#"{"label":"ops"}"#).unwrap(), "ops");
        for bad in [
            "[]",
            r#"["ops"]"#,
            r#"{"lable":"ops"}"#,
            r#"{"label":1}"#,
            "null",
        ] {
            assert!(ok(bad).is_err(), "{bad}");
        }
    }
}
