//! The verification worker: polls every active verification each interval (health URL and
//! Prometheus instant query), stores every sample, moves states, and closes the window at the
//! deadline with a summary. Its schedule is rebuilt from the database, so a restart resumes
//! every verification with its original deadline.

use crate::config::{ErrorRateConfig, ServiceConfig};
use crate::domain::verification::Verification;
use crate::domain::verification::{HealthCheck, RateCheck, Sample, VerificationState, summarize};
use crate::server::AppState;
use crate::server::changes::commit;
use crate::server::store::Record;
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{Semaphore, mpsc};

/// A health check must answer 2xx within this.
pub const HEALTH_TIMEOUT: Duration = Duration::from_secs(5);

/// Polls in flight at once, so 1,000 verifications do not open 1,000 sockets together.
const CONCURRENCY: usize = 256;

struct Entry {
    verification: Verification,
    checks: Option<ServiceConfig>,
    next_due: DateTime<Utc>,
    in_flight: bool,
}

/// How long a server's hold on the verifications it polls lasts without renewal: half an
/// interval (at least half a second), so when a server dies another takes its verifications over
/// within one interval and keeps their sampling rhythm.
fn lease_length(interval_seconds: u64) -> Duration {
    Duration::from_millis((interval_seconds * 500).max(500))
}

/// Runs until the server stops.
pub async fn run(state: AppState) {
    let http = match reqwest::Client::builder().timeout(HEALTH_TIMEOUT).build() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "the verifier cannot build its HTTP client");
            return;
        }
    };
    let interval = chrono::Duration::seconds(state.config.verification.interval_seconds as i64);
    let permits = Arc::new(Semaphore::new(CONCURRENCY));
    let (tx, mut rx) = mpsc::unbounded_channel::<(i64, Sample)>();
    let mut entries: HashMap<i64, Entry> = HashMap::new();
    let mut reload = true;
    // Each verification is polled by the one server holding its lease (see
    // `store::verification_lease`); renewing it also picks up verifications whose server died.
    let lease = lease_length(state.config.verification.interval_seconds);
    let mut renew = tokio::time::interval(lease / 3);
    renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        if reload {
            reload = false;
            let leased = state
                .store
                .verification_lease(
                    lease.as_millis() as i64,
                    crate::server::executor::server_is_gone,
                )
                .await;
            match leased {
                Ok(active) => {
                    let now = state.clock.now();
                    let mut fresh = HashMap::new();
                    for (v, checks) in active {
                        let id = v.id;
                        let entry = entries.remove(&id).unwrap_or(Entry {
                            // The first sample is due right away, after a restart too; with
                            // nothing to check, only the deadline matters.
                            next_due: if checks.is_some() { now } else { v.deadline },
                            verification: v.clone(),
                            checks,
                            in_flight: false,
                        });
                        fresh.insert(
                            id,
                            Entry {
                                verification: v,
                                ..entry
                            },
                        );
                    }
                    entries = fresh;
                }
                Err(e) => tracing::warn!(error = %e, "leasing active verifications failed"),
            }
        }
        let now = state.clock.now();
        // Deadlines first: a window that has closed takes no more samples.
        let due_deadlines: Vec<i64> = entries
            .values()
            .filter(|e| e.verification.deadline <= now && !e.in_flight)
            .map(|e| e.verification.id)
            .collect();
        for id in due_deadlines {
            if let Err(e) = reach_deadline(&state, id).await {
                tracing::warn!(verification = id, error = %e, "closing a verification window failed");
            }
            entries.remove(&id);
        }
        for e in entries.values_mut() {
            if e.in_flight || e.next_due > now || e.checks.is_none() {
                continue;
            }
            let due = e.next_due;
            // Skip polls that are already a whole interval late rather than bunching them.
            e.next_due = if due + interval <= now {
                now + interval
            } else {
                due + interval
            };
            e.in_flight = true;
            let (id, checks, http, tx, permits, clock) = (
                e.verification.id,
                e.checks.clone(),
                http.clone(),
                tx.clone(),
                permits.clone(),
                state.clock,
            );
            tokio::spawn(async move {
                let Ok(_permit) = permits.acquire_owned().await else {
                    return;
                };
                let sample = probe(&http, checks.as_ref(), due, &clock).await;
                let _ = tx.send((id, sample));
            });
        }
        let next_wake = entries
            .values()
            .filter(|e| !e.in_flight)
            .map(|e| e.next_due.min(e.verification.deadline))
            .min();
        let sleep = next_wake
            .map(|t| (t - state.clock.now()).to_std().unwrap_or(Duration::ZERO))
            .unwrap_or(Duration::from_secs(60));
        tokio::select! {
            _ = tokio::time::sleep(sleep) => {}
            _ = state.verifier.notified() => reload = true,
            _ = renew.tick() => reload = true,
            Some(first) = rx.recv() => {
                // Samples that arrived together are written in one transaction.
                let mut batch = vec![first];
                while batch.len() < 2000 {
                    match rx.try_recv() {
                        Ok(s) => batch.push(s),
                        Err(_) => break,
                    }
                }
                for (id, _) in &batch {
                    if let Some(e) = entries.get_mut(id) {
                        e.in_flight = false;
                    }
                }
                match store_samples(&state, &batch).await {
                    Ok(updated) => {
                        for v in updated {
                            if let Some(e) = entries.get_mut(&v.id) {
                                e.verification = v;
                            }
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "storing verification samples failed"),
                }
            }
        }
    }
}

/// One poll: the health URL and the error-rate query, whichever are configured.
pub async fn probe(
    http: &reqwest::Client,
    checks: Option<&ServiceConfig>,
    due: DateTime<Utc>,
    clock: &crate::server::clock::Clock,
) -> Sample {
    let health_url = checks.and_then(|c| c.health_url.clone());
    let rate = checks.and_then(|c| c.error_rate.clone());
    let (health, error_rate) = tokio::join!(
        async {
            match &health_url {
                Some(url) => Some(health(http, url).await),
                None => None,
            }
        },
        async {
            match &rate {
                Some(r) => Some(error_rate(http, r).await),
                None => None,
            }
        }
    );
    Sample {
        at: clock.now(),
        due,
        health,
        error_rate,
    }
}

async fn health(http: &reqwest::Client, url: &str) -> HealthCheck {
    let started = Instant::now();
    match http.get(url).send().await {
        Ok(resp) => {
            let ms = started.elapsed().as_millis();
            let status = resp.status();
            HealthCheck {
                ok: status.is_success(),
                detail: format!("{} in {ms} ms", status.as_u16()),
            }
        }
        Err(e) if e.is_timeout() => HealthCheck {
            ok: false,
            detail: format!("no answer within {} s", HEALTH_TIMEOUT.as_secs()),
        },
        Err(e) => HealthCheck {
            ok: false,
            detail: format!("unreachable: {}", root_cause(&e)),
        },
    }
}

fn root_cause(e: &dyn std::error::Error) -> String {
    let mut cause = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

/// `GET {prometheus_url}/api/v1/query?query=…`: the first value of the vector or scalar.
async fn error_rate(http: &reqwest::Client, cfg: &ErrorRateConfig) -> RateCheck {
    let url = match reqwest::Url::parse_with_params(
        &format!("{}/api/v1/query", cfg.prometheus_url.trim_end_matches('/')),
        &[("query", cfg.query.as_str())],
    ) {
        Ok(u) => u,
        Err(e) => return RateCheck::unreadable(cfg.max, format!("bad prometheus_url: {e}")),
    };
    let resp = match http.get(url).send().await {
        Ok(r) => r,
        Err(e) => {
            return RateCheck::unreadable(
                cfg.max,
                format!("metrics unreachable: {}", root_cause(&e)),
            );
        }
    };
    let status = resp.status();
    let body: serde_json::Value = match resp.json().await {
        Ok(b) => b,
        Err(_) => {
            return RateCheck::unreadable(
                cfg.max,
                format!("metrics answered {status} without JSON"),
            );
        }
    };
    match instant_value(&body) {
        Ok(Some(v)) => RateCheck::reading(v, cfg.max),
        Ok(None) => RateCheck {
            value: None,
            max: cfg.max,
            ok: true,
            detail: "no data (no traffic?)".into(),
        },
        Err(why) => RateCheck::unreadable(cfg.max, why),
    }
}

/// Reads a Prometheus instant-query answer: `data.result` as a vector (first series) or a
/// scalar, whose value is `[timestamp, "number"]`.
pub fn instant_value(body: &serde_json::Value) -> Result<Option<f64>, String> {
    if body["status"] != "success" {
        return Err(format!(
            "query failed: {}",
            body["error"]
                .as_str()
                .unwrap_or("the answer has no status 'success'")
        ));
    }
    let data = &body["data"];
    let pair = match data["resultType"].as_str() {
        Some("vector") => match data["result"].as_array().and_then(|r| r.first()) {
            None => return Ok(None),
            Some(series) => &series["value"],
        },
        Some("scalar") => &data["result"],
        other => {
            return Err(format!(
                "unexpected result type {other:?}: the query must return one number"
            ));
        }
    };
    let text = pair[1]
        .as_str()
        .ok_or("the value is not [time, \"number\"]")?;
    match text.parse::<f64>() {
        // No requests at all gives 0/0: nothing failed.
        Ok(v) if v.is_nan() => Ok(None),
        Ok(v) => Ok(Some(v)),
        Err(_) => Err(format!("the value '{text}' is not a number")),
    }
}

/// Writes a batch of samples in one transaction; a state change also gets its audit entry and
/// event. Returns the verifications as they now stand.
async fn store_samples(
    state: &AppState,
    batch: &[(i64, Sample)],
) -> Result<Vec<Verification>, String> {
    let db = |e: sqlx::Error| e.to_string();
    let mut tx = state.store.write().await.map_err(db)?;
    let mut updated = Vec::with_capacity(batch.len());
    for (id, sample) in batch {
        let Some(before) = tx.verification(*id).await.map_err(db)? else {
            continue;
        };
        let Some(v) = tx.sample_insert(&before, sample).await.map_err(db)? else {
            continue;
        };
        if v.state != before.state {
            let (kind, summary) = if v.state == VerificationState::Degraded {
                (
                    "verification.degraded",
                    format!(
                        "verification of change #{} ({} on {}) DEGRADED: {}",
                        v.change_id,
                        v.action,
                        v.target,
                        failing(sample)
                    ),
                )
            } else {
                (
                    "verification.recovered",
                    format!(
                        "verification of change #{} ({} on {}) passing again",
                        v.change_id, v.action, v.target
                    ),
                )
            };
            tx.record(
                sample.at,
                Record {
                    actor: "verifier",
                    kind,
                    subject: format!("verification:{id}"),
                    summary,
                    data: serde_json::to_value(&v).unwrap_or_default(),
                },
            )
            .await
            .map_err(db)?;
        }
        updated.push(v);
    }
    commit(state, tx).await.map_err(|e| e.to_string())?;
    state.metrics.samples.add(batch.len() as u64);
    Ok(updated)
}

fn failing(s: &Sample) -> String {
    let mut parts = Vec::new();
    if let Some(h) = s.health.as_ref().filter(|h| !h.ok) {
        parts.push(format!("health {}", h.detail));
    }
    if let Some(r) = s.error_rate.as_ref().filter(|r| !r.ok) {
        parts.push(format!("error rate {}", r.detail));
    }
    parts.join(", ")
}

/// Closes the window: `awaiting_outcome` with a summary of every sample.
async fn reach_deadline(state: &AppState, id: i64) -> Result<(), String> {
    let db = |e: sqlx::Error| e.to_string();
    let mut tx = state.store.write().await.map_err(db)?;
    let Some(v) = tx.verification(id).await.map_err(db)? else {
        return Ok(());
    };
    let samples = tx.samples(id).await.map_err(db)?;
    let summary = summarize(&samples, v.health_checked, v.error_rate_checked);
    if !tx
        .verification_reach_deadline(id, &summary)
        .await
        .map_err(db)?
    {
        return Ok(());
    }
    let v = tx.verification(id).await.map_err(db)?.unwrap_or(v);
    tx.record(
        v.deadline,
        Record {
            actor: "verifier",
            kind: "verification.deadline",
            subject: format!("verification:{id}"),
            summary: format!(
                "verification of change #{} ({} on {}) reached its deadline: {}; mark it verified or escalate",
                v.change_id, v.action, v.target, summary.text
            ),
            data: serde_json::to_value(&v).unwrap_or_default(),
        },
    )
    .await
    .map_err(db)?;
    commit(state, tx).await.map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::instant_value;
    use serde_json::json;

    #[test]
    fn reads_prometheus_instant_answers() {
        let vector = json!({"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1700000000.1,"0.0125"]}]}});
        assert_eq!(instant_value(&vector), Ok(Some(0.0125)));
        let scalar = json!({"status":"success","data":{"resultType":"scalar","result":[1700000000.1,"0.5"]}});
        assert_eq!(instant_value(&scalar), Ok(Some(0.5)));
        let empty = json!({"status":"success","data":{"resultType":"vector","result":[]}});
        assert_eq!(instant_value(&empty), Ok(None));
        let nan = json!({"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1.0,"NaN"]}]}});
        assert_eq!(instant_value(&nan), Ok(None));
        let error =
            json!({"status":"error","errorType":"bad_data","error":"parse error at char 5"});
        assert!(instant_value(&error).unwrap_err().contains("parse error"));
        let matrix = json!({"status":"success","data":{"resultType":"matrix","result":[]}});
        assert!(instant_value(&matrix).is_err());
    }
}
