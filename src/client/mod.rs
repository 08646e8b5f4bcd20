//! The HTTP client for the CommandBridge API, shared by the TUI and the scripting commands.
//!
//! Every method maps one API route to its typed body from [`crate::domain`]; errors come back as
//! [`ClientError`], whose text is what the operator should read (the server's own message for
//! refusals).
//!
//! This room holds the handle itself: [`ApiClient`] and how it is built, [`ClientError`], and
//! the calls about the server and the caller (`/healthz`, `/me`, `/actions`). How a request is
//! sent and its answer read is in `transport`; the calls are grouped by resource as the API is
//! (`changes`, `windows`, `oversight`), so adding a route touches one small file, and the event
//! stream is in [`sse`].

mod changes;
mod oversight;
pub mod settings;
pub mod sse;
mod transport;
mod windows;

pub use changes::{IDEMPOTENCY_KEY, MAX_CHANGES_PAGE, Page};

use crate::domain::api::{CatalogEntry, Health, Me};
use reqwest::Method;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use transport::{normalize_server, root_cause};

/// How long an ordinary API call may take, end to end, before the caller is told.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Connecting is the part that hangs when the address is wrong (a firewall dropping packets),
/// so it gets its own, shorter limit; it applies to the event stream too.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why an API call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientError {
    /// The server answered with an error status; `error` is its stable code and `message` says
    /// what to fix.
    Api {
        status: u16,
        error: String,
        message: String,
    },
    /// The server could not be reached or the connection broke. The text names the server's
    /// address and the cause.
    Transport(String),
    /// The server answered, but not with what this client understands (a different version, or
    /// something else listening on that port).
    Decode(String),
    /// The TLS handshake failed: the text names the server, the cause (unknown CA, wrong host,
    /// expired) and the fix.
    Tls(String),
}

impl ClientError {
    /// The HTTP status of an API error.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Api {
                status,
                error,
                message,
            } => write!(f, "{status} {error}: {message}"),
            ClientError::Transport(detail) => write!(
                f,
                "could not reach the server at {detail}; check the address given to \
                 `commandbridge login` or in CB_SERVER"
            ),
            ClientError::Decode(detail) => write!(f, "unexpected answer from the server: {detail}"),
            ClientError::Tls(detail) => write!(f, "TLS with the server at {detail}"),
        }
    }
}

impl std::error::Error for ClientError {}

/// A handle on one server with one operator's token. Cloning is cheap: the connection pool and
/// the strings are shared.
#[derive(Clone)]
pub struct ApiClient {
    http: reqwest::Client,
    /// The server's URL without a trailing slash, e.g. `http://127.0.0.1:7878`.
    base: Arc<str>,
    token: Arc<str>,
}

impl fmt::Debug for ApiClient {
    // The token is a credential: keep it out of logs and panic messages.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiClient")
            .field("base", &self.base)
            .field("token", &"<redacted>")
            .finish()
    }
}

impl ApiClient {
    /// A client for the server at `server` (e.g. `http://127.0.0.1:7878`) using `token`,
    /// trusting the system's roots for an https server.
    pub fn new(server: &str, token: &str) -> Result<ApiClient, ClientError> {
        ApiClient::with_ca_file(server, token, None)
    }

    /// [`ApiClient::new`], also trusting the CA certificates in `ca_file` (PEM).
    pub fn with_ca_file(
        server: &str,
        token: &str,
        ca_file: Option<&std::path::Path>,
    ) -> Result<ApiClient, ClientError> {
        let base = normalize_server(server)?;
        let builder = crate::tls::http_client(ca_file)
            .map_err(|e| ClientError::Tls(format!("{base}: CA file {e}")))?;
        let http = builder
            .connect_timeout(CONNECT_TIMEOUT)
            .user_agent(concat!("commandbridge/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ClientError::Transport(format!("{base} ({})", root_cause(&e))))?;
        Ok(ApiClient {
            http,
            base: base.into(),
            token: token.trim().into(),
        })
    }

    /// The server's URL, as requests are sent to it.
    pub fn server(&self) -> &str {
        &self.base
    }

    /// `GET /healthz`: whether the server is up, and its clock. Needs no token.
    pub async fn health(&self) -> Result<Health, ClientError> {
        let url = self.url_outside_api("/healthz")?;
        let req = self.http.request(Method::GET, url).timeout(REQUEST_TIMEOUT);
        self.send_json(req).await
    }

    /// `GET /me`: who the token belongs to.
    pub async fn me(&self) -> Result<Me, ClientError> {
        self.get("/me", &[]).await
    }

    /// `GET /actions`: the catalog, with what the caller may do with each action.
    pub async fn actions(&self) -> Result<Vec<CatalogEntry>, ClientError> {
        self.get("/actions", &[]).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::api::ApproveRequest;

    #[test]
    fn transport_error_names_the_server_and_the_fix() {
        let err = ClientError::Transport("http://127.0.0.1:1 (Connection refused)".into());
        let text = err.to_string();
        assert!(text.contains("could not reach the server at http://127.0.0.1:1"));
        assert!(text.contains("commandbridge login"));
        assert!(text.contains("CB_SERVER"));
    }

    #[test]
    fn debug_hides_the_token() {
        let c = ApiClient::new("http://host:1", "s3cret").expect("valid");
        assert!(!format!("{c:?}").contains("s3cret"));
    }

    /// A stand-in server, just enough to see what the client sends and how it reads answers.
    /// (The real server's own tests drive it with this client over HTTP.)
    async fn stand_in() -> String {
        use axum::Json;
        use axum::http::{HeaderMap, StatusCode as S, header};
        use axum::response::IntoResponse;
        use axum::routing::{delete, get, post};
        use std::collections::HashMap;

        fn authorized(h: &HeaderMap) -> bool {
            h.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) == Some("Bearer tok")
        }
        let app = axum::Router::new()
            .route(
                "/api/v1/me",
                get(|h: HeaderMap| async move {
                    if authorized(&h) {
                        (S::OK, Json(serde_json::json!({"name": "alice", "level": "L2"})))
                    } else {
                        (
                            S::UNAUTHORIZED,
                            Json(serde_json::json!({"error": "unauthorized", "message": "unknown token"})),
                        )
                    }
                }),
            )
            .route(
                "/api/v1/changes/{id}/approve",
                post(|| async {
                    (
                        S::FORBIDDEN,
                        Json(serde_json::json!({"error": "forbidden", "message": "you requested this change"})),
                    )
                }),
            )
            .route("/api/v1/pause", delete(|| async { S::NO_CONTENT }))
            .route(
                "/api/v1/audit",
                get(|q: axum::extract::Query<HashMap<String, String>>| async move {
                    // Echo the query back through `actor` so the test sees what arrived.
                    let seen = format!("after={:?} limit={:?}", q.get("after"), q.get("limit"));
                    Json(serde_json::json!([{
                        "seq": 1, "at": "2025-01-06T10:00:00Z", "actor": seen, "kind": "k",
                        "subject": "s", "detail": {}, "prev_hash": "0", "hash": "1"
                    }]))
                }),
            )
            .route("/api/v1/incidents", get(|| async { "this is not json" }))
            .route(
                "/api/v1/events",
                get(|h: HeaderMap| async move {
                    let after: i64 = h
                        .get("last-event-id")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0);
                    let mut body = String::from(": hello\n\n");
                    for seq in (after + 1)..=3 {
                        body.push_str(&format!(
                            "id: {seq}\nevent: change.requested\ndata: {{\"seq\":{seq},\"at\":\"2025-01-06T10:00:00Z\",\"kind\":\"change.requested\",\"actor\":\"a\",\"summary\":\"s\",\"data\":null}}\n\n"
                        ));
                    }
                    ([(header::CONTENT_TYPE, "text/event-stream")], body).into_response()
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().expect("bound");
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}")
    }

    #[tokio::test]
    async fn talks_to_a_server() {
        use futures::StreamExt;
        let base = stand_in().await;
        let c = ApiClient::new(&base, "tok").expect("valid");

        let me = c.me().await.expect("me");
        assert_eq!(me.name, "alice");

        let stranger = ApiClient::new(&base, "nope").expect("valid");
        assert_eq!(
            stranger.me().await.expect_err("bad token").to_string(),
            "401 unauthorized: unknown token"
        );

        let err = c
            .approve(7, &ApproveRequest::default())
            .await
            .expect_err("forbidden");
        assert_eq!(err.to_string(), "403 forbidden: you requested this change");

        c.resume().await.expect("204 is success");

        let audit = c.audit(Some(41), Some(5)).await.expect("audit");
        assert_eq!(audit[0].actor, r#"after=Some("41") limit=Some("5")"#);

        assert!(matches!(
            c.incidents().await,
            Err(ClientError::Decode(detail)) if detail.contains("this is not json")
        ));

        let all: Vec<i64> = c
            .events(None)
            .map(|e| e.expect("event").seq)
            .collect()
            .await;
        assert_eq!(all, vec![1, 2, 3]);
        let missed: Vec<i64> = c
            .events(Some(1))
            .map(|e| e.expect("event").seq)
            .collect()
            .await;
        assert_eq!(missed, vec![2, 3], "Last-Event-ID is sent");
    }

    #[tokio::test]
    async fn unreachable_server_is_a_transport_error() {
        // Port 1 on loopback: nothing listens there, so the connection is refused at once.
        let c = ApiClient::new("http://127.0.0.1:1", "t").expect("valid");
        match c.me().await {
            Err(ClientError::Transport(detail)) => {
                assert!(detail.starts_with("http://127.0.0.1:1 ("), "{detail}")
            }
            other => panic!("expected a transport error, got {other:?}"),
        }
    }
}
