//! The back-to-back user agent: every INVITE from a local user (or a
//! trunk) becomes a call with an A-leg (the caller's dialog, where we are
//! the UAS) and the B-legs the dialplan creates (where we are the UAC).
//!
//! Each call is one tokio task (an actor, [`actor`]) that owns all of its
//! state and reads one bounded mailbox: requests and responses of its legs,
//! client transaction events, media events and API commands. The leg
//! states are typed and pure ([`leg`], [`session_timer`]); the SIP dialog
//! of each leg is [`switchboard_sip_stack::dialog::Dialog`].
//!
//! The only shared state is this module's router: a request reaches a call
//! only through a dialog it belongs to, keyed by Call-ID **and our tag**
//! (the actor then checks the far end's tag and the CSeq), and a CANCEL
//! only through the INVITE transaction it cancels (its branch, §9.2). A
//! Call-ID alone finds nothing, so a peer that learnt or guessed one can
//! neither end nor redirect somebody else's call, and a second INVITE with
//! a live call's Call-ID is a new call of its own. Calls are named by a
//! UUID of ours (API, CDRs, recordings), never by a peer's Call-ID.

mod actor;
mod cdr;
mod incoming;
mod leg;
mod originate;
mod session_timer;
mod stats;
mod trunk_register;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use switchboard_sip::message::{Request, Response};
use switchboard_sip_stack::endpoint::Endpoint;
use switchboard_sip_stack::target::Target;
use switchboard_sip_stack::transaction::{ServerTx, TransactionKey};
use switchboard_store::Store;
use tokio::sync::mpsc;

use crate::auth::Authenticator;
use crate::dialplan::Dialplan;
use crate::directory::Directory;
use crate::location::Location;
use crate::media::MediaPool;
use crate::metrics::SipMetrics;
use crate::trunks::Trunks;

pub use actor::CallView;
pub use cdr::CdrSink;
pub use originate::{Originate, OriginateError};
pub use stats::{CallStats, SETUP_BUCKETS_US};

/// The methods a leg accepts, for `Allow` on INVITEs and answers.
pub const ALLOW: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE, MESSAGE, REGISTER";

/// Option tags the B2BUA implements for calls, for `Supported` on its
/// INVITEs and answers; a `Require` naming anything else gets 420.
pub const CALL_SUPPORTED: &[&str] = &["timer"];

/// Events a call's mailbox holds before senders wait (client transaction
/// forwarders, media watchers) or get refused (a peer's in-dialog requests
/// get 503; the API gets an error).
const MAILBOX: usize = 128;

/// What a call's mailbox receives.
#[derive(Debug)]
pub(crate) enum Event {
    /// A request inside one of the call's dialogs, or a CANCEL of the
    /// caller's INVITE; `tx` is `None` for an ACK.
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
    /// The node stops: end the call now (BYE, CDR).
    Shutdown,
    /// Move the call's media off this RTP manager (aggressive drain).
    Migrate { from: String },
    /// This RTP manager stopped answering: move the call or end it.
    ManagerLost { name: String },
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum LegId {
    A,
    B(usize),
}

/// A dialog's key in the router: its Call-ID and our tag in it (the To tag
/// of requests reaching us, the From tag of responses to our requests).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct DialogKey {
    call_id: String,
    tag: String,
}

#[derive(Clone)]
pub(super) struct Route {
    mailbox: mpsc::Sender<Event>,
    leg: LegId,
}

/// A call in progress as the API reaches it.
pub(super) struct Live {
    view: Arc<Mutex<CallView>>,
    mailbox: mpsc::Sender<Event>,
    /// The RTP manager its media is on (for drain and failover).
    manager: Option<String>,
}

/// Figures about the router for `/metrics`.
#[derive(Debug, Default)]
pub struct RouterStats {
    /// In-dialog requests refused because the call's mailbox was full.
    pub mailbox_full: AtomicU64,
    /// In-dialog requests that matched no dialog (481).
    pub no_dialog: AtomicU64,
    /// New calls refused by `MAX_CALLS`.
    pub over_capacity: AtomicU64,
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
    /// In-dialog requests and stray responses, by dialog.
    dialogs: Mutex<HashMap<DialogKey, Route>>,
    /// CANCELs, by the server transaction of the INVITE they cancel.
    invites: Mutex<HashMap<TransactionKey, Route>>,
    /// Live calls by our call id.
    live: Mutex<HashMap<String, Live>>,
    node: String,
    /// What an account over its `max_concurrent_calls` gets: 503 or 486.
    limit_code: u16,
    /// Live calls per account.
    active: Mutex<HashMap<i64, i64>>,
    /// Set at shutdown: new calls get 503, live ones may finish.
    draining: AtomicBool,
    pub stats: CallStats,
    pub router: RouterStats,
    pub(crate) cdrs: CdrSink,
    /// The RTP managers media is anchored on.
    pub(crate) media: Arc<MediaPool>,
    pub(crate) limits: CallLimits,
    notes: std::sync::OnceLock<mpsc::Sender<CallNote>>,
    pub(crate) cluster: Arc<crate::cluster::Cluster>,
    pub(crate) events: switchboard_events::EventBus,
}

/// A live call's change, for the replicas' shared list and for events.
#[derive(Debug, Clone)]
pub enum CallNote {
    /// Started, or its state changed: the whole view as it is now.
    Changed(CallView),
    /// Over (its CDR is with the writer): the view as it last was.
    Ended(CallView),
}

/// Changes waiting for the watcher (a few seconds of a busy node's calls).
pub const NOTE_QUEUE: usize = 65_536;

/// Time limits every call is held to.
#[derive(Debug, Clone, Copy)]
pub struct CallLimits {
    /// `MAX_CALL_DURATION`.
    pub max_duration: Duration,
    /// `SESSION_EXPIRES` (0: off).
    pub session_expires: u32,
    /// `MIN_SE`.
    pub min_se: u32,
    /// `MAX_CALLS` (0: no limit).
    pub max_calls: usize,
}

impl Default for CallLimits {
    fn default() -> Self {
        Self {
            max_duration: Duration::from_secs(14_400),
            session_expires: 1800,
            min_se: 90,
            max_calls: 10_000,
        }
    }
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
    pub limits: CallLimits,
    /// Where CDRs wait while the store is down.
    pub spool_dir: std::path::PathBuf,
    /// With NATS: the stream CDRs are published to instead of the store.
    pub cdr_stream: Option<switchboard_events::CdrStream>,
    /// The platform: where phones registered on other replicas are.
    pub cluster: Arc<crate::cluster::Cluster>,
    /// Where media session events go.
    pub events: switchboard_events::EventBus,
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
            limits,
            spool_dir,
            cdr_stream,
            cluster,
            events,
        } = setup;
        Arc::new(Self {
            directory,
            location,
            auth,
            trunks,
            metrics,
            dialplan: RwLock::new(Arc::new(dialplan)),
            endpoint: std::sync::OnceLock::new(),
            dialogs: Mutex::new(HashMap::new()),
            invites: Mutex::new(HashMap::new()),
            live: Mutex::new(HashMap::new()),
            node,
            limit_code,
            active: Mutex::new(HashMap::new()),
            draining: AtomicBool::new(false),
            stats: CallStats::default(),
            router: RouterStats::default(),
            cdrs: match cdr_stream {
                Some(stream) => CdrSink::start_stream(stream, spool_dir),
                None => CdrSink::start(store, spool_dir),
            },
            media,
            limits,
            notes: std::sync::OnceLock::new(),
            cluster,
            events,
        })
    }

    /// Connects the B2BUA to the endpoint it sends through.
    pub fn set_endpoint(&self, ep: &Arc<Endpoint>) {
        let _ = self.endpoint.set(Arc::downgrade(ep));
    }

    pub(crate) fn endpoint(&self) -> Option<Arc<Endpoint>> {
        self.endpoint.get().and_then(Weak::upgrade)
    }

    /// Our SIP address for a new flow to `remote` over `kind` (same
    /// address family; the TLS listener's for TLS when there is one).
    pub(crate) fn local_for(
        &self,
        remote: &std::net::SocketAddr,
        kind: switchboard_sip_stack::target::TransportKind,
    ) -> Option<std::net::SocketAddr> {
        let ep = self.endpoint()?;
        ep.wire.transports()?.local_for_kind(remote, kind)
    }

    /// Whether a message for `flow` can go anywhere: false only for a
    /// WebSocket flow whose connection is gone (we never open one).
    pub(crate) fn can_reach(&self, flow: &switchboard_sip_stack::target::Target) -> bool {
        self.endpoint()
            .and_then(|ep| ep.wire.transports().map(|t| t.can_reach(flow)))
            .unwrap_or(true)
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
        let views: Vec<Arc<Mutex<CallView>>> = self
            .live
            .lock()
            .map(|l| l.values().map(|c| Arc::clone(&c.view)).collect())
            .unwrap_or_default();
        let mut out: Vec<CallView> = views
            .iter()
            .filter_map(|c| c.lock().ok().map(|v| v.clone()))
            .collect();
        out.sort_by_key(|c| c.invite_at);
        out
    }

    pub fn get(&self, id: &str) -> Option<CallView> {
        let view = self
            .live
            .lock()
            .ok()?
            .get(id)
            .map(|c| Arc::clone(&c.view))?;
        view.lock().ok().map(|v| v.clone())
    }

    fn tell(&self, id: &str, ev: Event) -> bool {
        let mailbox = self
            .live
            .lock()
            .ok()
            .and_then(|l| l.get(id).map(|c| c.mailbox.clone()));
        mailbox.is_some_and(|m| m.try_send(ev).is_ok())
    }

    /// Asks a live call to end. False if there is no such call.
    pub fn hangup(&self, id: &str) -> bool {
        self.tell(id, Event::Hangup)
    }

    /// Every live call's mailbox (with the manager its media is on).
    fn mailboxes(&self) -> Vec<(mpsc::Sender<Event>, Option<String>)> {
        self.live
            .lock()
            .map(|l| {
                l.values()
                    .map(|c| (c.mailbox.clone(), c.manager.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Asks every live call anchored on `manager` to move to another one;
    /// returns how many calls were asked.
    pub fn migrate_from(&self, manager: &str) -> usize {
        self.mailboxes()
            .into_iter()
            .filter(|(_, m)| m.as_deref() == Some(manager))
            .filter(|(mb, _)| {
                mb.try_send(Event::Migrate {
                    from: manager.to_owned(),
                })
                .is_ok()
            })
            .count()
    }

    /// An RTP manager stopped answering: its calls move or end.
    pub fn manager_lost(&self, manager: &str) -> usize {
        let mailboxes = self.mailboxes();
        let mut n = 0;
        for (mb, m) in mailboxes {
            if m.as_deref() != Some(manager) {
                continue;
            }
            let ev = Event::ManagerLost {
                name: manager.to_owned(),
            };
            n += 1;
            if let Err(mpsc::error::TrySendError::Full(ev)) = mb.try_send(ev) {
                tokio::spawn(async move { mb.send(ev).await });
            }
        }
        n
    }

    /// Records which RTP manager a call's media is on.
    pub(crate) fn set_manager(&self, id: &str, manager: Option<String>) {
        if let Ok(mut l) = self.live.lock()
            && let Some(c) = l.get_mut(id)
        {
            c.manager = manager;
        }
    }

    /// Stops taking new calls (they get 503); live calls go on.
    pub fn drain(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    /// Ends every live call now (BYE to both sides, a CDR each).
    pub fn end_all(&self) {
        for (mb, _) in self.mailboxes() {
            if let Err(mpsc::error::TrySendError::Full(ev)) = mb.try_send(Event::Shutdown) {
                tokio::spawn(async move { mb.send(ev).await });
            }
        }
    }

    /// Waits until every CDR handed over so far is stored or spooled.
    pub async fn flush_cdrs(&self) {
        self.cdrs.flush().await;
    }

    pub fn live_count(&self) -> usize {
        self.live.lock().map(|l| l.len()).unwrap_or(0)
    }

    pub(super) fn add_dialog(
        &self,
        call_id: &str,
        tag: &str,
        mailbox: &mpsc::Sender<Event>,
        leg: LegId,
    ) {
        if let Ok(mut r) = self.dialogs.lock() {
            r.insert(
                DialogKey {
                    call_id: call_id.to_owned(),
                    tag: tag.to_owned(),
                },
                Route {
                    mailbox: mailbox.clone(),
                    leg,
                },
            );
        }
    }

    pub(super) fn remove_dialog(&self, call_id: &str, tag: &str) {
        if let Ok(mut r) = self.dialogs.lock() {
            r.remove(&DialogKey {
                call_id: call_id.to_owned(),
                tag: tag.to_owned(),
            });
        }
    }

    pub(super) fn add_invite(&self, key: &TransactionKey, mailbox: &mpsc::Sender<Event>) {
        if let Ok(mut r) = self.invites.lock() {
            r.insert(
                key.clone(),
                Route {
                    mailbox: mailbox.clone(),
                    leg: LegId::A,
                },
            );
        }
    }

    pub(super) fn remove_invite(&self, key: &TransactionKey) {
        if let Ok(mut r) = self.invites.lock() {
            r.remove(key);
        }
    }

    pub(super) fn dialog_route(&self, call_id: &str, tag: &str) -> Option<Route> {
        // a borrowed lookup would need a second key type; the allocation is
        // one per in-dialog request
        let key = DialogKey {
            call_id: call_id.to_owned(),
            tag: tag.to_owned(),
        };
        self.dialogs.lock().ok()?.get(&key).cloned()
    }

    /// The account's `max_concurrent_calls` counted over every replica
    /// (Redis holds one slot per call); true when this call may go on.
    /// Without Redis, or while it is down, the local count alone applies.
    pub(super) async fn cluster_slot(&self, call: &str, account: i64) -> bool {
        let Some(shared) = self.shared_live() else {
            return true;
        };
        let max = self
            .directory
            .account(account)
            .map_or(0, |a| a.max_concurrent_calls);
        let Ok(max) = u32::try_from(max) else {
            return true;
        };
        if max == 0 {
            return true;
        }
        shared
            .acquire_call_slot(account, call, max)
            .await
            .unwrap_or(true)
    }

    fn shared_live(&self) -> Option<&switchboard_cluster::Shared> {
        self.cluster
            .shared
            .as_ref()
            .filter(|s| s.health() == switchboard_cluster::Health::Ok)
    }

    /// Counts a new call of `account` unless it is at its limit (0: none).
    pub(super) fn admit(&self, account: i64, max: i64) -> bool {
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

    /// Where live calls' changes go beyond this node (Redis, events), once.
    pub fn watch(&self, notes: mpsc::Sender<CallNote>) {
        let _ = self.notes.set(notes);
    }

    /// Tells the watcher, if any; a full queue loses the note (counted):
    /// the next change of the call carries its whole state again.
    pub(crate) fn note(&self, note: CallNote) {
        if let Some(tx) = self.notes.get()
            && tx.try_send(note).is_err()
        {
            self.stats.notes_dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The call ended and its CDR is with the writer: its live entry and
    /// account slot go.
    pub(super) fn finished(&self, id: &str, account: Option<i64>, answered: bool) {
        let last = self
            .live
            .lock()
            .ok()
            .and_then(|l| l.get(id).map(|c| Arc::clone(&c.view)))
            .and_then(|v| v.lock().ok().map(|v| v.clone()));
        if let Some(view) = last {
            self.note(CallNote::Ended(view));
        }
        if let (Some(shared), Some(account)) = (self.shared_live(), account)
            && self
                .directory
                .account(account)
                .is_some_and(|a| a.max_concurrent_calls > 0)
        {
            let (shared, id) = (shared.clone(), id.to_owned());
            tokio::spawn(async move {
                let _ = shared.release_call_slot(account, &id).await;
            });
        }
        if let (Ok(mut active), Some(account)) = (self.active.lock(), account)
            && let Some(n) = active.get_mut(&account)
        {
            *n -= 1;
            if *n <= 0 {
                active.remove(&account);
            }
        }
        if let Ok(mut live) = self.live.lock() {
            live.remove(id);
        }
        let counter = if answered {
            &self.stats.answered
        } else {
            &self.stats.failed
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn node(&self) -> &str {
        &self.node
    }
}

/// `Require` option tags of a call request we do not implement.
pub(crate) fn unsupported_required(req: &Request) -> Option<String> {
    let bad: Vec<&str> = req
        .header_values("Require")
        .into_iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty() && !CALL_SUPPORTED.iter().any(|s| s.eq_ignore_ascii_case(t)))
        .collect();
    (!bad.is_empty()).then(|| bad.join(", "))
}

/// The credentials header answering the digest challenge of a 401/407
/// `resp` for `method` on `uri`: `(header name, value)`, or `None` when the
/// response carries no challenge we can answer.
pub(crate) fn answer_challenge(
    resp: &Response,
    method: &str,
    uri: &str,
    user: &str,
    password: &str,
) -> Option<(&'static str, String)> {
    let (challenge_header, auth_header) = if resp.code == 401 {
        ("WWW-Authenticate", "Authorization")
    } else {
        ("Proxy-Authenticate", "Proxy-Authorization")
    };
    let challenge = resp
        .header_lines(challenge_header)
        .into_iter()
        .find_map(|v| switchboard_sip::digest::Challenge::parse(v).ok())?;
    let cnonce = format!("{:016x}", rand::random::<u64>());
    let creds =
        switchboard_sip::digest::respond(&challenge, method, uri, user, password, &cnonce, 1);
    Some((auth_header, creds.to_header_value()))
}

/// A fresh call id: a random (version 4) UUID.
pub(crate) fn new_call_uuid() -> String {
    let r = rand::random::<u128>();
    let r = (r & !(0xf << 76) | (0x4 << 76)) & !(0x3 << 62) | (0x2 << 62);
    let h = format!("{r:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// Formats a source for the CDR: `udp:127.0.0.1:5070`.
pub(crate) fn source_text(t: &Target) -> String {
    crate::location::format_received(t)
}

/// One leg of a call as the API shows it.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct LegView {
    pub leg: String,
    pub call_id: String,
    pub target: String,
    pub state: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn call_ids_are_version_4_uuids() {
        let a = new_call_uuid();
        let b = new_call_uuid();
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        let parts: Vec<&str> = a.split('-').collect();
        assert_eq!(
            parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
            [8, 4, 4, 4, 12]
        );
        assert!(parts[2].starts_with('4'), "{a}");
        assert!(matches!(&parts[3][..1], "8" | "9" | "a" | "b"), "{a}");
        assert!(a.chars().all(|c| c.is_ascii_hexdigit() || c == '-'));
    }
}
