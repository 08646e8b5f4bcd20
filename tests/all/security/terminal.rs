//! What a command printed reaches a reviewer's terminal through `change show`: an outsider who
//! can plant a log line that an action prints must not get to drive that terminal (write the
//! clipboard with OSC 52, clear the screen, overwrite a line with `\r`).

use crate::support::{TUESDAY_10, TestServer, clock_at, create, req, settled};
use commandbridge::domain::{Change, ChangeState};
use serde_json::json;

/// An action whose command prints terminal controls: OSC 52 (clipboard) ended by BEL, a clear
/// screen, a carriage return over a line, the one-character CSI U+009B and a bidi override.
const PRINTS_ESCAPES: &str = r#"
[[actions]]
name = "print-escapes"
risk = "medium"
description = "test: prints terminal control sequences"
rollback = "none"
command = ["sh", "-c", 'printf "\033]52;c;cm0gLXJmIC8=\007\033[2Jall clear\rLOOKS FINE\n"; printf "\302\23331mred \342\200\256txt.exe\n" >&2']
timeout_secs = 10
"#;

/// Runs the real binary against `srv` as bob; (success, stdout bytes, stderr).
async fn cli(srv: &TestServer, args: &[&str]) -> (bool, Vec<u8>, String) {
    let out = crate::support::cli_as_bob(srv, args).await;
    (
        out.status.success(),
        out.stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn change_show_prints_terminal_controls_as_text() {
    let srv = TestServer::start_configured(clock_at(TUESDAY_10), |_| PRINTS_ESCAPES.into()).await;
    let bob = srv.client("bob");
    let c = create(&bob, &req("print-escapes", "CHG-1", "web", json!({}))).await;
    let c = settled(&bob, c.id).await;
    assert_eq!(c.state, ChangeState::Executed, "{c:?}");
    let output = c.output.clone().expect("output");
    assert!(
        output.stdout.contains('\u{1b}'),
        "the command's bytes reach the server as they are"
    );

    let id = c.id.to_string();
    let (ok, out, err) = cli(&srv, &["change", "show", &id]).await;
    assert!(ok, "{err}");
    let text = String::from_utf8(out.clone()).expect("UTF-8");
    for (name, raw) in [
        ("ESC", &b"\x1b"[..]),
        ("BEL", b"\x07"),
        ("CR", b"\r"),
        ("CSI U+009B", "\u{9b}".as_bytes()),
        ("RLO U+202E", "\u{202e}".as_bytes()),
    ] {
        assert!(
            !out.windows(raw.len()).any(|w| w == raw),
            "{name} printed raw: {text:?}"
        );
    }
    assert!(
        text.contains("    \\x1b]52;c;cm0gLXJmIC8=\\x07\\x1b[2Jall clear\\rLOOKS FINE\n"),
        "{text}"
    );
    assert!(
        text.contains("    \\u{9b}31mred \\u{202e}txt.exe\n"),
        "{text}"
    );

    // `--json` stays the server's document: the same value, its controls escaped.
    let (ok, out, err) = cli(&srv, &["change", "show", &id, "--json"]).await;
    assert!(ok, "{err}");
    assert!(
        !out.iter().any(|b| *b == 0x1b || *b == 0x07) && !out.windows(2).any(|w| w == b"\xc2\x9b"),
        "{}",
        String::from_utf8_lossy(&out)
    );
    let shown: Change = serde_json::from_slice(&out).expect("JSON");
    assert_eq!(shown.output, c.output);
}
