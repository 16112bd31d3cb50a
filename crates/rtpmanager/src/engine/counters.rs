//! The engine's counters (health and metrics) and its health snapshot.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};

/// The engine's own counters since start.
#[derive(Debug, Default)]
pub struct Counters {
    /// RTP and RTCP packets dropped because they came from an address the
    /// leg's source is not locked to (or may not be learned from).
    pub foreign_dropped: AtomicU64,
    /// Sessions the engine ended itself (no RTP for 2×RTP_TIMEOUT, or
    /// RTP_HOLD_TIMEOUT on hold).
    pub sessions_expired: AtomicU64,
    /// Events dropped because a watcher's queue was full.
    pub events_dropped: AtomicU64,
    /// Recorded packets dropped because the writer fell behind.
    pub recording_dropped: AtomicU64,
    /// SRTP/SRTCP packets of SRTP legs dropped because they did not
    /// authenticate (bad tag, wrong key, replay, malformed).
    pub srtp_dropped: AtomicU64,
    /// STUN messages on WebRTC legs dropped unanswered: not a Binding
    /// request, or not authenticated with the leg's ICE credentials.
    pub ice_refused: AtomicU64,
    /// WebRTC legs whose DTLS handshake failed (a certificate not matching
    /// its a=fingerprint included) or did not finish in time.
    pub dtls_failed: AtomicU64,
}

/// A snapshot of [`Counters`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub foreign_dropped: u64,
    pub sessions_expired: u64,
    pub events_dropped: u64,
    pub recording_dropped: u64,
    pub srtp_dropped: u64,
    pub ice_refused: u64,
    pub dtls_failed: u64,
}

impl Counters {
    pub fn snapshot(&self) -> Stats {
        let l = Ordering::Relaxed;
        Stats {
            foreign_dropped: self.foreign_dropped.load(l),
            sessions_expired: self.sessions_expired.load(l),
            events_dropped: self.events_dropped.load(l),
            recording_dropped: self.recording_dropped.load(l),
            srtp_dropped: self.srtp_dropped.load(l),
            ice_refused: self.ice_refused.load(l),
            dtls_failed: self.dtls_failed.load(l),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    pub sessions: usize,
    pub free_port_pairs: usize,
    pub draining: bool,
    pub advertise: Vec<IpAddr>,
    pub stats: Stats,
}
