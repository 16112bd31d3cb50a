//! Keeping a replica's in-memory copies (directory, dialplan, trunks) equal
//! to the shared database: every [`POLL`] the store's change counter is
//! read (one indexed row), and anything newer is loaded. A replica that
//! wrote the change, or heard of it over Redis (`ConfigChanged`), looks at
//! once instead of waiting for the next poll.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::Node;
use crate::dialplan::Dialplan;

/// How often the change counter is read.
pub const POLL: Duration = Duration::from_millis(500);

/// Starts the poller (only with a shared database).
pub fn spawn(node: Arc<Node>, shutdown: CancellationToken) -> Option<JoinHandle<()>> {
    node.config.cluster.database_url.as_ref()?;
    Some(tokio::spawn(run(node, shutdown)))
}

async fn run(node: Arc<Node>, shutdown: CancellationToken) {
    let mut seen: Option<i64> = None;
    let mut dialplan_seen: Option<i64> = None;
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = node.config_changed.notified() => {}
            _ = shutdown.cancelled() => return,
        }
        let version = match node.store.config_version().await {
            Ok(v) => v,
            Err(e) => {
                debug!(cause = %e, "change counter not read");
                continue;
            }
        };
        if seen == Some(version) {
            continue;
        }
        match reload(&node, &mut dialplan_seen).await {
            Ok(()) => {
                if seen.is_some() {
                    info!(version, "configuration reloaded from the database");
                }
                seen = Some(version);
            }
            Err(e) => warn!(cause = %e, "configuration not reloaded; retrying"),
        }
    }
}

/// Loads accounts, users, the newest dialplan and the trunks.
async fn reload(node: &Node, dialplan_seen: &mut Option<i64>) -> anyhow::Result<()> {
    node.directory.load(&node.store).await?;
    if let Some((id, text)) = node.store.latest_dialplan().await?
        && *dialplan_seen != Some(id)
    {
        match Dialplan::parse(&text) {
            Ok(d) => {
                node.calls.set_dialplan(d);
                *dialplan_seen = Some(id);
            }
            Err(e) => {
                // A version another replica accepted but this one cannot
                // read (an older binary): keep the plan in use.
                warn!(version = id, cause = %e, "dialplan version not applied");
                *dialplan_seen = Some(id);
            }
        }
    }
    crate::cluster::trunks::reload(node).await
}
