//! The OpenAPI document, metrics and health; the document checked by an outside fuzzer (`system/conformance.rs`).

#[path = "system/conformance.rs"] // explicit, so `tests/postgres` can include this file too
mod conformance;

use crate::support::*;
use chrono::Utc;
use commandbridge::server::clock::Clock;
use reqwest::Method;
use serde_json::json;

// ---- OpenAPI, metrics, health ----------------------------------------------------------------------

#[tokio::test]
async fn openapi_metrics_and_health_describe_the_server() {
    let srv = TestServer::start(TUESDAY_10).await;

    let doc = send(srv.raw(Method::GET, "/api/v1/openapi.json")).await;
    assert_eq!(doc.status, 200);
    let doc = doc.json();
    assert!(
        doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")),
        "{}",
        doc["openapi"]
    );
    let paths = doc["paths"].as_object().expect("paths");
    let served: &[(&str, &[&str])] = &[
        ("/api/v1/me", &["get"]),
        ("/api/v1/actions", &["get"]),
        ("/api/v1/changes", &["get", "post"]),
        ("/api/v1/changes/preview", &["post"]),
        ("/api/v1/changes/{id}", &["get"]),
        ("/api/v1/changes/{id}/approve", &["post"]),
        ("/api/v1/changes/{id}/deny", &["post"]),
        ("/api/v1/windows", &["get"]),
        ("/api/v1/windows/current", &["get"]),
        ("/api/v1/freezes", &["post"]),
        ("/api/v1/freezes/{id}", &["delete"]),
        ("/api/v1/pause", &["post", "delete"]),
        ("/api/v1/incidents", &["get", "post"]),
        ("/api/v1/audit", &["get"]),
        ("/api/v1/events", &["get"]),
        ("/api/v1/verifications", &["get"]),
        ("/healthz", &["get"]),
    ];
    for (path, methods) in served {
        let item = paths
            .get(*path)
            .unwrap_or_else(|| panic!("{path} is not documented"));
        for m in *methods {
            assert!(item.get(*m).is_some(), "{m} {path} is not documented");
        }
    }
    // And everything documented is served: no documented route falls through to "no route".
    for (path, item) in paths {
        for method in item.as_object().expect("path item").keys() {
            let Ok(m) = Method::from_bytes(method.to_uppercase().as_bytes()) else {
                continue;
            };
            if !["GET", "POST", "DELETE", "PUT", "PATCH"].contains(&m.as_str()) {
                continue;
            }
            let concrete = path.replace("{id}", "1");
            let mut rb = srv.raw_as("alice", m.clone(), &concrete);
            if m == Method::POST {
                rb = rb.json(&json!({}));
            }
            // Event streams stay open: only the status matters.
            let resp = send(rb).await;
            let no_route = resp.status == 404 && resp.text().contains("no route");
            assert!(
                !no_route && resp.status != 405,
                "{m} {path} is documented but not served: {}",
                resp.status
            );
        }
    }
    assert!(!paths.contains_key("/api/v1/nope"));

    // Prometheus text format.
    send(srv.raw_as("bob", Method::GET, "/api/v1/nope")).await;
    let metrics = send(srv.raw(Method::GET, "/metrics")).await;
    assert_eq!(metrics.status, 200);
    assert!(
        metrics.content_type.starts_with("text/plain"),
        "{}",
        metrics.content_type
    );
    let text = metrics.text();
    let mut samples = 0;
    for line in text.lines().filter(|l| !l.is_empty()) {
        if let Some(rest) = line.strip_prefix("# ") {
            assert!(
                rest.starts_with("HELP ") || rest.starts_with("TYPE "),
                "{line}"
            );
            continue;
        }
        let (name, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("not a sample: {line}"));
        let bare = name.split('{').next().expect("name");
        assert!(
            bare.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') && !bare.is_empty(),
            "metric name {bare:?}"
        );
        assert!(
            text.contains(&format!("# TYPE {bare} ")),
            "{bare} has no TYPE"
        );
        value
            .parse::<f64>()
            .unwrap_or_else(|_| panic!("not a number: {line}"));
        samples += 1;
    }
    assert!(samples >= 5, "{text}");
    assert!(srv.metric("commandbridge_http_responses_4xx_total").await >= 1.0);
    assert_eq!(srv.metric("commandbridge_changes_pending").await, 0.0);
    create(
        &srv.client("alice"),
        &req("record-high", "CHG-1", "web", json!({})),
    )
    .await;
    assert_eq!(srv.metric("commandbridge_changes_pending").await, 1.0);
    assert_eq!(
        srv.metric("commandbridge_changes_requested_total").await,
        1.0
    );

    // Health: up, and honest about the pinned clock.
    let health = srv.client("bob").health().await.expect("health");
    assert_eq!(health.status, "ok");
    assert!(health.simulated_clock);
    assert!(
        (health.now - at(TUESDAY_10)).num_seconds().abs() < 30,
        "{}",
        health.now
    );

    let real = TestServer::start_with_clock(Clock::real()).await;
    let health = real.client("bob").health().await.expect("health");
    assert!(!health.simulated_clock);
    assert!((health.now - Utc::now()).num_seconds().abs() < 5);
}

// ---- schema versions ---------------------------------------------------------------------------

/// `commandbridge` with `args` (a `serve` that refuses to start exits by itself), its exit
/// status and stderr.
async fn run_bin(args: &[&str]) -> (bool, String, String) {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_commandbridge"))
        .args(args)
        .env("NO_COLOR", "1")
        .env_remove("RUST_LOG")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("run commandbridge");
    let status = tokio::time::timeout(std::time::Duration::from_secs(30), child.wait()).await;
    let _ = child.start_kill();
    let out = child.wait_with_output().await.expect("its output");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    let status = status.unwrap_or_else(|_| {
        panic!(
            "`{}` still runs after 30 s: {stdout}{stderr}",
            args.join(" ")
        )
    });
    (status.expect("its exit status").success(), stdout, stderr)
}

/// `migrate` brings a database to this binary's schema (twice is harmless); a PostgreSQL server
/// refuses to start on a database that was not migrated and says what to run; any server refuses
/// a schema newer than it knows.
#[tokio::test]
async fn migrate_then_serve_and_refuse_an_unknown_schema() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let db = TestDb::empty(dir.path()).await;
    let serve = ["serve", "--database", &db.url, "--listen", "127.0.0.1:0"];
    if db.is_postgres() {
        let (ok, _, stderr) = run_bin(&serve).await;
        assert!(!ok, "served on an empty database");
        assert!(
            stderr.contains("commandbridge migrate --database"),
            "says what to run: {stderr}"
        );
    }
    for _ in 0..2 {
        let (ok, stdout, stderr) = run_bin(&["migrate", "--database", &db.url]).await;
        assert!(ok, "{stdout}{stderr}");
        assert!(stdout.contains("up to date"), "{stdout}");
    }
    // A newer CommandBridge migrated it since.
    let checksum = if db.is_postgres() { "'\\x00'" } else { "x'00'" };
    db.tamper(&[&format!(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (999999, 'from the future', TRUE, {checksum}, 0)"
    )])
    .await;
    let (ok, _, stderr) = run_bin(&serve).await;
    assert!(!ok, "served on a newer schema");
    assert!(
        stderr.contains("newer than this CommandBridge knows"),
        "{stderr}"
    );
    let (ok, _, stderr) = run_bin(&["migrate", "--database", &db.url]).await;
    assert!(!ok, "migrated a newer schema");
    assert!(
        stderr.contains("newer than this CommandBridge knows"),
        "{stderr}"
    );
}
