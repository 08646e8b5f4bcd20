//! Table rows and their conversion into domain records.

use super::DbError;
use crate::config::ServiceConfig;
use crate::domain::approval::Approval;
use crate::domain::change::{Change, ExecutionOutput};
use crate::domain::incident::Incident;
use crate::domain::verification::Verification;
use chrono::{DateTime, TimeZone, Utc};

pub fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

pub fn from_ms(v: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(v).single().unwrap_or_default()
}

fn decode<T, E: std::error::Error + Send + Sync + 'static>(r: Result<T, E>) -> Result<T, DbError> {
    r.map_err(|e| DbError::Decode(Box::new(e)))
}

fn parse<T: std::str::FromStr<Err = String>>(s: &str) -> Result<T, DbError> {
    s.parse().map_err(|e: String| DbError::Decode(e.into()))
}

#[derive(sqlx::FromRow)]
pub struct ChangeRow {
    pub id: i64,
    state: String,
    action: String,
    risk: String,
    ticket: String,
    target: String,
    params: String,
    reason: String,
    requested_by: String,
    requested_level: String,
    created_at: i64,
    updated_at: i64,
    expires_at: i64,
    requirements: String,
    warnings: String,
    outcome_reason: Option<String>,
    decided_by: Option<String>,
    output: Option<String>,
    rollback_of: Option<i64>,
    emergency: Option<String>,
    captured: Option<String>,
    command: Option<String>,
    run_at: Option<i64>,
    conflicts: Option<String>,
}

impl ChangeRow {
    /// The argv fixed at request: `None` if the change predates the record, `Some(None)` where
    /// the simulator stands in.
    pub fn planned_command(&self) -> Result<Option<Option<Vec<String>>>, DbError> {
        self.command
            .as_deref()
            .map(|c| decode(serde_json::from_str(c)))
            .transpose()
    }

    pub fn into_change(self, approvals: Vec<Approval>) -> Result<Change, DbError> {
        Ok(Change {
            id: self.id,
            state: parse(&self.state)?,
            action: self.action,
            risk: parse(&self.risk)?,
            ticket: self.ticket,
            target: self.target,
            params: decode(serde_json::from_str(&self.params))?,
            reason: self.reason,
            requested_by: self.requested_by,
            requested_level: parse(&self.requested_level)?,
            created_at: from_ms(self.created_at),
            updated_at: from_ms(self.updated_at),
            expires_at: from_ms(self.expires_at),
            approvals,
            approvals_required: decode(serde_json::from_str(&self.requirements))?,
            warnings: decode(serde_json::from_str(&self.warnings))?,
            outcome_reason: self.outcome_reason,
            decided_by: self.decided_by,
            output: self
                .output
                .map(|o| decode(serde_json::from_str::<ExecutionOutput>(&o)))
                .transpose()?,
            rollback_of: self.rollback_of,
            emergency: self.emergency,
            captured: self.captured,
            command: self
                .command
                .as_deref()
                .map(|c| decode(serde_json::from_str::<Option<Vec<String>>>(c)))
                .transpose()?
                .flatten(),
            run_at: self.run_at.map(from_ms),
            conflicts: self
                .conflicts
                .as_deref()
                .map(|c| decode(serde_json::from_str(c)))
                .transpose()?
                .unwrap_or_default(),
        })
    }
}

#[derive(sqlx::FromRow)]
pub struct IncidentRow {
    id: i64,
    ticket: String,
    priority: String,
    title: String,
    commander: String,
    /// From the operators table (`INCIDENT_SELECT`): absent for a revoked commander.
    commander_level: Option<String>,
    declared_by: String,
    declared_at: i64,
    closed_at: Option<i64>,
}

impl IncidentRow {
    pub fn into_incident(self) -> Result<Incident, DbError> {
        Ok(Incident {
            id: self.id,
            ticket: self.ticket,
            priority: parse(&self.priority)?,
            title: self.title,
            commander: self.commander,
            commander_level: self.commander_level.as_deref().map(parse).transpose()?,
            declared_by: self.declared_by,
            declared_at: from_ms(self.declared_at),
            closed_at: self.closed_at.map(from_ms),
        })
    }
}

#[derive(sqlx::FromRow)]
pub struct VerificationRow {
    id: i64,
    change_id: i64,
    target: String,
    action: String,
    started_at: i64,
    deadline: i64,
    state: String,
    checks: Option<String>,
    last_sample: Option<String>,
    recent: String,
    summary: Option<String>,
    decided_by: Option<String>,
    note: Option<String>,
    incident: Option<String>,
}

fn json<T: serde::de::DeserializeOwned>(s: Option<&str>) -> Result<Option<T>, DbError> {
    s.map(|s| decode(serde_json::from_str(s))).transpose()
}

impl VerificationRow {
    pub fn id(&self) -> i64 {
        self.id
    }

    pub fn deadline(&self) -> i64 {
        self.deadline
    }

    /// The checks snapshot taken when the verification started.
    pub fn checks(&self) -> Result<Option<ServiceConfig>, DbError> {
        json(self.checks.as_deref())
    }

    pub fn into_verification(self) -> Result<Verification, DbError> {
        let checks = self.checks()?;
        let rate = checks.as_ref().and_then(|c| c.error_rate.as_ref());
        Ok(Verification {
            id: self.id,
            change_id: self.change_id,
            target: self.target,
            action: self.action,
            started_at: from_ms(self.started_at),
            deadline: from_ms(self.deadline),
            state: parse(&self.state)?,
            health_checked: checks.as_ref().is_some_and(|c| c.health_url.is_some()),
            error_rate_checked: rate.is_some(),
            max_error_rate: rate.map(|r| r.max),
            last_sample: json(self.last_sample.as_deref())?,
            recent_error_rates: decode(serde_json::from_str(&self.recent))?,
            summary: json(self.summary.as_deref())?,
            decided_by: self.decided_by,
            note: self.note,
            incident: self.incident,
        })
    }
}
