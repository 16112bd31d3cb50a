//! Click-to-call: `POST /api/v1/calls` rings a user, then dials.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use switchboard_sip::message::{Message, Method, Request, Response, parse};
use switchboard_sip::request::{RequestBuilder, cancel_for, new_branch, new_call_id};
use switchboard_sip::response::new_tag;
use switchboard_sip_stack::dialog::{Dialog, advertised, host_port};
use switchboard_sip_stack::endpoint::Endpoint;
use switchboard_sip_stack::transaction::{ClientEvent, TransactionKey};
use tokio::sync::mpsc;
use tracing::debug;

use super::actor::{self, Caller};
use super::{ALLOW, Calls, new_call_uuid};
use crate::registrar::Now;

/// `POST /api/v1/calls`: ring `user`, then dial `destination`.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Originate {
    /// Username or extension of the user whose phones ring first.
    pub user: String,
    /// What is dialled through the dialplan once the user answers.
    pub destination: String,
    #[serde(default)]
    pub account_id: Option<i64>,
    /// Seconds the user's phones ring (default 30).
    #[serde(default)]
    pub ring_timeout: Option<u64>,
}

/// Why an origination was refused (HTTP status, code, message).
#[derive(Debug)]
pub struct OriginateError(pub u16, pub &'static str, pub String);

impl Calls {
    /// Click-to-call (RFC 3725 flow I): INVITE the user's phones without
    /// SDP; when one answers (its 200 carries the offer), the call goes on
    /// as if the user had dialled `destination`: the dialplan routes it and
    /// the callee's answer travels to the user in our ACK. Returns the
    /// call's id at once; the ringing happens in the background.
    pub fn originate(self: &Arc<Self>, o: Originate) -> Result<String, OriginateError> {
        let account_id = o
            .account_id
            .unwrap_or(switchboard_store::DEFAULT_ACCOUNT_ID);
        let account = self
            .directory
            .account(account_id)
            .ok_or_else(|| OriginateError(404, "not_found", "account not found".into()))?;
        let user = self
            .directory
            .user_by_extension(account.id, &o.user)
            .or_else(|| self.directory.user(account.id, &o.user))
            .filter(|u| u.enabled)
            .ok_or_else(|| OriginateError(404, "not_found", "user not found".into()))?;
        if o.destination.is_empty() || o.destination.contains(char::is_whitespace) {
            return Err(OriginateError(
                400,
                "invalid",
                "destination: a number or username".into(),
            ));
        }
        let route = self
            .dialplan()
            .route(&o.destination, account.id)
            .cloned()
            .ok_or_else(|| {
                OriginateError(404, "no_route", "no dialplan route for destination".into())
            })?;
        let realm = account.realm.to_ascii_lowercase();
        let aor = format!("sip:{}@{realm}", user.username);
        // a phone on a WebSocket whose connection is gone is not reachable
        let mut bindings = self.location.lookup(&aor, Now::current().unix_ms);
        bindings.retain(|b| self.can_reach(&b.received));
        if bindings.is_empty() {
            return Err(OriginateError(
                409,
                "not_registered",
                "the user has no registered phone".into(),
            ));
        }
        if self.draining.load(Ordering::SeqCst) {
            return Err(OriginateError(
                503,
                "draining",
                "the node is shutting down".into(),
            ));
        }
        let ep = self
            .endpoint()
            .ok_or_else(|| OriginateError(503, "unavailable", "SIP is not up".into()))?;
        let id = new_call_uuid();
        let ring = std::time::Duration::from_secs(o.ring_timeout.unwrap_or(30).clamp(1, 300));
        let calls = Arc::clone(self);
        let call = id.clone();
        tokio::spawn(async move {
            let rang = ring_user(&calls, &ep, &o, &user.username, &realm, bindings, ring).await;
            let Some((a, resp)) = rang else {
                debug!(call = %call, "click-to-call: the user did not answer");
                return;
            };
            let target = a.flow;
            // the INVITE the user would have sent: its offer, our destination
            let host = host_port(&advertised(&target));
            let ct = resp
                .header("Content-Type")
                .unwrap_or("application/sdp")
                .to_owned();
            let stand_in = RequestBuilder::new("INVITE", &format!("sip:{}@{host}", o.destination))
                .via("UDP", &host, &new_branch())
                .header("Max-Forwards", "70")
                .header(
                    "From",
                    &format!("<sip:{}@{realm}>;tag=orig{}", user.username, a.local_tag),
                )
                .header("To", &format!("<sip:{}@{host}>", o.destination))
                .header("Call-ID", &a.call_id)
                .header("CSeq", "1 INVITE")
                .body(&ct, resp.body.clone())
                .build();
            let Ok(Message::Request(invite)) = parse(&stand_in) else {
                return;
            };
            if !calls.admit(account.id, account.max_concurrent_calls) {
                let mut a = a;
                ep.send_raw(&a.destination(), Bytes::from(a.ack(1, None)));
                let bye = a.request(&Method::Bye, None, &[]);
                let key = TransactionKey::client(&bye.branch, "BYE");
                let _ = ep.send_request(key, false, a.destination(), Bytes::from(bye.bytes));
                return;
            }
            calls.stats.started.fetch_add(1, Ordering::Relaxed);
            calls.spawn_call(
                ep,
                actor::Setup {
                    id: Some(call),
                    invite,
                    tx: None,
                    a_dialog: Some(a),
                    from: target,
                    caller: Caller::user(&user),
                    received: tokio::time::Instant::now(),
                    account_id: account.id,
                    destination: o.destination.clone(),
                    route,
                },
            );
        });
        Ok(id)
    }
}

/// Rings every phone of the user with an INVITE without SDP; returns the
/// dialog of the one that answered and its 2xx (the others are cancelled).
async fn ring_user(
    calls: &Arc<Calls>,
    ep: &Arc<Endpoint>,
    o: &Originate,
    username: &str,
    realm: &str,
    bindings: Vec<crate::location::Binding>,
    ring: std::time::Duration,
) -> Option<(Dialog, Response)> {
    let call_id = new_call_id(None);
    let from_tag = new_tag();
    let to = format!("<sip:{username}@{realm}>");
    let (events, mut rx) = mpsc::channel(16);
    let mut forks: Vec<(Dialog, Request, bool)> = Vec::new();
    for (i, b) in bindings.iter().enumerate() {
        let target = b.received;
        let host = host_port(&advertised(&target));
        let local = format!(
            "\"{}\" <sip:{}@{host}>;tag={from_tag}",
            o.destination, o.destination
        );
        let path = b
            .path
            .as_deref()
            .map(switchboard_sip::message::split_header_values)
            .unwrap_or_default();
        let mut d = Dialog::uac(&call_id, &from_tag, &local, &to, &b.contact, path, target);
        let out = d.invite(None, &[("Allow", ALLOW)]);
        let Ok(Message::Request(inv)) = parse(&out.bytes) else {
            continue;
        };
        let key = TransactionKey::client(&out.branch, "INVITE");
        let mut tx = ep.send_request(key, true, d.destination(), Bytes::from(out.bytes));
        calls.metrics.requests_out.inc("INVITE");
        let events = events.clone();
        tokio::spawn(async move {
            while let Some(ev) = tx.next_event().await {
                let last = !matches!(&ev, ClientEvent::Response(c, _) if *c < 200);
                if events.send((i, ev)).await.is_err() || last {
                    break;
                }
            }
        });
        forks.push((d, inv, false));
    }
    drop(events);
    let deadline = tokio::time::Instant::now() + ring;
    let mut answered = None;
    let mut open = forks.len();
    while open > 0 {
        let ev = tokio::select! {
            ev = rx.recv() => ev,
            () = tokio::time::sleep_until(deadline) => None,
        };
        let Some((i, ev)) = ev else { break };
        match ev {
            ClientEvent::Response(code, _) if code < 200 => forks[i].2 = true,
            ClientEvent::Response(code, bytes) if code < 300 => {
                answered = Some((i, bytes));
                break;
            }
            _ => open -= 1,
        }
    }
    // the other phones stop ringing
    for (j, (d, inv, rang)) in forks.iter().enumerate() {
        if answered.as_ref().is_some_and(|(i, _)| *i == j) || !*rang {
            continue;
        }
        let branch = inv
            .vias
            .first()
            .and_then(|v| v.branch.clone())
            .unwrap_or_default();
        let key = TransactionKey::client(&branch, "CANCEL");
        let _ = ep.send_request(key, false, d.destination(), Bytes::from(cancel_for(inv)));
    }
    let (i, bytes) = answered?;
    let Ok(Message::Response(resp)) = parse(&bytes) else {
        return None;
    };
    let mut a = forks.swap_remove(i).0;
    a.establish(&resp);
    Some((a, resp))
}
