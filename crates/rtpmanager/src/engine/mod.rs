//! The media engine: sessions (one per call leg, one RTP/RTCP port pair
//! each), the relay between bridged sessions, playback, echo, recording,
//! DTMF detection, RTP timeouts and the expiry of abandoned sessions.
//! A browser's leg (WebRTC: ICE-lite, DTLS-SRTP, rtcp-mux) has its own
//! demultiplexer and handshake in front of the same relay ([`webrtc`]).
//!
//! Each session has one receive task per socket. A packet is handled on
//! the receiving task from start to end: check its source
//! ([`switchboard_media::learning`]), count it, detect DTMF, hand its
//! samples to a recording, then send it (transcoded, renumbered) out of
//! the peer session's socket with a non-blocking `send_to`. An Opus leg's
//! packets are decoded on receipt by its own libopus decoder, and what is
//! sent to it encoded by its own encoder ([`crate::codec`]). Per-session
//! state sits behind a `std::sync::Mutex` that is never held across an
//! await and never held together with another session's lock. File work
//! (recordings, prompts) runs on tokio's blocking pool, never on the
//! packet path.

mod bind;
mod counters;
mod negotiate;
mod packets;
mod paths;
mod playback;
mod session;
mod sweep;
mod webrtc;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use switchboard_media::g711::Codec;
use switchboard_media::learning::Policy;
use switchboard_sip::sdp::{self, Direction, LocalMedia};
use tokio::sync::{broadcast, mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

pub use crate::codec::AudioCodec;
use crate::ports::PortPool;
use crate::recording;
use crate::webrtc::dtls::Identity;
use negotiate::{choose, offer_crypto, on_answer, on_offer, our_answer, our_offer, parse_sdp};
use paths::{safe_relative, with_wav};
use session::{Lease, Mode, Session, State};

pub use crate::srtp::SrtpPolicy;
pub use counters::{Counters, Health, Stats};
pub use webrtc::DTLS_DEADLINE;

/// The G.711 codecs the engine can receive, send and transcode between
/// (Opus too, see [`crate::codec`]), in the order
/// it offers them.
pub const CODECS: [Codec; 2] = [Codec::Pcmu, Codec::Pcma];
/// The Opus payload type of our offers to browsers (the one Chromium uses).
pub const OFFER_OPUS_PT: u8 = 111;
/// The telephone-event payload type of our offers (RFC 4733).
pub const OFFER_TE_PT: u8 = 101;
const PTIME_MS: u32 = 20;
/// How often each leg gets our RTCP report by default (RFC 3550 §6.2:
/// 5 s minimum).
pub const RTCP_INTERVAL: Duration = Duration::from_secs(5);
/// A session that streams no RTP because it is on hold is ended after this
/// long by default.
pub const RTP_HOLD_TIMEOUT: Duration = Duration::from_secs(3600);
/// Event streams (WatchEvents) one session may have at once.
pub const MAX_WATCHERS: usize = 8;
/// Events queued per stream for a slow reader; more are dropped (counted).
pub const WATCH_QUEUE: usize = 64;

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
    /// No RTP for this long is reported as an `RtpTimeout` event; for
    /// twice as long, the session is ended by the engine itself.
    pub rtp_timeout: Duration,
    /// A session on hold (the leg sends no RTP by its SDP) is ended after
    /// this long without RTP.
    pub rtp_hold_timeout: Duration,
    /// How often each leg gets our RTCP report.
    pub rtcp_interval: Duration,
    /// Which addresses other than the SDP's a leg's RTP may be learned from.
    pub source_policy: Policy,
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
    /// A bounded resource other than ports is full.
    #[error("{0}")]
    Limit(String),
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
    pub chosen: Option<(u8, AudioCodec)>,
    pub telephone_event: Option<u8>,
    pub local_address: SocketAddr,
}

/// The reply to `update_session`.
#[derive(Debug, Clone)]
pub struct Updated {
    pub local_sdp: Option<String>,
    pub chosen: Option<(u8, AudioCodec)>,
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
    pub codec: Option<(u8, AudioCodec)>,
    pub bridged_to: Option<String>,
    pub packets_received: u64,
    pub packets_sent: u64,
    pub packets_lost: u64,
    pub jitter_ms: f64,
    pub mos: f64,
    pub age: Duration,
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
    /// Set once the process is shutting down: draining stays on.
    stopping: AtomicBool,
    /// The number of sessions, sent on every change (under the sessions
    /// lock), so a shutdown can wait for the last one to end.
    live: watch::Sender<usize>,
    /// Events of every session, for watchers of all sessions (lossy).
    events: broadcast::Sender<Event>,
    next_id: AtomicU64,
    audio_cache: Mutex<HashMap<PathBuf, playback::CachedAudio>>,
    counters: Arc<Counters>,
    shutdown: CancellationToken,
    /// The DTLS certificate of WebRTC legs, one per process.
    identity: Arc<Identity>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Engine {
    /// Starts the engine's housekeeping (RTP timeouts, expiry) on the
    /// current runtime.
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
        let identity = Identity::generate()
            .map(Arc::new)
            .map_err(EngineError::Internal)?;
        let (events, _) = broadcast::channel(1024);
        let inner = Arc::new(Inner {
            config,
            sessions: Mutex::new(HashMap::new()),
            ports: Arc::new(Mutex::new(pool)),
            draining: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            live: watch::Sender::new(0),
            events,
            next_id: AtomicU64::new(1),
            audio_cache: Mutex::new(HashMap::new()),
            counters: Arc::new(Counters::default()),
            shutdown: CancellationToken::new(),
            identity,
        });
        tokio::spawn(sweep::sweep(Arc::downgrade(&inner)));
        Ok(Engine { inner })
    }

    pub fn config(&self) -> &EngineConfig {
        &self.inner.config
    }

    /// Every event of every session from now on (a lagging receiver loses
    /// the oldest).
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.inner.events.subscribe()
    }

    /// The events of one session from now on, at most [`WATCH_QUEUE`]
    /// queued (newer ones are dropped and counted while the reader is
    /// behind). The stream ends when the session does.
    pub fn watch(&self, id: &str) -> Result<mpsc::Receiver<Event>, EngineError> {
        self.session(id)?.watch()
    }

    /// Stops every session (their sockets close, ports are freed) and the
    /// housekeeping task.
    pub fn shutdown(&self) {
        self.inner.shutdown.cancel();
        let sessions: Vec<Arc<Session>> = {
            let mut map = lock(&self.inner.sessions);
            let all = map.drain().map(|(_, s)| s).collect();
            self.inner.live.send_replace(0);
            all
        };
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
            stats: self.inner.counters.snapshot(),
        }
    }

    pub fn stats(&self) -> Stats {
        self.inner.counters.snapshot()
    }

    /// Turns drain mode on or off (SetDraining). While the process shuts
    /// down ([`Engine::drain_for_shutdown`]) it stays on.
    pub fn set_draining(&self, draining: bool) -> Health {
        if !draining && self.inner.stopping.load(Ordering::Relaxed) {
            warn!("SetDraining(false) refused: the RTP manager is shutting down");
            return self.health();
        }
        self.store_draining(draining);
        info!(draining, "drain mode changed");
        self.health()
    }

    /// Drain mode for good: no new sessions from now on, SetDraining(false)
    /// is refused; live sessions go on.
    pub fn drain_for_shutdown(&self) -> Health {
        self.inner.stopping.store(true, Ordering::Relaxed);
        self.store_draining(true);
        self.health()
    }

    /// Stored under the sessions lock, where `create_session` checks it
    /// again before inserting: once this returns, no session is added.
    fn store_draining(&self, draining: bool) {
        let _sessions = lock(&self.inner.sessions);
        self.inner.draining.store(draining, Ordering::Relaxed);
    }

    /// Resolves once [`Engine::shutdown`] has been called.
    pub async fn stopped(&self) {
        self.inner.shutdown.cancelled().await;
    }

    /// Resolves when no session is left (at once when there is none).
    pub async fn idle(&self) {
        let mut live = self.inner.live.subscribe();
        // the sender lives in `inner`, which `self` holds: no error
        let _ = live.wait_for(|n| *n == 0).await;
    }

    fn session(&self, id: &str) -> Result<Arc<Session>, EngineError> {
        lock(&self.inner.sessions)
            .get(id)
            .cloned()
            .ok_or_else(|| EngineError::NotFound(id.to_string()))
    }

    /// Allocates a port pair for a leg and answers its offer, or writes our
    /// offer when there is none. `family` picks the address family of our
    /// offer ("IP4"/"IP6"); an offer's own c= decides otherwise. `srtp`
    /// is the leg's SRTP policy (see [`SrtpPolicy`]). `webrtc`: the leg is
    /// a browser's, offered `UDP/TLS/RTP/SAVPF` (ICE-lite, DTLS-SRTP) when
    /// there is no `remote_sdp`, whose offer must be a WebRTC one otherwise.
    pub async fn create_session(
        &self,
        call_id: &str,
        leg: &str,
        remote_sdp: Option<&[u8]>,
        family: Option<&str>,
        srtp: SrtpPolicy,
        webrtc: bool,
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
        let webrtc_leg = match &remote {
            Some(d) if d.is_webrtc() => Some(webrtc::on_offer(d, srtp, &self.inner.identity)?),
            Some(_) if webrtc => {
                return Err(EngineError::InvalidArgument(
                    "remote_sdp: not a WebRTC offer (UDP/TLS/RTP/SAVPF) on a leg of profile WebRTC"
                        .into(),
                ));
            }
            None if webrtc => Some(webrtc::for_offer(srtp, &self.inner.identity)?),
            _ => None,
        };
        let mut leg_srtp = None;
        if let Some(d) = &remote
            && webrtc_leg.is_none()
        {
            on_offer(d, srtp, None)?.apply(&mut leg_srtp);
        }
        let (port, rtp, rtcp) = self.bind_pair(address.bind)?;
        let local = SocketAddr::new(address.advertise, port);
        let n = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let id: Arc<str> = format!("{:08x}-{n}", rand::random::<u32>()).into();
        let sdp_session_id = u64::from(rand::random::<u32>());
        let mut state = State::new(self.inner.config.source_policy);
        if let Some(chosen) = chosen {
            state.set_codec(chosen)?;
        }
        state.srtp_policy = srtp;
        let is_webrtc = webrtc_leg.is_some();
        state.webrtc = webrtc_leg;
        let media = LocalMedia {
            address: local.ip(),
            port,
            session_id: sdp_session_id,
            version: 1,
        };
        let cname = format!("{id}@{}", local.ip());
        let local_sdp = match (&remote, chosen, &state.webrtc) {
            (Some(d), Some(chosen), _) => {
                state.apply_remote(d, false);
                let answer = match &state.webrtc {
                    Some(leg) => webrtc::answer(&media, d, chosen, leg, state.out.ssrc, &cname),
                    None => our_answer(&media, d, chosen, leg_srtp.as_ref()),
                };
                state.srtp = leg_srtp;
                answer
            }
            (_, _, Some(leg)) => {
                webrtc::offer(&media, leg, Direction::SendRecv, state.out.ssrc, &cname)
            }
            _ => {
                state.offered_crypto = offer_crypto(srtp, None);
                our_offer(&media, Direction::SendRecv, state.offered_crypto.as_ref())
            }
        };
        let telephone_event = state.te_pt;
        let session = Arc::new(Session {
            id: id.clone(),
            call_id: call_id.to_string(),
            leg: leg.to_string(),
            created: Instant::now(),
            local,
            rtp: Arc::new(rtp),
            rtcp: Arc::new(rtcp),
            state: Mutex::new(state),
            watchers: Mutex::new(Vec::new()),
            all_events: self.inner.events.clone(),
            counters: self.inner.counters.clone(),
            cancel: self.inner.shutdown.child_token(),
            sdp_session_id,
            sdp_version: AtomicU64::new(1),
            webrtc: is_webrtc,
            _lease: Lease {
                port,
                pool: self.inner.ports.clone(),
            },
        });
        {
            let mut sessions = lock(&self.inner.sessions);
            // checked again under the lock drain mode is stored under, so
            // a shutdown waiting for the last session never misses one
            if self.inner.draining.load(Ordering::Relaxed) {
                // dropped unstarted: its sockets close, its ports return
                return Err(EngineError::Draining);
            }
            sessions.insert(id.clone(), session.clone());
            self.inner.live.send_replace(sessions.len());
        }
        tokio::spawn(packets::rtp_loop(session.clone()));
        tokio::spawn(packets::rtcp_loop(
            session.clone(),
            self.inner.config.rtcp_interval,
        ));
        debug!(session = %id, %call_id, leg, %local, "session created");
        Ok(Created {
            session_id: id.to_string(),
            local_sdp,
            offered: remote.map(|d| d.codecs).unwrap_or_default(),
            chosen,
            telephone_event,
            local_address: local,
        })
    }

    /// Applies the leg's new SDP (an answer to our offer, or a new offer
    /// that we answer). A new address, or any new offer, re-opens the
    /// learning of the leg's source.
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
        if session.webrtc || d.is_webrtc() {
            return webrtc::update(&session, &mut st, &d, is_offer, chosen);
        }
        // checked before anything changes: a refused SDP leaves the leg as
        // it was (its keys included)
        let next = if is_offer {
            on_offer(&d, st.srtp_policy, st.srtp.as_ref())?
        } else {
            on_answer(&d, st.offered_crypto.as_ref(), st.srtp.as_ref())?
        };
        next.apply(&mut st.srtp);
        st.apply_remote(&d, is_offer);
        st.set_codec(chosen)?;
        let local_sdp = is_offer.then(|| {
            let media = session.media(session.next_version());
            our_answer(&media, &d, chosen, st.srtp.as_ref())
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
        if session.webrtc {
            return webrtc::reoffer(&session, &mut lock(&session.state), direction);
        }
        let media = session.media(session.next_version());
        let mut st = lock(&session.state);
        st.offered_crypto = offer_crypto(st.srtp_policy, st.srtp.as_ref());
        Ok(our_offer(&media, direction, st.offered_crypto.as_ref()))
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
    /// session's event feed). The files are read on the blocking pool.
    pub async fn play(
        &self,
        id: &str,
        files: &[String],
        repeat: u32,
    ) -> Result<(u64, mpsc::Receiver<PlaybackEvent>), EngineError> {
        let session = self.session(id)?;
        if files.is_empty() {
            return Err(EngineError::InvalidArgument("files: no file given".into()));
        }
        let mut audio = Vec::with_capacity(files.len());
        for (i, f) in files.iter().enumerate() {
            audio.push(
                self.load_audio(f)
                    .await
                    .map_err(|e| EngineError::InvalidArgument(format!("files[{i}]: {e}")))?,
            );
        }
        if session.cancel.is_cancelled() {
            // destroyed while the files were read
            return Err(EngineError::NotFound(id.to_string()));
        }
        let playback_id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let cancel = session.cancel.child_token();
        session.set_mode(Mode::Playing(playback_id, cancel.clone()));
        let (tx, rx) = mpsc::channel(4);
        tokio::spawn(playback::playback(
            session,
            audio,
            repeat.max(1),
            playback_id,
            cancel,
            tx,
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

    /// Records the leg's received audio (mono) or both sides of its bridge
    /// (stereo) to `file` under the recording directory. The file is
    /// created on the blocking pool and written by its own writer task.
    pub async fn record(
        &self,
        id: &str,
        file: &str,
        both_sides: bool,
    ) -> Result<PathBuf, EngineError> {
        let session = self.session(id)?;
        let rel =
            safe_relative(file).map_err(|e| EngineError::InvalidArgument(format!("file: {e}")))?;
        let path = with_wav(self.inner.config.record_path.join(rel));
        let peer = if both_sides {
            Some(session.peer().ok_or_else(|| {
                EngineError::Precondition(format!(
                    "session {id} is not bridged: both_sides needs a bridge"
                ))
            })?)
        } else {
            None
        };
        let counters = self.inner.counters.clone();
        let (tap, peer_tap) = recording::start(path.clone(), peer.is_some(), counters)
            .await
            .map_err(EngineError::Internal)?;
        let old = lock(&session.state).recorder.replace(tap);
        if let Some(old) = old {
            old.close();
        }
        if let (Some(peer), Some(peer_tap)) = (peer, peer_tap) {
            let old = lock(&peer.state).recorder.replace(peer_tap);
            if let Some(old) = old {
                old.close();
            }
        }
        info!(session = id, path = %path.display(), both_sides, "recording");
        Ok(path)
    }

    /// Stops the session's recording and waits until the file is complete:
    /// its path and sample count (per channel).
    pub async fn stop_recording(&self, id: &str) -> Result<Option<(PathBuf, u64)>, EngineError> {
        let session = self.session(id)?;
        let taken = lock(&session.state).recorder.take();
        let Some(tap) = taken else {
            return Ok(None);
        };
        if let Some(peer) = session.peer() {
            let mut st = lock(&peer.state);
            if st.recorder.as_ref().is_some_and(|t| t.same_file(&tap)) {
                st.recorder = None;
            }
        }
        let samples = tap.finish().await;
        Ok(Some((tap.path().to_path_buf(), samples)))
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
        let session = {
            let mut sessions = lock(&self.inner.sessions);
            let removed = sessions.remove(id);
            self.inner.live.send_replace(sessions.len());
            removed
        }
        .ok_or_else(|| EngineError::NotFound(id.to_string()))?;
        let info = session.info();
        session.stop();
        debug!(session = id, "session destroyed");
        Ok(info)
    }
}
