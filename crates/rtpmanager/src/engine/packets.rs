//! The receive path: one task per socket of each session.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use switchboard_media::dtmf::TelephoneEvent;
use switchboard_media::g711::Codec;
use switchboard_media::learning::Verdict;
use switchboard_media::rtcp;
use switchboard_media::rtp_header::{RtpView, is_rtcp};
use tracing::{debug, info};

use super::session::{Mode, Session, State};
use super::{EventKind, OFFER_TE_PT, lock};
use crate::codec::{AudioCodec, OPUS_TS_PER_SAMPLE};
use crate::stream::Source;

/// Buffers a receive task reuses for every packet.
struct Scratch {
    /// An SRTP leg's packet, decrypted.
    plain: Vec<u8>,
    out: Vec<u8>,
    payload: Vec<u8>,
    samples: Vec<i16>,
}

/// Receives the leg's RTP until the session stops.
pub(super) async fn rtp_loop(session: Arc<Session>) {
    let cancel = session.cancel.clone();
    // the cancellation future is made once, not per packet; each wake-up
    // drains every datagram queued on the socket
    let serve = async {
        let mut buf = vec![0u8; 2048];
        let mut scratch = Scratch {
            plain: Vec::with_capacity(2048),
            out: Vec::with_capacity(2048),
            payload: Vec::with_capacity(1024),
            samples: Vec::with_capacity(1024),
        };
        loop {
            if session.rtp.readable().await.is_err() {
                continue;
            }
            loop {
                match session.rtp.try_recv_from(&mut buf) {
                    Ok((n, from)) => on_rtp(&session, &buf[..n], from, &mut scratch),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    // ICMP errors of earlier sends surface here; keep serving
                    Err(_) => continue,
                }
            }
        }
    };
    tokio::select! {
        _ = cancel.cancelled() => {}
        _ = serve => {}
    }
}

/// Counts a packet from an address the leg's source is not locked to.
pub(super) fn foreign(session: &Session, st: &mut State, from: SocketAddr, what: &str) {
    session
        .counters
        .foreign_dropped
        .fetch_add(1, Ordering::Relaxed);
    st.foreign += 1;
    if st.foreign == 1 {
        info!(session = %session.id, call_id = %session.call_id, %from, what, "packets from a foreign address dropped");
    }
}

/// Counts an SRTP or SRTCP packet that did not authenticate.
fn srtp_refused(session: &Session, st: &mut State, from: SocketAddr) {
    session
        .counters
        .srtp_dropped
        .fetch_add(1, Ordering::Relaxed);
    st.dropped += 1;
    st.srtp_refused += 1;
    if st.srtp_refused == 1 {
        info!(session = %session.id, call_id = %session.call_id, %from, "SRTP packets that do not authenticate dropped");
    }
}

fn on_rtp(session: &Arc<Session>, packet: &[u8], from: SocketAddr, scratch: &mut Scratch) {
    // a WebRTC leg's port also carries STUN and DTLS: only SRTP goes on
    if session.webrtc && !super::webrtc::on_datagram(session, packet, from) {
        return;
    }
    // an SRTP leg's packets are authenticated and decrypted before anything
    // else looks at them (source learning included)
    let packet = {
        let mut guard = lock(&session.state);
        let st = &mut *guard;
        match st.srtp.as_mut() {
            None => packet,
            Some(srtp) => {
                let ok = if is_rtcp(packet) {
                    srtp.unprotect_rtcp(packet, &mut scratch.plain)
                } else {
                    srtp.unprotect_rtp(packet, &mut scratch.plain)
                };
                if !ok {
                    srtp_refused(session, st, from);
                    return;
                }
                &scratch.plain[..]
            }
        }
    };
    if is_rtcp(packet) {
        // RTCP multiplexed on the RTP port: only from the locked source
        let mut st = lock(&session.state);
        if st.source.is_locked_to(from) {
            st.rtcp_received += 1;
        } else {
            foreign(session, &mut st, from, "RTCP");
        }
        return;
    }
    let Some(rtp) = RtpView::parse(packet) else {
        lock(&session.state).dropped += 1;
        return;
    };
    let now = Instant::now();
    let pt = rtp.payload_type();
    let mut digit = None;
    let (target, ts8k) = {
        let mut guard = lock(&session.state);
        let st = &mut *guard;
        match st.source.on_packet(from, rtp.ssrc(), rtp.sequence()) {
            Verdict::Accept => {}
            Verdict::Locked(addr, origin) => {
                debug!(session = %session.id, %addr, ?origin, "RTP source locked");
            }
            Verdict::Probation => return,
            Verdict::Foreign => {
                foreign(session, st, from, "RTP");
                return;
            }
        }
        st.last_rx = now;
        st.remote_ssrc = Some(rtp.ssrc());
        // the packet's time in 8 kHz units (an Opus leg's clock, its
        // telephone-events' included, is 48 kHz)
        let ts8k = match st.opus.as_mut() {
            Some(opus) if Codec::from_payload_type(pt).is_none() => {
                opus.rx_timestamp_8k(rtp.timestamp())
            }
            _ => rtp.timestamp(),
        };
        let arrival = (now.saturating_duration_since(session.created).as_micros() / 125) as u32;
        st.stats.on_packet(rtp.sequence(), ts8k, arrival);
        let is_event = st.te_pt == Some(pt) || (st.te_pt.is_none() && pt == OFFER_TE_PT);
        if is_event
            && let Some(d) = st
                .dtmf
                .on_packet(rtp.timestamp(), rtp.marker(), rtp.payload())
        {
            let duration_ms = TelephoneEvent::parse(rtp.payload())
                .map(|e| u32::from(e.duration) / 8)
                .unwrap_or(0);
            digit = Some((d, duration_ms));
        }
        // `None`: a telephone-event
        let audio = if is_event {
            Some(None)
        } else if let Some((opus_pt, AudioCodec::Opus)) = st.codec
            && opus_pt == pt
        {
            // decoded here, once, by the leg's own decoder (its history
            // conceals losses): the samples serve a recording and any
            // G.711 leg it is relayed to
            scratch.samples.clear();
            let decoded = st
                .opus
                .as_mut()
                .is_some_and(|opus| opus.decode(rtp.payload(), &mut scratch.samples));
            if !decoded {
                st.dropped += 1;
                return;
            }
            if let Some(tap) = st.recorder.as_ref() {
                tap.push(&scratch.samples);
            }
            Some(Some(AudioCodec::Opus))
        } else if let Some(codec) = Codec::from_payload_type(pt) {
            if let Some(tap) = st.recorder.as_ref() {
                scratch.samples.clear();
                codec.decode(rtp.payload(), &mut scratch.samples);
                tap.push(&scratch.samples);
            }
            Some(Some(AudioCodec::G711(codec)))
        } else {
            // comfort noise and unknown payload types are not relayed
            None
        };
        let target = match (&st.mode, audio) {
            (Mode::Bridged(peer), Some(audio)) => peer.upgrade().map(|p| (p, audio)),
            (Mode::Echo, Some(audio)) => Some((session.clone(), audio)),
            _ => None,
        };
        (target, ts8k)
    };
    if let Some((digit, duration_ms)) = digit {
        debug!(session = %session.id, %digit, "DTMF");
        session.emit(EventKind::Dtmf { digit, duration_ms });
    }
    let Some((target, audio)) = target else {
        return;
    };
    let mut guard = lock(&target.state);
    let st = &mut *guard;
    let (out_pt, body, ts): (u8, &[u8], u32) = match audio {
        None => {
            // the far leg hears telephone-events only if it negotiated them
            let Some(te) = st.te_pt else {
                return;
            };
            let clock = st.codec.map_or(1, |(_, c)| c.ts_per_sample());
            (te, rtp.payload(), ts8k.wrapping_mul(clock))
        }
        Some(from) => match st.codec {
            // the same codec: relayed as it is
            Some((out_pt, to)) if to == from => (out_pt, rtp.payload(), rtp.timestamp()),
            Some((out_pt, AudioCodec::G711(to))) => {
                scratch.payload.clear();
                match from {
                    AudioCodec::G711(from) => {
                        scratch.payload.extend_from_slice(rtp.payload());
                        Codec::transcode(from, to, &mut scratch.payload);
                    }
                    // decoded on receipt
                    AudioCodec::Opus => to.encode(&scratch.samples, &mut scratch.payload),
                }
                (out_pt, scratch.payload.as_slice(), ts8k)
            }
            Some((out_pt, AudioCodec::Opus)) => {
                if let AudioCodec::G711(from) = from {
                    scratch.samples.clear();
                    from.decode(rtp.payload(), &mut scratch.samples);
                }
                let encoded = st
                    .opus
                    .as_mut()
                    .is_some_and(|opus| opus.encode(&scratch.samples, &mut scratch.payload));
                if !encoded {
                    // not a frame length Opus has (a 30 ms G.711 packet)
                    st.dropped += 1;
                    return;
                }
                (
                    out_pt,
                    scratch.payload.as_slice(),
                    ts8k.wrapping_mul(OPUS_TS_PER_SAMPLE),
                )
            }
            None => (pt, rtp.payload(), rtp.timestamp()),
        },
    };
    target.send(
        st,
        Source::Relay(rtp.ssrc()),
        rtp.sequence(),
        ts,
        out_pt,
        body,
        rtp.marker(),
        &mut scratch.out,
    );
}

/// RTCP of one leg. Incoming reports are accepted by the same learning
/// rules as RTP (see [`switchboard_media::learning::RtcpSource`]) and
/// counted; an SR's time is kept for our LSR/DLSR. They are not relayed,
/// since the far leg hears our SSRC and numbering, not the source's. Every
/// `interval` the leg gets our own compound report: SR while we send to it
/// (else RR), a reception report of its stream, SDES CNAME.
pub(super) async fn rtcp_loop(session: Arc<Session>, interval: Duration) {
    let mut buf = vec![0u8; 1500];
    let mut plain = Vec::with_capacity(1500);
    // spread the sessions' reports over the interval instead of sending
    // them all at once
    let spread = interval.as_millis().max(1) as u64;
    let offset = Duration::from_millis(u64::from(rand::random::<u16>()) % spread);
    let mut tick =
        tokio::time::interval_at(tokio::time::Instant::now() + interval + offset, interval);
    let cname = format!("{}@{}", session.id, session.local.ip());
    loop {
        tokio::select! {
            r = session.rtcp.recv_from(&mut buf) => {
                let Ok((n, from)) = r else { continue };
                let mut guard = lock(&session.state);
                let st = &mut *guard;
                if session.webrtc {
                    // rtcp-mux: a WebRTC leg's RTCP comes on its RTP port
                    foreign(&session, st, from, "RTCP");
                    continue;
                }
                let packet = match st.srtp.as_mut() {
                    None => &buf[..n],
                    Some(srtp) => {
                        if !srtp.unprotect_rtcp(&buf[..n], &mut plain) {
                            srtp_refused(&session, st, from);
                            continue;
                        }
                        &plain[..]
                    }
                };
                let sender = rtcp::sender_ssrc(packet);
                match st.rtcp_source.on_packet(from, sender, &st.source, st.remote_ssrc) {
                    Verdict::Accept | Verdict::Locked(..) => {
                        st.rtcp_received += 1;
                        if let Some((_, middle)) = rtcp::parse_sender_report(packet) {
                            st.last_sr = Some((middle, Instant::now()));
                        }
                    }
                    Verdict::Probation | Verdict::Foreign => foreign(&session, st, from, "RTCP"),
                }
            }
            _ = tick.tick() => {
                let report = {
                    let mut st = lock(&session.state);
                    st.rtcp_report(&cname).and_then(|(to, mut bytes)| match st.srtp.as_mut() {
                        Some(srtp) => srtp.protect_rtcp(&mut bytes).then_some((to, bytes)),
                        None => Some((to, bytes)),
                    })
                };
                if let Some((to, bytes)) = report {
                    let socket = if session.webrtc { &session.rtp } else { &session.rtcp };
                    let _ = socket.try_send_to(&bytes, to);
                }
            }
            _ = session.cancel.cancelled() => return,
        }
    }
}
