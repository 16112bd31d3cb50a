//! Media anchoring of one call: its sessions on an RTP manager, the SDP
//! each leg gets, and the dialplan's media actions.
//!
//! The caller's leg gets a session when the call starts (its offer is
//! answered by the manager, or the manager's offer goes out in our 200
//! when the INVITE had none); every B-leg gets its own session and the
//! manager's offer, which lists PCMU and PCMA whatever the caller offered,
//! so the manager transcodes when the two sides pick different codecs.
//! Early media and the answer bridge the caller's session to the fork's.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use switchboard_rtpmanager_api::v1 as pb;
use switchboard_rtpmanager_api::v1::session_event;
use switchboard_sip::message::{Message, Request};
use switchboard_sip::response::response;
use switchboard_sip::sdp;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::StreamExt;
use tonic::Code;
use tracing::{debug, info, warn};

use super::{Call, ForkState, Pending};
use crate::calls::dialog::our_contact;
use crate::calls::{Event, LegId, MediaEvent};
use crate::media::{BoxStream, Manager};

/// The call's sessions on its RTP manager.
pub(super) struct CallMedia {
    pub(super) mgr: Arc<Manager>,
    /// The caller's session.
    pub(super) a: String,
    /// What the caller gets from us: the answer to its offer, or our offer
    /// when its INVITE had none (its ACK then carries the answer).
    pub(super) a_sdp: String,
    pub(super) a_late: bool,
    /// One session per fork, by fork index (`None`: not anchored).
    pub(super) b: Vec<Option<String>>,
    /// The fork whose session is bridged to the caller's.
    pub(super) bridged: Option<usize>,
    /// A both-sides recording to start when the bridge is up.
    pub(super) record_bridge: Option<String>,
}

impl CallMedia {
    /// The session of a leg, if it has one.
    fn session(&self, leg: LegId) -> Option<String> {
        match leg {
            LegId::A => Some(self.a.clone()),
            LegId::B(i) => self.b.get(i).cloned().flatten(),
        }
    }
}

/// A bridged call moving to another RTP manager: new sessions there, a
/// re-INVITE with the new manager's offer on each leg.
pub(in crate::calls) struct Migration {
    mgr: Arc<Manager>,
    a: String,
    b: String,
    a_done: bool,
    b_done: bool,
}

/// How a media action's wait ended.
pub(super) enum Served {
    Done(String),
    Ended,
}

/// What a media action waits for.
pub(super) enum Until {
    Deadline(Instant),
    Playback(BoxStream<pb::PlaybackEvent>),
    Digits { max: usize, deadline: Instant },
}

pub(super) fn is_sdp(content_type: Option<&str>, body: &[u8]) -> bool {
    !body.is_empty()
        && content_type.is_some_and(|ct| {
            ct.split(';')
                .next()
                .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/sdp"))
        })
}

fn family(ip: std::net::IpAddr) -> &'static str {
    if ip.is_ipv6() { "IP6" } else { "IP4" }
}

fn pb_direction(d: sdp::Direction) -> pb::Direction {
    match d {
        sdp::Direction::SendRecv => pb::Direction::Sendrecv,
        sdp::Direction::SendOnly => pb::Direction::Sendonly,
        sdp::Direction::RecvOnly => pb::Direction::Recvonly,
        sdp::Direction::Inactive => pb::Direction::Inactive,
    }
}

impl Call {
    pub(super) fn anchored(&self) -> bool {
        self.media.is_some()
    }

    /// The caller's session, on the first manager that takes it. `Err` is
    /// the status the caller gets: 488 for SDP the manager refuses, 503
    /// when no manager can take the call.
    pub(super) async fn setup_media(&mut self) -> Result<(), (u16, &'static str)> {
        let offer = if is_sdp(self.invite.header("Content-Type"), &self.invite.body) {
            String::from_utf8_lossy(&self.invite.body).into_owned()
        } else {
            String::new()
        };
        let a_late = offer.is_empty();
        for mgr in self.calls.media.candidates() {
            let req = pb::CreateSessionRequest {
                call_id: self.invite.call_id.clone(),
                leg: "A".into(),
                remote_sdp: offer.clone(),
                address_family: family(self.a_source.local.ip()).into(),
            };
            match mgr.create_session(req).await {
                Ok(r) => {
                    self.watch_session(&mgr, &r.session_id);
                    debug!(call_id = %self.invite.call_id, manager = %mgr.name, session = %r.session_id, "caller's media anchored");
                    self.media = Some(CallMedia {
                        mgr,
                        a: r.session_id,
                        a_sdp: r.local_sdp,
                        a_late,
                        b: Vec::new(),
                        bridged: None,
                        record_bridge: None,
                    });
                    return Ok(());
                }
                Err(e) if e.code() == Code::InvalidArgument => {
                    info!(call_id = %self.invite.call_id, cause = %e.message(), "caller's SDP refused");
                    return Err((488, "Not Acceptable Here"));
                }
                Err(e) => {
                    warn!(call_id = %self.invite.call_id, manager = %mgr.name, cause = %e, "RTP manager refused a session; trying the next");
                }
            }
        }
        Err((503, "Service Unavailable"))
    }

    /// Forwards the session's DTMF and RTP timeouts into the call's mailbox.
    fn watch_session(&self, mgr: &Arc<Manager>, session: &str) {
        let mgr = Arc::clone(mgr);
        let session = session.to_owned();
        let mailbox = self.mailbox.clone();
        tokio::spawn(async move {
            let Ok(mut events) = mgr.watch_events(&session).await else {
                return;
            };
            while let Some(Ok(ev)) = events.next().await {
                let event = match ev.event {
                    Some(session_event::Event::Dtmf(d)) => match d.digit.chars().next() {
                        Some(c) => MediaEvent::Dtmf(c),
                        None => continue,
                    },
                    Some(session_event::Event::RtpTimeout(_)) => MediaEvent::RtpTimeout,
                    _ => continue,
                };
                let msg = Event::Media {
                    session: session.clone(),
                    event,
                };
                if mailbox.send(msg).is_err() {
                    return;
                }
            }
        });
    }

    /// A session for fork `index` and the offer its INVITE carries.
    /// `None` when the manager cannot take it (the fork is not started).
    pub(super) async fn fork_offer(
        &mut self,
        index: usize,
        remote: std::net::SocketAddr,
    ) -> Option<Vec<u8>> {
        let media = self.media.as_ref()?;
        let req = pb::CreateSessionRequest {
            call_id: self.invite.call_id.clone(),
            leg: format!("B{}", index + 1),
            remote_sdp: String::new(),
            address_family: family(remote.ip()).into(),
        };
        let mgr = Arc::clone(&media.mgr);
        match mgr.create_session(req).await {
            Ok(r) => {
                self.watch_session(&mgr, &r.session_id);
                let media = self.media.as_mut()?;
                if media.b.len() <= index {
                    media.b.resize(index + 1, None);
                }
                media.b[index] = Some(r.session_id);
                Some(r.local_sdp.into_bytes())
            }
            Err(e) => {
                warn!(call_id = %self.invite.call_id, cause = %e, "no media session for a fork; not dialled");
                None
            }
        }
    }

    fn b_session(&self, i: usize) -> Option<&str> {
        self.media.as_ref()?.b.get(i)?.as_deref()
    }

    /// The fork's SDP answer (in a 18x or 2xx) goes to its session, and the
    /// caller's session is bridged to it. False when the answer is unusable.
    pub(super) async fn fork_answered_media(&mut self, i: usize, body: &[u8]) -> bool {
        let (Some(media), Some(b)) = (self.media.as_ref(), self.b_session(i)) else {
            return false;
        };
        let (mgr, a, b) = (Arc::clone(&media.mgr), media.a.clone(), b.to_owned());
        let already = media.bridged == Some(i);
        let req = pb::UpdateSessionRequest {
            session_id: b.clone(),
            remote_sdp: String::from_utf8_lossy(body).into_owned(),
            is_offer: false,
        };
        if let Err(e) = mgr.update_session(req).await {
            info!(call_id = %self.invite.call_id, cause = %e.message(), "callee's SDP answer refused");
            return false;
        }
        if !already {
            if let Err(e) = mgr.bridge(&a, &b).await {
                warn!(call_id = %self.invite.call_id, cause = %e, "bridge failed");
                return false;
            }
            if let Some(m) = self.media.as_mut() {
                m.bridged = Some(i);
            }
        }
        true
    }

    /// Once the answered fork is bridged: a both-sides recording starts.
    pub(super) async fn bridge_up(&mut self) {
        let Some(media) = self.media.as_mut() else {
            return;
        };
        if let Some(file) = media.record_bridge.take() {
            let (mgr, a) = (Arc::clone(&media.mgr), media.a.clone());
            match mgr.record(&a, &file, true).await {
                Ok(path) => info!(call_id = %self.invite.call_id, %path, "recording the call"),
                Err(e) => {
                    warn!(call_id = %self.invite.call_id, cause = %e.message(), "recording not started")
                }
            }
        }
    }

    /// The caller's ACK answered our offer (late offer).
    pub(super) async fn caller_answer(&mut self, body: &[u8]) {
        let Some(media) = self.media.as_mut() else {
            return;
        };
        if !media.a_late {
            return;
        }
        media.a_late = false;
        let req = pb::UpdateSessionRequest {
            session_id: media.a.clone(),
            remote_sdp: String::from_utf8_lossy(body).into_owned(),
            is_offer: false,
        };
        if let Err(e) = media.mgr.update_session(req).await {
            info!(call_id = %self.invite.call_id, cause = %e.message(), "caller's SDP answer refused");
        }
    }

    /// A new offer from `leg` (re-INVITE or UPDATE): the manager answers it
    /// for that leg and writes the offer the other leg gets (same
    /// direction: a hold is passed on). `None` without anchoring.
    pub(super) async fn reoffer(
        &mut self,
        leg: LegId,
        other: Option<LegId>,
        offer: &[u8],
    ) -> Option<Result<(Vec<u8>, Option<Vec<u8>>), u16>> {
        let media = self.media.as_ref()?;
        let mgr = Arc::clone(&media.mgr);
        let own = media.session(leg)?;
        let other = other.and_then(|l| media.session(l));
        let text = String::from_utf8_lossy(offer).into_owned();
        let direction = match sdp::parse(offer) {
            Ok(d) => d.direction,
            Err(_) => return Some(Err(488)),
        };
        let req = pb::UpdateSessionRequest {
            session_id: own,
            remote_sdp: text,
            is_offer: true,
        };
        let answer = match mgr.update_session(req).await {
            Ok(r) => r.local_sdp.into_bytes(),
            Err(e) if e.code() == Code::InvalidArgument => return Some(Err(488)),
            Err(_) => return Some(Err(500)),
        };
        let other_offer = match other {
            Some(o) => {
                let req = pb::CreateOfferRequest {
                    session_id: o,
                    direction: pb_direction(direction) as i32,
                };
                mgr.create_offer(req)
                    .await
                    .ok()
                    .map(|r| r.local_sdp.into_bytes())
            }
            None => None,
        };
        Some(Ok((answer, other_offer)))
    }

    /// The other leg's answer to the offer we relayed.
    pub(super) async fn reanswer(&mut self, leg: LegId, answer: &[u8]) {
        let Some(media) = self.media.as_ref() else {
            return;
        };
        let Some(session) = media.session(leg) else {
            return;
        };
        let req = pb::UpdateSessionRequest {
            session_id: session,
            remote_sdp: String::from_utf8_lossy(answer).into_owned(),
            is_offer: false,
        };
        if let Err(e) = media.mgr.update_session(req).await {
            info!(call_id = %self.invite.call_id, cause = %e.message(), "re-INVITE answer refused");
        }
    }

    /// Destroys every session of the call; the caller's (and the bridged
    /// callee's) counters go into the CDR.
    pub(super) async fn release_media(&mut self) {
        let Some(media) = self.media.as_ref() else {
            return;
        };
        let mgr = Arc::clone(&media.mgr);
        let bridged = media.bridged;
        let a = mgr.destroy(&media.a).await.ok();
        let mut b_info = None;
        for (i, s) in media.b.iter().enumerate() {
            if let Some(s) = s {
                let info = mgr.destroy(s).await.ok();
                if Some(i) == bridged {
                    b_info = info;
                }
            }
        }
        if let Some(a) = a {
            let mos = [Some(&a), b_info.as_ref()]
                .into_iter()
                .flatten()
                .filter(|i| i.packets_received > 0)
                .map(|i| i.mos)
                .fold(None, |m: Option<f64>, x| Some(m.map_or(x, |m| m.min(x))));
            self.media_stats = Some(super::MediaStats {
                sent: a.packets_sent as i64,
                received: a.packets_received as i64,
                lost: (a.packets_lost + b_info.as_ref().map_or(0, |b| b.packets_lost)) as i64,
                jitter_ms: a
                    .jitter_ms
                    .max(b_info.as_ref().map_or(0.0, |b| b.jitter_ms)),
                mos,
                manager: mgr.name.clone(),
            });
        }
    }

    // ----------------------------------------------------------------------
    // aggressive drain: moving a bridged call to another manager
    // ----------------------------------------------------------------------

    /// Starts moving the call off `from`: sessions on the next healthy
    /// manager, already bridged, and a re-INVITE with its offer to each leg.
    pub(super) async fn start_migration(&mut self, w: usize, from: &str) {
        let Some(media) = self.media.as_ref() else {
            return;
        };
        if media.mgr.name != from || self.migration.is_some() || media.bridged != Some(w) {
            return;
        }
        let Some(to) = self
            .calls
            .media
            .candidates()
            .into_iter()
            .find(|m| m.name != from)
        else {
            warn!(call_id = %self.invite.call_id, from, "no other RTP manager to move the call to");
            return;
        };
        let call_id = self.invite.call_id.clone();
        let mut offers = Vec::new();
        for (leg, remote) in [
            ("A".to_owned(), self.a.flow.remote),
            (format!("B{}", w + 1), self.forks[w].dialog.flow.remote),
        ] {
            let req = pb::CreateSessionRequest {
                call_id: call_id.clone(),
                leg,
                remote_sdp: String::new(),
                address_family: family(remote.ip()).into(),
            };
            match to.create_session(req).await {
                Ok(r) => offers.push(r),
                Err(e) => {
                    warn!(%call_id, manager = %to.name, cause = %e, "cannot move the call");
                    for o in &offers {
                        let _ = to.destroy(&o.session_id).await;
                    }
                    return;
                }
            }
        }
        let (a, b) = (offers.remove(0), offers.remove(0));
        if let Err(e) = to.bridge(&a.session_id, &b.session_id).await {
            warn!(%call_id, cause = %e, "cannot move the call");
            let _ = to.destroy(&a.session_id).await;
            let _ = to.destroy(&b.session_id).await;
            return;
        }
        self.watch_session(&to, &a.session_id);
        self.watch_session(&to, &b.session_id);
        info!(%call_id, from, to = %to.name, "moving the call's media");
        for (leg, offer) in [(LegId::A, a.local_sdp), (LegId::B(w), b.local_sdp)] {
            let dialog = match leg {
                LegId::A => &mut self.a,
                LegId::B(i) => &mut self.forks[i].dialog,
            };
            let (bytes, branch) =
                dialog.request("INVITE", Some(("application/sdp", offer.as_bytes())), &[]);
            let flow = dialog.flow;
            self.send_request(&branch, "INVITE", flow, bytes, Pending::Migrate(leg));
        }
        self.migration = Some(Migration {
            mgr: to,
            a: a.session_id,
            b: b.session_id,
            a_done: false,
            b_done: false,
        });
    }

    /// A leg's answer to the moving re-INVITE. When both legs took the new
    /// manager, the old sessions go; if one refused, the new ones go.
    pub(super) async fn migration_answer(
        &mut self,
        w: usize,
        leg: LegId,
        code: u16,
        bytes: &Bytes,
    ) {
        let Some(m) = self.migration.as_mut() else {
            return;
        };
        let session = match leg {
            LegId::A => m.a.clone(),
            LegId::B(_) => m.b.clone(),
        };
        let mgr = Arc::clone(&m.mgr);
        let ok = (200..300).contains(&code);
        if ok && let Ok(Message::Response(resp)) = switchboard_sip::message::parse(bytes) {
            let (to_a, dialog) = match leg {
                LegId::A => (true, &self.a),
                LegId::B(i) => (false, &self.forks[i].dialog),
            };
            let ack = Bytes::from(dialog.ack(resp.cseq, None));
            let flow = dialog.flow;
            self.ep.send_raw(&flow, ack.clone());
            self.acks.insert((to_a, resp.cseq), ack);
            if is_sdp(resp.header("Content-Type"), &resp.body) {
                let req = pb::UpdateSessionRequest {
                    session_id: session,
                    remote_sdp: String::from_utf8_lossy(&resp.body).into_owned(),
                    is_offer: false,
                };
                if let Err(e) = mgr.update_session(req).await {
                    info!(call_id = %self.invite.call_id, cause = %e.message(), "answer to the moving re-INVITE refused");
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
            // stay where we are; a leg that did move is brought back by
            // the next re-INVITE from either side (rare: a phone refusing
            // a plain re-INVITE)
            warn!(call_id = %self.invite.call_id, code, "a leg refused the move; media stays");
            if let Some(m) = self.migration.take() {
                let _ = m.mgr.destroy(&m.a).await;
                let _ = m.mgr.destroy(&m.b).await;
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
        let _ = old.destroy(&old_a).await;
        if let Some(b) = old_b {
            let _ = old.destroy(&b).await;
        }
        info!(call_id = %self.invite.call_id, from = %old.name, to = %media.mgr.name, "call moved");
    }

    // ----------------------------------------------------------------------
    // media actions
    // ----------------------------------------------------------------------

    /// Answers the call if nobody has yet.
    pub(super) fn ensure_answered(&mut self) {
        if self.a_answered.is_none() {
            self.answer_locally();
        }
    }

    pub(super) async fn play(
        &mut self,
        rx: &mut mpsc::UnboundedReceiver<Event>,
        files: Vec<String>,
        repeat: u32,
    ) -> Served {
        self.ensure_answered();
        let Some(media) = self.media.as_ref() else {
            debug!(call_id = %self.invite.call_id, "play_audio on a call without media: skipped");
            return Served::Done(String::new());
        };
        let (mgr, a) = (Arc::clone(&media.mgr), media.a.clone());
        match mgr.play(&a, files, repeat).await {
            Ok(stream) => self.serve_a(rx, Until::Playback(stream)).await,
            Err(e) => {
                warn!(call_id = %self.invite.call_id, cause = %e.message(), "play_audio failed");
                Served::Done(String::new())
            }
        }
    }

    pub(super) async fn echo(
        &mut self,
        rx: &mut mpsc::UnboundedReceiver<Event>,
        timeout: Option<Duration>,
    ) -> Served {
        self.ensure_answered();
        if let Some(media) = self.media.as_ref() {
            let (mgr, a) = (Arc::clone(&media.mgr), media.a.clone());
            if let Err(e) = mgr.echo(&a).await {
                warn!(call_id = %self.invite.call_id, cause = %e.message(), "echo failed");
            }
        }
        // "forever" is bounded by the RTP timeout and the caller's BYE
        let deadline = Instant::now() + timeout.unwrap_or(Duration::from_secs(86_400));
        self.serve_a(rx, Until::Deadline(deadline)).await
    }

    pub(super) async fn record(&mut self, file: String, both_sides: bool) {
        let Some(media) = self.media.as_mut() else {
            debug!(call_id = %self.invite.call_id, "record on a call without media: skipped");
            return;
        };
        if both_sides {
            media.record_bridge = Some(file);
            return;
        }
        let (mgr, a) = (Arc::clone(&media.mgr), media.a.clone());
        match mgr.record(&a, &file, false).await {
            Ok(path) => info!(call_id = %self.invite.call_id, %path, "recording the caller"),
            Err(e) => {
                warn!(call_id = %self.invite.call_id, cause = %e.message(), "recording not started")
            }
        }
    }

    /// Serves the answered caller's leg (ACK, BYE, re-INVITE, DTMF, RTP
    /// timeout, 2xx retransmission) until `until` or the call ends.
    pub(super) async fn serve_a(
        &mut self,
        rx: &mut mpsc::UnboundedReceiver<Event>,
        mut until: Until,
    ) -> Served {
        loop {
            if let Until::Digits { max, .. } = &until {
                let end = self.digits.iter().position(|d| *d == '#');
                if end.is_some() || self.digits.len() >= *max {
                    let n = end.unwrap_or(*max);
                    let got: String = self.digits.drain(..n).collect();
                    if end.is_some() {
                        self.digits.pop_front(); // the '#'
                    }
                    return Served::Done(got);
                }
            }
            let deadline = match &until {
                Until::Deadline(d) | Until::Digits { deadline: d, .. } => Some(*d),
                Until::Playback(_) => None,
            };
            let resend = self.resend_at();
            let playback = async {
                match &mut until {
                    Until::Playback(s) => s.next().await,
                    _ => std::future::pending().await,
                }
            };
            let ev = tokio::select! {
                ev = rx.recv() => ev,
                p = playback => {
                    use pb::playback_event::Kind;
                    match p {
                        Some(Ok(e)) if e.kind == Kind::Started as i32 => continue,
                        _ => return Served::Done(String::new()),
                    }
                }
                () = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                    let got: String = self.digits.drain(..).filter(|d| *d != '#').collect();
                    return Served::Done(got);
                }
                () = tokio::time::sleep_until(resend.unwrap_or_else(Instant::now)), if resend.is_some() => {
                    if !self.resend_2xx() {
                        self.bye_caller("system");
                        return Served::Ended;
                    }
                    continue;
                }
            };
            let Some(ev) = ev else {
                return Served::Ended;
            };
            if self.serve_a_event(ev).await {
                return Served::Ended;
            }
        }
    }

    /// One event while the caller's leg is answered but not bridged; true
    /// when the call is over.
    async fn serve_a_event(&mut self, ev: Event) -> bool {
        match ev {
            Event::Request {
                leg: LegId::A,
                req,
                tx,
            } => {
                let method = req.method.to_string();
                self.calls.metrics.requests_in.inc(&method);
                let Some(tx) = tx else {
                    if req.cseq == self.invite.cseq {
                        self.a_acked = true;
                    }
                    if is_sdp(req.header("Content-Type"), &req.body) {
                        self.caller_answer(&req.body).await;
                    }
                    return false;
                };
                match method.as_str() {
                    "BYE" => {
                        self.calls.respond(&tx, &req, 200, "OK");
                        self.ended("caller", None);
                        true
                    }
                    "INVITE" | "UPDATE" => {
                        self.answer_reoffer(LegId::A, *req, tx).await;
                        false
                    }
                    _ => {
                        // INFO, OPTIONS, MESSAGE, a late CANCEL: accepted
                        self.calls.respond(&tx, &req, 200, "OK");
                        false
                    }
                }
            }
            Event::Request {
                req, tx: Some(tx), ..
            } => {
                self.calls
                    .respond(&tx, &req, 481, "Call/Transaction Does Not Exist");
                false
            }
            Event::Client { id, code, bytes } => {
                if let Some(Pending::Invite(i)) = self.pending.remove(&id) {
                    self.late_fork_answer(id, i, code, &bytes);
                }
                false
            }
            Event::Hangup => {
                self.bye_caller("system");
                true
            }
            Event::Media { session, event } => self.media_event(&session, event),
            _ => false,
        }
    }

    /// A fork's answer after the dial that made it is over (another fork
    /// won, or the caller gave up): a 2xx gets ACK + BYE, a provisional
    /// gets the CANCEL it is owed (one cannot be sent before the fork's
    /// first provisional, RFC 3261 §9.1), a final ends the fork.
    pub(super) fn late_fork_answer(&mut self, id: u64, i: usize, code: u16, bytes: &Bytes) {
        if (200..300).contains(&code) {
            if let Ok(Message::Response(resp)) = switchboard_sip::message::parse(bytes) {
                self.forks[i].dialog.uac_confirm(&resp);
            }
            self.ack_fork(i, None);
            self.bye_fork(i);
        } else if code < 200 {
            if self.forks[i].state == ForkState::Trying {
                self.forks[i].state = ForkState::Early;
            }
            if self.forks[i].cancel_wanted && !self.forks[i].cancel_sent {
                self.cancel_fork(i);
            }
            self.pending.insert(id, Pending::Invite(i));
        } else {
            self.forks[i].state = ForkState::Done;
            self.forks[i].final_code = Some(code);
        }
    }

    /// DTMF and RTP timeouts; true when the call is over.
    pub(super) fn media_event(&mut self, session: &str, event: MediaEvent) -> bool {
        let is_a = self.media.as_ref().is_some_and(|m| m.a == session);
        match event {
            MediaEvent::Dtmf(d) => {
                if is_a {
                    self.digits.push_back(d);
                    // a caller typing far ahead must not grow this forever
                    while self.digits.len() > 64 {
                        self.digits.pop_front();
                    }
                }
                false
            }
            MediaEvent::RtpTimeout => {
                let live = is_a
                    || self
                        .media
                        .as_ref()
                        .and_then(|m| m.bridged.and_then(|w| m.b.get(w)?.as_deref()))
                        == Some(session);
                if !live {
                    return false;
                }
                info!(call_id = %self.invite.call_id, session, "RTP timeout: ending the call");
                self.hangup_reason = Some("RTP timeout".into());
                self.hangup_side = "system";
                if let Some(w) = self.winner
                    && self.forks[w].state == ForkState::Answered
                {
                    self.bye_fork(w);
                }
                if self.a_answered.is_some() {
                    let (bytes, branch) = self.a.request("BYE", None, &[]);
                    self.send_request(&branch, "BYE", self.a.flow, bytes, Pending::Ignore);
                }
                true
            }
        }
    }

    /// A re-INVITE/UPDATE answered here instead of relayed: the manager
    /// answers an offer; a re-INVITE without one gets our offer (the ACK
    /// answers), an UPDATE without one a plain 200.
    pub(super) async fn answer_reoffer(
        &mut self,
        leg: LegId,
        req: Request,
        tx: switchboard_sip_stack::transaction::ServerTx,
    ) {
        let body = if is_sdp(req.header("Content-Type"), &req.body) {
            match self.reoffer(leg, None, &req.body).await {
                Some(Ok((answer, _))) => Some(answer),
                Some(Err(code)) => {
                    self.calls
                        .respond(&tx, &req, code, switchboard_sip::reason_phrase(code));
                    return;
                }
                None => None,
            }
        } else if let (Some(media), true) =
            (self.media.as_mut(), req.method.to_string() == "INVITE")
        {
            // an UPDATE without an offer (a refresh) gets a 200 without one
            let mut offer = None;
            if let Some(session_id) = media.session(leg) {
                let r = pb::CreateOfferRequest {
                    session_id,
                    direction: pb::Direction::Sendrecv as i32,
                };
                offer = media.mgr.create_offer(r).await.ok();
            }
            if offer.is_some() && leg == LegId::A {
                media.a_late = true;
            }
            offer.map(|o| o.local_sdp.into_bytes())
        } else {
            None
        };
        let flow = match leg {
            LegId::A => self.a.flow,
            LegId::B(i) => self.forks[i].dialog.flow,
        };
        let mut b = response(&req, 200, "OK");
        if req.method.to_string() == "INVITE" {
            b = b.header("Contact", &our_contact(&flow));
        }
        if let Some(body) = body {
            b = b.body("application/sdp", body);
        }
        self.calls.metrics.responses_out.inc(200);
        tx.respond(200, Bytes::from(b.build()));
    }
}
