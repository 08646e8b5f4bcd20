//! End to end, as a person would: the real binary's server, the real dashboard in tmux, a change
//! requested through the API appearing without a key press, approved with the keys.

use commandbridge::client::ApiClient;
use commandbridge::domain::api::{ApproveRequest, ChangeRequest, FreezeRequest};
use commandbridge::domain::change::ChangeState;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_commandbridge");

#[path = "support/tmux.rs"]
mod tmux;
use tmux::{Tmux, sandbox};

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn user_add(db: &str, name: &str, level: &str) -> String {
    let out = Command::new(BIN)
        .args(["user", "add", name, "--level", level, "--database", db])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// Starts `commandbridge serve` on a free port with its clock inside the Standard window.
fn serve(db: &str) -> (Server, String) {
    let mut child = Command::new(BIN)
        .args([
            "serve",
            "--database",
            db,
            "--listen",
            "127.0.0.1:0",
            "--now",
            "2026-11-24T10:00:00Z",
        ])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let url = loop {
        let line = lines
            .next()
            .expect("the server exited before serving")
            .unwrap();
        if let Some(url) = line.strip_prefix("commandbridge serving on ") {
            break url.trim().to_string();
        }
    };
    // Keep draining stderr so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (Server(child), url)
}

#[tokio::test(flavor = "multi_thread")]
async fn an_l2_sees_a_request_arrive_and_approves_it_with_the_keys() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("cb.db").display());
    let alice = user_add(&db, "alice", "L1");
    let bob = user_add(&db, "bob", "L2");
    let (_server, url) = serve(&db);

    let mut vars = sandbox(dir.path());
    vars.extend([format!("CB_SERVER={url}"), format!("CB_TOKEN={bob}")]);
    let tmux = Tmux::start("e2e-dash", (160, 48), &vars, &[BIN, "tui"]).unwrap();

    tmux.wait_for("● live", Duration::from_secs(15)).unwrap();
    tmux.wait_for("no change is waiting for approval", Duration::from_secs(5))
        .unwrap();

    // Alice, an L1, asks for a high-risk change through the API.
    let api = ApiClient::new(&url, &alice).unwrap();
    let change = api
        .create_change(
            &ChangeRequest {
                action: "blacklist-ip".into(),
                ticket: "CHG-1234".into(),
                target: "edge-1".into(),
                params: [("ip".to_string(), serde_json::json!("203.0.113.7"))].into(),
                reason: "credential stuffing".into(),
                run_at: None,
            },
            None,
        )
        .await
        .unwrap();
    assert_eq!(change.state, ChangeState::PendingApproval);

    // It shows up in bob's queue with no key pressed.
    let started = Instant::now();
    // The pane's title says "0 you can approve" from the start: wait for the row itself.
    tmux.wait_for("alice  you can approve", Duration::from_secs(3))
        .unwrap();
    let seen_after = started.elapsed();
    assert!(
        seen_after < Duration::from_secs(1),
        "took {seen_after:?} to appear"
    );

    // Bob approves it from the keyboard: a, then y to confirm.
    tmux.keys(&["2", "a"]).unwrap();
    tmux.wait_for("Approve change #1", Duration::from_secs(3))
        .unwrap();
    tmux.keys(&["y"]).unwrap();
    tmux.wait_for("approved: change #1 executed", Duration::from_secs(5))
        .unwrap();

    let done = api.change(change.id).await.unwrap();
    assert_eq!(done.state, ChangeState::Executed);
    assert_eq!(done.approvals[0].approver, "bob");

    // q quits and gives the terminal back.
    tmux.keys(&["q"]).unwrap();
    let end = Instant::now() + Duration::from_secs(5);
    while Instant::now() < end && tmux.screen().contains("CommandBridge") {
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// An SSH drop: the terminal disappears under the demo (dashboard and server in one process).
/// It must end, not hang or spin.
#[test]
fn the_demo_ends_when_its_terminal_goes_away() {
    let dir = tempfile::tempdir().unwrap();
    let tmux = Tmux::start("e2e-hup", (80, 24), &sandbox(dir.path()), &[BIN, "demo"]).unwrap();

    tmux.wait_for("● live", Duration::from_secs(20)).unwrap();
    let pid = tmux.pid().unwrap();
    tmux.kill().unwrap();
    let end = Instant::now() + Duration::from_secs(10);
    while std::path::Path::new(&format!("/proc/{pid}")).exists() {
        assert!(
            Instant::now() < end,
            "the demo (pid {pid}) is still running 10 s after its terminal went away"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// 3 a.m., as the incident commander: carol escalates the verification of bob's change from the
/// keyboard (declaring an incident and pausing every change), then rolls that change back during
/// the pause her escalation started. The rollback is not refused: it waits for an L2 or L3 other
/// than carol (she commands the incident), and runs when bob approves it.
#[tokio::test(flavor = "multi_thread")]
async fn a_commander_escalates_then_rolls_back_during_the_pause() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("cb.db").display());
    let bob = user_add(&db, "bob", "L2");
    let carol = user_add(&db, "carol", "L3");
    let (_server, url) = serve(&db);
    let api = ApiClient::new(&url, &bob).unwrap();
    let change = api
        .create_change(
            &ChangeRequest {
                action: "scale-service".into(),
                ticket: "CHG-2001".into(),
                target: "search".into(),
                params: [("replicas".to_string(), serde_json::json!(12))].into(),
                reason: "campaign traffic".into(),
                run_at: None,
            },
            None,
        )
        .await
        .unwrap();

    let mut vars = sandbox(dir.path());
    vars.extend([format!("CB_SERVER={url}"), format!("CB_TOKEN={carol}")]);
    let tmux = Tmux::start("e2e-incident", (80, 24), &vars, &[BIN, "tui"]).unwrap();
    tmux.wait_for("● live", Duration::from_secs(15)).unwrap();
    tmux.keys(&["4"]).unwrap();
    tmux.wait_for("left", Duration::from_secs(5)).unwrap();

    tmux.keys(&["e"]).unwrap();
    tmux.wait_for("Escalate change #1", Duration::from_secs(3))
        .unwrap();
    tmux.keys(&["y"]).unwrap();
    // Line 1 names the incident and its commander, and says changes are paused (the pause
    // arrives a moment after the incident: wait for it).
    let screen = tmux.wait_for("· PAUSED", Duration::from_secs(5)).unwrap();
    let line1 = screen.lines().next().unwrap_or_default().to_string();
    assert!(
        line1.contains("INCIDENT INC-2026-1124-") && line1.contains("· IC carol ·"),
        "{screen}"
    );
    tmux.wait_for("escalated", Duration::from_secs(3)).unwrap();

    tmux.keys(&["r"]).unwrap();
    tmux.wait_for(
        &format!("Roll back change #{}", change.id),
        Duration::from_secs(3),
    )
    .unwrap();
    tmux.keys(&["y"]).unwrap();
    let screen = tmux
        .wait_for("rollback requested as change #", Duration::from_secs(5))
        .unwrap();
    assert!(!screen.contains("refused"), "{screen}");

    let all = api.changes(None, None).await.unwrap();
    let rb = all
        .iter()
        .find(|c| c.rollback_of == Some(change.id))
        .unwrap_or_else(|| panic!("no rollback of #{} in {all:#?}", change.id));
    assert_eq!(rb.state, ChangeState::PendingApproval);
    assert_eq!(rb.requested_by, "carol");
    assert!(rb.emergency.is_some(), "{rb:#?}");
    // bob, an L2 other than the commander, approves: it runs, still during the pause.
    let done = api
        .approve(rb.id, &ApproveRequest::default())
        .await
        .unwrap();
    assert!(
        matches!(done.state, ChangeState::Executed | ChangeState::Executing),
        "{done:#?}"
    );
    assert!(api.current_window().await.unwrap().pause.is_some());
    tmux.keys(&["2"]).unwrap();
}

/// `x` in the Windows pane asks before it removes a freeze, naming it; "no" keeps it.
#[tokio::test(flavor = "multi_thread")]
async fn x_asks_before_it_removes_a_freeze() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("cb.db").display());
    let carol = user_add(&db, "carol", "L3");
    let (_server, url) = serve(&db);
    let api = ApiClient::new(&url, &carol).unwrap();
    api.create_freeze(&FreezeRequest {
        name: "Launch".into(),
        starts_at: "2026-11-26T00:00:00Z".parse().unwrap(),
        ends_at: "2026-11-27T00:00:00Z".parse().unwrap(),
    })
    .await
    .unwrap();

    let mut vars = sandbox(dir.path());
    vars.extend([format!("CB_SERVER={url}"), format!("CB_TOKEN={carol}")]);
    let tmux = Tmux::start("e2e-freeze", (80, 24), &vars, &[BIN, "tui"]).unwrap();
    tmux.wait_for("● live", Duration::from_secs(15)).unwrap();
    tmux.keys(&["3"]).unwrap();
    tmux.wait_for("x remove freeze", Duration::from_secs(5))
        .unwrap();
    tmux.keys(&["x"]).unwrap();
    tmux.wait_for("Remove freeze 'Launch'", Duration::from_secs(3))
        .unwrap();
    let freezes = || async {
        api.calendar(
            "2026-11-23T00:00:00Z".parse().unwrap(),
            "2026-11-30T00:00:00Z".parse().unwrap(),
        )
        .await
        .unwrap()
        .blocks
        .into_iter()
        .filter(|b| b.freeze_id.is_some())
        .count()
    };
    assert_eq!(
        freezes().await,
        1,
        "x removed the freeze before it was confirmed"
    );
    tmux.keys(&["n"]).unwrap();
    tmux.wait_for("the freeze stays", Duration::from_secs(3))
        .unwrap();
    assert_eq!(freezes().await, 1);
    tmux.keys(&["x"]).unwrap();
    tmux.wait_for("Remove freeze 'Launch'", Duration::from_secs(3))
        .unwrap();
    tmux.keys(&["y"]).unwrap();
    // "removed": the confirmation itself says "u undoes it" too.
    let screen = tmux
        .wait_for("removed · u undoes it", Duration::from_secs(5))
        .unwrap();
    assert_eq!(freezes().await, 0, "{screen}");
}

/// C on a scheduled change in the Windows pane: a reason, Enter, and the server has it
/// cancelled with that reason; the list under the calendar lets it go.
#[tokio::test(flavor = "multi_thread")]
async fn c_cancels_a_scheduled_change_with_a_reason() {
    cancels_with_a_reason("e2e-cancel", |tmux| {
        tmux.keys(&["3"]).unwrap();
        tmux.wait_for("C cancel", Duration::from_secs(5)).unwrap();
        tmux.keys(&["C"]).unwrap();
    })
    .await;
}

/// `:cancel 1` typed in the pane the dashboard opens on (Tab completing it) asks the same
/// question as C and cancels the same way; a number it does not know says so first.
#[tokio::test(flavor = "multi_thread")]
async fn colon_cancel_n_cancels_that_change_with_a_reason() {
    cancels_with_a_reason("e2e-cancel-line", |tmux| {
        tmux.keys(&[":"]).unwrap();
        tmux.keys(&["-l", "cancel 99"]).unwrap();
        tmux.keys(&["Enter"]).unwrap();
        tmux.wait_for("change #99 is not loaded", Duration::from_secs(3))
            .unwrap();
        tmux.keys(&[":"]).unwrap();
        tmux.keys(&["-l", "ca"]).unwrap();
        tmux.keys(&["Tab"]).unwrap();
        tmux.keys(&["-l", "1"]).unwrap();
        tmux.wait_for(":cancel 1", Duration::from_secs(3)).unwrap();
        tmux.keys(&["Enter"]).unwrap();
    })
    .await;
}

/// Bob's change #1, scheduled for tonight, on his dashboard at 80x24: `open` brings up its
/// reason prompt; Enter with no reason sends nothing, a reason cancels it on the server, and
/// the Windows pane's list lets it go.
async fn cancels_with_a_reason(session: &str, open: impl FnOnce(&Tmux)) {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("cb.db").display());
    let bob = user_add(&db, "bob", "L2");
    let (_server, url) = serve(&db);
    let api = ApiClient::new(&url, &bob).unwrap();
    let change = api
        .create_change(
            &ChangeRequest {
                action: "restart-pods".into(),
                ticket: "CHG-1234".into(),
                target: "checkout".into(),
                params: Default::default(),
                reason: "pick up the new config".into(),
                run_at: Some("2026-11-24T22:00:00Z".into()),
            },
            None,
        )
        .await
        .unwrap();
    assert_eq!(change.state, ChangeState::Scheduled);

    let mut vars = sandbox(dir.path());
    vars.extend([format!("CB_SERVER={url}"), format!("CB_TOKEN={bob}")]);
    let tmux = Tmux::start(session, (80, 24), &vars, &[BIN, "tui"]).unwrap();
    tmux.wait_for("● live", Duration::from_secs(15)).unwrap();
    open(&tmux);
    tmux.wait_for("Cancel change #1", Duration::from_secs(3))
        .unwrap();
    // Enter with no reason sends nothing.
    tmux.keys(&["Enter"]).unwrap();
    tmux.wait_for("a reason is required", Duration::from_secs(3))
        .unwrap();
    assert_eq!(
        api.change(change.id).await.unwrap().state,
        ChangeState::Scheduled
    );
    tmux.keys(&["-l", "config rolled back"]).unwrap();
    tmux.keys(&["Enter"]).unwrap();
    let screen = tmux
        .wait_for("change #1 cancelled", Duration::from_secs(5))
        .unwrap();
    let done = api.change(change.id).await.unwrap();
    assert_eq!(done.state, ChangeState::Cancelled, "{screen}");
    assert_eq!(
        done.outcome_reason.as_deref(),
        Some("config rolled back"),
        "{screen}"
    );
    tmux.keys(&["3"]).unwrap();
    tmux.wait_for(
        "no freeze or scheduled change this week",
        Duration::from_secs(3),
    )
    .unwrap();
}

/// Read-only, end to end: an L3 whose config says `read_only = true` presses x on a freeze and
/// nothing is removed; an observer's dashboard is read-only without asking, and `tui
/// --read-only` is too.
#[tokio::test(flavor = "multi_thread")]
async fn a_read_only_dashboard_acts_on_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("cb.db").display());
    let carol = user_add(&db, "carol", "L3");
    let olga = user_add(&db, "olga", "observer");
    let (_server, url) = serve(&db);
    let api = ApiClient::new(&url, &carol).unwrap();
    api.create_freeze(&FreezeRequest {
        name: "Launch".into(),
        starts_at: "2026-11-26T00:00:00Z".parse().unwrap(),
        ends_at: "2026-11-27T00:00:00Z".parse().unwrap(),
    })
    .await
    .unwrap();

    // carol, on a wall screen: the config file asks for read-only.
    let mut vars = sandbox(dir.path());
    std::fs::create_dir_all(dir.path().join("cb-config")).unwrap();
    std::fs::write(
        dir.path().join("cb-config/config.toml"),
        "read_only = true\n",
    )
    .unwrap();
    vars.extend([format!("CB_SERVER={url}"), format!("CB_TOKEN={carol}")]);
    let tmux = Tmux::start("e2e-read-only", (80, 24), &vars, &[BIN, "tui"]).unwrap();
    let screen = tmux.wait_for("● live", Duration::from_secs(15)).unwrap();
    assert!(screen.starts_with(" READ-ONLY "), "{screen}");
    tmux.keys(&["3"]).unwrap();
    tmux.wait_for("FREEZE 'Launch'", Duration::from_secs(5))
        .unwrap();
    tmux.keys(&["x"]).unwrap();
    let screen = tmux
        .wait_for(
            "read-only: removing a freeze is not allowed here",
            Duration::from_secs(3),
        )
        .unwrap();
    assert!(!screen.contains("x remove freeze"), "{screen}");
    tmux.keys(&["y"]).unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let calendar = api
        .calendar(
            "2026-11-23T00:00:00Z".parse().unwrap(),
            "2026-11-30T00:00:00Z".parse().unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(
        calendar
            .blocks
            .iter()
            .filter(|b| b.freeze_id.is_some())
            .count(),
        1,
        "the freeze is still there"
    );
    drop(tmux);

    // olga, an observer, without asking for anything; and `--read-only` on the command line.
    std::fs::remove_file(dir.path().join("cb-config/config.toml")).unwrap();
    for (token, args) in [
        (&olga, vec![BIN]),
        (&carol, vec![BIN, "tui", "--read-only"]),
    ] {
        let mut vars = sandbox(dir.path());
        vars.extend([format!("CB_SERVER={url}"), format!("CB_TOKEN={token}")]);
        let tmux = Tmux::start("e2e-observer", (80, 24), &vars, &args).unwrap();
        let screen = tmux.wait_for("● live", Duration::from_secs(15)).unwrap();
        assert!(screen.starts_with(" READ-ONLY "), "{args:?}: {screen}");
        tmux.keys(&["3", "f"]).unwrap();
        tmux.wait_for(
            "read-only: announcing a freeze is not allowed here",
            Duration::from_secs(3),
        )
        .unwrap();
    }
}
