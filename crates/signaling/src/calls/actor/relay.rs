//! In-dialog requests on an answered call: relayed from one leg into the
//! other when bridged, answered here otherwise, with the offer/answer
//! rules of RFC 3261 §14 (491 on glare, 500 + Retry-After on overlap), a
//! rejected re-offer rolled back on the RTP manager, our 2xx to a relayed
//! re-INVITE resent until its ACK, and a CANCEL of a relayed re-INVITE
//! passed on only when it names that transaction.

use bytes::Bytes;
use switchboard_rtpmanager_api::v1 as pb;
use switchboard_sip::message::{Method, Request, Response};
use switchboard_sip::request::cancel_for;
use switchboard_sip::response::response;
use switchboard_sip::sdp::Direction;
use switchboard_sip_stack::dialog::our_contact;
use switchboard_sip_stack::transaction::ServerTx;
use tokio::time::Instant;
use tracing::info;

use super::anchor::is_sdp;
use super::{Call, Pending, Side};
use crate::calls::LegId;
use crate::calls::leg::{OfferRefusal, Resend};

/// A request relayed from one leg into the other, until its answer.
pub(in crate::calls) struct Relay {
    pub(in crate::calls) from: LegId,
    pub(in crate::calls) to: LegId,
    pub(in crate::calls) tx: ServerTx,
    pub(in crate::calls) req: Box<Request>,
    /// The request as we sent it (for its CANCEL).
    sent: Vec<u8>,
    /// Its CSeq in the other leg's dialog.
    cseq: u32,
    /// It holds the offer slots of both legs (a re-INVITE, or an UPDATE
    /// with an offer).
    offer_tx: bool,
    /// Anchored offers: the manager's answer for `from`, and what to
    /// restore if `to` refuses.
    anchored: Option<Reoffer>,
}

/// A re-offer the manager already took for `from`.
struct Reoffer {
    answer: Vec<u8>,
    from_sdp: Vec<u8>,
    to_direction: Direction,
    before_sdp: Option<Vec<u8>>,
    before_direction: Direction,
}

/// What became of a session refresh we wanted to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refresh {
    Sent,
    /// An offer is in flight on the dialog: try again shortly.
    Busy,
    /// The leg takes no UPDATE and has no session of ours to offer again.
    Impossible,
}

/// Our 2xx to a re-INVITE, resent until its ACK (§13.3.1.4).
pub(in crate::calls) struct Unacked {
    pub(in crate::calls) leg: LegId,
    pub(in crate::calls) cseq: u32,
    pub(in crate::calls) bytes: Bytes,
    pub(in crate::calls) resend: Resend,
}

impl Call {
    /// Relays a request of `leg` into the other leg of the bridge.
    pub(super) async fn relay(&mut self, leg: LegId, req: Request, tx: ServerTx) {
        let Some(other) = self.other(leg) else {
            return self
                .calls
                .respond(&tx, &req, 481, "Call/Transaction Does Not Exist");
        };
        let method = req.method.clone();
        let has_sdp = is_sdp(req.header("Content-Type"), &req.body);
        let offer = has_sdp && matches!(method, Method::Invite | Method::Update);
        let offer_tx = method == Method::Invite || offer;
        if offer_tx {
            if let Err(r) = self.take_offer_slot(leg, &req, &tx) {
                return self.refuse_offer(r, &req, &tx);
            }
            let busy = self
                .peer(other)
                .is_some_and(|p| p.offers.ours.is_some() || p.offers.theirs.is_some());
            if busy {
                self.release_offer_slot(leg);
                return self.refuse_offer(OfferRefusal::Glare, &req, &tx);
            }
        }
        if self.media.is_some() && method == Method::Invite && !offer {
            // a re-INVITE without an offer wants ours in the 200
            self.answer_reoffer(leg, req, tx).await;
            return self.release_offer_slot(leg);
        }
        let mut body: Option<(String, Vec<u8>)> = req
            .header("Content-Type")
            .filter(|_| !req.body.is_empty())
            .map(|ct| (ct.to_owned(), req.body.clone()));
        let mut anchored = None;
        if self.media.is_some() && offer {
            let before_sdp = self.peer(leg).and_then(|p| p.remote_sdp.clone());
            let before_direction = self
                .peer(other)
                .map_or(Direction::SendRecv, |p| p.direction);
            match self.reoffer(leg, Some(other), &req.body).await {
                Some(Ok(r)) => {
                    body = r.other_offer.map(|o| ("application/sdp".to_owned(), o));
                    anchored = Some(Reoffer {
                        answer: r.answer,
                        from_sdp: req.body.clone(),
                        to_direction: r.direction,
                        before_sdp,
                        before_direction,
                    });
                }
                Some(Err(code)) => {
                    self.calls
                        .respond(&tx, &req, code, switchboard_sip::reason_phrase(code));
                    return self.release_offer_slot(leg);
                }
                None => {}
            }
        }
        let Some(peer) = self.peer_mut(other) else {
            return;
        };
        let b = body.as_ref().map(|(ct, b)| (ct.as_str(), b.as_slice()));
        let out = peer.dialog.request(&method, b, &[]);
        if offer_tx {
            peer.offers.outgoing(out.cseq);
        }
        let to = peer.dialog.destination();
        let relay = Relay {
            from: leg,
            to: other,
            tx,
            req: Box::new(req),
            sent: out.bytes.clone(),
            cseq: out.cseq,
            offer_tx,
            anchored,
        };
        self.send_request(
            &out.branch,
            &method,
            to,
            out.bytes,
            Pending::Relay(Box::new(relay)),
        );
    }

    fn take_offer_slot(
        &mut self,
        leg: LegId,
        req: &Request,
        _tx: &ServerTx,
    ) -> Result<(), OfferRefusal> {
        match self.peer_mut(leg) {
            Some(p) => p.offers.incoming(req.cseq),
            None => Ok(()),
        }
    }

    fn release_offer_slot(&mut self, leg: LegId) {
        if let Some(p) = self.peer_mut(leg) {
            p.offers.answered_theirs();
        }
    }

    fn refuse_offer(&self, r: OfferRefusal, req: &Request, tx: &ServerTx) {
        match r {
            OfferRefusal::Overlap => self.refuse_overlap(req, tx),
            OfferRefusal::Glare => self.calls.respond(tx, req, r.code(), "Request Pending"),
        }
    }

    /// The other leg's answer to a relayed request; `Some` while it is
    /// still provisional. `resp` is `None` when the transaction failed.
    pub(super) async fn relay_response(
        &mut self,
        r: Box<Relay>,
        code: u16,
        resp: Option<&Response>,
    ) -> Option<Box<Relay>> {
        let is_invite = r.req.method == Method::Invite;
        if code < 200 {
            if code > 100
                && let Some(resp) = resp
            {
                let mut b = response(&r.req, code, &resp.reason);
                if is_invite {
                    b = b.header("Contact", &our_contact(&self.flow_of(r.from)));
                }
                self.calls.metrics.responses_out.inc(code);
                r.tx.respond(code, Bytes::from(b.build()));
            }
            return Some(r);
        }
        let ok = (200..300).contains(&code);
        if r.offer_tx
            && let Some(p) = self.peer_mut(r.to)
        {
            p.offers.answered_ours();
        }
        if let (true, true, Some(resp)) = (ok, is_invite, resp) {
            // we are the UAC of the relayed re-INVITE: ACK it ourselves
            if let Some(p) = self.peer_mut(r.to) {
                let ack = Bytes::from(p.dialog.ack(r.cseq, None));
                p.remember_ack(r.cseq, ack.clone());
                p.dialog.refreshed(resp);
                let to = p.dialog.destination();
                self.ep.send_raw(&to, ack);
            }
        }
        if ok && matches!(r.req.method, Method::Invite | Method::Update) {
            // a successful re-INVITE/UPDATE refreshes both sessions
            let now = Instant::now();
            for leg in [r.from, r.to] {
                if let Some(t) = self.peer_mut(leg).and_then(|p| p.timer.as_mut()) {
                    t.refreshed(now);
                }
            }
        }
        let answer = match (&r.anchored, ok) {
            (Some(a), true) => {
                if let Some(resp) = resp.filter(|r| is_sdp(r.header("Content-Type"), &r.body)) {
                    self.reanswer(r.to, &resp.body).await;
                }
                if let Some(p) = self.peer_mut(r.from) {
                    p.remote_sdp = Some(a.from_sdp.clone());
                }
                if let Some(p) = self.peer_mut(r.to) {
                    p.direction = a.to_direction;
                }
                Some(a.answer.clone())
            }
            (Some(a), false) => {
                self.rollback(r.from, r.to, a).await;
                None
            }
            (None, _) => None,
        };
        let reason = resp.map_or_else(
            || switchboard_sip::reason_phrase(code).to_owned(),
            |r| r.reason.clone(),
        );
        let mut b = response(&r.req, code, &reason);
        if is_invite && (101..300).contains(&code) {
            b = b.header("Contact", &our_contact(&self.flow_of(r.from)));
        }
        if ok
            && matches!(r.req.method, Method::Invite | Method::Update)
            && let Some(t) = self.peer(r.from).and_then(|p| p.timer)
        {
            b = b
                .header("Session-Expires", &t.header(true))
                .header("Require", "timer");
        }
        if r.anchored.is_some() {
            if let Some(a) = answer {
                b = b.body("application/sdp", a);
            }
        } else if let Some(resp) = resp
            && let Some(ct) = resp.header("Content-Type")
            && !resp.body.is_empty()
        {
            b = b.body(ct, resp.body.clone());
        }
        let bytes = b.build();
        self.calls.metrics.responses_out.inc(code);
        r.tx.respond(code, Bytes::from(bytes.clone()));
        if ok && is_invite {
            let reliable = self.flow_of(r.from).transport.is_reliable();
            self.unacked.push(Unacked {
                leg: r.from,
                cseq: r.req.cseq,
                bytes: Bytes::from(bytes),
                resend: Resend::start(Instant::now(), reliable),
            });
        }
        if r.offer_tx {
            self.release_offer_slot(r.from);
        }
        // RFC 5057: a 481, or no answer at all, means that leg's dialog is
        // gone, and the call with it
        if code == 481 || (resp.is_none() && code == 408) {
            let side = if r.to == LegId::A {
                Side::Caller
            } else {
                Side::Callee
            };
            info!(call = %self.id, code, "a leg's dialog is gone; ending the call");
            self.end_call(side, "Dialog Gone", code, Some(r.to));
        }
        None
    }

    /// Puts both sessions back as they were before a refused re-offer.
    async fn rollback(&mut self, from: LegId, to: LegId, a: &Reoffer) {
        let Some(media) = self.media.as_ref() else {
            return;
        };
        let mgr = std::sync::Arc::clone(&media.mgr);
        if let (Some(session), Some(sdp)) = (media.session(from), &a.before_sdp) {
            let req = pb::UpdateSessionRequest {
                session_id: session,
                remote_sdp: String::from_utf8_lossy(sdp).into_owned(),
                is_offer: true,
            };
            if let Err(e) = mgr.update_session(req).await {
                info!(call = %self.id, cause = %e.message(), "re-offer not rolled back");
            }
        }
        if let Some(session) = media.session(to) {
            let req = pb::CreateOfferRequest {
                session_id: session,
                direction: super::anchor::pb_direction(a.before_direction) as i32,
            };
            let _ = mgr.create_offer(req).await;
        }
        info!(call = %self.id, "refused re-offer rolled back");
    }

    /// An in-dialog CANCEL: it may only cancel a relayed re-INVITE of that
    /// leg still open, named by its branch (§9.2); anything else is 481.
    pub(super) fn cancel_relayed(&mut self, leg: LegId, req: &Request, tx: &ServerTx) {
        let Some(key) = self.server_key_of(req).cancelled_invite() else {
            return self
                .calls
                .respond(tx, req, 481, "Call/Transaction Does Not Exist");
        };
        let found = self.pending.values().find_map(|p| match p {
            Pending::Relay(r) if r.from == leg && *r.tx.key() == key => {
                Some((r.to, r.sent.clone()))
            }
            _ => None,
        });
        let Some((to, sent)) = found else {
            return self
                .calls
                .respond(tx, req, 481, "Call/Transaction Does Not Exist");
        };
        self.calls.respond(tx, req, 200, "OK");
        if let Ok(switchboard_sip::message::Message::Request(inv)) =
            switchboard_sip::message::parse(&sent)
        {
            let branch = inv
                .vias
                .first()
                .and_then(|v| v.branch.clone())
                .unwrap_or_default();
            if let Some(p) = self.peer(to) {
                let dest = p.dialog.destination();
                self.send_request(
                    &branch,
                    &Method::Cancel,
                    dest,
                    cancel_for(&inv),
                    Pending::Ignore,
                );
            }
        }
    }

    /// A request on a call we answered ourselves (no bridge): offers are
    /// answered by the manager, the rest accepted.
    pub(super) async fn serve_locally(&mut self, leg: LegId, req: Request, tx: ServerTx) {
        let offer_tx = req.method == Method::Invite
            || (req.method == Method::Update && is_sdp(req.header("Content-Type"), &req.body));
        if offer_tx {
            if let Err(r) = self.take_offer_slot(leg, &req, &tx) {
                return self.refuse_offer(r, &req, &tx);
            }
            self.answer_reoffer(leg, req, tx).await;
            return self.release_offer_slot(leg);
        }
        let refresh = req.method == Method::Update;
        let mut b = response(&req, 200, "OK");
        if refresh && let Some(t) = self.peer_mut(leg).and_then(|p| p.timer.as_mut()) {
            t.refreshed(Instant::now());
            b = b
                .header("Session-Expires", &t.header(true))
                .header("Require", "timer");
        }
        self.calls.metrics.responses_out.inc(200);
        tx.respond(200, Bytes::from(b.build()));
    }

    /// Our session refresh to `leg`: an UPDATE without SDP when it takes
    /// UPDATE, else a re-INVITE with a fresh offer of its session (same
    /// address and direction).
    pub(super) async fn send_refresh(&mut self, leg: LegId) -> Refresh {
        let offer = match self.peer(leg) {
            Some(p) if p.allows_update => None,
            Some(p) => match self.media.as_ref().and_then(|m| m.session(leg)) {
                Some(session) => {
                    let r = pb::CreateOfferRequest {
                        session_id: session,
                        direction: super::anchor::pb_direction(p.direction) as i32,
                    };
                    let mgr = self.media.as_ref().map(|m| std::sync::Arc::clone(&m.mgr));
                    match mgr {
                        Some(mgr) => mgr.create_offer(r).await.ok().map(|o| o.local_sdp),
                        None => None,
                    }
                }
                // neither UPDATE nor an SDP of ours to offer: no refresh
                None => return Refresh::Impossible,
            },
            None => return Refresh::Impossible,
        };
        let Some(peer) = self.peer_mut(leg) else {
            return Refresh::Impossible;
        };
        let Some(timer) = peer.timer else {
            return Refresh::Impossible;
        };
        let se = timer.header(false);
        let extra = [("Session-Expires", se.as_str()), ("Supported", "timer")];
        let (method, body) = match &offer {
            None => (Method::Update, None),
            Some(sdp) => (Method::Invite, Some(("application/sdp", sdp.as_bytes()))),
        };
        let cseq = peer.dialog.local_cseq;
        if method == Method::Invite && !peer.offers.outgoing(cseq) {
            return Refresh::Busy;
        }
        peer.refreshing = true;
        self.send_in_dialog(leg, &method, body, &extra, Pending::Refresh(leg));
        Refresh::Sent
    }

    /// The answer to our session refresh: a 2xx starts the interval over;
    /// 491 tries again soon; anything else means the leg is gone.
    pub(super) async fn refresh_answered(
        &mut self,
        leg: LegId,
        code: u16,
        resp: Option<&Response>,
    ) {
        let is_invite = resp.is_some_and(|r| r.cseq_method == Method::Invite);
        let Some(p) = self.peer_mut(leg) else {
            return;
        };
        p.refreshing = false;
        if is_invite {
            p.offers.answered_ours();
        }
        let now = Instant::now();
        match code {
            200..=299 => {
                if let Some(t) = p.timer.as_mut() {
                    t.refreshed(now);
                }
                if let Some(resp) = resp.filter(|_| is_invite) {
                    let ack = Bytes::from(p.dialog.ack(resp.cseq, None));
                    p.remember_ack(resp.cseq, ack.clone());
                    let to = p.dialog.destination();
                    self.ep.send_raw(&to, ack);
                    if is_sdp(resp.header("Content-Type"), &resp.body) {
                        self.reanswer(leg, &resp.body).await;
                    }
                }
            }
            491 => {
                if let Some(t) = p.timer.as_mut() {
                    t.at = now + std::time::Duration::from_secs(2);
                }
            }
            _ => {
                info!(call = %self.id, ?leg, code, "session refresh failed; ending the call");
                let side = if leg == LegId::A {
                    Side::Caller
                } else {
                    Side::Callee
                };
                self.end_call(side, "Session Refresh Failed", code, Some(leg));
            }
        }
    }

    pub(super) fn flow_of(&self, leg: LegId) -> switchboard_sip_stack::target::Target {
        self.peer(leg)
            .map_or(self.a.source, |p| p.dialog.destination())
    }
}
