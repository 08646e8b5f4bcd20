//! Observers (issue 12): they read everything an L1 reads and change nothing. The table test
//! walks every operation of the server's own OpenAPI document, so an endpoint added later is
//! checked without anyone remembering to add it here.

use crate::support::*;
use commandbridge::domain::api::{FreezeRequest, IncidentRequest};
use commandbridge::domain::calendar::FeedRequest;
use commandbridge::domain::{Act, ChangeState, Level, Operator, Priority};
use commandbridge::server::error::ServiceError;
use reqwest::Method;
use serde_json::json;
use std::collections::BTreeMap;

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// A server with an observer (olga) and one of everything a path can name, made by the others:
/// a pending change, an executed change under verification, a freeze, an incident and a
/// calendar feed. Returns
/// the id each path's resource (its segment after `/api/v1/`) takes.
async fn scene() -> (TestServer, BTreeMap<&'static str, i64>) {
    let mut srv = TestServer::start(TUESDAY_10).await;
    srv.add_operator("olga", Level::Observer).await;
    let (bob, carol) = (srv.client("bob"), srv.client("carol"));
    let pending = create(
        &bob,
        &req("rotate-secrets", "CHG-3001", "payments", json!({})),
    )
    .await;
    assert_eq!(pending.state, ChangeState::PendingApproval);
    let watched = create(&bob, &req("record-medium", "CHG-3002", "search", json!({}))).await;
    assert_eq!(watched.state, ChangeState::Executed);
    let verification = bob
        .verifications()
        .await
        .expect("verifications")
        .into_iter()
        .find(|v| v.change_id == watched.id)
        .expect("the executed medium change is watched");
    let freeze = carol
        .create_freeze(&FreezeRequest {
            name: "observed freeze".into(),
            starts_at: at("2027-06-01T00:00:00Z"),
            ends_at: at("2027-06-02T00:00:00Z"),
        })
        .await
        .expect("an L3 announces a freeze");
    let incident = carol
        .declare_incident(&IncidentRequest {
            priority: Priority::P2,
            title: "observed incident".into(),
            commander: "carol".into(),
        })
        .await
        .expect("an L3 declares an incident");
    let feed = carol
        .create_calendar_feed(&FeedRequest {
            label: "observed feed".into(),
        })
        .await
        .expect("an L3 makes a calendar feed URL");
    let ids = BTreeMap::from([
        ("calendar", feed.feed.id),
        ("changes", pending.id),
        ("verifications", verification.id),
        ("freezes", freeze.id.expect("an API freeze has an id")),
        ("incidents", incident.id),
    ]);
    (srv, ids)
}

/// `path` with each `{param}` replaced by the id of the resource the path names.
fn fill(path: &str, ids: &BTreeMap<&str, i64>) -> String {
    if !path.contains('{') {
        return path.to_string();
    }
    let resource = path
        .trim_start_matches("/api/v1/")
        .split('/')
        .next()
        .unwrap_or_default();
    let id = ids.get(resource).unwrap_or_else(|| {
        panic!("{path}: no id for '{resource}': make one in this test's scene()")
    });
    let mut out = String::new();
    let mut rest = path;
    while let Some(open) = rest.find('{') {
        let close = rest[open..].find('}').expect("a closed {param}") + open;
        out.push_str(&rest[..open]);
        out.push_str(&id.to_string());
        rest = &rest[close + 1..];
    }
    out.push_str(rest);
    out
}

/// A value for each required query parameter the document lists, e.g. `?time=now`.
fn required_query(path: &str, op: &serde_json::Value) -> String {
    const VALUES: [(&str, &str); 1] = [("time", "now")];
    let params = op["parameters"].as_array().cloned().unwrap_or_default();
    let pairs: Vec<String> = params
        .iter()
        .filter(|p| p["in"] == "query" && p["required"] == true)
        .map(|p| {
            let name = p["name"].as_str().unwrap_or_default();
            let value = VALUES.iter().find(|(n, _)| *n == name).unwrap_or_else(|| {
                panic!(
                    "{path}: no value for the required query parameter '{name}': add one to VALUES"
                )
            });
            format!("{name}={}", value.1)
        })
        .collect();
    if pairs.is_empty() {
        String::new()
    } else {
        format!("?{}", pairs.join("&"))
    }
}

#[tokio::test]
async fn observers_read_every_get_and_are_refused_every_write_of_the_openapi_document() {
    let (srv, ids) = scene().await;
    let doc = send(srv.raw(Method::GET, "/api/v1/openapi.json"))
        .await
        .json();
    let paths = doc["paths"].as_object().expect("the document has paths");
    let (mut reads, mut writes) = (0, 0);
    for (path, item) in paths {
        let item = item.as_object().expect("a path item");
        for (method, op) in item.iter().filter(|(m, _)| METHODS.contains(&m.as_str())) {
            let url = format!("{}{}", fill(path, &ids), required_query(path, op));
            let verb = Method::from_bytes(method.to_uppercase().as_bytes()).expect("a method");
            let what = format!("{} {path}", verb);
            if verb == Method::GET {
                reads += 1;
                let resp = send(srv.raw_as("olga", verb, &url)).await;
                assert_eq!(resp.status, 200, "{what}: {}", resp.text());
                if path.ends_with("/events") {
                    assert!(
                        resp.content_type.starts_with("text/event-stream"),
                        "{what}: {}",
                        resp.content_type
                    );
                }
                continue;
            }
            writes += 1;
            // A body the handler would refuse (422): the refusal comes first, before the body is
            // read, so what is in it does not matter.
            let mut request = srv.raw_as("olga", verb, &url);
            if op.get("requestBody").is_some() {
                request = request.json(&json!({}));
            }
            let resp = send(request).await;
            let body = resp.error(403);
            assert!(
                body.message.starts_with("observers cannot"),
                "{what}: {}",
                body.message
            );
            assert_eq!(body.error, "forbidden", "{what}");
            // The document promises the 403 it answers.
            assert!(
                op["responses"].get("403").is_some(),
                "{what}: the document does not list 403"
            );
        }
    }
    assert!(
        reads >= 10 && writes >= 12,
        "{reads} reads, {writes} writes"
    );

    // Nothing moved: the change still waits, the freeze and the incident stand, no pause.
    let carol = srv.client("carol");
    let pending = carol.change(ids["changes"]).await.expect("show");
    assert_eq!(pending.state, ChangeState::PendingApproval);
    assert!(pending.approvals.is_empty());
    let window = carol.current_window().await.expect("window");
    assert!(window.pause.is_none());
    let incidents = carol.incidents().await.expect("incidents");
    assert!(incidents.iter().all(|i| i.closed_at.is_none()));
}

#[tokio::test]
async fn the_refusal_says_what_and_whom_to_ask_and_an_l1_still_writes() {
    let (srv, ids) = scene().await;
    let olga = srv.client("olga");
    let me = olga.me().await.expect("an observer's token works");
    assert_eq!(me.level, Level::Observer);
    let raw_me = send(srv.raw_as("olga", Method::GET, "/api/v1/me"))
        .await
        .json();
    assert_eq!(raw_me["level"], "observer");
    // The catalog says what an observer may do with each action: nothing.
    let catalog = olga.actions().await.expect("catalog");
    assert!(catalog.iter().all(|a| a.you_may == "nothing (observer)"));

    let (_, message) = api_error(olga.approve(ids["changes"], &approve()).await, 403);
    assert!(
        message.starts_with("observers cannot approve changes; ask an L2 or L3"),
        "{message}"
    );
    let logs = req("pull-logs", "CHG-3003", "web", json!({"lines": 10}));
    let (_, message) = api_error(olga.create_change(&logs, None).await, 403);
    assert!(
        message.starts_with("observers cannot request changes"),
        "{message}"
    );
    let (_, message) = api_error(olga.preview(&logs).await, 403);
    assert!(
        message.starts_with("observers cannot preview changes"),
        "{message}"
    );

    // The guard is about observers: an L1 writes through the same routes.
    let alice = srv.client("alice");
    alice.preview(&logs).await.expect("an L1 previews");
    let done = alice
        .create_change(&logs, None)
        .await
        .expect("an L1 requests");
    assert_eq!(done.state, ChangeState::Executed);
    let resp = send(
        srv.raw_as("alice", Method::POST, "/api/v1/changes")
            .json(&req("pull-logs", "CHG-3004", "web", json!({"lines": 5}))),
    )
    .await;
    assert_eq!(resp.status, 201, "{}", resp.text());
    // A write without a token is still a 401 that says what to send, not an observer's 403.
    send(
        srv.raw(Method::POST, "/api/v1/pause")
            .json(&json!({"reason": "x"})),
    )
    .await
    .error(401);
}

/// The services refuse an observer too, for any caller that is not the API's router.
#[tokio::test]
async fn the_services_refuse_an_observer_on_their_own() {
    let (srv, ids) = scene().await;
    let olga = Operator {
        name: "olga".into(),
        level: Level::Observer,
    };
    let state = srv.state();
    let forbidden = |r: Result<_, ServiceError>, act: Act| match r {
        Err(ServiceError::Forbidden(m)) => assert_eq!(m, act.observer_refusal()),
        Err(other) => panic!("{act:?}: {other:?}"),
        Ok(_) => panic!("{act:?} went through for an observer"),
    };
    let logs = req("pull-logs", "CHG-3005", "web", json!({"lines": 10}));
    use commandbridge::server::{changes, incidents, windows};
    forbidden(
        changes::create(state, &olga, &logs, None).await.map(|_| ()),
        Act::Request,
    );
    forbidden(
        changes::preview(state, &olga, &logs).await.map(|_| ()),
        Act::Preview,
    );
    forbidden(
        changes::approve(state, &olga, ids["changes"], None)
            .await
            .map(|_| ()),
        Act::Approve,
    );
    forbidden(
        changes::deny(state, &olga, ids["changes"], "no")
            .await
            .map(|_| ()),
        Act::Deny,
    );
    forbidden(windows::resume(state, &olga).await.map(|_| ()), Act::Resume);
    forbidden(
        incidents::close(state, &olga, ids["incidents"])
            .await
            .map(|_| ()),
        Act::CloseIncident,
    );
    let still = srv
        .client("carol")
        .change(ids["changes"])
        .await
        .expect("show");
    assert_eq!(still.state, ChangeState::PendingApproval);
}

/// `commandbridge user add NAME --level observer` makes an observer whose token reads.
#[tokio::test]
async fn user_add_makes_an_observer() {
    let srv = TestServer::start(TUESDAY_10).await;
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_commandbridge"))
        .args(["user", "add", "wally", "--level", "observer", "--database"])
        .arg(srv.db_url())
        .output()
        .expect("run commandbridge user add");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).expect("utf-8");
    let wally = srv.client_with_token(token.trim());
    assert_eq!(wally.me().await.expect("me").level, Level::Observer);
    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_commandbridge"))
        .args(["user", "add", "x", "--level", "watcher", "--database"])
        .arg(srv.db_url())
        .output()
        .expect("run commandbridge user add");
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("observer, L1, L2 or L3"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
}

/// A commander approves the incident's emergency changes and closes it: an observer could do
/// neither, and the incident would wait forever.
#[tokio::test]
async fn an_observer_cannot_be_named_an_incidents_commander() {
    let mut srv = TestServer::start(TUESDAY_10).await;
    srv.add_operator("olga", Level::Observer).await;
    let declared = srv
        .client("alice")
        .declare_incident(&IncidentRequest {
            priority: Priority::P2,
            title: "checkout down".into(),
            commander: "olga".into(),
        })
        .await;
    let (error, message) = api_error(declared, 422);
    assert_eq!(error, "invalid");
    assert!(message.contains("'olga' is an observer"), "{message}");
}
