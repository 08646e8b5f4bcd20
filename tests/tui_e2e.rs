//! End to end, as a person would: the real binary's server, the real dashboard in tmux, a change
//! requested through the API appearing without a key press, approved with the keys.

use commandbridge::client::ApiClient;
use commandbridge::domain::api::ChangeRequest;
use commandbridge::domain::change::ChangeState;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_commandbridge");

struct Tmux {
    socket: String,
    session: &'static str,
}

impl Tmux {
    /// Runs `commandbridge ARGS` in a fresh tmux server of its own, with its config, data and
    /// home in `home` so nothing touches the user's, plus the `env` given.
    fn start(name: &str, size: (u16, u16), home: &str, env: &[String], args: &[&str]) -> Tmux {
        let tmux = Tmux {
            socket: format!("cb-e2e-{name}-{}", std::process::id()),
            session: "dash",
        };
        let (cols, rows) = (size.0.to_string(), size.1.to_string());
        let mut cmd: Vec<String> = [
            "new-session",
            "-d",
            "-s",
            tmux.session,
            "-x",
            &cols,
            "-y",
            &rows,
            "env",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        cmd.extend(env.iter().cloned());
        cmd.extend([
            format!("CB_CONFIG_DIR={home}/config"),
            format!("XDG_DATA_HOME={home}/data"),
            format!("HOME={home}"),
            BIN.to_string(),
        ]);
        cmd.extend(args.iter().map(|a| a.to_string()));
        let refs: Vec<&str> = cmd.iter().map(String::as_str).collect();
        let out = tmux.cmd(&refs);
        assert!(
            out.status.success(),
            "tmux: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        tmux
    }

    fn cmd(&self, args: &[&str]) -> std::process::Output {
        Command::new("tmux")
            .args(["-L", &self.socket])
            .args(args)
            .output()
            .expect("tmux is needed for this test: .ci/run installs it (apt-get install tmux)")
    }

    fn screen(&self) -> String {
        String::from_utf8_lossy(&self.cmd(&["capture-pane", "-p", "-t", self.session]).stdout)
            .into_owned()
    }

    fn wait_for(&self, text: &str, within: Duration) -> String {
        let end = Instant::now() + within;
        loop {
            let screen = self.screen();
            if screen.contains(text) {
                return screen;
            }
            assert!(
                Instant::now() < end,
                "'{text}' not on screen after {within:?}; screen:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", self.session];
        args.extend_from_slice(keys);
        self.cmd(&args);
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd(&["kill-server"]);
    }
}

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

    let home = dir.path().display().to_string();
    let env = [format!("CB_SERVER={url}"), format!("CB_TOKEN={bob}")];
    let tmux = Tmux::start("dash", (160, 48), &home, &env, &["tui"]);

    tmux.wait_for("● live", Duration::from_secs(15));
    tmux.wait_for("no change is waiting for approval", Duration::from_secs(5));

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
            },
            None,
        )
        .await
        .unwrap();
    assert_eq!(change.state, ChangeState::PendingApproval);

    // It shows up in bob's queue with no key pressed.
    let started = Instant::now();
    tmux.wait_for("you can approve", Duration::from_secs(3));
    let seen_after = started.elapsed();
    assert!(
        seen_after < Duration::from_secs(1),
        "took {seen_after:?} to appear"
    );

    // Bob approves it from the keyboard: a, then y to confirm.
    tmux.keys(&["2", "a"]);
    tmux.wait_for("Approve change #1", Duration::from_secs(3));
    tmux.keys(&["y"]);
    tmux.wait_for("approved: change #1 executed", Duration::from_secs(5));

    let done = api.change(change.id).await.unwrap();
    assert_eq!(done.state, ChangeState::Executed);
    assert_eq!(done.approvals[0].approver, "bob");

    // q quits and gives the terminal back.
    tmux.keys(&["q"]);
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
    let home = dir.path().display().to_string();
    let tmux = Tmux::start("hup", (80, 24), &home, &[], &["demo"]);

    tmux.wait_for("● live", Duration::from_secs(20));
    let pid = String::from_utf8_lossy(
        &tmux
            .cmd(&["list-panes", "-t", tmux.session, "-F", "#{pane_pid}"])
            .stdout,
    )
    .trim()
    .to_string();
    assert!(!pid.is_empty());
    tmux.cmd(&["kill-server"]);
    let end = Instant::now() + Duration::from_secs(10);
    while std::path::Path::new(&format!("/proc/{pid}")).exists() {
        assert!(
            Instant::now() < end,
            "the demo (pid {pid}) is still running 10 s after its terminal went away"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
