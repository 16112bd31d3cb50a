//! Every event of the call, whatever action waits: requests of both legs,
//! ACKs, responses to our client transactions, stray 2xx.

use bytes::Bytes;
use switchboard_sip::message::{Method, Request};
use switchboard_sip::response::response;
use switchboard_sip_stack::target::Target;
use switchboard_sip_stack::transaction::{ClientEvent, ServerTx, TransactionKey};

use super::anchor::is_sdp;
use super::{Call, Pending, Phase, Side};
use crate::calls::{Event, LegId};

impl Call {
    /// Every event, in every phase.
    pub(super) async fn on_event(&mut self, ev: Event) {
        match ev {
            Event::Request { leg, req, tx } => self.on_request(leg, *req, tx).await,
            Event::StrayResponse { leg, resp } => self.on_stray(leg, &resp),
            Event::Client { id, code, bytes } => self.on_client(id, code, Some(bytes)).await,
            Event::ClientFailed { id, code } => self.on_client(id, code, None).await,
            Event::Hangup => self.end_call(Side::System, "Ended By Operator", 480, None),
            Event::Shutdown => self.end_call(Side::System, "Node Shutting Down", 503, None),
            Event::Migrate { from } => {
                if let Phase::Bridged(w) = self.phase {
                    self.start_migration(w, &from, false).await;
                }
            }
            Event::ManagerLost { name } => self.manager_lost(&name).await,
            Event::Media { session, event } => self.media_event(&session, event),
        }
    }

    pub(super) async fn on_request(&mut self, leg: LegId, req: Request, tx: Option<ServerTx>) {
        self.calls.metrics.requests_in.inc(req.method.as_str());
        // the caller's CANCEL, routed by the INVITE transaction it cancels
        if req.method == Method::Cancel && req.to.tag().is_none() {
            if let Some(tx) = &tx {
                self.calls.respond(tx, &req, 200, "OK");
            }
            if self.a.state.is_open() {
                self.end_call(Side::Caller, "Request Terminated", 487, Some(LegId::A));
            }
            return;
        }
        let Some(tx) = tx else {
            return self.on_ack(leg, req).await;
        };
        let Some(peer) = self.peer_mut(leg) else {
            return;
        };
        if let Err(refused) = peer.dialog.accept(&req) {
            self.calls.router.no_dialog.fetch_add(
                u64::from(refused.code() == 481),
                std::sync::atomic::Ordering::Relaxed,
            );
            return self
                .calls
                .respond(&tx, &req, refused.code(), refused.reason());
        }
        let live = match leg {
            LegId::A => self.phase != Phase::Over,
            LegId::B(i) => self.phase == Phase::Bridged(i),
        };
        if !live {
            return self
                .calls
                .respond(&tx, &req, 481, "Call/Transaction Does Not Exist");
        }
        match req.method {
            Method::Bye => {
                self.calls.respond(&tx, &req, 200, "OK");
                let side = if leg == LegId::A {
                    Side::Caller
                } else {
                    Side::Callee
                };
                self.end_call(side, "BYE", 487, Some(leg));
            }
            Method::Cancel => self.cancel_relayed(leg, &req, &tx),
            _ => self.in_dialog(leg, req, tx).await,
        }
    }

    /// A request inside an established leg that neither ends the call nor
    /// cancels: relayed when bridged, answered here otherwise.
    pub(super) async fn in_dialog(&mut self, leg: LegId, req: Request, tx: ServerTx) {
        if leg == LegId::A && !self.a.state.is_answered() {
            // early dialog: nothing to relay it to yet
            if req.method == Method::Invite {
                return self.refuse_overlap(&req, &tx);
            }
            return self
                .calls
                .respond(&tx, &req, 481, "Call/Transaction Does Not Exist");
        }
        match self.phase {
            Phase::Bridged(_) => self.relay(leg, req, tx).await,
            _ => self.serve_locally(leg, req, tx).await,
        }
    }

    /// §14.2: an INVITE while another on the dialog is unanswered.
    pub(super) fn refuse_overlap(&self, req: &Request, tx: &ServerTx) {
        let b = response(req, 500, "Server Internal Error")
            .header(
                "Retry-After",
                &crate::calls::leg::overlap_retry_after().to_string(),
            )
            .build();
        self.calls.metrics.responses_out.inc(500);
        tx.respond(500, Bytes::from(b));
    }

    /// An ACK: for our 2xx to the caller's INVITE, or for a 2xx we sent to
    /// a relayed re-INVITE. Its tags must be the dialog's (an ACK carrying
    /// another To tag acknowledges nothing of ours).
    pub(super) async fn on_ack(&mut self, leg: LegId, req: Request) {
        let Some(peer) = self.peer(leg) else {
            return;
        };
        if !peer.dialog.matches(&req) {
            return;
        }
        let body = is_sdp(req.header("Content-Type"), &req.body).then(|| req.body.clone());
        if leg == LegId::A && req.cseq == self.invite.cseq && self.a.state.ack() {
            self.update_view(|v| {
                if let Some(a) = v.legs.first_mut() {
                    a.state = "confirmed".into();
                }
            });
            if let Phase::Bridged(w) = self.phase
                && self.forks[w]
                    .peer
                    .ack_for(self.forks[w].invite.cseq)
                    .is_none()
            {
                // direct media, late offer: the caller's answer travels in
                // its ACK to the callee
                let ct = req.header("Content-Type").unwrap_or("application/sdp");
                let b = body.as_deref().map(|b| (ct, b));
                self.ack_fork(w, b);
            }
        } else {
            self.unacked
                .retain(|u| !(u.leg == leg && u.cseq == req.cseq));
        }
        if let (Some(body), true) = (body, self.media.is_some()) {
            match leg {
                LegId::A => self.caller_answer(&body).await,
                b => self.reanswer(b, &body).await,
            }
        }
    }

    pub(super) fn send_request(
        &mut self,
        branch: &str,
        method: &Method,
        target: Target,
        bytes: Vec<u8>,
        what: Pending,
    ) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.calls.metrics.requests_out.inc(method.as_str());
        let key = TransactionKey::client(branch, method.as_str());
        let mut ctx =
            self.ep
                .send_request(key, *method == Method::Invite, target, Bytes::from(bytes));
        self.pending.insert(id, what);
        let mailbox = self.mailbox.clone();
        tokio::spawn(async move {
            while let Some(ev) = ctx.next_event().await {
                let (msg, last) = match ev {
                    ClientEvent::Response(code, bytes) => {
                        (Event::Client { id, code, bytes }, code >= 200)
                    }
                    ClientEvent::Timeout => (Event::ClientFailed { id, code: 408 }, true),
                    ClientEvent::TransportError => (Event::ClientFailed { id, code: 503 }, true),
                };
                if mailbox.send(msg).await.is_err() || last {
                    break;
                }
            }
        });
        id
    }

    /// A request inside a leg's dialog, in a new client transaction.
    pub(super) fn send_in_dialog(
        &mut self,
        leg: LegId,
        method: &Method,
        body: Option<(&str, &[u8])>,
        extra: &[(&str, &str)],
        what: Pending,
    ) -> Option<(u64, u32)> {
        let peer = self.peer_mut(leg)?;
        let out = peer.dialog.request(method, body, extra);
        let to = peer.dialog.destination();
        let id = self.send_request(&out.branch, method, to, out.bytes, what);
        Some((id, out.cseq))
    }

    pub(super) async fn on_client(&mut self, id: u64, code: u16, bytes: Option<Bytes>) {
        let resp = bytes
            .as_ref()
            .and_then(|b| match switchboard_sip::message::parse(b) {
                Ok(switchboard_sip::message::Message::Response(r)) => Some(r),
                _ => None,
            });
        if resp.is_some() {
            self.calls.metrics.responses_in.inc(code);
        }
        let Some(p) = self.pending.remove(&id) else {
            return;
        };
        let provisional = code < 200;
        match p {
            Pending::Invite(i) => {
                if provisional {
                    self.pending.insert(id, Pending::Invite(i));
                }
                self.fork_response(i, code, resp.as_ref()).await;
            }
            Pending::Relay(r) => {
                if let Some(r) = self.relay_response(r, code, resp.as_ref()).await {
                    self.pending.insert(id, Pending::Relay(r));
                }
            }
            Pending::Refresh(leg) => {
                if provisional {
                    self.pending.insert(id, Pending::Refresh(leg));
                } else {
                    self.refresh_answered(leg, code, resp.as_ref()).await;
                }
            }
            Pending::Migrate(leg) => {
                if provisional {
                    self.pending.insert(id, Pending::Migrate(leg));
                } else {
                    self.migration_answer(leg, code, resp.as_ref()).await;
                }
            }
            Pending::Ignore => {}
        }
    }

    /// A 2xx no transaction wanted: ours to ACK again, or a forking
    /// proxy's extra answer to take down.
    pub(super) fn on_stray(&mut self, leg: LegId, resp: &switchboard_sip::message::Response) {
        if !(200..300).contains(&resp.code) || resp.cseq_method != Method::Invite {
            return;
        }
        if let LegId::B(i) = leg
            && i < self.forks.len()
        {
            return self.fork_2xx_again(i, resp);
        }
        if let Some(peer) = self.peer(leg)
            && resp.to.tag() == peer.dialog.remote_tag.as_deref()
            && let Some(ack) = peer.ack_for(resp.cseq)
        {
            let to = peer.dialog.destination();
            self.ep.send_raw(&to, ack);
        }
    }
}
