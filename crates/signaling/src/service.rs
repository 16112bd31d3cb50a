//! The SIP transaction user of the signaling node: checks every request
//! must pass (RFC 3261 §8.2), then dispatches by method.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use switchboard_events::{Event, EventBus, RegistrationEvent, RegistrationVerb};
use switchboard_sip::message::{Method, Request, Response};
use switchboard_sip::response::response;
use switchboard_sip_stack::endpoint::{Core, Screen};
use switchboard_sip_stack::target::Target;
use switchboard_sip_stack::transaction::ServerTx;
use tracing::{debug, info_span};

use crate::calls::Calls;
use crate::cluster::Cluster;
use crate::metrics::SipMetrics;
use crate::registrar::{BindingChange, Now, Registrar, Reply, SUPPORTED, unsupported_required};

/// Methods this node handles, for `Allow`.
pub const ALLOW: &str = crate::calls::ALLOW;

/// Methods RFC 3261 and its extensions define that this node does not
/// handle yet: answered 405 with `Allow`. Anything else is unrecognised: 501.
const KNOWN_NOT_ALLOWED: &[&str] = &["NOTIFY", "PRACK", "PUBLISH", "REFER", "SUBSCRIBE"];

/// Every option tag this node implements: the registrar's and the calls'.
fn supported() -> String {
    SUPPORTED
        .iter()
        .chain(crate::calls::CALL_SUPPORTED)
        .copied()
        .collect::<Vec<_>>()
        .join(", ")
}

pub struct SipService {
    pub registrar: Registrar,
    pub metrics: Arc<SipMetrics>,
    pub calls: Arc<Calls>,
    pub cluster: Arc<Cluster>,
    pub events: EventBus,
    /// NONCE_TTL, how long the shared nonce-count guard remembers a nonce.
    pub nonce_ttl: u64,
}

impl SipService {
    fn send(&self, tx: &ServerTx, code: u16, bytes: Vec<u8>) {
        self.metrics.responses_out.inc(code);
        tx.respond(code, Bytes::from(bytes));
    }

    /// A REGISTER. In a cluster a nonce count is checked against every
    /// replica's before the bindings change (a captured `Authorization`
    /// replayed to another replica gets a new challenge), and the 200 goes
    /// out once the change is in Redis. Both are one Redis round trip: the
    /// change is planned (the location rules on a copy), shared behind the
    /// nonce check by one script, and committed here only if the nonce was
    /// fresh.
    fn register(&self, req: Request, tx: ServerTx, from: Target) {
        let now = Now::current();
        let who = match self.registrar.authorize(&req, &from, now) {
            Ok(who) => who,
            Err(reply) => return self.finish(tx, reply),
        };
        let shared = self
            .cluster
            .shared
            .clone()
            .filter(|s| s.health() == switchboard_cluster::Health::Ok);
        let Some(shared) = shared else {
            let reply = self.registrar.apply(&req, &from, now, &who);
            return self.finish(tx, reply);
        };
        let registrar = self.registrar.clone();
        let (cluster, events, metrics) = (
            Arc::clone(&self.cluster),
            self.events.clone(),
            Arc::clone(&self.metrics),
        );
        let ttl = self.nonce_ttl;
        tokio::spawn(async move {
            // Redis failing is not the phone's fault: the local guard
            // still refused replays to this replica (a failed check counts
            // as fresh)
            let reply = match registrar.plan(&req, &from, Now::current(), &who) {
                // refused as it stands (nothing would change): the reply
                // the commit would give
                Err(reply) => reply,
                Ok(Some(planned)) => {
                    let (nonce, nc) = (&who.nonce.nonce, who.nonce.nc);
                    if cluster.share_guarded(&planned.change, nonce, nc, ttl).await {
                        let reply = registrar.commit(&req, Now::current(), &who, &planned);
                        if let Reply::Changed(_, _, change) = &reply
                            && !same_change(change, &planned.change)
                        {
                            // another REGISTER of the AOR came in between:
                            // share what was committed
                            cluster.publish(change).await;
                        }
                        reply
                    } else {
                        registrar.stale(&req, &from, Now::current(), &who)
                    }
                }
                // a fetch changes nothing: the guard alone
                Ok(None) => {
                    let fresh = shared
                        .nonce_count_advance(&who.nonce.nonce, who.nonce.nc, ttl)
                        .await
                        .unwrap_or(true);
                    if fresh {
                        registrar.apply(&req, &from, Now::current(), &who)
                    } else {
                        registrar.stale(&req, &from, Now::current(), &who)
                    }
                }
            };
            match reply {
                Reply::Respond(code, bytes) => {
                    metrics.responses_out.inc(code);
                    tx.respond(code, Bytes::from(bytes));
                }
                Reply::Changed(code, bytes, change) => {
                    publish_events(&events, &change);
                    metrics.responses_out.inc(code);
                    tx.respond(code, Bytes::from(bytes));
                }
                Reply::Drop => {
                    metrics.dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }

    /// Sends the registrar's reply; a change waits for Redis when there is
    /// one (at once on a node of its own).
    fn finish(&self, tx: ServerTx, reply: Reply) {
        match reply {
            Reply::Respond(code, bytes) => self.send(&tx, code, bytes),
            Reply::Drop => {
                self.metrics.dropped.fetch_add(1, Ordering::Relaxed);
            }
            Reply::Changed(code, bytes, change) => {
                publish_events(&self.events, &change);
                if self.cluster.shared.is_none() {
                    return self.send(&tx, code, bytes);
                }
                let cluster = Arc::clone(&self.cluster);
                let metrics = Arc::clone(&self.metrics);
                tokio::spawn(async move {
                    cluster.publish(&change).await;
                    metrics.responses_out.inc(code);
                    tx.respond(code, Bytes::from(bytes));
                });
            }
        }
    }

    fn reply(&self, tx: &ServerTx, req: &Request, code: u16, reason: &str) {
        self.send(tx, code, response(req, code, reason).build());
    }

    fn reply_allow(&self, tx: &ServerTx, req: &Request, code: u16, reason: &str) {
        let b = response(req, code, reason).header("Allow", ALLOW).build();
        self.send(tx, code, b);
    }

    fn options(&self, tx: &ServerTx, req: &Request) {
        let b = response(req, 200, "OK")
            .header("Allow", ALLOW)
            .header("Accept", "application/sdp")
            .header("Accept-Encoding", "identity")
            .header("Accept-Language", "en")
            .header("Supported", &supported())
            .build();
        self.send(tx, 200, b);
    }
}

impl Core for SipService {
    fn on_request(&self, req: Request, tx: ServerTx, from: Target) {
        let method = req.method.to_string();
        self.metrics.requests_in.inc(&method);
        let _span =
            info_span!("request", call_id = %req.call_id, method = %method, %from).entered();

        // §8.2.2.1 / §16.3: a request that has run out of hops stops here.
        // OPTIONS is answered anyway (the common "ping with Max-Forwards: 0").
        if req.max_forwards == Some(0) && method != "OPTIONS" {
            return self.reply(&tx, &req, 483, "Too Many Hops");
        }
        // §8.2.2.1: we serve sip/sips (and tel for calls later).
        if !matches!(req.uri.scheme.as_str(), "sip" | "sips" | "tel") {
            return self.reply(&tx, &req, 416, "Unsupported URI Scheme");
        }
        match method.as_str() {
            "REGISTER" => self.register(req, tx, from),
            "OPTIONS" => {
                if let Some(bad) = unsupported_required(&req) {
                    let b = response(&req, 420, "Bad Extension")
                        .header("Unsupported", &bad)
                        .build();
                    return self.send(&tx, 420, b);
                }
                self.options(&tx, &req)
            }
            "INVITE" if req.to.tag().is_none() => {
                self.calls.on_invite(req, tx, from);
            }
            "CANCEL" | "BYE" | "INVITE" | "UPDATE" | "INFO" | "MESSAGE"
                if method == "CANCEL" || req.to.tag().is_some() =>
            {
                if let Some((req, Some(tx))) = self.calls.on_dialog_request(req, Some(tx), from) {
                    self.reply(&tx, &req, 481, "Call/Transaction Does Not Exist");
                }
            }
            "BYE" | "UPDATE" | "INFO" => {
                self.reply(&tx, &req, 481, "Call/Transaction Does Not Exist")
            }
            "MESSAGE" => self.reply_allow(&tx, &req, 405, "Method Not Allowed"),
            m if KNOWN_NOT_ALLOWED.contains(&m) => {
                self.reply_allow(&tx, &req, 405, "Method Not Allowed")
            }
            _ => self.reply_allow(&tx, &req, 501, "Not Implemented"),
        }
    }

    fn screen(&self, req: &Request, from: &Target, stateless_tag: &str) -> Screen {
        // §26.2.2: a sips: request travels over TLS (or WSS) on every hop;
        // one that came over UDP, TCP or WS is refused before any
        // challenge, not served as a downgraded sip: one
        if req.uri.scheme.eq_ignore_ascii_case("sips") && !from.transport.is_secure() {
            let b = response(req, 416, "Unsupported URI Scheme")
                .to_tag(stateless_tag)
                .header("Warning", "399 switchboard \"sips: needs TLS\"")
                .build();
            self.metrics.responses_out.inc(416);
            return Screen::Reply(416, Bytes::from(b));
        }
        if req.method == Method::Invite && req.to.tag().is_none() {
            return self.calls.screen_invite(req, from, stateless_tag);
        }
        Screen::Accept
    }

    fn on_ack(&self, req: Request, from: Target) {
        self.metrics.requests_in.inc("ACK");
        if let Some((req, _)) = self.calls.on_dialog_request(req, None, from) {
            debug!(call_id = %req.call_id, "ACK outside any dialog ignored");
        }
    }

    fn on_stray_response(&self, resp: Response, _from: Target) {
        self.metrics.responses_in.inc(resp.code);
        self.metrics.stray_responses.fetch_add(1, Ordering::Relaxed);
        self.calls.on_stray_response(resp);
    }

    fn on_stateless_reply(&self, code: u16) {
        self.metrics.responses_out.inc(code);
    }

    fn on_malformed(&self, _from: Target, answered: bool) {
        let c = if answered {
            &self.metrics.malformed_answered
        } else {
            &self.metrics.malformed_dropped
        };
        c.fetch_add(1, Ordering::Relaxed);
        if answered {
            self.metrics.responses_out.inc(400);
        }
    }
}

/// Whether a committed change is the one planned and shared: the same
/// contacts removed, and the same bindings (contact, flow, Call-ID and
/// CSeq; their expiry differs by the moments between plan and commit).
fn same_change(committed: &BindingChange, planned: &BindingChange) -> bool {
    committed.removed == planned.removed
        && committed.bindings.len() == planned.bindings.len()
        && committed
            .bindings
            .iter()
            .zip(&planned.bindings)
            .all(|(a, b)| {
                a.contact == b.contact
                    && a.received == b.received
                    && a.call_id == b.call_id
                    && a.cseq == b.cseq
            })
}

/// `registered`, `refreshed` and `unregistered` for a REGISTER's change
/// (`expired` comes from the sweep that removes the binding).
fn publish_events(events: &EventBus, change: &BindingChange) {
    let now = Now::current().unix_ms;
    for (contact, new) in &change.bound {
        let Some(b) = change.bindings.iter().find(|b| b.contact == *contact) else {
            continue;
        };
        let verb = if *new {
            RegistrationVerb::Registered
        } else {
            RegistrationVerb::Refreshed
        };
        events.publish(Event::registration(
            verb,
            RegistrationEvent {
                aor: change.aor.clone(),
                contact: b.contact.to_string(),
                expires: b.expires_in(now),
                source: Some(crate::location::format_received(&b.received)),
                user_agent: b.user_agent.as_deref().map(str::to_owned),
            },
        ));
    }
    for contact in &change.removed {
        events.publish(Event::registration(
            RegistrationVerb::Unregistered,
            RegistrationEvent {
                aor: change.aor.clone(),
                contact: contact.clone(),
                expires: 0,
                ..RegistrationEvent::default()
            },
        ));
    }
}
