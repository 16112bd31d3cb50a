//! Message counters and the Prometheus text exposition.
//!
//! Counters are plain atomics in fixed arrays (methods by index, status
//! codes 100–699 by value), so counting on the SIP path is one relaxed
//! increment with no lock and no allocation.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

/// Methods with their own counter; anything else counts as `OTHER`.
pub const METHODS: [&str; 15] = [
    "REGISTER",
    "OPTIONS",
    "INVITE",
    "ACK",
    "BYE",
    "CANCEL",
    "INFO",
    "MESSAGE",
    "NOTIFY",
    "PRACK",
    "PUBLISH",
    "REFER",
    "SUBSCRIBE",
    "UPDATE",
    "OTHER",
];

fn method_index(method: &str) -> usize {
    METHODS
        .iter()
        .position(|m| *m == method)
        .unwrap_or(METHODS.len() - 1)
}

/// A counter per method.
#[derive(Debug, Default)]
pub struct ByMethod([AtomicU64; METHODS.len()]);

impl ByMethod {
    pub fn inc(&self, method: &str) {
        self.0[method_index(method)].fetch_add(1, Ordering::Relaxed);
    }
    pub fn get(&self, method: &str) -> u64 {
        self.0[method_index(method)].load(Ordering::Relaxed)
    }
    fn write(&self, out: &mut String, name: &str, extra: &str) {
        for (i, m) in METHODS.iter().enumerate() {
            let v = self.0[i].load(Ordering::Relaxed);
            if v > 0 {
                let _ = writeln!(out, "{name}{{method=\"{m}\"{extra}}} {v}");
            }
        }
    }
}

/// A counter per status code 100..=699.
#[derive(Debug)]
pub struct ByCode(Box<[AtomicU64]>);

impl Default for ByCode {
    fn default() -> Self {
        Self((100..700).map(|_| AtomicU64::new(0)).collect())
    }
}

impl ByCode {
    pub fn inc(&self, code: u16) {
        if let Some(c) = self.0.get(usize::from(code).wrapping_sub(100)) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }
    pub fn get(&self, code: u16) -> u64 {
        self.0
            .get(usize::from(code).wrapping_sub(100))
            .map(|c| c.load(Ordering::Relaxed))
            .unwrap_or(0)
    }
    fn write(&self, out: &mut String, name: &str) {
        for (i, c) in self.0.iter().enumerate() {
            let v = c.load(Ordering::Relaxed);
            if v > 0 {
                let _ = writeln!(out, "{name}{{code=\"{}\"}} {v}", i + 100);
            }
        }
    }
}

/// The SIP message counters of one signaling node.
#[derive(Debug, Default)]
pub struct SipMetrics {
    pub requests_in: ByMethod,
    pub responses_out: ByCode,
    pub responses_in: ByCode,
    pub requests_out: ByMethod,
    /// Unparseable messages answered with 400.
    pub malformed_answered: AtomicU64,
    /// Unparseable messages dropped (no response could be formed).
    pub malformed_dropped: AtomicU64,
    /// Requests dropped on purpose (blocked sources with the silent policy).
    pub dropped: AtomicU64,
    /// Responses matching no client transaction.
    pub stray_responses: AtomicU64,
}

/// A counter family: name, help, and how to write its labelled samples.
type Family<'a> = (&'static str, &'static str, &'a dyn Fn(&mut String, &str));

/// Writes one metric with its HELP and TYPE lines.
pub fn metric(out: &mut String, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
    );
}

impl SipMetrics {
    /// Appends the SIP message families.
    pub fn render(&self, out: &mut String) {
        let families: [Family<'_>; 4] = [
            (
                "switchboard_sip_requests_received_total",
                "SIP requests received, by method.",
                &|o, n| self.requests_in.write(o, n, ""),
            ),
            (
                "switchboard_sip_responses_sent_total",
                "SIP responses sent, by status code.",
                &|o, n| self.responses_out.write(o, n),
            ),
            (
                "switchboard_sip_responses_received_total",
                "SIP responses received, by status code.",
                &|o, n| self.responses_in.write(o, n),
            ),
            (
                "switchboard_sip_requests_sent_total",
                "SIP requests sent, by method.",
                &|o, n| self.requests_out.write(o, n, ""),
            ),
        ];
        for (name, help, write) in families {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            write(out, name);
        }
        let l = Ordering::Relaxed;
        metric(
            out,
            "switchboard_sip_malformed_answered_total",
            "counter",
            "Malformed requests answered with 400.",
            self.malformed_answered.load(l),
        );
        metric(
            out,
            "switchboard_sip_malformed_dropped_total",
            "counter",
            "Malformed messages dropped without an answer.",
            self.malformed_dropped.load(l),
        );
        metric(
            out,
            "switchboard_sip_dropped_total",
            "counter",
            "Requests dropped by policy (blocked sources).",
            self.dropped.load(l),
        );
        metric(
            out,
            "switchboard_sip_stray_responses_total",
            "counter",
            "Responses that matched no client transaction.",
            self.stray_responses.load(l),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_renders() {
        let m = SipMetrics::default();
        m.requests_in.inc("REGISTER");
        m.requests_in.inc("REGISTER");
        m.requests_in.inc("FOO");
        m.responses_out.inc(401);
        m.responses_out.inc(99); // out of range: ignored, no panic
        m.responses_out.inc(700);
        assert_eq!(m.requests_in.get("REGISTER"), 2);
        assert_eq!(m.requests_in.get("OTHER"), 1);
        assert_eq!(m.responses_out.get(401), 1);
        let mut s = String::new();
        m.render(&mut s);
        assert!(s.contains("switchboard_sip_requests_received_total{method=\"REGISTER\"} 2\n"));
        assert!(s.contains("switchboard_sip_responses_sent_total{code=\"401\"} 1\n"));
        assert!(s.contains("# TYPE switchboard_sip_malformed_dropped_total counter\n"));
    }
}
