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

use crate::auth::{Authenticator, Outcome, Realm, Scope};
use crate::dialplan::{Dialplan, Origin};
use crate::directory::Directory;
use crate::location::Location;
use crate::media::MediaPool;
use crate::metrics::SipMetrics;
use crate::registrar::Now;
use crate::trunks::{InboundAuth, Trunk, Trunks};

pub use actor::CallView;
use actor::Caller;

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
    /// Move the call's media off this RTP manager (aggressive drain).
    Migrate { from: String },
    /// An event of one of the call's media sessions.
    Media { session: String, event: MediaEvent },
}

/// What a call hears from its RTP manager.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum MediaEvent {
    Dtmf(char),
    RtpTimeout,
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

/// Upper bounds of the call-setup histogram buckets, microseconds.
pub const SETUP_BUCKETS_US: [u64; 10] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000,
];

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct CallStats {
    pub started: AtomicU64,
    pub answered: AtomicU64,
    pub failed: AtomicU64,
    pub cdr_write_failures: AtomicU64,
    /// INVITE in → first B-leg INVITE out, cumulative per bucket of
    /// [`SETUP_BUCKETS_US`], then the overflow bucket.
    pub setup: [AtomicU64; SETUP_BUCKETS_US.len() + 1],
    pub setup_sum_us: AtomicU64,
}

impl CallStats {
    pub(crate) fn record_setup(&self, us: u64) {
        let i = SETUP_BUCKETS_US
            .iter()
            .position(|b| us <= *b)
            .unwrap_or(SETUP_BUCKETS_US.len());
        self.setup[i].fetch_add(1, Ordering::Relaxed);
        self.setup_sum_us.fetch_add(us, Ordering::Relaxed);
    }

    /// Prometheus text for the call counters and the setup histogram.
    pub fn render(&self, out: &mut String, live: usize) {
        use std::fmt::Write;
        let c = |a: &AtomicU64| a.load(Ordering::Relaxed);
        for (name, help, v) in [
            (
                "switchboard_calls_started_total",
                "Calls routed (authenticated INVITEs).",
                c(&self.started),
            ),
            (
                "switchboard_calls_answered_total",
                "Calls that were answered.",
                c(&self.answered),
            ),
            (
                "switchboard_calls_failed_total",
                "Calls that ended unanswered.",
                c(&self.failed),
            ),
            (
                "switchboard_cdr_write_failures_total",
                "CDR writes the store refused (retried).",
                c(&self.cdr_write_failures),
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP switchboard_calls_live Calls in progress.\n# TYPE switchboard_calls_live gauge\nswitchboard_calls_live {live}"
        );
        let name = "switchboard_call_setup_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} INVITE received to first B-leg INVITE sent.\n# TYPE {name} histogram"
        );
        let mut cum = 0;
        for (i, b) in SETUP_BUCKETS_US.iter().enumerate() {
            cum += c(&self.setup[i]);
            let _ = writeln!(out, "{name}_bucket{{le=\"{}\"}} {cum}", *b as f64 / 1e6);
        }
        cum += c(&self.setup[SETUP_BUCKETS_US.len()]);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cum}");
        let _ = writeln!(out, "{name}_sum {}", c(&self.setup_sum_us) as f64 / 1e6);
        let _ = writeln!(out, "{name}_count {cum}");
    }
}

/// Everything the B2BUA shares between calls.
pub struct Calls {
    directory: Arc<Directory>,
    location: Arc<Location>,
    auth: Arc<Authenticator>,
    pub(crate) trunks: Arc<Trunks>,
    metrics: Arc<SipMetrics>,
    dialplan: RwLock<Arc<Dialplan>>,
    endpoint: std::sync::OnceLock<Weak<Endpoint>>,
    routes: Mutex<HashMap<String, Route>>,
    live: Mutex<HashMap<String, Arc<Mutex<CallView>>>>,
    node: String,
    /// What an account over its `max_concurrent_calls` gets: 503 or 486.
    limit_code: u16,
    /// Live calls per account.
    active: Mutex<HashMap<i64, i64>>,
    /// Set at shutdown: new calls get 503, live ones may finish.
    draining: std::sync::atomic::AtomicBool,
    pub stats: CallStats,
    /// CDRs the store refused (database down): retried by the writer.
    cdr_queue: mpsc::UnboundedSender<Cdr>,
    /// The RTP managers media is anchored on.
    pub(crate) media: Arc<MediaPool>,
}

/// What the B2BUA is built from.
pub struct CallsSetup {
    pub directory: Arc<Directory>,
    pub location: Arc<Location>,
    pub auth: Arc<Authenticator>,
    pub trunks: Arc<Trunks>,
    pub store: Store,
    pub metrics: Arc<SipMetrics>,
    pub dialplan: Dialplan,
    /// This node's name in CDRs.
    pub node: String,
    /// What a call over its account's limit gets (503 or 486).
    pub limit_code: u16,
    pub media: Arc<MediaPool>,
}

impl Calls {
    pub fn new(setup: CallsSetup) -> Arc<Self> {
        let CallsSetup {
            directory,
            location,
            auth,
            trunks,
            store,
            metrics,
            dialplan,
            node,
            limit_code,
            media,
        } = setup;
        let (cdr_queue, rx) = mpsc::unbounded_channel();
        let calls = Arc::new(Self {
            directory,
            location,
            auth,
            trunks,
            metrics,
            dialplan: RwLock::new(Arc::new(dialplan)),
            endpoint: std::sync::OnceLock::new(),
            routes: Mutex::new(HashMap::new()),
            live: Mutex::new(HashMap::new()),
            node,
            limit_code,
            active: Mutex::new(HashMap::new()),
            draining: std::sync::atomic::AtomicBool::new(false),
            stats: CallStats::default(),
            cdr_queue,
            media,
        });
        tokio::spawn(cdr_writer(store, rx, Arc::downgrade(&calls)));
        calls
    }

    /// Connects the B2BUA to the endpoint it sends through.
    pub fn set_endpoint(&self, ep: &Arc<Endpoint>) {
        let _ = self.endpoint.set(Arc::downgrade(ep));
    }

    pub(crate) fn endpoint(&self) -> Option<Arc<Endpoint>> {
        self.endpoint.get().and_then(Weak::upgrade)
    }

    /// Our SIP socket for sending to `remote` (same address family).
    pub(crate) fn local_for(&self, remote: &std::net::SocketAddr) -> Option<std::net::SocketAddr> {
        let ep = self.endpoint()?;
        let addrs = ep.wire.transports()?.local_addrs();
        addrs.into_iter().find(|a| a.is_ipv4() == remote.is_ipv4())
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

    /// Asks every live call anchored on `manager` to move to another one;
    /// returns how many calls were asked.
    pub fn migrate_from(&self, manager: &str) -> usize {
        let Ok(routes) = self.routes.lock() else {
            return 0;
        };
        routes
            .values()
            .filter(|r| r.leg == LegId::A)
            .filter(|r| {
                r.mailbox
                    .send(Event::Migrate {
                        from: manager.to_owned(),
                    })
                    .is_ok()
            })
            .count()
    }

    /// Stops taking new calls (they get 503); live calls go on.
    pub fn drain(&self) {
        self.draining.store(true, Ordering::SeqCst);
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
        let destination = req.uri.user.clone().unwrap_or_else(|| req.uri.host.clone());
        let dialplan = self.dialplan();
        let Some(route) = dialplan
            .route_for(&destination, account.id, origin)
            .cloned()
        else {
            self.respond(&tx, &req, 404, "Not Found");
            // an authenticated call that no route takes still leaves a CDR
            self.stats.started.fetch_add(1, Ordering::Relaxed);
            let now = Now::current().unix_ms;
            let cdr = Cdr {
                id: 0,
                call_id: req.call_id.clone(),
                account_id: Some(account.id),
                caller: caller.id.clone(),
                callee: destination,
                caller_name: req
                    .from
                    .display
                    .as_deref()
                    .map(|d| d.trim_matches('"').to_owned()),
                source: source_text(&from),
                invite_at: now,
                ring_at: None,
                answer_at: None,
                end_at: Some(now),
                ring_ms: None,
                talk_ms: None,
                disposition: "failed".into(),
                hangup_code: Some(404),
                hangup_reason: Some("No Route".into()),
                hangup_side: Some("system".into()),
                route_id: None,
                route: None,
                caller_user: caller.user.clone(),
                callee_user: None,
                node: Some(self.node.clone()),
                rtp_sent: None,
                rtp_received: None,
                rtp_lost: None,
                jitter_ms: None,
                mos: None,
                rtpmanager: None,
                created_at: 0,
            };
            self.stats.failed.fetch_add(1, Ordering::Relaxed);
            let _ = self.cdr_queue.send(cdr);
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
        self.stats.started.fetch_add(1, Ordering::Relaxed);
        let (mailbox, rx) = mpsc::unbounded_channel();
        self.add_route(&req.call_id, &mailbox, LegId::A);
        let call = actor::Call::new(
            Arc::clone(self),
            endpoint,
            actor::Setup {
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

    /// Counts a new call of `account` unless it is at its limit (0: none).
    fn admit(&self, account: i64, max: i64) -> bool {
        let Ok(mut active) = self.active.lock() else {
            return true;
        };
        let n = active.entry(account).or_insert(0);
        if max > 0 && *n >= max {
            return false;
        }
        *n += 1;
        true
    }

    /// The call ended: forget its routes, keep its CDR.
    fn finished(&self, id: &str, call_ids: &[String], cdr: Cdr) {
        if let (Ok(mut active), Some(account)) = (self.active.lock(), cdr.account_id)
            && let Some(n) = active.get_mut(&account)
        {
            *n -= 1;
            if *n <= 0 {
                active.remove(&account);
            }
        }
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

impl Calls {
    /// Keeps `trunk` registered with its provider while it is configured
    /// with `register` (refresh at 80 % of the granted interval, back-off
    /// after failures); its status is in [`crate::trunks::Trunk::status`].
    pub fn start_trunk_registration(
        self: &Arc<Self>,
        trunk: Arc<crate::trunks::Trunk>,
        shutdown: tokio_util::sync::CancellationToken,
    ) {
        if !trunk.config.register {
            return;
        }
        let calls = Arc::downgrade(self);
        tokio::spawn(async move {
            let call_id = switchboard_sip::request::new_call_id(None);
            let mut cseq = 1u32;
            loop {
                let Some(c) = calls.upgrade() else {
                    return;
                };
                let wait = match c.register_trunk(&trunk, &call_id, &mut cseq).await {
                    Ok(granted) => {
                        if let Ok(mut st) = trunk.status.lock() {
                            st.registered = true;
                            st.failures = 0;
                            st.last_error = None;
                            st.expires_at =
                                Some(Now::current().unix_ms + i64::from(granted) * 1000);
                        }
                        std::time::Duration::from_secs(u64::from(granted.max(10)) * 4 / 5)
                    }
                    Err((code, why)) => {
                        let failures = trunk.status.lock().map_or(1, |mut st| {
                            st.registered = false;
                            st.failures = st.failures.saturating_add(1);
                            st.last_code = code.or(st.last_code);
                            st.last_error = Some(why.clone());
                            st.failures
                        });
                        warn!(trunk = %trunk.config.name, %why, "trunk registration failed");
                        crate::trunks::backoff(failures.saturating_sub(1))
                    }
                };
                drop(c);
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    () = trunk.stop.cancelled() => return,
                    () = shutdown.cancelled() => return,
                }
            }
        });
    }

    /// One REGISTER exchange with a trunk (answering one challenge);
    /// returns the granted interval.
    async fn register_trunk(
        &self,
        trunk: &crate::trunks::Trunk,
        call_id: &str,
        cseq: &mut u32,
    ) -> Result<u32, (Option<u16>, String)> {
        use switchboard_sip::message::{Message, parse};
        use switchboard_sip::request::{RequestBuilder, new_branch};
        let ep = self
            .endpoint()
            .ok_or((None, "no SIP endpoint".to_owned()))?;
        let local = self.local_for(&trunk.addr).ok_or((
            None,
            "no SIP socket of the trunk's address family".to_owned(),
        ))?;
        let target = Target {
            transport: trunk.transport,
            local,
            remote: trunk.addr,
            conn: None,
        };
        let cfg = &trunk.config;
        let user = cfg.username.clone().unwrap_or_default();
        let domain = cfg.domain();
        let uri = format!("sip:{domain}");
        let aor = format!("<sip:{user}@{domain}>");
        let contact = format!(
            "<sip:{user}@{}>",
            dialog::host_port(&dialog::advertised(&target))
        );
        let from_tag = format!("{:x}", rand::random::<u64>());
        let mut auth: Option<(&'static str, String)> = None;
        for _attempt in 0..2 {
            let branch = new_branch();
            let mut b = RequestBuilder::new("REGISTER", &uri)
                .via(
                    dialog::transport_name(target.transport),
                    &dialog::host_port(&dialog::advertised(&target)),
                    &branch,
                )
                .header("Max-Forwards", "70")
                .header("From", &format!("{aor};tag={from_tag}"))
                .header("To", &aor)
                .header("Call-ID", call_id)
                .header("CSeq", &format!("{cseq} REGISTER"))
                .header("Contact", &contact)
                .header("Expires", &cfg.expires.to_string())
                .header("User-Agent", "switchboard");
            if let Some((name, value)) = &auth {
                b = b.header(name, value);
            }
            *cseq += 1;
            let key =
                switchboard_sip_stack::transaction::TransactionKey::client(&branch, "REGISTER");
            let mut tx = ep.send_request(key, false, target, Bytes::from(b.build()));
            self.metrics.requests_out.inc("REGISTER");
            let (code, bytes) = loop {
                match tx.next_event().await {
                    Some(switchboard_sip_stack::transaction::ClientEvent::Response(
                        code,
                        bytes,
                    )) if code >= 200 => {
                        break (code, bytes);
                    }
                    Some(switchboard_sip_stack::transaction::ClientEvent::Response(..)) => {}
                    Some(_) | None => return Err((None, "no answer from the trunk".to_owned())),
                }
            };
            if let Ok(mut st) = trunk.status.lock() {
                st.last_code = Some(code);
            }
            let Ok(Message::Response(resp)) = parse(&bytes) else {
                return Err((Some(code), "unparsable response".to_owned()));
            };
            match code {
                200..=299 => {
                    let granted = resp
                        .header_values("Contact")
                        .iter()
                        .find_map(|c| {
                            c.split(';')
                                .find_map(|p| p.trim().strip_prefix("expires="))
                                .and_then(|v| v.trim().parse::<u32>().ok())
                        })
                        .or_else(|| resp.header("Expires").and_then(|v| v.trim().parse().ok()))
                        .unwrap_or(cfg.expires);
                    return Ok(granted);
                }
                401 | 407 if auth.is_none() => {
                    let password = cfg.password.as_deref().unwrap_or_default();
                    match dialog::answer_challenge(&resp, "REGISTER", &uri, &user, password) {
                        Some(answer) => auth = Some(answer),
                        None => {
                            return Err((
                                Some(code),
                                "challenge without a usable digest".to_owned(),
                            ));
                        }
                    }
                }
                _ => return Err((Some(code), format!("{code} {}", resp.reason))),
            }
        }
        Err((None, "credentials refused".to_owned()))
    }
}

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
    /// call id (the Call-ID towards the user) at once; the ringing happens
    /// in the background.
    pub fn originate(self: &Arc<Self>, o: Originate) -> Result<String, OriginateError> {
        use switchboard_sip::request::{RequestBuilder, cancel_for, new_branch, new_call_id};
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
        let bindings = self.location.lookup(&aor, Now::current().unix_ms);
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
        let call_id = new_call_id(None);
        let from_tag = format!("{:016x}", rand::random::<u64>());
        let to = format!("<sip:{}@{realm}>", user.username);
        let ring = std::time::Duration::from_secs(o.ring_timeout.unwrap_or(30).clamp(1, 300));
        let calls = Arc::clone(self);
        let id = call_id.clone();
        tokio::spawn(async move {
            let received = tokio::time::Instant::now();
            let (events, mut rx) = mpsc::unbounded_channel();
            let mut forks = Vec::new();
            for (i, b) in bindings.iter().enumerate() {
                let target = b.received;
                let host = dialog::host_port(&dialog::advertised(&target));
                let local = format!(
                    "\"{}\" <sip:{}@{host}>;tag={from_tag}",
                    o.destination, o.destination
                );
                let branch = new_branch();
                let bytes = RequestBuilder::new("INVITE", &b.contact)
                    .via(dialog::transport_name(target.transport), &host, &branch)
                    .header("Max-Forwards", "70")
                    .header("From", &local)
                    .header("To", &to)
                    .header("Call-ID", &call_id)
                    .header("CSeq", "1 INVITE")
                    .header("Contact", &dialog::our_contact(&target))
                    .header("Allow", dialog::ALLOW)
                    .build();
                let key =
                    switchboard_sip_stack::transaction::TransactionKey::client(&branch, "INVITE");
                let mut tx = ep.send_request(key, true, target, Bytes::from(bytes.clone()));
                calls.metrics.requests_out.inc("INVITE");
                let events = events.clone();
                tokio::spawn(async move {
                    while let Some(ev) = tx.next_event().await {
                        let last = !matches!(&ev, switchboard_sip_stack::transaction::ClientEvent::Response(c, _) if *c < 200);
                        if events.send((i, ev)).is_err() || last {
                            break;
                        }
                    }
                });
                forks.push((bytes, target, local, false));
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
                    switchboard_sip_stack::transaction::ClientEvent::Response(code, bytes)
                        if code < 200 =>
                    {
                        forks[i].3 = true;
                        let _ = bytes;
                    }
                    switchboard_sip_stack::transaction::ClientEvent::Response(code, bytes)
                        if code < 300 =>
                    {
                        answered = Some((i, bytes));
                        break;
                    }
                    _ => open -= 1,
                }
            }
            // the other phones stop ringing
            for (j, (bytes, target, _, rang)) in forks.iter().enumerate() {
                if answered.as_ref().is_some_and(|(i, _)| *i == j) || !*rang {
                    continue;
                }
                if let Ok(switchboard_sip::message::Message::Request(inv)) =
                    switchboard_sip::message::parse(bytes)
                {
                    let branch = inv
                        .vias
                        .first()
                        .and_then(|v| v.branch.clone())
                        .unwrap_or_default();
                    let key = switchboard_sip_stack::transaction::TransactionKey::client(
                        &branch, "CANCEL",
                    );
                    let _ = ep.send_request(key, false, *target, Bytes::from(cancel_for(&inv)));
                }
            }
            let Some((i, bytes)) = answered else {
                debug!(call_id = %call_id, "click-to-call: the user did not answer");
                return;
            };
            let Ok(switchboard_sip::message::Message::Response(resp)) =
                switchboard_sip::message::parse(&bytes)
            else {
                return;
            };
            let (_, target, local, _) = &forks[i];
            let mut a = dialog::Dialog {
                call_id: call_id.clone(),
                local: local.clone(),
                remote: to.clone(),
                remote_target: bindings[i].contact.to_string(),
                route_set: Vec::new(),
                local_cseq: 2,
                flow: *target,
            };
            a.uac_confirm(&resp);
            // the INVITE the user would have sent: its offer, our destination
            let host = dialog::host_port(&dialog::advertised(target));
            let ct = resp
                .header("Content-Type")
                .unwrap_or("application/sdp")
                .to_owned();
            let stand_in = RequestBuilder::new("INVITE", &format!("sip:{}@{host}", o.destination))
                .via("UDP", &host, &new_branch())
                .header("Max-Forwards", "70")
                .header(
                    "From",
                    &format!("<sip:{}@{realm}>;tag=orig{from_tag}", user.username),
                )
                .header("To", &format!("<sip:{}@{host}>", o.destination))
                .header("Call-ID", &call_id)
                .header("CSeq", "1 INVITE")
                .body(&ct, resp.body.clone())
                .build();
            let Ok(switchboard_sip::message::Message::Request(invite)) =
                switchboard_sip::message::parse(&stand_in)
            else {
                return;
            };
            if !calls.admit(account.id, account.max_concurrent_calls) {
                let ack = a.ack(1, None);
                ep.send_raw(target, Bytes::from(ack));
                let (bye, branch) = a.request("BYE", None, &[]);
                let key =
                    switchboard_sip_stack::transaction::TransactionKey::client(&branch, "BYE");
                let _ = ep.send_request(key, false, *target, Bytes::from(bye));
                return;
            }
            calls.stats.started.fetch_add(1, Ordering::Relaxed);
            let (mailbox, mrx) = mpsc::unbounded_channel();
            calls.add_route(&call_id, &mailbox, LegId::A);
            let call = actor::Call::new(
                Arc::clone(&calls),
                ep,
                actor::Setup {
                    invite,
                    tx: None,
                    a_dialog: Some(a),
                    from: *target,
                    caller: Caller::user(&user),
                    received,
                    account_id: account.id,
                    destination: o.destination.clone(),
                    route,
                },
                mailbox,
            );
            if let Ok(mut live) = calls.live.lock() {
                live.insert(call.id().to_owned(), call.view());
            }
            call.run(mrx).await;
        });
        Ok(id)
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
