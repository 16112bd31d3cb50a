//! Counters for `/metrics`: plain atomics, one relaxed increment per event.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::Error;

/// Failure reasons, in [`Error::metric_label`] terms.
const REASONS: [&str; 6] = [
    "unavailable",
    "timeout",
    "redis",
    "decode",
    "invalid",
    "too_many_contacts",
];

/// Counters shared by every clone of a [`crate::Shared`] and its tasks.
#[derive(Debug, Default)]
pub struct Stats {
    operations: AtomicU64,
    failures: [AtomicU64; REASONS.len()],
    connected: AtomicU64,
    reconnects: AtomicU64,
    published: AtomicU64,
    received: AtomicU64,
    malformed: AtomicU64,
    dropped: AtomicU64,
    subscriptions: AtomicU64,
}

/// A copy of the counters at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StatsSnapshot {
    /// Operations attempted against Redis (fast failures excluded).
    pub operations: u64,
    /// Failed operations, every reason together.
    pub failures: u64,
    /// Operations refused at once because Redis was known to be down.
    pub unavailable: u64,
    /// Operations that hit the response timeout.
    pub timeouts: u64,
    /// Whether the last probe succeeded.
    pub connected: bool,
    /// Connections established (the connection generation).
    pub reconnects: u64,
    /// Commands published to other replicas.
    pub commands_published: u64,
    /// Commands received and queued for the subscriber.
    pub commands_received: u64,
    /// Pub/sub payloads that were not a valid command (skipped).
    pub commands_malformed: u64,
    /// Commands dropped because the subscriber's queue was full.
    pub commands_dropped: u64,
    /// Pub/sub subscriptions currently established.
    pub subscriptions: u64,
}

impl Stats {
    pub(crate) fn op(&self) {
        self.operations.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts `e` and hands it back.
    pub(crate) fn failed(&self, e: Error) -> Error {
        let label = e.metric_label();
        if let Some(i) = REASONS.iter().position(|r| *r == label) {
            self.failures[i].fetch_add(1, Ordering::Relaxed);
        }
        e
    }

    pub(crate) fn set_connected(&self, up: bool) {
        self.connected.store(u64::from(up), Ordering::Relaxed);
    }

    pub(crate) fn reconnected(&self) {
        self.reconnects.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn published(&self) {
        self.published.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn received(&self) {
        self.received.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn malformed(&self) {
        self.malformed.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn dropped(&self) {
        self.dropped.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn subscribed(&self, up: bool) {
        if up {
            self.subscriptions.fetch_add(1, Ordering::Relaxed);
        } else {
            self.subscriptions.fetch_sub(1, Ordering::Relaxed);
        }
    }

    fn failures_for(&self, label: &str) -> u64 {
        REASONS
            .iter()
            .position(|r| *r == label)
            .map(|i| self.failures[i].load(Ordering::Relaxed))
            .unwrap_or(0)
    }

    /// The counters now.
    pub fn snapshot(&self) -> StatsSnapshot {
        let ld = |a: &AtomicU64| a.load(Ordering::Relaxed);
        StatsSnapshot {
            operations: ld(&self.operations),
            failures: self.failures.iter().map(ld).sum(),
            unavailable: self.failures_for("unavailable"),
            timeouts: self.failures_for("timeout"),
            connected: ld(&self.connected) == 1,
            reconnects: ld(&self.reconnects),
            commands_published: ld(&self.published),
            commands_received: ld(&self.received),
            commands_malformed: ld(&self.malformed),
            commands_dropped: ld(&self.dropped),
            subscriptions: ld(&self.subscriptions),
        }
    }

    /// Appends the Prometheus text exposition (`switchboard_redis_*`).
    pub fn render(&self, out: &mut String) {
        let s = self.snapshot();
        let mut one = |name: &str, kind: &str, help: &str, v: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}"
            );
        };
        one(
            "switchboard_redis_connected",
            "gauge",
            "Whether the shared-state Redis answered the last probe.",
            u64::from(s.connected),
        );
        one(
            "switchboard_redis_connections_total",
            "counter",
            "Redis connections established (the connection generation).",
            s.reconnects,
        );
        one(
            "switchboard_redis_operations_total",
            "counter",
            "Shared-state operations sent to Redis.",
            s.operations,
        );
        one(
            "switchboard_redis_commands_published_total",
            "counter",
            "Commands published to other replicas.",
            s.commands_published,
        );
        one(
            "switchboard_redis_commands_received_total",
            "counter",
            "Commands received from other replicas.",
            s.commands_received,
        );
        one(
            "switchboard_redis_commands_malformed_total",
            "counter",
            "Pub/sub payloads skipped as malformed.",
            s.commands_malformed,
        );
        one(
            "switchboard_redis_commands_dropped_total",
            "counter",
            "Commands dropped because the local queue was full.",
            s.commands_dropped,
        );
        one(
            "switchboard_redis_subscriptions",
            "gauge",
            "Pub/sub subscriptions currently established.",
            s.subscriptions,
        );
        let name = "switchboard_redis_failures_total";
        let _ = writeln!(
            out,
            "# HELP {name} Failed shared-state operations by reason.\n# TYPE {name} counter"
        );
        for (i, r) in REASONS.iter().enumerate() {
            let v = self.failures[i].load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}{{reason=\"{r}\"}} {v}");
        }
    }
}
