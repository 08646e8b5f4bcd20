//! The server's clock: real time, or real time shifted to start at a chosen instant (`--now`).

use chrono::{DateTime, Duration, Utc};

#[derive(Debug, Clone, Copy, Default)]
pub struct Clock {
    offset: Duration,
}

impl Clock {
    pub fn real() -> Clock {
        Clock::default()
    }

    /// A clock that reads `start` now and runs on in real time from there.
    pub fn starting_at(start: DateTime<Utc>) -> Clock {
        Clock {
            offset: start - Utc::now(),
        }
    }

    pub fn now(&self) -> DateTime<Utc> {
        Utc::now() + self.offset
    }

    pub fn is_simulated(&self) -> bool {
        self.offset != Duration::zero()
    }
}
