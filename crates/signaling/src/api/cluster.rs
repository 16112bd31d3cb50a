//! The API's answers that come from the cluster's shared state when this
//! node is part of one: every replica gives the same registrations and
//! calls, and a call can be hung up from any replica.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};
use switchboard_cluster::{Command, Health, MAX_LIST, Shared, SharedBinding};

use crate::Node;
use crate::calls::CallView;
use crate::cluster::calls::view_of;
use crate::registrar::Now;

/// Redis, when configured and answering; otherwise the node answers from
/// its own memory (degraded, and said so in the health endpoint).
fn shared(node: &Node) -> Option<&Shared> {
    node.cluster
        .shared
        .as_ref()
        .filter(|s| s.health() == Health::Ok)
}

fn contact_json(b: &SharedBinding, now_ms: i64) -> Value {
    let r = &b.reg;
    json!({
        "contact": r.contact,
        "expires_in": ((r.expires_at - now_ms).max(0) + 999) / 1000,
        "expires_at_ms": r.expires_at,
        "received": r.received,
        "user_agent": r.user_agent,
        "call_id": r.call_id,
        "cseq": r.cseq,
        "q": r.q,
        "instance": r.instance_id,
        "replica": b.replica,
    })
}

fn aors_json(bindings: Vec<SharedBinding>, now_ms: i64) -> Vec<Value> {
    let mut by_aor: BTreeMap<String, (Option<i64>, i64, Vec<Value>)> = BTreeMap::new();
    for b in bindings {
        let e = by_aor.entry(b.reg.aor.clone()).or_insert((
            b.reg.user_id,
            b.reg.account_id,
            Vec::new(),
        ));
        e.2.push(contact_json(&b, now_ms));
    }
    by_aor
        .into_iter()
        .map(|(aor, (user_id, account_id, contacts))| {
            json!({ "aor": aor, "user_id": user_id, "account_id": account_id, "contacts": contacts })
        })
        .collect()
}

/// Every AOR with its contacts, from Redis.
pub(super) async fn registrations(node: &Node) -> Option<Value> {
    let now = Now::current().unix_ms;
    let list = shared(node)?.list(now, MAX_LIST).await.ok()?;
    Some(json!(aors_json(list, now)))
}

/// One AOR, from Redis: `Some(None)` when it has no contact.
pub(super) async fn registration(node: &Node, aor: &str) -> Option<Option<Value>> {
    let now = Now::current().unix_ms;
    let list = shared(node)?.lookup(aor, now).await.ok()?;
    Some(aors_json(list, now).into_iter().next())
}

/// Removes an AOR's bindings everywhere; whether Redis had any.
pub(super) async fn remove_registration(node: &Node, aor: &str) -> bool {
    match shared(node) {
        Some(s) => s.remove_aor(aor).await.is_ok_and(|n| n > 0),
        None => false,
    }
}

/// Every live call of every replica, from Redis.
pub(super) async fn calls(node: &Node) -> Option<Vec<CallView>> {
    let list = shared(node)?.list_calls().await.ok()?;
    let mut views: Vec<CallView> = list.iter().filter_map(view_of).collect();
    views.sort_by(|a, b| a.invite_at.cmp(&b.invite_at).then(a.id.cmp(&b.id)));
    Some(views)
}

/// One live call of any replica.
pub(super) async fn call(node: &Node, id: &str) -> Option<Option<CallView>> {
    let c = shared(node)?.get_call(id).await.ok()?;
    Some(c.as_ref().and_then(view_of))
}

/// Asks the replica that owns a call to end it; whether it was told.
pub(super) async fn hangup_elsewhere(node: &Node, id: &str) -> bool {
    let Some(s) = shared(node) else { return false };
    let Ok(Some(call)) = s.get_call(id).await else {
        return false;
    };
    if call.owner == node.cluster.replica {
        return false;
    }
    let cmd = Command::Hangup {
        call_id: id.to_owned(),
    };
    s.send(&call.owner, &cmd).await.is_ok_and(|n| n > 0)
}

/// `GET /api/v1/cluster`: this replica and every replica Redis knows.
pub(super) async fn cluster(State(node): State<Arc<Node>>) -> Json<Value> {
    let me = &node.cluster;
    let replicas = match &me.shared {
        Some(s) => match s.replicas().await {
            Ok(list) => json!(
                list.into_iter()
                    .map(|r| json!({
                        "id": r.info.id,
                        "sip_addr": r.info.sip_addr,
                        "api_addr": r.info.api_addr,
                        "started_ms": r.info.started_ms,
                        "last_heartbeat_ms": r.last_seen_ms,
                        "alive": r.alive,
                        "registrations": r.info.registrations,
                        "calls": r.info.calls,
                    }))
                    .collect::<Vec<_>>()
            ),
            Err(e) => json!({ "error": e.to_string() }),
        },
        None => json!([]),
    };
    Json(json!({
        "replica": me.replica,
        "sip_addr": me.addr().map(|a| a.to_string()),
        "clustered": me.shared.is_some(),
        // the live replicas this one routes through (its view, refreshed
        // with every heartbeat)
        "peers": me.peers().into_iter().map(|(id, addr)| (id, addr.to_string())).collect::<std::collections::BTreeMap<_, _>>(),
        "replicas": replicas,
    }))
}

/// `ok` / `degraded: why` / `off` of each shared server, and whether all
/// that are configured answer.
pub(super) async fn health(node: &Node) -> (bool, Value) {
    let store = match node.store.health().await {
        Ok(()) => "ok".to_owned(),
        Err(e) => format!("degraded: {e}"),
    };
    let postgres = if node.config.cluster.database_url.is_some() {
        store.clone()
    } else {
        "off".to_owned()
    };
    let redis = match node.cluster.redis_health() {
        Ok(s) => s.to_owned(),
        Err(why) => format!("degraded: {why}"),
    };
    let nats = if node.config.cluster.nats_url.is_some() {
        node.events.health().to_string()
    } else {
        "off".to_owned()
    };
    let ok = [&store, &redis, &nats]
        .iter()
        .all(|s| *s == "ok" || *s == "off");
    (
        ok,
        json!({
            "status": if ok { "ok" } else { "degraded" },
            "store": store,
            "postgres": postgres,
            "redis": redis,
            "nats": nats,
            "replica": node.cluster.replica,
        }),
    )
}
