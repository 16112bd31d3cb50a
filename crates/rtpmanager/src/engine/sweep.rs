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
//!
//! Signaling is known to be alive while it watches the session's events
//! (an open WatchEvents stream; a dead peer's connection is found by
//! HTTP/2 keep-alive): such a session may be silent for a reason the
//! engine cannot see (a call still ringing, whose caller sends nothing
//! yet; dial timeouts go up to 10 min), so it is left to its owner and
//! ended only after `rtp_hold_timeout`, like one on hold.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use switchboard_sip::sdp::Direction;
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

/// The rule, for one session at `now`; `watched`: signaling watches its
/// events.
fn action(
    st: &State,
    watched: bool,
    now: Instant,
    timeout: Duration,
    hold_timeout: Duration,
) -> Action {
    let silent = now.saturating_duration_since(st.last_rx);
    let on_hold = st.remote_direction != Direction::SendRecv;
    let limit = if watched || on_hold {
        hold_timeout
    } else {
        timeout.saturating_mul(2)
    };
    if silent >= limit {
        Action::Expire
    } else if st.expects_rtp()
        && now.saturating_duration_since(st.last_report.max(st.last_rx)) >= timeout
    {
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
            let watched = s.is_watched();
            let todo = {
                let mut st = lock(&s.state);
                let todo = action(&st, watched, now, timeout, hold_timeout);
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
        let removed = match sessions.get(&s.id) {
            Some(x) if Arc::ptr_eq(x, s) => sessions.remove(&s.id),
            _ => None,
        };
        inner.live.send_replace(sessions.len());
        removed
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

    #[test]
    fn timeouts_then_expiry() {
        let t = Duration::from_secs(60);
        let hold = Duration::from_secs(3600);
        let s = Duration::from_secs;
        use Direction::{Inactive, RecvOnly, SendOnly, SendRecv};
        let cases = [
            // (direction, watched, silent for, last report ago, want)
            (SendRecv, false, s(10), None, Action::Nothing),
            (SendRecv, false, s(60), None, Action::Report),
            (SendRecv, false, s(90), Some(s(30)), Action::Nothing),
            (SendRecv, false, s(119), Some(s(59)), Action::Nothing),
            (SendRecv, false, s(120), Some(s(60)), Action::Expire),
            // its signaling is alive: reported, left to it
            (SendRecv, true, s(120), Some(s(60)), Action::Report),
            (SendRecv, true, s(3599), Some(s(59)), Action::Nothing),
            (SendRecv, true, s(3600), Some(s(60)), Action::Expire),
            // on hold: the leg itself sends nothing, or may not
            (SendOnly, false, s(60), None, Action::Report),
            (SendOnly, false, s(120), Some(s(60)), Action::Report),
            (RecvOnly, false, s(120), None, Action::Nothing),
            (Inactive, false, s(3599), None, Action::Nothing),
            (Inactive, false, s(3600), None, Action::Expire),
            (RecvOnly, true, s(4000), None, Action::Expire),
        ];
        for (dir, watched, silent, reported, want) in cases {
            let now = Instant::now() + s(10_000);
            let mut st = State::new(Policy::SdpIp);
            st.remote_direction = dir;
            st.last_rx = now - silent;
            st.last_report = reported.map(|r| now - r).unwrap_or(st.last_rx);
            let got = action(&st, watched, now, t, hold);
            assert_eq!(got, want, "{dir:?} watched {watched} {silent:?}");
        }
    }
}
