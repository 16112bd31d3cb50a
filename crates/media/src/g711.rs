//! ITU-T G.711 µ-law (PCMU) and A-law (PCMA), bit-exact with the classic
//! Sun `g711.c`: µ-law with bias 0x84 and clip 32635, bytes inverted; A-law
//! on the 13-bit magnitude with even bits toggled (XOR 0x55).
//!
//! Decoding and PCMU↔PCMA transcoding go through 256-entry tables computed at
//! compile time; the RTP manager's relay transcodes payloads byte for byte.
//! Transcoding is decode→encode (not the G.711 Annex tables), so it is
//! exactly what a decode followed by an encode would give.

/// µ-law encoder bias (added to the magnitude before segment search).
const ULAW_BIAS: i32 = 0x84;
/// Largest magnitude the µ-law encoder represents (larger values clip).
const ULAW_CLIP: i32 = 32635;

/// µ-law encoding of one linear 16-bit sample.
const fn ulaw_encode_const(sample: i16) -> u8 {
    let mut pcm = sample as i32;
    let sign: u8 = if pcm < 0 {
        pcm = -pcm;
        0x80
    } else {
        0
    };
    if pcm > ULAW_CLIP {
        pcm = ULAW_CLIP;
    }
    pcm += ULAW_BIAS;
    // Exponent = position of the highest set bit among bits 7..=14, minus 7.
    let mut exponent: u8 = 7;
    while exponent > 0 && pcm & (0x80 << exponent) == 0 {
        exponent -= 1;
    }
    let mantissa = ((pcm >> (exponent + 3)) & 0x0F) as u8;
    !(sign | (exponent << 4) | mantissa)
}

/// µ-law decoding of one byte.
const fn ulaw_decode_const(byte: u8) -> i16 {
    let u = !byte;
    let t = ((((u & 0x0F) as i32) << 3) + ULAW_BIAS) << ((u & 0x70) >> 4);
    if u & 0x80 != 0 {
        (ULAW_BIAS - t) as i16
    } else {
        (t - ULAW_BIAS) as i16
    }
}

/// Upper bounds of the A-law segments on the 13-bit magnitude.
const ALAW_SEG_END: [i32; 8] = [0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF];

/// A-law encoding of one linear 16-bit sample.
const fn alaw_encode_const(sample: i16) -> u8 {
    let mut pcm = (sample as i32) >> 3;
    let mask: u8 = if pcm >= 0 {
        0xD5
    } else {
        pcm = -pcm - 1;
        0x55
    };
    let mut seg = 0;
    while seg < 8 && pcm > ALAW_SEG_END[seg] {
        seg += 1;
    }
    if seg >= 8 {
        // Unreachable for 16-bit input (|pcm| ≤ 0xFFF); kept as in g711.c.
        return 0x7F ^ mask;
    }
    let shift = if seg < 2 { 1 } else { seg };
    let aval = ((seg as u8) << 4) | ((pcm >> shift) & 0x0F) as u8;
    aval ^ mask
}

/// A-law decoding of one byte.
const fn alaw_decode_const(byte: u8) -> i16 {
    let a = byte ^ 0x55;
    let mut t = ((a & 0x0F) as i32) << 4;
    let seg = (a & 0x70) >> 4;
    match seg {
        0 => t += 8,
        1 => t += 0x108,
        _ => {
            t += 0x108;
            t <<= seg - 1;
        }
    }
    if a & 0x80 != 0 { t as i16 } else { -t as i16 }
}

const fn build_ulaw_decode() -> [i16; 256] {
    let mut table = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = ulaw_decode_const(i as u8);
        i += 1;
    }
    table
}

const fn build_alaw_decode() -> [i16; 256] {
    let mut table = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = alaw_decode_const(i as u8);
        i += 1;
    }
    table
}

const fn build_ulaw_to_alaw() -> [u8; 256] {
    let mut table = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = alaw_encode_const(ulaw_decode_const(i as u8));
        i += 1;
    }
    table
}

const fn build_alaw_to_ulaw() -> [u8; 256] {
    let mut table = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = ulaw_encode_const(alaw_decode_const(i as u8));
        i += 1;
    }
    table
}

static ULAW_DECODE: [i16; 256] = build_ulaw_decode();
static ALAW_DECODE: [i16; 256] = build_alaw_decode();
static ULAW_TO_ALAW: [u8; 256] = build_ulaw_to_alaw();
static ALAW_TO_ULAW: [u8; 256] = build_alaw_to_ulaw();

/// Encodes one linear sample as µ-law.
#[inline]
pub fn ulaw_encode(sample: i16) -> u8 {
    ulaw_encode_const(sample)
}

/// Decodes one µ-law byte (table lookup). 0xFF and 0x7F both decode to 0.
#[inline]
pub fn ulaw_decode(byte: u8) -> i16 {
    ULAW_DECODE[usize::from(byte)]
}

/// Encodes one linear sample as A-law.
#[inline]
pub fn alaw_encode(sample: i16) -> u8 {
    alaw_encode_const(sample)
}

/// Decodes one A-law byte (table lookup).
#[inline]
pub fn alaw_decode(byte: u8) -> i16 {
    ALAW_DECODE[usize::from(byte)]
}

/// PCMU byte → PCMA byte (table lookup, equal to `alaw_encode(ulaw_decode(b))`).
#[inline]
pub fn ulaw_to_alaw(byte: u8) -> u8 {
    ULAW_TO_ALAW[usize::from(byte)]
}

/// PCMA byte → PCMU byte (table lookup, equal to `ulaw_encode(alaw_decode(b))`).
#[inline]
pub fn alaw_to_ulaw(byte: u8) -> u8 {
    ALAW_TO_ULAW[usize::from(byte)]
}

/// A G.711 variant as negotiated in SDP (static payload types, 8 kHz).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    /// µ-law, static payload type 0.
    Pcmu,
    /// A-law, static payload type 8.
    Pcma,
}

impl Codec {
    /// RTP clock rate of both G.711 codecs.
    pub const CLOCK_RATE: u32 = 8000;

    /// Static RTP payload type (RFC 3551): PCMU 0, PCMA 8.
    pub const fn payload_type(self) -> u8 {
        match self {
            Codec::Pcmu => 0,
            Codec::Pcma => 8,
        }
    }

    /// Encoding name as used in SDP `a=rtpmap`.
    pub fn name(self) -> &'static str {
        match self {
            Codec::Pcmu => "PCMU",
            Codec::Pcma => "PCMA",
        }
    }

    /// Parses an encoding name, case-insensitively ("pcmu", "PCMA").
    pub fn from_name(name: &str) -> Option<Codec> {
        if name.eq_ignore_ascii_case("PCMU") {
            Some(Codec::Pcmu)
        } else if name.eq_ignore_ascii_case("PCMA") {
            Some(Codec::Pcma)
        } else {
            None
        }
    }

    /// Maps a static payload type (0 / 8) to the codec.
    pub fn from_payload_type(pt: u8) -> Option<Codec> {
        match pt {
            0 => Some(Codec::Pcmu),
            8 => Some(Codec::Pcma),
            _ => None,
        }
    }

    /// The byte that encodes digital silence (linear 0): PCMU 0xFF, PCMA 0xD5.
    pub const fn silence(self) -> u8 {
        match self {
            Codec::Pcmu => 0xFF,
            Codec::Pcma => 0xD5,
        }
    }

    /// Encodes one sample.
    #[inline]
    pub fn encode_sample(self, sample: i16) -> u8 {
        match self {
            Codec::Pcmu => ulaw_encode(sample),
            Codec::Pcma => alaw_encode(sample),
        }
    }

    /// Decodes one byte.
    #[inline]
    pub fn decode_sample(self, byte: u8) -> i16 {
        match self {
            Codec::Pcmu => ulaw_decode(byte),
            Codec::Pcma => alaw_decode(byte),
        }
    }

    /// Encodes `samples`, appending one byte per sample to `out`.
    pub fn encode(self, samples: &[i16], out: &mut Vec<u8>) {
        out.reserve(samples.len());
        match self {
            Codec::Pcmu => out.extend(samples.iter().map(|&s| ulaw_encode(s))),
            Codec::Pcma => out.extend(samples.iter().map(|&s| alaw_encode(s))),
        }
    }

    /// Decodes `payload`, appending one sample per byte to `out`.
    pub fn decode(self, payload: &[u8], out: &mut Vec<i16>) {
        let table = match self {
            Codec::Pcmu => &ULAW_DECODE,
            Codec::Pcma => &ALAW_DECODE,
        };
        out.reserve(payload.len());
        out.extend(payload.iter().map(|&b| table[usize::from(b)]));
    }

    /// Transcodes a payload in place from `from` to `to`; no-op when equal.
    pub fn transcode(from: Codec, to: Codec, payload: &mut [u8]) {
        let table = match (from, to) {
            (Codec::Pcmu, Codec::Pcma) => &ULAW_TO_ALAW,
            (Codec::Pcma, Codec::Pcmu) => &ALAW_TO_ULAW,
            _ => return,
        };
        for b in payload {
            *b = table[usize::from(*b)];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ulaw_known_vectors() {
        let encode: &[(i16, u8)] = &[
            (0, 0xFF),
            (-1, 0x7F),
            (1, 0xFF),
            (8, 0xFE),
            (-8, 0x7E),
            (32767, 0x80),
            (-32768, 0x00),
            (32124, 0x80),
            (-32124, 0x00),
            (1000, 0xCE),
            (-1000, 0x4E),
        ];
        for &(s, b) in encode {
            assert_eq!(ulaw_encode(s), b, "ulaw_encode({s})");
        }
        let decode: &[(u8, i16)] = &[
            (0xFF, 0),
            (0x7F, 0),
            (0x00, -32124),
            (0x80, 32124),
            (0xFE, 8),
            (0x7E, -8),
            (0xCE, 988),
            (0x4E, -988),
        ];
        for &(b, s) in decode {
            assert_eq!(ulaw_decode(b), s, "ulaw_decode({b:#04x})");
        }
    }

    #[test]
    fn alaw_known_vectors() {
        let encode: &[(i16, u8)] = &[
            (0, 0xD5),
            (-1, 0x55),
            (7, 0xD5),
            (-8, 0x55),
            (16, 0xD4),
            (32767, 0xAA),
            (-32768, 0x2A),
            (1000, 0xFA),
            (-1000, 0x7A),
        ];
        for &(s, b) in encode {
            assert_eq!(alaw_encode(s), b, "alaw_encode({s})");
        }
        let decode: &[(u8, i16)] = &[
            (0xD5, 8),
            (0x55, -8),
            (0x2A, -32256),
            (0xAA, 32256),
            (0xD4, 24),
            (0xFA, 1008),
            (0x7A, -1008),
        ];
        for &(b, s) in decode {
            assert_eq!(alaw_decode(b), s, "alaw_decode({b:#04x})");
        }
    }

    #[test]
    fn tables_match_const_functions() {
        for b in 0..=255u8 {
            assert_eq!(ulaw_decode(b), ulaw_decode_const(b));
            assert_eq!(alaw_decode(b), alaw_decode_const(b));
        }
    }

    #[test]
    fn decode_encode_round_trip_all_codes() {
        for b in 0..=255u8 {
            let expected_u = if b == 0x7F { 0xFF } else { b };
            assert_eq!(ulaw_encode(ulaw_decode(b)), expected_u, "µ-law {b:#04x}");
            assert_eq!(alaw_encode(alaw_decode(b)), b, "A-law {b:#04x}");
        }
    }

    /// Linear values of all codes sorted by code magnitude are monotone.
    #[test]
    fn decode_is_monotone() {
        // µ-law: positive codes 0xFF (smallest) down to 0x80 (largest).
        let ulaw_pos: Vec<i16> = (0x80..=0xFFu8).rev().map(ulaw_decode).collect();
        assert!(ulaw_pos.windows(2).all(|w| w[0] < w[1]));
        let ulaw_neg: Vec<i16> = (0x00..=0x7Fu8).rev().map(ulaw_decode).collect();
        assert!(ulaw_neg.windows(2).all(|w| w[0] > w[1]));
        // A-law: magnitude index m (0..128) → code (m | sign) ^ 0x55.
        let alaw_pos: Vec<i16> = (0..128u8).map(|m| alaw_decode((m | 0x80) ^ 0x55)).collect();
        assert!(alaw_pos.windows(2).all(|w| w[0] < w[1]));
        let alaw_neg: Vec<i16> = (0..128u8).map(|m| alaw_decode(m ^ 0x55)).collect();
        assert!(alaw_neg.windows(2).all(|w| w[0] > w[1]));
    }

    #[test]
    fn encode_is_monotone_over_all_inputs() {
        let mut prev_u = ulaw_decode(ulaw_encode(i16::MIN));
        let mut prev_a = alaw_decode(alaw_encode(i16::MIN));
        for s in i16::MIN..=i16::MAX {
            let u = ulaw_decode(ulaw_encode(s));
            let a = alaw_decode(alaw_encode(s));
            assert!(u >= prev_u && a >= prev_a, "not monotone at {s}");
            prev_u = u;
            prev_a = a;
        }
    }

    /// Half the quantisation step of the segment a code belongs to.
    fn ulaw_half_step(code: u8) -> i32 {
        let exponent = i32::from((!code & 0x70) >> 4);
        4 << exponent
    }

    fn alaw_half_step(code: u8) -> i32 {
        let seg = i32::from(((code ^ 0x55) & 0x70) >> 4);
        if seg < 2 { 8 } else { 8 << (seg - 1) }
    }

    #[test]
    fn quantisation_error_bounded_for_all_inputs() {
        for s in i16::MIN..=i16::MAX {
            let x = i32::from(s);
            let u = ulaw_encode(s);
            let err_u = (i32::from(ulaw_decode(u)) - x).abs();
            if x.abs() <= 32124 {
                assert!(err_u <= ulaw_half_step(u), "µ-law {s}: error {err_u}");
            } else {
                // Clipped region: decodes to the largest magnitude.
                assert_eq!(i32::from(ulaw_decode(u)).abs(), 32124);
            }
            let a = alaw_encode(s);
            let err_a = (i32::from(alaw_decode(a)) - x).abs();
            assert!(err_a <= alaw_half_step(a), "A-law {s}: error {err_a}");
        }
    }

    #[test]
    fn transcode_tables_match_decode_encode() {
        for b in 0..=255u8 {
            assert_eq!(ulaw_to_alaw(b), alaw_encode(ulaw_decode(b)));
            assert_eq!(alaw_to_ulaw(b), ulaw_encode(alaw_decode(b)));
        }
        assert_eq!(ulaw_to_alaw(0xFF), 0xD5);
        // A-law has no exact zero: its smallest level (+8) maps to µ-law +8.
        assert_eq!(alaw_to_ulaw(0xD5), 0xFE);
    }

    #[test]
    fn transcode_in_place() {
        let original: Vec<u8> = (0..=255u8).collect();
        let mut buf = original.clone();
        Codec::transcode(Codec::Pcmu, Codec::Pcmu, &mut buf);
        assert_eq!(buf, original);
        Codec::transcode(Codec::Pcmu, Codec::Pcma, &mut buf);
        let expected: Vec<u8> = original.iter().map(|&b| ulaw_to_alaw(b)).collect();
        assert_eq!(buf, expected);
        Codec::transcode(Codec::Pcma, Codec::Pcmu, &mut buf);
        // µ→A→µ stays within one µ-law step of the original.
        for (&orig, &back) in original.iter().zip(&buf) {
            let diff = (i32::from(ulaw_decode(orig)) - i32::from(ulaw_decode(back))).abs();
            assert!(
                diff <= 2 * ulaw_half_step(orig),
                "{orig:#04x} → {back:#04x}"
            );
        }
    }

    #[test]
    fn codec_metadata() {
        let cases: &[(Codec, u8, &str, u8)] = &[
            (Codec::Pcmu, 0, "PCMU", 0xFF),
            (Codec::Pcma, 8, "PCMA", 0xD5),
        ];
        for &(codec, pt, name, silence) in cases {
            assert_eq!(codec.payload_type(), pt);
            assert_eq!(codec.name(), name);
            assert_eq!(Codec::from_payload_type(pt), Some(codec));
            assert_eq!(Codec::from_name(name), Some(codec));
            assert_eq!(Codec::from_name(&name.to_lowercase()), Some(codec));
            assert_eq!(codec.silence(), codec.encode_sample(0));
            assert!(codec.decode_sample(silence).abs() <= 8);
        }
        assert_eq!(Codec::from_name("Pcmu"), Some(Codec::Pcmu));
        assert_eq!(Codec::from_name("G722"), None);
        assert_eq!(Codec::from_name(""), None);
        for pt in [1u8, 9, 18, 101, 127, 255] {
            assert_eq!(Codec::from_payload_type(pt), None);
        }
    }

    #[test]
    fn codec_encode_decode_append() {
        let samples = [0i16, 100, -100, 5000, -5000, i16::MAX, i16::MIN];
        for codec in [Codec::Pcmu, Codec::Pcma] {
            let mut bytes = vec![0xAB];
            codec.encode(&samples, &mut bytes);
            assert_eq!(bytes.len(), 1 + samples.len());
            assert_eq!(bytes[0], 0xAB);
            for (i, &s) in samples.iter().enumerate() {
                assert_eq!(bytes[1 + i], codec.encode_sample(s));
            }
            let mut decoded = vec![42i16];
            codec.decode(&bytes[1..], &mut decoded);
            assert_eq!(decoded.len(), 1 + samples.len());
            assert_eq!(decoded[0], 42);
            for (i, &b) in bytes[1..].iter().enumerate() {
                assert_eq!(decoded[1 + i], codec.decode_sample(b));
            }
        }
    }
}
