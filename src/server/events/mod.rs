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

/// The streams' shared state. Live events flow only once [`tail::start`] has run for it
/// (`server::start` does, before serving).
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::store::Record;
    use std::time::Duration;

    struct Fixture {
        store: Store,
        bus: EventBus,
        tail: Vec<tokio::task::JoinHandle<()>>,
        _dir: tempfile::TempDir,
    }

    impl Fixture {
        /// A store with `before` events, and a tail reader started after them; the feed keeps
        /// `capacity` events.
        async fn start(capacity: usize, before: usize) -> Fixture {
            let dir = tempfile::tempdir().unwrap();
            let url = format!("sqlite://{}", dir.path().join("cb.db").display());
            let store = Store::open(&url).await.unwrap();
            let bus = EventBus::with_capacity(StreamLimits::for_connections(64, None), capacity);
            let mut f = Fixture {
                tail: Vec::new(),
                store,
                bus,
                _dir: dir,
            };
            f.commit(before).await;
            f.tail = tail::start(&f.store, &f.bus).await.unwrap();
            f
        }

        /// Commits `n` events, one transaction each, as the services do.
        async fn commit(&self, n: usize) {
            for i in 0..n {
                let mut tx = self.store.write().await.unwrap();
                tx.record(
                    chrono::Utc::now(),
                    Record {
                        actor: "test",
                        kind: "test.event",
                        subject: format!("test:{i}"),
                        summary: String::new(),
                        data: serde_json::json!({ "i": i }),
                    },
                )
                .await
                .unwrap();
                tx.commit().await.unwrap();
                self.bus.wake();
            }
        }

        /// Waits until the tail reader has published event `seq`.
        async fn published(&self, seq: i64) {
            tokio::time::timeout(Duration::from_secs(5), async {
                while self.bus.live.join().1 < seq {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            })
            .await
            .unwrap_or_else(|_| panic!("the tail reader did not publish event {seq} within 5 s"));
        }

        fn subscribe(&self, after: i64) -> Subscriber {
            Subscriber::new(self.store.clone(), &self.bus, after)
        }
    }

    impl Drop for Fixture {
        fn drop(&mut self) {
            for t in &self.tail {
                t.abort();
            }
        }
    }

    async fn next_seqs(s: &mut Subscriber, n: usize) -> Vec<i64> {
        let mut seqs = Vec::new();
        for _ in 0..n {
            let e = tokio::time::timeout(Duration::from_secs(5), s.next())
                .await
                .expect("an event within 5 s")
                .expect("the stream is open");
            seqs.push(e.seq);
        }
        seqs
    }

    #[tokio::test]
    async fn a_subscriber_that_falls_behind_the_feed_reads_the_table_and_misses_nothing() {
        let f = Fixture::start(2, 0).await;
        let mut s = f.subscribe(0);
        // Twenty events through a feed that keeps two: the subscriber, not reading, lags.
        f.commit(20).await;
        f.published(20).await;
        assert_eq!(next_seqs(&mut s, 20).await, (1..=20).collect::<Vec<_>>());
        // Back on the live feed: the next event comes from it, once.
        f.commit(1).await;
        assert_eq!(next_seqs(&mut s, 1).await, vec![21]);
        assert!(
            tokio::time::timeout(Duration::from_millis(200), s.next())
                .await
                .is_err(),
            "nothing after the last event"
        );
    }

    #[tokio::test]
    async fn a_subscriber_that_resumes_from_an_old_id_gets_each_event_once_across_the_switch() {
        let f = Fixture::start(64, 5).await;
        let mut s = f.subscribe(2);
        // Published after it joined, so on its feed too; its first page from the table (8
        // events after 2) reads 6 to 10 as well.
        f.commit(6).await;
        f.published(11).await;
        assert_eq!(next_seqs(&mut s, 9).await, (3..=11).collect::<Vec<_>>());
        f.commit(2).await;
        assert_eq!(next_seqs(&mut s, 2).await, vec![12, 13]);
    }

    #[tokio::test]
    async fn every_subscriber_gets_each_event_from_one_read() {
        let f = Fixture::start(64, 0).await;
        let mut subs: Vec<_> = (0..50).map(|_| f.subscribe(0)).collect();
        f.commit(3).await;
        f.published(3).await;
        let mut firsts = Vec::new();
        for s in &mut subs {
            firsts.push(s.next().await.expect("an event"));
            assert_eq!(next_seqs(s, 2).await, vec![2, 3]);
        }
        // The same encoded event, not fifty copies: each was read and encoded once.
        assert!(firsts.iter().all(|e| Arc::ptr_eq(e, &firsts[0])));
    }

    /// With nobody joined, the tail reader only moves its head; a stream that joins then gets
    /// what is committed after it joined, from the feed, and resumes older ids from the table.
    #[tokio::test]
    async fn a_stream_joining_a_tail_that_had_nobody_to_feed_misses_nothing() {
        let f = Fixture::start(64, 0).await;
        f.commit(5).await;
        f.published(5).await;
        assert_eq!(f.bus.live.join().1, 5, "the head is the newest event");
        let mut fresh = f.subscribe(5);
        let mut resuming = f.subscribe(3);
        f.commit(2).await;
        assert_eq!(next_seqs(&mut fresh, 2).await, vec![6, 7]);
        assert_eq!(next_seqs(&mut resuming, 4).await, vec![4, 5, 6, 7]);
    }

    #[tokio::test]
    async fn closing_ends_a_waiting_subscriber() {
        let f = Fixture::start(8, 1).await;
        let mut s = f.subscribe(0);
        assert_eq!(next_seqs(&mut s, 1).await, vec![1]);
        let waiting = tokio::spawn(async move { s.next().await.map(|e| e.seq) });
        tokio::time::sleep(Duration::from_millis(50)).await;
        f.bus.close();
        let ended = tokio::time::timeout(Duration::from_secs(2), waiting).await;
        assert_eq!(ended.expect("ended within 2 s").unwrap(), None);
    }

    #[test]
    fn an_event_is_encoded_once_as_an_sse_frame() {
        let e = Event {
            seq: 7,
            at: chrono::Utc::now(),
            kind: "change.requested".into(),
            actor: "alice".into(),
            summary: "s".into(),
            data: serde_json::json!({"id": 3}),
        };
        let text = format!("{:?}", Encoded::new(&e).sse());
        assert!(
            text.contains("id: 7\\nevent: change.requested\\ndata: {"),
            "{text}"
        );
        let bad = Event {
            kind: "two\nlines".into(),
            ..e
        };
        let text = format!("{:?}", Encoded::new(&bad).sse());
        assert!(text.contains(": unencodable event"), "{text}");
    }
}
