//! New INVITEs and in-dialog requests on their way to a call: the stateless
//! screen, authentication, routing, and the router that finds a call by its
//! dialog.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use switchboard_sip::message::{Method, Request, Response};
use switchboard_sip::response::response;
use switchboard_sip_stack::endpoint::{Endpoint, Screen, server_key};
use switchboard_sip_stack::target::Target;
use switchboard_sip_stack::transaction::ServerTx;
use tokio::sync::mpsc;
use tracing::debug;

use super::actor::{self, Caller};
use super::{CallNote, Calls, Event, LegId, Live, MAILBOX, cdr, unsupported_required};
use crate::auth::{Outcome, Realm, Scope};
use crate::dialplan::Origin;
use crate::registrar::Now;
use crate::trunks::{InboundAuth, Trunk};

impl Calls {
    /// A new INVITE (no To tag).
    pub fn on_invite(self: &Arc<Self>, req: Request, tx: ServerTx, from: Target) {
        let received = tokio::time::Instant::now();
        let Ok(to_uri) = req.to.parsed_uri() else {
            return self.respond(&tx, &req, 400, "Invalid To URI");
        };
        let now = Now::current();
        // A call from a trunk is identified by its source address (over a
        // connection only, with inbound_transport tcp), proven by digest
        // too with inbound_auth digest, and routed only by the routes for
        // trunk calls: a forged source reaches no route a user has.
        let (account, caller, trunk) = if let Some(trunk) =
            self.trunks.by_source(&from.remote, from.transport)
        {
            let Some(account) = self.directory.account(trunk.config.account_id) else {
                return self.respond(&tx, &req, 404, "Account Not Found");
            };
            let caller = match trunk.config.inbound_auth {
                InboundAuth::None => trunk_caller(&req),
                InboundAuth::Digest => {
                    match self.authenticated_caller(&req, &tx, &from, &account, Some(&trunk), now) {
                        Some(c) => c,
                        None => return,
                    }
                }
            };
            debug!(trunk = %trunk.config.name, "call from a trunk");
            (account, caller, Some(trunk))
        } else {
            let Some(account) = self.directory.account_for_domain(&to_uri.host).or_else(|| {
                self.directory
                    .account(switchboard_store::DEFAULT_ACCOUNT_ID)
            }) else {
                return self.respond(&tx, &req, 404, "Domain Not Served");
            };
            match self.authenticated_caller(&req, &tx, &from, &account, None, now) {
                Some(c) => (account, c, None),
                None => return,
            }
        };
        let origin = match &trunk {
            Some(t) => Origin::Trunk(&t.config.name),
            None => Origin::User,
        };
        self.route_call(req, tx, from, account, caller, origin, received);
    }

    /// A new INVITE before its transaction exists: one requiring an
    /// extension we lack gets 420 statelessly; one from a user without
    /// credentials gets its 407 statelessly, like the registrar's 401 (no
    /// 100 Trying, no Timer G resends, no table entry; a retransmission is
    /// challenged again and the ACK is absorbed by the endpoint through
    /// `tag`), and a blocked source its 403 or silence. Trunk calls and
    /// INVITEs with credentials go on to [`Calls::on_invite`].
    pub fn screen_invite(&self, req: &Request, from: &Target, tag: &str) -> Screen {
        // §8.2.2.3: an extension we lack is refused before anything else
        if let Some(bad) = unsupported_required(req) {
            let b = response(req, 420, "Bad Extension")
                .to_tag(tag)
                .header("Unsupported", &bad)
                .build();
            self.metrics.responses_out.inc(420);
            return Screen::Reply(420, Bytes::from(b));
        }
        if self
            .trunks
            .by_source(&from.remote, from.transport)
            .is_some()
        {
            return Screen::Accept;
        }
        let Some(account) = req.to.parsed_uri().ok().and_then(|u| {
            self.directory.account_for_domain(&u.host).or_else(|| {
                self.directory
                    .account(switchboard_store::DEFAULT_ACCOUNT_ID)
            })
        }) else {
            return Screen::Accept;
        };
        let now = Now::current();
        let source = from.remote.ip();
        let (code, bytes) =
            match self
                .auth
                .screen::<()>(req, Realm::Proxy, &account.realm, source, now)
            {
                None | Some(Outcome::Ok(())) => return Screen::Accept,
                Some(Outcome::Drop) => return Screen::Drop,
                Some(Outcome::Challenge { stale }) => {
                    let mut b = response(req, 407, "Proxy Authentication Required").to_tag(tag);
                    for c in self
                        .auth
                        .challenges(&account.realm, stale, now.unix_secs(), source)
                    {
                        b = b.header("Proxy-Authenticate", &c);
                    }
                    (407, b.build())
                }
                Some(Outcome::Forbidden(reason)) => {
                    (403, response(req, 403, reason).to_tag(tag).build())
                }
            };
        self.metrics.responses_out.inc(code);
        Screen::Reply(code, Bytes::from(bytes))
    }

    /// The caller an INVITE's Proxy-Authorization proves — a local user of
    /// `account`, or with `trunk` that trunk's inbound credentials — or
    /// `None` once the request has been answered (407, 403) or dropped.
    fn authenticated_caller(
        &self,
        req: &Request,
        tx: &ServerTx,
        from: &Target,
        account: &crate::directory::AccountEntry,
        trunk: Option<&Trunk>,
        now: Now,
    ) -> Option<Caller> {
        let source = from.remote.ip();
        let outcome = match trunk {
            None => self
                .auth
                .authenticate(req, Realm::Proxy, account, &self.directory, source, now)
                .map(|u| Caller::user(&u)),
            Some(t) => self
                .auth
                .authenticate_with(
                    req,
                    Realm::Proxy,
                    &account.realm,
                    Scope::Trunk(&t.config.name),
                    source,
                    now,
                    |username| t.inbound_secret(username, &account.realm),
                )
                .map(|_| trunk_caller(req)),
        };
        match outcome {
            Outcome::Ok(c) => Some(c),
            Outcome::Challenge { stale } => {
                let mut b = response(req, 407, "Proxy Authentication Required");
                for c in self
                    .auth
                    .challenges(&account.realm, stale, now.unix_secs(), source)
                {
                    b = b.header("Proxy-Authenticate", &c);
                }
                self.respond_bytes(tx, 407, b.build());
                None
            }
            Outcome::Forbidden(reason) => {
                self.respond(tx, req, 403, reason);
                None
            }
            Outcome::Drop => None,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn route_call(
        self: &Arc<Self>,
        req: Request,
        tx: ServerTx,
        from: Target,
        account: Arc<crate::directory::AccountEntry>,
        caller: Caller,
        origin: Origin<'_>,
        received: tokio::time::Instant,
    ) {
        if self.draining.load(Ordering::SeqCst) {
            let b = response(&req, 503, "Service Unavailable")
                .header("Retry-After", "30")
                .build();
            return self.respond_bytes(&tx, 503, b);
        }
        let max = self.limits.max_calls;
        if max > 0 && self.live_count() >= max {
            self.router.over_capacity.fetch_add(1, Ordering::Relaxed);
            let b = response(&req, 503, "Service Unavailable")
                .header("Retry-After", "5")
                .build();
            return self.respond_bytes(&tx, 503, b);
        }
        let destination = req.uri.user.clone().unwrap_or_else(|| req.uri.host.clone());
        let dialplan = self.dialplan();
        let Some(mut route) = dialplan
            .route_for(&destination, account.id, origin)
            .cloned()
        else {
            self.respond(&tx, &req, 404, "Not Found");
            // an authenticated call that no route takes still leaves a CDR
            self.stats.started.fetch_add(1, Ordering::Relaxed);
            self.stats.failed.fetch_add(1, Ordering::Relaxed);
            self.cdrs.send_or_drop(cdr::unrouted(
                &req,
                &from,
                account.id,
                &caller,
                destination,
                &self.node,
            ));
            return;
        };
        let Some(endpoint) = self.endpoint() else {
            return self.respond(&tx, &req, 503, "Service Unavailable");
        };
        if !self.admit(account.id, account.max_concurrent_calls) {
            let code = self.limit_code;
            let reason = if code == 486 {
                "Busy Here"
            } else {
                "Service Unavailable"
            };
            debug!(account = account.id, "max_concurrent_calls reached");
            return self.respond(&tx, &req, code, reason);
        }
        // an account that requires SRTP requires it of its phones on every
        // route (calls in from its trunks keep the route's setting: a
        // provider's plain RTP is not the account's phones' choice)
        if account.srtp == crate::dialplan::Srtp::Required && origin == Origin::User {
            route.srtp = crate::dialplan::Srtp::Required;
        }
        self.stats.started.fetch_add(1, Ordering::Relaxed);
        self.spawn_call(
            endpoint,
            actor::Setup {
                id: None,
                invite: req,
                tx: Some(tx),
                a_dialog: None,
                from,
                caller,
                received,
                account_id: account.id,
                destination,
                route,
            },
        );
    }

    /// Starts a call's actor: its mailbox, its routes, its live entry.
    pub(super) fn spawn_call(self: &Arc<Self>, endpoint: Arc<Endpoint>, setup: actor::Setup) {
        let (mailbox, rx) = mpsc::channel(MAILBOX);
        let call = actor::Call::new(Arc::clone(self), endpoint, setup, mailbox.clone());
        let (call_id, tag) = call.a_dialog_key();
        self.add_dialog(&call_id, &tag, &mailbox, LegId::A);
        if let Some(key) = call.a_invite_key() {
            self.add_invite(&key, &mailbox);
        }
        if let Ok(v) = call.view().lock() {
            self.note(CallNote::Changed(v.clone()));
        }
        if let Ok(mut live) = self.live.lock() {
            live.insert(
                call.id().to_owned(),
                Live {
                    view: call.view(),
                    mailbox,
                    manager: None,
                },
            );
        }
        tokio::spawn(call.run(rx));
    }

    pub(super) fn respond(&self, tx: &ServerTx, req: &Request, code: u16, reason: &str) {
        self.respond_bytes(tx, code, response(req, code, reason).build());
    }

    pub(super) fn respond_bytes(&self, tx: &ServerTx, code: u16, bytes: Vec<u8>) {
        self.metrics.responses_out.inc(code);
        tx.respond(code, Bytes::from(bytes));
    }

    /// A request with a To tag, or a CANCEL: it belongs to a call's dialog
    /// (by Call-ID and our tag) or to the INVITE it cancels (by branch).
    /// Returns the request back when it belongs to no call (the caller
    /// answers 481 or ignores an ACK).
    pub fn on_dialog_request(
        &self,
        req: Request,
        tx: Option<ServerTx>,
        from: Target,
    ) -> Option<(Request, Option<ServerTx>)> {
        let route = match req.to.tag() {
            Some(tag) => self.dialog_route(&req.call_id, tag),
            None if req.method == Method::Cancel => {
                let key = server_key(&req, from.transport).cancelled_invite();
                key.and_then(|k| self.invites.lock().ok()?.get(&k).cloned())
            }
            None => None,
        };
        let Some(r) = route else {
            self.router.no_dialog.fetch_add(1, Ordering::Relaxed);
            return Some((req, tx));
        };
        let ev = Event::Request {
            leg: r.leg,
            req: Box::new(req),
            tx,
        };
        match r.mailbox.try_send(ev) {
            Ok(()) => None,
            Err(mpsc::error::TrySendError::Full(Event::Request { req, tx, .. })) => {
                // a peer flooding one call: refuse, never queue without end
                self.router.mailbox_full.fetch_add(1, Ordering::Relaxed);
                if let Some(tx) = &tx {
                    let b = response(&req, 503, "Service Unavailable")
                        .header("Retry-After", "1")
                        .build();
                    self.respond_bytes(tx, 503, b);
                }
                None
            }
            Err(mpsc::error::TrySendError::Closed(Event::Request { req, tx, .. })) => {
                Some((*req, tx))
            }
            Err(_) => None,
        }
    }

    /// A response no transaction wanted (a 2xx retransmitted because our
    /// ACK was lost): it belongs to the dialog named by its From tag (ours,
    /// as we sent the request).
    pub fn on_stray_response(&self, resp: Response) {
        let Some(tag) = resp.from.tag() else {
            return;
        };
        if let Some(r) = self.dialog_route(&resp.call_id, tag) {
            let leg = r.leg;
            let _ = r.mailbox.try_send(Event::StrayResponse {
                leg,
                resp: Box::new(resp),
            });
        }
    }
}

/// A caller coming in from a trunk: the number in its From.
fn trunk_caller(req: &Request) -> Caller {
    let number = req
        .from
        .parsed_uri()
        .ok()
        .and_then(|u| u.user)
        .unwrap_or_else(|| "anonymous".into());
    Caller {
        id: number,
        name: None,
        user: None,
    }
}
