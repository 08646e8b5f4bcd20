//! The HTTP client for the CommandBridge API, shared by the TUI and the scripting commands.
//!
//! Every method maps one API route to its typed body from [`crate::domain`]; errors come back as
//! [`ClientError`], whose text is what the operator should read (the server's own message for
//! refusals).

pub mod settings;
pub mod sse;

use crate::domain::api::{
    ApproveRequest, AuditEntry, Calendar, CancelRequest, CatalogEntry, ChangeRequest, DenyRequest,
    ErrorBody, FreezeRequest, Health, IncidentRequest, Me, OutcomeRequest, PauseRequest, Preview,
    RollbackRequest, WindowStatus, WithdrawRequest,
};
use crate::domain::calendar::{CalendarState, Feed, FeedCreated, FeedRequest};
use crate::domain::change::{Change, ChangeState};
use crate::domain::incident::Incident;
use crate::domain::verification::{Verification, VerificationDetail};
use crate::domain::window::{Freeze, Pause};
use chrono::{DateTime, SecondsFormat, Utc};
use reqwest::{Method, RequestBuilder, Response, StatusCode, Url};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// The most changes the server sends in one page of `GET /changes`.
pub const MAX_CHANGES_PAGE: u32 = 500;

/// One page of a list, and the cursor of the next one (`None` on the last page).
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_before: Option<i64>,
}

/// How long an ordinary API call may take, end to end, before the caller is told.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Connecting is the part that hangs when the address is wrong (a firewall dropping packets),
/// so it gets its own, shorter limit; it applies to the event stream too.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Header that makes `POST /changes` safe to retry.
pub const IDEMPOTENCY_KEY: &str = "Idempotency-Key";

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

/// How to trust the server's certificate besides the system's roots: `commandbridge login
/// --ca-file`, `ca_file` in config.toml, or `CB_CA_FILE`.
const TRUST_FIX: &str = "if the server's certificate comes from a private CA, give that CA's \
                         certificate (PEM) with `commandbridge login --ca-file FILE`, ca_file in \
                         config.toml, or CB_CA_FILE";

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

    /// `POST /changes/preview`: what would happen, without recording anything.
    pub async fn preview(&self, req: &ChangeRequest) -> Result<Preview, ClientError> {
        self.send_with_body(Method::POST, "/changes/preview", req)
            .await
    }

    /// `POST /changes`: request a change. With an idempotency key a retry returns the change the
    /// first attempt created instead of a second one.
    pub async fn create_change(
        &self,
        req: &ChangeRequest,
        idempotency_key: Option<&str>,
    ) -> Result<Change, ClientError> {
        let mut builder = self
            .request(Method::POST, self.url("/changes", &[])?)
            .json(req);
        if let Some(key) = idempotency_key {
            builder = builder.header(IDEMPOTENCY_KEY, key);
        }
        self.send_json(builder).await
    }

    /// `GET /changes`: one page of changes, newest first, optionally only those in `state`
    /// (`limit` at most [`MAX_CHANGES_PAGE`]; the server's default page without it).
    pub async fn changes(
        &self,
        state: Option<ChangeState>,
        limit: Option<u32>,
    ) -> Result<Vec<Change>, ClientError> {
        Ok(self.changes_page(state, None, limit).await?.items)
    }

    /// `GET /changes?before=…`: the page of changes with ids below `before`, and the cursor of
    /// the page after it, from the `Link` header.
    pub async fn changes_page(
        &self,
        state: Option<ChangeState>,
        before: Option<i64>,
        limit: Option<u32>,
    ) -> Result<Page<Change>, ClientError> {
        let mut query = Vec::new();
        if let Some(state) = state {
            query.push(("state", state.as_str().to_string()));
        }
        if let Some(limit) = limit {
            query.push(("limit", limit.to_string()));
        }
        if let Some(before) = before {
            query.push(("before", before.to_string()));
        }
        let resp = self
            .send(self.request(Method::GET, self.url("/changes", &query)?))
            .await?;
        let next_before = next_cursor(resp.headers());
        let items: Vec<Change> = self.read_json(resp).await?;
        // A cursor that does not move down would have us loop for ever.
        let next_before = next_before.filter(|n| before.is_none_or(|b| *n < b));
        Ok(Page { items, next_before })
    }

    /// Changes newest first, from below `before` (the newest when `None`), following the
    /// server's cursor page by page until `max` are read (every one when `None`). The returned
    /// cursor is where a caller would go on.
    pub async fn changes_following(
        &self,
        state: Option<ChangeState>,
        mut before: Option<i64>,
        max: Option<usize>,
    ) -> Result<Page<Change>, ClientError> {
        let mut items = Vec::new();
        loop {
            let wanted = max.map_or(usize::MAX, |m| m - items.len());
            let limit = u32::try_from(wanted).map_or(MAX_CHANGES_PAGE, |w| w.min(MAX_CHANGES_PAGE));
            let page = self.changes_page(state, before, Some(limit)).await?;
            items.extend(page.items);
            before = page.next_before;
            if before.is_none() || max.is_some_and(|m| items.len() >= m) {
                return Ok(Page {
                    items,
                    next_before: before,
                });
            }
        }
    }

    /// `GET /changes/{id}`.
    pub async fn change(&self, id: i64) -> Result<Change, ClientError> {
        self.get(&format!("/changes/{id}"), &[]).await
    }

    /// `POST /changes/{id}/approve`.
    pub async fn approve(&self, id: i64, req: &ApproveRequest) -> Result<Change, ClientError> {
        self.send_with_body(Method::POST, &format!("/changes/{id}/approve"), req)
            .await
    }

    /// `POST /changes/{id}/deny`.
    pub async fn deny(&self, id: i64, req: &DenyRequest) -> Result<Change, ClientError> {
        self.send_with_body(Method::POST, &format!("/changes/{id}/deny"), req)
            .await
    }

    /// `POST /changes/{id}/withdraw`: the requester takes back their pending change.
    pub async fn withdraw(&self, id: i64, req: &WithdrawRequest) -> Result<Change, ClientError> {
        self.send_with_body(Method::POST, &format!("/changes/{id}/withdraw"), req)
            .await
    }

    /// `POST /changes/{id}/cancel`: cancels a scheduled change (its requester, or an L2+).
    pub async fn cancel(&self, id: i64, req: &CancelRequest) -> Result<Change, ClientError> {
        self.send_with_body(Method::POST, &format!("/changes/{id}/cancel"), req)
            .await
    }

    /// `GET /windows`: the calendar between two instants.
    pub async fn calendar(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Calendar, ClientError> {
        let query = [
            ("from", from.to_rfc3339_opts(SecondsFormat::Secs, true)),
            ("to", to.to_rfc3339_opts(SecondsFormat::Secs, true)),
        ];
        self.get("/windows", &query).await
    }

    /// `GET /windows/current`: what is open now, what opens next, any freeze or pause.
    pub async fn current_window(&self) -> Result<WindowStatus, ClientError> {
        self.get("/windows/current", &[]).await
    }

    /// `GET /windows/at?time=…`: what the policy would say at `time` (RFC 3339, or `now`); the
    /// server checks the text and says what is wrong with it.
    pub async fn window_at(&self, time: &str) -> Result<CalendarState, ClientError> {
        self.get("/windows/at", &[("time", time.to_string())]).await
    }

    /// `GET /calendar.ics`: the iCalendar feed, as the server encodes it.
    pub async fn calendar_ics(&self) -> Result<String, ClientError> {
        let req = self.request(Method::GET, self.url("/calendar.ics", &[])?);
        let resp = self.send(req).await?;
        resp.text().await.map_err(|e| self.transport(&e))
    }

    /// `POST /calendar/feeds`: a feed URL for calendar apps; its secret is in this answer only.
    pub async fn create_calendar_feed(
        &self,
        req: &FeedRequest,
    ) -> Result<FeedCreated, ClientError> {
        self.send_with_body(Method::POST, "/calendar/feeds", req)
            .await
    }

    /// `GET /calendar/feeds`.
    pub async fn calendar_feeds(&self) -> Result<Vec<Feed>, ClientError> {
        self.get("/calendar/feeds", &[]).await
    }

    /// `DELETE /calendar/feeds/{id}`.
    pub async fn revoke_calendar_feed(&self, id: i64) -> Result<Feed, ClientError> {
        let req = self.request(
            Method::DELETE,
            self.url(&format!("/calendar/feeds/{id}"), &[])?,
        );
        self.send_json(req).await
    }

    /// `POST /freezes`.
    pub async fn create_freeze(&self, req: &FreezeRequest) -> Result<Freeze, ClientError> {
        self.send_with_body(Method::POST, "/freezes", req).await
    }

    /// `DELETE /freezes/{id}`.
    pub async fn delete_freeze(&self, id: i64) -> Result<(), ClientError> {
        self.send_empty(Method::DELETE, &format!("/freezes/{id}"))
            .await
    }

    /// `POST /pause`: stop all changes until someone resumes them.
    pub async fn pause(&self, req: &PauseRequest) -> Result<Pause, ClientError> {
        self.send_with_body(Method::POST, "/pause", req).await
    }

    /// `DELETE /pause`: resume changes.
    pub async fn resume(&self) -> Result<(), ClientError> {
        self.send_empty(Method::DELETE, "/pause").await
    }

    /// `POST /incidents`: declare an incident; the answer carries its INC ticket.
    pub async fn declare_incident(&self, req: &IncidentRequest) -> Result<Incident, ClientError> {
        self.send_with_body(Method::POST, "/incidents", req).await
    }

    /// `GET /incidents`.
    /// `POST /incidents/{id}/close`.
    pub async fn close_incident(&self, id: i64) -> Result<Incident, ClientError> {
        self.send_with_body(
            Method::POST,
            &format!("/incidents/{id}/close"),
            &serde_json::json!({}),
        )
        .await
    }

    pub async fn incidents(&self) -> Result<Vec<Incident>, ClientError> {
        self.get("/incidents", &[]).await
    }

    /// `GET /audit`: audit entries with a sequence number above `after`, oldest first.
    pub async fn audit(
        &self,
        after: Option<i64>,
        limit: Option<u32>,
    ) -> Result<Vec<AuditEntry>, ClientError> {
        let mut query = Vec::new();
        if let Some(after) = after {
            query.push(("after", after.to_string()));
        }
        if let Some(limit) = limit {
            query.push(("limit", limit.to_string()));
        }
        self.get("/audit", &query).await
    }

    /// `GET /verifications`: post-change verification clocks.
    pub async fn verifications(&self) -> Result<Vec<Verification>, ClientError> {
        self.get("/verifications", &[]).await
    }

    /// `GET /verifications/{id}`, with every sample.
    pub async fn verification(&self, id: i64) -> Result<VerificationDetail, ClientError> {
        self.get(&format!("/verifications/{id}"), &[]).await
    }

    /// `POST /verifications/{id}/outcome`.
    pub async fn verification_outcome(
        &self,
        id: i64,
        req: &OutcomeRequest,
    ) -> Result<Verification, ClientError> {
        self.send_with_body(Method::POST, &format!("/verifications/{id}/outcome"), req)
            .await
    }

    /// `POST /changes/{id}/rollback`.
    pub async fn rollback(&self, id: i64, req: &RollbackRequest) -> Result<Change, ClientError> {
        self.send_with_body(Method::POST, &format!("/changes/{id}/rollback"), req)
            .await
    }

    // ---- plumbing -------------------------------------------------------------------------

    /// `{base}/api/v1{path}?{query}`, with the query values percent-encoded (RFC 3339 instants
    /// carry a `+` that would otherwise read as a space).
    fn url(&self, path: &str, query: &[(&str, String)]) -> Result<Url, ClientError> {
        let mut url = self.parse_url(&format!("{}/api/v1{path}", self.base))?;
        if !query.is_empty() {
            let mut pairs = url.query_pairs_mut();
            for (k, v) in query {
                pairs.append_pair(k, v);
            }
        }
        Ok(url)
    }

    fn url_outside_api(&self, path: &str) -> Result<Url, ClientError> {
        self.parse_url(&format!("{}{path}", self.base))
    }

    fn parse_url(&self, s: &str) -> Result<Url, ClientError> {
        Url::parse(s).map_err(|e| ClientError::Transport(format!("{} ({e})", self.base)))
    }

    /// An authenticated request with the ordinary timeout.
    fn request(&self, method: Method, url: Url) -> RequestBuilder {
        self.http
            .request(method, url)
            .bearer_auth(&*self.token)
            .timeout(REQUEST_TIMEOUT)
    }

    async fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<T, ClientError> {
        let req = self.request(Method::GET, self.url(path, query)?);
        self.send_json(req).await
    }

    async fn send_with_body<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        let req = self.request(method, self.url(path, &[])?).json(body);
        self.send_json(req).await
    }

    async fn send_empty(&self, method: Method, path: &str) -> Result<(), ClientError> {
        let req = self.request(method, self.url(path, &[])?);
        let resp = self.send(req).await?;
        // Drain the body so the connection goes back to the pool.
        resp.bytes().await.map_err(|e| self.transport(&e))?;
        Ok(())
    }

    async fn send_json<T: DeserializeOwned>(&self, req: RequestBuilder) -> Result<T, ClientError> {
        let resp = self.send(req).await?;
        self.read_json(resp).await
    }

    async fn read_json<T: DeserializeOwned>(&self, resp: Response) -> Result<T, ClientError> {
        let url = resp.url().path().to_string();
        let bytes = resp.bytes().await.map_err(|e| self.transport(&e))?;
        serde_json::from_slice(&bytes).map_err(|e| {
            ClientError::Decode(format!(
                "{url}: {e} (body starts: {:?})",
                snippet(&String::from_utf8_lossy(&bytes))
            ))
        })
    }

    /// Sends the request and turns an error status into [`ClientError::Api`].
    pub(crate) async fn send(&self, req: RequestBuilder) -> Result<Response, ClientError> {
        let resp = req.send().await.map_err(|e| self.transport(&e))?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|e| self.transport(&e))?;
        Err(api_error(status, &bytes))
    }

    pub(crate) fn transport(&self, e: &reqwest::Error) -> ClientError {
        if let Some(tls) = crate::tls::Failure::of(e) {
            return ClientError::Tls(format!(
                "{} failed: {}{}",
                self.base,
                tls.cause(),
                tls.fix(TRUST_FIX)
            ));
        }
        let cause = if e.is_timeout() {
            format!("no answer within {}s", REQUEST_TIMEOUT.as_secs())
        } else {
            root_cause(e)
        };
        ClientError::Transport(format!("{} ({cause})", self.base))
    }
}

/// Turns an error response into [`ClientError::Api`], keeping the server's words when the body
/// is an [`ErrorBody`] and saying what arrived when it is not (a proxy's HTML page, say).
pub(crate) fn api_error(status: StatusCode, body: &[u8]) -> ClientError {
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(ErrorBody { error, message }) => ClientError::Api {
            status: status.as_u16(),
            error,
            message,
        },
        Err(_) => {
            let reason = status.canonical_reason().unwrap_or("error");
            let text = String::from_utf8_lossy(body);
            let text = snippet(text.trim());
            ClientError::Api {
                status: status.as_u16(),
                error: reason.to_ascii_lowercase().replace(' ', "_"),
                message: if text.is_empty() {
                    format!("the server answered {status} with no explanation")
                } else {
                    text
                },
            }
        }
    }
}

/// The `before` cursor in a `Link: <…?before=N…>; rel="next"` header.
fn next_cursor(headers: &reqwest::header::HeaderMap) -> Option<i64> {
    headers
        .get_all(reqwest::header::LINK)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find(|link| link.contains(r#"rel="next""#))
        .and_then(|link| {
            let target = link.split_once('<')?.1.split_once('>')?.0;
            let query = target.split_once('?')?.1;
            query
                .split('&')
                .find_map(|kv| kv.strip_prefix("before="))?
                .parse()
                .ok()
        })
}

/// Checks the server address once, up front, so a typo is reported as such rather than as an
/// unreachable server on every call.
fn normalize_server(server: &str) -> Result<String, ClientError> {
    let trimmed = server.trim().trim_end_matches('/');
    let bad = |why: &str| {
        ClientError::Transport(format!(
            "'{trimmed}' ({why}; give a URL such as http://127.0.0.1:7878)"
        ))
    };
    let url = Url::parse(trimmed).map_err(|e| bad(&e.to_string()))?;
    match url.scheme() {
        "http" | "https" => {}
        other => return Err(bad(&format!("unsupported scheme '{other}'"))),
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(bad("no host"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(bad("no query or fragment allowed"));
    }
    Ok(trimmed.to_string())
}

/// reqwest's own text ("error sending request") hides the useful part ("Connection refused")
/// at the bottom of the source chain.
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut last: &(dyn std::error::Error + 'static) = e;
    while let Some(next) = last.source() {
        last = next;
    }
    last.to_string()
}

fn snippet(s: &str) -> String {
    const MAX: usize = 200;
    match s.char_indices().nth(MAX) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_error_keeps_the_servers_words() {
        let body = br#"{"error":"forbidden","message":"you requested this change; another operator must approve it"}"#;
        let err = api_error(StatusCode::FORBIDDEN, body);
        assert_eq!(err.status(), Some(403));
        assert_eq!(
            err.to_string(),
            "403 forbidden: you requested this change; another operator must approve it"
        );
    }

    #[test]
    fn api_error_without_error_body_says_what_arrived() {
        let err = api_error(StatusCode::BAD_GATEWAY, b"<html>upstream down</html>");
        assert_eq!(
            err,
            ClientError::Api {
                status: 502,
                error: "bad_gateway".into(),
                message: "<html>upstream down</html>".into(),
            }
        );
        let empty = api_error(StatusCode::INTERNAL_SERVER_ERROR, b"");
        assert!(empty.to_string().contains("no explanation"), "{empty}");
    }

    #[test]
    fn transport_error_names_the_server_and_the_fix() {
        let err = ClientError::Transport("http://127.0.0.1:1 (Connection refused)".into());
        let text = err.to_string();
        assert!(text.contains("could not reach the server at http://127.0.0.1:1"));
        assert!(text.contains("commandbridge login"));
        assert!(text.contains("CB_SERVER"));
    }

    #[test]
    fn the_next_cursor_comes_from_the_link_header() {
        use reqwest::header::{HeaderMap, HeaderValue, LINK};
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(LINK, HeaderValue::from_str(v).expect("a header value"));
            next_cursor(&h)
        };
        assert_eq!(
            with(r#"</api/v1/changes?limit=500&before=1234&state=executed>; rel="next""#),
            Some(1234)
        );
        assert_eq!(
            with(r#"</x?before=7>; rel="prev", </x?before=3>; rel="next""#),
            Some(3)
        );
        assert_eq!(with(r#"</x?before=3>; rel="prev""#), None);
        assert_eq!(with(r#"</x?before=nope>; rel="next""#), None);
        assert_eq!(next_cursor(&HeaderMap::new()), None);
    }

    #[test]
    fn server_urls_are_checked_and_normalized() {
        assert_eq!(
            normalize_server(" http://127.0.0.1:7878/ ").as_deref(),
            Ok("http://127.0.0.1:7878")
        );
        assert_eq!(
            normalize_server("http://host/cb/").as_deref(),
            Ok("http://host/cb")
        );
        assert_eq!(
            normalize_server("https://cb.example:7443").as_deref(),
            Ok("https://cb.example:7443")
        );
        for bad in ["127.0.0.1:7878", "", "ftp://host", "http://h/?a=b"] {
            assert!(
                matches!(normalize_server(bad), Err(ClientError::Transport(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn urls_carry_the_prefix_and_encode_the_query() {
        let c = ApiClient::new("http://host:1/cb", "t").expect("valid");
        let url = c
            .url(
                "/windows",
                &[("from", "2025-01-01T00:00:00+01:00".to_string())],
            )
            .expect("valid");
        assert_eq!(
            url.as_str(),
            "http://host:1/cb/api/v1/windows?from=2025-01-01T00%3A00%3A00%2B01%3A00"
        );
        assert_eq!(
            c.url_outside_api("/healthz").expect("valid").as_str(),
            "http://host:1/cb/healthz"
        );
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
