//! One outgoing RTP stream: what a leg receives from us.
//!
//! A leg hears one stream (our SSRC) whatever feeds it: the far leg's
//! relayed packets, a playback, its own echo. Every time the source changes
//! the sequence number and timestamp continue where the stream left off
//! (the timestamp advanced by the wall-clock time in between) and the
//! marker bit is set, so the phone's jitter buffer sees one talkspurt
//! after another instead of a jump (RFC 3550 §5.1, RFC 3551 §4.1).
//! Within one source, numbers are shifted by a constant offset, so the
//! source's own gaps and reordering reach the phone unchanged.

use std::time::Instant;

/// What feeds the stream at the moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Packets relayed from a remote SSRC.
    Relay(u32),
    /// Audio we generate (a playback), by its id.
    Local(u64),
}

/// Sequence and timestamp state of one outgoing stream.
#[derive(Debug, Clone)]
pub struct OutStream {
    pub ssrc: u32,
    source: Option<Source>,
    seq_offset: u16,
    ts_offset: u32,
    last_seq: u16,
    last_ts: u32,
    last_at: Option<Instant>,
    /// RTP timestamp units per millisecond of the leg's codec (8 for
    /// G.711, 48 for Opus).
    units_per_ms: u64,
    pub packets: u64,
    pub octets: u64,
}

/// 8 kHz clock (G.711): RTP timestamp units per millisecond.
const UNITS_PER_MS: u64 = 8;
/// A packet's worth of time (20 ms) at least between two sources.
const MIN_GAP_MS: u64 = 20;

impl OutStream {
    /// A stream with random SSRC, first sequence number and timestamp
    /// (RFC 3550 §5.1).
    pub fn new() -> OutStream {
        OutStream::with_start(rand::random(), rand::random(), rand::random())
    }

    pub fn with_start(ssrc: u32, seq: u16, ts: u32) -> OutStream {
        OutStream {
            ssrc,
            source: None,
            seq_offset: 0,
            ts_offset: 0,
            last_seq: seq.wrapping_sub(1),
            last_ts: ts,
            last_at: None,
            units_per_ms: UNITS_PER_MS,
            packets: 0,
            octets: 0,
        }
    }

    /// Sequence number, timestamp and marker for a packet of `source`
    /// carrying `(seq, ts)` in the source's own numbering.
    pub fn stamp(
        &mut self,
        source: Source,
        seq: u16,
        ts: u32,
        payload_len: usize,
        now: Instant,
    ) -> (u16, u32, bool) {
        let mut marker = false;
        if self.source != Some(source) {
            let next_seq = self.last_seq.wrapping_add(1);
            let next_ts = match self.last_at {
                // at least one packet's worth (20 ms), so a fast switch
                // never repeats a timestamp
                Some(at) => {
                    let ms = now.saturating_duration_since(at).as_millis() as u64;
                    let units = ms.max(MIN_GAP_MS) * self.units_per_ms;
                    self.last_ts.wrapping_add(units as u32)
                }
                None => self.last_ts,
            };
            self.seq_offset = next_seq.wrapping_sub(seq);
            self.ts_offset = next_ts.wrapping_sub(ts);
            self.source = Some(source);
            marker = true;
        }
        let out_seq = seq.wrapping_add(self.seq_offset);
        let out_ts = ts.wrapping_add(self.ts_offset);
        // a late (reordered) packet must not pull the stream's position back
        if (out_seq.wrapping_sub(self.last_seq) as i16) > 0 || marker {
            self.last_seq = out_seq;
            self.last_ts = out_ts;
        }
        self.last_at = Some(now);
        self.packets += 1;
        self.octets += payload_len as u64;
        (out_seq, out_ts, marker)
    }

    /// The stream's RTP timestamp at `now` (for an RTCP sender report):
    /// the last one sent, advanced by the time since.
    pub fn position(&self, now: Instant) -> u32 {
        match self.last_at {
            Some(at) => {
                let ms = now.saturating_duration_since(at).as_millis() as u64;
                self.last_ts.wrapping_add((ms * self.units_per_ms) as u32)
            }
            None => self.last_ts,
        }
    }

    /// The RTP clock rate of the leg's codec (Hz).
    pub fn set_clock(&mut self, rate: u32) {
        self.units_per_ms = u64::from(rate / 1000).max(1);
    }

    /// Forgets the current source: the next packet of any source starts a
    /// new talkspurt (used when a session is re-bridged to the same peer).
    pub fn reset_source(&mut self) {
        self.source = None;
    }
}

impl Default for OutStream {
    fn default() -> Self {
        OutStream::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn relay_keeps_the_source_numbering_shifted() {
        let t0 = Instant::now();
        let mut s = OutStream::with_start(7, 1000, 50_000);
        let (seq, ts, m) = s.stamp(Source::Relay(1), 40_000, 9_000, 160, t0);
        assert_eq!((seq, ts, m), (1000, 50_000, true));
        let (seq, ts, m) = s.stamp(Source::Relay(1), 40_001, 9_160, 160, t0);
        assert_eq!((seq, ts, m), (1001, 50_160, false));
        // the source lost a packet: the gap reaches the phone
        let (seq, ts, _) = s.stamp(Source::Relay(1), 40_003, 9_480, 160, t0);
        assert_eq!((seq, ts), (1003, 50_480));
        // a reordered late packet keeps its place and does not rewind
        let (seq, _, _) = s.stamp(Source::Relay(1), 40_002, 9_320, 160, t0);
        assert_eq!(seq, 1002);
        assert_eq!(s.packets, 4);
        assert_eq!(s.octets, 640);
    }

    #[test]
    fn a_source_switch_continues_sequence_and_advances_time() {
        let t0 = Instant::now();
        let mut s = OutStream::with_start(7, 65_534, u32::MAX - 100);
        // a playback: its own numbering starts at 0
        for i in 0..3u16 {
            let at = t0 + Duration::from_millis(20 * i as u64);
            s.stamp(Source::Local(1), i, u32::from(i) * 160, 160, at);
        }
        // then the bridge: 100 ms later, from a random remote numbering
        let at = t0 + Duration::from_millis(140);
        let (seq, ts, m) = s.stamp(Source::Relay(99), 12_345, 777, 160, at);
        assert!(m, "a new source sets the marker");
        assert_eq!(
            seq,
            65_534u16.wrapping_add(3),
            "sequence continues across wrap"
        );
        let last_ts = (u32::MAX - 100).wrapping_add(320);
        assert_eq!(
            ts,
            last_ts.wrapping_add(100 * 8),
            "timestamp advances by the gap"
        );
        // and back to a playback right away: at least 20 ms later in time
        let (seq2, ts2, m2) = s.stamp(Source::Local(2), 0, 0, 160, at);
        assert!(m2);
        assert_eq!(seq2, seq.wrapping_add(1));
        assert_eq!(ts2, ts.wrapping_add(160));
    }

    #[test]
    fn a_new_remote_ssrc_is_a_new_source() {
        let t0 = Instant::now();
        let mut s = OutStream::with_start(7, 10, 0);
        s.stamp(Source::Relay(1), 500, 500, 160, t0);
        let (seq, _, m) = s.stamp(Source::Relay(2), 9, 9, 160, t0);
        assert!(m);
        assert_eq!(seq, 11);
        s.reset_source();
        let (seq, _, m) = s.stamp(Source::Relay(2), 10, 169, 160, t0);
        assert!(m);
        assert_eq!(seq, 12);
    }
}
