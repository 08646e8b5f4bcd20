//! The tail reader: one task per server reads each newly committed event once, encodes it once
//! and hands the same encoded event to every live stream.
//!
//! It wakes on this server's commits ([`super::EventBus::wake`]), on PostgreSQL on a
//! `NOTIFY cb_events` from any replica's commit, and once a second regardless: NOTIFY is only a
//! wake-up (one sent while the listener reconnects is lost), the event table is the truth.

use super::EventBus;
use crate::domain::api::Event;
use crate::server::store::{Backend, DbError, EVENTS_CHANNEL, Store};
use axum::response::sse::Event as SseEvent;
use sqlx::postgres::PgListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, broadcast};
use tokio::task::JoinHandle;

/// Events read per query. A burst of commits is read in pages this size, each published before
/// the next is read.
const TAIL_PAGE: i64 = 256;

/// With no wake-up at all, the table is read this often: another replica's events then reach
/// this replica's clients within this long even when its NOTIFY was lost.
const POLL: Duration = Duration::from_secs(1);

/// How long the listener waits before reconnecting, at first and at most.
const LISTEN_BACKOFF: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(30));

/// An event as a stream sends it, encoded once for every stream that sends it.
#[derive(Debug)]
pub struct Encoded {
    pub seq: i64,
    sse: SseEvent,
}

impl Encoded {
    pub fn new(e: &Event) -> Encoded {
        let id = e.seq.to_string();
        // The kind goes into an SSE field of its own, which must be one line; a kind that is not
        // (none of ours) must not take the stream down.
        let sse = match serde_json::to_string(e) {
            Ok(json) if !e.kind.contains(['\r', '\n']) => {
                SseEvent::default().id(id).event(&e.kind).data(json)
            }
            _ => SseEvent::default().id(id).comment("unencodable event"),
        };
        Encoded { seq: e.seq, sse }
    }

    /// The SSE frame, ready to write (a copy of the encoded bytes, not a new encoding).
    pub fn sse(&self) -> SseEvent {
        self.sse.clone()
    }
}

/// The live feed: the newest event published and the channel that carries each one.
pub(super) struct Live {
    head: Mutex<Head>,
}

struct Head {
    /// Every event after this one is still to be sent on `tx`.
    seq: i64,
    tx: broadcast::Sender<Arc<Encoded>>,
}

impl Live {
    /// `capacity` events are kept for streams that fall behind; one further behind reads the
    /// table itself.
    pub(super) fn new(capacity: usize) -> Live {
        Live {
            head: Mutex::new(Head {
                seq: 0,
                tx: broadcast::channel(capacity.max(1)).0,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Head> {
        // Both fields are updated together under the lock by statements that cannot panic.
        self.head.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A receiver of every event after the returned sequence number. Taken under the lock that
    /// [`Live::publish`] holds, so no event falls between the two: anything at or before the
    /// number was committed before this call and is in the table; anything after it comes on
    /// the receiver.
    pub(super) fn join(&self) -> (broadcast::Receiver<Arc<Encoded>>, i64) {
        let head = self.lock();
        (head.tx.subscribe(), head.seq)
    }

    fn publish(&self, e: Arc<Encoded>) {
        let mut head = self.lock();
        head.seq = e.seq;
        // No receiver is no error: nobody is listening right now.
        let _ = head.tx.send(e);
    }

    fn start_at(&self, seq: i64) {
        self.lock().seq = seq;
    }

    /// Whether no stream is joined: then nobody needs the events themselves.
    fn idle(&self) -> bool {
        self.lock().tx.receiver_count() == 0
    }

    /// Moves the head to `seq` without publishing what lies before it, if still no stream is
    /// joined (under the lock `join` takes, so a stream that joins meanwhile keeps its events).
    fn skip_to(&self, seq: i64) -> bool {
        let mut head = self.lock();
        let skip = head.tx.receiver_count() == 0 && seq > head.seq;
        if skip {
            head.seq = seq;
        }
        skip
    }
}

/// Starts the tail reader (and, on PostgreSQL, its listener) after the newest event committed
/// now. Call before serving: a stream opened earlier would wait for events the reader skips.
pub async fn start(store: &Store, bus: &EventBus) -> Result<Vec<JoinHandle<()>>, DbError> {
    let mut tasks = Vec::new();
    if store.backend() == Backend::Postgres {
        // Listening before the head is read: a commit in between wakes the reader.
        let listener = match listen(store.url()).await {
            Ok(l) => Some(l),
            Err(e) => {
                tracing::warn!(error = %e, "LISTEN {EVENTS_CHANNEL} failed; retrying, polling meanwhile");
                None
            }
        };
        tasks.push(tokio::spawn(relay_notifications(
            store.url().to_string(),
            listener,
            bus.wake.clone(),
        )));
    }
    let head = store.event_last_seq().await?;
    bus.live.start_at(head);
    tasks.push(tokio::spawn(run(store.clone(), bus.clone(), head)));
    Ok(tasks)
}

async fn run(store: Store, bus: EventBus, mut last: i64) {
    let mut closing = bus.closing.subscribe();
    let mut failing = false;
    loop {
        match publish_new(&store, &bus.live, &mut last).await {
            Ok(()) if failing => {
                failing = false;
                tracing::info!("reading new events works again");
            }
            Ok(()) => {}
            // Once, not every second while the database is away; the next poll retries.
            Err(e) if !failing => {
                failing = true;
                tracing::warn!(error = %e, "reading new events failed; retrying every second");
            }
            Err(_) => {}
        }
        tokio::select! {
            _ = bus.wake.notified() => {}
            _ = tokio::time::sleep(POLL) => {}
            _ = closing.wait_for(|c| *c) => return,
        }
    }
}

/// Publishes every event committed after `last`, advancing it.
async fn publish_new(store: &Store, live: &Live, last: &mut i64) -> Result<(), DbError> {
    // With no stream joined, reading and encoding every event (on every replica, for every
    // commit of any replica) would be work for nobody: the newest id is enough. Ids become
    // visible in commit order (`store/mod.rs`, APPEND_LOCK), so nothing at or below it can
    // still appear.
    if live.idle() {
        let newest = store.event_last_seq().await?;
        if live.skip_to(newest) {
            *last = newest;
            return Ok(());
        }
        if newest <= *last {
            return Ok(());
        }
    }
    loop {
        let page = store.events_after(*last, TAIL_PAGE).await?;
        let more = page.len() as i64 == TAIL_PAGE;
        for e in &page {
            *last = e.seq;
            live.publish(Arc::new(Encoded::new(e)));
        }
        if !more {
            return Ok(());
        }
    }
}

async fn listen(url: &str) -> Result<PgListener, DbError> {
    let mut listener = PgListener::connect(url).await?;
    // Reconnects happen in `relay_notifications`, where a lost connection wakes the reader.
    listener.eager_reconnect(false);
    listener.listen(EVENTS_CHANNEL).await?;
    Ok(listener)
}

/// Turns every notification into a wake-up of the reader; reconnects with backoff when the
/// connection drops, and wakes the reader then too, for what was sent meanwhile.
async fn relay_notifications(url: String, mut listener: Option<PgListener>, wake: Arc<Notify>) {
    let (first, most) = LISTEN_BACKOFF;
    let mut backoff = first;
    loop {
        let l = match listener.as_mut() {
            Some(l) => l,
            None => match listen(&url).await {
                Ok(l) => {
                    wake.notify_one();
                    listener.insert(l)
                }
                Err(e) => {
                    tracing::warn!(error = %e, retry_in = ?backoff, "LISTEN {EVENTS_CHANNEL} failed");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(most);
                    continue;
                }
            },
        };
        match l.try_recv().await {
            Ok(Some(_)) => {
                backoff = first;
                wake.notify_one();
            }
            // The connection was lost; the next call reconnects and listens again.
            Ok(None) => {
                tracing::warn!(retry_in = ?backoff, "the LISTEN connection was lost");
                wake.notify_one();
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(most);
            }
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?backoff, "listening for events failed");
                listener = None;
                wake.notify_one();
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(most);
            }
        }
    }
}
