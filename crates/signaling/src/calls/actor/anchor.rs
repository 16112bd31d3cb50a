//! Media anchoring of one call: its sessions on an RTP manager, the SDP
//! each leg gets, and the dialplan's media actions.
//!
//! The caller's leg gets a session when the call starts (its offer is
//! answered by the manager, or the manager's offer goes out in our 200
//! when the INVITE had none); every B-leg gets its own session and the
//! manager's offer, which lists PCMU and PCMA whatever the caller offered,
//! so the manager transcodes when the two sides pick different codecs.
//! A leg reached over SIP over WebSocket is a browser's (JsSIP, SIP.js):
//! the manager's offer to it is WebRTC (`UDP/TLS/RTP/SAVPF`, ICE-lite,
//! DTLS-SRTP), see [`profile`].
//! Early media and the answer bridge the caller's session to the fork's.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use switchboard_events::{SessionEvent, SessionVerb};
use switchboard_rtpmanager_api::v1 as pb;
use switchboard_rtpmanager_api::v1::session_event;
use switchboard_sip::message::{Method, Request};
use switchboard_sip::response::response;
use switchboard_sip::sdp;
use switchboard_sip_stack::dialog::our_contact;
use switchboard_sip_stack::target::{Target, TransportKind};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tonic::Code;
use tracing::{debug, info, warn};

use super::{Call, Side, Wait};
use crate::calls::{Event, LegId, MediaEvent};
use crate::media::Manager;

pub(super) use super::migrate::Migration;

/// The call's sessions on its RTP manager.
pub(in crate::calls) struct CallMedia {
    pub(in crate::calls) mgr: Arc<Manager>,
    /// The caller's session.
    pub(in crate::calls) a: String,
    /// What the caller gets from us: the answer to its offer, or our offer
    /// when its INVITE had none (its ACK then carries the answer).
    pub(in crate::calls) a_sdp: String,
    pub(in crate::calls) a_late: bool,
    /// One session per fork, by fork index (`None`: not anchored).
    pub(in crate::calls) b: Vec<Option<String>>,
    /// The fork whose session is bridged to the caller's.
    pub(in crate::calls) bridged: Option<usize>,
    /// A both-sides recording to start when the bridge is up.
    pub(in crate::calls) record_bridge: Option<String>,
}

impl CallMedia {
    /// The session of a leg, if it has one.
    pub(in crate::calls) fn session(&self, leg: LegId) -> Option<String> {
        match leg {
            LegId::A => Some(self.a.clone()),
            LegId::B(i) => self.b.get(i).cloned().flatten(),
        }
    }
}

/// A re-offer the manager answered.
pub(super) struct Reoffered {
    /// Our answer for the leg that offered.
    pub(super) answer: Vec<u8>,
    /// The offer for the other leg (same direction: a hold is passed on).
    pub(super) other_offer: Option<Vec<u8>>,
    pub(super) direction: sdp::Direction,
}

pub(in crate::calls) fn is_sdp(content_type: Option<&str>, body: &[u8]) -> bool {
    !body.is_empty()
        && content_type.is_some_and(|ct| {
            ct.split(';')
                .next()
                .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/sdp"))
        })
}

pub(super) fn family(ip: std::net::IpAddr) -> &'static str {
    if ip.is_ipv6() { "IP6" } else { "IP4" }
}

/// The media profile of the offers the manager writes for a leg whose
/// signaling flow is `flow`: a contact over WS or WSS is a browser, which
/// takes only WebRTC; any other is offered plain RTP/AVP (or RTP/SAVP).
pub(super) fn profile(flow: &Target) -> pb::Profile {
    match flow.transport {
        TransportKind::Ws | TransportKind::Wss => pb::Profile::Webrtc,
        TransportKind::Udp | TransportKind::Tcp | TransportKind::Tls => pb::Profile::Unspecified,
    }
}

pub(super) fn pb_direction(d: sdp::Direction) -> pb::Direction {
    match d {
        sdp::Direction::SendRecv => pb::Direction::Sendrecv,
        sdp::Direction::SendOnly => pb::Direction::Sendonly,
        sdp::Direction::RecvOnly => pb::Direction::Recvonly,
        sdp::Direction::Inactive => pb::Direction::Inactive,
    }
}

/// A media file name from a dialplan template: `${variables}` are
/// expanded with their values made safe for a file name (a peer controls
/// caller ids and Call-IDs: only letters, digits and `-_+@` of theirs reach
/// the path, so no `/`, `\`, `..` or control character), while separators
/// the dialplan itself wrote stay.
pub(super) fn file_name(template: &str, vars: &HashMap<String, String>) -> String {
    let safe: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| {
            let s: String = v
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '+' | '@') {
                        c
                    } else {
                        '_'
                    }
                })
                .collect();
            (k.clone(), s)
        })
        .collect();
    crate::dialplan::expand(template, &safe)
}

impl Call {
    /// Whether the route requires SRTP and the caller offers plain RTP: the
    /// call is refused 488 whether or not its media is anchored. An INVITE
    /// without SDP (late offer) gets our offer, RTP/SAVP under this policy.
    pub(super) fn srtp_refused(&self) -> bool {
        if self.route.srtp != crate::dialplan::Srtp::Required
            || !is_sdp(self.invite.header("Content-Type"), &self.invite.body)
        {
            return false;
        }
        // SDP the manager cannot read is refused by it, 488 as well
        sdp::parse(&self.invite.body).is_ok_and(|d| !d.is_savp())
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
                call_id: self.id.clone(),
                leg: "A".into(),
                remote_sdp: offer.clone(),
                address_family: family(self.a.source.local.ip()).into(),
                // the route's `srtp`: with "required" a plain offer (or a
                // plain answer to our late-offer SDP) is refused
                srtp: self.route.srtp.policy().into(),
                // with an offer, the offer decides; our late-offer SDP to
                // a browser is WebRTC
                profile: if a_late {
                    profile(&self.a.source).into()
                } else {
                    pb::Profile::Unspecified.into()
                },
            };
            match mgr.create_session(req).await {
                Ok(r) => {
                    self.watch_session(&mgr, &r.session_id);
                    self.session_event(SessionVerb::Created, &r.session_id, &mgr.name, None);
                    debug!(call = %self.id, manager = %mgr.name, session = %r.session_id, "caller's media anchored");
                    if !a_late {
                        self.a.peer.remote_sdp = Some(self.invite.body.clone());
                    }
                    self.calls.set_manager(&self.id, Some(mgr.name.clone()));
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
                    info!(call = %self.id, cause = %e.message(), "caller's SDP refused");
                    return Err((488, "Not Acceptable Here"));
                }
                Err(e) => {
                    warn!(call = %self.id, manager = %mgr.name, cause = %e, "RTP manager refused a session; trying the next");
                }
            }
        }
        Err((503, "Service Unavailable"))
    }

    /// Forwards the session's DTMF and RTP timeouts into the call's mailbox.
    /// The watch is resumed after a broken stream (the manager reads an
    /// open stream as "signaling still wants this session") and ends with
    /// the session or the call.
    pub(super) fn watch_session(&self, mgr: &Arc<Manager>, session: &str) {
        let (tx, mut rx) = mpsc::channel(16);
        tokio::spawn(crate::media::watch_session_events(
            Arc::clone(mgr),
            session.to_owned(),
            tx,
        ));
        let session = session.to_owned();
        let mailbox: mpsc::Sender<Event> = self.mailbox.clone();
        tokio::spawn(async move {
            while let Some(ev) = rx.recv().await {
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
                if mailbox.send(msg).await.is_err() {
                    return;
                }
            }
        });
    }

    /// A session for fork `index`, reached over `flow`, and the offer its
    /// INVITE carries. `None` when the manager cannot take it (the fork is
    /// not started).
    pub(super) async fn fork_offer(
        &mut self,
        index: usize,
        flow: &Target,
        srtp: crate::dialplan::Srtp,
    ) -> Option<Vec<u8>> {
        let media = self.media.as_ref()?;
        let req = pb::CreateSessionRequest {
            call_id: self.id.clone(),
            leg: format!("B{}", index + 1),
            remote_sdp: String::new(),
            address_family: family(flow.remote.ip()).into(),
            // the callee is offered plain RTP/AVP, which any phone takes
            // (a browser over WebSocket: WebRTC, DTLS-SRTP; a trunk with
            // "srtp": "required": RTP/SAVP with our a=crypto)
            srtp: srtp.policy().into(),
            profile: profile(flow).into(),
        };
        let mgr = Arc::clone(&media.mgr);
        match mgr.create_session(req).await {
            Ok(r) => {
                self.watch_session(&mgr, &r.session_id);
                self.session_event(SessionVerb::Created, &r.session_id, &mgr.name, None);
                let media = self.media.as_mut()?;
                if media.b.len() <= index {
                    media.b.resize(index + 1, None);
                }
                media.b[index] = Some(r.session_id);
                Some(r.local_sdp.into_bytes())
            }
            Err(e) => {
                warn!(call = %self.id, cause = %e, "no media session for a fork; not dialled");
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
            info!(call = %self.id, cause = %e.message(), "callee's SDP answer refused");
            return false;
        }
        self.forks[i].peer.remote_sdp = Some(body.to_vec());
        if !already {
            if let Err(e) = mgr.bridge(&a, &b).await {
                warn!(call = %self.id, cause = %e, "bridge failed");
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
                Ok(path) => info!(call = %self.id, %path, "recording the call"),
                Err(e) => {
                    warn!(call = %self.id, cause = %e.message(), "recording not started")
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
        match media.mgr.update_session(req).await {
            Ok(_) => self.a.peer.remote_sdp = Some(body.to_vec()),
            Err(e) => info!(call = %self.id, cause = %e.message(), "caller's SDP answer refused"),
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
    ) -> Option<Result<Reoffered, u16>> {
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
        Some(Ok(Reoffered {
            answer,
            other_offer,
            direction,
        }))
    }

    /// The leg's answer to an offer of ours (relayed re-offer, refresh,
    /// late offer in a re-INVITE's ACK).
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
        match media.mgr.update_session(req).await {
            Ok(_) => {
                if let Some(p) = self.peer_mut(leg) {
                    p.remote_sdp = Some(answer.to_vec());
                }
            }
            Err(e) => info!(call = %self.id, cause = %e.message(), "re-INVITE answer refused"),
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
        let a_id = media.a.clone();
        let b_ids: Vec<(usize, String)> = media
            .b
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.clone().map(|s| (i, s)))
            .collect();
        // all legs at once: a slow manager costs the call one request
        // timeout, not one per leg (a call ending at shutdown must write its
        // CDR within the shutdown's bound)
        let (a, bs) = tokio::join!(
            mgr.destroy(&a_id),
            futures_util::future::join_all(b_ids.iter().map(|(_, s)| mgr.destroy(s)))
        );
        let a = a.ok();
        self.session_event(SessionVerb::Destroyed, &a_id, &mgr.name, None);
        let mut b_info = None;
        for ((i, s), info) in b_ids.iter().zip(bs) {
            self.session_event(SessionVerb::Destroyed, s, &mgr.name, None);
            if Some(*i) == bridged {
                b_info = info.ok();
            }
        }
        if let Some(a) = a {
            let mos = [Some(&a), b_info.as_ref()]
                .into_iter()
                .flatten()
                .filter(|i| i.packets_received > 0)
                .map(|i| i.mos)
                .fold(None, |m: Option<f64>, x| Some(m.map_or(x, |m| m.min(x))));
            self.media_stats = Some(super::end::MediaStats {
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
    // media actions
    // ----------------------------------------------------------------------

    pub(super) async fn play(
        &mut self,
        rx: &mut mpsc::Receiver<Event>,
        files: Vec<String>,
        repeat: u32,
    ) {
        self.ensure_answered();
        let Some(media) = self.media.as_ref() else {
            debug!(call = %self.id, "play_audio on a call without media: skipped");
            return;
        };
        let (mgr, a) = (Arc::clone(&media.mgr), media.a.clone());
        match mgr.play(&a, files, repeat).await {
            Ok(stream) => {
                self.wait(rx, Wait::Playback(stream)).await;
            }
            Err(e) => warn!(call = %self.id, cause = %e.message(), "play_audio failed"),
        }
    }

    pub(super) async fn echo(&mut self, rx: &mut mpsc::Receiver<Event>, timeout: Option<Duration>) {
        self.ensure_answered();
        if let Some(media) = self.media.as_ref() {
            let (mgr, a) = (Arc::clone(&media.mgr), media.a.clone());
            if let Err(e) = mgr.echo(&a).await {
                warn!(call = %self.id, cause = %e.message(), "echo failed");
            }
        }
        // "forever" is bounded by the RTP timeout, the caller's BYE and
        // MAX_CALL_DURATION
        let deadline = Instant::now() + timeout.unwrap_or(Duration::from_secs(86_400));
        self.wait(rx, Wait::Deadline(deadline)).await;
    }

    pub(super) async fn record(&mut self, file: String, both_sides: bool) {
        let Some(media) = self.media.as_mut() else {
            debug!(call = %self.id, "record on a call without media: skipped");
            return;
        };
        if both_sides {
            media.record_bridge = Some(file);
            return;
        }
        let (mgr, a) = (Arc::clone(&media.mgr), media.a.clone());
        match mgr.record(&a, &file, false).await {
            Ok(path) => info!(call = %self.id, %path, "recording the caller"),
            Err(e) => {
                warn!(call = %self.id, cause = %e.message(), "recording not started")
            }
        }
    }

    /// DTMF and RTP timeouts.
    pub(super) fn media_event(&mut self, session: &str, event: MediaEvent) {
        let is_a = self.media.as_ref().is_some_and(|m| m.a == session);
        let manager = self.media.as_ref().map(|m| m.mgr.name.clone());
        let manager = manager.as_deref().unwrap_or_default();
        match event {
            MediaEvent::Dtmf(d) => self.session_event(SessionVerb::Dtmf, session, manager, Some(d)),
            MediaEvent::RtpTimeout => {
                self.session_event(SessionVerb::Timeout, session, manager, None);
            }
        }
        match event {
            MediaEvent::Dtmf(d) => {
                if is_a {
                    self.digits.push_back(d);
                    // a caller typing far ahead must not grow this forever
                    while self.digits.len() > 64 {
                        self.digits.pop_front();
                    }
                }
            }
            MediaEvent::RtpTimeout => {
                let live = is_a
                    || self
                        .media
                        .as_ref()
                        .and_then(|m| m.bridged.and_then(|w| m.b.get(w)?.as_deref()))
                        == Some(session);
                if live {
                    info!(call = %self.id, session, "RTP timeout: ending the call");
                    self.end_call(Side::System, "RTP timeout", 408, None);
                }
            }
        }
    }

    /// `switchboard.sessions.{id}.{verb}`, published by the replica whose
    /// call owns the session (once).
    fn session_event(&self, verb: SessionVerb, session: &str, manager: &str, digit: Option<char>) {
        self.calls
            .events
            .publish(switchboard_events::Event::session(
                verb,
                SessionEvent {
                    session_id: session.to_owned(),
                    call_uuid: Some(self.id.clone()),
                    rtpmanager: Some(manager.to_owned()),
                    digit: digit.map(String::from),
                    duration_ms: None,
                },
            ));
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
        let is_invite = req.method == Method::Invite;
        let body = if is_sdp(req.header("Content-Type"), &req.body) {
            match self.reoffer(leg, None, &req.body).await {
                Some(Ok(r)) => {
                    if let Some(p) = self.peer_mut(leg) {
                        p.remote_sdp = Some(req.body.clone());
                    }
                    Some(r.answer)
                }
                Some(Err(code)) => {
                    self.calls
                        .respond(&tx, &req, code, switchboard_sip::reason_phrase(code));
                    return;
                }
                None => None,
            }
        } else if let (Some(media), true) = (self.media.as_mut(), is_invite) {
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
        let flow = self.flow_of(leg);
        let mut b = response(&req, 200, "OK");
        if is_invite {
            b = b.header("Contact", &our_contact(&flow));
        }
        if let Some(t) = self.peer_mut(leg).and_then(|p| p.timer.as_mut()) {
            t.refreshed(Instant::now());
            b = b
                .header("Session-Expires", &t.header(true))
                .header("Require", "timer");
        }
        if let Some(body) = body {
            b = b.body("application/sdp", body);
        }
        let bytes = b.build();
        self.calls.metrics.responses_out.inc(200);
        tx.respond(200, Bytes::from(bytes.clone()));
        if is_invite {
            let reliable = flow.transport.is_reliable();
            self.unacked.push(super::relay::Unacked {
                leg,
                cseq: req.cseq,
                bytes: Bytes::from(bytes),
                resend: crate::calls::leg::Resend::start(Instant::now(), reliable),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_keep_the_dialplans_slashes_but_not_a_peers() {
        let vars: HashMap<String, String> = [
            ("call_id", "8f0c2a1e-0000-4000-8000-000000000001"),
            ("sip_call_id", "../../etc/passwd"),
            ("caller_id", "..\\x/y z"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let table = [
            ("${call_id}", "8f0c2a1e-0000-4000-8000-000000000001"),
            ("${sip_call_id}", "______etc_passwd"),
            ("calls/${caller_id}.wav", "calls/___x_y_z.wav"),
            ("a/${unknown}b", "a/b"),
        ];
        for (template, want) in table {
            let got = file_name(template, &vars);
            assert_eq!(got, want, "{template}");
            assert!(!got.contains(".."), "{got}");
        }
    }
}
