//! The write-behind flusher of the location table: changes queued by
//! [`Location`] are written to the store in batches, and the table is
//! restored from the store at start-up.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use switchboard_sip_stack::target::TransportKind;
use switchboard_store::{Registration, Store};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::{Location, PersistOp};

/// How long the persister gathers changes before writing them: the most a
/// registration waits to be durable (a restart within it loses it; the
/// phone's next refresh brings it back).
const GATHER: Duration = Duration::from_millis(20);

/// Flushes queued changes to the store in batches until `shutdown`, then
/// flushes what is left. Repeated changes to one binding coalesce, so the
/// pending set never holds more than one entry per binding.
pub fn spawn_persister(
    store: Store,
    mut rx: mpsc::Receiver<PersistOp>,
    location: Arc<Location>,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut pending: HashMap<(String, String), Option<Registration>> = HashMap::new();
        let mut backoff = Duration::from_millis(100);
        let mut closing = false;
        loop {
            // Gather: wait for the first op, then for GATHER more, then take
            // all queued. Under load this makes one store transaction of
            // many registrations instead of one per few, and wakes this
            // task (and the database's thread) a few dozen times a second
            // rather than once per REGISTER.
            if pending.is_empty() && !closing {
                tokio::select! {
                    op = rx.recv() => match op {
                        Some(op) => add(&mut pending, op),
                        None => closing = true,
                    },
                    _ = shutdown.cancelled() => closing = true,
                }
                if !closing {
                    tokio::select! {
                        _ = tokio::time::sleep(GATHER) => {}
                        _ = shutdown.cancelled() => closing = true,
                    }
                }
            } else if !closing {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                    _ = shutdown.cancelled() => closing = true,
                }
            }
            while let Ok(op) = rx.try_recv() {
                add(&mut pending, op);
            }
            if pending.is_empty() {
                if closing {
                    return;
                }
                continue;
            }
            match flush(&store, &pending).await {
                Ok(n) => {
                    location
                        .stats
                        .persisted
                        .fetch_add(n as u64, Ordering::Relaxed);
                    pending.clear();
                    backoff = Duration::from_millis(100);
                }
                Err(e) => {
                    location
                        .stats
                        .persist_failures
                        .fetch_add(1, Ordering::Relaxed);
                    warn!(cause = %e, pending = pending.len(), "registration flush failed; will retry");
                    if closing {
                        warn!(
                            pending = pending.len(),
                            "shutting down with unflushed registrations"
                        );
                        return;
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
            if closing && rx.is_empty() && pending.is_empty() {
                debug!("registration persister finished");
                return;
            }
        }
    })
}

fn add(pending: &mut HashMap<(String, String), Option<Registration>>, op: PersistOp) {
    match op {
        PersistOp::Upsert(r) => {
            pending.insert((r.aor.clone(), r.contact.clone()), Some(r));
        }
        PersistOp::Delete { aor, contact } => {
            pending.insert((aor, contact), None);
        }
    }
}

async fn flush(
    store: &Store,
    pending: &HashMap<(String, String), Option<Registration>>,
) -> switchboard_store::Result<usize> {
    let upserts: Vec<Registration> = pending.values().flatten().cloned().collect();
    let deletes: Vec<(String, String)> = pending
        .iter()
        .filter(|(_, v)| v.is_none())
        .map(|(k, _)| k.clone())
        .collect();
    if !upserts.is_empty() {
        store.upsert_registrations(&upserts).await?;
    }
    if !deletes.is_empty() {
        store.delete_registrations(&deletes).await?;
    }
    Ok(upserts.len() + deletes.len())
}

/// Restores the table from the store at start-up; bindings whose
/// connection kind is in `closed_with_process` are deleted from the store
/// instead (see [`Location::restore`]).
pub async fn restore_from(
    store: &Store,
    location: &Location,
    now_ms: i64,
    closed_with_process: &[TransportKind],
) -> anyhow::Result<()> {
    let regs = store.load_registrations(now_ms).await?;
    let (n, dropped) = location.restore(regs, now_ms, closed_with_process);
    if !dropped.is_empty() {
        store.delete_registrations(&dropped).await?;
    }
    info!(
        contacts = n,
        dropped_with_their_connection = dropped.len(),
        "registrations restored"
    );
    Ok(())
}
