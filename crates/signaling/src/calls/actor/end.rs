//! How a call ends: one place that hangs up every leg, answers what is
//! still open, and writes the CDR.

use bytes::Bytes;
use switchboard_sip::message::Method;
use switchboard_store::Cdr;
use tracing::info;

use super::caller::decline_sdp;
use super::{Call, Pending, Phase, now_ms};
use crate::calls::LegId;

/// Who ended the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(in crate::calls) enum Side {
    Caller,
    Callee,
    #[default]
    System,
}

impl Side {
    fn as_str(self) -> &'static str {
        match self {
            Side::Caller => "caller",
            Side::Callee => "callee",
            Side::System => "system",
        }
    }
}

/// The CDR's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(in crate::calls) enum Disposition {
    Answered,
    Busy,
    NoAnswer,
    Cancelled,
    #[default]
    Failed,
}

impl Disposition {
    fn as_str(self) -> &'static str {
        match self {
            Disposition::Answered => "answered",
            Disposition::Busy => "busy",
            Disposition::NoAnswer => "no_answer",
            Disposition::Cancelled => "cancelled",
            Disposition::Failed => "failed",
        }
    }

    /// The outcome of an unanswered call refused with `code`.
    fn of_failure(code: u16) -> Self {
        match code {
            487 => Disposition::Cancelled,
            486 | 600 => Disposition::Busy,
            408 | 480 => Disposition::NoAnswer,
            _ => Disposition::Failed,
        }
    }
}

/// What the CDR says about the end.
#[derive(Debug, Default)]
pub(in crate::calls) struct Ending {
    pub(in crate::calls) disposition: Disposition,
    pub(in crate::calls) code: Option<u16>,
    pub(in crate::calls) reason: Option<String>,
    pub(in crate::calls) side: Side,
}

/// The CDR's media counters.
pub(in crate::calls) struct MediaStats {
    pub(in crate::calls) sent: i64,
    pub(in crate::calls) received: i64,
    pub(in crate::calls) lost: i64,
    pub(in crate::calls) jitter_ms: f64,
    pub(in crate::calls) mos: Option<f64>,
    pub(in crate::calls) manager: String,
}

impl Call {
    /// Ends the call, once: the caller's open INVITE gets `code` (or, once
    /// answered, a BYE unless `by` is the caller), an answered callee a BYE
    /// unless it hung up itself, ringing forks a CANCEL, and every relayed
    /// request still open a 487.
    pub(in crate::calls) fn end_call(
        &mut self,
        side: Side,
        reason: &str,
        code: u16,
        by: Option<LegId>,
    ) {
        if self.phase == Phase::Over {
            return;
        }
        let answered = self.a.state.is_answered();
        if self.end.reason.is_none() {
            self.end.side = side;
            self.end.reason = Some(reason.to_owned());
            // an answered call ends with a BYE, which has no status code
            if !answered {
                self.end.code = Some(code);
                self.end.disposition = Disposition::of_failure(code);
            }
        }
        // the caller
        if self.is_originated() {
            if by != Some(LegId::A) {
                if !answered {
                    // the user we rang answered with an offer: complete its
                    // INVITE with an answer declining every stream first
                    let sdp = decline_sdp(&self.invite.body, &self.a.source);
                    let ack = self
                        .a
                        .peer
                        .dialog
                        .ack(1, sdp.as_deref().map(|s| ("application/sdp", s)));
                    self.ep
                        .send_raw(&self.a.peer.dialog.destination(), Bytes::from(ack));
                }
                self.send_in_dialog(LegId::A, &Method::Bye, None, &[], Pending::Ignore);
            }
        } else if self.a.state.is_open() {
            let bytes = self.a_response(code, reason_for(code, reason), None);
            if self.a.state.refuse(code) {
                self.calls.metrics.responses_out.inc(code);
                if let Some(tx) = &self.a.tx {
                    tx.respond(code, Bytes::from(bytes));
                }
            }
            self.forget_invite_key();
        } else if answered && by != Some(LegId::A) {
            self.send_in_dialog(LegId::A, &Method::Bye, None, &[], Pending::Ignore);
        }
        // the callees
        for i in 0..self.forks.len() {
            if self.forks[i].state == crate::calls::leg::Outbound::Answered {
                if by != Some(LegId::B(i)) {
                    self.bye_fork(i);
                }
                self.forks[i].state.hung_up();
            } else {
                self.cancel_fork(i);
            }
        }
        // requests relayed and still open: §15.1.2, answered 487
        let open: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, p)| matches!(p, Pending::Relay(_)))
            .map(|(id, _)| *id)
            .collect();
        for id in open {
            if let Some(Pending::Relay(r)) = self.pending.remove(&id) {
                self.calls.respond(&r.tx, &r.req, 487, "Request Terminated");
            }
        }
        self.unacked.clear();
        self.phase = Phase::Over;
        self.update_view(|v| v.state = "ending".into());
    }

    /// Hands the CDR to the writer (waiting for room when calls end faster
    /// than the store takes CDRs), then leaves the list of live calls: once
    /// a call is gone from it, its CDR is queued.
    pub(super) async fn finish(&mut self) {
        let end = now_ms();
        let ring_ms = self
            .ring_at
            .map(|r| self.answer_at.unwrap_or(end) - r)
            .filter(|d| *d >= 0);
        let talk_ms = self.answer_at.map(|a| end - a);
        let winner = self
            .forks
            .iter()
            .position(|f| f.state.final_code() == Some(200) && f.peer.dialog.remote_tag.is_some());
        let m = self.media_stats.as_ref();
        let cdr = Cdr {
            id: 0,
            call_id: self.id.clone(),
            sip_call_id: Some(self.invite.call_id.clone()),
            account_id: Some(self.account_id),
            caller: self
                .vars
                .get("caller_id")
                .cloned()
                .unwrap_or_else(|| self.caller.id.clone()),
            callee: self.destination.clone(),
            caller_name: self
                .vars
                .get("caller_name")
                .filter(|n| !n.is_empty())
                .cloned(),
            source: crate::calls::source_text(&self.a.source),
            invite_at: self.invite_at,
            ring_at: self.ring_at,
            answer_at: self.answer_at,
            end_at: Some(end),
            ring_ms,
            talk_ms,
            disposition: self.end.disposition.as_str().to_owned(),
            hangup_code: self.end.code.map(i64::from),
            hangup_reason: self.end.reason.clone(),
            hangup_side: Some(self.end.side.as_str().to_owned()),
            route_id: None,
            route: Some(self.route.id.clone()),
            caller_user: self.caller.user.clone(),
            callee_user: winner
                .and_then(|w| self.forks.get(w))
                .and_then(|f| f.user.clone())
                .or_else(|| self.dialled_user.clone()),
            node: Some(self.calls.node().to_owned()),
            rtp_sent: m.map(|m| m.sent),
            rtp_received: m.map(|m| m.received),
            rtp_lost: m.map(|m| m.lost),
            jitter_ms: m.map(|m| m.jitter_ms),
            mos: m.and_then(|m| m.mos),
            rtpmanager: m.map(|m| m.manager.clone()),
            created_at: 0,
        };
        info!(
            call = %self.id,
            sip_call_id = %self.invite.call_id,
            disposition = %cdr.disposition,
            route = %self.route.id,
            "call ended"
        );
        let (account, answered) = (
            cdr.account_id,
            self.end.disposition == Disposition::Answered,
        );
        self.calls.cdrs.send(cdr).await;
        self.calls.finished(&self.id, account, answered);
        // the caller's INVITE transaction is answered by now; dropping the
        // handle lets the layer finish it
        self.a.tx = None;
    }
}

/// The reason phrase for a failure code, unless the dialplan named one.
fn reason_for(code: u16, reason: &str) -> &str {
    if reason.is_empty() || reason == "BYE" {
        switchboard_sip::reason_phrase(code)
    } else {
        reason
    }
}
