//! Event delivery. The event table is the truth; the in-process signal only wakes the streams,
//! so a stream never misses an event, whether it connected late or was woken late.

use crate::server::store::Store;
use axum::response::sse::Event as SseEvent;
use futures::Stream;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

#[derive(Clone)]
pub struct EventBus {
    tx: Arc<watch::Sender<u64>>,
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

/// How many event streams may be open. A stream holds a connection for as long as its client
/// likes, so without a cap one token could take every connection the server has.
#[derive(Debug, Clone, Copy)]
pub struct StreamLimits {
    pub per_operator: usize,
    pub total: usize,
}

impl StreamLimits {
    /// A dashboard needs one stream; a few more cover reconnects and scripts.
    pub const PER_OPERATOR: usize = 8;
    /// Ceiling of the derived total: each open stream costs a connection and some memory.
    const MAX_TOTAL: usize = 512;

    /// `configured`, else half the connection cap (the other half stays for ordinary requests),
    /// at most [`Self::MAX_TOTAL`].
    pub fn for_connections(max_connections: usize, configured: Option<usize>) -> StreamLimits {
        StreamLimits {
            per_operator: Self::PER_OPERATOR,
            total: configured.unwrap_or((max_connections / 2).clamp(1, Self::MAX_TOTAL)),
        }
    }
}

/// Why a stream was not opened.
#[derive(Debug, PartialEq, Eq)]
pub enum StreamRefused {
    /// The operator already has this many open.
    PerOperator(usize),
    /// The server already has this many open.
    Total(usize),
}

struct Streams {
    limits: StreamLimits,
    open: Mutex<OpenStreams>,
}

#[derive(Default)]
struct OpenStreams {
    total: usize,
    /// The most open at once since memory was last given back.
    peak: usize,
    by_operator: HashMap<String, usize>,
}

/// A burst of at least this many streams that has shrunk by half gives its memory back.
const TRIM_AFTER_BURST: usize = 32;

/// Returns freed heap to the system. glibc keeps what many streams freed (most of it in the
/// worker threads' arenas) for reuse: harmless, but it reads as a leak in RSS after an attacker's
/// burst of streams, and the next burst may land in other arenas.
fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// A place among the open streams, given back when the stream (and so this) is dropped.
pub struct StreamPermit {
    streams: Arc<Streams>,
    operator: String,
}

impl Drop for StreamPermit {
    fn drop(&mut self) {
        let mut open = self.streams.lock();
        open.total -= 1;
        if let Some(n) = open.by_operator.get_mut(&self.operator) {
            *n -= 1;
            if *n == 0 {
                open.by_operator.remove(&self.operator);
            }
        }
        let trim = open.peak >= TRIM_AFTER_BURST && open.total <= open.peak / 2;
        if trim {
            open.peak = open.total;
        }
        drop(open);
        if trim {
            release_free_memory();
        }
    }
}

impl Streams {
    fn lock(&self) -> std::sync::MutexGuard<'_, OpenStreams> {
        // The counts are updated in single statements; a panic elsewhere cannot tear them.
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl EventBus {
    pub fn with_limits(limits: StreamLimits) -> EventBus {
        EventBus {
            tx: Arc::new(watch::channel(0).0),
            closing: Arc::new(watch::channel(false).0),
            streams: Arc::new(Streams {
                limits,
                open: Mutex::default(),
            }),
        }
    }

    /// A place for one more stream of `operator`'s, if the limits allow it.
    pub fn open_stream(&self, operator: &str) -> Result<StreamPermit, StreamRefused> {
        let limits = self.streams.limits;
        let mut open = self.streams.lock();
        let mine = open.by_operator.get(operator).copied().unwrap_or(0);
        if mine >= limits.per_operator {
            return Err(StreamRefused::PerOperator(limits.per_operator));
        }
        if open.total >= limits.total {
            return Err(StreamRefused::Total(limits.total));
        }
        open.total += 1;
        open.peak = open.peak.max(open.total);
        *open.by_operator.entry(operator.to_string()).or_default() += 1;
        Ok(StreamPermit {
            streams: self.streams.clone(),
            operator: operator.to_string(),
        })
    }

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

/// Events read from the database at a time. A stream holds at most one page, so a client that
/// replays a long history and never reads costs this much, not the history (500 cost ~1.7 MB).
const PAGE: i64 = 8;

/// A `stream.ready` event, then the events after `after`, then live ones as they are committed.
/// The stream holds `permit` until it is dropped.
pub fn stream(
    store: Store,
    bus: EventBus,
    after: i64,
    permit: StreamPermit,
) -> impl Stream<Item = Result<SseEvent, std::convert::Infallible>> {
    struct S {
        _permit: StreamPermit,
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
        _permit: permit,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_counted_per_operator_and_in_total_and_given_back() {
        let bus = EventBus::with_limits(StreamLimits {
            per_operator: 2,
            total: 3,
        });
        let a1 = bus.open_stream("alice").expect("first");
        let _a2 = bus.open_stream("alice").expect("second");
        assert_eq!(
            bus.open_stream("alice").err(),
            Some(StreamRefused::PerOperator(2))
        );
        let _b1 = bus.open_stream("bob").expect("bob's first");
        assert_eq!(
            bus.open_stream("carol").err(),
            Some(StreamRefused::Total(3))
        );
        drop(a1);
        let _c1 = bus.open_stream("carol").expect("a place was given back");
        assert_eq!(
            bus.open_stream("alice").err(),
            Some(StreamRefused::Total(3))
        );
    }

    #[test]
    fn the_total_follows_the_connection_cap_unless_configured() {
        assert_eq!(StreamLimits::for_connections(200, None).total, 100);
        assert_eq!(StreamLimits::for_connections(20_000, None).total, 512);
        assert_eq!(StreamLimits::for_connections(200, Some(7)).total, 7);
    }
}
