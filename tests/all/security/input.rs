//! Input that is not what it seems: a parameter that becomes a command option, a key given twice,
//! an idempotency key reused for another request, numbers and ids spelled loosely, a reason that
//! only looks filled in. Each is refused with a 4xx that says what to fix, and nothing runs.

use crate::support::*;
use reqwest::Method;
use serde_json::json;
use std::path::Path;

/// An action whose command records its argv, one argument per line, in `argv.log`: the region
/// is a bare `{region}` argument, the shape an attacker wants.
fn argv_recorder(dir: &Path) -> String {
    let log = dir.join("argv.log");
    let log = log.to_str().expect("a UTF-8 temporary path");
    format!(
        r#"
[[actions]]
name = "switch-region"
risk = "medium"
description = "test: record the argv a region switch gets"
params = [{{ name = "region", kind = "string" }}]
rollback = "switch back"
command = ["sh", "-c", 'shift; printf "%s\n" "$@" >> "$0"', "{log}", "--", "switch", "{{region}}", "{{target}}"]
timeout_secs = 10

[[actions]]
name = "switch-region-strict"
risk = "medium"
description = "test: the same with the action's own pattern"
params = [{{ name = "region", kind = "string", pattern = "^[a-z]{{2}}-[a-z]+-[0-9]$" }}]
rollback = "switch back"
command = ["sh", "-c", 'shift; printf "%s\n" "$@" >> "$0"', "{log}", "--", "switch", "{{region}}", "{{target}}"]
timeout_secs = 10
"#
    )
}

/// An action whose capture command prints an option: what its rollback would pass as one
/// argument.
fn hostile_capture(dir: &Path) -> String {
    let log = dir.join("argv.log");
    let log = log.to_str().expect("a UTF-8 temporary path");
    format!(
        r#"
[[actions]]
name = "scale-hostile"
risk = "medium"
description = "test: the capture prints an option"
rollback = "scale back"
capture_command = ["printf", "%s", "--kubeconfig=/tmp/evil"]
command = ["sh", "-c", 'echo "scale $1" >> "$0"', "{log}", "{{target}}"]
rollback_command = ["sh", "-c", 'echo "rollback $1" >> "$0"', "{log}", "{{captured}}"]
timeout_secs = 10
"#
    )
}

fn argv_log(srv: &TestServer) -> Vec<String> {
    std::fs::read_to_string(srv.dir.path().join("argv.log"))
        .map(|s| s.lines().map(str::to_string).collect())
        .unwrap_or_default()
}

/// POST /changes with a raw JSON body, as bob (L2: medium risk runs at once in the window).
async fn post_change(srv: &TestServer, body: &str) -> RawResponse {
    send(
        srv.raw_as("bob", Method::POST, "/api/v1/changes")
            .header("content-type", "application/json")
            .body(body.to_string()),
    )
    .await
}

fn body(action: &str, params: &str) -> String {
    format!(
        r#"{{"action":"{action}","ticket":"CHG-1","target":"web","reason":"test","params":{params}}}"#
    )
}

#[tokio::test]
async fn a_string_parameter_never_becomes_an_option_or_hides_characters() {
    let srv = TestServer::start_configured(clock_at(TUESDAY_10), argv_recorder).await;
    for (region, says) in [
        ("--kubeconfig=/etc/shadow", "leading '-'"),
        ("-rf", "leading '-'"),
        ("eu\u{2028}west", "U+2028"),
        ("eu\u{202E}tsew", "U+202E"),
        ("eu\u{200B}west", "U+200B"),
        ("\u{FEFF}eu-west-1", "U+FEFF"),
        ("eu\u{0}west", "U+0000"),
    ] {
        let params = json!({ "region": region }).to_string();
        let r = post_change(&srv, &body("switch-region", &params)).await;
        let e = r.error(422);
        assert!(
            e.message.contains("parameter 'region'") && e.message.contains(says),
            "{region:?}: {}",
            e.message
        );
    }
    // The action's own pattern: anything else is refused, naming the shape.
    let r = post_change(
        &srv,
        &body("switch-region-strict", r#"{"region":"eu-west-12"}"#),
    )
    .await;
    let e = r.error(422);
    assert!(
        e.message.contains("text matching ^[a-z]{2}-[a-z]+-[0-9]$"),
        "{}",
        e.message
    );
    assert!(
        argv_log(&srv).is_empty(),
        "nothing ran: {:?}",
        argv_log(&srv)
    );

    // A good value is exactly one argument.
    let r = post_change(
        &srv,
        &body("switch-region-strict", r#"{"region":"eu-west-1"}"#),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let id = r.json()["id"].as_i64().expect("an id");
    settled(&srv.client("bob"), id).await;
    assert_eq!(argv_log(&srv), ["switch", "eu-west-1", "web"]);
}

#[tokio::test]
async fn a_key_given_twice_is_refused_at_every_depth() {
    let srv = TestServer::start(TUESDAY_10).await;
    for params in [
        r#"{"replicas":1,"replicas":400}"#,
        r#"{"replicas":{"a":1,"a":2}}"#,
    ] {
        let r = post_change(&srv, &body("record-medium", params)).await;
        let e = r.error(422);
        assert!(
            e.message.contains("duplicate key"),
            "{params}: {}",
            e.message
        );
    }
    // The top level refused duplicates already; it still does.
    let r = post_change(
        &srv,
        r#"{"action":"record-medium","action":"rotate-secrets","ticket":"CHG-1","target":"web","reason":"x"}"#,
    )
    .await;
    assert!(r.error(422).message.contains("duplicate"), "{}", r.text());
    assert!(srv.runs().is_empty());
}

#[tokio::test]
async fn an_idempotency_key_stands_for_the_whole_request() {
    let srv = TestServer::start(TUESDAY_10).await;
    let post = |body: serde_json::Value, key: &str| {
        send(
            srv.raw_as("bob", Method::POST, "/api/v1/changes")
                .header("Idempotency-Key", key)
                .json(&body),
        )
    };
    let first = json!({"action":"record-medium","ticket":"CHG-1","target":"web","reason":"first"});
    let r = post(first.clone(), "deploy-42").await;
    assert_eq!(r.status, 201, "{}", r.text());
    let id = r.json()["id"].as_i64().expect("an id");
    // The same request again: the same change, 200.
    let again = post(first.clone(), "deploy-42").await;
    assert_eq!((again.status, again.json()["id"].as_i64()), (200, Some(id)));
    // The same key with another reason: refused, saying the key was used for another request.
    let mut other = first.clone();
    other["reason"] = json!("second");
    let e = post(other, "deploy-42").await.error(422);
    assert!(
        e.message.contains(&format!(
            "already used for change #{id} with a different request"
        )),
        "{}",
        e.message
    );
    // A key with a tab or a space is not "visible ASCII".
    for key in ["deploy\t42", "deploy 42"] {
        let e = post(first.clone(), key).await.error(422);
        assert!(
            e.message.contains("visible ASCII"),
            "{key:?}: {}",
            e.message
        );
    }
    assert_eq!(srv.runs(), ["web"]);
}

#[tokio::test]
async fn numbers_ids_and_reasons_are_read_strictly() {
    let srv = TestServer::start(TUESDAY_10).await;
    let bob = srv.client("bob");
    // Replicas spelled loosely.
    for replicas in [" 3 ", "+3", "03", "3.0", "1e1"] {
        let params = json!({ "replicas": replicas }).to_string();
        let r = post_change(&srv, &body("scale-service", &params)).await;
        let e = r.error(422);
        assert!(
            e.message.contains("parameter 'replicas'") && e.message.contains("written plainly"),
            "{replicas:?}: {}",
            e.message
        );
    }
    let ok = post_change(&srv, &body("scale-service", r#"{"replicas":"3"}"#)).await;
    assert_eq!(ok.status, 201, "{}", ok.text());
    let id = ok.json()["id"].as_i64().expect("an id");
    // Ids in paths: only the plain spelling names the change.
    let plain = send(srv.raw_as("bob", Method::GET, &format!("/api/v1/changes/{id}"))).await;
    assert_eq!(plain.status, 200);
    for spelled in [format!("+{id}"), format!("0{id}"), format!("%20{id}")] {
        let r = send(srv.raw_as("bob", Method::GET, &format!("/api/v1/changes/{spelled}"))).await;
        let e = r.error(404);
        assert!(
            e.message.contains("written plainly"),
            "{spelled}: {}",
            e.message
        );
    }
    // A reason of only a byte-order mark, or zero-width spaces, is no reason.
    for reason in ["\u{FEFF}", "\u{200B}\u{200B}", " \u{FEFF} "] {
        let mut r = req("record-medium", "CHG-1", "web", json!({}));
        r.reason = reason.into();
        let (_, message) = api_error(bob.create_change(&r, None).await, 422);
        assert!(
            message.contains("reason is required"),
            "{reason:?}: {message}"
        );
    }
    assert!(srv.runs().is_empty());
}

/// What a capture command printed fills an argument of the rollback: it must have the same safe
/// shape as a parameter, or the change does not run at all.
#[tokio::test]
async fn a_captured_value_cannot_become_an_option_of_the_rollback() {
    let srv = TestServer::start_configured(clock_at(TUESDAY_10), hostile_capture).await;
    let bob = srv.client("bob");
    let c = create(&bob, &req("scale-hostile", "CHG-1", "web", json!({}))).await;
    let c = settled(&bob, c.id).await;
    assert_eq!(c.state, commandbridge::domain::ChangeState::Failed);
    let stderr = c.output.expect("an output").stderr;
    assert!(
        stderr.contains("cannot be passed to the rollback as one argument")
            && stderr.contains("leading '-'"),
        "{stderr}"
    );
    assert!(
        argv_log(&srv).is_empty(),
        "nothing ran: {:?}",
        argv_log(&srv)
    );
}
