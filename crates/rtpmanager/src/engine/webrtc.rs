//! WebRTC legs in the engine: what a browser's offer must carry, our
//! answer, the demultiplexer in front of the leg's RTP path, and the DTLS
//! handshake task with its deadline.
//!
//! A leg's life: its offer is answered with our ICE-lite credentials and
//! fingerprint ([`DtlsState::AwaitingIce`]); the browser's first check that
//! authenticates with our ice-pwd pins the leg's media address (source
//! learning from SDP is off for WebRTC legs) and starts the DTLS server
//! ([`DtlsState::Handshaking`]), which has [`DTLS_DEADLINE`] to finish;
//! then the leg's SRTP keys are in place ([`DtlsState::Connected`]) and its
//! SRTP goes down the ordinary relay path. A handshake that fails or runs
//! out of time leaves the leg [`DtlsState::Failed`], counted
//! (`dtls_failed`): it relays nothing, and its silence ends the call by
//! the usual RTP timeout.
//!
//! A leg we offer to (CreateSession without an SDP, profile WebRTC) starts
//! the same way with our offer: checks are answered as soon as they come,
//! even before the browser's answer reaches us (our ice-pwd authenticates
//! them); the DTLS server then waits for the answer's fingerprints, which
//! the browser's certificate is checked against, within the same deadline.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use switchboard_sip::sdp::webrtc::{self as sdp_webrtc, Fingerprint, LocalTransport};
use switchboard_sip::sdp::{Description, Direction, LocalMedia};
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};

use super::session::{Session, State};
use super::{CODECS, EngineError, OFFER_OPUS_PT, OFFER_TE_PT, PTIME_MS, Updated, lock};
use crate::codec::{AudioCodec, OPUS_CLOCK};
use crate::srtp::{LegSrtp, SrtpPolicy};
use crate::webrtc::dtls::{self, DtlsError, FEED_QUEUE, Identity, LegConn};
use crate::webrtc::ice::{Demux, IceLite, Refused, Selected, demux};

/// How long a leg's DTLS handshake may take from its first authenticated
/// ICE check (a browser starts it at once); then the leg has failed.
pub const DTLS_DEADLINE: Duration = Duration::from_secs(10);

fn invalid(why: impl std::fmt::Display) -> EngineError {
    EngineError::InvalidArgument(format!("remote_sdp: {why}"))
}

/// The WebRTC state of one leg.
pub(super) struct WebRtcLeg {
    ice: IceLite,
    selected: Selected,
    /// The leg's `a=fingerprint`s: its DTLS certificate must match one.
    /// Empty until the browser's answer to our offer came.
    fingerprints: watch::Sender<Vec<Fingerprint>>,
    identity: Arc<Identity>,
    pub(super) dtls: DtlsState,
    /// The audio stream's mid: the browser's, or ours when we offered first.
    mid: String,
    /// An offer of ours is out (so the leg takes an answer).
    we_offered: bool,
    /// We offered and the browser's answer has not come yet.
    awaiting_answer: bool,
}

/// Where a leg's DTLS stands.
pub(super) enum DtlsState {
    /// No authenticated ICE check yet: the browser has not reached us.
    AwaitingIce,
    /// The handshake runs; the leg's DTLS datagrams go to it.
    Handshaking(Feed),
    /// The leg's SRTP keys are in `State::srtp`; DTLS datagrams (a
    /// retransmitted flight, an alert) still go to the connection.
    Connected(Feed),
    /// The handshake failed or timed out: the leg relays nothing.
    Failed,
}

/// The way into a leg's DTLS connection.
pub(super) struct Feed {
    datagrams: mpsc::Sender<Vec<u8>>,
    /// Where the connection sends: the leg's selected ICE address.
    peer: watch::Sender<SocketAddr>,
}

impl WebRtcLeg {
    fn feed(&self) -> Option<&Feed> {
        match &self.dtls {
            DtlsState::Handshaking(f) | DtlsState::Connected(f) => Some(f),
            DtlsState::AwaitingIce | DtlsState::Failed => None,
        }
    }
}

/// What a browser's offer or answer (`what`) must carry whichever it is:
/// ICE credentials of a full agent (two lite agents cannot connect, RFC
/// 8445 §2.5), a DTLS fingerprint and rtcp-mux. Returns its ICE ufrag.
fn peer_transport<'a>(d: &'a Description, what: &str) -> Result<&'a str, EngineError> {
    let t = &d.webrtc;
    let ufrag = t
        .ice_ufrag
        .as_deref()
        .filter(|u| !u.is_empty())
        .ok_or_else(|| invalid(format!("a WebRTC {what} without a=ice-ufrag")))?;
    if t.ice_pwd.as_deref().is_none_or(str::is_empty) {
        return Err(invalid(format!("a WebRTC {what} without a=ice-pwd")));
    }
    if t.ice_lite {
        return Err(invalid(format!(
            "the {what} is ICE-lite too: two lite agents cannot connect (RFC 8445 §2.5)"
        )));
    }
    if t.fingerprints.is_empty() {
        return Err(invalid(format!(
            "a WebRTC {what} without a=fingerprint (sha-256, sha-384 or sha-512)"
        )));
    }
    if !d.rtcp_mux {
        return Err(invalid(format!("a WebRTC {what} without a=rtcp-mux")));
    }
    Ok(ufrag)
}

/// Checks a browser's offer and makes the leg's WebRTC state, with fresh
/// ICE credentials of ours.
pub(super) fn on_offer(
    d: &Description,
    policy: SrtpPolicy,
    identity: &Arc<Identity>,
) -> Result<WebRtcLeg, EngineError> {
    if policy == SrtpPolicy::Disabled {
        return Err(invalid(
            "a WebRTC (DTLS-SRTP) offer and SRTP is disabled on this leg (srtp: disabled)",
        ));
    }
    let ufrag = peer_transport(d, "offer")?;
    let t = &d.webrtc;
    sdp_webrtc::answerable_setup(t.setup).map_err(invalid)?;
    let (local_ufrag, local_pwd) = sdp_webrtc::random_credentials();
    Ok(WebRtcLeg {
        ice: IceLite::new(local_ufrag, local_pwd, ufrag.to_owned()),
        selected: Selected::default(),
        fingerprints: watch::Sender::new(t.fingerprints.clone()),
        identity: identity.clone(),
        dtls: DtlsState::AwaitingIce,
        mid: t
            .mid
            .clone()
            .unwrap_or_else(|| sdp_webrtc::OFFER_MID.to_owned()),
        we_offered: false,
        awaiting_answer: false,
    })
}

/// A leg we are going to offer WebRTC to: fresh ICE credentials of ours,
/// the browser's ufrag and fingerprints to come with its answer.
pub(super) fn for_offer(
    policy: SrtpPolicy,
    identity: &Arc<Identity>,
) -> Result<WebRtcLeg, EngineError> {
    if policy == SrtpPolicy::Disabled {
        return Err(EngineError::InvalidArgument(
            "profile: a WebRTC leg is DTLS-SRTP and SRTP is disabled on this leg (srtp: disabled)"
                .into(),
        ));
    }
    let (local_ufrag, local_pwd) = sdp_webrtc::random_credentials();
    Ok(WebRtcLeg {
        ice: IceLite::new(local_ufrag, local_pwd, String::new()),
        selected: Selected::default(),
        fingerprints: watch::Sender::new(Vec::new()),
        identity: identity.clone(),
        dtls: DtlsState::AwaitingIce,
        mid: sdp_webrtc::OFFER_MID.to_owned(),
        we_offered: true,
        awaiting_answer: true,
    })
}

/// Our first offer to the leg: PCMU, PCMA, then Opus (in the order we
/// prefer them, see `negotiate::choose`), telephone-event.
pub(super) fn offer(
    media: &LocalMedia,
    leg: &WebRtcLeg,
    direction: Direction,
    ssrc: u32,
    cname: &str,
) -> String {
    let codecs: Vec<(u8, &str, u32)> = CODECS
        .iter()
        .map(|c| (c.payload_type(), c.name(), 8000))
        .chain([(OFFER_OPUS_PT, AudioCodec::Opus.name(), OPUS_CLOCK)])
        .collect();
    write_offer(
        media,
        leg,
        &codecs,
        Some(OFFER_TE_PT),
        direction,
        ssrc,
        cname,
    )
}

/// A new offer to the leg (CreateOffer: hold, resume, a session
/// refresh): the same ICE credentials, fingerprint and mid, so ICE and
/// DTLS carry on as they are; the leg's codec and telephone-event with the
/// payload types it has, or our first offer's list while it has none. The
/// browser's answer comes through UpdateSession as any answer.
pub(super) fn reoffer(
    session: &Session,
    st: &mut State,
    direction: Direction,
) -> Result<String, EngineError> {
    let media = session.media(session.next_version());
    let cname = format!("{}@{}", session.id, session.local.ip());
    let (codec, te, ssrc) = (st.codec, st.te_pt, st.out.ssrc);
    let Some(leg) = st.webrtc.as_mut() else {
        return Err(EngineError::Internal(format!(
            "session {} has no WebRTC state",
            session.id
        )));
    };
    leg.we_offered = true;
    Ok(match codec {
        Some((pt, c)) => write_offer(
            &media,
            leg,
            &[(pt, c.name(), c.clock_rate())],
            te,
            direction,
            ssrc,
            &cname,
        ),
        None => offer(&media, leg, direction, ssrc, &cname),
    })
}

fn write_offer(
    media: &LocalMedia,
    leg: &WebRtcLeg,
    codecs: &[(u8, &str, u32)],
    te: Option<u8>,
    direction: Direction,
    ssrc: u32,
    cname: &str,
) -> String {
    sdp_webrtc::offer(
        media,
        codecs,
        te,
        direction,
        PTIME_MS,
        &leg.mid,
        &leg.transport(ssrc, cname),
    )
}

impl WebRtcLeg {
    /// Our side of the leg's transport, as our offers and answers write it.
    fn transport<'a>(&'a self, ssrc: u32, cname: &'a str) -> LocalTransport<'a> {
        LocalTransport {
            ice_ufrag: self.ice.local_ufrag(),
            ice_pwd: self.ice.local_pwd(),
            fingerprint: self.identity.fingerprint(),
            ssrc,
            cname,
        }
    }
}

/// The browser's answer to our offer: its ICE ufrag (checks must name it
/// from now on) and fingerprints (the DTLS server waits for them), with
/// `a=setup:active` so that we stay the DTLS server.
fn on_answer(leg: &mut WebRtcLeg, d: &Description) -> Result<(), EngineError> {
    if !d.is_webrtc() {
        return Err(invalid(
            "the answer to our WebRTC offer is not UDP/TLS/RTP/SAVPF",
        ));
    }
    let ufrag = peer_transport(d, "answer")?;
    sdp_webrtc::answered_setup(d.webrtc.setup).map_err(invalid)?;
    leg.ice.set_remote_ufrag(ufrag.to_owned());
    leg.fingerprints.send_replace(d.webrtc.fingerprints.clone());
    leg.awaiting_answer = false;
    Ok(())
}

/// A new offer from a WebRTC leg (hold, resume): its ICE ufrag and
/// fingerprints must stay, so the transport carries on as it is. An ICE
/// restart or a new DTLS certificate is not supported (yet).
pub(super) fn on_reoffer(leg: &WebRtcLeg, d: &Description) -> Result<(), EngineError> {
    if !d.is_webrtc() {
        return Err(invalid(
            "a WebRTC leg's new offer is not UDP/TLS/RTP/SAVPF (changing transport is not supported)",
        ));
    }
    if d.webrtc.ice_ufrag.as_deref() != Some(leg.ice.remote_ufrag()) {
        return Err(invalid(
            "a=ice-ufrag changed: ICE restarts are not supported",
        ));
    }
    if *leg.fingerprints.borrow() != d.webrtc.fingerprints {
        return Err(invalid(
            "a=fingerprint changed: a new DTLS association is not supported",
        ));
    }
    Ok(())
}

/// Our answer to the leg's offer `d`.
pub(super) fn answer(
    media: &LocalMedia,
    d: &Description,
    chosen: (u8, AudioCodec),
    leg: &WebRtcLeg,
    ssrc: u32,
    cname: &str,
) -> String {
    sdp_webrtc::answer(
        media,
        d,
        (chosen.0, chosen.1.name()),
        PTIME_MS,
        &leg.transport(ssrc, cname),
    )
}

/// A new SDP on a WebRTC leg, or a WebRTC SDP on a phone's leg (refused:
/// a leg's transport is fixed at creation). Taken: the answer to our offer,
/// that answer again (a 18x then the 2xx carry it twice), the answer to a
/// re-offer of ours ([`reoffer`]) and a re-offer from the browser, each
/// keeping its ICE ufrag and fingerprints.
pub(super) fn update(
    session: &Session,
    st: &mut State,
    d: &Description,
    is_offer: bool,
    chosen: (u8, AudioCodec),
) -> Result<Updated, EngineError> {
    let Some(leg) = st.webrtc.as_mut().filter(|_| session.webrtc) else {
        return Err(EngineError::InvalidArgument(
            "remote_sdp: a WebRTC SDP on a leg created without one (a leg's transport cannot change)"
                .into(),
        ));
    };
    if !is_offer {
        if !leg.we_offered {
            return Err(invalid(
                "an answer on a WebRTC leg, which has no offer of ours to answer",
            ));
        }
        if leg.awaiting_answer {
            on_answer(leg, d)?;
        } else {
            // the answer again, or the answer to a re-offer of ours: the
            // same transport, we still the DTLS server
            on_reoffer(leg, d)?;
            sdp_webrtc::answered_setup(d.webrtc.setup).map_err(invalid)?;
        }
        st.apply_remote(d, false);
        st.set_codec(chosen)?;
        return Ok(Updated {
            local_sdp: None,
            chosen: Some(chosen),
            telephone_event: st.te_pt,
        });
    }
    if leg.awaiting_answer {
        return Err(invalid(
            "an offer from a WebRTC leg while our offer awaits its answer",
        ));
    }
    on_reoffer(leg, d)?;
    st.apply_remote(d, true);
    st.set_codec(chosen)?;
    let media = session.media(session.next_version());
    let cname = format!("{}@{}", session.id, session.local.ip());
    let text = match st.webrtc.as_ref() {
        Some(leg) => answer(&media, d, chosen, leg, st.out.ssrc, &cname),
        None => String::new(),
    };
    Ok(Updated {
        local_sdp: Some(text),
        chosen: Some(chosen),
        telephone_event: st.te_pt,
    })
}

/// What the demultiplexer decided, to be done once the leg's state is no
/// longer borrowed.
enum Step {
    /// SRTP/SRTCP with keys in place: the RTP path takes it on.
    Relay,
    Done,
    /// From an address that may not feed the leg now.
    Foreign(&'static str),
    Refused(Refused),
    /// An authenticated check moved the leg's media to this address.
    Selected(SocketAddr),
}

/// The demultiplexer in front of a WebRTC leg's RTP path (RFC 7983).
/// True: an SRTP or SRTCP packet the RTP path takes on (its SRTP
/// authenticates it); everything else is handled (or dropped) here.
pub(super) fn on_datagram(session: &Arc<Session>, packet: &[u8], from: SocketAddr) -> bool {
    let kind = demux(packet);
    let mut guard = lock(&session.state);
    let st = &mut *guard;
    let has_keys = st.srtp.is_some();
    let locked = st.source.is_locked_to(from);
    let Some(leg) = st.webrtc.as_mut() else {
        return true;
    };
    let step = match kind {
        Demux::Rtp if has_keys => Step::Relay,
        // no keys yet, nothing to authenticate it with
        Demux::Rtp if locked => {
            st.dropped += 1;
            Step::Done
        }
        Demux::Rtp => Step::Foreign("RTP"),
        Demux::Stun => match leg.ice.check(packet, from) {
            Ok(answered) => {
                let _ = session.rtp.try_send_to(&answered.response, from);
                match leg.selected.on_check(from, answered.nominated) {
                    Some(addr) => Step::Selected(addr),
                    None => Step::Done,
                }
            }
            Err(why) => Step::Refused(why),
        },
        Demux::Dtls => match leg.feed() {
            Some(feed) if locked => {
                if feed.datagrams.try_send(packet.to_vec()).is_err() {
                    st.dropped += 1;
                }
                Step::Done
            }
            _ => Step::Foreign("DTLS"),
        },
        Demux::Other => {
            st.dropped += 1;
            Step::Done
        }
    };
    match step {
        Step::Relay => return true,
        Step::Done => {}
        Step::Foreign(what) => super::packets::foreign(session, st, from, what),
        Step::Refused(why) => {
            session.counters.ice_refused.fetch_add(1, Ordering::Relaxed);
            st.dropped += 1;
            st.ice_refused += 1;
            if st.ice_refused == 1 {
                info!(session = %session.id, call_id = %session.call_id, %from, cause = %why, "STUN checks that do not authenticate dropped");
            }
        }
        Step::Selected(addr) => {
            debug!(session = %session.id, %addr, "ICE: media address selected");
            st.source.pin(addr);
            if let Some(leg) = st.webrtc.as_mut() {
                start_or_move(session, leg, addr);
            }
        }
    }
    false
}

/// The leg's media moved to `addr`: the DTLS connection follows, or starts
/// now if this is the first authenticated check.
fn start_or_move(session: &Arc<Session>, leg: &mut WebRtcLeg, addr: SocketAddr) {
    if let Some(feed) = leg.feed() {
        feed.peer.send_replace(addr);
        return;
    }
    if !matches!(leg.dtls, DtlsState::AwaitingIce) {
        return;
    }
    let (datagrams, rx) = mpsc::channel(FEED_QUEUE);
    let (peer, peer_rx) = watch::channel(addr);
    leg.dtls = DtlsState::Handshaking(Feed { datagrams, peer });
    tokio::spawn(run_dtls(
        session.clone(),
        leg.identity.clone(),
        leg.fingerprints.subscribe(),
        rx,
        peer_rx,
    ));
}

/// The leg's DTLS server, from the first authenticated check to the end
/// of the session.
async fn run_dtls(
    session: Arc<Session>,
    identity: Arc<Identity>,
    mut fingerprints: watch::Receiver<Vec<Fingerprint>>,
    rx: mpsc::Receiver<Vec<u8>>,
    peer: watch::Receiver<SocketAddr>,
) {
    let conn = Arc::new(LegConn::new(rx, &session.rtp, peer, session.local));
    // a leg we offered to may reach us before its answer does: its DTLS
    // datagrams queue until the fingerprints to check it against are here
    let handshake = tokio::time::timeout(DTLS_DEADLINE, async {
        let expected = match fingerprints.wait_for(|f| !f.is_empty()).await {
            Ok(f) => f.clone(),
            Err(_) => return Err(DtlsError::Handshake("the leg ended".into())),
        };
        dtls::accept(&identity, expected, conn).await
    });
    let outcome = tokio::select! {
        _ = session.cancel.cancelled() => return,
        r = handshake => r,
    };
    let (conn, keys) = match outcome {
        Ok(Ok(done)) => done,
        Ok(Err(e)) => return failed(&session, &e.to_string()),
        Err(_) => {
            return failed(
                &session,
                &format!(
                    "no DTLS handshake (or no answer to our offer) within {DTLS_DEADLINE:?} of the first ICE check"
                ),
            );
        }
    };
    let suite = keys.suite;
    let srtp = match LegSrtp::from_dtls(suite, &keys.local, keys.remote) {
        Ok(s) => s,
        Err(e) => return failed(&session, &e),
    };
    {
        let mut st = lock(&session.state);
        st.srtp = Some(srtp);
        if let Some(leg) = st.webrtc.as_mut()
            && let DtlsState::Handshaking(feed) =
                std::mem::replace(&mut leg.dtls, DtlsState::Failed)
        {
            leg.dtls = DtlsState::Connected(feed);
        }
    }
    info!(session = %session.id, call_id = %session.call_id, %suite, "DTLS-SRTP established");
    session.cancel.cancelled().await;
    // a close_notify to the browser, if it still listens
    let _ = tokio::time::timeout(Duration::from_millis(200), conn.close()).await;
}

fn failed(session: &Session, why: &str) {
    session.counters.dtls_failed.fetch_add(1, Ordering::Relaxed);
    let mut st = lock(&session.state);
    if let Some(leg) = st.webrtc.as_mut() {
        leg.dtls = DtlsState::Failed;
    }
    warn!(session = %session.id, call_id = %session.call_id, leg = %session.leg, cause = why, "WebRTC leg failed: no DTLS-SRTP");
}

/// Whether `st` is a WebRTC leg that may not carry media yet (or never
/// will): nothing is sent to it unencrypted.
pub(super) fn no_keys_yet(st: &State) -> bool {
    st.webrtc.is_some() && st.srtp.is_none()
}
