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
