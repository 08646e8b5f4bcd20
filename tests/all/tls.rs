//! TLS everywhere, with certificates made at run time by a private CA (`support::tls`): the
//! client to an https server (and what it says when a certificate does not verify), the server's
//! own listener and its start errors, and the verifier's and webhook's https calls.

use crate::support::fakes::*;
use crate::support::tls::*;
use crate::support::*;
use commandbridge::client::{ApiClient, ClientError};
use commandbridge::domain::verification::VerificationState;
use std::path::Path;
use std::time::Duration;
use tokio::io::AsyncReadExt;

/// What a client with (or without) the CA file meets at the server started with `files`.
async fn client_error(files: &CertFiles, ca_file: Option<&Path>) -> ClientError {
    let (running, _dir, tokens) = start_server(&server_tls_toml(files))
        .await
        .expect("the server starts");
    let client =
        ApiClient::with_ca_file(&running.url(), &tokens["alice"], ca_file).expect("a client");
    let err = client
        .me()
        .await
        .expect_err("the certificate must not verify");
    running.stop().await;
    err
}

#[tokio::test]
async fn the_client_speaks_https_to_a_server_whose_ca_it_is_given() {
    let pki = Pki::new();
    let (running, _dir, tokens) = start_server(&server_tls_toml(&pki.server))
        .await
        .expect("the server starts with [server.tls]");
    let url = running.url();
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");
    for base in [
        url.clone(),
        format!("https://localhost:{}", running.addr.port()),
    ] {
        let alice =
            ApiClient::with_ca_file(&base, &tokens["alice"], Some(&pki.ca_file)).expect("a client");
        assert_eq!(alice.me().await.expect("GET /me over https").name, "alice");
    }
    // The event stream too (the dashboard lives on it).
    let bob = ApiClient::with_ca_file(&url, &tokens["bob"], Some(&pki.ca_file)).expect("client");
    let mut events = Box::pin(bob.events(Some(0)));
    let alice = ApiClient::with_ca_file(&url, &tokens["alice"], Some(&pki.ca_file)).expect("c");
    create(
        &alice,
        &req(
            "pull-logs",
            "CHG-7001",
            "web-1",
            serde_json::json!({"lines": 10}),
        ),
    )
    .await;
    // Replayed from the start: the operators, then the change.
    while !next_event(&mut events).await.kind.starts_with("change.") {}
    // Plain http to the TLS port gets nothing it could mistake for an answer.
    let plain =
        ApiClient::new(&format!("http://{}", running.addr), &tokens["alice"]).expect("client");
    assert!(plain.me().await.is_err());
    running.stop().await;
}

#[tokio::test]
async fn a_certificate_that_does_not_verify_says_which_and_how_to_fix_it() {
    let pki = Pki::new();
    // Without the private CA: the system's roots do not know it.
    let err = client_error(&pki.server, None).await;
    let text = err.to_string();
    assert!(matches!(err, ClientError::Tls(_)), "{err:?}");
    assert!(
        text.contains("unknown CA") && text.contains("--ca-file") && text.contains("CB_CA_FILE"),
        "{text}"
    );
    // Signed by a CA other than the one given.
    let text = client_error(&pki.unknown_ca, Some(&pki.ca_file))
        .await
        .to_string();
    assert!(text.contains("unknown CA"), "{text}");
    let text = client_error(&pki.expired, Some(&pki.ca_file))
        .await
        .to_string();
    assert!(
        text.contains("has expired") && text.contains("renew"),
        "{text}"
    );
    let text = client_error(&pki.wrong_host, Some(&pki.ca_file))
        .await
        .to_string();
    assert!(
        text.contains("not valid for 127.0.0.1") && text.contains("other.example"),
        "{text}"
    );
    // An https URL for a plain-http server.
    let srv = TestServer::start(TUESDAY_10).await;
    let https = srv.base().replace("http://", "https://");
    let err = ApiClient::new(&https, srv.token("alice"))
        .expect("client")
        .me()
        .await
        .expect_err("no TLS there");
    assert!(err.to_string().contains("does not speak TLS"), "{err}");
    // A CA file that is not there is named before any connection is tried.
    let err = ApiClient::with_ca_file(&https, "t", Some(&pki.dir.path().join("missing-ca.pem")))
        .expect_err("no such file");
    assert!(err.to_string().contains("missing-ca.pem"), "{err}");
}

#[tokio::test]
async fn a_bad_certificate_or_key_stops_the_start_naming_the_file() {
    let pki = Pki::new();
    let missing = CertFiles {
        cert: pki.dir.path().join("nope.crt"),
        key: pki.server.key.clone(),
    };
    let err = start_server(&server_tls_toml(&missing))
        .await
        .err()
        .expect("refused");
    assert!(
        err.contains("server.tls.cert_file") && err.contains("nope.crt"),
        "{err}"
    );

    let mismatched = CertFiles {
        cert: pki.server.cert.clone(),
        key: pki.expired.key.clone(),
    };
    let err = start_server(&server_tls_toml(&mismatched))
        .await
        .err()
        .expect("refused");
    assert!(
        err.contains("does not match") && err.contains("expired.key") && err.contains("server.crt"),
        "{err}"
    );

    let garbage = pki.dir.path().join("garbage.key");
    std::fs::write(&garbage, "not a key\n").expect("write");
    let bad_key = CertFiles {
        cert: pki.server.cert.clone(),
        key: garbage,
    };
    let err = start_server(&server_tls_toml(&bad_key))
        .await
        .err()
        .expect("refused");
    assert!(
        err.contains("server.tls.key_file") && err.contains("garbage.key"),
        "{err}"
    );

    // A key in place of the certificate.
    let swapped = CertFiles {
        cert: pki.server.key.clone(),
        key: pki.server.key.clone(),
    };
    let err = start_server(&server_tls_toml(&swapped))
        .await
        .err()
        .expect("refused");
    assert!(
        err.contains("server.tls.cert_file") && err.contains("no certificate"),
        "{err}"
    );

    let ca = pki.dir.path().join("no-such-ca.pem");
    let err = start_server(&format!(
        "\n[[services]]\nname = \"api\"\nhealth_url = \"https://localhost:1/healthz\"\nca_file = \"{}\"\n",
        ca.display()
    ))
    .await
    .err()
    .expect("refused");
    assert!(
        err.contains("services[0] (api).ca_file") && err.contains("no-such-ca.pem"),
        "{err}"
    );
    let err = start_server(&format!(
        "\n[ticket_webhook]\nurl = \"https://localhost:1/hook\"\nca_file = \"{}\"\n",
        ca.display()
    ))
    .await
    .err()
    .expect("refused");
    assert!(
        err.contains("ticket_webhook.ca_file") && err.contains("no-such-ca.pem"),
        "{err}"
    );
}

#[tokio::test]
async fn a_connection_that_never_finishes_its_handshake_is_closed_after_the_header_timeout() {
    let pki = Pki::new();
    let (running, _dir, _) = start_server(&server_tls_toml(&pki.server))
        .await
        .expect("starts");
    let mut idle = tokio::net::TcpStream::connect(running.addr)
        .await
        .expect("connect");
    let started = std::time::Instant::now();
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(5), idle.read(&mut buf))
        .await
        .expect("closed within 5 s (header_timeout_seconds = 1)");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
    running.stop().await;
}

/// A `[[services]]` entry with an https health URL and Prometheus endpoint.
fn https_service_toml(name: &str, base: &str, ca_file: Option<&Path>) -> String {
    let mut s = format!("\n[[services]]\nname = \"{name}\"\nhealth_url = \"{base}/healthz\"\n");
    if let Some(ca) = ca_file {
        s.push_str(&format!("ca_file = \"{}\"\n", ca.display()));
    }
    s.push_str(&format!(
        "\n[services.error_rate]\nprometheus_url = \"{base}\"\nquery = '{QUERY}'\nmax = 0.01\n"
    ));
    s
}

#[tokio::test]
async fn the_verifier_checks_https_services_and_a_failed_handshake_is_a_failing_sample() {
    let pki = Pki::new();
    let (good, good_url) = https_service(&pki.server).await;
    good.set_rate(0.002);
    let (_old, old_url) = https_service(&pki.expired).await;
    let ca = pki.ca_file.clone();
    let srv = TestServer::start_configured(clock_at(TUESDAY_10), |_| {
        verification_toml(1.0)
            + &https_service_toml("trusted", &good_url, Some(&ca))
            + &https_service_toml("untrusted", &good_url, None)
            + &https_service_toml("expired", &old_url, Some(&ca))
    })
    .await;
    let bob = srv.client("bob");
    let mut ids = Vec::new();
    for (i, target) in ["trusted", "untrusted", "expired"].iter().enumerate() {
        let change = executed(&bob, "record-medium", &format!("CHG-720{i}"), target).await;
        ids.push(verification_of(&bob, change).await.id);
    }
    let sampled = |d: &commandbridge::domain::verification::VerificationDetail| {
        d.verification.last_sample.is_some()
    };
    let trusted = wait_until(&bob, ids[0], "a sample", Duration::from_secs(10), sampled).await;
    let s = trusted.verification.last_sample.expect("a sample");
    let (ok, detail) = health_of(&s);
    assert!(ok, "health over https with the CA file: {detail}");
    let rate = s.error_rate.expect("an error rate");
    assert_eq!((rate.value, rate.ok), (Some(0.002), true), "{rate:?}");
    assert_eq!(rate.source.as_deref(), Some("Prometheus"));
    assert!(good.health_hits() > 0 && !good.queries().is_empty());

    for (id, expect) in [(ids[1], "unknown CA"), (ids[2], "has expired")] {
        let d = wait_state(
            &bob,
            id,
            VerificationState::Degraded,
            Duration::from_secs(10),
        )
        .await;
        let s = d.verification.last_sample.expect("a sample");
        let (ok, detail) = health_of(&s);
        assert!(
            !ok && detail.starts_with("TLS: ") && detail.contains(expect),
            "{detail}"
        );
        let rate = s.error_rate.expect("an error rate");
        assert!(!rate.ok && rate.detail.starts_with("TLS: "), "{rate:?}");
    }
}

#[tokio::test]
async fn the_webhook_delivers_over_https_only_to_a_receiver_it_trusts() {
    let pki = Pki::new();
    let (trusted_rx, trusted_url) = https_receiver(&pki.server).await;
    let (untrusted_rx, untrusted_url) = https_receiver(&pki.unknown_ca).await;
    for (url, rx, delivered) in [
        (trusted_url, trusted_rx, true),
        (untrusted_url, untrusted_rx, false),
    ] {
        let ca = pki.ca_file.display().to_string();
        let srv = TestServer::start_configured(clock_at(TUESDAY_10), |_| {
            format!(
                "{}\n[ticket_webhook]\nurl = \"{url}\"\nca_file = \"{ca}\"\n",
                verification_toml(1.0)
            )
        })
        .await;
        let bob = srv.client("bob");
        let v = verification_of(
            &bob,
            executed(&bob, "record-medium", "CHG-7301", "svc-w").await,
        )
        .await;
        bob.verification_outcome(v.id, &escalated(Some("over https"), None))
            .await
            .expect("escalate");
        if delivered {
            let got = rx.wait_delivered(1, Duration::from_secs(10)).await;
            assert!(got[0].key.starts_with("cb-outbox-"), "{got:#?}");
        } else {
            let started = std::time::Instant::now();
            while srv.metric("commandbridge_webhook_failures_total").await < 1.0 {
                assert!(
                    started.elapsed() < Duration::from_secs(10),
                    "no failed attempt"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            assert!(
                rx.all().is_empty(),
                "nothing reached a receiver it does not trust"
            );
        }
    }
}

/// Runs the real binary with `args`, its client config in `config_dir`, the token (if any) on
/// standard input; (exit success, stdout, stderr).
async fn cli(
    config_dir: &Path,
    args: &[&str],
    env: &[(&str, &str)],
    token: Option<&str>,
) -> (bool, String, String) {
    use tokio::io::AsyncWriteExt;
    let mut child = tokio::process::Command::new(crate::support::binary::BIN)
        .args(args)
        .env("CB_CONFIG_DIR", config_dir)
        .env_remove("CB_SERVER")
        .env_remove("CB_TOKEN")
        .env_remove("CB_CA_FILE")
        .envs(env.iter().copied())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run commandbridge");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin
        .write_all(format!("{}\n", token.unwrap_or("")).as_bytes())
        .await
        .expect("write the token");
    drop(stdin);
    let out = tokio::time::timeout(Duration::from_secs(20), child.wait_with_output())
        .await
        .expect("the command ends within 20 s")
        .expect("its output");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn login_with_a_ca_file_keeps_it_for_the_next_commands() {
    let pki = Pki::new();
    let (running, _dir, tokens) = start_server(&server_tls_toml(&pki.server))
        .await
        .expect("starts");
    let url = running.url();
    let ca = pki.ca_file.display().to_string();
    let home = tempfile::tempdir().expect("a temporary directory");

    let (ok, _, err) = cli(
        home.path(),
        &["login", "--server", &url],
        &[],
        Some(&tokens["alice"]),
    )
    .await;
    assert!(!ok, "no CA given: the login must fail");
    assert!(
        err.contains("unknown CA") && err.contains("--ca-file"),
        "{err}"
    );
    assert!(
        !home.path().join("config.toml").exists(),
        "nothing saved on failure"
    );

    let (ok, out, err) = cli(
        home.path(),
        &["login", "--server", &url, "--ca-file", &ca],
        &[],
        Some(&tokens["alice"]),
    )
    .await;
    assert!(ok, "{err}");
    assert!(
        out.contains(&format!("logged in to {url} as alice")),
        "{out}"
    );
    let saved = std::fs::read_to_string(home.path().join("config.toml")).expect("config.toml");
    assert!(
        saved.contains("ca_file") && saved.contains("ca.pem"),
        "{saved}"
    );
    // The next command finds the CA in config.toml.
    let (ok, out, err) = cli(home.path(), &["window", "now"], &[], None).await;
    assert!(ok && !out.is_empty(), "{out}{err}");

    // CB_CA_FILE stands in for the option, for the login and for every command after it.
    let other = tempfile::tempdir().expect("a temporary directory");
    let env = [("CB_CA_FILE", ca.as_str())];
    let (ok, _, err) = cli(
        other.path(),
        &["login", "--server", &url],
        &env,
        Some(&tokens["bob"]),
    )
    .await;
    assert!(ok, "{err}");
    let env = [
        ("CB_CA_FILE", ca.as_str()),
        ("CB_SERVER", url.as_str()),
        ("CB_TOKEN", tokens["bob"].as_str()),
    ];
    let empty = tempfile::tempdir().expect("a temporary directory");
    let (ok, out, err) = cli(empty.path(), &["window", "now"], &env, None).await;
    assert!(ok && !out.is_empty(), "{out}{err}");
    running.stop().await;
}
