//! TLS for the tests: a private CA made at run time (rcgen) with the certificates a real
//! deployment meets (one for 127.0.0.1/localhost, an expired one, one for another host), written
//! as PEM files; the real server listening with `[server.tls]`; and https endpoints for the
//! verifier and the webhook to call.

use super::fakes::{FakeService, Receiver};
use super::*;
use axum::Router;
use commandbridge::server::listener::{self, Limits};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
    date_time_ymd,
};
use std::net::SocketAddr;

/// A certificate and its key, as PEM files.
#[derive(Clone, Debug)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A private CA and the server certificates it signed, in a temporary directory.
pub struct Pki {
    pub dir: TempDir,
    /// The CA's certificate: what a client is given as its CA file.
    pub ca_file: PathBuf,
    /// For 127.0.0.1 and localhost, valid now.
    pub server: CertFiles,
    /// For 127.0.0.1 and localhost, expired in 2021.
    pub expired: CertFiles,
    /// Valid now, but for `other.example` only.
    pub wrong_host: CertFiles,
    /// For 127.0.0.1, signed by a second CA nobody trusts.
    pub unknown_ca: CertFiles,
}

impl Pki {
    pub fn new() -> Pki {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let trusted = ca("CommandBridge test CA");
        let stranger = ca("A CA nobody trusts");
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, trusted.pem()).expect("write the CA");
        let here = || vec!["127.0.0.1".to_string(), "localhost".to_string()];
        let issue = |name: &str, issuer: &CertifiedIssuer<'static, KeyPair>, sans, expired| {
            let key = KeyPair::generate().expect("a key");
            let mut params = CertificateParams::new(sans).expect("names");
            params
                .distinguished_name
                .push(DnType::CommonName, name.to_string());
            if expired {
                params.not_before = date_time_ymd(2020, 1, 1);
                params.not_after = date_time_ymd(2021, 1, 1);
            }
            let cert = params.signed_by(&key, issuer).expect("sign");
            let files = CertFiles {
                cert: dir.path().join(format!("{name}.crt")),
                key: dir.path().join(format!("{name}.key")),
            };
            std::fs::write(&files.cert, cert.pem()).expect("write a certificate");
            std::fs::write(&files.key, key.serialize_pem()).expect("write a key");
            files
        };
        Pki {
            server: issue("server", &trusted, here(), false),
            expired: issue("expired", &trusted, here(), true),
            wrong_host: issue("wrong-host", &trusted, vec!["other.example".into()], false),
            unknown_ca: issue("unknown-ca", &stranger, here(), false),
            ca_file,
            dir,
        }
    }
}

fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, name.to_string());
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    CertifiedIssuer::self_signed(params, KeyPair::generate().expect("a key")).expect("a CA")
}

/// The `[server]` addition that makes a test server listen with TLS.
pub fn server_tls_toml(files: &CertFiles) -> String {
    format!(
        "[server]\nheader_timeout_seconds = 1\n\n[server.tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
        files.cert.display(),
        files.key.display()
    )
}

/// The real server with `extra` configuration (e.g. [`server_tls_toml`]) over a fresh database,
/// with the usual operators; the error `server::start` gave if it refused to start.
pub async fn start_server(
    extra: &str,
) -> Result<(Running, TempDir, BTreeMap<String, String>), String> {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let text = TestServer::config_text_for(dir.path(), extra);
    let config = ServerConfig::parse(&text, "test").map_err(|e| e.to_string())?;
    // TLS has nothing to do with the database: a SQLite file in `dir`, whatever the suite's.
    let db = super::TestDb::create_on(super::db::Backend::Sqlite, dir.path()).await;
    let store = Store::open(&db.url).await.expect("open the store");
    let mut tokens = BTreeMap::new();
    for (name, level) in OPERATORS {
        let token = users::add(&store, name, level).await.expect("an operator");
        tokens.insert(name.to_string(), token);
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a loopback port");
    let running = server::start(config, store, clock_at(TUESDAY_10), listener)
        .await
        .map_err(|e| e.to_string())?;
    Ok((running, dir, tokens))
}

/// Serves `app` over TLS with `files` on a loopback port, through the server's own listener.
pub async fn serve_https(app: Router, files: &CertFiles) -> SocketAddr {
    let config = commandbridge::tls::server_config(&files.cert, &files.key, "cert", "key")
        .expect("a TLS configuration");
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a loopback port");
    let addr = tcp.local_addr().expect("an address");
    let limits = Limits {
        max_connections: 256,
        header_timeout: Duration::from_secs(5),
        commands_at_once: 1,
    };
    // Never told to stop: it ends with the test's runtime.
    let (keep, stop) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        let _keep = keep;
        listener::serve(tcp, app, limits, Some(config.into()), stop, Duration::ZERO).await
    });
    addr
}

/// A [`FakeService`] (health and Prometheus endpoints) served over https with `files`; its
/// `base()` is the https URL.
pub async fn https_service(files: &CertFiles) -> (FakeService, String) {
    let svc = FakeService::start().await;
    let addr = serve_https(svc.router(), files).await;
    (svc, format!("https://localhost:{}", addr.port()))
}

/// A webhook [`Receiver`] served over https with `files`; the URL of its hook.
pub async fn https_receiver(files: &CertFiles) -> (Receiver, String) {
    let receiver = Receiver::start_on(0, 0).await;
    let addr = serve_https(receiver.router(), files).await;
    (receiver, format!("https://localhost:{}/hook", addr.port()))
}
