//! Call detail records on their way to the store.
//!
//! Calls hand their CDR to a [`CdrSink`]; one writer task stores them in
//! the order they ended. While the store refuses writes (database down,
//! disk full) CDRs go to a spool file under `DATA_DIR`, one JSON line each,
//! and every later CDR queues behind them there, so the order holds; the
//! spool is drained from its head as soon as the store answers again, and
//! a spool left by a previous run is drained at start. The spool is
//! bounded ([`SPOOL_MAX`] records): past it a CDR is dropped, counted and
//! logged as an error rather than filling the disk. Inserts are idempotent
//! on the call id, so a CDR stored twice (a crash between a store write and
//! the spool rewrite) is kept once.

use std::collections::VecDeque;
use std::future::Future;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use switchboard_sip::message::Request;
use switchboard_sip_stack::target::Target;
use switchboard_store::{Cdr, Store};
use tokio::sync::{mpsc, oneshot};
use tracing::{error, info, warn};

use super::actor::Caller;
use super::{new_call_uuid, source_text};
use crate::registrar::Now;

/// CDRs the spool holds at most (about 1 KB each).
pub(crate) const SPOOL_MAX: usize = 100_000;

/// CDRs waiting for the writer before calls wait for room.
const QUEUE: usize = 4096;

/// CDRs written per store transaction at most: under load the writer
/// takes what has queued up, so a thousand calls ending each second cost
/// a few transactions, not a thousand.
const BATCH: usize = 512;

/// How long one store write may take before it counts as a failure.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// Where CDRs are written: the store, or a stand-in in tests. A batch is
/// written whole or not at all.
pub(crate) trait CdrStore: Send + Sync + 'static {
    fn insert<'a>(
        &'a self,
        cdrs: &'a [Cdr],
    ) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>>;
}

impl CdrStore for Store {
    fn insert<'a>(
        &'a self,
        cdrs: &'a [Cdr],
    ) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>> {
        Box::pin(async move {
            self.insert_cdrs(cdrs)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
    }
}

/// With NATS, CDRs go to the JetStream stream (acked by JetStream before
/// the writer counts them written); the replicas' shared consumer stores
/// them in the database, so a database outage costs nothing but delay.
impl CdrStore for switchboard_events::CdrStream {
    fn insert<'a>(
        &'a self,
        cdrs: &'a [Cdr],
    ) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>> {
        Box::pin(self.publish_batch(cdrs))
    }
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct CdrStats {
    pub written: AtomicU64,
    pub write_failures: AtomicU64,
    pub spooled: AtomicU64,
    /// CDRs lost: the spool was full, or an unrouted request's CDR met a full queue.
    pub dropped: AtomicU64,
    /// CDRs in the spool now.
    pub spool_len: AtomicU64,
}

enum Msg {
    Cdr(Box<Cdr>),
    Flush(oneshot::Sender<()>),
}

/// The calls' side of the CDR writer.
pub struct CdrSink {
    tx: mpsc::Sender<Msg>,
    pub stats: Arc<CdrStats>,
    /// With NATS: the stream written to, for its counters.
    stream: Option<switchboard_events::CdrStream>,
}

impl CdrSink {
    pub(crate) fn start(store: Store, spool_dir: PathBuf) -> Self {
        Self::start_with(Arc::new(store), spool_dir)
    }

    /// CDRs to the JetStream stream (the replicas' consumer stores them).
    pub(crate) fn start_stream(stream: switchboard_events::CdrStream, spool_dir: PathBuf) -> Self {
        Self {
            stream: Some(stream.clone()),
            ..Self::start_with(Arc::new(stream), spool_dir)
        }
    }

    pub(crate) fn start_with(store: Arc<dyn CdrStore>, spool_dir: PathBuf) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        let stats = Arc::new(CdrStats::default());
        let spool = Spool::open(spool_dir.join("cdr-spool.jsonl"), Arc::clone(&stats));
        tokio::spawn(writer(store, rx, spool, Arc::clone(&stats)));
        Self {
            tx,
            stats,
            stream: None,
        }
    }

    /// The CDR stream's counters (publishes, and what this replica's
    /// consumer stored or refused), with NATS.
    pub(crate) fn stream_stats(&self) -> Option<switchboard_events::CdrStreamStats> {
        self.stream
            .as_ref()
            .map(switchboard_events::CdrStream::stats)
    }

    /// Hands a call's CDR to the writer; when calls end faster than the
    /// store takes their CDRs, the call waits here for room (its slot in
    /// `MAX_CALLS` with it), so the backlog is bounded by the queue.
    pub(crate) async fn send(&self, cdr: Cdr) {
        if self.tx.send(Msg::Cdr(Box::new(cdr))).await.is_err() {
            error!("CDR writer is gone; a CDR was lost");
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Hands over the CDR of a request that never became a call (no route):
    /// a flood of those (forged trunk INVITEs) must not queue without end,
    /// so when the writer is behind it is dropped and counted instead.
    pub(crate) fn send_or_drop(&self, cdr: Cdr) {
        if self.tx.try_send(Msg::Cdr(Box::new(cdr))).is_err() {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Returns once every CDR sent before is stored or spooled.
    pub(crate) async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Msg::Flush(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }
}

/// The spool file and what it holds, oldest first.
struct Spool {
    path: PathBuf,
    pending: VecDeque<Cdr>,
    stats: Arc<CdrStats>,
}

impl Spool {
    fn open(path: PathBuf, stats: Arc<CdrStats>) -> Self {
        let pending: VecDeque<Cdr> = std::fs::read_to_string(&path)
            .map(|text| {
                text.lines()
                    .filter_map(|l| serde_json::from_str(l).ok())
                    .collect()
            })
            .unwrap_or_default();
        if !pending.is_empty() {
            info!(cdrs = pending.len(), path = %path.display(), "CDRs spooled by an earlier run will be stored");
        }
        stats
            .spool_len
            .store(pending.len() as u64, Ordering::Relaxed);
        Self {
            path,
            pending,
            stats,
        }
    }

    fn push(&mut self, cdr: Cdr) {
        if self.pending.len() >= SPOOL_MAX {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            error!(call_id = %cdr.call_id, "CDR spool full; CDR lost");
            return;
        }
        if let Err(e) = append(&self.path, &cdr) {
            // still kept in memory until the store returns
            warn!(cause = %e, "CDR spool file not written");
        }
        self.pending.push_back(cdr);
        self.stats.spooled.fetch_add(1, Ordering::Relaxed);
        self.sync_len();
    }

    fn sync_len(&self) {
        self.stats
            .spool_len
            .store(self.pending.len() as u64, Ordering::Relaxed);
    }

    /// Rewrites the file with what is still pending.
    fn rewrite(&self) {
        let text: String = self
            .pending
            .iter()
            .filter_map(|c| serde_json::to_string(c).ok())
            .map(|l| l + "\n")
            .collect();
        let tmp = self.path.with_extension("tmp");
        let done = if self.pending.is_empty() {
            std::fs::remove_file(&self.path).or_else(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    Ok(())
                } else {
                    Err(e)
                }
            })
        } else {
            write_private(&tmp, text.as_bytes()).and_then(|()| std::fs::rename(&tmp, &self.path))
        };
        if let Err(e) = done {
            warn!(cause = %e, "CDR spool file not rewritten");
        }
        self.sync_len();
    }
}

fn append(path: &Path, cdr: &Cdr) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(cdr).map_err(std::io::Error::other)?;
    line.push(b'\n');
    let mut f = open_private(path, true)?;
    f.write_all(&line)
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    open_private(path, false)?.write_all(bytes)
}

/// CDRs name callers and numbers: the spool is readable by its owner only.
fn open_private(path: &Path, append: bool) -> std::io::Result<std::fs::File> {
    let mut o = std::fs::OpenOptions::new();
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

async fn write_batch(store: &dyn CdrStore, cdrs: &[Cdr], stats: &CdrStats) -> bool {
    match tokio::time::timeout(WRITE_TIMEOUT, store.insert(cdrs)).await {
        Ok(Ok(())) => {
            stats
                .written
                .fetch_add(cdrs.len() as u64, Ordering::Relaxed);
            true
        }
        Ok(Err(e)) => {
            stats.write_failures.fetch_add(1, Ordering::Relaxed);
            warn!(cdrs = cdrs.len(), cause = %e, "CDRs not stored; spooled until the store returns");
            false
        }
        Err(_) => {
            stats.write_failures.fetch_add(1, Ordering::Relaxed);
            warn!(
                cdrs = cdrs.len(),
                "CDR write timed out; spooled until the store returns"
            );
            false
        }
    }
}

/// Stores the spool's head in order, a batch at a time; stops at the
/// first failure.
async fn drain(store: &dyn CdrStore, spool: &mut Spool, stats: &CdrStats) -> bool {
    let mut stored = 0;
    while !spool.pending.is_empty() {
        let n = spool.pending.len().min(BATCH);
        let head: Vec<Cdr> = spool.pending.iter().take(n).cloned().collect();
        if !write_batch(store, &head, stats).await {
            break;
        }
        spool.pending.drain(..n);
        stored += n;
    }
    if stored > 0 {
        info!(stored, left = spool.pending.len(), "spooled CDRs stored");
        spool.rewrite();
    }
    spool.pending.is_empty()
}

async fn writer(
    store: Arc<dyn CdrStore>,
    mut rx: mpsc::Receiver<Msg>,
    mut spool: Spool,
    stats: Arc<CdrStats>,
) {
    let mut backoff = Duration::from_millis(200);
    let mut retry_at = tokio::time::Instant::now();
    loop {
        let msg = if spool.pending.is_empty() {
            rx.recv().await
        } else {
            tokio::select! {
                m = rx.recv() => m,
                () = tokio::time::sleep_until(retry_at) => {
                    if drain(store.as_ref(), &mut spool, &stats).await {
                        backoff = Duration::from_millis(200);
                    } else {
                        backoff = (backoff * 2).min(Duration::from_secs(10));
                        retry_at = tokio::time::Instant::now() + backoff;
                    }
                    continue;
                }
            }
        };
        let Some(first) = msg else {
            return;
        };
        // whatever else has queued up goes in the same transaction
        let mut batch = Vec::new();
        let mut flushes = Vec::new();
        let mut next = Some(first);
        while let Some(m) = next.take() {
            match m {
                Msg::Cdr(cdr) => batch.push(*cdr),
                Msg::Flush(done) => flushes.push(done),
            }
            if batch.len() < BATCH {
                next = rx.try_recv().ok();
            }
        }
        // behind a non-empty spool CDRs wait their turn there
        if !batch.is_empty()
            && (!spool.pending.is_empty() || !write_batch(store.as_ref(), &batch, &stats).await)
        {
            if spool.pending.is_empty() {
                retry_at = tokio::time::Instant::now() + backoff;
            }
            for cdr in batch {
                spool.push(cdr);
            }
        }
        for done in flushes {
            let _ = done.send(());
        }
    }
}

/// The CDR of an authenticated call that no dialplan route takes.
pub(super) fn unrouted(
    req: &Request,
    from: &Target,
    account_id: i64,
    caller: &Caller,
    destination: String,
    node: &str,
) -> Cdr {
    let now = Now::current().unix_ms;
    Cdr {
        id: 0,
        call_id: new_call_uuid(),
        sip_call_id: Some(req.call_id.clone()),
        account_id: Some(account_id),
        caller: caller.id.clone(),
        callee: destination,
        caller_name: req
            .from
            .display
            .as_deref()
            .map(|d| d.trim_matches('"').to_owned()),
        source: source_text(from),
        invite_at: now,
        ring_at: None,
        answer_at: None,
        end_at: Some(now),
        ring_ms: None,
        talk_ms: None,
        disposition: "failed".into(),
        hangup_code: Some(404),
        hangup_reason: Some("No Route".into()),
        hangup_side: Some("system".into()),
        route_id: None,
        route: None,
        caller_user: caller.user.clone(),
        callee_user: None,
        node: Some(node.to_owned()),
        rtp_sent: None,
        rtp_received: None,
        rtp_lost: None,
        jitter_ms: None,
        mos: None,
        rtpmanager: None,
        created_at: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use std::sync::atomic::AtomicBool;

    /// A store that is down while `down` is set and records what it took.
    #[derive(Default)]
    struct Flaky {
        down: AtomicBool,
        rows: Mutex<Vec<String>>,
    }

    impl CdrStore for Flaky {
        fn insert<'a>(
            &'a self,
            cdrs: &'a [Cdr],
        ) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>> {
            Box::pin(async move {
                if self.down.load(Ordering::SeqCst) {
                    return Err("database down".into());
                }
                let mut rows = self.rows.lock().unwrap();
                for cdr in cdrs {
                    if !rows.contains(&cdr.call_id) {
                        rows.push(cdr.call_id.clone());
                    }
                }
                Ok(())
            })
        }
    }

    fn cdr(id: &str) -> Cdr {
        let req = match switchboard_sip::message::parse(
            b"INVITE sip:1@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1;branch=z9hG4bK1\r\n\
              From: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:1@127.0.0.1>\r\nCall-ID: x\r\n\
              CSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n",
        ) {
            Ok(switchboard_sip::message::Message::Request(r)) => r,
            other => panic!("{other:?}"),
        };
        let from = Target {
            transport: switchboard_sip_stack::target::TransportKind::Udp,
            local: "127.0.0.1:5060".parse().unwrap(),
            remote: "127.0.0.1:5070".parse().unwrap(),
            conn: None,
        };
        let caller = Caller {
            id: "1001".into(),
            name: None,
            user: None,
        };
        Cdr {
            call_id: id.into(),
            ..unrouted(&req, &from, 1, &caller, "1002".into(), "n")
        }
    }

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "switchboard-cdr-{name}-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[tokio::test]
    async fn an_outage_loses_nothing_and_keeps_the_order() {
        let store = Arc::new(Flaky::default());
        let d = dir("outage");
        let sink = CdrSink::start_with(store.clone(), d.clone());
        sink.send(cdr("c1")).await;
        sink.flush().await;
        store.down.store(true, Ordering::SeqCst);
        for id in ["c2", "c3", "c4"] {
            sink.send(cdr(id)).await;
        }
        sink.flush().await;
        assert_eq!(sink.stats.spool_len.load(Ordering::Relaxed), 3);
        let spool = std::fs::read_to_string(d.join("cdr-spool.jsonl")).unwrap();
        assert_eq!(spool.lines().count(), 3, "spooled on disk");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(d.join("cdr-spool.jsonl"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        store.down.store(false, Ordering::SeqCst);
        // c5 arrives while c2..c4 still wait: it queues behind them
        sink.send(cdr("c5")).await;
        for _ in 0..100 {
            if sink.stats.spool_len.load(Ordering::Relaxed) == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(
            *store.rows.lock().unwrap(),
            ["c1", "c2", "c3", "c4", "c5"],
            "every CDR, in order"
        );
        assert!(!d.join("cdr-spool.jsonl").exists(), "spool emptied");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[tokio::test]
    async fn a_spool_left_by_a_crash_is_stored_at_start() {
        let d = dir("restart");
        {
            let path = d.join("cdr-spool.jsonl");
            append(&path, &cdr("old-1")).unwrap();
            append(&path, &cdr("old-2")).unwrap();
        }
        let store = Arc::new(Flaky::default());
        let sink = CdrSink::start_with(store.clone(), d.clone());
        for _ in 0..100 {
            if store.rows.lock().unwrap().len() == 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        sink.flush().await;
        assert_eq!(*store.rows.lock().unwrap(), ["old-1", "old-2"]);
        let _ = std::fs::remove_dir_all(&d);
    }
}
