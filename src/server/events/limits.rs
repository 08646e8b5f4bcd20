//! How many event streams may be open, and the permits that count them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

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

pub(super) struct Streams {
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
            crate::server::memory::release_free_memory();
        }
    }
}

impl Streams {
    pub(super) fn new(limits: StreamLimits) -> Streams {
        Streams {
            limits,
            open: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, OpenStreams> {
        // The counts are updated in single statements; a panic elsewhere cannot tear them.
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A place for one more stream of `operator`'s, if the limits allow it.
    pub(super) fn open(self: &Arc<Self>, operator: &str) -> Result<StreamPermit, StreamRefused> {
        let limits = self.limits;
        let mut open = self.lock();
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
            streams: self.clone(),
            operator: operator.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_counted_per_operator_and_in_total_and_given_back() {
        let streams = Arc::new(Streams::new(StreamLimits {
            per_operator: 2,
            total: 3,
        }));
        let a1 = streams.open("alice").expect("first");
        let _a2 = streams.open("alice").expect("second");
        assert_eq!(
            streams.open("alice").err(),
            Some(StreamRefused::PerOperator(2))
        );
        let _b1 = streams.open("bob").expect("bob's first");
        assert_eq!(streams.open("carol").err(), Some(StreamRefused::Total(3)));
        drop(a1);
        let _c1 = streams.open("carol").expect("a place was given back");
        assert_eq!(streams.open("alice").err(), Some(StreamRefused::Total(3)));
    }

    #[test]
    fn the_total_follows_the_connection_cap_unless_configured() {
        assert_eq!(StreamLimits::for_connections(200, None).total, 100);
        assert_eq!(StreamLimits::for_connections(20_000, None).total, 512);
        assert_eq!(StreamLimits::for_connections(200, Some(7)).total, 7);
    }
}
