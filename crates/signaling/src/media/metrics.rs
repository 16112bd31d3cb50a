//! The media families of /metrics.

use std::fmt::Write;
use std::sync::atomic::Ordering;

use switchboard_rtpmanager_api::v1 as pb;

use super::discovery::Skip;
use super::{Client, EndpointState, MediaPool};
use crate::metrics::metric;

impl MediaPool {
    /// Appends the media families to the Prometheus text: signaling's own
    /// counters, and each manager's (the embedded one's now, a remote
    /// one's as of its last health check).
    pub fn render_metrics(&self, out: &mut String) {
        let c = &self.counters;
        let l = Ordering::Relaxed;
        for (name, kind, help, v) in [
            (
                "switchboard_media_destroy_retries_total",
                "counter",
                "Session destroys retried after the RTP manager failed to answer.",
                c.destroy_retries.load(l),
            ),
            (
                "switchboard_media_destroy_abandoned_total",
                "counter",
                "Session destroys given up (left to the RTP manager's expiry).",
                c.destroy_abandoned.load(l),
            ),
            (
                "switchboard_media_destroy_pending",
                "gauge",
                "Session destroys being retried now.",
                c.destroy_pending.load(l),
            ),
            (
                "switchboard_media_watch_resubscribes_total",
                "counter",
                "Session event streams subscribed again after an error.",
                c.watch_resubscribes.load(l),
            ),
        ] {
            metric(out, name, kind, help, v);
        }
        let members = self.members();
        let name = "switchboard_rtpmanager_members";
        let _ = writeln!(
            out,
            "# HELP {name} RTP managers in the pool, by what their endpoint says (members not found through RTPMANAGER_SERVICE are ready).\n# TYPE {name} gauge"
        );
        for state in EndpointState::ALL {
            let n = members
                .iter()
                .filter(|m| m.endpoint_state() == state)
                .count();
            let _ = writeln!(out, "{name}{{state=\"{}\"}} {n}", state.as_str());
        }
        let d = self.discovery_stats();
        metric(
            out,
            "switchboard_rtpmanager_discovery_watch_restarts_total",
            "counter",
            "EndpointSlice lists and watches of RTP manager discovery started again (a watch that ended or failed, a 410 Gone).",
            d.watch_restarts.load(l),
        );
        let name = "switchboard_rtpmanager_discovery_endpoints_skipped";
        let _ = writeln!(
            out,
            "# HELP {name} RTP manager endpoints left out of the pool now, by reason (over_cap: the pool is full).\n# TYPE {name} gauge"
        );
        for why in Skip::ALL {
            let _ = writeln!(
                out,
                "{name}{{reason=\"{}\"}} {}",
                why.as_str(),
                d.skipped[why as usize].load(l)
            );
        }
        let figures: Vec<(&str, pb::HealthResponse)> = members
            .iter()
            .filter_map(|m| {
                let h = match &m.client {
                    Client::Local(svc) => {
                        let s = svc.engine().stats();
                        Some(pb::HealthResponse {
                            rtp_foreign_dropped: s.foreign_dropped,
                            sessions_expired: s.sessions_expired,
                            events_dropped: s.events_dropped,
                            recording_dropped: s.recording_dropped,
                            ..Default::default()
                        })
                    }
                    Client::Remote(_) => m
                        .last_health
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .clone(),
                };
                h.map(|h| (m.name.as_str(), h))
            })
            .collect();
        type Field = fn(&pb::HealthResponse) -> u64;
        let families: [(&str, &str, Field); 4] = [
            (
                "switchboard_rtpmanager_foreign_dropped_total",
                "RTP/RTCP packets dropped by an RTP manager: from an address the leg's source is not locked to.",
                |h| h.rtp_foreign_dropped,
            ),
            (
                "switchboard_rtpmanager_sessions_expired_total",
                "Sessions an RTP manager ended itself (no RTP and nobody ended them).",
                |h| h.sessions_expired,
            ),
            (
                "switchboard_rtpmanager_events_dropped_total",
                "Session events an RTP manager dropped for a reader that was behind.",
                |h| h.events_dropped,
            ),
            (
                "switchboard_rtpmanager_recording_dropped_total",
                "Recorded packets an RTP manager dropped because its writer was behind.",
                |h| h.recording_dropped,
            ),
        ];
        for (name, help, field) in families {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for (manager, h) in &figures {
                let _ = writeln!(out, "{name}{{manager=\"{manager}\"}} {}", field(h));
            }
        }
    }
}
