//! The demo's stand-in for the services it changes: a health endpoint per service and a
//! Prometheus-compatible instant-query endpoint, served over real HTTP so the verifier talks to
//! it exactly as it would to production. One service, `search`, starts failing a minute in, so
//! the demo shows a verification degrading.

use crate::config::{ErrorRateConfig, ServiceConfig};
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// The service that goes bad, and when.
pub const DEGRADING: &str = "search";
pub const DEGRADES_AFTER: Duration = Duration::from_secs(60);

/// The services the demo's changes target.
pub const SERVICES: [&str; 5] = ["checkout", "search", "payments", "edge-1", "reports"];

#[derive(Clone)]
struct Sim {
    started: Instant,
}

impl Sim {
    fn degraded(&self, service: &str) -> bool {
        service == DEGRADING && self.started.elapsed() >= DEGRADES_AFTER
    }

    /// A believable error rate: small and wobbling, or well above 1% once degraded.
    fn error_rate(&self, service: &str) -> f64 {
        let t = self.started.elapsed().as_secs_f64();
        let wobble = ((t / 7.0).sin() + 1.0) / 2.0;
        if self.degraded(service) {
            0.03 + 0.02 * wobble
        } else {
            0.001 + 0.003 * wobble
        }
    }
}

async fn health(State(sim): State<Sim>, Path(service): Path<String>) -> (StatusCode, String) {
    if sim.degraded(&service) {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{service}: upstream timeouts"),
        )
    } else {
        (StatusCode::OK, format!("{service}: ok"))
    }
}

async fn query(
    State(sim): State<Sim>,
    Query(q): Query<HashMap<String, String>>,
) -> axum::Json<serde_json::Value> {
    let text = q.get("query").cloned().unwrap_or_default();
    // The demo's queries name their service as service="NAME".
    let service = text
        .split("service=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_default()
        .to_string();
    let now = chrono::Utc::now().timestamp_millis() as f64 / 1000.0;
    axum::Json(serde_json::json!({
        "status": "success",
        "data": {
            "resultType": "vector",
            "result": [{ "metric": { "service": service }, "value": [now, format!("{:.5}", sim.error_rate(&service))] }]
        }
    }))
}

/// Starts the simulated services on a free loopback port; returns their `[[services]]` entries.
pub async fn start() -> std::io::Result<(Vec<ServiceConfig>, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let app = Router::new()
        .route("/svc/{service}/healthz", get(health))
        .route("/api/v1/query", get(query))
        .with_state(Sim {
            started: Instant::now(),
        });
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let services = SERVICES
        .iter()
        .map(|name| ServiceConfig {
            name: name.to_string(),
            health_url: Some(format!("{base}/svc/{name}/healthz")),
            error_rate: Some(ErrorRateConfig {
                prometheus_url: Some(base.clone()),
                query: Some(format!(
                    "sum(rate(http_requests_total{{service=\"{name}\",code=~\"5..\"}}[5m])) / sum(rate(http_requests_total{{service=\"{name}\"}}[5m]))"
                )),
                max: 0.01,
                cloudwatch: None,
            }),
            ca_file: None,
        })
        .collect();
    Ok((services, task))
}
