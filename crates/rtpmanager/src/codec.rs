//! What a leg talks: G.711 (PCMU, PCMA: stateless, 8 kHz) or Opus (RFC
//! 6716 in RTP, RFC 7587), which browsers offer first.
//!
//! Opus runs through libopus (the `opus` crate, linking the system
//! library). Inside libopus the leg's audio is 8 kHz mono PCM, the same as
//! a G.711 leg's: what crosses a bridge to a desk phone is narrowband
//! anyway, so decoding to 8 kHz loses nothing the other side could carry,
//! and 8 kHz keeps the work per packet small. On the wire the Opus RTP
//! clock is 48 kHz whatever the audio bandwidth (RFC 7587 §4.1): a 20 ms
//! frame is 160 samples here and 960 timestamp units there
//! ([`OPUS_TS_PER_SAMPLE`]). We send 20 ms frames; we decode whatever frame
//! length the browser sends (up to 120 ms).

use std::fmt;

use switchboard_media::g711::Codec;

/// The RTP clock of Opus (RFC 7587 §4.1).
pub const OPUS_CLOCK: u32 = 48_000;
/// Opus timestamp units per 8 kHz sample.
pub const OPUS_TS_PER_SAMPLE: u32 = OPUS_CLOCK / 8000;
/// The sample rate libopus runs at here (narrowband, as G.711).
const PCM_RATE: u32 = 8000;
/// The longest Opus packet: 120 ms, at 8 kHz.
const MAX_FRAME: usize = 960;
/// Room for one encoded frame (libopus' recommended maximum).
const MAX_PACKET: usize = 1275;
/// What we encode at: plenty for narrowband speech (RFC 7587 §3.1.1
/// suggests 8-12 kb/s for it), headroom for music on hold.
const BITRATE: i32 = 24_000;

/// A leg's codec, as negotiated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AudioCodec {
    G711(Codec),
    Opus,
}

impl AudioCodec {
    /// The encoding name as SDP writes it.
    pub fn name(self) -> &'static str {
        match self {
            AudioCodec::G711(c) => c.name(),
            AudioCodec::Opus => "opus",
        }
    }

    /// The RTP clock rate.
    pub fn clock_rate(self) -> u32 {
        match self {
            AudioCodec::G711(_) => 8000,
            AudioCodec::Opus => OPUS_CLOCK,
        }
    }

    /// By encoding name (case-insensitive).
    pub fn from_name(name: &str) -> Option<AudioCodec> {
        if name.eq_ignore_ascii_case("opus") {
            Some(AudioCodec::Opus)
        } else {
            Codec::from_name(name).map(AudioCodec::G711)
        }
    }

    /// RTP timestamp units per 8 kHz sample.
    pub fn ts_per_sample(self) -> u32 {
        match self {
            AudioCodec::G711(_) => 1,
            AudioCodec::Opus => OPUS_TS_PER_SAMPLE,
        }
    }
}

impl fmt::Display for AudioCodec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl From<Codec> for AudioCodec {
    fn from(c: Codec) -> AudioCodec {
        AudioCodec::G711(c)
    }
}

/// The libopus state of one Opus leg: a decoder for what it sends, an
/// encoder for what we send it. Each keeps history between packets (the
/// decoder conceals a lost packet from it), so one leg's streams never
/// share them.
pub struct OpusLeg {
    encoder: opus::Encoder,
    decoder: opus::Decoder,
    /// Where [`OpusLeg::rx_timestamp_8k`] counts from.
    rx_base: Option<u32>,
}

impl fmt::Debug for OpusLeg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpusLeg").finish_non_exhaustive()
    }
}

impl OpusLeg {
    pub fn new() -> Result<OpusLeg, String> {
        let why = |e: opus::Error| format!("libopus: {e}");
        let mut encoder =
            opus::Encoder::new(PCM_RATE, opus::Channels::Mono, opus::Application::Voip)
                .map_err(why)?;
        encoder
            .set_bitrate(opus::Bitrate::Bits(BITRATE))
            .map_err(why)?;
        // the browser asks for it (useinbandfec=1) and conceals a lost
        // packet better with it
        encoder.set_inband_fec(true).map_err(why)?;
        encoder.set_packet_loss_perc(5).map_err(why)?;
        let decoder = opus::Decoder::new(PCM_RATE, opus::Channels::Mono).map_err(why)?;
        Ok(OpusLeg {
            encoder,
            decoder,
            rx_base: None,
        })
    }

    /// A timestamp of the leg's stream (48 kHz) in 8 kHz units, counted
    /// from a second before its first packet (so a packet reordered before
    /// that one stays before it). Dividing the timestamp itself would jump
    /// where it wraps, which a random start puts anywhere; counted so, the
    /// units stay continuous for the first 24 hours of the stream.
    pub fn rx_timestamp_8k(&mut self, ts: u32) -> u32 {
        let base = *self.rx_base.get_or_insert(ts.wrapping_sub(OPUS_CLOCK));
        ts.wrapping_sub(base) / OPUS_TS_PER_SAMPLE
    }

    /// Appends the 8 kHz samples of one Opus packet (mono or stereo, any
    /// bandwidth and frame length) to `out`. False when libopus refuses
    /// the packet (nothing appended); an empty payload is refused too
    /// (libopus would read it as a loss to conceal).
    pub fn decode(&mut self, payload: &[u8], out: &mut Vec<i16>) -> bool {
        if payload.is_empty() {
            return false;
        }
        let start = out.len();
        out.resize(start + MAX_FRAME, 0);
        let Some(buf) = out.get_mut(start..) else {
            return false;
        };
        match self.decoder.decode(payload, buf, false) {
            Ok(n) => {
                out.truncate(start + n.min(MAX_FRAME));
                true
            }
            Err(_) => {
                out.truncate(start);
                false
            }
        }
    }

    /// Encodes one frame of 8 kHz samples into `out` (replaced). The frame
    /// must be 2.5, 5, 10, 20, 40 or 60 ms long (20 to 480 samples):
    /// false otherwise (a 30 ms G.711 packet cannot be one Opus frame).
    pub fn encode(&mut self, samples: &[i16], out: &mut Vec<u8>) -> bool {
        out.clear();
        out.resize(MAX_PACKET, 0);
        match self.encoder.encode(samples, out) {
            Ok(n) => {
                out.truncate(n);
                true
            }
            Err(_) => {
                out.clear();
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(n: usize, freq: f64, phase: usize) -> Vec<i16> {
        (0..n)
            .map(|i| {
                let t = (phase + i) as f64 / 8000.0;
                ((t * freq * std::f64::consts::TAU).sin() * 8000.0) as i16
            })
            .collect()
    }

    #[test]
    fn a_tone_survives_a_round_trip() {
        let mut tx = OpusLeg::new().unwrap();
        let mut rx = OpusLeg::new().unwrap();
        let (mut packet, mut got) = (Vec::new(), Vec::new());
        for k in 0..25 {
            assert!(tx.encode(&tone(160, 600.0, k * 160), &mut packet));
            assert!(!packet.is_empty() && packet.len() < 200);
            assert!(rx.decode(&packet, &mut got));
        }
        assert_eq!(got.len(), 25 * 160);
        // after the codec's delay the signal is the tone, not silence
        let tail = &got[got.len() - 1600..];
        let energy: f64 = tail.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / 1600.0;
        assert!(energy.sqrt() > 3000.0, "rms {}", energy.sqrt());
    }

    #[test]
    fn junk_and_odd_frames_are_refused_without_panic() {
        let mut leg = OpusLeg::new().unwrap();
        let mut out = Vec::new();
        assert!(!leg.decode(&[], &mut out));
        assert!(out.is_empty());
        // TOC code 3 with a frame count of 0 is invalid
        assert!(!leg.decode(&[0x03, 0x00], &mut out));
        let mut seed = 7u32;
        for len in 1..300 {
            let p: Vec<u8> = (0..len)
                .map(|_| {
                    seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
                    (seed >> 16) as u8
                })
                .collect();
            out.clear();
            if leg.decode(&p, &mut out) {
                assert!(out.len() <= MAX_FRAME);
            }
        }
        let mut packet = Vec::new();
        assert!(!leg.encode(&tone(240, 500.0, 0), &mut packet), "30 ms");
        assert!(leg.encode(&tone(80, 500.0, 0), &mut packet), "10 ms");
    }

    #[test]
    fn names_and_clocks() {
        assert_eq!(AudioCodec::from_name("OPUS"), Some(AudioCodec::Opus));
        assert_eq!(
            AudioCodec::from_name("pcma"),
            Some(AudioCodec::G711(Codec::Pcma))
        );
        assert_eq!(AudioCodec::Opus.clock_rate(), 48_000);
        assert_eq!(AudioCodec::Opus.ts_per_sample(), 6);
        assert_eq!(AudioCodec::G711(Codec::Pcmu).ts_per_sample(), 1);
    }
}
