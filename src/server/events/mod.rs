//! Event delivery. The event table is the truth: one tail reader per server reads each new
//! event once and fans it out in memory ([`tail`]); a stream that starts behind the live feed,
//! or falls behind it, reads the table itself, a page at a time, and then rejoins the feed.

mod limits;
pub mod tail;

pub use limits::{StreamLimits, StreamPermit, StreamRefused};

use crate::domain::api::{Event, STREAM_READY};
use crate::server::store::Store;
use axum::response::sse::Event as SseEvent;
use futures::Stream;
use limits::Streams;
use std::collections::VecDeque;
use std::sync::Arc;
use tail::{Encoded, Live};
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::sync::{Notify, watch};

#[derive(Clone)]
pub struct EventBus {
    /// Wakes the tail reader.
    wake: Arc<Notify>,
    live: Arc<Live>,
    /// Set when the server stops: open streams end, so a graceful shutdown does not wait for
    /// dashboards that would stay connected forever.
    closing: Arc<watch::Sender<bool>>,
    streams: Arc<Streams>,
}

impl Default for EventBus {
    fn default() -> Self {
        EventBus::with_limits(StreamLimits::for_connections(1024, None))
    }
}

/// Events the live feed keeps for streams that fall behind (shared by all streams, ~1 KiB
/// each); a stream further behind reads the table instead.
const LIVE_CAPACITY: usize = 1024;

/// Events read from the database at a time by a stream that is behind. A stream holds at most
/// one page, so a client that replays a long history and never reads costs this much, not the
/// history (500 cost ~1.7 MB).
const PAGE: i64 = 8;

impl EventBus {
    pub fn with_limits(limits: StreamLimits) -> EventBus {
        EventBus::with_capacity(limits, LIVE_CAPACITY)
    }

    fn with_capacity(limits: StreamLimits, live_capacity: usize) -> EventBus {
        EventBus {
            wake: Arc::default(),
            live: Arc::new(Live::new(live_capacity)),
            closing: Arc::new(watch::channel(false).0),
            streams: Arc::new(Streams::new(limits)),
        }
    }

    /// A place for one more stream of `operator`'s, if the limits allow it.
    pub fn open_stream(&self, operator: &str) -> Result<StreamPermit, StreamRefused> {
        self.streams.open(operator)
    }

    /// Ends every open stream, and the tail reader.
    pub fn close(&self) {
        self.closing.send_replace(true);
    }

    /// Tells the tail reader that new events are committed.
    pub fn wake(&self) {
        // A wake-up while the reader is busy is kept, so a commit during its read is not missed.
        self.wake.notify_one();
    }
}

/// One stream's position: where it is, and where it gets its next events from.
struct Subscriber {
    store: Store,
    live: Arc<Live>,
    closing: watch::Receiver<bool>,
    /// The last event handed out.
    last: i64,
    /// Until `last` reaches this, the events come from the table; after it, from `feed`.
    until: i64,
    feed: broadcast::Receiver<Arc<Encoded>>,
    /// At most one page read from the table.
    queue: VecDeque<Arc<Encoded>>,
}

impl Subscriber {
    fn new(store: Store, bus: &EventBus, after: i64) -> Subscriber {
        let (feed, until) = bus.live.join();
        Subscriber {
            store,
            live: bus.live.clone(),
            closing: bus.closing.subscribe(),
            last: after,
            until,
            feed,
            queue: VecDeque::new(),
        }
    }

    /// The next event after the last one, each exactly once and in order; `None` when the
    /// server closes or the table cannot be read (the client then resumes with `Last-Event-ID`).
    async fn next(&mut self) -> Option<Arc<Encoded>> {
        loop {
            if let Some(e) = self.queue.pop_front() {
                self.last = e.seq;
                return Some(e);
            }
            if *self.closing.borrow() {
                return None;
            }
            if self.last < self.until {
                match self.store.events_after(self.last, PAGE).await {
                    Ok(page) => {
                        if (page.len() as i64) < PAGE {
                            // Everything committed is read: the feed has all that follows.
                            self.until = i64::MIN;
                        }
                        self.queue
                            .extend(page.iter().map(|e| Arc::new(Encoded::new(e))));
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "reading events failed; the stream ends");
                        return None;
                    }
                }
                continue;
            }
            tokio::select! {
                got = self.feed.recv() => match got {
                    // Also read from the table while catching up: not sent twice.
                    Ok(e) if e.seq <= self.last => {}
                    Ok(e) => {
                        self.last = e.seq;
                        return Some(e);
                    }
                    // Fell further behind than the feed keeps: the table has the rest.
                    Err(RecvError::Lagged(_)) => (self.feed, self.until) = self.live.join(),
                    Err(RecvError::Closed) => return None,
                },
                _ = self.closing.wait_for(|c| *c) => return None,
            }
        }
    }
}

/// A `stream.ready` event, then the events after `after`, then live ones as they are committed.
/// The stream holds `permit` until it is dropped.
pub fn stream(
    store: Store,
    bus: &EventBus,
    after: i64,
    permit: StreamPermit,
) -> impl Stream<Item = Result<SseEvent, std::convert::Infallible>> + use<> {
    let ready = Encoded::new(&Event {
        seq: after,
        at: chrono::Utc::now(),
        kind: STREAM_READY.into(),
        actor: "server".into(),
        summary: String::new(),
        data: serde_json::json!({}),
    });
    let subscriber = Subscriber::new(store, bus, after);
    let ready = futures::stream::once(async move { Ok(ready.sse()) });
    let events = futures::stream::unfold((subscriber, permit), |(mut s, permit)| async move {
        let e = s.next().await?;
        Some((Ok(e.sse()), (s, permit)))
    });
    futures::StreamExt::chain(ready, events)
}
