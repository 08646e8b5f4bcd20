//! Event delivery. The event table is the truth; the in-process signal only wakes the streams,
//! so a stream never misses an event, whether it connected late or was woken late.

use crate::server::store::Store;
use axum::response::sse::Event as SseEvent;
use futures::Stream;
use std::collections::VecDeque;
use std::sync::Arc;
use tokio::sync::watch;

#[derive(Clone)]
pub struct EventBus {
    tx: Arc<watch::Sender<u64>>,
    /// Set when the server stops: open streams end, so a graceful shutdown does not wait for
    /// dashboards that would stay connected forever.
    closing: Arc<watch::Sender<bool>>,
}

impl Default for EventBus {
    fn default() -> Self {
        EventBus {
            tx: Arc::new(watch::channel(0).0),
            closing: Arc::new(watch::channel(false).0),
        }
    }
}

impl EventBus {
    /// Ends every open stream.
    pub fn close(&self) {
        self.closing.send_replace(true);
    }

    /// Tells every stream that new events are committed.
    pub fn wake(&self) {
        self.tx.send_modify(|n| *n = n.wrapping_add(1));
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.tx.subscribe()
    }
}

const PAGE: i64 = 500;

/// A `stream.ready` event, then the events after `after`, then live ones as they are committed.
pub fn stream(
    store: Store,
    bus: EventBus,
    after: i64,
) -> impl Stream<Item = Result<SseEvent, std::convert::Infallible>> {
    struct S {
        store: Store,
        wake: watch::Receiver<u64>,
        closing: watch::Receiver<bool>,
        last: i64,
        queue: VecDeque<crate::domain::api::Event>,
    }
    let closing = bus.closing.subscribe();
    let mut wake = bus.subscribe();
    wake.mark_changed();
    let ready = crate::domain::api::Event {
        seq: after,
        at: chrono::Utc::now(),
        kind: crate::domain::api::STREAM_READY.into(),
        actor: "server".into(),
        summary: String::new(),
        data: serde_json::json!({}),
    };
    let init = S {
        store,
        wake,
        closing,
        last: after,
        queue: VecDeque::from([ready]),
    };
    futures::stream::unfold(init, |mut s| async move {
        loop {
            if let Some(e) = s.queue.pop_front() {
                s.last = e.seq;
                let sse = SseEvent::default()
                    .id(e.seq.to_string())
                    .event(e.kind.clone())
                    .json_data(&e)
                    .unwrap_or_else(|_| SseEvent::default().comment("unencodable event"));
                return Some((Ok(sse), s));
            }
            // Wait for a commit; the page query below sees everything committed before it.
            if *s.closing.borrow() {
                return None;
            }
            tokio::select! {
                changed = s.wake.changed() => if changed.is_err() {
                    return None;
                },
                _ = s.closing.wait_for(|c| *c) => return None,
            }
            match s.store.events_after(s.last, PAGE).await {
                Ok(page) => {
                    if page.len() as i64 == PAGE {
                        // More may follow: look again without waiting.
                        s.wake.mark_changed();
                    }
                    s.queue.extend(page);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "reading events failed; the stream ends");
                    return None;
                }
            }
        }
    })
}
