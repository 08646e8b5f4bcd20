//! The operator's tools must not lie or leak: `audit verify` against a live server, `login`
//! without the token on the command line or a followed symlink, private database files, and an
//! honest record of a command the server was killed in the middle of.

use crate::support::binary::{BIN, BinaryOptions, BinaryServer};
use crate::support::{TUESDAY_10, TestServer, create, req, sqlite_only};
use commandbridge::domain::ChangeState;
use serde_json::json;
use std::path::Path;
use std::process::Output;
use std::time::Duration;

/// Runs the real binary with `args` (and `stdin` piped in), with a clean environment for the
/// client settings.
async fn run_cli(args: &[&str], config_dir: Option<&Path>, stdin: &str) -> Output {
    use tokio::io::AsyncWriteExt;
    let mut cmd = tokio::process::Command::new(BIN);
    cmd.args(args)
        .env("NO_COLOR", "1")
        .env_remove("RUST_LOG")
        .env_remove("CB_TOKEN")
        .env_remove("CB_SERVER")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    if let Some(dir) = config_dir {
        cmd.env("CB_CONFIG_DIR", dir);
    }
    let mut child = cmd.spawn().expect("start commandbridge");
    let mut pipe = child.stdin.take().expect("stdin");
    pipe.write_all(stdin.as_bytes()).await.expect("write stdin");
    drop(pipe);
    tokio::time::timeout(Duration::from_secs(20), child.wait_with_output())
        .await
        .expect("the command ends within 20 s")
        .expect("run commandbridge")
}

fn text(out: &Output) -> String {
    format!(
        "status {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

// ---- audit verify ------------------------------------------------------------------------------

/// The check reads the head and the log in one snapshot: a server appending meanwhile must not
/// make an intact log look broken.
#[tokio::test]
async fn audit_verify_passes_while_the_server_writes() {
    let srv = BinaryServer::start(BinaryOptions::default()).await;
    let bob = srv.client("bob");
    let writing = tokio::spawn(async move {
        for i in 0.. {
            let target = format!("w{i}");
            create(&bob, &req("record-medium", "CHG-1", &target, json!({}))).await;
        }
    });
    let db = srv.db_url();
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..15 {
        let out = run_cli(&["audit", "verify", "--database", &db], None, "").await;
        assert!(out.status.success(), "{}", text(&out));
        let stdout = String::from_utf8_lossy(&out.stdout);
        let entries = stdout
            .strip_prefix("audit log intact: ")
            .and_then(|s| s.split(' ').next())
            .unwrap_or_else(|| panic!("{}", text(&out)));
        seen.insert(entries.to_string());
    }
    // Otherwise the checks did not overlap the writes and prove nothing.
    assert!(seen.len() >= 3, "the log barely grew meanwhile: {seen:?}");
    assert!(!writing.is_finished(), "the writer stopped early");
    writing.abort();
}

// ---- database files ----------------------------------------------------------------------------

fn mode_of(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

fn beside(db: &Path, suffix: &str) -> std::path::PathBuf {
    format!("{}{suffix}", db.display()).into()
}

/// The database holds the audit log and every token's hash: no other user may read it, nor the
/// WAL and shared-memory files beside it, and a file left readable is tightened at start.
#[tokio::test]
async fn the_database_and_its_wal_and_shm_are_private() {
    if !sqlite_only("the modes of the database file and its WAL") {
        return;
    }
    let mut srv = BinaryServer::start(BinaryOptions::default()).await;
    create(
        &srv.client("bob"),
        &req("record-medium", "CHG-1", "web", json!({})),
    )
    .await;
    let db = srv.db_path();
    for p in [db.clone(), beside(&db, "-wal"), beside(&db, "-shm")] {
        assert_eq!(mode_of(&p), 0o600, "{}", p.display());
    }

    srv.kill().await;
    for p in [db.clone(), beside(&db, "-wal")] {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    }
    srv.boot().await;
    for p in [db.clone(), beside(&db, "-wal"), beside(&db, "-shm")] {
        assert_eq!(mode_of(&p), 0o600, "{} after a restart", p.display());
    }
}

// ---- login -------------------------------------------------------------------------------------

/// A server to log in to and a config directory of its own (mode 0700, as `login` makes it).
async fn login_setup() -> (TestServer, tempfile::TempDir, std::path::PathBuf) {
    let srv = TestServer::start(TUESDAY_10).await;
    let home = tempfile::tempdir().expect("a temporary directory");
    let dir = home.path().join("cfg");
    std::fs::create_dir(&dir).expect("mkdir");
    chmod(&dir, 0o700);
    (srv, home, dir)
}

fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// `commandbridge login --server URL [extra]`, the token piped on stdin.
async fn login(srv: &TestServer, dir: &Path, extra: &[&str], stdin: &str) -> Output {
    let mut args = vec!["login", "--server", srv.base()];
    args.extend_from_slice(extra);
    run_cli(&args, Some(dir), stdin).await
}

/// The token `login` saved, read back as the client reads it.
fn saved_token(dir: &Path) -> Option<String> {
    let (settings, _) =
        commandbridge::client::settings::load_from(&dir.join("config.toml")).expect("trusted");
    settings.token
}

/// On the command line a token shows in `ps` and the shell history: `login` takes it on stdin,
/// with `--token` left out or given as `-`.
#[tokio::test]
async fn login_reads_the_token_from_stdin() {
    let (srv, _home, dir) = login_setup().await;
    let token = srv.token("alice").to_string();
    for extra in [&[][..], &["--token", "-"][..]] {
        std::fs::remove_file(dir.join("config.toml")).ok();
        let out = login(&srv, &dir, extra, &format!("{token}\n")).await;
        assert!(out.status.success(), "{extra:?}: {}", text(&out));
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("as alice"),
            "{}",
            text(&out)
        );
        assert_eq!(saved_token(&dir).as_deref(), Some(token.as_str()));
        assert_eq!(mode_of(&dir.join("config.toml")), 0o600);
    }
    // Nothing piped in: a clear refusal, not an empty token saved.
    std::fs::remove_file(dir.join("config.toml")).ok();
    let out = login(&srv, &dir, &[], "").await;
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no token given"),
        "{}",
        text(&out)
    );
    assert!(!dir.join("config.toml").exists());
}

/// The old predictable `config.toml.tmp`, planted as a link to another of the user's files,
/// must neither receive the token nor become `config.toml`.
#[tokio::test]
async fn login_never_writes_through_a_planted_temporary_link() {
    let (srv, home, dir) = login_setup().await;
    let victim = home.path().join("victim");
    std::fs::write(&victim, "precious\n").expect("write");
    std::os::unix::fs::symlink(&victim, dir.join("config.toml.tmp")).expect("plant a link");
    let token = srv.token("alice").to_string();
    let out = login(&srv, &dir, &[], &format!("{token}\n")).await;
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        std::fs::read_to_string(&victim).expect("victim"),
        "precious\n"
    );
    let config = dir.join("config.toml");
    assert!(
        !std::fs::symlink_metadata(&config)
            .expect("config.toml")
            .file_type()
            .is_symlink(),
        "config.toml became a link"
    );
    assert_eq!(mode_of(&config), 0o600);
    assert_eq!(saved_token(&dir).as_deref(), Some(token.as_str()));
}

/// Anyone who can write the directory can swap `config.toml` under the user: it is made 0700,
/// and the user is told.
#[tokio::test]
async fn login_fixes_a_config_dir_others_can_write_and_says_so() {
    let (srv, _home, dir) = login_setup().await;
    chmod(&dir, 0o777);
    let out = login(&srv, &dir, &[], &format!("{}\n", srv.token("alice"))).await;
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(mode_of(&dir), 0o700);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("warning:") && stderr.contains("mode 0777") && stderr.contains("0700"),
        "{}",
        text(&out)
    );
}

/// A `config.toml` that is a link would send the token wherever it points: refused, naming the
/// file, and the link's target is left as it was.
#[tokio::test]
async fn login_refuses_a_config_file_that_is_a_link() {
    let (srv, home, dir) = login_setup().await;
    let elsewhere = home.path().join("elsewhere.toml");
    std::fs::write(&elsewhere, "theme = \"mono\"\n").expect("write");
    std::os::unix::fs::symlink(&elsewhere, dir.join("config.toml")).expect("link");
    let out = login(&srv, &dir, &[], &format!("{}\n", srv.token("alice"))).await;
    assert!(!out.status.success(), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("config.toml") && stderr.contains("symbolic link"),
        "{}",
        text(&out)
    );
    assert_eq!(
        std::fs::read_to_string(&elsewhere).expect("read"),
        "theme = \"mono\"\n"
    );
}

/// `config.toml` chooses the server a `CB_TOKEN` from the environment is sent to: in a directory
/// (or a file) another user may write, as under a shared /tmp, it is refused, naming the path
/// and the fix, rather than used.
#[tokio::test]
async fn a_config_others_may_write_is_refused() {
    let (srv, _home, dir) = login_setup().await;
    let file = dir.join("config.toml");
    std::fs::write(&file, format!("server = \"{}\"\n", srv.base())).expect("write");
    chmod(&file, 0o600);
    let list = || {
        tokio::process::Command::new(BIN)
            .args(["change", "list"])
            .env("CB_CONFIG_DIR", &dir)
            .env("CB_TOKEN", srv.token("bob"))
            .env_remove("CB_SERVER")
            .env_remove("CB_CA_FILE")
            .stdin(std::process::Stdio::null())
            .output()
    };
    let out = list().await.expect("run");
    assert!(out.status.success(), "{}", text(&out));

    chmod(&dir, 0o777);
    let out = list().await.expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        err.contains(&format!(
            "{}: it may be written by other users",
            dir.display()
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!("chmod 700 {}", dir.display())),
        "{err}"
    );
    assert!(err.contains("CB_CONFIG_DIR"), "{err}");

    chmod(&dir, 0o700);
    chmod(&file, 0o666);
    let out = list().await.expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        err.contains(&format!("{}: it may be written", file.display())),
        "{err}"
    );
}

// ---- a server stopped mid-execution ------------------------------------------------------------

/// A command whose shell starts a child of its own, as wrappers around kubectl do, and writes
/// both pids (shell first) to `pidfile`. The child does not inherit the shell's death signal.
fn process_tree_action(pidfile: &Path) -> String {
    format!(
        r#"
[[actions]]
name = "slow-tree"
risk = "medium"
description = "test: a shell and its child, running for 30 s"
rollback = "none"
command = ["sh", "-c", 'echo $$ > "$0"; sleep 30 & echo $! >> "$0"; wait', "{}"]
timeout_secs = 60
"#,
        pidfile.display()
    )
}

/// Whether `pid` is a running process (a zombie has ended; it only waits to be reaped).
fn running(pid: u32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let state = stat
        .rsplit(')')
        .next()
        .and_then(|r| r.split_whitespace().next());
    !matches!(state, None | Some("Z") | Some("X"))
}

async fn until(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..100 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("not within 5 s: {what}");
}

/// A real server running `slow-tree`, and the command's (shell, child) pids.
async fn server_running_a_process_tree() -> (BinaryServer, tempfile::TempDir, i64, [u32; 2]) {
    let home = tempfile::tempdir().expect("a temporary directory");
    let pidfile = home.path().join("pids");
    let srv = BinaryServer::start(BinaryOptions {
        extra_config: process_tree_action(&pidfile),
        ..BinaryOptions::default()
    })
    .await;
    let change = create(
        &srv.client("bob"),
        &req("slow-tree", "CHG-1", "web", json!({})),
    )
    .await;
    assert_eq!(change.state, ChangeState::Executing, "{change:?}");
    let pids = || -> Vec<u32> {
        std::fs::read_to_string(&pidfile)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    };
    until("the command wrote both pids", || pids().len() == 2).await;
    let p = pids();
    assert!(running(p[0]) && running(p[1]), "the command runs");
    (srv, home, change.id, [p[0], p[1]])
}

/// After `kill -9` of the server, its command's shell dies with it at once; the shell's own
/// child, which nothing ties to the server, is killed when the server restarts, and the
/// change's record says exactly that: never "interrupted" of a command still running.
#[tokio::test]
async fn a_command_dies_with_a_killed_server_and_its_record_says_so() {
    let (mut srv, home, id, [shell, child]) = server_running_a_process_tree().await;
    srv.kill().await;
    until("the shell dies with the server", || !running(shell)).await;

    srv.boot().await;
    assert!(!running(child), "the shell's child outlived the restart");
    let change = srv.client("bob").change(id).await.expect("show");
    assert_eq!(change.state, ChangeState::Failed, "{change:?}");
    assert_eq!(
        change.outcome_reason.as_deref(),
        Some("interrupted: its server stopped")
    );
    let why = change.output.expect("an explanation").stderr;
    assert!(
        why.contains(&format!("process group {shell}"))
            && why.contains("1 of its processes")
            && why.contains("killed at restart")
            && why.contains("not run again")
            && why.contains("check the target"),
        "{why}"
    );
    let pids = std::fs::read_to_string(home.path().join("pids")).expect("pids");
    assert_eq!(pids.lines().count(), 2, "the command ran again: {pids}");
}

/// SIGTERM: the server stops its command's whole process group on the way out, so the record
/// written at restart, "killed with it", is true.
#[tokio::test]
async fn a_gracefully_stopped_server_takes_its_command_with_it() {
    let (mut srv, _home, id, [shell, child]) = server_running_a_process_tree().await;
    srv.stop().await;
    // SIGKILL was sent before the server exited; on a busy machine the processes may need a
    // moment of CPU to finish dying (a 5 s bound, far under the 30 s the command would run).
    until("the command dies with the stopped server", || {
        !running(shell) && !running(child)
    })
    .await;

    srv.boot().await;
    let change = srv.client("bob").change(id).await.expect("show");
    assert_eq!(change.state, ChangeState::Failed, "{change:?}");
    let why = change.output.expect("an explanation").stderr;
    assert!(
        why.contains(&format!("killed with it (process group {shell})")),
        "{why}"
    );
}

/// At a terminal the token is typed at a prompt that does not echo it (`script` provides the
/// terminal).
#[tokio::test]
async fn login_at_a_terminal_prompts_without_echo() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (srv, _home, dir) = login_setup().await;
    let token = srv.token("alice").to_string();
    let command = format!("{BIN} login --server {}", srv.base());
    let mut child = tokio::process::Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .env("CB_CONFIG_DIR", &dir)
        .env("NO_COLOR", "1")
        .env_remove("CB_TOKEN")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("script(1) from util-linux");
    let mut stdin = child.stdin.take().expect("stdin");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut seen = Vec::new();
    let prompted = tokio::time::timeout(Duration::from_secs(10), async {
        let mut buf = [0u8; 256];
        while !String::from_utf8_lossy(&seen).contains("token:") {
            match stdout.read(&mut buf).await {
                Ok(0) | Err(_) => return false,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
        true
    })
    .await;
    assert_eq!(prompted, Ok(true), "{}", String::from_utf8_lossy(&seen));
    // The prompt is printed just before echo is turned off.
    tokio::time::sleep(Duration::from_millis(300)).await;
    stdin
        .write_all(format!("{token}\n").as_bytes())
        .await
        .expect("type the token");
    let status = tokio::time::timeout(Duration::from_secs(10), async {
        stdout.read_to_end(&mut seen).await.ok();
        child.wait().await
    })
    .await
    .expect("login ends within 10 s")
    .expect("script");
    let screen = String::from_utf8_lossy(&seen);
    assert!(status.success() && screen.contains("as alice"), "{screen}");
    assert!(!screen.contains(&token), "the token was echoed: {screen}");
    assert_eq!(saved_token(&dir).as_deref(), Some(token.as_str()));
}
