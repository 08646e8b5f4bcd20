//! The JSON bodies of the HTTP API, shared by the server and the clients so they cannot drift.

use crate::domain::action::{ActionSpec, ParamSpec, Risk};
use crate::domain::approval::Requirement;
use crate::domain::change::Conflict;
use crate::domain::incident::Priority;
use crate::domain::level::Level;
use crate::domain::policy::Outcome;
use crate::domain::window::{Freeze, Pause, WindowKind};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RollbackRequest {
    /// Why it is rolled back.
    pub reason: String,
    /// Ticket for the rollback; default: the original change's ticket. Outside the windows,
    /// give the INC ticket of the incident.
    #[serde(default)]
    pub ticket: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OutcomeKind {
    Verified,
    Escalated,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OutcomeRequest {
    pub outcome: OutcomeKind,
    #[serde(default)]
    pub note: Option<String>,
    /// Escalation only: the incident's priority (default P2).
    #[serde(default)]
    pub priority: Option<Priority>,
    /// Escalation only: the incident commander (default: the caller).
    #[serde(default)]
    pub commander: Option<String>,
}

/// Every error the API returns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// A stable code: `unauthorized`, `forbidden`, `not_found`, `conflict`, `refused`, `expired`,
    /// `payload_too_large`, `invalid`, `internal`.
    pub error: String,
    /// What went wrong and what to do about it.
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Me {
    pub name: String,
    pub level: Level,
}

/// A catalog entry with what the caller may do with it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CatalogEntry {
    pub name: String,
    pub risk: Risk,
    pub description: String,
    pub params: Vec<ParamSpec>,
    pub rollback: String,
    /// False when the built-in simulator stands in for a real command.
    pub has_command: bool,
    /// True when a rollback can be run from CommandBridge; false means it is manual.
    pub has_rollback_command: bool,
    /// "run", "needs L2+ approval" or "needs L3 approval", for the caller's level.
    pub you_may: String,
}

impl CatalogEntry {
    /// The catalog entry of `spec` as an operator of `level` sees it.
    pub fn new(spec: &ActionSpec, level: Level) -> CatalogEntry {
        CatalogEntry {
            name: spec.name.clone(),
            risk: spec.risk,
            description: spec.description.clone(),
            params: spec.params.clone(),
            rollback: spec.rollback.clone(),
            has_command: spec.command.is_some(),
            has_rollback_command: spec.can_roll_back(),
            you_may: crate::domain::approval::may_do(spec.risk, level),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangeRequest {
    pub action: String,
    pub ticket: String,
    pub target: String,
    /// Refuses a key given twice at any depth (`{"replicas":1,"replicas":400}`): which one a
    /// reader would see is a guess, and the reviewer and the executor must see the same.
    #[serde(default, deserialize_with = "unique_keys::object")]
    #[schema(value_type = Object)]
    pub params: BTreeMap<String, serde_json::Value>,
    pub reason: String,
    /// Schedule the change instead of running it now: an RFC 3339 time
    /// (`2026-11-24T22:00:00Z`), or `next_window` for the next opening of a window the action
    /// may use (Off-peak preferred for high and critical risk). Absent: run as soon as allowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_at: Option<String>,
}

/// JSON objects without duplicate keys, at every depth.
mod unique_keys {
    use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
    use serde_json::{Map, Number, Value};
    use std::collections::BTreeMap;
    use std::fmt;

    pub fn object<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, Value>, D::Error> {
        let Unique(v) = Unique::deserialize(d)?;
        match v {
            Value::Object(m) => Ok(m.into_iter().collect()),
            other => Err(de::Error::custom(format!(
                "params must be a JSON object, not {other}"
            ))),
        }
    }

    struct Unique(Value);

    impl<'de> Deserialize<'de> for Unique {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_any(UniqueVisitor).map(Unique)
        }
    }

    struct UniqueVisitor;

    impl<'de> Visitor<'de> for UniqueVisitor {
        type Value = Value;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a JSON value without duplicate keys")
        }
        fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
            Ok(Value::Bool(v))
        }
        fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
            Ok(Value::Number(v.into()))
        }
        fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
            Ok(Value::Number(v.into()))
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
            Number::from_f64(v)
                .map(Value::Number)
                .ok_or_else(|| E::custom("a number must be finite"))
        }
        fn visit_str<E>(self, v: &str) -> Result<Value, E> {
            Ok(Value::String(v.to_string()))
        }
        fn visit_string<E>(self, v: String) -> Result<Value, E> {
            Ok(Value::String(v))
        }
        fn visit_unit<E>(self) -> Result<Value, E> {
            Ok(Value::Null)
        }
        fn visit_none<E>(self) -> Result<Value, E> {
            Ok(Value::Null)
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
            Unique::deserialize(d).map(|u| u.0)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
            let mut items = Vec::new();
            while let Some(Unique(v)) = seq.next_element()? {
                items.push(v);
            }
            Ok(Value::Array(items))
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
            let mut out = Map::new();
            while let Some(key) = map.next_key::<String>()? {
                if out.contains_key(&key) {
                    return Err(de::Error::custom(format!(
                        "duplicate key '{}' in params: give each key once",
                        key.chars().take(64).collect::<String>()
                    )));
                }
                let Unique(v) = map.next_value()?;
                out.insert(key, v);
            }
            Ok(Value::Object(out))
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Preview {
    pub decision: Outcome,
    pub reasons: Vec<String>,
    pub approvals_required: Vec<Requirement>,
    pub warnings: Vec<String>,
    /// The time the change would be scheduled for, when the request has a `run_at`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_at: Option<DateTime<Utc>>,
    /// Set when only the window refuses the change now: the next usable window, which
    /// `run_at: "next_window"` would schedule it into.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_window: Option<NextWindow>,
    /// Other changes on the same target whose active periods overlap this one's.
    #[serde(default)]
    pub conflicts: Vec<Conflict>,
}

/// Cancel a scheduled change (or one waiting for approval with a `run_at`); a reason is
/// required.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelRequest {
    pub reason: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApproveRequest {
    #[serde(default)]
    pub comment: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DenyRequest {
    pub reason: String,
}

/// The requester takes back their own pending change; the reason is optional.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WithdrawRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IncidentRequest {
    pub priority: Priority,
    pub title: String,
    pub commander: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FreezeRequest {
    pub name: String,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PauseRequest {
    pub reason: String,
}

/// One block of the calendar.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CalendarBlock {
    /// `standard`, `off_peak` or `freeze`.
    pub kind: String,
    pub name: String,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub freeze_id: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Calendar {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub blocks: Vec<CalendarBlock>,
    /// A change pause, which has no end until someone resumes changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause: Option<Pause>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct OpenWindow {
    pub kind: WindowKind,
    pub closes_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NextWindow {
    pub kind: WindowKind,
    pub opens_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WindowStatus {
    pub now: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open: Option<OpenWindow>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<NextWindow>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub freeze: Option<Freeze>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause: Option<Pause>,
    /// The status line, e.g. "STANDARD window open, closes in 2h13m".
    pub summary: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AuditEntry {
    pub seq: i64,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub kind: String,
    pub subject: String,
    #[schema(value_type = Object)]
    pub detail: serde_json::Value,
    pub prev_hash: String,
    pub hash: String,
}

/// The kind of the first message of every event stream. Its `seq` is the newest event the
/// stream starts after, so a client that connected without `Last-Event-ID` knows where to
/// resume; it is not an event of its own.
pub const STREAM_READY: &str = "stream.ready";

/// A server event, as sent over `GET /events` (the SSE `data:` field).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Event {
    pub seq: i64,
    pub at: DateTime<Utc>,
    /// e.g. `change.requested`, `change.approved`, `change.executed`, `verification.started`.
    pub kind: String,
    pub actor: String,
    /// One line for an activity feed.
    pub summary: String,
    /// The record the event is about (a change, an incident, a freeze…).
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// `ok`, or `unavailable` (with status 503) when the database cannot be reached.
    pub status: String,
    /// `ok`, or why the database cannot be reached.
    #[serde(default)]
    pub database: String,
    pub now: DateTime<Utc>,
    /// True when the server runs on a simulated clock (`serve --now`).
    pub simulated_clock: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicate_keys_are_refused_at_every_depth() {
        let body = |params: &str| {
            format!(
                r#"{{"action":"scale-service","ticket":"CHG-1","target":"web","reason":"r","params":{params}}}"#
            )
        };
        let ok: ChangeRequest =
            serde_json::from_str(&body(r#"{"replicas":1,"n":{"a":[1,{"b":2}]}}"#))
                .expect("unique keys");
        assert_eq!(ok.params["replicas"], serde_json::json!(1));
        for dup in [
            r#"{"replicas":1,"replicas":400}"#,
            r#"{"n":{"a":1,"a":2}}"#,
            r#"{"n":[{"a":1,"a":2}]}"#,
        ] {
            let err = serde_json::from_str::<ChangeRequest>(&body(dup)).unwrap_err();
            assert!(err.to_string().contains("duplicate key"), "{dup}: {err}");
        }
        let err = serde_json::from_str::<ChangeRequest>(&body("[1]")).unwrap_err();
        assert!(
            err.to_string().contains("params must be a JSON object"),
            "{err}"
        );
    }
}
