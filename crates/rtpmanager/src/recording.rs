//! Recordings, off the packet path.
//!
//! The receive task only decodes a packet's samples and hands them to a
//! bounded queue ([`Tap::push`], never waiting: a full queue drops the
//! packet's samples and counts them). One writer task per file takes them
//! off in batches and writes with hound on tokio's blocking pool; a
//! stereo recording (both sides of a bridge) has one tap per session and
//! the writer interleaves them.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use switchboard_media::wav::WavRecorder;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::engine::Counters;

/// Packets queued per recording (10 s of 20 ms packets) before the writer
/// is considered stuck and packets are dropped.
pub const QUEUE: usize = 500;
/// Packets written per trip to the blocking pool, at most.
const BATCH: usize = 64;
/// One side may run ahead of the other by this many samples (a silent
/// or stalled leg) before the other side is padded with silence.
const STEREO_SLACK: usize = 8000;

/// Which part of the file a tap feeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Channel {
    Mono,
    Left,
    Right,
}

type Frame = (Channel, Vec<i16>);

/// What the taps of one file share.
struct File {
    path: PathBuf,
    tx: mpsc::Sender<Frame>,
    finish: CancellationToken,
    /// The sample count once the file is complete.
    done: watch::Receiver<Option<u64>>,
}

/// A session's end of a recording.
pub struct Tap {
    file: Arc<File>,
    channel: Channel,
    counters: Arc<Counters>,
}

impl Tap {
    /// Queues one packet's samples without waiting.
    pub fn push(&self, samples: &[i16]) {
        match self.file.tx.try_send((self.channel, samples.to_vec())) {
            Ok(()) | Err(TrySendError::Closed(_)) => {}
            Err(TrySendError::Full(_)) => {
                self.counters
                    .recording_dropped
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    pub fn path(&self) -> &Path {
        &self.file.path
    }

    /// Whether both taps feed one file (the two sides of a stereo recording).
    pub fn same_file(&self, other: &Tap) -> bool {
        Arc::ptr_eq(&self.file, &other.file)
    }

    /// Ends the recording (for both sides of a stereo one) once what is
    /// queued is written; does not wait.
    pub fn close(&self) {
        self.file.finish.cancel();
    }

    /// Ends the recording and waits until the file is complete: samples
    /// per channel written.
    pub async fn finish(&self) -> u64 {
        self.close();
        let mut done = self.file.done.clone();
        match done.wait_for(Option::is_some).await {
            Ok(n) => n.unwrap_or(0),
            // the writer is gone without a word (it panicked)
            Err(_) => 0,
        }
    }
}

/// Creates the file (and its directories) on the blocking pool and starts
/// its writer: one tap for a mono recording, two (left, right) for stereo.
pub async fn start(
    path: PathBuf,
    stereo: bool,
    counters: Arc<Counters>,
) -> Result<(Tap, Option<Tap>), String> {
    let p = path.clone();
    let wav = tokio::task::spawn_blocking(move || {
        if let Some(dir) = p.parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        WavRecorder::create(&p, if stereo { 2 } else { 1 })
            .map_err(|e| format!("{}: {e}", p.display()))
    })
    .await
    .map_err(|e| format!("{}: {e}", path.display()))??;
    let (tx, rx) = mpsc::channel(QUEUE);
    let (done_tx, done) = watch::channel(None);
    let finish = CancellationToken::new();
    tokio::spawn(writer(Sink::new(wav), rx, finish.clone(), done_tx));
    let file = Arc::new(File {
        path,
        tx,
        finish,
        done,
    });
    let tap = |channel| Tap {
        file: file.clone(),
        channel,
        counters: counters.clone(),
    };
    Ok(if stereo {
        (tap(Channel::Left), Some(tap(Channel::Right)))
    } else {
        (tap(Channel::Mono), None)
    })
}

/// Writes what the taps queue until the recording is closed (or every tap
/// is gone), then completes the file.
async fn writer(
    mut sink: Sink,
    mut rx: mpsc::Receiver<Frame>,
    finish: CancellationToken,
    done: watch::Sender<Option<u64>>,
) {
    loop {
        // queued samples first: a close waits for them
        let first = tokio::select! {
            biased;
            f = rx.recv() => f,
            _ = finish.cancelled() => None,
        };
        let Some(first) = first else { break };
        let mut batch = Vec::with_capacity(BATCH);
        batch.push(first);
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(f) => batch.push(f),
                Err(_) => break,
            }
        }
        sink = match tokio::task::spawn_blocking(move || {
            sink.write(batch);
            sink
        })
        .await
        {
            Ok(s) => s,
            Err(e) => {
                warn!(cause = %e, "recording writer failed");
                let _ = done.send(Some(0));
                return;
            }
        };
    }
    rx.close();
    let mut rest = Vec::new();
    while let Ok(f) = rx.try_recv() {
        rest.push(f);
    }
    let n = tokio::task::spawn_blocking(move || {
        sink.write(rest);
        sink.finish()
    })
    .await
    .unwrap_or(0);
    let _ = done.send(Some(n));
}

/// The file and the stereo interleaving; blocking.
struct Sink {
    wav: Option<WavRecorder>,
    left: Vec<i16>,
    right: Vec<i16>,
}

impl Sink {
    fn new(wav: WavRecorder) -> Sink {
        Sink {
            wav: Some(wav),
            left: Vec::new(),
            right: Vec::new(),
        }
    }

    fn write(&mut self, frames: Vec<Frame>) {
        for (channel, samples) in frames {
            match channel {
                Channel::Mono => {
                    if let Some(wav) = self.wav.as_mut()
                        && let Err(e) = wav.write_mono(&samples)
                    {
                        warn!(cause = %e, "recording write failed; recording stopped");
                        self.wav = None;
                    }
                }
                Channel::Left => self.push_stereo(true, &samples),
                Channel::Right => self.push_stereo(false, &samples),
            }
        }
    }

    fn push_stereo(&mut self, left: bool, samples: &[i16]) {
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

    /// Writes what is left and completes the header: samples per channel.
    fn finish(mut self) -> u64 {
        let (l, r) = (
            std::mem::take(&mut self.left),
            std::mem::take(&mut self.right),
        );
        let Some(mut wav) = self.wav.take() else {
            return 0;
        };
        if (!l.is_empty() || !r.is_empty()) && wav.channels() == 2 {
            let _ = wav.write_frame_stereo(&l, &r);
        }
        let n = wav.samples_written();
        if let Err(e) = wav.finish() {
            warn!(cause = %e, "recording could not be finalised");
        }
        n
    }
}
