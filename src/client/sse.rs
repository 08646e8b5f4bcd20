//! The live event feed, `GET /api/v1/events` (server-sent events).
//!
//! The stream ends when the connection does. The caller reconnects with the `seq` of the last
//! event it saw and the server replays everything after it, so nothing is lost in between.

use super::transport::{api_error, root_cause, snippet};
use super::{ApiClient, ClientError};
use crate::domain::api::Event;
use eventsource_stream::{EventStreamError, Eventsource};
use futures::stream::{self, BoxStream, StreamExt};
use reqwest::Method;
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use std::time::Duration;

/// The server sends a keep-alive comment every 15 s or so. A connection silent for three times
/// that is dead (an SSH tunnel dropped, a laptop resumed): end the stream so the caller
/// reconnects, instead of waiting forever on a socket nobody will write to.
pub const IDLE_LIMIT: Duration = Duration::from_secs(45);

impl ApiClient {
    /// Subscribes to server events. With `last_event_id`, the server first replays every event
    /// after that sequence number. The stream yields at most one error and then ends.
    pub fn events(
        &self,
        last_event_id: Option<i64>,
    ) -> BoxStream<'static, Result<Event, ClientError>> {
        let client = self.clone();
        stream::once(async move { client.open_events(last_event_id, 0).await })
            .flat_map(|opened| match opened {
                Ok(events) => events,
                Err(e) => stream::once(async move { Err(e) }).boxed(),
            })
            .boxed()
    }

    /// Opens the stream: resolves once the server accepted it, so a caller can tell
    /// "connected" from "no event yet".
    /// Without `last_event_id`, `backlog` recent events come first.
    pub async fn open_events(
        &self,
        last_event_id: Option<i64>,
        backlog: u32,
    ) -> Result<BoxStream<'static, Result<Event, ClientError>>, ClientError> {
        let query: Vec<(&str, String)> = if backlog == 0 {
            Vec::new()
        } else {
            vec![("backlog", backlog.to_string())]
        };
        let url = self.url("/events", &query)?;
        // No overall timeout: the response body is meant to stay open for hours.
        let mut req = self
            .http
            .request(Method::GET, url)
            .bearer_auth(&*self.token)
            .header(ACCEPT, "text/event-stream");
        if let Some(id) = last_event_id {
            req = req.header("Last-Event-ID", id.to_string());
        }
        let resp = tokio::time::timeout(super::REQUEST_TIMEOUT, req.send())
            .await
            .map_err(|_| {
                ClientError::Transport(format!(
                    "{} (no answer within {}s)",
                    self.base,
                    super::REQUEST_TIMEOUT.as_secs()
                ))
            })?
            .map_err(|e| self.transport(&e))?;
        let status = resp.status();
        if !status.is_success() {
            let body = resp.bytes().await.map_err(|e| self.transport(&e))?;
            return Err(api_error(status, &body));
        }
        let content_type = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        if !content_type.starts_with("text/event-stream") {
            return Err(ClientError::Decode(format!(
                "/api/v1/events answered with content type '{content_type}', not an event stream"
            )));
        }

        let base = self.base.clone();
        let bytes = idle_limited(resp.bytes_stream(), IDLE_LIMIT);
        let events = bytes
            .eventsource()
            .filter_map(move |item| {
                let base = base.clone();
                async move {
                    match item {
                        Ok(msg) => decode_message(&msg.event, &msg.data),
                        Err(EventStreamError::Transport(Broken::Idle)) => {
                            Some(Err(ClientError::Transport(format!(
                                "{base} (event stream silent for {}s)",
                                IDLE_LIMIT.as_secs()
                            ))))
                        }
                        Err(EventStreamError::Transport(Broken::Io(e))) => Some(Err(
                            ClientError::Transport(format!("{base} (event stream broke: {e})")),
                        )),
                        Err(e) => Some(Err(ClientError::Decode(format!("event stream: {e}")))),
                    }
                }
            })
            .scan(false, |failed, item| {
                // One error ends the stream: the parser's state after a broken read is
                // unreliable, and the caller reconnects from the last good seq anyway.
                if *failed {
                    return futures::future::ready(None);
                }
                *failed = item.is_err();
                futures::future::ready(Some(item))
            });
        Ok(events.boxed())
    }
}

/// One SSE message to an [`Event`]. Messages without data (keep-alives, which the parser
/// already drops when they are comments) and explicit `ping`/`keepalive` events are skipped.
fn decode_message(kind: &str, data: &str) -> Option<Result<Event, ClientError>> {
    if data.trim().is_empty() || matches!(kind, "ping" | "keepalive" | "keep-alive") {
        return None;
    }
    Some(
        serde_json::from_str::<Event>(data).map_err(|e| {
            ClientError::Decode(format!("event '{kind}': {e} (data: {})", snippet(data)))
        }),
    )
}

#[derive(Debug)]
enum Broken {
    Idle,
    Io(String),
}

impl std::fmt::Display for Broken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Broken::Idle => f.write_str("idle"),
            Broken::Io(e) => f.write_str(e),
        }
    }
}

/// The byte stream, with an error in place of a chunk that does not arrive within `limit`.
/// Stops after the first error.
fn idle_limited<S, B>(
    bytes: S,
    limit: Duration,
) -> impl futures::Stream<Item = Result<B, Broken>> + Send + 'static
where
    S: futures::Stream<Item = Result<B, reqwest::Error>> + Send + 'static,
    B: Send + 'static,
{
    stream::unfold(Some(Box::pin(bytes)), move |state| async move {
        let mut bytes = state?;
        match tokio::time::timeout(limit, bytes.next()).await {
            Ok(Some(Ok(chunk))) => Some((Ok(chunk), Some(bytes))),
            Ok(Some(Err(e))) => Some((Err(Broken::Io(root_cause(&e))), None)),
            Ok(None) => None,
            Err(_) => Some((Err(Broken::Idle), None)),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event_json(seq: i64) -> String {
        format!(
            r#"{{"seq":{seq},"at":"2025-01-06T10:00:00Z","kind":"change.requested","actor":"alice","summary":"alice requested #1","data":{{"id":1}}}}"#
        )
    }

    #[test]
    fn messages_decode_to_events_and_keepalives_are_skipped() {
        let ev = decode_message("change.requested", &event_json(7))
            .expect("a message with data is an event")
            .expect("valid json");
        assert_eq!(ev.seq, 7);
        assert_eq!(ev.kind, "change.requested");
        assert!(decode_message("message", "").is_none());
        assert!(decode_message("ping", "{}").is_none());
        assert!(matches!(
            decode_message("change.requested", "not json"),
            Some(Err(ClientError::Decode(_)))
        ));
    }

    #[tokio::test]
    async fn a_byte_stream_parses_to_events_skipping_comments() {
        let body = format!(
            ": keep-alive\n\nid: 1\nevent: change.requested\ndata: {}\n\n:\n\nid: 2\nevent: change.approved\ndata: {}\n\n",
            event_json(1),
            event_json(2)
        );
        let chunks: Vec<Result<Vec<u8>, std::convert::Infallible>> =
            body.as_bytes().chunks(17).map(|c| Ok(c.to_vec())).collect();
        let seqs: Vec<i64> = stream::iter(chunks)
            .eventsource()
            .filter_map(|m| async move {
                let m = m.ok()?;
                decode_message(&m.event, &m.data)?.ok()
            })
            .map(|e| e.seq)
            .collect()
            .await;
        assert_eq!(seqs, vec![1, 2]);
    }

    #[tokio::test]
    async fn a_silent_stream_ends_with_idle() {
        let silent = stream::pending::<Result<Vec<u8>, reqwest::Error>>();
        let items: Vec<_> = idle_limited(silent, Duration::from_millis(20))
            .collect()
            .await;
        assert_eq!(items.len(), 1);
        assert!(matches!(items[0], Err(Broken::Idle)));
    }

    #[tokio::test]
    async fn unreachable_server_yields_one_transport_error() {
        let c = ApiClient::new("http://127.0.0.1:1", "t").expect("valid");
        let items: Vec<_> = c.events(Some(3)).collect().await;
        assert_eq!(items.len(), 1);
        assert!(matches!(items[0], Err(ClientError::Transport(_))));
    }
}
