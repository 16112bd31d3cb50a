//! The call's media: our offer (PCMU, PCMA, telephone-event; RTP/SAVP with
//! an SDES `a=crypto` when SRTP is asked for), the answer read back, and
//! one RTP stream each way over a UDP socket: we send 20 ms frames of the
//! prompt or of silence (so NATs and symmetric-RTP latching see us from the
//! start) and decode what arrives into the recording, the silence detector
//! and the statistics. SRTP is the RTP manager's own per-leg code
//! (`switchboard_rtpmanager::srtp::LegSrtp`, webrtc-srtp underneath). With
//! a TURN server the stream goes through a relay allocated there (webrtc-rs
//! `turn` client; its relayed address is the one in our SDP). With ICE
//! ([`crate::ice`]) and an answer doing ICE, the stream runs over the ICE
//! connection of the selected pair instead.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use switchboard_media::g711::Codec;
use switchboard_media::rtp_header::{RTP_HEADER_LEN, RtpView, write_header};
use switchboard_media::stats::{ReceiveStats, mos_estimate};
use switchboard_rtpmanager::srtp::{LegSrtp, our_crypto};
use switchboard_sip::sdp::crypto::{self, Crypto, Suite};
use switchboard_sip::sdp::{self, Direction, LocalMedia};
use tokio::net::UdpSocket;
use tokio::sync::watch;
use webrtc_util::Conn;

use crate::audio::{SILENCE_RMS, rms};
use crate::report::MediaStats;

/// Samples in one 20 ms frame at 8 kHz.
pub const FRAME: usize = 160;
/// Our telephone-event payload type.
const TE_PT: u8 = 101;
/// The longest recording kept in memory (an hour at 8 kHz).
const MAX_RECORDED: usize = 8000 * 3600;

/// What the stream sends and receives on: a UDP socket, a TURN relay or an
/// ICE connection.
pub type Socket = Arc<dyn Conn + Send + Sync>;

/// Where our media is: the socket and the address written in our SDP.
pub struct Local {
    pub sock: Socket,
    pub advertised: SocketAddr,
    /// The TURN client of a relayed socket: kept for the allocation's life
    /// (it refreshes the allocation and its permissions).
    turn: Option<turn::client::Client>,
}

impl Local {
    /// A UDP socket on `local`, advertised as `advertise` (a public address
    /// or the local one).
    ///
    /// # Errors
    /// The bind.
    pub async fn udp(local: IpAddr, advertise: IpAddr) -> std::io::Result<Local> {
        let sock = UdpSocket::bind((local, 0)).await?;
        let port = sock.local_addr()?.port();
        Ok(Local {
            sock: Arc::new(sock),
            advertised: SocketAddr::new(advertise, port),
            turn: None,
        })
    }

    /// A relay allocated on the TURN server `t` (long-term credentials,
    /// UDP), from a socket on `local`.
    ///
    /// # Errors
    /// The server does not answer, refuses the credentials or the allocation.
    pub async fn relayed(local: IpAddr, t: &crate::config::Turn) -> Result<Local, String> {
        let sock = UdpSocket::bind((local, 0))
            .await
            .map_err(|e| e.to_string())?;
        let client = turn::client::Client::new(turn::client::ClientConfig {
            stun_serv_addr: String::new(),
            turn_serv_addr: t.server.clone(),
            username: t.username.clone(),
            password: t.password.clone(),
            realm: String::new(),
            software: String::new(),
            rto_in_ms: 0,
            conn: Arc::new(sock),
            vnet: None,
        })
        .await
        .map_err(|e| e.to_string())?;
        client.listen().await.map_err(|e| e.to_string())?;
        let relay = tokio::time::timeout(Duration::from_secs(10), client.allocate())
            .await
            .map_err(|_| "no answer to the Allocate request within 10 s".to_owned())?
            .map_err(|e| e.to_string())?;
        let advertised = relay.local_addr().map_err(|e| e.to_string())?;
        Ok(Local {
            sock: Arc::new(relay),
            advertised,
            turn: Some(client),
        })
    }

    /// Whether the media goes through a TURN relay.
    pub fn relayed_by_turn(&self) -> bool {
        self.turn.is_some()
    }
}

/// Our side before the answer: the socket and what we offered.
pub struct Offer {
    pub sock: Socket,
    pub sdp: String,
    pub crypto: Option<Crypto>,
}

/// The offer for media at `local` (SDES-SRTP when `srtp`).
pub fn offer(local: &Local, srtp: bool) -> Offer {
    let (advertise, port) = (local.advertised.ip(), local.advertised.port());
    let crypto = srtp.then(|| our_crypto(1, Suite::AesCm128HmacSha1_80));
    let line = crypto.as_ref().map(crypto::format);
    let media = LocalMedia {
        address: advertise,
        port,
        session_id: u64::from(rand::random::<u32>()),
        version: 1,
    };
    let sdp = sdp::offer_with_crypto(
        &media,
        &[(0, "PCMU"), (8, "PCMA")],
        Some(TE_PT),
        Direction::SendRecv,
        20,
        line.as_deref(),
    );
    Offer {
        sock: Arc::clone(&local.sock),
        sdp,
        crypto,
    }
}

/// What the answer settled.
pub struct Agreed {
    pub remote: SocketAddr,
    /// The socket is an ICE connection: it sends on the selected pair (no
    /// address of ours) and passes only packets from the peer's candidates.
    pub connected: bool,
    pub codec: Codec,
    pub srtp: Option<LegSrtp>,
}

/// Reads the answer to `offer`.
///
/// # Errors
/// An answer we cannot use: no address, no G.711, SRTP keys missing or
/// refused.
pub fn agree(offer: &Offer, answer: &[u8]) -> Result<Agreed, String> {
    let d = sdp::parse(answer).map_err(|e| format!("the answer's SDP: {e:?}"))?;
    let remote = d
        .remote_rtp()
        .ok_or("the answer's SDP has no audio address")?;
    let codec = sdp::choose_codec(&d, &["PCMU", "PCMA"])
        .and_then(|c| Codec::from_name(&c.name))
        .ok_or("the answer has neither PCMU nor PCMA")?;
    let srtp = match (&offer.crypto, d.is_savp()) {
        (Some(ours), true) => {
            let theirs =
                crypto::choose(&d.crypto).map_err(|e| format!("the answer's a=crypto: {e:?}"))?;
            Some(LegSrtp::new(ours.clone(), theirs)?)
        }
        (Some(_), false) => return Err("SRTP was offered and the answer is plain RTP".into()),
        (None, true) => return Err("the answer is RTP/SAVP to a plain offer".into()),
        (None, false) => None,
    };
    Ok(Agreed {
        remote,
        connected: false,
        codec,
        srtp,
    })
}

/// What the receiving side shares with the rest of the call.
#[derive(Default)]
pub struct Heard {
    /// Decoded remote audio, in arrival order.
    pub samples: Vec<i16>,
    pub stats: Option<ReceiveStats>,
    pub packets: u64,
    /// Frames since the last loud one (silence lasts this many × 20 ms).
    pub quiet_frames: u64,
    /// Packets refused by SRTP or from another address.
    pub refused: u64,
}

/// A running media stream.
pub struct Stream {
    heard: Arc<Mutex<Heard>>,
    /// What the sender plays next: `None` sends silence.
    play: watch::Sender<Option<Arc<Vec<i16>>>>,
    /// Set when the current prompt has been sent to its end.
    done: watch::Receiver<u64>,
    sent: Arc<std::sync::atomic::AtomicU64>,
    codec: Codec,
    srtp: bool,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Stream {
    /// Starts sending silence to `agreed.remote` and receiving from it.
    pub fn start(sock: Socket, agreed: Agreed) -> Stream {
        let heard = Arc::new(Mutex::new(Heard::default()));
        let (play, play_rx) = watch::channel(None);
        let (done_tx, done) = watch::channel(0u64);
        let sent = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let srtp_on = agreed.srtp.is_some();
        let srtp = Arc::new(Mutex::new(agreed.srtp));
        let tasks = vec![
            tokio::spawn(send(
                Arc::clone(&sock),
                (!agreed.connected).then_some(agreed.remote),
                agreed.codec,
                Arc::clone(&srtp),
                play_rx,
                done_tx,
                Arc::clone(&sent),
            )),
            tokio::spawn(receive(
                sock,
                (!agreed.connected).then_some(agreed.remote),
                Arc::clone(&srtp),
                Arc::clone(&heard),
            )),
        ];
        Stream {
            heard,
            play,
            done,
            sent,
            codec: agreed.codec,
            srtp: srtp_on,
            tasks,
        }
    }

    /// Sends `samples` once, from the next frame; returns when the last
    /// frame is out.
    pub async fn play(&mut self, samples: Arc<Vec<i16>>) {
        let before = *self.done.borrow_and_update();
        let _ = self.play.send(Some(samples));
        while self.done.changed().await.is_ok() {
            if *self.done.borrow() != before {
                break;
            }
        }
    }

    /// How long the remote side has been quiet.
    pub fn quiet_for(&self) -> Duration {
        let frames = self.heard.lock().map(|h| h.quiet_frames).unwrap_or(0);
        Duration::from_millis(frames.saturating_mul(20))
    }

    /// Whether anything arrived yet.
    pub fn received(&self) -> u64 {
        self.heard.lock().map(|h| h.packets).unwrap_or(0)
    }

    /// Stops both directions; returns the remote audio and the figures.
    pub fn stop(self) -> (Vec<i16>, MediaStats) {
        for t in &self.tasks {
            t.abort();
        }
        let mut h = self
            .heard
            .lock()
            .map(|mut h| std::mem::take(&mut *h))
            .unwrap_or_default();
        let (lost, jitter, loss) = h
            .stats
            .as_ref()
            .map(|s| (s.lost(), s.jitter_ms(), s.loss_fraction()))
            .unwrap_or((0, 0.0, 0.0));
        let stats = MediaStats {
            codec: Some(self.codec.name()),
            srtp: self.srtp,
            packets_sent: self.sent.load(std::sync::atomic::Ordering::Relaxed),
            packets_received: h.packets,
            lost,
            jitter_ms: (jitter * 100.0).round() / 100.0,
            mos: (h.packets > 0)
                .then(|| (mos_estimate(loss, jitter, 20.0) * 100.0).round() / 100.0),
            turn_relay: None,
            ice: None,
        };
        (std::mem::take(&mut h.samples), stats)
    }
}

/// Sends to `to`, or on the connection's own path when `None` (ICE).
async fn send(
    sock: Socket,
    to: Option<SocketAddr>,
    codec: Codec,
    srtp: Arc<Mutex<Option<LegSrtp>>>,
    mut play: watch::Receiver<Option<Arc<Vec<i16>>>>,
    done: watch::Sender<u64>,
    sent: Arc<std::sync::atomic::AtomicU64>,
) {
    let ssrc = rand::random::<u32>();
    let mut seq = rand::random::<u16>();
    let mut ts = rand::random::<u32>();
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let silence = [0i16; FRAME];
    let (mut current, mut at): (Option<Arc<Vec<i16>>>, usize) = (None, 0);
    let mut finished = 0u64;
    let mut first = true;
    let mut pkt = Vec::with_capacity(RTP_HEADER_LEN + FRAME + 16);
    loop {
        tick.tick().await;
        if play.has_changed().unwrap_or(false) {
            current = play.borrow_and_update().clone();
            at = 0;
        }
        let frame: &[i16] = match &current {
            Some(p) if at < p.len() => {
                let end = (at + FRAME).min(p.len());
                let f = &p[at..end];
                at = end;
                f
            }
            _ => &silence,
        };
        pkt.clear();
        write_header(&mut pkt, codec.payload_type(), first, seq, ts, ssrc);
        first = false;
        codec.encode(frame, &mut pkt);
        pkt.resize(RTP_HEADER_LEN + FRAME, codec.silence());
        let ok = match srtp.lock() {
            Ok(mut s) => s.as_mut().is_none_or(|s| s.protect_rtp(&mut pkt)),
            Err(_) => false,
        };
        if ok {
            let out = match to {
                Some(to) => sock.send_to(&pkt, to).await,
                None => sock.send(&pkt).await,
            };
            if out.is_ok() {
                sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
        seq = seq.wrapping_add(1);
        ts = ts.wrapping_add(FRAME as u32);
        if let Some(p) = &current
            && at >= p.len()
        {
            current = None;
            finished += 1;
            let _ = done.send(finished);
        }
    }
}

/// Receives from `from` (its IP), or whatever the connection passes when
/// `None` (ICE checked the source already).
async fn receive(
    sock: Socket,
    from: Option<SocketAddr>,
    srtp: Arc<Mutex<Option<LegSrtp>>>,
    heard: Arc<Mutex<Heard>>,
) {
    let mut buf = vec![0u8; 2048];
    let mut plain = Vec::with_capacity(2048);
    let mut frame = Vec::with_capacity(FRAME);
    let start = tokio::time::Instant::now();
    loop {
        let Ok((n, src)) = sock.recv_from(&mut buf).await else {
            return;
        };
        let Ok(mut h) = heard.lock() else { return };
        // symmetric RTP: only the answer's address (its IP, any port: a
        // relay may send from another port than it listens on)
        if from.is_some_and(|f| f.ip() != src.ip()) {
            h.refused += 1;
            continue;
        }
        let packet: &[u8] = match srtp.lock() {
            Ok(mut s) => match s.as_mut() {
                Some(s) => {
                    if !s.unprotect_rtp(&buf[..n], &mut plain) {
                        h.refused += 1;
                        continue;
                    }
                    &plain
                }
                None => &buf[..n],
            },
            Err(_) => return,
        };
        let Some(rtp) = RtpView::parse(packet) else {
            continue;
        };
        let Some(codec) = Codec::from_payload_type(rtp.payload_type()) else {
            continue; // telephone-event, comfort noise
        };
        #[allow(clippy::cast_possible_truncation)]
        let arrival = (start.elapsed().as_micros() / 125) as u32;
        h.stats.get_or_insert_with(ReceiveStats::default).on_packet(
            rtp.sequence(),
            rtp.timestamp(),
            arrival,
        );
        h.packets += 1;
        frame.clear();
        codec.decode(rtp.payload(), &mut frame);
        if rms(&frame) < SILENCE_RMS {
            h.quiet_frames += 1;
        } else {
            h.quiet_frames = 0;
        }
        if h.samples.len() + frame.len() <= MAX_RECORDED {
            h.samples.extend_from_slice(&frame);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn offers_and_answers() {
        let lo = IpAddr::from([127, 0, 0, 1]);
        let o = offer(&Local::udp(lo, lo).await.unwrap(), false);
        assert!(
            o.sdp.contains("m=audio ") && o.sdp.contains(" RTP/AVP 0 8 101"),
            "{}",
            o.sdp
        );
        assert!(o.sdp.contains("c=IN IP4 127.0.0.1"));
        let answer = "v=0\r\no=x 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
                      m=audio 40000 RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\n";
        let a = agree(&o, answer.as_bytes()).unwrap();
        assert_eq!((a.remote.port(), a.codec), (40000, Codec::Pcma));
        let srtp = offer(
            &Local::udp(lo, IpAddr::from([203, 0, 113, 5]))
                .await
                .unwrap(),
            true,
        );
        assert!(
            srtp.sdp.contains("RTP/SAVP")
                && srtp
                    .sdp
                    .contains("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:")
        );
        assert!(srtp.sdp.contains("c=IN IP4 203.0.113.5"));
        assert!(
            agree(&srtp, answer.as_bytes())
                .err()
                .unwrap()
                .contains("plain")
        );
        assert!(agree(&o, b"v=0\r\n").is_err());
    }
}
