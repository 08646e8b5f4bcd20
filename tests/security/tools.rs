//! The operator's tools must not lie or leak: `audit verify` against a live server, `login`
//! without the token on the command line or a followed symlink, private database files, and an
//! honest record of a command the server was killed in the middle of.

use crate::support::binary::{BIN, BinaryOptions, BinaryServer};
use crate::support::{create, req};
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
