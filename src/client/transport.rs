//! How every call travels: the URL under `/api/v1` with its query encoded, the bearer token and
//! timeout on each request, and the reading of an answer into a typed body or a [`ClientError`]
//! that says what went wrong in the operator's terms (the server's own words, the unreachable
//! address, the TLS fix). The per-resource calls only name a route and a body; keeping the
//! plumbing here means a change in how errors read is made once for every route.

use super::{ApiClient, ClientError, REQUEST_TIMEOUT};
use crate::domain::api::ErrorBody;
use reqwest::{Method, RequestBuilder, Response, StatusCode, Url};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// How to trust the server's certificate besides the system's roots: `commandbridge login
/// --ca-file`, `ca_file` in config.toml, or `CB_CA_FILE`.
const TRUST_FIX: &str = "if the server's certificate comes from a private CA, give that CA's \
                         certificate (PEM) with `commandbridge login --ca-file FILE`, ca_file in \
                         config.toml, or CB_CA_FILE";

impl ApiClient {
    /// `{base}/api/v1{path}?{query}`, with the query values percent-encoded (RFC 3339 instants
    /// carry a `+` that would otherwise read as a space).
    pub(super) fn url(&self, path: &str, query: &[(&str, String)]) -> Result<Url, ClientError> {
        let mut url = self.parse_url(&format!("{}/api/v1{path}", self.base))?;
        if !query.is_empty() {
            let mut pairs = url.query_pairs_mut();
            for (k, v) in query {
                pairs.append_pair(k, v);
            }
        }
        Ok(url)
    }

    pub(super) fn url_outside_api(&self, path: &str) -> Result<Url, ClientError> {
        self.parse_url(&format!("{}{path}", self.base))
    }

    fn parse_url(&self, s: &str) -> Result<Url, ClientError> {
        Url::parse(s).map_err(|e| ClientError::Transport(format!("{} ({e})", self.base)))
    }

    /// An authenticated request with the ordinary timeout.
    pub(super) fn request(&self, method: Method, url: Url) -> RequestBuilder {
        self.http
            .request(method, url)
            .bearer_auth(&*self.token)
            .timeout(REQUEST_TIMEOUT)
    }

    pub(super) async fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<T, ClientError> {
        let req = self.request(Method::GET, self.url(path, query)?);
        self.send_json(req).await
    }

    pub(super) async fn send_with_body<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        let req = self.request(method, self.url(path, &[])?).json(body);
        self.send_json(req).await
    }

    pub(super) async fn send_empty(&self, method: Method, path: &str) -> Result<(), ClientError> {
        let req = self.request(method, self.url(path, &[])?);
        let resp = self.send(req).await?;
        // Drain the body so the connection goes back to the pool.
        resp.bytes().await.map_err(|e| self.transport(&e))?;
        Ok(())
    }

    pub(super) async fn send_json<T: DeserializeOwned>(
        &self,
        req: RequestBuilder,
    ) -> Result<T, ClientError> {
        let resp = self.send(req).await?;
        self.read_json(resp).await
    }

    pub(super) async fn read_json<T: DeserializeOwned>(
        &self,
        resp: Response,
    ) -> Result<T, ClientError> {
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

/// Checks the server address once, up front, so a typo is reported as such rather than as an
/// unreachable server on every call.
pub(super) fn normalize_server(server: &str) -> Result<String, ClientError> {
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
pub(super) fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut last: &(dyn std::error::Error + 'static) = e;
    while let Some(next) = last.source() {
        last = next;
    }
    last.to_string()
}

pub(super) fn snippet(s: &str) -> String {
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
}
