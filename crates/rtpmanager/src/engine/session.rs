//! One session: a leg's sockets, what it negotiated, where its packets
//! may come from, and what feeds its outgoing stream.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Instant, SystemTime};

use switchboard_media::dtmf::DtmfDetector;
use switchboard_media::learning::{Policy, RtcpSource, RtpSource};
use switchboard_media::rtcp;
use switchboard_media::rtp_header::write_header;
use switchboard_media::stats::{ReceiveStats, mos_estimate};
use switchboard_sip::sdp::{Description, Direction, LocalMedia};
use tokio::net::UdpSocket;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use super::webrtc::{WebRtcLeg, no_keys_yet};
use super::{
    Counters, EngineError, Event, EventKind, MAX_WATCHERS, SessionInfo, WATCH_QUEUE, lock,
};
use crate::codec::{AudioCodec, OpusLeg};
use crate::ports::PortPool;
use crate::recording::Tap;
use crate::srtp::{LegSrtp, SrtpPolicy};
use crate::stream::{OutStream, Source};
use switchboard_sip::sdp::crypto::Crypto;

pub(super) struct Session {
    pub(super) id: Arc<str>,
    pub(super) call_id: String,
    pub(super) leg: String,
    pub(super) created: Instant,
    pub(super) local: SocketAddr,
    /// Sockets first: they close before the lease gives the ports back.
    pub(super) rtp: Arc<UdpSocket>,
    pub(super) rtcp: Arc<UdpSocket>,
    pub(super) state: Mutex<State>,
    /// The session's event streams (bounded queues), see [`Session::emit`].
    pub(super) watchers: Mutex<Vec<mpsc::Sender<Event>>>,
    pub(super) all_events: broadcast::Sender<Event>,
    pub(super) counters: Arc<Counters>,
    pub(super) cancel: CancellationToken,
    pub(super) sdp_session_id: u64,
    pub(super) sdp_version: AtomicU64,
    /// A WebRTC leg (ICE-lite, DTLS-SRTP, rtcp-mux): fixed at creation,
    /// as a leg's transport never changes.
    pub(super) webrtc: bool,
    pub(super) _lease: Lease,
}

/// Gives the port pair back when the session is gone for good.
pub(super) struct Lease {
    pub(super) port: u16,
    pub(super) pool: Arc<Mutex<PortPool>>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        lock(&self.pool).release(self.port);
    }
}

#[derive(Default)]
pub(super) enum Mode {
    #[default]
    Idle,
    Bridged(Weak<Session>),
    Echo,
    Playing(u64, CancellationToken),
}

pub(super) struct State {
    /// Where the leg's RTP is accepted from, and where ours goes.
    pub(super) source: RtpSource,
    pub(super) rtcp_source: RtcpSource,
    /// The last accepted RTP packet (or new SDP): silence is measured from it.
    pub(super) last_rx: Instant,
    /// The last RTP timeout reported (or `last_rx`, whichever is later).
    pub(super) last_report: Instant,
    /// The codec we send to this leg (and expect from it), with its PT.
    /// Set with [`State::set_codec`].
    pub(super) codec: Option<(u8, AudioCodec)>,
    /// libopus' state while the leg talks Opus.
    pub(super) opus: Option<OpusLeg>,
    /// The leg's telephone-event PT.
    pub(super) te_pt: Option<u8>,
    /// The leg's own direction as its SDP says.
    pub(super) remote_direction: Direction,
    pub(super) mode: Mode,
    pub(super) out: OutStream,
    pub(super) stats: ReceiveStats,
    pub(super) dtmf: DtmfDetector,
    pub(super) recorder: Option<Tap>,
    /// Packets we could not parse or send.
    pub(super) dropped: u64,
    /// Packets from addresses the leg's source is not locked to.
    pub(super) foreign: u64,
    /// SRTP/SRTCP packets that did not authenticate.
    pub(super) srtp_refused: u64,
    pub(super) rtcp_received: u64,
    /// The SSRC the leg sends with (for our reception reports).
    pub(super) remote_ssrc: Option<u32>,
    /// The leg's last sender report: NTP middle 32 bits, when received.
    pub(super) last_sr: Option<(u32, Instant)>,
    /// Our packet count at the previous report (SR only when it grew).
    pub(super) reported_packets: u64,
    /// The leg's SRTP policy.
    pub(super) srtp_policy: SrtpPolicy,
    /// The leg's SRTP keys; `None`: plain RTP.
    pub(super) srtp: Option<LegSrtp>,
    /// The `a=crypto` of our last offer to the leg (`None`: it was plain).
    pub(super) offered_crypto: Option<Crypto>,
    /// ICE and DTLS of a WebRTC leg; its SRTP keys go to `srtp`.
    pub(super) webrtc: Option<WebRtcLeg>,
    /// STUN checks on a WebRTC leg that did not authenticate.
    pub(super) ice_refused: u64,
}

impl State {
    pub(super) fn new(policy: Policy) -> State {
        let now = Instant::now();
        State {
            source: RtpSource::new(policy),
            rtcp_source: RtcpSource::new(),
            last_rx: now,
            last_report: now,
            codec: None,
            opus: None,
            te_pt: None,
            remote_direction: Direction::SendRecv,
            mode: Mode::Idle,
            out: OutStream::new(),
            stats: ReceiveStats::default(),
            dtmf: DtmfDetector::new(),
            recorder: None,
            dropped: 0,
            foreign: 0,
            srtp_refused: 0,
            rtcp_received: 0,
            remote_ssrc: None,
            last_sr: None,
            reported_packets: 0,
            srtp_policy: SrtpPolicy::default(),
            srtp: None,
            offered_crypto: None,
            webrtc: None,
            ice_refused: 0,
        }
    }

    /// The leg's SDP: its address (re-opening source learning when it
    /// changed or the SDP is a new offer), telephone-event and direction.
    /// A WebRTC leg's source is never taken from SDP: only an
    /// authenticated ICE check sets it.
    pub(super) fn apply_remote(&mut self, d: &Description, reoffer: bool) {
        let addr = match (d.connection, d.audio_port) {
            (Some(ip), port) if port != 0 && !ip.is_unspecified() => {
                Some(SocketAddr::new(ip, port))
            }
            _ => None,
        };
        if self.webrtc.is_none() {
            self.source.on_sdp(addr, reoffer);
            self.rtcp_source.on_sdp(addr, reoffer);
        }
        self.te_pt = d.telephone_event;
        self.remote_direction = d.direction;
        let now = Instant::now();
        self.last_rx = now;
        self.last_report = now;
    }

    /// The leg's codec from now on: an Opus leg gets its libopus state
    /// (kept while it stays Opus), and our stream to it the 48 kHz clock.
    pub(super) fn set_codec(&mut self, chosen: (u8, AudioCodec)) -> Result<(), EngineError> {
        match chosen.1 {
            AudioCodec::Opus if self.opus.is_none() => {
                self.opus = Some(OpusLeg::new().map_err(EngineError::Internal)?);
            }
            AudioCodec::Opus => {}
            AudioCodec::G711(_) => self.opus = None,
        }
        self.out.set_clock(chosen.1.clock_rate());
        self.codec = Some(chosen);
        Ok(())
    }

    pub(super) fn set_mode(&mut self, mode: Mode) {
        if let Mode::Playing(_, cancel) = &self.mode {
            cancel.cancel();
        }
        self.out.reset_source();
        self.mode = mode;
    }

    /// Our compound RTCP report for the leg and where it goes (a WebRTC
    /// leg's on its RTP address, rtcp-mux, and only once it has keys).
    pub(super) fn rtcp_report(&mut self, cname: &str) -> Option<(SocketAddr, Vec<u8>)> {
        let to = if self.webrtc.is_some() {
            if no_keys_yet(self) {
                return None;
            }
            self.source.locked()?
        } else {
            self.rtcp_source.destination(&self.source)?
        };
        let ssrc = self.out.ssrc;
        let now = Instant::now();
        let sender = (self.out.packets > self.reported_packets).then(|| {
            let unix = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default();
            rtcp::SenderInfo {
                ntp: rtcp::ntp_from_unix(unix),
                rtp_timestamp: self.out.position(now),
                packets: self.out.packets as u32,
                octets: self.out.octets as u32,
            }
        });
        self.reported_packets = self.out.packets;
        let block = match self.remote_ssrc {
            Some(ssrc) if self.stats.packets() > 0 => {
                let (last_sr, delay) = match self.last_sr {
                    Some((middle, at)) => {
                        let d = now.saturating_duration_since(at);
                        (middle, (d.as_secs_f64() * 65536.0) as u32)
                    }
                    None => (0, 0),
                };
                Some(rtcp::ReportBlock {
                    ssrc,
                    fraction_lost: self.stats.take_interval_fraction_lost(),
                    cumulative_lost: i32::try_from(self.stats.lost()).unwrap_or(i32::MAX),
                    extended_highest_seq: self.stats.extended_max_seq(),
                    jitter: self.stats.jitter_rtp_units(),
                    last_sr,
                    delay_since_last_sr: delay,
                })
            }
            _ => None,
        };
        Some((to, rtcp::compound_report(ssrc, sender, block, cname)))
    }

    /// Whether the leg wants our audio (RFC 3264 §5.1 directions).
    pub(super) fn may_send(&self) -> bool {
        matches!(
            self.remote_direction,
            Direction::SendRecv | Direction::RecvOnly
        )
    }

    /// Whether the leg's SDP says it sends RTP (it is not holding the call).
    pub(super) fn expects_rtp(&self) -> bool {
        matches!(
            self.remote_direction,
            Direction::SendRecv | Direction::SendOnly
        )
    }
}

impl Session {
    pub(super) fn media(&self, version: u64) -> LocalMedia {
        LocalMedia {
            address: self.local.ip(),
            port: self.local.port(),
            session_id: self.sdp_session_id,
            version,
        }
    }

    pub(super) fn next_version(&self) -> u64 {
        self.sdp_version.fetch_add(1, Ordering::Relaxed) + 1
    }

    pub(super) fn set_mode(&self, mode: Mode) {
        lock(&self.state).set_mode(mode);
    }

    pub(super) fn peer(&self) -> Option<Arc<Session>> {
        match &lock(&self.state).mode {
            Mode::Bridged(p) => p.upgrade(),
            _ => None,
        }
    }

    pub(super) fn peer_id(&self) -> Option<String> {
        self.peer().map(|p| p.id.to_string())
    }

    /// A new event stream of this session.
    pub(super) fn watch(&self) -> Result<mpsc::Receiver<Event>, EngineError> {
        let mut w = lock(&self.watchers);
        w.retain(|tx| !tx.is_closed());
        if w.len() >= MAX_WATCHERS {
            return Err(EngineError::Limit(format!(
                "session {} already has {MAX_WATCHERS} event streams",
                self.id
            )));
        }
        let (tx, rx) = mpsc::channel(WATCH_QUEUE);
        w.push(tx);
        Ok(rx)
    }

    /// Whether someone (signaling) reads this session's events now.
    pub(super) fn is_watched(&self) -> bool {
        lock(&self.watchers).iter().any(|tx| !tx.is_closed())
    }

    /// Hands an event to each of the session's streams without waiting: a
    /// full queue (a reader that is behind) loses this event, counted.
    pub(super) fn emit(&self, kind: EventKind) {
        let ev = Event {
            session_id: self.id.clone(),
            kind,
        };
        {
            let mut w = lock(&self.watchers);
            w.retain(|tx| match tx.try_send(ev.clone()) {
                Ok(()) => true,
                Err(TrySendError::Full(_)) => {
                    self.counters.events_dropped.fetch_add(1, Ordering::Relaxed);
                    true
                }
                Err(TrySendError::Closed(_)) => false,
            });
        }
        if self.all_events.receiver_count() > 0 {
            let _ = self.all_events.send(ev);
        }
    }

    /// Ends the session: its tasks stop (the sockets close and the ports
    /// return to the pool), its event streams end, its recording is closed.
    pub(super) fn stop(&self) {
        let rec = {
            let mut st = lock(&self.state);
            st.set_mode(Mode::Idle);
            st.recorder.take()
        };
        if let Some(rec) = rec {
            rec.close();
        }
        lock(&self.watchers).clear();
        self.cancel.cancel();
    }

    pub(super) fn info(&self) -> SessionInfo {
        let bridged_to = self.peer_id();
        let st = lock(&self.state);
        let loss = st.stats.loss_fraction();
        let jitter = st.stats.jitter_ms();
        SessionInfo {
            session_id: self.id.to_string(),
            call_id: self.call_id.clone(),
            leg: self.leg.clone(),
            local_address: self.local,
            remote_address: st.source.destination(),
            codec: st.codec,
            bridged_to,
            packets_received: st.stats.packets(),
            packets_sent: st.out.packets,
            packets_lost: st.stats.lost(),
            jitter_ms: jitter,
            mos: if st.stats.packets() == 0 {
                0.0
            } else {
                mos_estimate(loss, jitter, 0.0)
            },
            age: self.created.elapsed(),
        }
    }

    /// Sends one packet to this leg: our SSRC, the stream's numbering.
    /// Returns false when it could not be sent (no address, direction,
    /// socket buffer full).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn send(
        &self,
        st: &mut State,
        source: Source,
        seq: u16,
        ts: u32,
        pt: u8,
        payload: &[u8],
        marker: bool,
        buf: &mut Vec<u8>,
    ) -> bool {
        let Some(to) = st.source.destination() else {
            return false;
        };
        if !st.may_send() || no_keys_yet(st) {
            return false;
        }
        let (seq, ts, switched) = st.out.stamp(source, seq, ts, payload.len(), Instant::now());
        buf.clear();
        write_header(buf, pt, marker || switched, seq, ts, st.out.ssrc);
        buf.extend_from_slice(payload);
        if let Some(srtp) = st.srtp.as_mut()
            && !srtp.protect_rtp(buf)
        {
            st.dropped += 1;
            return false;
        }
        match self.rtp.try_send_to(buf, to) {
            Ok(_) => true,
            Err(_) => {
                st.dropped += 1;
                false
            }
        }
    }
}
