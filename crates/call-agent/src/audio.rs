//! What the agent says and hears: text to speech (Piper when its binary
//! and the asked voice are there, else espeak-ng), WAV files of any format
//! (the media crate's loader: any rate and channel count, resampled to
//! 8 kHz mono), remote silence by energy, and transcription of the
//! recording (whisper.cpp's `whisper-cli` with a model file, else
//! PocketSphinx with its en-us model).

use std::path::{Path, PathBuf};
use std::process::Stdio;

use switchboard_media::wav;
use tokio::process::Command;

use crate::config::{Audio, Settings};

/// 8 kHz mono samples to play, and how they were made.
pub struct Prompt {
    pub samples: Vec<i16>,
    pub kind: &'static str,
    pub what: String,
}

/// Why a prompt could not be made: the agent's configuration (exit 14).
#[derive(Debug)]
pub struct AudioError(pub String);

/// The prompt the settings ask for, made before the call is placed (a
/// missing voice or file is known before anyone's phone rings).
///
/// # Errors
/// A missing engine, voice or file, or one that failed.
pub async fn prompt(s: &Settings, scratch: &Path) -> Result<Prompt, AudioError> {
    match &s.audio {
        Audio::Wav(path) => {
            let samples = wav::load_8k_mono(path)
                .map_err(|e| AudioError(format!("CALL_WAV {}: {e}", path.display())))?;
            Ok(Prompt {
                samples,
                kind: "wav",
                what: path.display().to_string(),
            })
        }
        Audio::Text(text) => {
            let out = scratch.join("tts.wav");
            let engine = tts(s, text, &out).await?;
            let samples = wav::load_8k_mono(&out)
                .map_err(|e| AudioError(format!("{engine} wrote no usable WAV: {e}")))?;
            Ok(Prompt {
                samples,
                kind: "text",
                what: text.clone(),
            })
        }
    }
}

/// Speaks `text` into `out`; returns the engine's name.
async fn tts(s: &Settings, text: &str, out: &Path) -> Result<&'static str, AudioError> {
    if let Some(model) = &s.tts_model {
        let dir = s.tts_data_dir.clone().unwrap_or_else(|| PathBuf::from("."));
        let voice = [dir.join(format!("{model}.onnx")), dir.join(model)]
            .into_iter()
            .find(|p| p.is_file())
            .ok_or_else(|| {
                AudioError(format!(
                    "TTS_MODEL: Piper voice {model:?} not found in {} (TTS_DATA_DIR/PIPER_DATA_DIR)",
                    dir.display()
                ))
            })?;
        // Piper speaks at its voice's rate (TTS_SAMPLE_RATE changes
        // nothing here: every prompt is resampled to the call's 8 kHz)
        let mut cmd = Command::new("piper");
        cmd.arg("--model").arg(&voice).arg("--output_file").arg(out);
        run(cmd, Some(text), "piper (the Piper TTS binary)").await?;
        return Ok("piper");
    }
    let mut cmd = Command::new("espeak-ng");
    cmd.arg("-w").arg(out);
    if let Some(lang) = &s.stt_language {
        // the language asked for the transcript is the call's language
        cmd.arg("-v").arg(lang);
    }
    cmd.arg("--stdin");
    run(cmd, Some(text), "espeak-ng (Debian package espeak-ng)").await?;
    Ok("espeak-ng")
}

/// Runs `cmd` with `input` on stdin; its failure or absence is an
/// [`AudioError`] naming `what`.
async fn run(mut cmd: Command, input: Option<&str>, what: &str) -> Result<String, AudioError> {
    use tokio::io::AsyncWriteExt;
    cmd.stdin(if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .kill_on_drop(true);
    let mut child = cmd
        .spawn()
        .map_err(|e| AudioError(format!("{what}: cannot run it: {e}")))?;
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin
            .write_all(text.as_bytes())
            .await
            .map_err(|e| AudioError(format!("{what}: {e}")))?;
    }
    let out = child
        .wait_with_output()
        .await
        .map_err(|e| AudioError(format!("{what}: {e}")))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(AudioError(format!(
            "{what}: {}: {}",
            out.status,
            err.trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Mean energy (RMS) of 8 kHz samples below which a 20 ms frame is silence:
/// about −40 dBFS, above a line's noise and below any voice.
pub const SILENCE_RMS: f64 = 330.0;

/// Root mean square of a frame.
pub fn rms(frame: &[i16]) -> f64 {
    if frame.is_empty() {
        return 0.0;
    }
    let sum: f64 = frame.iter().map(|&x| f64::from(x) * f64::from(x)).sum();
    #[allow(clippy::cast_precision_loss)]
    let n = frame.len() as f64;
    (sum / n).sqrt()
}

/// The transcript of `recording` and the engine that made it.
///
/// # Errors
/// No engine available, or the engine failed: the message says which.
pub async fn transcribe(
    s: &Settings,
    recording: &Path,
    scratch: &Path,
) -> Result<(String, &'static str), String> {
    let samples = wav::load_8k_mono(recording).map_err(|e| format!("the recording: {e}"))?;
    // both engines want 16 kHz mono 16-bit
    let wide = wav::resample(&samples, 8000, 16_000);
    let input = scratch.join("stt-16k.wav");
    write_wav(&input, 16_000, &wide).map_err(|e| format!("{}: {e}", input.display()))?;
    if let Some(model) = &s.stt_model {
        let dir = s.stt_data_dir.clone().unwrap_or_else(|| PathBuf::from("."));
        let path = [dir.join(model), PathBuf::from(model)]
            .into_iter()
            .find(|p| p.is_file());
        if let Some(path) = path {
            let mut cmd = Command::new("whisper-cli");
            cmd.arg("-m")
                .arg(&path)
                .arg("-f")
                .arg(&input)
                .arg("-nt")
                .arg("-np");
            cmd.arg("-l")
                .arg(s.stt_language.as_deref().unwrap_or("auto"));
            let text = run(cmd, None, "whisper-cli (whisper.cpp)")
                .await
                .map_err(|e| e.0)?;
            return Ok((clean(&text), "whisper.cpp"));
        }
    }
    let model = Path::new("/usr/share/pocketsphinx/model/en-us");
    if model.is_dir() {
        let mut cmd = Command::new("pocketsphinx_continuous");
        cmd.arg("-infile")
            .arg(&input)
            .arg("-logfn")
            .arg("/dev/null");
        let text = run(cmd, None, "pocketsphinx_continuous")
            .await
            .map_err(|e| e.0)?;
        return Ok((clean(&text), "pocketsphinx"));
    }
    Err(format!(
        "no speech-to-text engine: neither a Whisper model {:?} in {} with whisper-cli, \
         nor PocketSphinx (Debian packages pocketsphinx, pocketsphinx-en-us)",
        s.stt_model.as_deref().unwrap_or("(STT_MODEL unset)"),
        s.stt_data_dir
            .as_deref()
            .unwrap_or(Path::new("."))
            .display()
    ))
}

fn clean(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A mono 16-bit WAV at `rate`.
///
/// # Errors
/// I/O and encoder errors.
pub fn write_wav(path: &Path, rate: u32, samples: &[i16]) -> Result<(), hound::Error> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec)?;
    for &x in samples {
        w.write_sample(x)?;
    }
    w.finalize()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silence_is_quiet_and_voice_is_not() {
        assert!(rms(&[0; 160]) < SILENCE_RMS);
        assert!(rms(&[60, -60, 40, -40]) < SILENCE_RMS);
        let tone: Vec<i16> = (0..160)
            .map(|i| if i % 8 < 4 { 3000 } else { -3000 })
            .collect();
        assert!(rms(&tone) > SILENCE_RMS);
        assert_eq!(rms(&[]), 0.0);
    }
}
