//! Opening what a node shares: the store (Postgres or SQLite), Redis and
//! NATS. A malformed setting stops start-up naming its variable; a server
//! that does not answer only makes the node `degraded` until it does.

use std::time::Duration;

use anyhow::Context;
use switchboard_cluster::{ReplicaId, Shared};
use switchboard_events::{CdrStream, CdrStreamOptions, EventBus, EventBusOptions, Nats};
use switchboard_store::Store;
use tracing::{info, warn};

use crate::Config;

/// How long start-up waits for Postgres before going on degraded.
const STORE_WAIT: Duration = Duration::from_secs(5);

/// What a node opened.
pub struct Parts {
    pub store: Store,
    pub shared: Option<Shared>,
    pub events: EventBus,
    pub cdrs: Option<CdrStream>,
}

/// The replica id: NODE_NAME (or the host name) with anything outside
/// `[A-Za-z0-9._-]` replaced, at most 64 characters.
pub fn replica_id(config: &Config) -> String {
    let name: String = config
        .node_name()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .take(64)
        .collect();
    if name.is_empty() {
        "switchboard".into()
    } else {
        name
    }
}

/// JetStream stream names for a subject root: `switchboard` gives
/// `SWITCHBOARD_EVENTS` and `SWITCHBOARD_CDR`.
fn stream_name(prefix: &str, what: &str) -> String {
    let base: String = prefix
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("{base}_{what}")
}

pub async fn open(config: &Config, replica: &str) -> anyhow::Result<Parts> {
    let c = &config.cluster;
    let store = match &c.database_url {
        Some(url) => {
            let store = Store::open_postgres(url)
                .await
                .map_err(|e| anyhow::anyhow!("DATABASE_URL: {e}"))?;
            match store.wait_ready(STORE_WAIT).await {
                Ok(()) => info!("Postgres ready"),
                Err(e) => warn!(cause = %e, "Postgres not answering; starting degraded"),
            }
            store
        }
        None => Store::open_sqlite(&config.data_dir)
            .await
            .with_context(|| {
                format!(
                    "DATA_DIR: cannot open the database in {}",
                    config.data_dir.display()
                )
            })?,
    };
    let shared = match &c.redis_addr {
        Some(addr) => {
            let url = switchboard_cluster::parse_redis_addr(addr).map_err(anyhow::Error::msg)?;
            let id = ReplicaId::new(replica).map_err(|e| anyhow::anyhow!("NODE_NAME: {e}"))?;
            let shared = Shared::connect(&url, &c.redis_prefix, id)
                .map_err(|e| anyhow::anyhow!("REDIS_ADDR: {e}"))?;
            if !shared.wait_ready(Duration::from_secs(2)).await {
                warn!("Redis not answering; starting degraded (this node's memory only)");
            }
            Some(shared)
        }
        None => None,
    };
    let (events, cdrs) = match &c.nats_url {
        Some(urls) => {
            let nats = Nats::connect(urls, replica)
                .await
                .map_err(anyhow::Error::msg)?;
            let events = EventBus::jetstream_with(
                replica,
                nats.clone(),
                &config.data_dir,
                EventBusOptions {
                    prefix: c.nats_prefix.clone(),
                    stream_name: stream_name(&c.nats_prefix, "EVENTS"),
                    max_bytes: c.nats_stream_max_bytes,
                    ..EventBusOptions::default()
                },
            )
            .map_err(|e| anyhow::anyhow!("NATS_URL: {e}"))?;
            let cdrs = CdrStream::with_nats(
                nats,
                CdrStreamOptions {
                    prefix: c.nats_prefix.clone(),
                    stream_name: stream_name(&c.nats_prefix, "CDR"),
                    max_bytes: c.nats_stream_max_bytes,
                    ..CdrStreamOptions::default()
                },
            )
            .map_err(|e| anyhow::anyhow!("NATS_URL: {e}"))?;
            (events, Some(cdrs))
        }
        None => (EventBus::in_process(replica), None),
    };
    Ok(Parts {
        store,
        shared,
        events,
        cdrs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_names_follow_the_prefix() {
        assert_eq!(stream_name("switchboard", "CDR"), "SWITCHBOARD_CDR");
        assert_eq!(
            stream_name("t1a.switchboard", "EVENTS"),
            "T1A_SWITCHBOARD_EVENTS"
        );
    }
}
