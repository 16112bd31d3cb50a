//! The bounded disk spool of events that could not reach JetStream.
//!
//! One JSON line per event, `{"id":"<Nats-Msg-Id>","event":{…payload…}}`,
//! oldest first, in a file readable by its owner only (events name users
//! and numbers). The in-memory queue mirrors the file and is what is
//! published; the file exists so a restart while NATS is down loses
//! nothing. New events are appended; published ones are cut from the head
//! by rewriting the file (write a temporary file, rename) when a drain
//! stops, so a crash mid-drain can publish some again, which JetStream
//! drops as duplicates of their message id within the stream's duplicate
//! window.
//!
//! Bounded in records and bytes: an event that does not fit is dropped,
//! counted and logged as an error, never a crash or a full disk.
//!
//! File writes are plain blocking calls on the publisher task: an append is
//! one small write to a local disk, and only happens while NATS is away.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use serde::{Deserialize, Serialize};
use tracing::{error, info, warn};

use crate::bus::BusStats;
use crate::event::Event;

/// One event waiting for JetStream.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Record {
    /// Its `Nats-Msg-Id`, fixed when first handled so a retry is a duplicate.
    pub(crate) id: String,
    /// The event.
    pub(crate) event: Event,
}

/// The spool file and the records it holds, oldest first.
pub(crate) struct Spool {
    path: PathBuf,
    /// Append handle, opened on first use.
    file: Option<File>,
    /// Each record with the length of its line in the file.
    pending: VecDeque<(Record, u64)>,
    /// Sum of the line lengths.
    bytes: u64,
    max_records: usize,
    max_bytes: u64,
    stats: Arc<BusStats>,
}

impl Spool {
    /// Opens the spool at `path`, loading what a previous run left there.
    /// Lines that do not decode are skipped (and counted as dropped).
    pub(crate) fn open(
        path: PathBuf,
        max_records: usize,
        max_bytes: u64,
        stats: Arc<BusStats>,
    ) -> Spool {
        let mut spool = Spool {
            path,
            file: None,
            pending: VecDeque::new(),
            bytes: 0,
            max_records,
            max_bytes,
            stats,
        };
        let text = match std::fs::read_to_string(&spool.path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
            Err(e) => {
                error!(path = %spool.path.display(), cause = %e, "event spool unreadable; its events are lost");
                String::new()
            }
        };
        let mut bad = 0u64;
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            match serde_json::from_str::<Record>(line) {
                Ok(record) if spool.fits(line.len() as u64 + 1) => {
                    spool.bytes += line.len() as u64 + 1;
                    spool.pending.push_back((record, line.len() as u64 + 1));
                }
                _ => bad += 1,
            }
        }
        if bad > 0 {
            spool.stats.spool_dropped.fetch_add(bad, Ordering::Relaxed);
            error!(lines = bad, path = %spool.path.display(), "event spool lines unreadable or over the bounds; dropped");
            spool.persist();
        }
        if !spool.pending.is_empty() {
            info!(events = spool.pending.len(), path = %spool.path.display(), "events spooled by an earlier run will be published");
        }
        spool.sync_len();
        spool
    }

    fn fits(&self, line_len: u64) -> bool {
        self.pending.len() < self.max_records && self.bytes + line_len <= self.max_bytes
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    pub(crate) fn len(&self) -> usize {
        self.pending.len()
    }

    /// Appends a record; when the spool is full it is dropped and counted.
    pub(crate) fn push(&mut self, record: Record) {
        let mut line = match serde_json::to_vec(&record) {
            Ok(line) => line,
            Err(e) => {
                self.stats.spool_dropped.fetch_add(1, Ordering::Relaxed);
                error!(cause = %e, "event not encodable; dropped");
                return;
            }
        };
        line.push(b'\n');
        let len = line.len() as u64;
        if !self.fits(len) {
            self.stats.spool_dropped.fetch_add(1, Ordering::Relaxed);
            error!(
                subject_id = record.event.id(),
                kind = %record.event.verb(),
                records = self.pending.len(),
                bytes = self.bytes,
                "event spool full; event lost"
            );
            return;
        }
        if let Err(e) = self.append(&line) {
            // kept in memory all the same: only a restart before NATS
            // returns would lose it
            warn!(path = %self.path.display(), cause = %e, "event spool file not written");
            self.file = None;
        }
        self.bytes += len;
        self.pending.push_back((record, len));
        self.stats.spooled.fetch_add(1, Ordering::Relaxed);
        self.sync_len();
    }

    fn append(&mut self, line: &[u8]) -> io::Result<()> {
        if self.file.is_none() {
            self.file = Some(open_private(&self.path, true)?);
        }
        match &mut self.file {
            Some(f) => f.write_all(line),
            None => Ok(()),
        }
    }

    /// The oldest `n` records (fewer if the spool holds fewer).
    pub(crate) fn head(&self, n: usize) -> Vec<Record> {
        self.pending
            .iter()
            .take(n)
            .map(|(r, _)| r.clone())
            .collect()
    }

    /// Forgets the oldest `n` records (published); the file catches up at
    /// the next [`Spool::persist`].
    pub(crate) fn pop_front(&mut self, n: usize) {
        for (_, len) in self.pending.drain(..n.min(self.pending.len())) {
            self.bytes -= len;
        }
        self.sync_len();
    }

    /// Makes the file hold exactly the pending records.
    pub(crate) fn persist(&mut self) {
        self.file = None;
        let done = if self.pending.is_empty() {
            std::fs::remove_file(&self.path).or_else(|e| {
                if e.kind() == io::ErrorKind::NotFound {
                    Ok(())
                } else {
                    Err(e)
                }
            })
        } else {
            let mut text = Vec::with_capacity(usize::try_from(self.bytes).unwrap_or(0));
            for (record, _) in &self.pending {
                if serde_json::to_writer(&mut text, record).is_ok() {
                    text.push(b'\n');
                }
            }
            let tmp = self.path.with_extension("tmp");
            open_private(&tmp, false)
                .and_then(|mut f| f.write_all(&text))
                .and_then(|()| std::fs::rename(&tmp, &self.path))
        };
        if let Err(e) = done {
            warn!(path = %self.path.display(), cause = %e, "event spool file not rewritten");
        }
    }

    fn sync_len(&self) {
        self.stats
            .spool_len
            .store(self.pending.len() as u64, Ordering::Relaxed);
    }
}

/// Opens `path` for writing, creating it with mode 0600.
fn open_private(path: &Path, append: bool) -> io::Result<File> {
    let mut o = OpenOptions::new();
    o.create(true).write(true);
    if append {
        o.append(true);
    } else {
        o.truncate(true);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    o.open(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Event, RtpManagerEvent};
    use crate::subject::RtpManagerVerb;

    fn record(i: usize) -> Record {
        Record {
            id: format!("n-{i}"),
            event: Event::rtpmanager(
                RtpManagerVerb::Up,
                RtpManagerEvent {
                    name: format!("rtpmanager-{i}"),
                    address: "127.0.0.1:9090".into(),
                },
            ),
        }
    }

    fn tempdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "sb-events-spool-{tag}-{}-{}",
            std::process::id(),
            switchboard_store::now_ms()
        ));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn survives_a_restart_in_order_and_is_private() {
        let dir = tempdir("restart");
        let path = dir.join("events-spool.jsonl");
        let stats = Arc::new(BusStats::default());
        let mut spool = Spool::open(path.clone(), 100, 1 << 20, Arc::clone(&stats));
        for i in 0..5 {
            spool.push(record(i));
        }
        assert_eq!(stats.spool_len.load(Ordering::Relaxed), 5);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        drop(spool);
        let mut again = Spool::open(path.clone(), 100, 1 << 20, Arc::clone(&stats));
        let ids: Vec<String> = again.head(10).into_iter().map(|r| r.id).collect();
        assert_eq!(ids, ["n-0", "n-1", "n-2", "n-3", "n-4"]);
        again.pop_front(2);
        again.persist();
        let again = Spool::open(path.clone(), 100, 1 << 20, Arc::clone(&stats));
        assert_eq!(again.head(1)[0].id, "n-2");
        assert_eq!(again.len(), 3);
        let mut again = again;
        again.pop_front(3);
        again.persist();
        assert!(!path.exists(), "an empty spool leaves no file");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn bounded_in_records_and_bytes() {
        let dir = tempdir("bounds");
        let stats = Arc::new(BusStats::default());
        let mut spool = Spool::open(dir.join("a.jsonl"), 3, 1 << 20, Arc::clone(&stats));
        for i in 0..5 {
            spool.push(record(i));
        }
        assert_eq!(spool.len(), 3);
        assert_eq!(stats.spool_dropped.load(Ordering::Relaxed), 2);
        assert_eq!(stats.spooled.load(Ordering::Relaxed), 3);

        let stats = Arc::new(BusStats::default());
        let line = serde_json::to_vec(&record(0)).unwrap().len() as u64 + 1;
        let mut spool = Spool::open(dir.join("b.jsonl"), 100, line * 2 + 10, Arc::clone(&stats));
        for i in 0..4 {
            spool.push(record(i));
        }
        assert_eq!(spool.len(), 2);
        assert_eq!(stats.spool_dropped.load(Ordering::Relaxed), 2);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn unreadable_lines_are_dropped_and_counted() {
        let dir = tempdir("garbage");
        let path = dir.join("c.jsonl");
        let good = serde_json::to_string(&record(7)).unwrap();
        std::fs::write(&path, format!("{{not json\n{good}\n{{\"id\":1}}\n")).unwrap();
        let stats = Arc::new(BusStats::default());
        let spool = Spool::open(path.clone(), 100, 1 << 20, Arc::clone(&stats));
        assert_eq!(spool.len(), 1);
        assert_eq!(spool.head(1)[0].id, "n-7");
        assert_eq!(stats.spool_dropped.load(Ordering::Relaxed), 2);
        let rewritten = std::fs::read_to_string(&path).unwrap();
        assert_eq!(rewritten.lines().count(), 1, "the file was cleaned");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
