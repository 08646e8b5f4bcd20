//! The server behind a real reverse proxy with its default settings: nginx from Debian's
//! packages (`scripts/services.sh` installs it), proxying to the server as a plain `location /`
//! would. Event streams must stay live through it (the server asks nginx not to buffer them).

use crate::support::*;
use serde_json::json;
use std::path::Path;
use std::time::{Duration, Instant};

/// nginx in the foreground on `port`, proxying everything to `upstream` with nginx's defaults
/// (buffering on, HTTP/1.0 to the upstream, 60 s read timeout). Killed when dropped.
struct Nginx {
    child: tokio::process::Child,
}

impl Nginx {
    async fn start(dir: &Path, port: u16, upstream: &str) -> Option<Nginx> {
        let bin = ["/usr/sbin/nginx", "/usr/local/sbin/nginx"]
            .into_iter()
            .find(|p| Path::new(p).exists())?;
        let prefix = dir.join("nginx");
        std::fs::create_dir_all(prefix.join("logs")).expect("nginx dirs");
        let conf = prefix.join("nginx.conf");
        std::fs::write(
            &conf,
            format!(
                "daemon off;\nmaster_process off;\nerror_log {logs}/error.log;\npid {logs}/nginx.pid;\n\
                 events {{}}\nhttp {{\n  access_log off;\n  client_body_temp_path {logs};\n  \
                 proxy_temp_path {logs};\n  fastcgi_temp_path {logs};\n  uwsgi_temp_path {logs};\n  \
                 scgi_temp_path {logs};\n  server {{\n    listen 127.0.0.1:{port};\n    \
                 location / {{ proxy_pass {upstream}; }}\n  }}\n}}\n",
                logs = prefix.join("logs").display(),
            ),
        )
        .expect("write nginx.conf");
        let child = tokio::process::Command::new(bin)
            .arg("-p")
            .arg(&prefix)
            .arg("-c")
            .arg(&conf)
            .kill_on_drop(true)
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start nginx");
        let t = Instant::now();
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "nginx did not listen"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Some(Nginx { child })
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// Through nginx with its default configuration, a dashboard's event stream gets each change
/// within a second (nginx buffers proxied responses unless the server says not to).
#[tokio::test]
async fn event_streams_stay_live_behind_nginx_with_default_settings() {
    let srv = TestServer::start(TUESDAY_10).await;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let port = crate::support::fakes::free_port();
    let Some(_nginx) = Nginx::start(dir.path(), port, srv.base()).await else {
        if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
            panic!("nginx is not installed (scripts/services.sh installs it)");
        }
        eprintln!("SKIPPED: nginx is not installed (scripts/services.sh installs it)");
        return;
    };
    let proxied = commandbridge::client::ApiClient::new(
        &format!("http://127.0.0.1:{port}"),
        srv.token("bob"),
    )
    .expect("a client");
    let mut events = proxied.events(Some(0));
    // The stream's first event says it is open.
    let ready = tokio::time::timeout(
        Duration::from_secs(5),
        futures::StreamExt::next(&mut events),
    )
    .await
    .expect("the stream opens through nginx within 5 s");
    assert!(ready.is_some());
    for i in 0..3 {
        let made = create(
            &proxied,
            &req("record-medium", "CHG-1", &format!("p{i}"), json!({})),
        )
        .await;
        let t = Instant::now();
        loop {
            let e = tokio::time::timeout(
                Duration::from_secs(1),
                futures::StreamExt::next(&mut events),
            )
            .await
            .unwrap_or_else(|_| panic!("no event for change #{} within 1 s through nginx", made.id))
            .expect("the stream stays open")
            .expect("a valid event");
            if e.data["change"]["id"] == json!(made.id) || e.data["id"] == json!(made.id) {
                break;
            }
            assert!(t.elapsed() < Duration::from_secs(1));
        }
    }
}
