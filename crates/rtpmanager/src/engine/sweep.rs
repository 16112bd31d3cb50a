//! Housekeeping once a second: RTP timeouts are reported, and sessions
//! nobody uses any more are ended by the engine itself.
//!
//! A leg that should send RTP and has been silent for `rtp_timeout` is
//! reported (an `RtpTimeout` event, again after each further period), so
//! signaling ends the call with a CDR. If signaling is gone (crashed,
//! partitioned) nobody hears that: after twice `rtp_timeout` the session
//! is ended here, so its ports return to the pool (as rtpengine's
//! `--timeout`). A leg on hold sends nothing by its own SDP; it is ended
//! after `rtp_hold_timeout` (rtpengine's `--silent-timeout`).

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use tracing::{info, warn};

use super::session::{Session, State};
use super::{EventKind, Inner, lock};

/// What one sweep does to one session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Nothing,
    /// Report an RTP timeout.
    Report,
    /// End the session.
    Expire,
}

/// The rule, for one session at `now`.
fn action(st: &State, now: Instant, timeout: Duration, hold_timeout: Duration) -> Action {
    let silent = now.saturating_duration_since(st.last_rx);
    if !st.expects_rtp() {
        return if silent >= hold_timeout {
            Action::Expire
        } else {
            Action::Nothing
        };
    }
    if silent >= timeout.saturating_mul(2) {
        Action::Expire
    } else if now.saturating_duration_since(st.last_report.max(st.last_rx)) >= timeout {
        Action::Report
    } else {
        Action::Nothing
    }
}

pub(super) async fn sweep(inner: Weak<Inner>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        if inner.shutdown.is_cancelled() {
            return;
        }
        let timeout = inner.config.rtp_timeout;
        let hold_timeout = inner.config.rtp_hold_timeout;
        let sessions: Vec<Arc<Session>> = lock(&inner.sessions).values().cloned().collect();
        let now = Instant::now();
        for s in sessions {
            let todo = {
                let mut st = lock(&s.state);
                let todo = action(&st, now, timeout, hold_timeout);
                if todo == Action::Report {
                    st.last_report = now;
                }
                todo
            };
            match todo {
                Action::Nothing => {}
                Action::Report => {
                    info!(session = %s.id, call_id = %s.call_id, "RTP timeout");
                    s.emit(EventKind::RtpTimeout {
                        seconds: timeout.as_secs() as u32,
                    });
                }
                Action::Expire => expire(&inner, &s),
            }
        }
    }
}

fn expire(inner: &Inner, s: &Arc<Session>) {
    // only if still there: a destroy may have come in meanwhile
    let removed = {
        let mut sessions = lock(&inner.sessions);
        match sessions.get(&s.id) {
            Some(x) if Arc::ptr_eq(x, s) => sessions.remove(&s.id),
            _ => None,
        }
    };
    if let Some(s) = removed {
        warn!(session = %s.id, call_id = %s.call_id, leg = %s.leg, "session ended by the RTP manager: no RTP and nobody ended it");
        inner
            .counters
            .sessions_expired
            .fetch_add(1, Ordering::Relaxed);
        s.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_media::learning::Policy;
    use switchboard_sip::sdp::Direction;

    #[test]
    fn timeouts_then_expiry() {
        let t = Duration::from_secs(60);
        let hold = Duration::from_secs(3600);
        let s = Duration::from_secs;
        let cases = [
            // (direction, silent for, last report ago, want)
            (Direction::SendRecv, s(10), None, Action::Nothing),
            (Direction::SendRecv, s(60), None, Action::Report),
            (Direction::SendRecv, s(90), Some(s(30)), Action::Nothing),
            (Direction::SendRecv, s(119), Some(s(59)), Action::Nothing),
            (Direction::SendRecv, s(120), Some(s(60)), Action::Expire),
            (Direction::SendOnly, s(120), None, Action::Expire),
            (Direction::RecvOnly, s(120), None, Action::Nothing),
            (Direction::Inactive, s(3599), None, Action::Nothing),
            (Direction::Inactive, s(3600), None, Action::Expire),
            (Direction::RecvOnly, s(4000), None, Action::Expire),
        ];
        for (dir, silent, reported, want) in cases {
            let now = Instant::now() + s(10_000);
            let mut st = State::new(None, Policy::SdpIp);
            st.remote_direction = dir;
            st.last_rx = now - silent;
            st.last_report = reported.map(|r| now - r).unwrap_or(st.last_rx);
            assert_eq!(action(&st, now, t, hold), want, "{dir:?} {silent:?}");
        }
    }
}
