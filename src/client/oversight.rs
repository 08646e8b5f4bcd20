//! The calls about what happens after a change has run: incidents (declared, closed, listed),
//! the post-change verifications and their verdicts, and the audit trail. These are what an
//! incident commander or a reviewer reads back, as opposed to the calls that request and decide
//! changes.

use super::{ApiClient, ClientError};
use crate::domain::api::{AuditEntry, IncidentRequest, OutcomeRequest};
use crate::domain::incident::Incident;
use crate::domain::verification::{Verification, VerificationDetail};
use reqwest::Method;

impl ApiClient {
    /// `POST /incidents`: declare an incident; the answer carries its INC ticket.
    pub async fn declare_incident(&self, req: &IncidentRequest) -> Result<Incident, ClientError> {
        self.send_with_body(Method::POST, "/incidents", req).await
    }

    /// `POST /incidents/{id}/close`.
    pub async fn close_incident(&self, id: i64) -> Result<Incident, ClientError> {
        self.send_with_body(
            Method::POST,
            &format!("/incidents/{id}/close"),
            &serde_json::json!({}),
        )
        .await
    }

    /// `GET /incidents`.
    pub async fn incidents(&self) -> Result<Vec<Incident>, ClientError> {
        self.get("/incidents", &[]).await
    }

    /// `GET /audit`: audit entries with a sequence number above `after`, oldest first.
    pub async fn audit(
        &self,
        after: Option<i64>,
        limit: Option<u32>,
    ) -> Result<Vec<AuditEntry>, ClientError> {
        let mut query = Vec::new();
        if let Some(after) = after {
            query.push(("after", after.to_string()));
        }
        if let Some(limit) = limit {
            query.push(("limit", limit.to_string()));
        }
        self.get("/audit", &query).await
    }

    /// `GET /verifications`: post-change verification clocks.
    pub async fn verifications(&self) -> Result<Vec<Verification>, ClientError> {
        self.get("/verifications", &[]).await
    }

    /// `GET /verifications/{id}`, with every sample.
    pub async fn verification(&self, id: i64) -> Result<VerificationDetail, ClientError> {
        self.get(&format!("/verifications/{id}"), &[]).await
    }

    /// `POST /verifications/{id}/outcome`.
    pub async fn verification_outcome(
        &self,
        id: i64,
        req: &OutcomeRequest,
    ) -> Result<Verification, ClientError> {
        self.send_with_body(Method::POST, &format!("/verifications/{id}/outcome"), req)
            .await
    }
}
