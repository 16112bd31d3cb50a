//! Bindings end with their connection (`UNREGISTER_ON_CLOSE`): when a
//! WebSocket connection (and with `all` a TCP or TLS one) that a phone
//! registered over closes, the bindings learnt on it are removed at once,
//! as if the phone had unregistered them.
//!
//! The transports report each closed connection that carried SIP on a
//! bounded queue ([`CloseReports`]; a full queue drops reports, counted,
//! and the binding then lives until it expires); one task here takes them
//! in turn: the location table (and through it the store) first, then in
//! a cluster Redis, where only a binding that still names this replica
//! and the closed flow is removed (the phone may have registered again
//! through another replica meanwhile), then one `unregistered` event per
//! contact the platform no longer lists (while Redis does not answer, per
//! contact this replica removed: it serves from its own table then). A
//! binding refreshed over a new connection before the old one closed
//! names the new one and stays.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use switchboard_events::{Event, RegistrationEvent, RegistrationVerb};
use switchboard_sip_stack::target::{Target, TransportKind};
use switchboard_sip_stack::transport::CloseReports;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use crate::Node;
use crate::cluster::PUBLISH_WAIT;
use crate::config::UnregisterOnClose;
use crate::location::{FlowRemoved, format_received};
use crate::registrar::Now;

/// Closed connections waiting to have their bindings removed (a flow,
/// some 60 bytes, each). The task takes them as fast as the location
/// table and Redis answer, so it fills only while Redis stalls (up to
/// [`PUBLISH_WAIT`] per AOR) and many phones go away at once.
pub const CLOSE_QUEUE: usize = 8192;

/// The transports' report queue for `policy`, and its receiving end; none
/// for `none`.
pub fn reports(policy: UnregisterOnClose) -> Option<(CloseReports, mpsc::Receiver<Target>)> {
    let kinds = policy.kinds();
    if kinds.is_empty() {
        return None;
    }
    let (tx, rx) = mpsc::channel(CLOSE_QUEUE);
    let reports = CloseReports {
        tx,
        kinds: kinds.to_vec(),
    };
    Some((reports, rx))
}

/// Removes the bindings of each closed connection reported on `rx` until
/// `shutdown`.
pub fn spawn(
    node: Arc<Node>,
    mut rx: mpsc::Receiver<Target>,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let flow = tokio::select! {
                f = rx.recv() => match f { Some(f) => f, None => return },
                _ = shutdown.cancelled() => return,
            };
            for removed in node.location.remove_flow(&flow, Now::current().unix_ms) {
                unregistered(&node, &flow, removed).await;
            }
        }
    })
}

/// The platform's part of one AOR's bindings gone with `flow`: Redis, then
/// the events.
async fn unregistered(node: &Node, flow: &Target, removed: FlowRemoved) {
    let source = format_received(flow);
    let contacts: Vec<&str> = removed.bindings.iter().map(|b| &*b.contact).collect();
    info!(aor = %removed.aor, ?contacts, %flow, "connection closed: its bindings are removed");
    let gone = match &node.cluster.shared {
        None => contacts.iter().map(|c| (*c).to_owned()).collect(),
        Some(shared) => {
            let stats = &node.cluster.stats;
            let replica = &node.cluster.replica;
            let work = shared.remove_flow_bindings(&removed.aor, replica, &source, &contacts);
            match tokio::time::timeout(PUBLISH_WAIT, work).await {
                Ok(Ok(gone)) => {
                    stats.published.fetch_add(1, Ordering::Relaxed);
                    gone
                }
                // Redis away: this replica serves from its own table,
                // which no longer has them (Redis' copy expires)
                failed => {
                    stats.publish_failures.fetch_add(1, Ordering::Relaxed);
                    let cause = match failed {
                        Ok(Err(e)) => e.to_string(),
                        _ => "no answer in time".into(),
                    };
                    debug!(aor = %removed.aor, %cause, "removal of a closed flow's bindings not shared");
                    contacts.iter().map(|c| (*c).to_owned()).collect()
                }
            }
        }
    };
    for contact in gone {
        let user_agent = removed
            .bindings
            .iter()
            .find(|b| *b.contact == *contact)
            .and_then(|b| b.user_agent.as_deref().map(str::to_owned));
        node.events.publish(Event::registration(
            RegistrationVerb::Unregistered,
            RegistrationEvent {
                aor: removed.aor.clone(),
                contact,
                expires: 0,
                source: Some(source.clone()),
                user_agent,
            },
        ));
    }
}

/// The `/metrics` families of this module.
pub(crate) fn render_metrics(node: &Node, out: &mut String) {
    let counts = &node.location.stats.flow_closed;
    crate::stack_metrics::labelled(
        out,
        "switchboard_bindings_removed_flow_closed_total",
        "Bindings removed because the connection they were registered over closed (UNREGISTER_ON_CLOSE).",
        "transport",
        &[
            TransportKind::Tcp,
            TransportKind::Tls,
            TransportKind::Ws,
            TransportKind::Wss,
        ]
        .map(|k| (k.uri_param(), counts.get(k))),
    );
}
