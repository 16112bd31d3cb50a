//! WAV prompts and recordings for the RTP manager (via `hound`).
//!
//! Loading accepts PCM 8/16/24/32-bit integer and 32-bit float WAVs with any
//! channel count (downmixed by averaging) and any rate in
//! 1 kHz..=768 kHz, converted to 8 kHz mono 16-bit. Resampling is
//! band-limited interpolation (J. O. Smith): a Blackman-windowed sinc with
//! 24 zero crossings per side, cut off at 0.45 × the lower of the two rates
//! (3.6 kHz when going down to 8 kHz), read from a 256-points-per-crossing
//! table with linear interpolation. For rate pairs with a short phase
//! period (44.1/48/16 kHz…) one normalised filter per phase is precomputed
//! (polyphase); other pairs evaluate the kernel at each output instant.
//! 8 kHz mono 16-bit files come back sample for sample.
//!
//! Recording writes 8 kHz 16-bit PCM, mono or stereo (one party per side).

use std::fs::File;
use std::io::{BufWriter, Read};
use std::path::Path;
use std::sync::OnceLock;

/// Sample rate of everything this module produces.
pub const SAMPLE_RATE: u32 = 8000;
/// Input sample rates `decode_8k_mono` accepts.
pub const SUPPORTED_RATES: std::ops::RangeInclusive<u32> = 1000..=768_000;

/// Errors from loading or recording WAV files.
#[derive(Debug, thiserror::Error)]
pub enum WavError {
    /// Reading or writing the underlying file failed (includes truncation).
    #[error("WAV I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The data is not a well-formed WAV file.
    #[error("malformed WAV: {0}")]
    Format(String),
    /// Well-formed, but an encoding, rate or usage this module does not handle.
    #[error("unsupported WAV: {0}")]
    Unsupported(String),
}

fn from_hound(err: hound::Error) -> WavError {
    match err {
        hound::Error::IoError(e) => WavError::Io(e),
        hound::Error::Unsupported => {
            WavError::Unsupported("only PCM integer and 32-bit float are supported".into())
        }
        other => WavError::Format(other.to_string()),
    }
}

/// Loads a WAV file as 8 kHz mono 16-bit samples (see the module docs).
pub fn load_8k_mono(path: &Path) -> Result<Vec<i16>, WavError> {
    let file = File::open(path)?;
    decode_8k_mono(std::io::BufReader::new(file))
}

/// Decodes a WAV stream as 8 kHz mono 16-bit samples (see the module docs).
pub fn decode_8k_mono<R: Read>(reader: R) -> Result<Vec<i16>, WavError> {
    let mut reader = hound::WavReader::new(reader).map_err(from_hound)?;
    let spec = reader.spec();
    if !SUPPORTED_RATES.contains(&spec.sample_rate) {
        return Err(WavError::Unsupported(format!(
            "sample rate {} Hz",
            spec.sample_rate
        )));
    }
    let channels = usize::from(spec.channels.max(1));
    // The header's length is untrusted: cap the up-front reservation.
    let frames_hint = (reader.duration() as usize).min(1 << 22);

    if spec.sample_format == hound::SampleFormat::Int
        && spec.bits_per_sample == 16
        && channels == 1
        && spec.sample_rate == SAMPLE_RATE
    {
        let mut out = Vec::with_capacity(frames_hint);
        for s in reader.samples::<i16>() {
            out.push(s.map_err(from_hound)?);
        }
        return Ok(out);
    }

    // Mono signal as f32 in 16-bit units.
    let mut mono: Vec<f32> = Vec::with_capacity(frames_hint);
    match (spec.sample_format, spec.bits_per_sample) {
        (hound::SampleFormat::Int, bits @ (8 | 16 | 24 | 32)) => {
            let scale = 2f64.powi(16 - i32::from(bits));
            downmix(reader.samples::<i32>(), channels, scale, &mut mono)?;
        }
        (hound::SampleFormat::Float, 32) => {
            downmix(reader.samples::<f32>(), channels, 32768.0, &mut mono)?;
        }
        (format, bits) => {
            return Err(WavError::Unsupported(format!(
                "{bits}-bit {format:?} samples"
            )));
        }
    }

    let out = if spec.sample_rate == SAMPLE_RATE {
        mono.iter().map(|&x| to_i16(x)).collect()
    } else {
        resample_f32(&mono, spec.sample_rate, SAMPLE_RATE)
            .into_iter()
            .map(to_i16)
            .collect()
    };
    Ok(out)
}

/// Averages interleaved frames into `out`, scaling each sample by `scale`.
fn downmix<S: Into<f64>>(
    samples: impl Iterator<Item = hound::Result<S>>,
    channels: usize,
    scale: f64,
    out: &mut Vec<f32>,
) -> Result<(), WavError> {
    let norm = scale / channels as f64;
    let mut acc = 0.0f64;
    let mut n = 0;
    for s in samples {
        acc += s.map_err(from_hound)?.into();
        n += 1;
        if n == channels {
            out.push((acc * norm) as f32);
            acc = 0.0;
            n = 0;
        }
    }
    Ok(())
}

fn to_i16(x: f32) -> i16 {
    x.round().clamp(-32768.0, 32767.0) as i16
}

/// Resamples 16-bit audio between any two rates in [`SUPPORTED_RATES`]
/// (plus 8 kHz) with the band-limited interpolator of this module. The output
/// has `round(len × to / from)` samples; equal rates return a copy.
pub fn resample(samples: &[i16], from_rate: u32, to_rate: u32) -> Vec<i16> {
    if from_rate == to_rate || from_rate == 0 || to_rate == 0 {
        return samples.to_vec();
    }
    let input: Vec<f32> = samples.iter().map(|&s| f32::from(s)).collect();
    resample_f32(&input, from_rate, to_rate)
        .into_iter()
        .map(to_i16)
        .collect()
}

/// Zero crossings of the windowed sinc on each side.
const ZERO_CROSSINGS: usize = 24;
/// Kernel table resolution: entries per zero crossing.
const TABLE_RES: usize = 256;
/// Cutoff as a fraction of the lower rate (0.5 would be Nyquist).
const CUTOFF: f64 = 0.45;

/// sinc(x)·blackman(x / ZERO_CROSSINGS) for x = i / TABLE_RES, plus a
/// trailing zero so interpolation at the edge needs no bounds check.
fn kernel_table() -> &'static [f32] {
    static TABLE: OnceLock<Vec<f32>> = OnceLock::new();
    TABLE.get_or_init(|| {
        use std::f64::consts::PI;
        let n = ZERO_CROSSINGS * TABLE_RES;
        let mut t: Vec<f32> = (0..n)
            .map(|i| {
                let x = i as f64 / TABLE_RES as f64;
                let sinc = if i == 0 {
                    1.0
                } else {
                    (PI * x).sin() / (PI * x)
                };
                let u = i as f64 / n as f64;
                let window = 0.42 + 0.5 * (PI * u).cos() + 0.08 * (2.0 * PI * u).cos();
                (sinc * window) as f32
            })
            .collect();
        t.extend([0.0, 0.0]);
        t
    })
}

/// The anti-aliasing / anti-imaging kernel for one rate pair.
struct Kernel {
    table: &'static [f32],
    /// Twice the cutoff in cycles per input sample (kernel argument x = d·2fc).
    two_fc: f64,
    /// Kernel half-width in input samples.
    half_width: f64,
    table_scale: f64,
}

impl Kernel {
    fn new(from_rate: u32, to_rate: u32) -> Self {
        let fc = CUTOFF * f64::from(from_rate.min(to_rate)) / f64::from(from_rate);
        let two_fc = 2.0 * fc;
        Kernel {
            table: kernel_table(),
            two_fc,
            half_width: ZERO_CROSSINGS as f64 / two_fc,
            table_scale: two_fc * TABLE_RES as f64,
        }
    }

    /// Kernel weight at distance `d` (input samples); 0 outside the window.
    fn weight(&self, d: f64) -> f64 {
        let pos = d.abs() * self.table_scale;
        let i = pos as usize;
        if i >= ZERO_CROSSINGS * TABLE_RES {
            return 0.0;
        }
        let frac = (pos - i as f64) as f32;
        f64::from(self.table[i] + (self.table[i + 1] - self.table[i]) * frac)
    }

    /// Interpolated value at instant `t` (input-sample units), normalised by
    /// the weight sum so DC passes exactly even where the kernel overhangs
    /// the ends of the input.
    fn sample_at(&self, input: &[f32], t: f64) -> f32 {
        let last = input.len() as i64 - 1;
        let first = ((t - self.half_width).ceil() as i64).max(0);
        let end = ((t + self.half_width).floor() as i64).min(last);
        let mut acc = 0.0f64;
        let mut wsum = 0.0f64;
        for k in first..=end {
            let w = self.weight(t - k as f64);
            acc += f64::from(input[k as usize]) * w;
            wsum += w;
        }
        // The guard only matters for pathological edge cases.
        let norm = if wsum > 1e-3 { wsum } else { 1.0 / self.two_fc };
        (acc / norm) as f32
    }
}

/// Limits for precomputing one filter per output phase.
const MAX_PHASES: u64 = 4096;
const MAX_BANK_LEN: usize = 1 << 22;

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// Output sample `n` sits at input instant `n·from/to`. When `to / gcd` is
/// small (all common rates), the fractional positions repeat with that
/// period, so the normalised weights of each phase are precomputed once and
/// interior samples are plain dot products; the ends and irregular rate
/// pairs evaluate the kernel directly.
fn resample_f32(input: &[f32], from_rate: u32, to_rate: u32) -> Vec<f32> {
    let kernel = Kernel::new(from_rate, to_rate);
    let from = u64::from(from_rate);
    let to = u64::from(to_rate);
    let out_len = (input.len() as u64 * to + from / 2) / from;
    let instant = |n: u64| {
        let num = n * from;
        (num / to) as f64 + (num % to) as f64 / to as f64
    };

    let g = gcd(from, to);
    let phases = to / g;
    let reach = kernel.half_width.ceil() as usize + 1;
    // Taps j = -reach..; padded to a multiple of 8 for the vectorised loop.
    let taps = (2 * reach + 1).div_ceil(8) * 8;
    let bank_len = usize::try_from(phases)
        .unwrap_or(usize::MAX)
        .saturating_mul(taps);
    if phases > MAX_PHASES || bank_len > MAX_BANK_LEN {
        return (0..out_len)
            .map(|n| kernel.sample_at(input, instant(n)))
            .collect();
    }

    let mut bank = vec![0f32; bank_len];
    for (p, weights) in bank.chunks_exact_mut(taps).enumerate() {
        let frac = p as f64 / phases as f64;
        let raw: Vec<f64> = (0..taps)
            .map(|i| kernel.weight(frac - (i as f64 - reach as f64)))
            .collect();
        let sum: f64 = raw.iter().sum();
        for (w, r) in weights.iter_mut().zip(&raw) {
            *w = (r / sum) as f32;
        }
    }

    let mut out = Vec::with_capacity(usize::try_from(out_len).unwrap_or(0));
    for n in 0..out_len {
        let num = n * from;
        let base = (num / to) as usize;
        let phase = ((num % to) / g) as usize;
        let window = base
            .checked_sub(reach)
            .and_then(|start| input.get(start..start + taps));
        match window {
            Some(x) => out.push(dot(x, &bank[phase * taps..(phase + 1) * taps])),
            None => out.push(kernel.sample_at(input, instant(n))),
        }
    }
    out
}

/// Dot product with eight independent accumulators (vectorises).
fn dot(x: &[f32], w: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    for (xc, wc) in x.chunks_exact(8).zip(w.chunks_exact(8)) {
        for i in 0..8 {
            acc[i] += xc[i] * wc[i];
        }
    }
    acc.iter().sum()
}

/// Largest data chunk written (the RIFF size fields are 32-bit).
const MAX_DATA_BYTES: u64 = u32::MAX as u64 - 1024;
/// Samples per hound write batch.
const WRITE_CHUNK: usize = 4096;

/// Writes an 8 kHz 16-bit PCM recording, mono or stereo.
///
/// The header is completed by [`WavRecorder::finish`] (or, without error
/// reporting, on drop); [`WavRecorder::flush`] makes the file valid up to
/// the samples written so far.
pub struct WavRecorder {
    writer: hound::WavWriter<BufWriter<File>>,
    channels: u16,
    frames: u64,
    scratch: Vec<i16>,
}

impl std::fmt::Debug for WavRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WavRecorder")
            .field("channels", &self.channels)
            .field("frames", &self.frames)
            .finish_non_exhaustive()
    }
}

impl WavRecorder {
    /// Creates (or truncates) `path`; `channels` must be 1 or 2.
    pub fn create(path: &Path, channels: u16) -> Result<Self, WavError> {
        if !(1..=2).contains(&channels) {
            return Err(WavError::Unsupported(format!(
                "recording with {channels} channels (1 or 2 only)"
            )));
        }
        let spec = hound::WavSpec {
            channels,
            sample_rate: SAMPLE_RATE,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let writer = hound::WavWriter::create(path, spec).map_err(from_hound)?;
        Ok(WavRecorder {
            writer,
            channels,
            frames: 0,
            scratch: Vec::new(),
        })
    }

    /// Number of channels of the file.
    pub fn channels(&self) -> u16 {
        self.channels
    }

    /// Appends mono samples; only for a 1-channel recorder.
    pub fn write_mono(&mut self, samples: &[i16]) -> Result<(), WavError> {
        if self.channels != 1 {
            return Err(WavError::Unsupported(
                "write_mono on a stereo recorder".into(),
            ));
        }
        self.check_room(samples.len())?;
        write_i16(&mut self.writer, samples)?;
        self.frames += samples.len() as u64;
        Ok(())
    }

    /// Appends one stretch of stereo audio, interleaving `left` and `right`;
    /// the shorter side is padded with silence. Only for a 2-channel recorder.
    pub fn write_frame_stereo(&mut self, left: &[i16], right: &[i16]) -> Result<(), WavError> {
        if self.channels != 2 {
            return Err(WavError::Unsupported(
                "write_frame_stereo on a mono recorder".into(),
            ));
        }
        let frames = left.len().max(right.len());
        self.check_room(frames)?;
        self.scratch.clear();
        self.scratch.reserve(frames * 2);
        for i in 0..frames {
            self.scratch.push(left.get(i).copied().unwrap_or(0));
            self.scratch.push(right.get(i).copied().unwrap_or(0));
        }
        write_i16(&mut self.writer, &self.scratch)?;
        self.frames += frames as u64;
        Ok(())
    }

    fn check_room(&self, frames: usize) -> Result<(), WavError> {
        let bytes = (self.frames + frames as u64) * u64::from(self.channels) * 2;
        if bytes > MAX_DATA_BYTES {
            return Err(WavError::Unsupported(
                "recording exceeds the 4 GiB WAV limit".into(),
            ));
        }
        Ok(())
    }

    /// Sample frames written so far (samples per channel; ÷ 8000 = seconds).
    pub fn samples_written(&self) -> u64 {
        self.frames
    }

    /// Updates the header and flushes, so the file is valid as written so far.
    pub fn flush(&mut self) -> Result<(), WavError> {
        self.writer.flush().map_err(from_hound)
    }

    /// Completes the header and closes the file.
    pub fn finish(self) -> Result<(), WavError> {
        self.writer.finalize().map_err(from_hound)
    }
}

fn write_i16(
    writer: &mut hound::WavWriter<BufWriter<File>>,
    samples: &[i16],
) -> Result<(), WavError> {
    for chunk in samples.chunks(WRITE_CHUNK) {
        // Chunk length ≤ WRITE_CHUNK, and the spec is always 16-bit integer,
        // so the i16 writer cannot panic.
        let mut w = writer.get_i16_writer(chunk.len() as u32);
        for &s in chunk {
            w.write_sample(s);
        }
        w.flush().map_err(from_hound)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::f64::consts::PI;
    use std::io::Cursor;
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// A unique temp file path removed on drop.
    struct TempPath(PathBuf);

    impl TempPath {
        fn new(tag: &str) -> Self {
            static COUNTER: AtomicU32 = AtomicU32::new(0);
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let name = format!("switchboard-media-{}-{tag}-{n}.wav", std::process::id());
            TempPath(std::env::temp_dir().join(name))
        }
    }

    impl Drop for TempPath {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    fn spec(channels: u16, rate: u32, bits: u16, format: hound::SampleFormat) -> hound::WavSpec {
        hound::WavSpec {
            channels,
            sample_rate: rate,
            bits_per_sample: bits,
            sample_format: format,
        }
    }

    /// An in-memory WAV with integer samples.
    fn wav_int(spec: hound::WavSpec, samples: &[i32]) -> Vec<u8> {
        let mut cursor = Cursor::new(Vec::new());
        let mut w = hound::WavWriter::new(&mut cursor, spec).unwrap();
        for &s in samples {
            w.write_sample(s).unwrap();
        }
        w.finalize().unwrap();
        cursor.into_inner()
    }

    fn wav_float(spec: hound::WavSpec, samples: &[f32]) -> Vec<u8> {
        let mut cursor = Cursor::new(Vec::new());
        let mut w = hound::WavWriter::new(&mut cursor, spec).unwrap();
        for &s in samples {
            w.write_sample(s).unwrap();
        }
        w.finalize().unwrap();
        cursor.into_inner()
    }

    fn sine(rate: u32, freq: f64, amplitude: f64, len: usize) -> Vec<f64> {
        (0..len)
            .map(|i| amplitude * (2.0 * PI * freq * i as f64 / f64::from(rate)).sin())
            .collect()
    }

    fn rms(x: &[i16]) -> f64 {
        (x.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / x.len() as f64).sqrt()
    }

    fn zero_crossings(x: &[i16]) -> usize {
        x.windows(2).filter(|w| (w[0] < 0) != (w[1] < 0)).count()
    }

    #[test]
    fn pcm16_8k_mono_is_identical() {
        let samples: Vec<i32> = (0..4000).map(|i| ((i * 7919) % 65536) - 32768).collect();
        let bytes = wav_int(spec(1, 8000, 16, hound::SampleFormat::Int), &samples);
        let decoded = decode_8k_mono(Cursor::new(bytes)).unwrap();
        let expected: Vec<i16> = samples.iter().map(|&s| s as i16).collect();
        assert_eq!(decoded, expected);
    }

    #[test]
    fn bit_depths_and_float_scale_to_16_bit() {
        use hound::SampleFormat::{Float, Int};
        // (bits, input samples, expected 16-bit output)
        let cases: &[(u16, &[i32], &[i16])] = &[
            (8, &[0, 1, -1, 127, -128], &[0, 256, -256, 32512, -32768]),
            (16, &[0, 1, -1, 32767, -32768], &[0, 1, -1, 32767, -32768]),
            (
                24,
                &[0, 256, -256, 8_388_607, -8_388_608],
                &[0, 1, -1, 32767, -32768],
            ),
            (
                32,
                &[0, 65536, -65536, i32::MAX, i32::MIN],
                &[0, 1, -1, 32767, -32768],
            ),
        ];
        for &(bits, input, expected) in cases {
            let bytes = wav_int(spec(1, 8000, bits, Int), input);
            assert_eq!(
                decode_8k_mono(Cursor::new(bytes)).unwrap(),
                expected,
                "{bits} bits"
            );
        }
        let bytes = wav_float(spec(1, 8000, 32, Float), &[0.0, 0.5, -0.5, 1.0, -1.0, 2.0]);
        assert_eq!(
            decode_8k_mono(Cursor::new(bytes)).unwrap(),
            [0, 16384, -16384, 32767, -32768, 32767]
        );
    }

    #[test]
    fn channels_are_averaged() {
        // Stereo: L = 1000, R = 3000 → 2000; 3 channels: mean of 0, 300, 600.
        let stereo = wav_int(
            spec(2, 8000, 16, hound::SampleFormat::Int),
            &[1000, 3000, -10, 10],
        );
        assert_eq!(decode_8k_mono(Cursor::new(stereo)).unwrap(), [2000, 0]);
        let three = wav_int(spec(3, 8000, 16, hound::SampleFormat::Int), &[0, 300, 600]);
        assert_eq!(decode_8k_mono(Cursor::new(three)).unwrap(), [300]);
    }

    #[test]
    fn stereo_16k_sine_keeps_frequency_and_amplitude() {
        let left = sine(16_000, 1000.0, 10_000.0, 16_000);
        let right = sine(16_000, 1000.0, 8_000.0, 16_000);
        let interleaved: Vec<i32> = left
            .iter()
            .zip(&right)
            .flat_map(|(&l, &r)| [l.round() as i32, r.round() as i32])
            .collect();
        let bytes = wav_int(spec(2, 16_000, 16, hound::SampleFormat::Int), &interleaved);
        let out = decode_8k_mono(Cursor::new(bytes)).unwrap();
        assert_eq!(out.len(), 8000);
        // Skip the filter's edges.
        let mid = &out[200..7800];
        let crossings = zero_crossings(mid) as f64;
        let expected_crossings = 2.0 * 1000.0 * mid.len() as f64 / 8000.0;
        assert!((crossings - expected_crossings).abs() <= 2.0, "{crossings}");
        let expected_rms = 9000.0 / 2f64.sqrt();
        assert!(
            (rms(mid) / expected_rms - 1.0).abs() < 0.03,
            "rms {}",
            rms(mid)
        );
    }

    #[test]
    fn downsampling_rejects_aliases() {
        // 6 kHz at 16 kHz would alias to 2 kHz at 8 kHz; it must vanish.
        let tone: Vec<i32> = sine(16_000, 6000.0, 10_000.0, 8000)
            .iter()
            .map(|x| x.round() as i32)
            .collect();
        let bytes = wav_int(spec(1, 16_000, 16, hound::SampleFormat::Int), &tone);
        let out = decode_8k_mono(Cursor::new(bytes)).unwrap();
        assert!(
            rms(&out[200..3800]) < 10.0,
            "alias rms {}",
            rms(&out[200..3800])
        );
    }

    #[test]
    fn lengths_scale_with_rate() {
        // (rate, input length, expected output length)
        let cases: &[(u32, usize, usize)] = &[
            (44_100, 44_100, 8000),
            (44_100, 22_050, 4000),
            (44_100, 1000, 181),
            (48_000, 4800, 800),
            (22_050, 2205, 800),
            (11_025, 11_025, 8000),
            (16_000, 1, 1),
            (8000, 123, 123),
            (4000, 100, 200),
            (44_100, 0, 0),
            // gcd 1: no polyphase bank, direct kernel evaluation.
            (44_101, 4410, 800),
            (7999, 7999, 8000),
        ];
        for &(rate, len, expected) in cases {
            let samples = vec![1000; len];
            let bytes = wav_int(spec(1, rate, 16, hound::SampleFormat::Int), &samples);
            let out = decode_8k_mono(Cursor::new(bytes)).unwrap();
            assert_eq!(out.len(), expected, "{rate} Hz × {len}");
            // DC is preserved exactly (unity gain), edges included.
            assert!(
                out.iter().all(|&s| (s - 1000).abs() <= 1),
                "{rate} Hz: {out:?}"
            );
        }
    }

    #[test]
    fn float_44k_sine_is_accepted() {
        let tone: Vec<f32> = sine(44_100, 440.0, 0.5, 44_100)
            .iter()
            .map(|&x| x as f32)
            .collect();
        let bytes = wav_float(spec(1, 44_100, 32, hound::SampleFormat::Float), &tone);
        let out = decode_8k_mono(Cursor::new(bytes)).unwrap();
        assert_eq!(out.len(), 8000);
        let mid = &out[400..7600];
        let expected_crossings = 2.0 * 440.0 * mid.len() as f64 / 8000.0;
        assert!((zero_crossings(mid) as f64 - expected_crossings).abs() <= 2.0);
        let expected_rms = 16384.0 / 2f64.sqrt();
        assert!((rms(mid) / expected_rms - 1.0).abs() < 0.03);
    }

    #[test]
    fn upsampling_keeps_tone() {
        let tone: Vec<i16> = sine(4000, 500.0, 10_000.0, 4000)
            .iter()
            .map(|x| x.round() as i16)
            .collect();
        let out = resample(&tone, 4000, 8000);
        assert_eq!(out.len(), 8000);
        let mid = &out[400..7600];
        assert!((zero_crossings(mid) as f64 - 900.0).abs() <= 2.0);
        assert!((rms(mid) / (10_000.0 / 2f64.sqrt()) - 1.0).abs() < 0.03);
        assert_eq!(resample(&tone, 8000, 8000), tone);
    }

    #[test]
    fn polyphase_matches_direct_evaluation() {
        for (from, to) in [(16_000u32, 8000u32), (44_100, 8000), (6000, 8000)] {
            let input: Vec<f32> = (0..3000)
                .map(|i| ((i * 7919) % 20_000) as f32 - 10_000.0)
                .collect();
            let fast = resample_f32(&input, from, to);
            let kernel = Kernel::new(from, to);
            for (n, &y) in fast.iter().enumerate() {
                let t = n as f64 * f64::from(from) / f64::from(to);
                let direct = kernel.sample_at(&input, t);
                assert!(
                    (y - direct).abs() < 0.05,
                    "{from}->{to} n={n}: {y} vs {direct}"
                );
            }
        }
    }

    #[test]
    fn garbage_and_unsupported_input_is_an_error() {
        let mut cases: Vec<(&str, Vec<u8>)> = vec![
            ("empty", vec![]),
            ("text", b"this is not a wav file at all".to_vec()),
            ("riff only", b"RIFF\x10\x00\x00\x00WAVE".to_vec()),
        ];
        let good = wav_int(spec(1, 8000, 16, hound::SampleFormat::Int), &[1, 2, 3, 4]);
        cases.push(("truncated header", good[..30].to_vec()));
        let mut odd = good.clone();
        odd.truncate(good.len() - 1);
        cases.push(("truncated data", odd));
        let mut rate0 = good.clone();
        rate0[24..28].copy_from_slice(&0u32.to_le_bytes());
        rate0[28..32].copy_from_slice(&0u32.to_le_bytes());
        cases.push(("rate 0", rate0));
        cases.push((
            "rate too low",
            wav_int(spec(1, 500, 16, hound::SampleFormat::Int), &[1, 2]),
        ));
        let mut alaw = good.clone();
        alaw[20..22].copy_from_slice(&6u16.to_le_bytes());
        cases.push(("A-law format tag", alaw));
        for (name, bytes) in cases {
            assert!(decode_8k_mono(Cursor::new(bytes)).is_err(), "{name}");
        }
        // Random bytes behind a plausible header: never a panic.
        let mut state: u32 = 99;
        for round in 0..300 {
            let mut bytes = good.clone();
            for _ in 0..=(round % 8) {
                state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                let pos = (state >> 8) as usize % bytes.len();
                bytes[pos] = (state >> 20) as u8;
            }
            let _ = decode_8k_mono(Cursor::new(bytes));
        }
        assert!(load_8k_mono(Path::new("/nonexistent/switchboard/prompt.wav")).is_err());
    }

    #[test]
    fn recorder_mono_round_trip() {
        let tmp = TempPath::new("mono");
        let samples: Vec<i16> = (0..10_000)
            .map(|i| ((i * 37) % 2000 - 1000) as i16)
            .collect();
        let mut rec = WavRecorder::create(&tmp.0, 1).unwrap();
        rec.write_mono(&samples[..3000]).unwrap();
        rec.flush().unwrap();
        rec.write_mono(&samples[3000..]).unwrap();
        rec.write_mono(&[]).unwrap();
        assert_eq!(rec.samples_written(), 10_000);
        assert!(matches!(
            rec.write_frame_stereo(&[1], &[2]),
            Err(WavError::Unsupported(_))
        ));
        rec.finish().unwrap();

        let reader = hound::WavReader::open(&tmp.0).unwrap();
        assert_eq!(reader.spec(), spec(1, 8000, 16, hound::SampleFormat::Int));
        assert_eq!(reader.duration(), 10_000);
        assert_eq!(std::fs::metadata(&tmp.0).unwrap().len(), 44 + 20_000);
        assert_eq!(load_8k_mono(&tmp.0).unwrap(), samples);
    }

    #[test]
    fn recorder_stereo_pads_shorter_side() {
        let tmp = TempPath::new("stereo");
        let mut rec = WavRecorder::create(&tmp.0, 2).unwrap();
        assert_eq!(rec.channels(), 2);
        rec.write_frame_stereo(&[1, 2, 3], &[-1]).unwrap();
        rec.write_frame_stereo(&[], &[-5, -6]).unwrap();
        rec.write_frame_stereo(&[7], &[-7]).unwrap();
        assert!(matches!(
            rec.write_mono(&[1]),
            Err(WavError::Unsupported(_))
        ));
        assert_eq!(rec.samples_written(), 6);
        rec.finish().unwrap();

        let mut reader = hound::WavReader::open(&tmp.0).unwrap();
        assert_eq!(reader.spec(), spec(2, 8000, 16, hound::SampleFormat::Int));
        let all: Vec<i16> = reader.samples::<i16>().map(Result::unwrap).collect();
        assert_eq!(all, [1, -1, 2, 0, 3, 0, 0, -5, 0, -6, 7, -7]);
    }

    #[test]
    fn recorder_rejects_bad_channel_counts_and_paths() {
        for channels in [0u16, 3, 8] {
            let tmp = TempPath::new("bad");
            assert!(matches!(
                WavRecorder::create(&tmp.0, channels),
                Err(WavError::Unsupported(_))
            ));
        }
        assert!(matches!(
            WavRecorder::create(Path::new("/nonexistent/switchboard/rec.wav"), 1),
            Err(WavError::Io(_))
        ));
    }
}
