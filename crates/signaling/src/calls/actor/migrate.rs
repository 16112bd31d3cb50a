//! Moving a bridged call's media to another RTP manager: on an aggressive
//! drain, and when the manager the call is on stops answering. New
//! sessions on the next healthy manager, already bridged; a re-INVITE with
//! the new manager's offer on each leg; the old sessions go once both legs
//! took the move.

use std::sync::Arc;

use bytes::Bytes;
use switchboard_rtpmanager_api::v1 as pb;
use switchboard_sip::message::{Method, Response};
use tracing::{info, warn};

use super::anchor::{family, is_sdp};
use super::{Call, Pending, Phase, Side};
use crate::calls::LegId;
use crate::media::Manager;

/// A bridged call moving to another RTP manager.
pub(in crate::calls) struct Migration {
    mgr: Arc<Manager>,
    a: String,
    b: String,
    a_done: bool,
    b_done: bool,
    /// The old manager is gone: its sessions cannot be destroyed (it reaps
    /// them itself when it comes back).
    lost: bool,
}

impl Call {
    /// Starts moving the call off `from`; `lost` when `from` is dead.
    /// False when the call cannot move (not bridged, no other manager, a
    /// leg busy with another offer).
    pub(super) async fn start_migration(&mut self, w: usize, from: &str, lost: bool) -> bool {
        let Some(media) = self.media.as_ref() else {
            return false;
        };
        if media.mgr.name != from || self.migration.is_some() || media.bridged != Some(w) {
            return false;
        }
        let busy = [LegId::A, LegId::B(w)].iter().any(|l| {
            self.peer(*l)
                .is_some_and(|p| p.offers.ours.is_some() || p.offers.theirs.is_some())
        });
        if busy {
            warn!(call = %self.id, "an offer is in flight; the call does not move now");
            return false;
        }
        let Some(to) = self
            .calls
            .media
            .candidates()
            .into_iter()
            .find(|m| m.name != from)
        else {
            warn!(call = %self.id, from, "no other RTP manager to move the call to");
            return false;
        };
        let mut offers = Vec::new();
        for (leg, remote, sdp) in [
            (
                "A".to_owned(),
                self.a.peer.dialog.flow.remote,
                &self.a.peer.remote_sdp,
            ),
            (
                format!("B{}", w + 1),
                self.forks[w].peer.dialog.flow.remote,
                &self.forks[w].peer.remote_sdp,
            ),
        ] {
            // a leg that talks SRTP is offered SRTP (fresh keys) again, a
            // browser WebRTC (new ICE credentials: an ICE restart, and a
            // new DTLS association)
            let parsed = sdp
                .as_deref()
                .and_then(|b| switchboard_sip::sdp::parse(b).ok());
            let savp = parsed.as_ref().is_some_and(|d| d.is_savp());
            let profile = if parsed.as_ref().is_some_and(|d| d.is_webrtc()) {
                pb::Profile::Webrtc
            } else {
                pb::Profile::Unspecified
            };
            let srtp = if savp {
                pb::SrtpPolicy::Required
            } else {
                pb::SrtpPolicy::Optional
            };
            let req = pb::CreateSessionRequest {
                call_id: self.id.clone(),
                leg,
                remote_sdp: String::new(),
                address_family: family(remote.ip()).into(),
                srtp: srtp.into(),
                profile: profile.into(),
            };
            match to.create_session(req).await {
                Ok(r) => offers.push(r),
                Err(e) => {
                    warn!(call = %self.id, manager = %to.name, cause = %e, "cannot move the call");
                    for o in &offers {
                        let _ = to.destroy(&o.session_id).await;
                    }
                    return false;
                }
            }
        }
        let (a, b) = (offers.remove(0), offers.remove(0));
        if let Err(e) = to.bridge(&a.session_id, &b.session_id).await {
            warn!(call = %self.id, cause = %e, "cannot move the call");
            let _ = to.destroy(&a.session_id).await;
            let _ = to.destroy(&b.session_id).await;
            return false;
        }
        self.watch_session(&to, &a.session_id);
        self.watch_session(&to, &b.session_id);
        info!(call = %self.id, from, to = %to.name, "moving the call's media");
        for (leg, offer) in [(LegId::A, a.local_sdp), (LegId::B(w), b.local_sdp)] {
            let Some(p) = self.peer_mut(leg) else {
                continue;
            };
            let cseq = p.dialog.local_cseq;
            p.offers.outgoing(cseq);
            let body = Some(("application/sdp", offer.as_bytes()));
            self.send_in_dialog(leg, &Method::Invite, body, &[], Pending::Migrate(leg));
        }
        self.migration = Some(Migration {
            mgr: to,
            a: a.session_id,
            b: b.session_id,
            a_done: false,
            b_done: false,
            lost,
        });
        true
    }

    /// A leg's answer to the moving re-INVITE. When both legs took the new
    /// manager, the old sessions go; if one refused, the new ones go.
    pub(super) async fn migration_answer(
        &mut self,
        leg: LegId,
        code: u16,
        resp: Option<&Response>,
    ) {
        let Phase::Bridged(w) = self.phase else {
            return;
        };
        if let Some(p) = self.peer_mut(leg) {
            p.offers.answered_ours();
        }
        let Some(m) = self.migration.as_mut() else {
            return;
        };
        let session = match leg {
            LegId::A => m.a.clone(),
            LegId::B(_) => m.b.clone(),
        };
        let mgr = Arc::clone(&m.mgr);
        let ok = (200..300).contains(&code);
        if let (true, Some(resp)) = (ok, resp) {
            if let Some(p) = self.peer_mut(leg) {
                let ack = Bytes::from(p.dialog.ack(resp.cseq, None));
                p.remember_ack(resp.cseq, ack.clone());
                p.dialog.refreshed(resp);
                let to = p.dialog.destination();
                self.ep.send_raw(&to, ack);
            }
            if is_sdp(resp.header("Content-Type"), &resp.body) {
                let req = pb::UpdateSessionRequest {
                    session_id: session,
                    remote_sdp: String::from_utf8_lossy(&resp.body).into_owned(),
                    is_offer: false,
                };
                match mgr.update_session(req).await {
                    Ok(_) => {
                        if let Some(p) = self.peer_mut(leg) {
                            p.remote_sdp = Some(resp.body.clone());
                        }
                    }
                    Err(e) => {
                        info!(call = %self.id, cause = %e.message(), "answer to the moving re-INVITE refused")
                    }
                }
            }
        }
        let Some(m) = self.migration.as_mut() else {
            return;
        };
        match leg {
            LegId::A => m.a_done = true,
            LegId::B(_) => m.b_done = true,
        }
        if !ok {
            let lost = m.lost;
            warn!(call = %self.id, code, "a leg refused the move");
            if let Some(m) = self.migration.take() {
                let _ = m.mgr.destroy(&m.a).await;
                let _ = m.mgr.destroy(&m.b).await;
            }
            if lost {
                // nowhere left for its media: the call ends
                self.end_call(Side::System, "RTP Manager Lost", 503, None);
            }
            return;
        }
        if !(m.a_done && m.b_done) {
            return;
        }
        let Some(m) = self.migration.take() else {
            return;
        };
        let Some(media) = self.media.as_mut() else {
            return;
        };
        let old = Arc::clone(&media.mgr);
        let (old_a, old_b) = (media.a.clone(), media.b.get(w).cloned().flatten());
        media.mgr = m.mgr;
        media.a = m.a;
        if media.b.len() <= w {
            media.b.resize(w + 1, None);
        }
        media.b[w] = Some(m.b);
        let name = media.mgr.name.clone();
        if !m.lost {
            let _ = old.destroy(&old_a).await;
            if let Some(b) = old_b {
                let _ = old.destroy(&b).await;
            }
        }
        self.calls.set_manager(&self.id, Some(name.clone()));
        info!(call = %self.id, from = %old.name, to = %name, "call moved");
    }

    /// The call's RTP manager stopped answering: a bridged call moves to
    /// another one; any other call ends with a CDR saying why.
    pub(super) async fn manager_lost(&mut self, name: &str) {
        let on_it = self.media.as_ref().is_some_and(|m| m.mgr.name == name);
        if !on_it || self.phase == Phase::Over {
            return;
        }
        if let Phase::Bridged(w) = self.phase
            && self.start_migration(w, name, true).await
        {
            return;
        }
        info!(call = %self.id, manager = name, "the call's RTP manager is gone; ending the call");
        self.end_call(Side::System, "RTP Manager Lost", 503, None);
    }
}
