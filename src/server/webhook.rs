//! Delivers the ticket webhook's outbox: every outcome and escalation is POSTed as JSON until
//! the receiver answers 2xx, with exponential backoff, surviving restarts (the outbox is a
//! table). Each message carries `Idempotency-Key: cb-outbox-<id>`, so a receiver that answered
//! but whose answer was lost can tell a retry from a new message.

use crate::server::AppState;
use chrono::Duration;
use std::time::Duration as StdDuration;

/// The longest wait between two attempts at one message.
pub const MAX_BACKOFF_SECS: i64 = 300;

/// Messages taken from the outbox at a time.
const BATCH: i64 = 10;

pub fn backoff(attempts: i64) -> Duration {
    Duration::seconds(1i64 << attempts.clamp(0, 12)).min(Duration::seconds(MAX_BACKOFF_SECS))
}

pub async fn run(state: AppState, url: String) {
    let http = match reqwest::Client::builder()
        .timeout(StdDuration::from_secs(10))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "the webhook sender cannot build its HTTP client");
            return;
        }
    };
    loop {
        let now = state.clock.now();
        // Held for as long as a batch can take to send (10 s per message), then retried by
        // whichever server gets there if this one died meanwhile.
        let hold = now + Duration::seconds(10 * BATCH + 60);
        match state.store.outbox_claim(now, hold, BATCH).await {
            Ok(batch) => {
                for msg in batch {
                    let sent = http
                        .post(&url)
                        .header("content-type", "application/json")
                        .header("idempotency-key", format!("cb-outbox-{}", msg.id))
                        .header("x-commandbridge-event", msg.kind.clone())
                        .body(msg.payload.clone())
                        .send()
                        .await;
                    let result = match sent {
                        Ok(r) if r.status().is_success() => Ok(()),
                        Ok(r) => Err(format!("the receiver answered {}", r.status())),
                        Err(e) => Err(format!("the receiver is unreachable: {e}")),
                    };
                    let now = state.clock.now();
                    let stored = match &result {
                        Ok(()) => {
                            state.metrics.webhook_deliveries.inc();
                            state.store.outbox_delivered(msg.id, now).await
                        }
                        Err(why) => {
                            state.metrics.webhook_failures.inc();
                            tracing::warn!(message = msg.id, attempts = msg.attempts + 1, error = %why, "ticket webhook delivery failed");
                            state
                                .store
                                .outbox_failed(msg.id, now + backoff(msg.attempts), why)
                                .await
                        }
                    };
                    if let Err(e) = stored {
                        tracing::warn!(error = %e, "recording a webhook delivery failed");
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "reading the webhook outbox failed"),
        }
        let next = state.store.outbox_next_due().await.ok().flatten();
        let wait = next
            .map(|t| {
                (t - state.clock.now())
                    .to_std()
                    .unwrap_or(StdDuration::ZERO)
            })
            .unwrap_or(StdDuration::from_secs(60))
            .min(StdDuration::from_secs(60));
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = state.outbox.notified() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_five_minutes() {
        assert_eq!(backoff(0), Duration::seconds(1));
        assert_eq!(backoff(3), Duration::seconds(8));
        assert_eq!(backoff(20), Duration::seconds(MAX_BACKOFF_SECS));
    }
}
