//! The back-to-back user agent: every INVITE from a local user becomes a
//! call with an A-leg (the caller's dialog, where we are the UAS) and the
//! B-legs the dialplan creates (where we are the UAC).
//!
//! Each call is one tokio task (an actor) that owns all of its state and
//! reads one mailbox: requests and responses of its legs, client
//! transaction events, the dial timer and API commands. The only shared
//! state is the table that maps a leg's Call-ID to the call's mailbox, so
//! the SIP core can route an in-dialog request without touching the call.
//!
//! Media is not anchored yet: SDP is carried from leg to leg unchanged.

mod actor;
pub mod dialog;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};

use bytes::Bytes;
use serde::Serialize;
use switchboard_sip::message::{Request, Response};
use switchboard_sip::response::response;
use switchboard_sip_stack::endpoint::Endpoint;
use switchboard_sip_stack::target::Target;
use switchboard_sip_stack::transaction::ServerTx;
use switchboard_store::{Cdr, Store};
use tokio::sync::mpsc;
use tracing::{debug, warn};

use crate::auth::{Authenticator, Outcome, Realm};
use crate::dialplan::Dialplan;
use crate::directory::Directory;
use crate::location::Location;
use crate::metrics::SipMetrics;
use crate::registrar::Now;

pub use actor::CallView;

/// What a call's mailbox receives.
#[derive(Debug)]
pub(crate) enum Event {
    /// A request inside one of the call's dialogs (or a CANCEL for the
    /// A-leg's INVITE); `tx` is `None` for an ACK.
    Request {
        leg: LegId,
        req: Box<Request>,
        tx: Option<ServerTx>,
    },
    /// A 2xx that matched no transaction: the far end did not get our ACK.
    StrayResponse { leg: LegId, resp: Box<Response> },
    /// An event of a client transaction the call started.
    Client { id: u64, code: u16, bytes: Bytes },
    /// A client transaction ended without a final response (timeout or
    /// transport error).
    ClientFailed { id: u64, code: u16 },
    /// The API asked to end the call.
    Hangup,
}

/// Which leg of a call a message belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LegId {
    A,
    B(usize),
}

#[derive(Clone)]
struct Route {
    mailbox: mpsc::UnboundedSender<Event>,
    leg: LegId,
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct CallStats {
    pub started: AtomicU64,
    pub answered: AtomicU64,
    pub failed: AtomicU64,
    pub cdr_write_failures: AtomicU64,
}

/// Everything the B2BUA shares between calls.
pub struct Calls {
    directory: Arc<Directory>,
    location: Arc<Location>,
    auth: Arc<Authenticator>,
    metrics: Arc<SipMetrics>,
    dialplan: RwLock<Arc<Dialplan>>,
    endpoint: std::sync::OnceLock<Weak<Endpoint>>,
    routes: Mutex<HashMap<String, Route>>,
    live: Mutex<HashMap<String, Arc<Mutex<CallView>>>>,
    node: String,
    pub stats: CallStats,
    /// CDRs the store refused (database down): retried by the writer.
    cdr_queue: mpsc::UnboundedSender<Cdr>,
}

impl Calls {
    pub fn new(
        directory: Arc<Directory>,
        location: Arc<Location>,
        auth: Arc<Authenticator>,
        store: Store,
        metrics: Arc<SipMetrics>,
        dialplan: Dialplan,
        node: String,
    ) -> Arc<Self> {
        let (cdr_queue, rx) = mpsc::unbounded_channel();
        let calls = Arc::new(Self {
            directory,
            location,
            auth,
            metrics,
            dialplan: RwLock::new(Arc::new(dialplan)),
            endpoint: std::sync::OnceLock::new(),
            routes: Mutex::new(HashMap::new()),
            live: Mutex::new(HashMap::new()),
            node,
            stats: CallStats::default(),
            cdr_queue,
        });
        tokio::spawn(cdr_writer(store, rx, Arc::downgrade(&calls)));
        calls
    }

    /// Connects the B2BUA to the endpoint it sends through.
    pub fn set_endpoint(&self, ep: &Arc<Endpoint>) {
        let _ = self.endpoint.set(Arc::downgrade(ep));
    }

    fn endpoint(&self) -> Option<Arc<Endpoint>> {
        self.endpoint.get().and_then(Weak::upgrade)
    }

    /// The dialplan in use.
    pub fn dialplan(&self) -> Arc<Dialplan> {
        match self.dialplan.read() {
            Ok(d) => Arc::clone(&d),
            Err(p) => Arc::clone(&p.into_inner()),
        }
    }

    /// Replaces the dialplan; calls in progress keep the one they started with.
    pub fn set_dialplan(&self, d: Dialplan) {
        match self.dialplan.write() {
            Ok(mut g) => *g = Arc::new(d),
            Err(p) => *p.into_inner() = Arc::new(d),
        }
    }

    /// Live calls, for the API.
    pub fn list(&self) -> Vec<CallView> {
        let live = self
            .live
            .lock()
            .map(|l| l.values().cloned().collect::<Vec<_>>());
        let mut out: Vec<CallView> = live
            .unwrap_or_default()
            .iter()
            .filter_map(|c| c.lock().ok().map(|v| v.clone()))
            .collect();
        out.sort_by_key(|c| c.invite_at);
        out
    }

    pub fn get(&self, id: &str) -> Option<CallView> {
        let live = self.live.lock().ok()?;
        let c = live.get(id)?;
        c.lock().ok().map(|v| v.clone())
    }

    /// Asks a live call to end. False if there is no such call.
    pub fn hangup(&self, id: &str) -> bool {
        let route = self.routes.lock().ok().and_then(|r| r.get(id).cloned());
        match route {
            Some(r) => r.mailbox.send(Event::Hangup).is_ok(),
            None => false,
        }
    }

    pub fn live_count(&self) -> usize {
        self.live.lock().map(|l| l.len()).unwrap_or(0)
    }

    fn route(&self, call_id: &str) -> Option<Route> {
        self.routes.lock().ok()?.get(call_id).cloned()
    }

    fn add_route(&self, call_id: &str, mailbox: &mpsc::UnboundedSender<Event>, leg: LegId) {
        if let Ok(mut r) = self.routes.lock() {
            r.insert(
                call_id.to_owned(),
                Route {
                    mailbox: mailbox.clone(),
                    leg,
                },
            );
        }
    }

    fn remove_route(&self, call_id: &str) {
        if let Ok(mut r) = self.routes.lock() {
            r.remove(call_id);
        }
    }

    /// A new INVITE (no To tag).
    pub fn on_invite(self: &Arc<Self>, req: Request, tx: ServerTx, from: Target) {
        // A retransmission would have been absorbed; a second INVITE for a
        // call we already have (same Call-ID, new branch) is a merged
        // request the endpoint answers 482.
        let Ok(to_uri) = req.to.parsed_uri() else {
            return self.respond(&tx, &req, 400, "Invalid To URI");
        };
        let Some(account) = self.directory.account_for_domain(&to_uri.host).or_else(|| {
            self.directory
                .account(switchboard_store::DEFAULT_ACCOUNT_ID)
        }) else {
            return self.respond(&tx, &req, 404, "Domain Not Served");
        };
        let now = Now::current();
        let user = match self.auth.authenticate(
            &req,
            Realm::Proxy,
            &account,
            &self.directory,
            from.remote.ip(),
            now,
        ) {
            Outcome::Ok(u) => u,
            Outcome::Challenge { stale } => {
                let mut b = response(&req, 407, "Proxy Authentication Required");
                for c in self.auth.challenges(&account.realm, stale, now.unix_secs()) {
                    b = b.header("Proxy-Authenticate", &c);
                }
                return self.respond_bytes(&tx, 407, b.build());
            }
            Outcome::Forbidden(reason) => return self.respond(&tx, &req, 403, reason),
            Outcome::Drop => return,
        };
        let destination = req.uri.user.clone().unwrap_or_else(|| req.uri.host.clone());
        let dialplan = self.dialplan();
        let Some(route) = dialplan.route(&destination, account.id).cloned() else {
            return self.respond(&tx, &req, 404, "Not Found");
        };
        let Some(endpoint) = self.endpoint() else {
            return self.respond(&tx, &req, 503, "Service Unavailable");
        };
        self.stats.started.fetch_add(1, Ordering::Relaxed);
        let (mailbox, rx) = mpsc::unbounded_channel();
        self.add_route(&req.call_id, &mailbox, LegId::A);
        let call = actor::Call::new(
            Arc::clone(self),
            endpoint,
            actor::Setup {
                invite: req,
                tx,
                from,
                caller: user,
                account_id: account.id,
                destination,
                route,
            },
            mailbox,
        );
        if let Ok(mut live) = self.live.lock() {
            live.insert(call.id().to_owned(), call.view());
        }
        tokio::spawn(call.run(rx));
    }

    fn respond(&self, tx: &ServerTx, req: &Request, code: u16, reason: &str) {
        self.respond_bytes(tx, code, response(req, code, reason).build());
    }

    fn respond_bytes(&self, tx: &ServerTx, code: u16, bytes: Vec<u8>) {
        self.metrics.responses_out.inc(code);
        tx.respond(code, Bytes::from(bytes));
    }

    /// A request with a To tag, or a CANCEL: belongs to a call's dialog.
    /// Returns the request back when no call has this Call-ID.
    pub fn on_dialog_request(
        &self,
        req: Request,
        tx: Option<ServerTx>,
        _from: Target,
    ) -> Option<(Request, Option<ServerTx>)> {
        match self.route(&req.call_id) {
            Some(r) => {
                let leg = r.leg;
                if let Err(mpsc::error::SendError(Event::Request { req, tx, .. })) =
                    r.mailbox.send(Event::Request {
                        leg,
                        req: Box::new(req),
                        tx,
                    })
                {
                    return Some((*req, tx));
                }
                None
            }
            None => Some((req, tx)),
        }
    }

    /// A response no transaction wanted (a 2xx retransmitted because our
    /// ACK was lost).
    pub fn on_stray_response(&self, resp: Response) {
        if let Some(r) = self.route(&resp.call_id) {
            let leg = r.leg;
            let _ = r.mailbox.send(Event::StrayResponse {
                leg,
                resp: Box::new(resp),
            });
        }
    }

    /// The call ended: forget its routes, keep its CDR.
    fn finished(&self, id: &str, call_ids: &[String], cdr: Cdr) {
        for c in call_ids {
            self.remove_route(c);
        }
        if let Ok(mut live) = self.live.lock() {
            live.remove(id);
        }
        if cdr.disposition == "answered" {
            self.stats.answered.fetch_add(1, Ordering::Relaxed);
        } else {
            self.stats.failed.fetch_add(1, Ordering::Relaxed);
        }
        let _ = self.cdr_queue.send(cdr);
    }

    pub fn node(&self) -> &str {
        &self.node
    }
}

/// Writes CDRs in order; when the store fails, keeps them and retries
/// with back-off, so a database outage loses none.
async fn cdr_writer(store: Store, mut rx: mpsc::UnboundedReceiver<Cdr>, calls: Weak<Calls>) {
    let mut backoff = std::time::Duration::from_millis(200);
    while let Some(cdr) = rx.recv().await {
        loop {
            match store.insert_cdr(&cdr).await {
                Ok(_) => {
                    backoff = std::time::Duration::from_millis(200);
                    break;
                }
                Err(e) => {
                    if let Some(c) = calls.upgrade() {
                        c.stats.cdr_write_failures.fetch_add(1, Ordering::Relaxed);
                    }
                    warn!(call_id = %cdr.call_id, cause = %e, "CDR not written yet; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(std::time::Duration::from_secs(10));
                }
            }
        }
    }
    debug!("CDR writer stopped");
}

/// Formats a source for the CDR: `udp:127.0.0.1:5070`.
pub(crate) fn source_text(t: &Target) -> String {
    crate::location::format_received(t)
}

/// A call as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct LegView {
    pub leg: String,
    pub call_id: String,
    pub target: String,
    pub state: String,
}
