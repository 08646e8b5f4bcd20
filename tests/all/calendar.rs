//! The calendar outside the dashboard: `GET /windows/at` (the policy at any instant), the
//! iCalendar feed read by a real parser, and the secret feed URLs calendar apps use.

use crate::support::icalendar;
use crate::support::*;
use commandbridge::domain::Outcome;
use commandbridge::domain::api::{FreezeRequest, PauseRequest};
use commandbridge::domain::calendar::{CalendarOpen, CalendarState, FeedRequest};
use commandbridge::domain::policy::Rule;
use commandbridge::domain::{Level, Risk, WindowKind};
use reqwest::Method;
use serde_json::json;
use std::collections::BTreeSet;

fn risk(s: &CalendarState, risk: Risk) -> &commandbridge::domain::calendar::RiskAt {
    s.risks
        .iter()
        .find(|r| r.risk == risk)
        .unwrap_or_else(|| panic!("no {risk:?} in {s:?}"))
}

fn rfc3339(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

#[tokio::test]
async fn the_feed_parses_and_matches_the_windows_and_freezes() {
    let srv = TestServer::start(TUESDAY_10).await;
    let (bob, carol) = (srv.client("bob"), srv.client("carol"));
    // A name with every character TEXT escaping is about.
    let name = r"DB move; payments, cards \ ops";
    let freeze = carol
        .create_freeze(&FreezeRequest {
            name: name.into(),
            starts_at: at("2026-12-01T08:00:00Z"),
            ends_at: at("2026-12-02T20:00:00Z"),
        })
        .await
        .expect("carol announces a freeze");

    let raw = send(srv.raw_as("bob", Method::GET, "/api/v1/calendar.ics")).await;
    assert_eq!(raw.status, 200);
    assert_eq!(raw.content_type, "text/calendar; charset=utf-8");
    let text = raw.text();
    assert!(text.ends_with("END:VCALENDAR\r\n"));
    for line in text.split("\r\n") {
        assert!(!line.contains('\n'), "a bare LF: {line:?}");
        assert!(line.len() <= 75, "{} octets: {line:?}", line.len());
    }
    let Some(cal) = icalendar::parse(&text) else {
        return;
    };
    assert_eq!(cal.version, "2.0");
    assert!(cal.prodid.contains("CommandBridge"), "{}", cal.prodid);

    // The windows: the same occurrences as GET /windows over the next eight weeks.
    let now = at(TUESDAY_10);
    let to = now + chrono::Duration::weeks(8);
    let calendar = bob.calendar(now, to).await.expect("GET /windows");
    let expected: BTreeSet<(String, String, String)> = calendar
        .blocks
        .iter()
        .filter(|b| b.kind != "freeze")
        .map(|b| {
            let kind = if b.kind == "standard" {
                "Standard"
            } else {
                "Off-peak"
            };
            (format!("{kind} window"), rfc3339(b.start), rfc3339(b.end))
        })
        .collect();
    let windows: Vec<_> = cal
        .events
        .iter()
        .filter(|e| e.categories == ["window"])
        .collect();
    let got: BTreeSet<_> = windows
        .iter()
        .map(|e| (e.summary.clone(), e.start.clone(), e.end.clone()))
        .collect();
    assert_eq!(got, expected);
    assert_eq!(windows.len(), expected.len(), "no window twice");
    // Eight weeks of the seed's windows, 3 Standard and 5 Off-peak a week, plus this
    // Tuesday's Standard window, which is running now.
    assert_eq!(windows.len(), 8 * 8 + 1);
    assert!(windows.iter().any(
        |e| e.uid == "window-standard-20261124T090000Z@commandbridge"
            && e.start == "2026-11-24T09:00:00Z"
    ));
    assert!(
        windows
            .iter()
            .any(|e| e.uid == "window-offpeak-20261207T220000Z@commandbridge"
                && e.end == "2026-12-08T06:00:00Z")
    );

    // The freezes: the announced one (its name read back exactly) and the configured Q4 one.
    let freezes: Vec<_> = cal
        .events
        .iter()
        .filter(|e| e.categories == ["freeze"])
        .collect();
    let announced = freezes
        .iter()
        .find(|e| e.uid == format!("freeze-{}@commandbridge", freeze.id.expect("an id")))
        .expect("the announced freeze");
    assert_eq!(announced.summary, format!("Change freeze: {name}"));
    assert_eq!(
        (announced.start.as_str(), announced.end.as_str()),
        ("2026-12-01T08:00:00Z", "2026-12-02T20:00:00Z")
    );
    assert!(announced.description.contains("carol"));
    let q4 = calendar_blocks_freeze(&bob).await;
    assert!(
        freezes
            .iter()
            .any(|e| e.summary == format!("Change freeze: {}", q4.0)
                && e.start == q4.1
                && e.end == q4.2),
        "the configured freeze: {freezes:?}"
    );
    assert_eq!(freezes.len(), 2);
    // A window the announced freeze overlaps says so.
    let tuesday = windows
        .iter()
        .find(|e| e.start == "2026-12-01T09:00:00Z")
        .expect("Tuesday Dec 1's Standard window");
    assert!(
        tuesday.description.contains(name),
        "{}",
        tuesday.description
    );

    // The UIDs are the same on the next fetch: calendar apps update, not duplicate.
    let again = icalendar::parse(&bob.calendar_ics().await.expect("fetch again")).expect("parsed");
    let uids = |events: &[icalendar::ParsedEvent]| {
        events
            .iter()
            .map(|e| (e.uid.clone(), e.start.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(uids(&again.events), uids(&cal.events));
    let unique: BTreeSet<_> = cal.events.iter().map(|e| &e.uid).collect();
    assert_eq!(unique.len(), cal.events.len(), "UIDs are unique");
}

/// The configured freeze as `GET /windows` shows it: (name, start, end).
async fn calendar_blocks_freeze(
    client: &commandbridge::client::ApiClient,
) -> (String, String, String) {
    let c = client
        .calendar(at("2026-12-14T00:00:00Z"), at("2027-01-11T00:00:00Z"))
        .await
        .expect("GET /windows");
    let f = c
        .blocks
        .iter()
        .find(|b| b.kind == "freeze" && b.freeze_id.is_none())
        .expect("the configured freeze");
    (f.name.clone(), rfc3339(f.start), rfc3339(f.end))
}

#[tokio::test]
async fn a_feed_secret_reads_the_feed_and_nothing_else_until_revoked() {
    let srv = TestServer::start(TUESDAY_10).await;
    let (alice, bob, carol) = (srv.client("alice"), srv.client("bob"), srv.client("carol"));
    let created = bob
        .create_calendar_feed(&FeedRequest {
            label: "team calendar".into(),
        })
        .await
        .expect("bob creates a feed URL");
    assert!(created.secret.starts_with("cbf_"), "{}", created.secret);
    assert_eq!(
        created.path,
        format!("/api/v1/calendar.ics?feed={}", created.secret)
    );

    // Without any header, as a calendar app fetches it.
    let feed = send(srv.raw(Method::GET, &created.path)).await;
    assert_eq!(feed.status, 200, "{}", feed.text());
    assert!(feed.content_type.starts_with("text/calendar"));
    assert!(feed.text().contains("BEGIN:VEVENT"));

    // The secret is no token: not as a bearer, not in the query of another route.
    let secret = created.secret.clone();
    for path in ["/api/v1/windows", "/api/v1/me", "/api/v1/changes"] {
        let as_bearer = send(srv.raw(Method::GET, path).bearer_auth(&secret)).await;
        as_bearer.error(401);
        let in_query = send(srv.raw(Method::GET, &format!("{path}?feed={secret}"))).await;
        in_query.error(401);
    }
    let post = send(
        srv.raw(Method::POST, "/api/v1/calendar/feeds")
            .bearer_auth(&secret)
            .json(&json!({})),
    )
    .await;
    post.error(401);
    // A wrong secret, and none at all, are 401 on the feed too, saying what to send.
    send(srv.raw(Method::GET, "/api/v1/calendar.ics?feed=cbf_nope"))
        .await
        .error(401);
    let none = send(srv.raw(Method::GET, "/api/v1/calendar.ics")).await;
    assert!(none.error(401).message.contains("feed"), "{none:?}");

    // Listed without its secret.
    let listed = send(srv.raw_as("alice", Method::GET, "/api/v1/calendar/feeds")).await;
    assert_eq!(listed.status, 200);
    assert!(
        !listed.text().contains(&secret),
        "a list never shows a secret"
    );
    let feeds = alice.calendar_feeds().await.expect("list");
    assert_eq!(feeds.len(), 1);
    assert_eq!(
        (feeds[0].label.as_str(), feeds[0].created_by.as_str()),
        ("team calendar", "bob")
    );

    // Only its creator or an L3 revokes it.
    let (_, message) = api_error(alice.revoke_calendar_feed(created.feed.id).await, 403);
    assert!(message.contains("bob"), "{message}");
    let revoked = carol
        .revoke_calendar_feed(created.feed.id)
        .await
        .expect("an L3 revokes");
    assert_eq!(revoked.revoked_by.as_deref(), Some("carol"));
    send(srv.raw(Method::GET, &created.path)).await.error(401);
    api_error(bob.revoke_calendar_feed(created.feed.id).await, 409);
    api_error(bob.revoke_calendar_feed(999).await, 404);
    assert!(
        bob.calendar_feeds().await.expect("list")[0]
            .revoked_at
            .is_some()
    );
    // A bearer token still reads the feed.
    bob.calendar_ics().await.expect("bob reads the feed");

    // A feed lives no longer than its creator's access.
    let alices = alice
        .create_calendar_feed(&FeedRequest {
            label: "alice's".into(),
        })
        .await
        .expect("alice creates a feed URL");
    assert_eq!(send(srv.raw(Method::GET, &alices.path)).await.status, 200);
    commandbridge::server::users::revoke(srv.store(), "alice")
        .await
        .expect("revoke alice");
    send(srv.raw(Method::GET, &alices.path)).await.error(401);

    // Both steps are audited, and the audit never holds the secret.
    let audit = carol.audit(None, Some(500)).await.expect("audit");
    let kinds: Vec<_> = audit
        .iter()
        .filter(|e| e.subject == format!("calendar_feed:{}", created.feed.id))
        .map(|e| (e.kind.as_str(), e.actor.as_str()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("calendar_feed.created", "bob"),
            ("calendar_feed.revoked", "carol")
        ]
    );
    let hash = commandbridge::server::auth::token_hash(&secret);
    for e in &audit {
        let detail = e.detail.to_string();
        assert!(
            !detail.contains(&secret) && !detail.contains(&hash),
            "{detail}"
        );
    }
}

/// `GET /windows/at` at an instant, against a server whose clock is at that instant being
/// asked by a preview: they must agree, risk by risk.
async fn agrees_with_a_request_at(asker: &TestServer, instant: &str) -> CalendarState {
    let state = asker
        .client("alice")
        .window_at(instant)
        .await
        .expect("GET /windows/at");
    assert_eq!(state.time, at(instant));
    let then = TestServer::start(instant).await;
    let alice = then.client("alice");
    for (action, r, params) in [
        ("record-medium", Risk::Medium, json!({})),
        ("record-high", Risk::High, json!({})),
        ("pull-logs", Risk::Low, json!({"lines": 5})),
    ] {
        let p = alice
            .preview(&req(action, "CHG-7001", "web", params))
            .await
            .expect("preview");
        let said = risk(&state, r);
        assert_eq!(
            said.decision, p.decision,
            "{instant} {r:?}: {said:?} vs {p:?}"
        );
        assert!(said.actions.contains(&action.to_string()), "{said:?}");
        // The same first sentence, up to the countdowns ("in 5h59m"), which move on.
        let cut = |s: &str| s.split(" (in ").next().unwrap_or_default().to_string();
        assert_eq!(cut(&said.reasons[0]), cut(&p.reasons[0]), "{instant} {r:?}");
    }
    state
}

/// An observer runs nothing: `window at` says so at every risk (it said a medium-risk change
/// "executes directly", an L1's answer), and tells them the calendar as it tells anyone.
#[tokio::test]
async fn windows_at_tells_an_observer_they_request_nothing() {
    let mut srv = TestServer::start(TUESDAY_10).await;
    srv.add_operator("olga", Level::Observer).await;
    let olga = srv
        .client("olga")
        .window_at(TUESDAY_10)
        .await
        .expect("an observer reads GET /windows/at");
    let alice = srv.client("alice").window_at(TUESDAY_10).await.expect("at");
    assert_eq!(olga.state, CalendarOpen::Open);
    assert_eq!(
        (&olga.open, &olga.summary, &olga.next_transition),
        (&alice.open, &alice.summary, &alice.next_transition)
    );
    assert_eq!(olga.risks.len(), alice.risks.len());
    for r in &olga.risks {
        assert_eq!(r.decision, Outcome::Blocked, "{r:?}");
        assert_eq!(r.blocked_by, Some(Rule::Observer), "{r:?}");
        assert!(
            r.reasons[0].starts_with("observers cannot request changes"),
            "{r:?}"
        );
        assert!(
            !r.reasons
                .iter()
                .any(|why| why.contains("executes directly")),
            "{r:?}"
        );
    }
    // The same instant, asked by an L1: a medium-risk change runs.
    assert_eq!(risk(&alice, Risk::Medium).decision, Outcome::Execute);
}

#[tokio::test]
async fn windows_at_agrees_with_a_request_at_that_time() {
    let srv = TestServer::start(TUESDAY_10).await;

    let s = agrees_with_a_request_at(&srv, TUESDAY_10).await;
    assert_eq!(s.state, CalendarOpen::Open);
    let open = s.open.as_ref().expect("the Standard window");
    assert_eq!(
        (open.kind, open.closes_at),
        (WindowKind::Standard, at("2026-11-24T16:00:00Z"))
    );
    let next = s.next_transition.as_ref().expect("a transition");
    assert_eq!(next.at, at("2026-11-24T16:00:00Z"));
    assert_eq!(next.change, "Standard window closes");
    assert_eq!(risk(&s, Risk::Medium).decision, Outcome::Execute);
    // alice is L1: a high-risk change needs an approval, and Off-peak is preferred.
    assert_eq!(risk(&s, Risk::High).decision, Outcome::NeedsApproval);
    assert!(!risk(&s, Risk::High).warnings.is_empty());

    let s = agrees_with_a_request_at(&srv, "2026-11-24T23:30:00Z").await;
    assert_eq!(s.state, CalendarOpen::Open);
    assert_eq!(s.open.as_ref().map(|o| o.kind), Some(WindowKind::OffPeak));
    assert_eq!(
        s.next_transition.as_ref().map(|n| n.at),
        Some(at("2026-11-25T06:00:00Z"))
    );

    let s = agrees_with_a_request_at(&srv, SATURDAY_NOON).await;
    assert_eq!(s.state, CalendarOpen::Closed);
    assert!(s.open.is_none());
    assert_eq!(risk(&s, Risk::Medium).decision, Outcome::Blocked);
    assert_eq!(risk(&s, Risk::Low).decision, Outcome::Execute);
    let next = s.next_transition.as_ref().expect("a transition");
    assert_eq!(
        (next.at, next.change.as_str()),
        (at("2026-11-30T22:00:00Z"), "Off-peak window opens")
    );

    // Inside a window, during the configured freeze: closed by the freeze alone.
    let s = agrees_with_a_request_at(&srv, IN_Q4_FREEZE).await;
    assert_eq!(s.state, CalendarOpen::Closed);
    assert_eq!(
        s.freeze.as_ref().map(|f| f.name.as_str()),
        Some("Q4 freeze")
    );
    assert_eq!(s.open.as_ref().map(|o| o.kind), Some(WindowKind::Standard));
    assert!(
        risk(&s, Risk::Medium).reasons[0].contains("Q4 freeze"),
        "{s:?}"
    );
    assert!(
        s.summary.starts_with("CLOSED: freeze 'Q4 freeze'"),
        "{}",
        s.summary
    );

    // The freeze's last window-less night: its end is the transition.
    let s = srv
        .client("bob")
        .window_at("2027-01-03T12:00:00Z")
        .await
        .expect("at");
    let next = s.next_transition.expect("a transition");
    assert_eq!(next.at, at("2027-01-04T00:00:00Z"));
    assert_eq!(next.change, "freeze 'Q4 freeze' ends");
}

#[tokio::test]
async fn a_pause_is_in_force_at_every_instant_after_it_started() {
    let srv = TestServer::start(TUESDAY_10).await;
    let bob = srv.client("bob");
    bob.pause(&PauseRequest {
        reason: "elevated errors".into(),
    })
    .await
    .expect("pause");
    let later = bob.window_at("2026-11-24T11:00:00Z").await.expect("at");
    assert_eq!(later.state, CalendarOpen::Closed);
    assert_eq!(
        later.pause.as_ref().map(|p| p.paused_by.as_str()),
        Some("bob")
    );
    assert_eq!(risk(&later, Risk::Medium).decision, Outcome::Blocked);
    assert_eq!(risk(&later, Risk::Low).decision, Outcome::Execute);
    // Before it started, the pause was not in force.
    let before = bob.window_at("2026-11-24T09:30:00Z").await.expect("at");
    assert!(before.pause.is_none());
    assert_eq!(before.state, CalendarOpen::Open);
    // What a request now is told agrees.
    let (_, message) = api_error(
        bob.create_change(&req("record-medium", "CHG-7002", "web", json!({})), None)
            .await,
        409,
    );
    assert!(message.contains("paused"), "{message}");
    let now = bob.window_at("now").await.expect("at now");
    assert_eq!(now.state, CalendarOpen::Closed);
    assert!((now.time - at(TUESDAY_10)).num_seconds().abs() < 60);
}

#[tokio::test]
async fn a_bad_time_is_a_400_that_names_the_parameter_and_the_format() {
    let srv = TestServer::start(TUESDAY_10).await;
    for query in [
        "",
        "?time=",
        "?time=tomorrow",
        "?time=2026-13-01T00:00:00Z",
        "?time=2026-11-24%2010:00",
        "?time=0000-01-01T00:00:00Z",
        // An Off-peak window open then would end in the year 10000.
        "?time=9999-12-31T23:00:00Z",
    ] {
        let r = send(srv.raw_as("bob", Method::GET, &format!("/api/v1/windows/at{query}"))).await;
        let e = r.error(400);
        assert_eq!(e.error, "bad_request", "{query}");
        assert!(e.message.contains("'time'"), "{query}: {}", e.message);
        if query.len() > 6 && !query.starts_with("?time=0000") && !query.starts_with("?time=9999") {
            assert!(e.message.contains("RFC 3339"), "{query}: {}", e.message);
        }
    }
    // The last instant answered: every time in the answer is one RFC 3339 can write.
    let last = send(srv.raw_as(
        "bob",
        Method::GET,
        "/api/v1/windows/at?time=9998-12-31T23:00:00Z",
    ))
    .await;
    assert_eq!(last.status, 200, "{}", last.text());
    assert!(
        !last.text().contains("+10000"),
        "a time past 9999: {}",
        last.text()
    );
    // An offset is read as the instant it names.
    let s = srv
        .client("bob")
        .window_at("2026-11-24T11:00:00+01:00")
        .await
        .expect("at");
    assert_eq!(s.time, at(TUESDAY_10));
    // Without a token: 401 before anything else.
    send(srv.raw(Method::GET, "/api/v1/windows/at?time=now"))
        .await
        .error(401);
}

/// Runs the real binary against `srv` as bob; (success, stdout, stderr).
async fn cli(srv: &TestServer, args: &[&str]) -> (bool, String, String) {
    let out = cli_as_bob(srv, args).await;
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn the_cli_answers_window_at_and_exports_the_servers_feed() {
    let srv = TestServer::start(TUESDAY_10).await;

    let (ok, out, err) = cli(&srv, &["window", "at", SATURDAY_NOON]).await;
    assert!(ok, "{err}");
    assert!(out.starts_with("CLOSED  at 2026-11-28 12:00 UTC"), "{out}");
    assert!(out.contains("medium"), "{out}");
    assert!(
        out.contains("next: Off-peak window opens at 2026-11-30 22:00 UTC"),
        "{out}"
    );
    let (ok, out, err) = cli(&srv, &["window", "at", "now", "--json"]).await;
    assert!(ok, "{err}");
    let state: CalendarState = serde_json::from_str(&out).expect("JSON");
    assert_eq!(state.state, CalendarOpen::Open);
    let (ok, _, err) = cli(&srv, &["window", "at", "next tuesday"]).await;
    assert!(!ok);
    assert!(err.contains("'time'") && err.contains("RFC 3339"), "{err}");

    // The export is the server's feed, byte for byte (DTSTAMP aside: the clock moves on).
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("cb.ics");
    let file_arg = file.to_str().expect("utf-8 path");
    let (ok, _, err) = cli(&srv, &["window", "export", "--ics", "--output", file_arg]).await;
    assert!(ok, "{err}");
    assert!(err.contains("events"), "{err}");
    let written = std::fs::read_to_string(&file).expect("the file");
    let served = srv.client("bob").calendar_ics().await.expect("feed");
    let no_stamp = |s: &str| {
        s.split("\r\n")
            .filter(|l| !l.starts_with("DTSTAMP:"))
            .collect::<Vec<_>>()
            .join("\r\n")
    };
    assert_eq!(no_stamp(&written), no_stamp(&served));
    let (ok, out, _) = cli(&srv, &["window", "export", "--ics"]).await;
    assert!(ok);
    assert!(out.starts_with("BEGIN:VCALENDAR\r\n"));

    // A feed URL from the CLI works without a header; revoked from the CLI, it does not.
    let (ok, out, err) = cli(&srv, &["calendar", "feed-url", "--label", "ops"]).await;
    assert!(ok, "{err}");
    let url = out.lines().next().expect("the URL first");
    assert!(url.starts_with(&format!("{}/api/v1/calendar.ics?feed=cbf_", srv.base())));
    let fetched = reqwest::get(url).await.expect("fetch");
    assert_eq!(fetched.status(), 200);
    let (ok, out, _) = cli(&srv, &["calendar", "feeds"]).await;
    assert!(
        ok && out.contains("#1  ops  active  created by bob"),
        "{out}"
    );
    let (ok, out, err) = cli(&srv, &["calendar", "revoke", "1"]).await;
    assert!(ok && out.starts_with("revoked #1"), "{out}{err}");
    assert_eq!(reqwest::get(url).await.expect("fetch").status(), 401);
}

#[tokio::test]
async fn scheduled_changes_are_in_the_feed_until_they_can_no_longer_run() {
    use commandbridge::domain::ChangeState;
    use commandbridge::domain::api::CancelRequest;
    let srv = TestServer::start(TUESDAY_10).await;
    let (alice, bob) = (srv.client("alice"), srv.client("bob"));
    let scheduled = |action: &str, target: &str, run_at: &str| {
        let mut r = req(action, "CHG-7100", target, json!({}));
        r.run_at = Some(run_at.into());
        r
    };
    // bob (L2) needs no approval for a high-risk change: scheduled at once. alice (L1) does.
    let tonight = create(
        &bob,
        &scheduled("record-high", "checkout", "2026-11-24T23:00:00Z"),
    )
    .await;
    assert_eq!(tonight.state, ChangeState::Scheduled);
    // A reason with every character TEXT escaping is about reads back exactly.
    let reason = "leak, again; see \\runbook\nstep 2";
    let mut r = scheduled("record-high", "search", "next_window");
    r.reason = reason.into();
    let waiting = create(&alice, &r).await;
    assert_eq!(waiting.state, ChangeState::PendingApproval);
    let dropped = create(
        &bob,
        &scheduled("record-medium", "web", "2026-11-25T23:00:00Z"),
    )
    .await;
    bob.cancel(
        dropped.id,
        &CancelRequest {
            reason: "done by hand".into(),
        },
    )
    .await
    .expect("cancel");

    let text = bob.calendar_ics().await.expect("feed");
    let Some(cal) = icalendar::parse(&text) else {
        return;
    };
    let changes: Vec<_> = cal
        .events
        .iter()
        .filter(|e| e.categories == ["change"])
        .collect();
    assert_eq!(changes.len(), 2, "the cancelled one is gone: {changes:?}");
    let ev = changes
        .iter()
        .find(|e| e.uid == format!("change-{}@commandbridge", tonight.id))
        .expect("bob's scheduled change");
    assert_eq!(ev.start, "2026-11-24T23:00:00Z");
    // Its active period: until the end of its verification (15 minutes by default).
    assert_eq!(ev.end, "2026-11-24T23:15:00Z");
    assert_eq!(
        ev.summary,
        format!("#{} record-high on checkout", tonight.id)
    );
    assert!(
        ev.description.contains("requested by bob"),
        "{}",
        ev.description
    );
    let ev = changes
        .iter()
        .find(|e| e.uid == format!("change-{}@commandbridge", waiting.id))
        .expect("alice's change, waiting for approval");
    // The next window a high-risk change may use: tonight's Off-peak.
    assert_eq!(ev.start, "2026-11-24T22:00:00Z");
    assert!(
        ev.summary.ends_with("on search (awaiting approval)"),
        "{}",
        ev.summary
    );
    assert!(
        ev.description.contains(&format!("Reason: {reason}")),
        "{}",
        ev.description
    );
    // Same UIDs on the next fetch.
    let again = icalendar::parse(&bob.calendar_ics().await.expect("feed")).expect("parsed");
    let uids = |events: &[icalendar::ParsedEvent]| {
        events
            .iter()
            .filter(|e| e.categories == ["change"])
            .map(|e| e.uid.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(uids(&again.events), uids(&cal.events));
}

#[tokio::test]
async fn the_feed_lists_the_first_scheduled_changes_and_says_more_follow() {
    use commandbridge::server::calendar::FEED_MAX_CHANGES;
    use futures::StreamExt;
    let srv = TestServer::start(TUESDAY_10).await;
    // One more than the feed lists, ten seconds apart from 23:00 on (in one Off-peak window),
    // each on a target of its own; as many operators as that takes, each with as many as one may
    // have waiting.
    let per_operator = srv.state().config.server.quotas.scheduled_per_operator as usize;
    let operators: Vec<_> = load::add_operators(&srv.db_url(), FEED_MAX_CHANGES / per_operator + 1)
        .await
        .iter()
        .map(|token| srv.client_with_token(token))
        .collect();
    let first = at("2026-11-24T23:00:00Z");
    let made: Vec<i64> = futures::stream::iter(0..=FEED_MAX_CHANGES)
        .map(|i| {
            let client = &operators[i / per_operator];
            async move {
                let mut r = req("record-medium", "CHG-7200", &format!("t-{i}"), json!({}));
                r.run_at = Some(rfc3339(first + chrono::Duration::seconds(10 * i as i64)));
                (i, create(client, &r).await.id)
            }
        })
        .buffer_unordered(8)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .fold(vec![0; FEED_MAX_CHANGES + 1], |mut ids, (i, id)| {
            ids[i] = id;
            ids
        });
    let text = srv.client("bob").calendar_ics().await.expect("feed");
    let Some(cal) = icalendar::parse(&text) else {
        return;
    };
    let listed: BTreeSet<String> = cal
        .events
        .iter()
        .filter(|e| e.categories == ["change"])
        .map(|e| e.uid.clone())
        .collect();
    let soonest: BTreeSet<String> = made[..FEED_MAX_CHANGES]
        .iter()
        .map(|id| format!("change-{id}@commandbridge"))
        .collect();
    assert_eq!(listed, soonest, "the soonest {FEED_MAX_CHANGES}, in full");
    let more: Vec<_> = cal
        .events
        .iter()
        .filter(|e| e.categories == ["notice"])
        .collect();
    assert_eq!(more.len(), 1, "{more:?}");
    // It stands where the list stops: at the first change left out.
    assert_eq!(
        more[0].start,
        rfc3339(first + chrono::Duration::seconds(10 * FEED_MAX_CHANGES as i64))
    );
    assert!(
        more[0].description.contains("first 500 scheduled changes"),
        "{}",
        more[0].description
    );
}

/// One token must not mint feeds without end: an operator has at most
/// `[server.quotas] feeds_per_operator` active feeds, counted in the write transaction so that creations at
/// once cannot pass it; a revoked one makes room. The list is read a page at a time.
#[tokio::test]
async fn an_operator_has_a_bounded_number_of_active_feeds_and_the_list_is_paged() {
    let srv = TestServer::start(TUESDAY_10).await;
    let (alice, bob) = (srv.client("alice"), srv.client("bob"));
    let cap = srv.state().config.server.quotas.feeds_per_operator as usize;
    let label = |i: usize| FeedRequest {
        label: format!("feed {i}"),
    };
    // Five more than the cap, all at once: exactly the cap is created.
    let requests: Vec<_> = (0..cap + 5).map(label).collect();
    let results =
        futures::future::join_all(requests.iter().map(|r| alice.create_calendar_feed(r))).await;
    let (made, refused): (Vec<_>, Vec<_>) = results.into_iter().partition(Result::is_ok);
    assert_eq!((made.len(), refused.len()), (cap, 5), "{refused:?}");
    for r in refused {
        let (error, message) = api_error(r, 429);
        assert_eq!(error, "rate_limited");
        assert!(
            message.contains(&format!("{cap} active calendar feeds"))
                && message.contains("commandbridge calendar revoke ID"),
            "{message}"
        );
    }
    // The cap is per operator: bob is not held back by alice's feeds.
    let bobs = bob
        .create_calendar_feed(&label(99))
        .await
        .expect("bob creates one");
    // A revoked feed makes room for one more, and only one.
    let first = made[0].as_ref().expect("made").feed.id;
    alice.revoke_calendar_feed(first).await.expect("revoke");
    alice
        .create_calendar_feed(&label(100))
        .await
        .expect("room again after a revocation");
    api_error(alice.create_calendar_feed(&label(101)).await, 429);

    // The list: newest first, a page at a time, the Link header leading to the next one until
    // every feed (revoked ones too) was read once.
    let total = cap + 2;
    let page = alice.calendar_feeds().await.expect("list");
    assert_eq!(page.len(), total, "a default page holds them all");
    assert!(page.windows(2).all(|w| w[0].id > w[1].id), "newest first");
    let mut seen = Vec::new();
    let mut before = None;
    loop {
        let p = alice
            .calendar_feeds_page(before, Some(7))
            .await
            .expect("a page");
        assert!(p.items.len() <= 7);
        seen.extend(p.items.iter().map(|f| f.id));
        match p.next_before {
            Some(n) => before = Some(n),
            None => break,
        }
    }
    assert_eq!(seen, page.iter().map(|f| f.id).collect::<Vec<_>>());
    assert!(seen.contains(&bobs.feed.id) && seen.contains(&first));
    // A page the caller sizes beyond the bound, or a cursor that is no id, is refused.
    for query in ["limit=0", "limit=501", "before=0", "limit=x"] {
        let r = send(srv.raw_as(
            "alice",
            Method::GET,
            &format!("/api/v1/calendar/feeds?{query}"),
        ))
        .await;
        r.error(422);
    }

    // The CLI prints the server's words for the 429, and pages the list.
    for i in 0..cap - 1 {
        bob.create_calendar_feed(&label(200 + i))
            .await
            .expect("bob fills his quota");
    }
    let (ok, _, err) = cli(&srv, &["calendar", "feed-url", "--label", "one more"]).await;
    assert!(!ok);
    assert!(
        err.contains("429 rate_limited") && err.contains("calendar revoke ID"),
        "{err}"
    );
    let (ok, out, err) = cli(&srv, &["calendar", "feeds", "--limit", "3"]).await;
    assert!(ok, "{err}");
    assert_eq!(out.lines().count(), 3, "{out}");
    assert!(err.contains("more feeds: --before"), "{err}");
}
