//! Trunks in the shared database: with `DATABASE_URL` the trunk table
//! there is the truth (a `PUT /api/v1/trunks/{name}` on one replica reaches
//! every replica with the next poll), and TRUNKS_PATH only seeds an empty
//! table at first start.

use std::collections::HashSet;
use std::sync::Arc;

use tracing::{info, warn};

use crate::Node;
use crate::trunks::{TrunkConfig, Trunks};

/// Makes this replica's trunks those of the database: new and changed ones
/// are (re)started, removed ones stopped.
pub async fn reload(node: &Node) -> anyhow::Result<()> {
    let stored = node.store.list_trunks().await?;
    let trunks = &node.calls.trunks;
    let mut names = HashSet::new();
    for (name, json) in stored {
        names.insert(name.clone());
        let value: serde_json::Value = match serde_json::from_str(&json) {
            Ok(v) => v,
            Err(e) => {
                warn!(trunk = %name, cause = %e, "stored trunk is not JSON; skipped");
                continue;
            }
        };
        if trunks
            .get(&name)
            .is_some_and(|t| Trunks::stored(&t.config) == value)
        {
            continue;
        }
        let config: TrunkConfig = match serde_json::from_value(value) {
            Ok(c) => c,
            Err(e) => {
                warn!(trunk = %name, cause = %e, "stored trunk not understood; skipped");
                continue;
            }
        };
        match trunks.put(config) {
            Ok((trunk, _)) => {
                info!(trunk = %name, "trunk loaded from the database");
                node.calls
                    .start_trunk_tasks(Arc::clone(&trunk), node.shutdown.clone(), false);
            }
            Err(e) => warn!(trunk = %name, cause = %e, "stored trunk refused"),
        }
    }
    for t in trunks.list() {
        if !names.contains(&t.config.name) {
            info!(trunk = %t.config.name, "trunk removed in the database");
            trunks.remove(&t.config.name);
        }
    }
    Ok(())
}

/// At start: an empty trunk table takes the trunks of TRUNKS_PATH.
pub async fn seed(node: &Node) -> anyhow::Result<()> {
    if !node.store.list_trunks().await?.is_empty() {
        return Ok(());
    }
    for t in node.calls.trunks.list() {
        node.store
            .put_trunk(&t.config.name, &Trunks::stored(&t.config).to_string())
            .await?;
    }
    Ok(())
}

/// Writes one trunk (API change) to the database.
pub async fn save(node: &Node, config: &TrunkConfig) -> switchboard_store::Result<()> {
    node.store
        .put_trunk(&config.name, &Trunks::stored(config).to_string())
        .await
}
