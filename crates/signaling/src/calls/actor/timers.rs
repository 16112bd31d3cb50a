//! The call's own timers: 2xx retransmissions until their ACK, RFC 4028
//! session timers per leg, and `MAX_CALL_DURATION`. The next deadline is
//! computed from the state each time the actor waits (a handful of
//! values), so there is nothing to cancel or re-arm.

use tokio::time::Instant;
use tracing::info;

use super::relay::Refresh;
use super::{Call, Phase, Side};
use crate::calls::LegId;
use crate::calls::leg::{Due, Inbound};
use crate::calls::session_timer::TimerDue;

impl Call {
    /// The legs whose session timer runs now.
    fn timed_legs(&self) -> Vec<LegId> {
        let mut legs = Vec::with_capacity(2);
        if self.a.state.is_answered() && self.a.peer.timer.is_some() {
            legs.push(LegId::A);
        }
        if let Phase::Bridged(w) = self.phase
            && self.forks[w].peer.timer.is_some()
        {
            legs.push(LegId::B(w));
        }
        legs
    }

    /// When the actor must next look at its timers.
    pub(super) fn next_timer(&self) -> Option<Instant> {
        if self.phase == Phase::Over {
            return None;
        }
        let mut next = self.deadline;
        if let Inbound::Accepted(r) = &self.a.state {
            next = next.min(r.at());
        }
        for u in &self.unacked {
            next = next.min(u.resend.at());
        }
        for leg in self.timed_legs() {
            if let Some(t) = self.peer(leg).and_then(|p| p.timer) {
                next = next.min(t.at);
            }
        }
        Some(next)
    }

    pub(super) async fn on_timers(&mut self) {
        let now = Instant::now();
        if now >= self.deadline {
            info!(call = %self.id, "MAX_CALL_DURATION reached; ending the call");
            return self.end_call(Side::System, "Max Call Duration", 408, None);
        }
        if let Inbound::Accepted(mut r) = self.a.state {
            match r.due(now) {
                Due::Resend => {
                    if let Some(ok) = &self.a.ok {
                        self.ep.send_raw(&self.a.source, ok.clone());
                    }
                    self.a.state = Inbound::Accepted(r);
                }
                Due::GiveUp => {
                    info!(call = %self.id, "no ACK from the caller; ending the call");
                    return self.end_call(Side::System, "No ACK", 408, None);
                }
                Due::Nothing => {}
            }
        }
        let mut gave_up = None;
        for u in &mut self.unacked {
            match u.resend.due(now) {
                Due::Resend => {
                    let to = match u.leg {
                        LegId::A => Some(self.a.peer.dialog.destination()),
                        LegId::B(i) => self.forks.get(i).map(|f| f.peer.dialog.destination()),
                    };
                    if let Some(to) = to {
                        self.ep.send_raw(&to, u.bytes.clone());
                    }
                }
                Due::GiveUp => gave_up = Some(u.leg),
                Due::Nothing => {}
            }
        }
        if let Some(leg) = gave_up {
            info!(call = %self.id, ?leg, "no ACK for a re-INVITE's 2xx; ending the call");
            return self.end_call(Side::System, "No ACK", 408, None);
        }
        for leg in self.timed_legs() {
            let Some(p) = self.peer(leg) else { continue };
            let Some(t) = p.timer else { continue };
            match t.due(now, p.refreshing) {
                Some(TimerDue::Refresh) => {
                    if let Some(t) = self.peer_mut(leg).and_then(|p| p.timer.as_mut()) {
                        t.refresh_sent(now);
                    }
                    match self.send_refresh(leg).await {
                        Refresh::Sent => {}
                        Refresh::Busy => {
                            if let Some(t) = self.peer_mut(leg).and_then(|p| p.timer.as_mut()) {
                                t.at = now + std::time::Duration::from_secs(2);
                            }
                        }
                        Refresh::Impossible => {
                            info!(call = %self.id, ?leg, "this leg cannot be refreshed; its session timer stops");
                            if let Some(p) = self.peer_mut(leg) {
                                p.timer = None;
                            }
                        }
                    }
                }
                Some(TimerDue::Expired) => {
                    info!(call = %self.id, ?leg, "session expired without refresh; ending the call");
                    let side = if leg == LegId::A {
                        Side::Caller
                    } else {
                        Side::Callee
                    };
                    return self.end_call(side, "Session Expired", 408, None);
                }
                None => {}
            }
        }
    }
}
