//! Call counters and the call-setup histogram for `/metrics`.

use std::sync::atomic::{AtomicU64, Ordering};

/// Upper bounds of the call-setup histogram buckets, microseconds.
pub const SETUP_BUCKETS_US: [u64; 10] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000,
];

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct CallStats {
    pub started: AtomicU64,
    pub answered: AtomicU64,
    pub failed: AtomicU64,
    /// INVITE in → first B-leg INVITE out, cumulative per bucket of
    /// [`SETUP_BUCKETS_US`], then the overflow bucket.
    pub setup: [AtomicU64; SETUP_BUCKETS_US.len() + 1],
    pub setup_sum_us: AtomicU64,
    /// Call changes the watcher's queue had no room for.
    pub notes_dropped: AtomicU64,
}

impl CallStats {
    pub(crate) fn record_setup(&self, us: u64) {
        let i = SETUP_BUCKETS_US
            .iter()
            .position(|b| us <= *b)
            .unwrap_or(SETUP_BUCKETS_US.len());
        self.setup[i].fetch_add(1, Ordering::Relaxed);
        self.setup_sum_us.fetch_add(us, Ordering::Relaxed);
    }

    /// Prometheus text for the call counters and the setup histogram.
    pub fn render(&self, out: &mut String, live: usize) {
        use std::fmt::Write;
        let c = |a: &AtomicU64| a.load(Ordering::Relaxed);
        for (name, help, v) in [
            (
                "switchboard_calls_started_total",
                "Calls routed (authenticated INVITEs).",
                c(&self.started),
            ),
            (
                "switchboard_calls_answered_total",
                "Calls that were answered.",
                c(&self.answered),
            ),
            (
                "switchboard_calls_failed_total",
                "Calls that ended unanswered.",
                c(&self.failed),
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP switchboard_calls_live Calls in progress.\n# TYPE switchboard_calls_live gauge\nswitchboard_calls_live {live}"
        );
        let name = "switchboard_call_setup_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} INVITE received to first B-leg INVITE sent.\n# TYPE {name} histogram"
        );
        let mut cum = 0;
        for (i, b) in SETUP_BUCKETS_US.iter().enumerate() {
            cum += c(&self.setup[i]);
            let _ = writeln!(out, "{name}_bucket{{le=\"{}\"}} {cum}", *b as f64 / 1e6);
        }
        cum += c(&self.setup[SETUP_BUCKETS_US.len()]);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cum}");
        let _ = writeln!(out, "{name}_sum {}", c(&self.setup_sum_us) as f64 / 1e6);
        let _ = writeln!(out, "{name}_count {cum}");
    }
}

impl super::Calls {
    /// The B2BUA's part of `/metrics`: calls, the router, CDR delivery.
    pub fn render_metrics(&self, out: &mut String) {
        use crate::metrics::metric;
        self.stats.render(out, self.live_count());
        let c = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let dialogs = self.dialogs.lock().map(|d| d.len()).unwrap_or(0);
        let invites = self.invites.lock().map(|d| d.len()).unwrap_or(0);
        let cdr = &self.cdrs.stats;
        for (name, kind, help, v) in [
            (
                "switchboard_call_dialogs",
                "gauge",
                "Dialogs the B2BUA routes requests to.",
                dialogs as u64,
            ),
            (
                "switchboard_call_invites_pending",
                "gauge",
                "Callers' INVITEs a CANCEL can still reach.",
                invites as u64,
            ),
            (
                "switchboard_call_requests_no_dialog_total",
                "counter",
                "In-dialog requests that matched no dialog's tags (481).",
                c(&self.router.no_dialog),
            ),
            (
                "switchboard_call_mailbox_full_total",
                "counter",
                "Requests refused with 503 because their call's mailbox was full.",
                c(&self.router.mailbox_full),
            ),
            (
                "switchboard_calls_over_capacity_total",
                "counter",
                "New calls refused by MAX_CALLS.",
                c(&self.router.over_capacity),
            ),
            (
                "switchboard_cdrs_written_total",
                "counter",
                "CDRs stored.",
                c(&cdr.written),
            ),
            (
                "switchboard_cdr_write_failures_total",
                "counter",
                "CDR writes the store refused (spooled and retried).",
                c(&cdr.write_failures),
            ),
            (
                "switchboard_cdrs_spooled_total",
                "counter",
                "CDRs written to the spool while the store was down.",
                c(&cdr.spooled),
            ),
            (
                "switchboard_cdr_spool",
                "gauge",
                "CDRs waiting in the spool.",
                c(&cdr.spool_len),
            ),
            (
                "switchboard_cdrs_dropped_total",
                "counter",
                "CDRs lost: the spool was full, or an unrouted request's CDR met a full queue.",
                c(&cdr.dropped),
            ),
        ] {
            metric(out, name, kind, help, v);
        }
        if let Some(s) = self.cdrs.stream_stats() {
            for (name, help, v) in [
                (
                    "switchboard_cdr_stream_published_total",
                    "CDRs JetStream acked from this replica (new ones).",
                    s.published,
                ),
                (
                    "switchboard_cdr_stream_publish_failures_total",
                    "CDR publishes to JetStream that failed (spooled and retried).",
                    s.publish_failures,
                ),
                (
                    "switchboard_cdr_stream_stored_total",
                    "CDRs this replica's consumer stored in the database.",
                    s.stored,
                ),
                (
                    "switchboard_cdr_stream_store_duplicates_total",
                    "CDRs delivered again that the database already had.",
                    s.store_duplicates,
                ),
                (
                    "switchboard_cdr_stream_store_failures_total",
                    "Database writes of CDR batches that failed (delivered again later).",
                    s.store_failures,
                ),
                (
                    "switchboard_cdr_stream_malformed_total",
                    "Messages on the CDR subject that are not a CDR (terminated).",
                    s.malformed,
                ),
            ] {
                metric(out, name, "counter", help, v);
            }
        }
    }
}
