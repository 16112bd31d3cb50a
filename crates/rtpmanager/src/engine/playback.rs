//! Playback of WAV prompts: the files are read and decoded on the
//! blocking pool (and cached until they change); a task per playback
//! sends one packet per 20 ms.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use switchboard_media::wav;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::session::{Mode, Session};
use super::{
    Engine, EventKind, PTIME_MS, PlaybackEvent, PlaybackKind, lock, safe_relative, with_wav,
};
use crate::codec::AudioCodec;
use crate::stream::Source;

/// Samples per 20 ms packet at 8 kHz.
const FRAME: usize = 160;

/// A decoded prompt and the file's modification time when it was read.
pub(super) type CachedAudio = (SystemTime, Arc<Vec<i16>>);

impl Engine {
    /// Resolves a file name under AUDIO_PATH (".wav" may be left off) and
    /// loads it as 8 kHz mono on the blocking pool, cached until the file
    /// changes.
    pub(super) async fn load_audio(&self, name: &str) -> Result<Arc<Vec<i16>>, String> {
        let rel = safe_relative(name)?;
        let path = with_wav(self.inner.config.audio_path.join(&rel));
        let cached = lock(&self.inner.audio_cache).get(&path).cloned();
        let task_path = path.clone();
        let (modified, samples, fresh) =
            tokio::task::spawn_blocking(move || read(task_path, cached))
                .await
                .map_err(|e| format!("{}: {e}", path.display()))??;
        if fresh {
            lock(&self.inner.audio_cache).insert(path, (modified, samples.clone()));
        }
        Ok(samples)
    }
}

/// The file's samples: the cached ones while its modification time is
/// unchanged, else read anew (`true`). Blocking.
fn read(
    path: PathBuf,
    cached: Option<CachedAudio>,
) -> Result<(SystemTime, Arc<Vec<i16>>, bool), String> {
    let modified = std::fs::metadata(&path)
        .and_then(|m| m.modified())
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if let Some((at, samples)) = cached
        && at == modified
    {
        return Ok((at, samples, false));
    }
    let samples =
        Arc::new(wav::load_8k_mono(&path).map_err(|e| format!("{}: {e}", path.display()))?);
    Ok((modified, samples, true))
}

/// Plays `audio` (8 kHz samples) `repeat` times, one packet per 20 ms.
pub(super) async fn playback(
    session: Arc<Session>,
    audio: Vec<Arc<Vec<i16>>>,
    repeat: u32,
    id: u64,
    cancel: CancellationToken,
    tx: mpsc::Sender<PlaybackEvent>,
) {
    let emit = |kind: PlaybackKind, sent: u64| {
        let ev = PlaybackEvent {
            kind,
            playback_id: id,
            duration_ms: sent * u64::from(PTIME_MS),
        };
        // two events per playback (started, then finished or interrupted):
        // the channel holds both, and a reader gone away loses nothing it wants
        let _ = tx.try_send(ev.clone());
        session.emit(EventKind::Playback(ev));
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
        match (codec, st.opus.as_mut()) {
            (AudioCodec::G711(c), _) => c.encode(&frame, &mut payload),
            (AudioCodec::Opus, Some(opus)) => {
                if !opus.encode(&frame, &mut payload) {
                    continue;
                }
            }
            (AudioCodec::Opus, None) => continue,
        }
        let seq = sent as u16;
        let ts = (sent as u32).wrapping_mul(FRAME as u32 * codec.ts_per_sample());
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
