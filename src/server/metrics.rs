//! Counters for `/metrics`, in the Prometheus text format.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

#[derive(Default)]
pub struct Metrics {
    pub changes_requested: Counter,
    pub approvals: Counter,
    pub executed: Counter,
    pub failed: Counter,
    pub responses_2xx: Counter,
    pub responses_4xx: Counter,
    pub responses_5xx: Counter,
    pub sse_connections: Counter,
    pub samples: Counter,
    pub webhook_deliveries: Counter,
    pub webhook_failures: Counter,
}

impl Metrics {
    pub fn count_status(&self, status: u16) {
        match status {
            200..=299 => self.responses_2xx.inc(),
            400..=499 => self.responses_4xx.inc(),
            500..=599 => self.responses_5xx.inc(),
            _ => {}
        }
    }

    /// `commands` is (running, waiting for a place) (`changes::Executions::load`).
    pub fn render(&self, pending: i64, last_event_seq: i64, commands: (usize, usize)) -> String {
        let mut out = String::new();
        let mut counter = |name: &str, help: &str, labels: &str, v: u64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            let _ = writeln!(out, "{name}{labels} {v}");
        };
        counter(
            "commandbridge_changes_requested_total",
            "Changes recorded.",
            "",
            self.changes_requested.get(),
        );
        counter(
            "commandbridge_approvals_total",
            "Approvals recorded.",
            "",
            self.approvals.get(),
        );
        counter(
            "commandbridge_executions_total",
            "Changes whose command succeeded.",
            "{outcome=\"executed\"}",
            self.executed.get(),
        );
        counter(
            "commandbridge_execution_failures_total",
            "Changes whose command failed.",
            "",
            self.failed.get(),
        );
        counter(
            "commandbridge_http_responses_2xx_total",
            "HTTP responses with a 2xx status.",
            "",
            self.responses_2xx.get(),
        );
        counter(
            "commandbridge_http_responses_4xx_total",
            "HTTP responses with a 4xx status.",
            "",
            self.responses_4xx.get(),
        );
        counter(
            "commandbridge_http_responses_5xx_total",
            "HTTP responses with a 5xx status.",
            "",
            self.responses_5xx.get(),
        );
        counter(
            "commandbridge_sse_connections_total",
            "Event streams opened.",
            "",
            self.sse_connections.get(),
        );
        counter(
            "commandbridge_verification_samples_total",
            "Verification samples stored.",
            "",
            self.samples.get(),
        );
        counter(
            "commandbridge_webhook_deliveries_total",
            "Ticket webhook messages delivered.",
            "",
            self.webhook_deliveries.get(),
        );
        counter(
            "commandbridge_webhook_failures_total",
            "Ticket webhook attempts that failed.",
            "",
            self.webhook_failures.get(),
        );
        let _ = writeln!(
            out,
            "# HELP commandbridge_changes_pending Changes waiting for approval.\n\
             # TYPE commandbridge_changes_pending gauge\ncommandbridge_changes_pending {pending}"
        );
        let _ = writeln!(
            out,
            "# HELP commandbridge_last_event_seq Sequence number of the newest event.\n\
             # TYPE commandbridge_last_event_seq gauge\ncommandbridge_last_event_seq {last_event_seq}"
        );
        let (running, waiting) = commands;
        let _ = writeln!(
            out,
            "# HELP commandbridge_commands_running Commands of changes running now on this server.\n\
             # TYPE commandbridge_commands_running gauge\ncommandbridge_commands_running {running}\n\
             # HELP commandbridge_commands_waiting Changes executing that wait for a place to run \
             their command ([server.quotas] commands_at_once).\n\
             # TYPE commandbridge_commands_waiting gauge\ncommandbridge_commands_waiting {waiting}"
        );
        if let Some(bytes) = super::memory::heap_in_use() {
            let _ = writeln!(
                out,
                "# HELP commandbridge_heap_in_use_bytes Heap the server holds (malloc's count, \
                 without what it keeps free for reuse).\n\
                 # TYPE commandbridge_heap_in_use_bytes gauge\ncommandbridge_heap_in_use_bytes {bytes}"
            );
        }
        out
    }
}
