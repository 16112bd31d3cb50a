//! The media engine: sessions (one per call leg, one RTP/RTCP port pair
//! each), the relay between bridged sessions, playback, echo, recording,
//! DTMF detection and RTP timeouts.
//!
//! Each session has one receive task per socket. A packet is handled on
//! the receiving task from start to end: latch the source, count it,
//! detect DTMF, record it, then send it (transcoded, renumbered) out of
//! the peer session's socket with a non-blocking `send_to`. Per-session
//! state sits behind a `std::sync::Mutex` that is never held across an
//! await and never held together with another session's lock.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant, SystemTime};

use switchboard_media::dtmf::{DtmfDetector, TelephoneEvent};
use switchboard_media::g711::Codec;
use switchboard_media::rtcp;
use switchboard_media::rtp_header::{RtpView, is_rtcp, write_header};
use switchboard_media::stats::{ReceiveStats, mos_estimate};
use switchboard_media::wav::{self, WavRecorder};
use switchboard_sip::sdp::{self, Description, Direction, LocalMedia};
use tokio::net::UdpSocket;
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::ports::PortPool;
use crate::stream::{OutStream, Source};

/// Codecs the engine can receive, send and transcode between, in the order
/// it offers them.
pub const CODECS: [Codec; 2] = [Codec::Pcmu, Codec::Pcma];
/// The telephone-event payload type of our offers (RFC 4733).
pub const OFFER_TE_PT: u8 = 101;
/// Samples per 20 ms packet at 8 kHz.
const FRAME: usize = 160;
const PTIME_MS: u32 = 20;
/// A latched source that has been silent this long may be replaced by a
/// new one (a phone that changed address or NAT binding).
const RELATCH_AFTER: Duration = Duration::from_secs(2);
/// How often each leg gets our RTCP report by default (RFC 3550 §6.2:
/// 5 s minimum).
pub const RTCP_INTERVAL: Duration = Duration::from_secs(5);

/// One local address family the engine serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpAddress {
    /// Where sockets are bound.
    pub bind: IpAddr,
    /// What SDP says (the node's address when `bind` is a wildcard).
    pub advertise: IpAddr,
}

#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// At most one per address family; the first is the default family.
    pub addresses: Vec<RtpAddress>,
    pub port_min: u16,
    pub port_max: u16,
    /// Root of the WAV files `play` accepts.
    pub audio_path: PathBuf,
    /// Root under which recordings are written.
    pub record_path: PathBuf,
    /// No RTP for this long is reported as an `RtpTimeout` event.
    pub rtp_timeout: Duration,
    /// How often each leg gets our RTCP report.
    pub rtcp_interval: Duration,
}

/// What went wrong, mapped one-to-one onto gRPC status codes by the service.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EngineError {
    #[error("session {0} not found")]
    NotFound(String),
    #[error("{0}")]
    InvalidArgument(String),
    #[error("no free RTP port pair in {0}")]
    Exhausted(String),
    #[error("this RTP manager is draining and takes no new sessions")]
    Draining,
    #[error("{0}")]
    Precondition(String),
    #[error("{0}")]
    Internal(String),
}

/// An event of one session, as WatchEvents streams them.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub session_id: Arc<str>,
    pub kind: EventKind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum EventKind {
    Dtmf { digit: char, duration_ms: u32 },
    RtpTimeout { seconds: u32 },
    Playback(PlaybackEvent),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlaybackKind {
    Started,
    Finished,
    Interrupted,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlaybackEvent {
    pub kind: PlaybackKind,
    pub playback_id: u64,
    pub duration_ms: u64,
}

/// The reply to `create_session`.
#[derive(Debug, Clone)]
pub struct Created {
    pub session_id: String,
    pub local_sdp: String,
    pub offered: Vec<sdp::AudioCodec>,
    pub chosen: Option<(u8, Codec)>,
    pub telephone_event: Option<u8>,
    pub local_address: SocketAddr,
}

/// The reply to `update_session`.
#[derive(Debug, Clone)]
pub struct Updated {
    pub local_sdp: Option<String>,
    pub chosen: Option<(u8, Codec)>,
    pub telephone_event: Option<u8>,
}

/// A session's counters and addresses.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionInfo {
    pub session_id: String,
    pub call_id: String,
    pub leg: String,
    pub local_address: SocketAddr,
    pub remote_address: Option<SocketAddr>,
    pub codec: Option<(u8, Codec)>,
    pub bridged_to: Option<String>,
    pub packets_received: u64,
    pub packets_sent: u64,
    pub packets_lost: u64,
    pub jitter_ms: f64,
    pub mos: f64,
    pub age: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    pub sessions: usize,
    pub free_port_pairs: usize,
    pub draining: bool,
    pub advertise: Vec<IpAddr>,
}

/// The RTP manager's engine; cheap to clone.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    config: EngineConfig,
    sessions: Mutex<HashMap<Arc<str>, Arc<Session>>>,
    ports: Arc<Mutex<PortPool>>,
    draining: AtomicBool,
    events: broadcast::Sender<Event>,
    next_id: AtomicU64,
    audio_cache: Mutex<HashMap<PathBuf, CachedAudio>>,
    shutdown: CancellationToken,
}

/// A decoded prompt and the file's modification time when it was read.
type CachedAudio = (SystemTime, Arc<Vec<i16>>);

struct Session {
    id: Arc<str>,
    call_id: String,
    leg: String,
    created: Instant,
    local: SocketAddr,
    /// Sockets first: they close before the lease gives the ports back.
    rtp: Arc<UdpSocket>,
    rtcp: Arc<UdpSocket>,
    state: Mutex<State>,
    cancel: CancellationToken,
    sdp_session_id: u64,
    sdp_version: AtomicU64,
    _lease: Lease,
}

/// Gives the port pair back when the session is gone for good.
struct Lease {
    port: u16,
    pool: Arc<Mutex<PortPool>>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        lock(&self.pool).release(self.port);
    }
}

#[derive(Default)]
enum Mode {
    #[default]
    Idle,
    Bridged(Weak<Session>),
    Echo,
    Playing(u64, CancellationToken),
}

struct State {
    /// Where we send RTP: the SDP's address until a packet latches it.
    remote: Option<SocketAddr>,
    remote_rtcp: Option<SocketAddr>,
    latched: bool,
    last_rx: Instant,
    /// The codec we send to this leg (and expect from it), with its PT.
    codec: Option<(u8, Codec)>,
    /// The leg's telephone-event PT.
    te_pt: Option<u8>,
    /// The leg's own direction as its SDP says.
    remote_direction: Direction,
    mode: Mode,
    out: OutStream,
    stats: ReceiveStats,
    dtmf: DtmfDetector,
    recorder: Option<Recorder>,
    dropped: u64,
    rtcp_received: u64,
    /// The SSRC the leg sends with (for our reception reports).
    remote_ssrc: Option<u32>,
    /// The leg's last sender report: NTP middle 32 bits, when received.
    last_sr: Option<(u32, Instant)>,
    /// Our packet count at the previous report (SR only when it grew).
    reported_packets: u64,
}

/// A recording attached to a session.
enum Recorder {
    Mono {
        path: PathBuf,
        wav: WavRecorder,
    },
    /// Both sides of a bridge; `left` says which channel this session feeds.
    Stereo {
        path: PathBuf,
        shared: Arc<Mutex<Stereo>>,
        left: bool,
    },
}

struct Stereo {
    wav: Option<WavRecorder>,
    left: Vec<i16>,
    right: Vec<i16>,
}

/// One side may run ahead of the other by this many samples (a silent
/// or stalled leg) before the other side is padded with silence.
const STEREO_SLACK: usize = 8000;

impl Stereo {
    fn push(&mut self, left: bool, samples: &[i16]) {
        if left {
            self.left.extend_from_slice(samples);
        } else {
            self.right.extend_from_slice(samples);
        }
        let both = self.left.len().min(self.right.len());
        let ahead = self.left.len().max(self.right.len());
        let n = if ahead > STEREO_SLACK + both {
            ahead - STEREO_SLACK
        } else {
            both
        };
        if n == 0 {
            return;
        }
        let l: Vec<i16> = self.left.drain(..n.min(self.left.len())).collect();
        let r: Vec<i16> = self.right.drain(..n.min(self.right.len())).collect();
        if let Some(wav) = self.wav.as_mut()
            && let Err(e) = wav.write_frame_stereo(&l, &r)
        {
            warn!(cause = %e, "recording write failed; recording stopped");
            self.wav = None;
        }
    }

    fn finish(&mut self) -> u64 {
        let (l, r) = (
            std::mem::take(&mut self.left),
            std::mem::take(&mut self.right),
        );
        let Some(mut wav) = self.wav.take() else {
            return 0;
        };
        let _ = wav.write_frame_stereo(&l, &r);
        let n = wav.samples_written();
        if let Err(e) = wav.finish() {
            warn!(cause = %e, "recording could not be finalised");
        }
        n
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Engine {
    /// Starts the engine's housekeeping (RTP timeouts) on the current runtime.
    pub fn new(config: EngineConfig) -> Result<Engine, EngineError> {
        if config.addresses.is_empty() {
            return Err(EngineError::InvalidArgument(
                "no RTP address configured".into(),
            ));
        }
        if config.port_min > config.port_max {
            return Err(EngineError::InvalidArgument(format!(
                "RTP port range {}-{} is empty",
                config.port_min, config.port_max
            )));
        }
        let pool = PortPool::new(config.port_min, config.port_max);
        if pool.total_pairs() == 0 {
            return Err(EngineError::InvalidArgument(format!(
                "RTP port range {}-{} holds no even/odd port pair",
                config.port_min, config.port_max
            )));
        }
        let (events, _) = broadcast::channel(4096);
        let inner = Arc::new(Inner {
            config,
            sessions: Mutex::new(HashMap::new()),
            ports: Arc::new(Mutex::new(pool)),
            draining: AtomicBool::new(false),
            events,
            next_id: AtomicU64::new(1),
            audio_cache: Mutex::new(HashMap::new()),
            shutdown: CancellationToken::new(),
        });
        tokio::spawn(sweep(Arc::downgrade(&inner)));
        Ok(Engine { inner })
    }

    pub fn config(&self) -> &EngineConfig {
        &self.inner.config
    }

    /// Every event of every session from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.inner.events.subscribe()
    }

    /// Stops every session (their sockets close, ports are freed) and the
    /// housekeeping task.
    pub fn shutdown(&self) {
        self.inner.shutdown.cancel();
        let sessions: Vec<Arc<Session>> =
            lock(&self.inner.sessions).drain().map(|(_, s)| s).collect();
        for s in sessions {
            s.stop();
        }
    }

    pub fn health(&self) -> Health {
        Health {
            sessions: lock(&self.inner.sessions).len(),
            free_port_pairs: lock(&self.inner.ports).free_pairs(),
            draining: self.inner.draining.load(Ordering::Relaxed),
            advertise: self
                .inner
                .config
                .addresses
                .iter()
                .map(|a| a.advertise)
                .collect(),
        }
    }

    pub fn set_draining(&self, draining: bool) -> Health {
        self.inner.draining.store(draining, Ordering::Relaxed);
        info!(draining, "drain mode changed");
        self.health()
    }

    fn session(&self, id: &str) -> Result<Arc<Session>, EngineError> {
        lock(&self.inner.sessions)
            .get(id)
            .cloned()
            .ok_or_else(|| EngineError::NotFound(id.to_string()))
    }

    /// Allocates a port pair for a leg and answers its offer, or writes our
    /// offer when there is none. `family` picks the address family of our
    /// offer ("IP4"/"IP6"); an offer's own c= decides otherwise.
    pub async fn create_session(
        &self,
        call_id: &str,
        leg: &str,
        remote_sdp: Option<&[u8]>,
        family: Option<&str>,
    ) -> Result<Created, EngineError> {
        if self.inner.draining.load(Ordering::Relaxed) {
            return Err(EngineError::Draining);
        }
        let remote = match remote_sdp {
            Some(body) => Some(parse_sdp(body)?),
            None => None,
        };
        let want_v6 = match (&remote, family) {
            (Some(d), _) => d.connection.map(|ip| ip.is_ipv6()),
            (None, Some(f)) if f.eq_ignore_ascii_case("IP6") => Some(true),
            (None, Some(f)) if f.eq_ignore_ascii_case("IP4") => Some(false),
            (None, Some(f)) if !f.is_empty() => {
                return Err(EngineError::InvalidArgument(format!(
                    "address_family: {f:?} is neither IP4 nor IP6"
                )));
            }
            _ => None,
        };
        let address = self.pick_address(want_v6)?;
        let chosen = match &remote {
            Some(d) => Some(choose(d)?),
            None => None,
        };
        let (port, rtp, rtcp) = self.bind_pair(address.bind)?;
        let local = SocketAddr::new(address.advertise, port);
        let n = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let id: Arc<str> = format!("{:08x}-{n}", rand::random::<u32>()).into();
        let sdp_session_id = u64::from(rand::random::<u32>());
        let mut state = State {
            remote: None,
            remote_rtcp: None,
            latched: false,
            last_rx: Instant::now(),
            codec: chosen,
            te_pt: None,
            remote_direction: Direction::SendRecv,
            mode: Mode::Idle,
            out: OutStream::new(),
            stats: ReceiveStats::default(),
            dtmf: DtmfDetector::new(),
            recorder: None,
            dropped: 0,
            rtcp_received: 0,
            remote_ssrc: None,
            last_sr: None,
            reported_packets: 0,
        };
        let media = LocalMedia {
            address: local.ip(),
            port,
            session_id: sdp_session_id,
            version: 1,
        };
        let local_sdp = match (&remote, chosen) {
            (Some(d), Some((pt, codec))) => {
                state.apply_remote(d);
                state.codec = Some((pt, codec));
                sdp::answer(&media, d, (pt, codec.name()), None, PTIME_MS)
            }
            _ => our_offer(&media, Direction::SendRecv),
        };
        let session = Arc::new(Session {
            id: id.clone(),
            call_id: call_id.to_string(),
            leg: leg.to_string(),
            created: Instant::now(),
            local,
            rtp: Arc::new(rtp),
            rtcp: Arc::new(rtcp),
            state: Mutex::new(state),
            cancel: self.inner.shutdown.child_token(),
            sdp_session_id,
            sdp_version: AtomicU64::new(1),
            _lease: Lease {
                port,
                pool: self.inner.ports.clone(),
            },
        });
        lock(&self.inner.sessions).insert(id.clone(), session.clone());
        tokio::spawn(rtp_loop(session.clone(), self.inner.events.clone()));
        tokio::spawn(rtcp_loop(session.clone(), self.inner.config.rtcp_interval));
        debug!(session = %id, %call_id, leg, %local, "session created");
        Ok(Created {
            session_id: id.to_string(),
            local_sdp,
            offered: remote.map(|d| d.codecs).unwrap_or_default(),
            chosen,
            telephone_event: lock(&session.state).te_pt,
            local_address: local,
        })
    }

    fn pick_address(&self, want_v6: Option<bool>) -> Result<RtpAddress, EngineError> {
        let addrs = &self.inner.config.addresses;
        match want_v6 {
            None => Ok(addrs[0]),
            Some(v6) => addrs
                .iter()
                .find(|a| a.bind.is_ipv6() == v6)
                .copied()
                .ok_or_else(|| {
                    EngineError::InvalidArgument(format!(
                        "this RTP manager has no {} address",
                        if v6 { "IPv6" } else { "IPv4" }
                    ))
                }),
        }
    }

    /// Binds the next free pair; pairs another process holds are skipped
    /// (and go back to the end of the pool).
    fn bind_pair(&self, ip: IpAddr) -> Result<(u16, UdpSocket, UdpSocket), EngineError> {
        let tries = lock(&self.inner.ports).total_pairs();
        for _ in 0..tries {
            let Some(port) = lock(&self.inner.ports).allocate() else {
                break;
            };
            match (bind_udp(ip, port), bind_udp(ip, port + 1)) {
                (Ok(a), Ok(b)) => return Ok((port, a, b)),
                (a, b) => {
                    let cause = a.err().or(b.err());
                    debug!(port, cause = ?cause, "RTP port pair busy, trying the next");
                    lock(&self.inner.ports).release(port);
                }
            }
        }
        let c = &self.inner.config;
        Err(EngineError::Exhausted(format!(
            "{}-{}",
            c.port_min, c.port_max
        )))
    }

    /// Applies the leg's new SDP (an answer to our offer, or a new offer
    /// that we answer).
    pub fn update_session(
        &self,
        id: &str,
        remote_sdp: &[u8],
        is_offer: bool,
    ) -> Result<Updated, EngineError> {
        let session = self.session(id)?;
        let d = parse_sdp(remote_sdp)?;
        let chosen = choose(&d)?;
        let mut st = lock(&session.state);
        st.apply_remote(&d);
        st.codec = Some(chosen);
        let local_sdp = is_offer.then(|| {
            let media = session.media(session.next_version());
            sdp::answer(&media, &d, (chosen.0, chosen.1.name()), None, PTIME_MS)
        });
        Ok(Updated {
            local_sdp,
            chosen: Some(chosen),
            telephone_event: st.te_pt,
        })
    }

    /// A new offer for the leg (same port), e.g. for a re-INVITE.
    pub fn create_offer(&self, id: &str, direction: Direction) -> Result<String, EngineError> {
        let session = self.session(id)?;
        let media = session.media(session.next_version());
        Ok(our_offer(&media, direction))
    }

    pub fn bridge(&self, a: &str, b: &str) -> Result<(), EngineError> {
        if a == b {
            return Err(EngineError::Precondition(
                "a session cannot be bridged to itself (use echo)".into(),
            ));
        }
        let sa = self.session(a)?;
        let sb = self.session(b)?;
        sa.set_mode(Mode::Bridged(Arc::downgrade(&sb)));
        sb.set_mode(Mode::Bridged(Arc::downgrade(&sa)));
        debug!(a, b, "bridged");
        Ok(())
    }

    pub fn unbridge(&self, a: &str, b: &str) -> Result<(), EngineError> {
        let sa = self.session(a)?;
        let sb = self.session(b)?;
        if sa.peer_id().as_deref() != Some(b) {
            return Err(EngineError::Precondition(format!(
                "sessions {a} and {b} are not bridged"
            )));
        }
        sa.set_mode(Mode::Idle);
        sb.set_mode(Mode::Idle);
        Ok(())
    }

    pub fn echo(&self, id: &str) -> Result<(), EngineError> {
        self.session(id)?.set_mode(Mode::Echo);
        Ok(())
    }

    /// Starts a playback; its events go to the returned channel (and to the
    /// session's event feed).
    pub fn play(
        &self,
        id: &str,
        files: &[String],
        repeat: u32,
    ) -> Result<(u64, mpsc::UnboundedReceiver<PlaybackEvent>), EngineError> {
        let session = self.session(id)?;
        if files.is_empty() {
            return Err(EngineError::InvalidArgument("files: no file given".into()));
        }
        let mut audio = Vec::with_capacity(files.len());
        for (i, f) in files.iter().enumerate() {
            audio.push(
                self.load_audio(f)
                    .map_err(|e| EngineError::InvalidArgument(format!("files[{i}]: {e}")))?,
            );
        }
        let playback_id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let cancel = session.cancel.child_token();
        session.set_mode(Mode::Playing(playback_id, cancel.clone()));
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(playback(
            session,
            audio,
            repeat.max(1),
            playback_id,
            cancel,
            tx,
            self.inner.events.clone(),
        ));
        Ok((playback_id, rx))
    }

    /// Stops the session's playback; `false` when none was running.
    pub fn stop_playback(&self, id: &str) -> Result<bool, EngineError> {
        let session = self.session(id)?;
        let mut st = lock(&session.state);
        if matches!(st.mode, Mode::Playing(..)) {
            st.set_mode(Mode::Idle);
            Ok(true)
        } else {
            Ok(false)
        }
    }

    /// Resolves a file name under AUDIO_PATH (".wav" may be left off) and
    /// loads it as 8 kHz mono, cached until the file changes.
    fn load_audio(&self, name: &str) -> Result<Arc<Vec<i16>>, String> {
        let rel = safe_relative(name)?;
        let path = with_wav(self.inner.config.audio_path.join(&rel));
        let modified = std::fs::metadata(&path)
            .and_then(|m| m.modified())
            .map_err(|e| format!("{}: {e}", path.display()))?;
        if let Some((at, samples)) = lock(&self.inner.audio_cache).get(&path)
            && *at == modified
        {
            return Ok(samples.clone());
        }
        let samples =
            Arc::new(wav::load_8k_mono(&path).map_err(|e| format!("{}: {e}", path.display()))?);
        lock(&self.inner.audio_cache).insert(path, (modified, samples.clone()));
        Ok(samples)
    }

    /// Records the leg's received audio (mono) or both sides of its bridge
    /// (stereo) to `file` under the recording directory.
    pub fn record(&self, id: &str, file: &str, both_sides: bool) -> Result<PathBuf, EngineError> {
        let session = self.session(id)?;
        let rel =
            safe_relative(file).map_err(|e| EngineError::InvalidArgument(format!("file: {e}")))?;
        let path = with_wav(self.inner.config.record_path.join(rel));
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| EngineError::Internal(format!("{}: {e}", dir.display())))?;
        }
        let internal = |e: wav::WavError| EngineError::Internal(format!("{}: {e}", path.display()));
        if both_sides {
            let peer = session.peer().ok_or_else(|| {
                EngineError::Precondition(format!(
                    "session {id} is not bridged: both_sides needs a bridge"
                ))
            })?;
            let wav = WavRecorder::create(&path, 2).map_err(internal)?;
            let shared = Arc::new(Mutex::new(Stereo {
                wav: Some(wav),
                left: Vec::new(),
                right: Vec::new(),
            }));
            lock(&session.state).recorder = Some(Recorder::Stereo {
                path: path.clone(),
                shared: shared.clone(),
                left: true,
            });
            lock(&peer.state).recorder = Some(Recorder::Stereo {
                path: path.clone(),
                shared,
                left: false,
            });
        } else {
            let wav = WavRecorder::create(&path, 1).map_err(internal)?;
            let old = lock(&session.state).recorder.replace(Recorder::Mono {
                path: path.clone(),
                wav,
            });
            if let Some(old) = old {
                finish_recorder(old);
            }
        }
        info!(session = id, path = %path.display(), both_sides, "recording");
        Ok(path)
    }

    /// Stops and finalises the session's recording: its path and sample
    /// count (per channel).
    pub fn stop_recording(&self, id: &str) -> Result<Option<(PathBuf, u64)>, EngineError> {
        let session = self.session(id)?;
        let taken = lock(&session.state).recorder.take();
        let Some(rec) = taken else {
            return Ok(None);
        };
        if let Recorder::Stereo { .. } = rec
            && let Some(peer) = session.peer()
        {
            lock(&peer.state).recorder = None;
        }
        Ok(Some(finish_recorder(rec)))
    }

    pub fn info(&self, id: &str) -> Result<SessionInfo, EngineError> {
        Ok(self.session(id)?.info())
    }

    pub fn list(&self) -> Vec<SessionInfo> {
        let sessions: Vec<Arc<Session>> = lock(&self.inner.sessions).values().cloned().collect();
        let mut infos: Vec<SessionInfo> = sessions.iter().map(|s| s.info()).collect();
        infos.sort_by_key(|i| std::cmp::Reverse(i.age));
        infos
    }

    /// Stops the session and returns its final counters; its ports are
    /// free once its receive tasks have ended (immediately after).
    pub fn destroy(&self, id: &str) -> Result<SessionInfo, EngineError> {
        let session = lock(&self.inner.sessions)
            .remove(id)
            .ok_or_else(|| EngineError::NotFound(id.to_string()))?;
        let info = session.info();
        session.stop();
        debug!(session = id, "session destroyed");
        Ok(info)
    }
}

fn finish_recorder(rec: Recorder) -> (PathBuf, u64) {
    match rec {
        Recorder::Mono { path, wav } => {
            let n = wav.samples_written();
            if let Err(e) = wav.finish() {
                warn!(cause = %e, "recording could not be finalised");
            }
            (path, n)
        }
        Recorder::Stereo { path, shared, .. } => {
            let n = lock(&shared).finish();
            (path, n)
        }
    }
}

fn parse_sdp(body: &[u8]) -> Result<Description, EngineError> {
    sdp::parse(body).map_err(|e| EngineError::InvalidArgument(format!("remote_sdp: {e}")))
}

/// The first offered codec we support (PCMU or PCMA), keeping its PT.
fn choose(d: &Description) -> Result<(u8, Codec), EngineError> {
    let names: Vec<&str> = CODECS.iter().map(|c| c.name()).collect();
    sdp::choose_codec(d, &names)
        .and_then(|c| Codec::from_name(&c.name).map(|codec| (c.payload_type, codec)))
        .ok_or_else(|| {
            EngineError::InvalidArgument(format!(
                "remote_sdp: no common codec (offered {}; supported PCMU, PCMA)",
                d.codecs
                    .iter()
                    .map(|c| c.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })
}

fn our_offer(media: &LocalMedia, direction: Direction) -> String {
    let codecs: Vec<(u8, &str)> = CODECS
        .iter()
        .map(|c| (c.payload_type(), c.name()))
        .collect();
    sdp::offer(media, &codecs, Some(OFFER_TE_PT), direction, PTIME_MS)
}

/// `path` ending in `.wav` (appended unless it already ends so; a name
/// such as `call-1@10.0.0.1` keeps its dots).
fn with_wav(path: PathBuf) -> PathBuf {
    let is_wav = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("wav"));
    if is_wav {
        path
    } else {
        let mut s = path.into_os_string();
        s.push(".wav");
        PathBuf::from(s)
    }
}

/// A relative path without `..`, root or prefix components.
fn safe_relative(name: &str) -> Result<PathBuf, String> {
    let path = Path::new(name);
    if name.is_empty() {
        return Err("empty file name".into());
    }
    if path
        .components()
        .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(format!("{name:?} must be a relative path without '..'"));
    }
    Ok(path.to_path_buf())
}

fn bind_udp(ip: IpAddr, port: u16) -> std::io::Result<UdpSocket> {
    let socket = std::net::UdpSocket::bind(SocketAddr::new(ip, port))?;
    socket.set_nonblocking(true)?;
    UdpSocket::from_std(socket)
}

impl State {
    fn apply_remote(&mut self, d: &Description) {
        let addr = match (d.connection, d.audio_port) {
            (Some(ip), port) if port != 0 && !ip.is_unspecified() => {
                Some(SocketAddr::new(ip, port))
            }
            _ => None,
        };
        if addr != self.remote || !self.latched {
            self.remote = addr;
            self.remote_rtcp = addr.map(|a| SocketAddr::new(a.ip(), a.port().wrapping_add(1)));
            self.latched = false;
        }
        self.te_pt = d.telephone_event;
        self.remote_direction = d.direction;
        self.last_rx = Instant::now();
    }

    fn set_mode(&mut self, mode: Mode) {
        if let Mode::Playing(_, cancel) = &self.mode {
            cancel.cancel();
        }
        self.out.reset_source();
        self.mode = mode;
    }

    /// Our compound RTCP report for the leg and where it goes.
    fn rtcp_report(&mut self, cname: &str) -> Option<(SocketAddr, Vec<u8>)> {
        let to = self.remote_rtcp?;
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
    fn may_send(&self) -> bool {
        matches!(
            self.remote_direction,
            Direction::SendRecv | Direction::RecvOnly
        )
    }
}

impl Session {
    fn media(&self, version: u64) -> LocalMedia {
        LocalMedia {
            address: self.local.ip(),
            port: self.local.port(),
            session_id: self.sdp_session_id,
            version,
        }
    }

    fn next_version(&self) -> u64 {
        self.sdp_version.fetch_add(1, Ordering::Relaxed) + 1
    }

    fn set_mode(&self, mode: Mode) {
        lock(&self.state).set_mode(mode);
    }

    fn peer(&self) -> Option<Arc<Session>> {
        match &lock(&self.state).mode {
            Mode::Bridged(p) => p.upgrade(),
            _ => None,
        }
    }

    fn peer_id(&self) -> Option<String> {
        self.peer().map(|p| p.id.to_string())
    }

    fn stop(&self) {
        let rec = {
            let mut st = lock(&self.state);
            st.set_mode(Mode::Idle);
            st.recorder.take()
        };
        if let Some(rec) = rec {
            finish_recorder(rec);
        }
        self.cancel.cancel();
    }

    fn info(&self) -> SessionInfo {
        let bridged_to = self.peer_id();
        let st = lock(&self.state);
        let loss = st.stats.loss_fraction();
        let jitter = st.stats.jitter_ms();
        SessionInfo {
            session_id: self.id.to_string(),
            call_id: self.call_id.clone(),
            leg: self.leg.clone(),
            local_address: self.local,
            remote_address: st.remote,
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
    fn send(
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
        let Some(to) = st.remote else {
            return false;
        };
        if !st.may_send() {
            return false;
        }
        let (seq, ts, switched) = st.out.stamp(source, seq, ts, payload.len(), Instant::now());
        buf.clear();
        write_header(buf, pt, marker || switched, seq, ts, st.out.ssrc);
        buf.extend_from_slice(payload);
        match self.rtp.try_send_to(buf, to) {
            Ok(_) => true,
            Err(_) => {
                st.dropped += 1;
                false
            }
        }
    }
}

/// Receives the leg's RTP until the session stops.
async fn rtp_loop(session: Arc<Session>, events: broadcast::Sender<Event>) {
    let cancel = session.cancel.clone();
    // the cancellation future is made once, not per packet; each wake-up
    // drains every datagram queued on the socket
    let serve = async {
        let mut buf = vec![0u8; 2048];
        let mut out = Vec::with_capacity(2048);
        let mut payload = Vec::with_capacity(1024);
        let mut samples = Vec::with_capacity(1024);
        loop {
            if session.rtp.readable().await.is_err() {
                continue;
            }
            loop {
                match session.rtp.try_recv_from(&mut buf) {
                    Ok((n, from)) => on_rtp(
                        &session,
                        &buf[..n],
                        from,
                        &events,
                        &mut out,
                        &mut payload,
                        &mut samples,
                    ),
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

fn on_rtp(
    session: &Arc<Session>,
    packet: &[u8],
    from: SocketAddr,
    events: &broadcast::Sender<Event>,
    out: &mut Vec<u8>,
    payload: &mut Vec<u8>,
    samples: &mut Vec<i16>,
) {
    if is_rtcp(packet) {
        lock(&session.state).rtcp_received += 1;
        return;
    }
    let Some(rtp) = RtpView::parse(packet) else {
        lock(&session.state).dropped += 1;
        return;
    };
    let now = Instant::now();
    let pt = rtp.payload_type();
    let target = {
        let mut st = lock(&session.state);
        // symmetric RTP: send where the leg really sends from
        if st.remote != Some(from) {
            let silent = now.saturating_duration_since(st.last_rx) > RELATCH_AFTER;
            if !st.latched || silent {
                if st.remote.is_some() || !st.latched {
                    debug!(session = %session.id, %from, "RTP source latched");
                }
                st.remote = Some(from);
                st.remote_rtcp = Some(SocketAddr::new(from.ip(), from.port().wrapping_add(1)));
            } else {
                // a stray packet from another address: ignore it
                st.dropped += 1;
                return;
            }
        }
        st.latched = true;
        st.last_rx = now;
        st.remote_ssrc = Some(rtp.ssrc());
        let arrival = (now.saturating_duration_since(session.created).as_micros() / 125) as u32;
        st.stats.on_packet(rtp.sequence(), rtp.timestamp(), arrival);
        let is_event = st.te_pt == Some(pt) || (st.te_pt.is_none() && pt == OFFER_TE_PT);
        if is_event
            && let Some(digit) = st
                .dtmf
                .on_packet(rtp.timestamp(), rtp.marker(), rtp.payload())
        {
            let duration_ms = TelephoneEvent::parse(rtp.payload())
                .map(|e| u32::from(e.duration) / 8)
                .unwrap_or(0);
            let _ = events.send(Event {
                session_id: session.id.clone(),
                kind: EventKind::Dtmf { digit, duration_ms },
            });
            debug!(session = %session.id, %digit, "DTMF");
        }
        // `None`: a telephone-event
        let audio = if is_event {
            None
        } else if let Some(codec) = Codec::from_payload_type(pt) {
            if let Some(rec) = st.recorder.as_mut() {
                samples.clear();
                codec.decode(rtp.payload(), samples);
                record(rec, samples);
            }
            Some(codec)
        } else {
            // comfort noise and unknown payload types are not relayed
            return;
        };
        match &st.mode {
            Mode::Bridged(peer) => peer.upgrade().map(|p| (p, audio)),
            Mode::Echo => Some((session.clone(), audio)),
            Mode::Idle | Mode::Playing(..) => None,
        }
    };
    let Some((target, audio)) = target else {
        return;
    };
    let mut st = lock(&target.state);
    let (out_pt, body): (u8, &[u8]) = match audio {
        None => {
            // the far leg hears telephone-events only if it negotiated them
            let Some(te) = st.te_pt else {
                return;
            };
            (te, rtp.payload())
        }
        Some(from_codec) => match st.codec {
            Some((out_pt, to_codec)) if to_codec != from_codec => {
                payload.clear();
                payload.extend_from_slice(rtp.payload());
                Codec::transcode(from_codec, to_codec, payload);
                (out_pt, payload.as_slice())
            }
            Some((out_pt, _)) => (out_pt, rtp.payload()),
            None => (pt, rtp.payload()),
        },
    };
    target.send(
        &mut st,
        Source::Relay(rtp.ssrc()),
        rtp.sequence(),
        rtp.timestamp(),
        out_pt,
        body,
        rtp.marker(),
        out,
    );
}

fn record(rec: &mut Recorder, samples: &[i16]) {
    match rec {
        Recorder::Mono { wav, .. } => {
            if let Err(e) = wav.write_mono(samples) {
                warn!(cause = %e, "recording write failed");
            }
        }
        Recorder::Stereo { shared, left, .. } => lock(shared).push(*left, samples),
    }
}

/// RTCP of one leg. Incoming reports are counted and latched (an SR's
/// time is kept for our LSR/DLSR); they are not relayed, since the far leg
/// hears our SSRC and numbering, not the source's. Every
/// `interval` the leg gets our own compound report: SR while we
/// send to it (else RR), a reception report of its stream, SDES CNAME.
async fn rtcp_loop(session: Arc<Session>, interval: Duration) {
    let mut buf = vec![0u8; 1500];
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
                let mut st = lock(&session.state);
                st.rtcp_received += 1;
                st.remote_rtcp = Some(from);
                if let Some((_, middle)) = rtcp::parse_sender_report(&buf[..n]) {
                    st.last_sr = Some((middle, Instant::now()));
                }
            }
            _ = tick.tick() => {
                let report = lock(&session.state).rtcp_report(&cname);
                if let Some((to, bytes)) = report {
                    let _ = session.rtcp.try_send_to(&bytes, to);
                }
            }
            _ = session.cancel.cancelled() => return,
        }
    }
}

/// Plays `audio` (8 kHz samples) `repeat` times, one packet per 20 ms.
async fn playback(
    session: Arc<Session>,
    audio: Vec<Arc<Vec<i16>>>,
    repeat: u32,
    id: u64,
    cancel: CancellationToken,
    tx: mpsc::UnboundedSender<PlaybackEvent>,
    events: broadcast::Sender<Event>,
) {
    let emit = |kind: PlaybackKind, sent: u64| {
        let ev = PlaybackEvent {
            kind,
            playback_id: id,
            duration_ms: sent * u64::from(PTIME_MS),
        };
        let _ = tx.send(ev.clone());
        let _ = events.send(Event {
            session_id: session.id.clone(),
            kind: EventKind::Playback(ev),
        });
    };
    emit(PlaybackKind::Started, 0);
    let mut tick = tokio::time::interval(Duration::from_millis(u64::from(PTIME_MS)));
    let mut buf = Vec::with_capacity(256);
    let mut payload = Vec::with_capacity(FRAME);
    let mut frame = [0i16; FRAME];
    let mut sent: u64 = 0;
    let frames = audio
        .iter()
        .cycle()
        .take(audio.len() * repeat as usize)
        .flat_map(|a| {
            let n = a.len().div_ceil(FRAME);
            (0..n).map(move |i| (a.clone(), i * FRAME))
        });
    for (samples, start) in frames {
        tokio::select! {
            _ = tick.tick() => {}
            _ = cancel.cancelled() => {
                emit(PlaybackKind::Interrupted, sent);
                return;
            }
        }
        let end = (start + FRAME).min(samples.len());
        frame.fill(0);
        frame[..end - start].copy_from_slice(&samples[start..end]);
        let mut st = lock(&session.state);
        if !matches!(st.mode, Mode::Playing(p, _) if p == id) {
            drop(st);
            emit(PlaybackKind::Interrupted, sent);
            return;
        }
        let Some((pt, codec)) = st.codec else {
            continue;
        };
        payload.clear();
        codec.encode(&frame, &mut payload);
        let seq = sent as u16;
        let ts = (sent as u32).wrapping_mul(FRAME as u32);
        session.send(
            &mut st,
            Source::Local(id),
            seq,
            ts,
            pt,
            &payload,
            sent == 0,
            &mut buf,
        );
        sent += 1;
    }
    // let the last packet's 20 ms play out before saying "finished"
    tick.tick().await;
    {
        let mut st = lock(&session.state);
        if matches!(st.mode, Mode::Playing(p, _) if p == id) {
            st.mode = Mode::Idle;
        }
    }
    emit(PlaybackKind::Finished, sent);
}

/// Reports RTP timeouts once a second.
async fn sweep(inner: Weak<Inner>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        if inner.shutdown.is_cancelled() {
            return;
        }
        let timeout = inner.config.rtp_timeout;
        let sessions: Vec<Arc<Session>> = lock(&inner.sessions).values().cloned().collect();
        let now = Instant::now();
        for s in sessions {
            let mut st = lock(&s.state);
            // a leg on hold (sendonly from us / inactive) sends nothing
            let expects_rtp = matches!(
                st.remote_direction,
                Direction::SendRecv | Direction::SendOnly
            );
            if expects_rtp && now.saturating_duration_since(st.last_rx) >= timeout {
                // reported again after each further period of silence: a
                // call that ignored the first (still ringing) hears the next
                st.last_rx = now;
                drop(st);
                info!(session = %s.id, call_id = %s.call_id, "RTP timeout");
                let _ = inner.events.send(Event {
                    session_id: s.id.clone(),
                    kind: EventKind::RtpTimeout {
                        seconds: timeout.as_secs() as u32,
                    },
                });
            }
        }
    }
}
