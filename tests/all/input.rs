//! Bad input of every kind gets a 4xx in the error format that says what to fix: unknown ids and routes, wrong methods, bodies over the limit, invalid fields, and malformed requests that must never get a 5xx.

use crate::support::*;
use commandbridge::client::ClientError;
use commandbridge::domain::ChangeState;
use reqwest::Method;
use serde_json::json;

// ---- 404 ------------------------------------------------------------------------------------

#[tokio::test]
async fn unknown_ids_and_routes_get_404() {
    let srv = TestServer::start(TUESDAY_10).await;
    let bob = srv.client("bob");

    let (error, message) = api_error(bob.change(424242).await, 404);
    assert_eq!(error, "not_found");
    assert!(message.contains("424242"), "{message}");
    api_error(bob.approve(424242, &approve()).await, 404);
    api_error(bob.deny(424242, &deny("no such thing")).await, 404);
    api_error(srv.client("carol").delete_freeze(424242).await, 404);

    for path in [
        "/api/v1/changes/abc",
        "/api/v1/changes/1.5",
        "/api/v1/nope",
        "/api/v2/changes",
        "/nope",
    ] {
        let resp = send(srv.raw_as("bob", Method::GET, path)).await;
        let body = resp.error(404);
        assert!(!body.message.is_empty(), "{path}");
    }
    let resp = send(
        srv.raw_as("bob", Method::POST, "/api/v1/changes/abc/approve")
            .json(&json!({})),
    )
    .await;
    resp.error(404);
}

#[tokio::test]
async fn wrong_methods_get_405_with_an_error_body() {
    let srv = TestServer::start(TUESDAY_10).await;
    for (method, path) in [
        (Method::PUT, "/api/v1/changes"),
        (Method::DELETE, "/api/v1/me"),
        (Method::PATCH, "/api/v1/changes/1"),
        (Method::GET, "/api/v1/changes/1/approve"),
        (Method::GET, "/api/v1/pause"),
    ] {
        let resp = send(srv.raw_as("bob", method.clone(), path)).await;
        assert_eq!(resp.status, 405, "{method} {path}");
        // Like every other error: {error, message}, not an empty body.
        if let Err(why) = resp.check_error_body() {
            panic!("{method} {path}: {why}");
        }
    }
}

// ---- 413 ------------------------------------------------------------------------------------

#[tokio::test]
async fn bodies_over_64_kib_get_413() {
    let srv = TestServer::start(TUESDAY_10).await;
    let pending = create(
        &srv.client("alice"),
        &req("record-high", "CHG-7000", "web", json!({})),
    )
    .await;

    let mut big = req("pull-logs", "CHG-7001", "web", json!({"lines": 1}));
    big.reason = "x".repeat(70 * 1024);
    let resp = send(
        srv.raw_as("bob", Method::POST, "/api/v1/changes")
            .json(&big),
    )
    .await;
    let body = resp.error(413);
    assert!(body.message.contains("64 KiB"), "{}", body.message);

    let approve_body = json!({ "comment": "y".repeat(70 * 1024) });
    let path = format!("/api/v1/changes/{}/approve", pending.id);
    send(srv.raw_as("bob", Method::POST, &path).json(&approve_body))
        .await
        .error(413);
    let path = format!("/api/v1/changes/{}/deny", pending.id);
    send(
        srv.raw_as("bob", Method::POST, &path)
            .json(&json!({ "reason": "z".repeat(70 * 1024) })),
    )
    .await
    .error(413);

    // Without a Content-Length (a streamed body) the limit holds too.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = (0..80)
        .map(|i| {
            Ok(if i == 0 {
                br#"{"action":"pull-logs","ticket":"CHG-1","target":"web","reason":""#.to_vec()
            } else {
                vec![b'x'; 1024]
            })
        })
        .collect();
    let streamed = reqwest::Body::wrap_stream(futures::stream::iter(chunks));
    let resp = send(
        srv.raw_as("bob", Method::POST, "/api/v1/changes")
            .header("content-type", "application/json")
            .body(streamed),
    )
    .await;
    resp.error(413);

    // Nothing of that was recorded, and the pending change is untouched.
    let bob = srv.client("bob");
    assert_eq!(bob.changes(None, None).await.expect("list").len(), 1);
    assert_eq!(
        bob.change(pending.id).await.expect("show").state,
        ChangeState::PendingApproval
    );
}

// ---- 422 ------------------------------------------------------------------------------------

#[tokio::test]
async fn invalid_input_gets_422_saying_what_to_fix() {
    let srv = TestServer::start(TUESDAY_10).await;
    let bob = srv.client("bob");
    let invalid = |r: Result<_, ClientError>| {
        let (error, message) = api_error(r, 422);
        assert_eq!(error, "invalid");
        message
    };

    let m = invalid(
        bob.create_change(&req("purge-cache", "TICKET-1", "web", json!({})), None)
            .await,
    );
    assert!(
        m.contains("INC-YYYY-MMDD-NNN") && m.contains("INC-NNN") && m.contains("CHG-"),
        "names the accepted formats: {m}"
    );
    let m = invalid(
        bob.create_change(
            &req("purge-cache", "INC-2026-0230-001", "web", json!({})),
            None,
        )
        .await,
    );
    assert!(m.contains("calendar date"), "{m}");
    invalid(
        bob.create_change(&req("purge-cache", "chg-1234", "web", json!({})), None)
            .await,
    );

    let m = invalid(
        bob.create_change(&req("purge-cache", "CHG-1", "Web Server!", json!({})), None)
            .await,
    );
    assert!(m.contains("target"), "{m}");
    invalid(
        bob.create_change(&req("purge-cache", "CHG-1", "", json!({})), None)
            .await,
    );
    invalid(
        bob.create_change(
            &req("purge-cache", "CHG-1", &"a".repeat(64), json!({})),
            None,
        )
        .await,
    );

    let m = invalid(
        bob.create_change(
            &req("blacklist-ip", "CHG-1", "edge", json!({"ip": "999.1.1.1"})),
            None,
        )
        .await,
    );
    assert!(m.contains("IP address"), "{m}");
    invalid(
        bob.create_change(
            &req(
                "blacklist-ip",
                "CHG-1",
                "edge",
                json!({"ip": "10.0.0.0/99"}),
            ),
            None,
        )
        .await,
    );
    invalid(
        bob.create_change(&req("blacklist-ip", "CHG-1", "edge", json!({})), None)
            .await,
    );

    let m = invalid(
        bob.create_change(
            &req("scale-service", "CHG-1", "web", json!({"replicas": 501})),
            None,
        )
        .await,
    );
    assert!(m.contains("from 0 to 500"), "{m}");
    invalid(
        bob.create_change(
            &req("scale-service", "CHG-1", "web", json!({"replicas": -1})),
            None,
        )
        .await,
    );
    invalid(
        bob.create_change(
            &req("scale-service", "CHG-1", "web", json!({"replicas": "many"})),
            None,
        )
        .await,
    );
    let m = invalid(
        bob.create_change(
            &req(
                "scale-service",
                "CHG-1",
                "web",
                json!({"replicas": 3, "force": true}),
            ),
            None,
        )
        .await,
    );
    assert!(m.contains("force"), "{m}");

    let m = invalid(
        bob.create_change(&req("reboot-everything", "CHG-1", "web", json!({})), None)
            .await,
    );
    assert!(
        m.contains("reboot-everything") && m.contains("scale-service"),
        "lists the catalog: {m}"
    );

    let mut no_reason = req("purge-cache", "CHG-1", "web", json!({}));
    no_reason.reason = "   ".into();
    let m = invalid(bob.create_change(&no_reason, None).await);
    assert!(m.contains("reason"), "{m}");
    // Preview checks the same input (a reason is optional there: forms preview as you type).
    let mut bad_ticket = no_reason.clone();
    bad_ticket.ticket = "TICKET-1".into();
    let (_, m) = api_error(bob.preview(&bad_ticket).await, 422);
    assert!(m.contains("INC-YYYY-MMDD-NNN"), "{m}");
    let mut bad_replicas = req("scale-service", "CHG-1", "web", json!({"replicas": 501}));
    bad_replicas.reason.clear();
    api_error(bob.preview(&bad_replicas).await, 422);

    // Raw bodies the client would never send.
    let raw = |body: &str| {
        srv.raw_as("bob", Method::POST, "/api/v1/changes")
            .header("content-type", "application/json")
            .body(body.to_string())
    };
    let m = send(raw(
        r#"{"action":"purge-cache","ticket":"CHG-1","target":"web"}"#,
    ))
    .await
    .error(422)
    .message;
    assert!(m.contains("reason"), "names the missing field: {m}");
    send(raw(r#"{"action":"purge-cache","ticket":"CHG-1","#))
        .await
        .error(422);
    send(raw("not json at all")).await.error(422);
    let m = send(raw(
        r#"{"action":"purge-cache","ticket":"CHG-1","target":"web","reason":"r","priority":"now"}"#,
    ))
    .await
    .error(422)
    .message;
    assert!(m.contains("priority"), "names the unknown field: {m}");
    send(raw(
        r#"{"action":7,"ticket":"CHG-1","target":"web","reason":"r"}"#,
    ))
    .await
    .error(422);

    // Deny needs a reason.
    let pending = create(
        &srv.client("alice"),
        &req("record-high", "CHG-1", "web", json!({})),
    )
    .await;
    let m = invalid(bob.deny(pending.id, &deny("  ")).await);
    assert!(m.contains("reason"), "{m}");
    let path = format!("/api/v1/changes/{}/deny", pending.id);
    send(srv.raw_as("bob", Method::POST, &path).json(&json!({})))
        .await
        .error(422);
    send(
        srv.raw_as("bob", Method::POST, &path)
            .header("content-type", "application/json")
            .body(""),
    )
    .await
    .error(422);
    // An approval with an unknown field is refused, and nothing was decided.
    let path = format!("/api/v1/changes/{}/approve", pending.id);
    send(
        srv.raw_as("bob", Method::POST, &path)
            .json(&json!({"comment": "ok", "force": true})),
    )
    .await
    .error(422);
    assert_eq!(
        bob.change(pending.id).await.expect("show").state,
        ChangeState::PendingApproval
    );

    // Nothing invalid was recorded.
    assert_eq!(bob.changes(None, None).await.expect("list").len(), 1);
    assert!(srv.runs().is_empty());
}

// ---- no 5xx, whatever arrives -----------------------------------------------------------------

/// A small deterministic generator, so a failure reproduces.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

struct Case {
    method: Method,
    path: String,
    headers: Vec<(&'static str, Vec<u8>)>,
    body: Option<Vec<u8>>,
    /// Authenticate as carol (L3), so input checks run past the level checks.
    auth: bool,
}

fn case(method: Method, path: &str) -> Case {
    Case {
        method,
        path: path.to_string(),
        headers: Vec::new(),
        body: None,
        auth: true,
    }
}

fn json_case(path: &str, body: impl Into<Vec<u8>>) -> Case {
    let mut c = case(Method::POST, path);
    c.headers
        .push(("content-type", b"application/json".to_vec()));
    c.body = Some(body.into());
    c
}

fn with_header(mut c: Case, name: &'static str, value: impl Into<Vec<u8>>) -> Case {
    c.headers.push((name, value.into()));
    c
}

#[tokio::test]
async fn malformed_requests_never_get_a_5xx() {
    let srv = TestServer::start(TUESDAY_10).await;
    let pending = create(
        &srv.client("alice"),
        &req("record-high", "CHG-1", "web", json!({})),
    )
    .await;
    let id = pending.id;
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    let change = |params: &str| {
        format!(
            r#"{{"action":"scale-service","ticket":"CHG-1","target":"web","params":{params},"reason":"r"}}"#
        )
    };
    let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));

    let mut cases = Vec::new();
    for (path, n) in [
        ("/api/v1/changes", 6),
        ("/api/v1/changes/preview", 2),
        ("/api/v1/incidents", 2),
        ("/api/v1/freezes", 1),
        ("/api/v1/pause", 1),
    ] {
        for _ in 0..n {
            let len = 1 + (rng.next() % 3000) as usize;
            cases.push(json_case(path, rng.bytes(len)));
        }
    }
    for _ in 0..3 {
        let len = 1 + (rng.next() % 500) as usize;
        cases.push(json_case(
            &format!("/api/v1/changes/{id}/approve"),
            rng.bytes(len),
        ));
        cases.push(json_case(
            &format!("/api/v1/changes/{id}/deny"),
            rng.bytes(len),
        ));
    }
    // Huge numbers and wrong types where numbers belong.
    for params in [
        r#"{"replicas":1e400}"#,
        r#"{"replicas":99999999999999999999999}"#,
        r#"{"replicas":-9223372036854775809}"#,
        r#"{"replicas":1.5}"#,
        r#"{"replicas":"12abc"}"#,
        r#"{"replicas":true}"#,
        r#"{"replicas":null}"#,
        r#"{"replicas":{}}"#,
        r#"[1,2,3]"#,
        r#""replicas""#,
    ] {
        cases.push(json_case("/api/v1/changes", change(params)));
    }
    // Deep nesting.
    cases.push(json_case(
        "/api/v1/changes",
        change(&format!(r#"{{"replicas":{}}}"#, deep(5000))),
    ));
    cases.push(json_case("/api/v1/changes", deep(20000)));
    cases.push(json_case(
        "/api/v1/changes",
        format!("{}1{}", r#"{"a":"#.repeat(3000), "}".repeat(3000)),
    ));
    cases.push(json_case(
        &format!("/api/v1/changes/{id}/approve"),
        format!(r#"{{"comment":{}}}"#, deep(3000)),
    ));
    // Wrong shapes and types.
    for body in [
        "[]",
        "null",
        "123",
        r#""a string""#,
        r#"{"action":5,"ticket":"CHG-1","target":"web","reason":"r"}"#,
        r#"{"action":"scale-service","ticket":null,"target":"web","reason":"r"}"#,
        r#"{"action":"scale-service","ticket":"CHG-1","target":{},"reason":[]}"#,
        r#"{"action":"scale-service","ticket":"CHG-1","target":"wéb","params":{"replicas":1},"reason":"r"}"#,
        r#"{"action":"scale-service","ticket":"CHG-١٢٣","target":"web","params":{"replicas":1},"reason":"r"}"#,
        r#"{"action":"scale-service","ticket":"CHG-1","target":"web","params":{"replicas":1},"reason":"a\u0000b"}"#,
        "\u{feff}{}",
    ] {
        cases.push(json_case("/api/v1/changes", body));
    }
    for body in [
        r#"{"priority":"P0","title":"t","commander":"carol"}"#,
        r#"{"priority":1,"title":"t","commander":"carol"}"#,
        r#"{"priority":"P1","title":"t","commander":"ghost"}"#,
        r#"{"priority":"P1","title":"","commander":""}"#,
    ] {
        cases.push(json_case("/api/v1/incidents", body));
    }
    for body in [
        r#"{"name":"f","starts_at":"2027-02-02T00:00:00Z","ends_at":"2027-02-01T00:00:00Z"}"#,
        r#"{"name":"f","starts_at":"yesterday","ends_at":"2027-02-01T00:00:00Z"}"#,
        r#"{"name":"f","starts_at":"+262142-01-01T00:00:00Z","ends_at":"+262142-12-31T00:00:00Z"}"#,
        r#"{"name":"","starts_at":"2027-02-01T00:00:00Z","ends_at":"2027-02-02T00:00:00Z"}"#,
    ] {
        cases.push(json_case("/api/v1/freezes", body));
    }
    // Query strings.
    for path in [
        "/api/v1/changes?state=bogus",
        "/api/v1/changes?limit=0",
        "/api/v1/changes?limit=99999999999999999999",
        "/api/v1/changes?limit=abc&foo=1",
        "/api/v1/audit?after=abc",
        "/api/v1/audit?after=-5&limit=1001",
        "/api/v1/audit?after=9223372036854775807",
        "/api/v1/windows?from=garbage",
        "/api/v1/windows?from=2026-01-01T00:00:00Z&to=2025-01-01T00:00:00Z",
        "/api/v1/windows?from=2026-01-01T00:00:00Z&to=2029-01-01T00:00:00Z",
        "/api/v1/windows?from=%2B262143-12-30T00:00:00Z",
        "/api/v1/windows?from=%2B262142-12-30T00:00:00Z",
        "/api/v1/windows?from=%2B262142-12-20T00:00:00Z&to=%2B262142-12-31T23:59:59Z",
        "/api/v1/windows?from=-262143-01-01T00:00:00Z&to=-262143-01-05T00:00:00Z",
        "/api/v1/windows?from=%FF%FE",
        "/api/v1/events?backlog=-1",
        "/api/v1/events?backlog=abc",
        "/api/v1/events?backlog=99999999999999999999",
        "/api/v1/events?follow=1",
    ] {
        cases.push(case(Method::GET, path));
    }
    // Paths.
    for path in [
        "/api/v1/changes/-1",
        "/api/v1/changes/99999999999999999999",
        "/api/v1/changes/%FF%00",
        "/api/v1/changes/1/approve/extra",
        "/api/v1//changes",
        "/api/v1/changes/0x10",
        "/api/v1/changes/1%2F2",
        "/api/v1/../../etc/passwd",
    ] {
        cases.push(case(Method::GET, path));
    }
    cases.push(case(Method::DELETE, "/api/v1/freezes/abc"));
    cases.push(case(Method::DELETE, "/api/v1/freezes/-7"));
    cases.push(json_case(
        "/api/v1/changes/99999999999999999999/approve",
        "{}",
    ));
    // Headers.
    for auth in [
        &b"Bearer"[..],
        b"Bearer     ",
        b"Basic Zm9vOmJhcg==",
        b"Bearer \xff\xfe",
        b"bearer x",
    ] {
        let mut c = case(Method::GET, "/api/v1/me");
        c.auth = false;
        cases.push(with_header(c, "authorization", auth));
    }
    let valid = change(r#"{"replicas":2}"#);
    for key in [
        "k".repeat(300).into_bytes(),
        b"\xff\xfe".to_vec(),
        b"   ".to_vec(),
    ] {
        cases.push(with_header(
            json_case("/api/v1/changes", valid.clone()),
            "idempotency-key",
            key,
        ));
    }
    let mut text_plain = case(Method::POST, "/api/v1/changes");
    text_plain
        .headers
        .push(("content-type", b"text/plain".to_vec()));
    text_plain.body = Some(valid.clone().into_bytes());
    cases.push(text_plain);
    let mut no_type = case(Method::POST, "/api/v1/changes");
    no_type.body = Some(valid.clone().into_bytes());
    cases.push(no_type);
    for last in [
        &b"-1"[..],
        b"abc",
        b"1e3",
        b"99999999999999999999",
        b"\xff",
        b"",
        b" 0x1 ",
    ] {
        cases.push(with_header(
            case(Method::GET, "/api/v1/events"),
            "last-event-id",
            last,
        ));
    }
    // A valid but far-future Last-Event-ID is a stream that waits for events.
    cases.push(with_header(
        case(Method::GET, "/api/v1/events"),
        "last-event-id",
        &b"9223372036854775807"[..],
    ));
    assert!(cases.len() >= 50, "{} cases", cases.len());
    let mut failures = Vec::new();
    for c in &cases {
        let mut rb = srv.raw(c.method.clone(), &c.path);
        if c.auth {
            rb = rb.bearer_auth(srv.token("carol"));
        }
        for (name, value) in &c.headers {
            let value = reqwest::header::HeaderValue::from_bytes(value).expect("a header value");
            rb = rb.header(*name, value);
        }
        if let Some(body) = &c.body {
            rb = rb.body(body.clone());
        }
        let what = format!(
            "{} {} {:?} body {:?}",
            c.method,
            c.path,
            c.headers
                .iter()
                .map(|(n, v)| format!("{n}: {}", String::from_utf8_lossy(v)))
                .collect::<Vec<_>>(),
            c.body
                .as_ref()
                .map(|b| String::from_utf8_lossy(&b[..b.len().min(80)]).into_owned())
        );
        let resp = match rb.send().await {
            Ok(r) => r,
            Err(e) => {
                failures.push(format!("{what}: no answer ({e})"));
                continue;
            }
        };
        let status = resp.status().as_u16();
        let content_type = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        if content_type.starts_with("text/event-stream") {
            // An open stream: nothing more to read.
            if status != 200 {
                failures.push(format!("{what}: event stream with status {status}"));
            }
            continue;
        }
        let body = resp.bytes().await.map(|b| b.to_vec()).unwrap_or_default();
        let raw = RawResponse {
            status,
            content_type,
            body,
        };
        if status >= 500 {
            failures.push(format!("{what}: {status} {}", raw.text()));
        } else if status >= 400
            && let Err(why) = raw.check_error_body()
        {
            failures.push(format!("{what}: {why}"));
        }
    }
    // The server is still answering afterwards.
    let health = srv.client("bob").health().await.expect("still up");
    assert_eq!(health.status, "ok");
    assert_eq!(
        srv.metric("commandbridge_http_responses_5xx_total").await,
        0.0
    );
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}
