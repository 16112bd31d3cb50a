//! One call: its legs, its dialplan actions, its CDR. Runs as one task.

mod anchor;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use switchboard_sip::message::{self, Message, Request, Response};
use switchboard_sip::request::{RequestBuilder, cancel_for, new_branch, new_call_id};
use switchboard_sip::response::{new_tag, response};
use switchboard_sip_stack::endpoint::Endpoint;
use switchboard_sip_stack::target::Target;
use switchboard_sip_stack::transaction::{ClientEvent, ServerTx, TransactionKey};
use switchboard_store::Cdr;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{debug, info};

use super::dialog::{
    ALLOW, Dialog, advertised, answer_challenge, host_port, our_contact, transport_name,
};
use super::{Calls, Event, LegId, LegView, source_text};
use crate::dialplan::{Action, DialTarget, Route, expand};
use crate::directory::UserEntry;
use crate::registrar::Now;
use anchor::{CallMedia, Migration, Served, Until, is_sdp};

/// 2xx retransmission to the caller until its ACK (§13.3.1.4).
const T1: Duration = Duration::from_millis(500);
const T2: Duration = Duration::from_secs(4);
/// How long a finished call still answers late 2xx from cancelled forks.
const DRAIN: Duration = Duration::from_secs(32);

/// Who is calling: a local user, or a number coming in from a trunk.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    /// The caller id: the user's extension (else username), or the number.
    pub id: String,
    pub name: Option<String>,
    /// The local user, when one called.
    pub user: Option<String>,
}

impl Caller {
    pub(crate) fn user(u: &UserEntry) -> Self {
        Self {
            id: u.extension.as_deref().unwrap_or(&u.username).to_owned(),
            name: u.display_name.as_deref().map(str::to_owned),
            user: Some(u.username.to_string()),
        }
    }
}

pub(crate) struct Setup {
    /// The caller's INVITE; for a call the API originated, an INVITE
    /// standing for the answered user (its body is the user's SDP offer).
    pub invite: Request,
    /// `None` when the API originated the call.
    pub tx: Option<ServerTx>,
    /// The caller's dialog when we are its UAC (click-to-call).
    pub a_dialog: Option<Dialog>,
    pub from: Target,
    pub caller: Caller,
    /// When the INVITE arrived, for the setup-latency histogram.
    pub received: Instant,
    pub account_id: i64,
    pub destination: String,
    pub route: Route,
}

/// A live call as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct CallView {
    pub id: String,
    pub account_id: i64,
    pub caller: String,
    pub caller_name: Option<String>,
    pub callee: String,
    pub route: String,
    pub state: String,
    pub invite_at: i64,
    pub ring_at: Option<i64>,
    pub answer_at: Option<i64>,
    pub legs: Vec<LegView>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ForkState {
    Trying,
    Early,
    Answered,
    Done,
}

struct Fork {
    invite: Request,
    dialog: Dialog,
    state: ForkState,
    /// A CANCEL is owed as soon as a provisional arrives.
    cancel_wanted: bool,
    cancel_sent: bool,
    final_code: Option<u16>,
    /// The ACK for its 2xx, resent when the 2xx is retransmitted.
    ack: Option<Bytes>,
    label: String,
    /// The local user this fork rings, if any.
    user: Option<String>,
    /// A trunk's credentials, to answer its 401/407 once.
    credentials: Option<(String, String)>,
    authenticated: bool,
    /// The INVITE's body (content type, bytes), resent with credentials.
    offer: Option<(String, Vec<u8>)>,
}

/// What an outstanding client transaction is for.
enum Pending {
    Invite(usize),
    /// A request relayed from `from` (answered through `tx`) into the other leg.
    Relay {
        from: LegId,
        tx: ServerTx,
        req: Box<Request>,
        cseq: u32,
        /// The manager's answer to `from`'s offer (anchored calls): sent
        /// instead of the other leg's answer.
        answer: Option<Vec<u8>>,
    },
    /// A re-INVITE moving the leg's media to another RTP manager.
    Migrate(LegId),
    /// BYE, CANCEL: their answers change nothing.
    Ignore,
}

enum DialOutcome {
    Answered,
    Failed(u16, String),
    /// The caller cancelled or hung up, or the API ended the call.
    Ended,
}

pub(crate) struct Call {
    calls: Arc<Calls>,
    ep: Arc<Endpoint>,
    mailbox: mpsc::UnboundedSender<Event>,
    invite: Request,
    a_tx: Option<ServerTx>,
    a: Dialog,
    a_source: Target,
    a_answered: Option<Bytes>,
    a_acked: bool,
    /// Click-to-call: we called the A side; its ACK carries the answer.
    originated: bool,
    forks: Vec<Fork>,
    winner: Option<usize>,
    pending: HashMap<u64, Pending>,
    next_id: u64,
    vars: HashMap<String, String>,
    caller: Caller,
    account_id: i64,
    destination: String,
    route: Route,
    view: Arc<Mutex<CallView>>,
    // CDR
    invite_at: i64,
    ring_at: Option<i64>,
    answer_at: Option<i64>,
    disposition: &'static str,
    hangup_code: Option<u16>,
    hangup_reason: Option<String>,
    hangup_side: &'static str,
    /// When the INVITE arrived (setup latency).
    started: Instant,
    setup_recorded: bool,
    /// The first local user a dial resolved to, for the CDR.
    dialled_user: Option<String>,
    /// ACKs we sent for 2xx on a leg, by CSeq, for retransmitted 2xx.
    acks: HashMap<(bool, u32), Bytes>,
    /// Anchored media; `None` when SDP passes through unchanged.
    media: Option<CallMedia>,
    media_stats: Option<MediaStats>,
    /// DTMF from the caller not read by `read_digits` yet.
    digits: VecDeque<char>,
    /// Our 2xx to the caller until its ACK: next resend, interval, give-up.
    a_resend: Option<(Instant, Duration, Instant)>,
    /// A move to another RTP manager in progress.
    migration: Option<Migration>,
}

/// The CDR's media counters.
struct MediaStats {
    sent: i64,
    received: i64,
    lost: i64,
    jitter_ms: f64,
    mos: Option<f64>,
    manager: String,
}

fn now_ms() -> i64 {
    Now::current().unix_ms
}

impl Call {
    pub(crate) fn new(
        calls: Arc<Calls>,
        ep: Arc<Endpoint>,
        s: Setup,
        mailbox: mpsc::UnboundedSender<Event>,
    ) -> Self {
        let tag = new_tag();
        let originated = s.a_dialog.is_some();
        let a = s
            .a_dialog
            .unwrap_or_else(|| Dialog::uas(&s.invite, &tag, s.from));
        let caller_id = s.caller.id.clone();
        let caller_name = s
            .invite
            .from
            .display
            .as_deref()
            .map(|d| d.trim_matches('"').to_owned())
            .or_else(|| s.caller.name.clone())
            .unwrap_or_default();
        let mut vars = HashMap::new();
        vars.insert("destination".to_owned(), s.destination.clone());
        vars.insert("caller_id".to_owned(), caller_id.clone());
        vars.insert("caller_name".to_owned(), caller_name.clone());
        vars.insert("call_id".to_owned(), s.invite.call_id.clone());
        let invite_at = now_ms();
        let view = CallView {
            id: s.invite.call_id.clone(),
            account_id: s.account_id,
            caller: caller_id,
            caller_name: (!caller_name.is_empty()).then_some(caller_name),
            callee: s.destination.clone(),
            route: s.route.id.clone(),
            state: "routing".into(),
            invite_at,
            ring_at: None,
            answer_at: None,
            legs: vec![LegView {
                leg: "A".into(),
                call_id: s.invite.call_id.clone(),
                target: source_text(&s.from),
                state: "early".into(),
            }],
        };
        Self {
            calls,
            ep,
            mailbox,
            a_tx: s.tx,
            a,
            a_source: s.from,
            a_answered: None,
            a_acked: originated,
            originated,
            forks: Vec::new(),
            winner: None,
            pending: HashMap::new(),
            next_id: 1,
            vars,
            caller: s.caller,
            account_id: s.account_id,
            destination: s.destination,
            route: s.route,
            view: Arc::new(Mutex::new(view)),
            invite_at,
            ring_at: None,
            answer_at: None,
            disposition: "failed",
            hangup_code: None,
            hangup_reason: None,
            hangup_side: "system",
            acks: HashMap::new(),
            dialled_user: None,
            started: s.received,
            setup_recorded: false,
            invite: s.invite,
            media: None,
            media_stats: None,
            digits: VecDeque::new(),
            a_resend: None,
            migration: None,
        }
    }

    pub(crate) fn id(&self) -> &str {
        &self.invite.call_id
    }

    pub(crate) fn view(&self) -> Arc<Mutex<CallView>> {
        Arc::clone(&self.view)
    }

    fn update_view(&self, f: impl FnOnce(&mut CallView)) {
        if let Ok(mut v) = self.view.lock() {
            f(&mut v);
        }
    }

    pub(crate) async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Event>) {
        let actions = self.route.actions.clone();
        let mut last_failure: Option<(u16, String)> = None;
        let mut ended = false;
        let anchor = !self.route.direct_media && !self.calls.media.members().is_empty();
        if anchor && let Err((code, reason)) = self.setup_media().await {
            self.fail_caller(code, reason, "system");
            ended = true;
        }
        for action in actions.iter().filter(|_| !ended) {
            match action {
                Action::Set { name, value } => {
                    let v = expand(value, &self.vars);
                    self.vars.insert(name.clone(), v);
                }
                Action::Answer => {
                    if self.a_answered.is_none() {
                        self.answer_locally();
                    }
                }
                Action::Hangup { code, reason } => {
                    if self.a_answered.is_some() {
                        self.bye_caller("system");
                    } else {
                        let code = if *code == 0 { 480 } else { *code };
                        self.fail_caller(code, reason, "system");
                    }
                    ended = true;
                    break;
                }
                Action::Dial { targets, timeout } => {
                    match self.dial(&mut rx, targets, *timeout).await {
                        DialOutcome::Answered => {
                            self.bridge(&mut rx).await;
                            ended = true;
                            break;
                        }
                        DialOutcome::Ended => {
                            ended = true;
                            break;
                        }
                        DialOutcome::Failed(code, reason) => {
                            last_failure = Some((code, reason));
                        }
                    }
                }
                Action::PlayAudio { files, repeat } => {
                    let files = files.iter().map(|f| expand(f, &self.vars)).collect();
                    if let Served::Ended = self.play(&mut rx, files, *repeat).await {
                        ended = true;
                        break;
                    }
                }
                Action::Echo { timeout } => {
                    if let Served::Ended = self.echo(&mut rx, *timeout).await {
                        ended = true;
                        break;
                    }
                }
                Action::Record { file, both_sides } => {
                    let file = expand(file, &self.vars);
                    self.record(file, *both_sides).await;
                }
                Action::Wait { duration } => {
                    self.ensure_answered();
                    let until = Until::Deadline(Instant::now() + *duration);
                    if let Served::Ended = self.serve_a(&mut rx, until).await {
                        ended = true;
                        break;
                    }
                }
                Action::ReadDigits {
                    max,
                    timeout,
                    variable,
                } => {
                    self.ensure_answered();
                    let until = Until::Digits {
                        max: *max as usize,
                        deadline: Instant::now() + *timeout,
                    };
                    match self.serve_a(&mut rx, until).await {
                        Served::Done(digits) => {
                            info!(call_id = %self.invite.call_id, %digits, "digits read");
                            self.vars.insert(variable.clone(), digits);
                        }
                        Served::Ended => {
                            ended = true;
                            break;
                        }
                    }
                }
            }
        }
        if !ended {
            if self.a_answered.is_some() {
                self.bye_caller("system");
            } else {
                let (code, reason) =
                    last_failure.unwrap_or((480, "Temporarily Unavailable".into()));
                self.fail_caller(code, &reason, "callee");
            }
        }
        self.release_media().await;
        self.finish();
        self.drain(&mut rx).await;
    }

    // ----------------------------------------------------------------------
    // the caller's leg
    // ----------------------------------------------------------------------

    fn a_response(&self, code: u16, reason: &str, body: Option<(&str, &[u8])>) -> Vec<u8> {
        let tag = self.a.local.rsplit(";tag=").next().unwrap_or_default();
        let mut b = response(&self.invite, code, reason).to_tag(tag);
        if (101..300).contains(&code) {
            b = b
                .header("Contact", &our_contact(&self.a_source))
                .header("Allow", ALLOW);
            for rr in self.invite.header_values("Record-Route") {
                b = b.header("Record-Route", rr);
            }
        }
        if let Some((ct, bytes)) = body {
            b = b.body(ct, bytes.to_vec());
        }
        b.build()
    }

    fn a_send(&mut self, code: u16, bytes: Vec<u8>) {
        self.calls.metrics.responses_out.inc(code);
        if let Some(tx) = &self.a_tx {
            tx.respond(code, Bytes::from(bytes));
        }
    }

    /// Final failure to the caller (before any answer).
    fn fail_caller(&mut self, code: u16, reason: &str, side: &'static str) {
        if self.a_answered.is_some() || self.hangup_code.is_some() {
            return;
        }
        if self.originated {
            // the user we rang answered with an offer: complete its INVITE
            // with an answer that declines every stream, then hang up
            let sdp = decline_sdp(&self.invite.body, &self.a_source);
            let ack = self
                .a
                .ack(1, sdp.as_deref().map(|s| ("application/sdp", s)));
            self.ep.send_raw(&self.a.flow, Bytes::from(ack));
            let (bytes, branch) = self.a.request("BYE", None, &[]);
            self.send_request(&branch, "BYE", self.a.flow, bytes, Pending::Ignore);
        } else {
            let bytes = self.a_response(code, reason, None);
            self.a_send(code, bytes);
        }
        self.hangup_code = Some(code);
        self.hangup_reason = Some(reason.to_owned());
        self.hangup_side = side;
        self.disposition = match code {
            487 => "cancelled",
            486 | 600 => "busy",
            408 | 480 => "no_answer",
            _ => "failed",
        };
    }

    /// `answer`: 200 OK from us, with an SDP answer that declines every
    /// stream (media arrives with the RTP manager).
    fn answer_locally(&mut self) {
        let sdp = match &self.media {
            Some(m) => Some(m.a_sdp.clone().into_bytes()),
            None => decline_sdp(&self.invite.body, &self.a_source),
        };
        let body = sdp.as_deref().map(|s| ("application/sdp", s));
        let bytes = self.a_response(200, "OK", body);
        self.answered(bytes, body);
    }

    /// The call is answered: 200 to the caller, or, for a call the API
    /// originated, the ACK that completes the user's INVITE with `body`
    /// (the callee's SDP answer to the user's offer).
    fn answered(&mut self, bytes: Vec<u8>, body: Option<(&str, &[u8])>) {
        if self.originated {
            let ack = Bytes::from(self.a.ack(1, body));
            self.ep.send_raw(&self.a.flow, ack.clone());
            self.acks.insert((true, 1), ack);
        } else {
            self.a_send(200, bytes.clone());
            if !self.a_source.transport.is_reliable() {
                let now = Instant::now();
                self.a_resend = Some((now + T1, T1, now + T1 * 64));
            }
        }
        self.a_answered = Some(Bytes::from(bytes));
        let now = now_ms();
        self.answer_at = Some(now);
        self.disposition = "answered";
        self.update_view(|v| {
            v.state = "answered".into();
            v.answer_at = Some(now);
            if let Some(a) = v.legs.first_mut() {
                a.state = "confirmed".into();
            }
        });
    }

    /// BYE to the caller; the call ends.
    fn bye_caller(&mut self, side: &'static str) {
        let (bytes, branch) = self.a.request("BYE", None, &[]);
        self.send_request(&branch, "BYE", self.a.flow, bytes, Pending::Ignore);
        self.ended(side, None);
    }

    fn ended(&mut self, side: &'static str, code: Option<u16>) {
        if self.hangup_code.is_none() && self.hangup_reason.is_none() {
            self.hangup_side = side;
            self.hangup_reason = Some("BYE".into());
            self.hangup_code = code;
        }
    }

    // ----------------------------------------------------------------------
    // client transactions
    // ----------------------------------------------------------------------

    fn send_request(
        &mut self,
        branch: &str,
        method: &str,
        target: Target,
        bytes: Vec<u8>,
        what: Pending,
    ) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.calls.metrics.requests_out.inc(method);
        let key = TransactionKey::client(branch, method);
        let mut ctx = self
            .ep
            .send_request(key, method == "INVITE", target, Bytes::from(bytes));
        self.pending.insert(id, what);
        let mailbox = self.mailbox.clone();
        tokio::spawn(async move {
            while let Some(ev) = ctx.next_event().await {
                let (msg, last) = match ev {
                    ClientEvent::Response(code, bytes) => {
                        (Event::Client { id, code, bytes }, code >= 200)
                    }
                    ClientEvent::Timeout => (Event::ClientFailed { id, code: 408 }, true),
                    ClientEvent::TransportError => (Event::ClientFailed { id, code: 503 }, true),
                };
                if mailbox.send(msg).is_err() || last {
                    break;
                }
            }
        });
        id
    }

    // ----------------------------------------------------------------------
    // dial
    // ----------------------------------------------------------------------

    async fn dial(
        &mut self,
        rx: &mut mpsc::UnboundedReceiver<Event>,
        targets: &[DialTarget],
        timeout: Duration,
    ) -> DialOutcome {
        let first = self.forks.len();
        let mut not_found = 0;
        let mut unavailable = 0;
        for t in targets {
            match t {
                DialTarget::User(who) => {
                    let who = expand(who, &self.vars);
                    let dir = &self.calls.directory;
                    let user = dir
                        .user_by_extension(self.account_id, &who)
                        .or_else(|| dir.user(self.account_id, &who));
                    let Some(user) = user.filter(|u| u.enabled) else {
                        not_found += 1;
                        continue;
                    };
                    let realm = dir
                        .account(user.account_id)
                        .map(|a| a.realm.to_ascii_lowercase())
                        .unwrap_or_default();
                    let aor = format!("sip:{}@{realm}", user.username);
                    if self.dialled_user.is_none() {
                        self.dialled_user = Some(user.username.to_string());
                    }
                    let bindings = self.calls.location.lookup(&aor, now_ms());
                    if bindings.is_empty() {
                        unavailable += 1;
                    }
                    for b in bindings {
                        let to = format!("<sip:{}@{realm}>", who);
                        let username = Some(user.username.to_string());
                        if !self
                            .start_fork(&b.contact, b.received, &to, &aor, username)
                            .await
                        {
                            unavailable += 1;
                        }
                    }
                }
                DialTarget::Uri(uri) => {
                    let uri = expand(uri, &self.vars);
                    match uri_target(&uri, &self.a_source) {
                        Some(target) => {
                            let to = format!("<{uri}>");
                            if !self.start_fork(&uri, target, &to, &uri, None).await {
                                unavailable += 1;
                            }
                        }
                        None => not_found += 1,
                    }
                }
                DialTarget::Gateway(name) => {
                    let Some(trunk) = self.calls.trunks.get(name) else {
                        debug!(gateway = %name, "no such trunk");
                        unavailable += 1;
                        continue;
                    };
                    let number = trunk.config.rewrite(&self.destination);
                    let uri = format!("sip:{number}@{}", trunk.config.domain());
                    let Some(local) = self.calls.local_for(&trunk.addr) else {
                        unavailable += 1;
                        continue;
                    };
                    let target = Target {
                        transport: trunk.transport,
                        local,
                        remote: trunk.addr,
                        conn: None,
                    };
                    let to = format!("<{uri}>");
                    let label = format!("gateway/{name}");
                    let credentials = trunk
                        .config
                        .username
                        .clone()
                        .zip(trunk.config.password.clone());
                    if self.start_fork(&uri, target, &to, &label, None).await {
                        if let Some(f) = self.forks.last_mut() {
                            f.credentials = credentials;
                        }
                    } else {
                        unavailable += 1;
                    }
                }
            }
        }
        if self.forks.len() == first {
            return if unavailable > 0 {
                DialOutcome::Failed(480, "Temporarily Unavailable".into())
            } else if not_found > 0 {
                DialOutcome::Failed(404, "Not Found".into())
            } else {
                DialOutcome::Failed(480, "Temporarily Unavailable".into())
            };
        }
        self.update_view(|v| v.state = "ringing".into());
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(outcome) = self.dial_settled(first) {
                return outcome;
            }
            let ev = tokio::select! {
                ev = rx.recv() => ev,
                () = tokio::time::sleep_until(deadline) => {
                    self.cancel_forks(first);
                    return DialOutcome::Failed(480, "Temporarily Unavailable".into());
                }
            };
            let Some(ev) = ev else {
                return DialOutcome::Ended;
            };
            match ev {
                Event::Request { leg, req, tx, .. } => {
                    if let Some(out) = self.early_request(leg, *req, tx, first) {
                        return out;
                    }
                }
                Event::Client { id, code, bytes } => {
                    if let Some(Pending::Invite(i)) = self.pending.get(&id) {
                        let i = *i;
                        if code >= 200 {
                            self.pending.remove(&id);
                        }
                        if let Some(out) = self.fork_response(i, code, &bytes, first).await {
                            return out;
                        }
                    } else {
                        self.pending.remove(&id);
                    }
                }
                Event::ClientFailed { id, code } => {
                    if let Some(Pending::Invite(i)) = self.pending.remove(&id) {
                        self.forks[i].state = ForkState::Done;
                        self.forks[i].final_code = Some(code);
                    }
                }
                Event::StrayResponse { .. } => {}
                Event::Media {
                    session,
                    event: event @ super::MediaEvent::Dtmf(_),
                } => {
                    self.media_event(&session, event);
                }
                // a silent caller while the callee rings: the dial timeout ends it
                Event::Media { .. } => {}
                // only answered calls move; a ringing one ends where it is
                Event::Migrate { .. } => {}
                Event::Hangup => {
                    self.cancel_forks(first);
                    self.fail_caller(480, "Call Ended By Operator", "system");
                    return DialOutcome::Ended;
                }
            }
        }
    }

    /// Sends one B-leg INVITE; false when it could not be started.
    async fn start_fork(
        &mut self,
        uri: &str,
        target: Target,
        to: &str,
        label: &str,
        user: Option<String>,
    ) -> bool {
        let index = self.forks.len();
        let offer: Option<(String, Vec<u8>)> = if self.anchored() {
            match self.fork_offer(index, target.remote).await {
                Some(sdp) => Some(("application/sdp".to_owned(), sdp)),
                None => return false,
            }
        } else {
            self.invite
                .header("Content-Type")
                .filter(|_| !self.invite.body.is_empty())
                .map(|ct| (ct.to_owned(), self.invite.body.clone()))
        };
        let call_id = new_call_id(None);
        let tag = new_tag();
        let name = self.vars.get("caller_name").cloned().unwrap_or_default();
        let caller_id = self.vars.get("caller_id").cloned().unwrap_or_default();
        let from_host = host_port(&advertised(&target));
        let from = if name.is_empty() {
            format!("<sip:{caller_id}@{from_host}>;tag={tag}")
        } else {
            format!(
                "\"{}\" <sip:{caller_id}@{from_host}>;tag={tag}",
                name.replace(['"', '\\'], "")
            )
        };
        let branch = new_branch();
        let max_forwards = self
            .invite
            .max_forwards
            .unwrap_or(70)
            .saturating_sub(1)
            .to_string();
        let mut b = RequestBuilder::new("INVITE", uri)
            .via(
                transport_name(target.transport),
                &host_port(&advertised(&target)),
                &branch,
            )
            .header("Max-Forwards", &max_forwards)
            .header("From", &from)
            .header("To", to)
            .header("Call-ID", &call_id)
            .header("CSeq", "1 INVITE")
            .header("Contact", &our_contact(&target))
            .header("Allow", ALLOW);
        if let Some((ct, body)) = &offer {
            b = b.body(ct, body.clone());
        }
        let bytes = b.build();
        let Ok(Message::Request(parsed)) = message::parse(&bytes) else {
            debug!(%uri, "B-leg INVITE did not parse; target skipped");
            return false;
        };
        let dialog = Dialog {
            call_id: call_id.clone(),
            local: from,
            remote: to.to_owned(),
            remote_target: uri.to_owned(),
            route_set: Vec::new(),
            local_cseq: 2,
            flow: target,
        };
        self.calls
            .add_route(&call_id, &self.mailbox, LegId::B(index));
        self.forks.push(Fork {
            invite: parsed,
            dialog,
            state: ForkState::Trying,
            cancel_wanted: false,
            cancel_sent: false,
            final_code: None,
            ack: None,
            label: label.to_owned(),
            user,
            credentials: None,
            authenticated: false,
            offer,
        });
        self.update_view(|v| {
            v.legs.push(LegView {
                leg: format!("B{}", index + 1),
                call_id: call_id.clone(),
                target: format!("{label} via {}", source_text(&target)),
                state: "trying".into(),
            })
        });
        self.send_request(&branch, "INVITE", target, bytes, Pending::Invite(index));
        if !self.setup_recorded {
            self.setup_recorded = true;
            let us = u64::try_from(self.started.elapsed().as_micros()).unwrap_or(u64::MAX);
            self.calls.stats.record_setup(us);
        }
        true
    }

    /// The dial is over once every fork of it has a final answer.
    fn dial_settled(&self, first: usize) -> Option<DialOutcome> {
        let forks = &self.forks[first..];
        if forks.iter().any(|f| f.state != ForkState::Done) {
            return None;
        }
        // RFC 3261 §16.7 in short: a 6xx wins, then busy, then the lowest.
        let codes: Vec<u16> = forks.iter().filter_map(|f| f.final_code).collect();
        let best = codes
            .iter()
            .copied()
            .find(|c| *c >= 600)
            .or_else(|| codes.iter().copied().find(|c| *c == 486))
            .or_else(|| codes.iter().copied().min())
            .unwrap_or(480);
        let code = if best == 408 || best == 487 {
            480
        } else {
            best
        };
        Some(DialOutcome::Failed(
            code,
            switchboard_sip::reason_phrase(code).to_owned(),
        ))
    }

    async fn fork_response(
        &mut self,
        i: usize,
        code: u16,
        bytes: &Bytes,
        first: usize,
    ) -> Option<DialOutcome> {
        let Ok(Message::Response(resp)) = message::parse(bytes) else {
            return None;
        };
        self.calls.metrics.responses_in.inc(code);
        match code {
            100..=199 => {
                if self.forks[i].state == ForkState::Trying {
                    self.forks[i].state = ForkState::Early;
                }
                if self.forks[i].cancel_wanted && !self.forks[i].cancel_sent {
                    self.cancel_fork(i);
                }
                if code > 100
                    && self.winner.is_none()
                    && self.hangup_code.is_none()
                    && self.a_answered.is_none()
                {
                    if self.ring_at.is_none() {
                        let now = now_ms();
                        self.ring_at = Some(now);
                        self.update_view(|v| v.ring_at = Some(now));
                    }
                    let out = if self.anchored() {
                        // early media: the fork's answer goes to its
                        // session, bridged to the caller's
                        let early = is_sdp(resp.header("Content-Type"), &resp.body)
                            && self.fork_answered_media(i, &resp.body).await;
                        let ours = self
                            .media
                            .as_ref()
                            .filter(|m| early && !m.a_late)
                            .map(|m| m.a_sdp.clone().into_bytes());
                        let body = ours.as_deref().map(|b| ("application/sdp", b));
                        self.a_response(code, &resp.reason, body)
                    } else {
                        self.a_response(code, &resp.reason, sdp_body(&resp))
                    };
                    self.a_send(code, out);
                }
                None
            }
            200..=299 => {
                self.forks[i].dialog.uac_confirm(&resp);
                if self.winner.is_some() || self.hangup_code.is_some() {
                    // a second answer (or one after we gave up): take it
                    // down at once
                    self.ack_fork(i, None);
                    self.bye_fork(i);
                    return None;
                }
                self.winner = Some(i);
                self.forks[i].state = ForkState::Answered;
                self.forks[i].final_code = Some(code);
                if self.anchored() || !self.invite.body.is_empty() {
                    self.ack_fork(i, None);
                }
                for j in first..self.forks.len() {
                    if j != i {
                        self.cancel_fork(j);
                    }
                }
                if self.anchored() {
                    if !self.fork_answered_media(i, &resp.body).await {
                        // an answer the manager cannot use: no media
                        // between the two, so the call cannot go on
                        self.bye_fork(i);
                        self.forks[i].final_code = Some(488);
                        self.winner = None;
                        return Some(DialOutcome::Failed(488, "Not Acceptable Here".into()));
                    }
                    if self.a_answered.is_none() {
                        let ours = self.media.as_ref().map(|m| m.a_sdp.clone().into_bytes());
                        let body = ours.as_deref().map(|b| ("application/sdp", b));
                        let out = self.a_response(200, "OK", body);
                        self.answered(out, body);
                    }
                } else {
                    let body = sdp_body(&resp);
                    let out = self.a_response(200, "OK", body);
                    self.answered(out, body);
                }
                let label = self.forks[i].label.clone();
                info!(call_id = %self.invite.call_id, callee = %label, "call answered");
                self.update_view(|v| {
                    if let Some(l) = v.legs.get_mut(i + 1) {
                        l.state = "confirmed".into();
                    }
                });
                Some(DialOutcome::Answered)
            }
            401 | 407
                if self.forks[i].credentials.is_some()
                    && !self.forks[i].authenticated
                    && self.retry_with_credentials(i, &resp) =>
            {
                None
            }
            _ => {
                self.forks[i].state = ForkState::Done;
                self.forks[i].final_code = Some(code);
                self.update_view(|v| {
                    if let Some(l) = v.legs.get_mut(i + 1) {
                        l.state = format!("failed {code}");
                    }
                });
                let _ = first;
                None
            }
        }
    }

    /// Answers a trunk's digest challenge: the same INVITE with credentials,
    /// next CSeq, new branch (RFC 3261 §22.2). False if it cannot.
    fn retry_with_credentials(&mut self, i: usize, resp: &Response) -> bool {
        let Some((user, password)) = self.forks[i].credentials.clone() else {
            return false;
        };
        let uri = self.forks[i].dialog.remote_target.clone();
        let Some((auth_header, credentials)) =
            answer_challenge(resp, "INVITE", &uri, &user, &password)
        else {
            return false;
        };
        let f = &self.forks[i];
        let target = f.dialog.flow;
        let branch = new_branch();
        let max_forwards = f.invite.max_forwards.unwrap_or(70).to_string();
        let mut b = RequestBuilder::new("INVITE", &uri)
            .via(
                transport_name(target.transport),
                &host_port(&advertised(&target)),
                &branch,
            )
            .header("Max-Forwards", &max_forwards)
            .header("From", &f.dialog.local)
            .header("To", &f.dialog.remote)
            .header("Call-ID", &f.dialog.call_id)
            .header("CSeq", &format!("{} INVITE", f.invite.cseq + 1))
            .header("Contact", &our_contact(&target))
            .header("Allow", ALLOW)
            .header(auth_header, &credentials);
        if let Some((ct, body)) = &f.offer {
            b = b.body(ct, body.clone());
        }
        let bytes = b.build();
        let Ok(Message::Request(parsed)) = message::parse(&bytes) else {
            return false;
        };
        let f = &mut self.forks[i];
        f.authenticated = true;
        f.state = ForkState::Trying;
        f.dialog.local_cseq = parsed.cseq + 1;
        f.invite = parsed;
        self.send_request(&branch, "INVITE", target, bytes, Pending::Invite(i));
        true
    }

    fn ack_fork(&mut self, i: usize, body: Option<(&str, &[u8])>) {
        let cseq = self.forks[i].invite.cseq;
        let ack = Bytes::from(self.forks[i].dialog.ack(cseq, body));
        self.ep.send_raw(&self.forks[i].dialog.flow, ack.clone());
        self.forks[i].ack = Some(ack);
    }

    fn bye_fork(&mut self, i: usize) {
        let flow = self.forks[i].dialog.flow;
        let (bytes, branch) = self.forks[i].dialog.request("BYE", None, &[]);
        self.send_request(&branch, "BYE", flow, bytes, Pending::Ignore);
        self.forks[i].state = ForkState::Done;
    }

    fn cancel_fork(&mut self, i: usize) {
        let f = &mut self.forks[i];
        match f.state {
            ForkState::Trying => f.cancel_wanted = true,
            ForkState::Early if !f.cancel_sent => {
                f.cancel_sent = true;
                let bytes = cancel_for(&f.invite);
                let branch = f
                    .invite
                    .vias
                    .first()
                    .and_then(|v| v.branch.clone())
                    .unwrap_or_default();
                let flow = f.dialog.flow;
                self.send_request(&branch, "CANCEL", flow, bytes, Pending::Ignore);
            }
            _ => {}
        }
    }

    fn cancel_forks(&mut self, first: usize) {
        for i in first..self.forks.len() {
            self.cancel_fork(i);
        }
    }

    /// A request while the forks ring.
    fn early_request(
        &mut self,
        leg: LegId,
        req: Request,
        tx: Option<ServerTx>,
        first: usize,
    ) -> Option<DialOutcome> {
        let method = req.method.to_string();
        let Some(tx) = tx else {
            return None; // an ACK
        };
        match (leg, method.as_str()) {
            (LegId::A, "CANCEL") => {
                self.calls.respond(&tx, &req, 200, "OK");
                self.cancel_forks(first);
                self.fail_caller(487, "Request Terminated", "caller");
                Some(DialOutcome::Ended)
            }
            _ => {
                self.calls
                    .respond(&tx, &req, 481, "Call/Transaction Does Not Exist");
                None
            }
        }
    }

    // ----------------------------------------------------------------------
    // bridge
    // ----------------------------------------------------------------------

    async fn bridge(&mut self, rx: &mut mpsc::UnboundedReceiver<Event>) {
        let Some(w) = self.winner else {
            return;
        };
        self.bridge_up().await;
        loop {
            let resend = self.resend_at();
            let ev = tokio::select! {
                ev = rx.recv() => ev,
                () = tokio::time::sleep_until(resend.unwrap_or_else(Instant::now)), if resend.is_some() => {
                    if !self.resend_2xx() {
                        self.bye_fork(w);
                        self.bye_caller("system");
                        return;
                    }
                    continue;
                }
            };
            let Some(ev) = ev else {
                return;
            };
            match ev {
                Event::Request { leg, req, tx, .. } => {
                    if self.bridged_request(w, leg, *req, tx).await {
                        return;
                    }
                }
                Event::Media { session, event } => {
                    if self.media_event(&session, event) {
                        return;
                    }
                }
                Event::Migrate { from } => self.start_migration(w, &from).await,
                Event::Client { id, code, bytes } => {
                    let Some(p) = self.pending.remove(&id) else {
                        continue;
                    };
                    match p {
                        Pending::Relay {
                            from,
                            tx,
                            req,
                            cseq,
                            answer,
                        } => {
                            if code < 200 {
                                if code > 100 {
                                    self.relay_response(
                                        w, from, &tx, &req, code, &bytes, cseq, None,
                                    )
                                    .await;
                                }
                                self.pending.insert(
                                    id,
                                    Pending::Relay {
                                        from,
                                        tx,
                                        req,
                                        cseq,
                                        answer,
                                    },
                                );
                            } else {
                                self.relay_response(w, from, &tx, &req, code, &bytes, cseq, answer)
                                    .await;
                            }
                        }
                        Pending::Invite(i) if i != w => self.late_fork_answer(id, i, code, &bytes),
                        Pending::Invite(i) => {
                            if code < 200 {
                                self.pending.insert(id, Pending::Invite(i));
                            }
                        }
                        Pending::Migrate(leg) => {
                            if code < 200 {
                                self.pending.insert(id, Pending::Migrate(leg));
                            } else {
                                self.migration_answer(w, leg, code, &bytes).await;
                            }
                        }
                        Pending::Ignore => {}
                    }
                }
                Event::ClientFailed { id, code } => match self.pending.remove(&id) {
                    Some(Pending::Relay { tx, req, .. }) => {
                        self.calls
                            .respond(&tx, &req, code, switchboard_sip::reason_phrase(code));
                    }
                    Some(Pending::Migrate(leg)) => {
                        self.migration_answer(w, leg, code, &Bytes::new()).await;
                    }
                    _ => {}
                },
                Event::StrayResponse { leg, resp } => {
                    let key = (matches!(leg, LegId::A), resp.cseq);
                    if (200..300).contains(&resp.code) {
                        let ack = match leg {
                            LegId::B(i)
                                if self
                                    .forks
                                    .get(i)
                                    .is_some_and(|f| f.invite.cseq == resp.cseq) =>
                            {
                                self.forks.get(i).and_then(|f| f.ack.clone())
                            }
                            _ => self.acks.get(&key).cloned(),
                        };
                        let flow = match leg {
                            LegId::A => Some(self.a.flow),
                            LegId::B(i) => self.forks.get(i).map(|f| f.dialog.flow),
                        };
                        if let (Some(ack), Some(flow)) = (ack, flow) {
                            self.ep.send_raw(&flow, ack);
                        }
                    }
                }
                Event::Hangup => {
                    self.bye_fork(w);
                    self.bye_caller("system");
                    return;
                }
            }
        }
    }

    fn resend_at(&self) -> Option<Instant> {
        if self.a_acked {
            None
        } else {
            self.a_resend.map(|r| r.0)
        }
    }

    /// Resends our 2xx to the caller; false once 64·T1 passed without ACK.
    fn resend_2xx(&mut self) -> bool {
        let Some((_, interval, give_up)) = self.a_resend else {
            return true;
        };
        if Instant::now() >= give_up {
            debug!(call_id = %self.invite.call_id, "no ACK from the caller; ending the call");
            self.a_resend = None;
            return false;
        }
        if let Some(b) = &self.a_answered {
            self.ep.send_raw(&self.a_source, b.clone());
        }
        let next = (interval * 2).min(T2);
        self.a_resend = Some((Instant::now() + next, next, give_up));
        true
    }

    /// A request on an answered call; true when the call ends.
    async fn bridged_request(
        &mut self,
        w: usize,
        leg: LegId,
        req: Request,
        tx: Option<ServerTx>,
    ) -> bool {
        let method = req.method.to_string();
        self.calls.metrics.requests_in.inc(&method);
        let Some(tx) = tx else {
            // ACK
            if leg == LegId::A && req.cseq == self.invite.cseq {
                self.a_acked = true;
                if self.forks[w].ack.is_none() {
                    // late offer: the caller's SDP answer travels in its ACK
                    let body = sdp_body_req(&req);
                    self.ack_fork(w, body);
                }
            }
            if self.anchored() && is_sdp(req.header("Content-Type"), &req.body) {
                match leg {
                    LegId::A => self.caller_answer(&req.body).await,
                    b => self.reanswer(b, &req.body).await,
                }
            }
            return false;
        };
        let other_leg = match leg {
            LegId::A => LegId::B(w),
            LegId::B(i) if i == w => LegId::A,
            LegId::B(_) => {
                self.calls
                    .respond(&tx, &req, 481, "Call/Transaction Does Not Exist");
                return false;
            }
        };
        match method.as_str() {
            "BYE" => {
                self.calls.respond(&tx, &req, 200, "OK");
                match leg {
                    LegId::A => {
                        self.bye_fork(w);
                        self.ended("caller", None);
                    }
                    LegId::B(_) => {
                        let (bytes, branch) = self.a.request("BYE", None, &[]);
                        self.send_request(&branch, "BYE", self.a.flow, bytes, Pending::Ignore);
                        self.ended("callee", None);
                    }
                }
                true
            }
            "CANCEL" => {
                // too late: the call is answered (§9.2)
                self.calls.respond(&tx, &req, 200, "OK");
                false
            }
            _ => {
                // re-INVITE, UPDATE, INFO, MESSAGE, ...: relayed as is, but
                // an anchored call's offers are answered by the manager and
                // the other leg gets the manager's offer
                let mut body: Option<(String, Vec<u8>)> =
                    sdp_or_any_body(&req).map(|(ct, b)| (ct.to_owned(), b.to_vec()));
                let mut answer = None;
                let offer = is_sdp(req.header("Content-Type"), &req.body);
                if self.anchored() && method == "INVITE" && !offer {
                    // a re-INVITE without an offer wants ours in the 200
                    self.answer_reoffer(leg, req, tx).await;
                    return false;
                }
                // (an UPDATE without an offer is a session refresh: relayed)
                if self.anchored() && matches!(method.as_str(), "INVITE" | "UPDATE") && offer {
                    match self.reoffer(leg, Some(other_leg), &req.body).await {
                        Some(Ok((ours, other_offer))) => {
                            answer = Some(ours);
                            body = other_offer.map(|o| ("application/sdp".to_owned(), o));
                        }
                        Some(Err(code)) => {
                            self.calls.respond(
                                &tx,
                                &req,
                                code,
                                switchboard_sip::reason_phrase(code),
                            );
                            return false;
                        }
                        None => {}
                    }
                }
                let dialog = match other_leg {
                    LegId::A => &mut self.a,
                    LegId::B(i) => &mut self.forks[i].dialog,
                };
                let cseq = dialog.local_cseq;
                let body = body.as_ref().map(|(ct, b)| (ct.as_str(), b.as_slice()));
                let (bytes, branch) = dialog.request(&method, body, &[]);
                let flow = dialog.flow;
                self.send_request(
                    &branch,
                    &method,
                    flow,
                    bytes,
                    Pending::Relay {
                        from: leg,
                        tx,
                        req: Box::new(req),
                        cseq,
                        answer,
                    },
                );
                false
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn relay_response(
        &mut self,
        w: usize,
        from: LegId,
        tx: &ServerTx,
        req: &Request,
        code: u16,
        bytes: &Bytes,
        cseq: u32,
        answer: Option<Vec<u8>>,
    ) {
        let Ok(Message::Response(resp)) = message::parse(bytes) else {
            return;
        };
        let is_invite = req.method.to_string() == "INVITE";
        if answer.is_some()
            && (200..300).contains(&code)
            && is_sdp(resp.header("Content-Type"), &resp.body)
        {
            let other = match from {
                LegId::A => LegId::B(w),
                LegId::B(_) => LegId::A,
            };
            self.reanswer(other, &resp.body).await;
        }
        if is_invite && (200..300).contains(&code) {
            // we are the UAC of the relayed re-INVITE: ACK it ourselves
            let (to_a, dialog) = match from {
                LegId::A => (false, &self.forks[w].dialog),
                LegId::B(_) => (true, &self.a),
            };
            let ack = Bytes::from(dialog.ack(cseq, None));
            let flow = dialog.flow;
            self.ep.send_raw(&flow, ack.clone());
            self.acks.insert((to_a, cseq), ack);
        }
        let flow = match from {
            LegId::A => self.a.flow,
            LegId::B(i) => self.forks[i].dialog.flow,
        };
        let mut b = response(req, code, &resp.reason);
        if is_invite && (101..300).contains(&code) {
            b = b.header("Contact", &our_contact(&flow));
        }
        if self.anchored() && answer.is_some() {
            if let (Some(a), true) = (answer, (200..300).contains(&code)) {
                b = b.body("application/sdp", a);
            }
        } else if let Some((ct, body)) = sdp_or_any_body_resp(&resp) {
            b = b.body(ct, body.to_vec());
        }
        self.calls.metrics.responses_out.inc(code);
        tx.respond(code, Bytes::from(b.build()));
    }

    // ----------------------------------------------------------------------
    // the end
    // ----------------------------------------------------------------------

    fn finish(&mut self) {
        let end = now_ms();
        let ring_ms = self
            .ring_at
            .map(|r| self.answer_at.unwrap_or(end) - r)
            .filter(|d| *d >= 0);
        let talk_ms = self.answer_at.map(|a| end - a);
        let cdr = Cdr {
            id: 0,
            call_id: self.invite.call_id.clone(),
            account_id: Some(self.account_id),
            caller: self
                .vars
                .get("caller_id")
                .cloned()
                .unwrap_or_else(|| self.caller.id.clone()),
            callee: self.destination.clone(),
            caller_name: self
                .vars
                .get("caller_name")
                .filter(|n| !n.is_empty())
                .cloned(),
            source: source_text(&self.a_source),
            invite_at: self.invite_at,
            ring_at: self.ring_at,
            answer_at: self.answer_at,
            end_at: Some(end),
            ring_ms,
            talk_ms,
            disposition: self.disposition.to_owned(),
            hangup_code: self.hangup_code.map(i64::from),
            hangup_reason: self.hangup_reason.clone(),
            hangup_side: Some(self.hangup_side.to_owned()),
            route_id: None,
            route: Some(self.route.id.clone()),
            caller_user: self.caller.user.clone(),
            callee_user: self
                .winner
                .and_then(|w| self.forks.get(w))
                .and_then(|f| f.user.clone())
                .or_else(|| self.dialled_user.clone()),
            node: Some(self.calls.node().to_owned()),
            rtp_sent: self.media_stats.as_ref().map(|m| m.sent),
            rtp_received: self.media_stats.as_ref().map(|m| m.received),
            rtp_lost: self.media_stats.as_ref().map(|m| m.lost),
            jitter_ms: self.media_stats.as_ref().map(|m| m.jitter_ms),
            mos: self.media_stats.as_ref().and_then(|m| m.mos),
            rtpmanager: self.media_stats.as_ref().map(|m| m.manager.clone()),
            created_at: 0,
        };
        info!(
            call_id = %cdr.call_id,
            disposition = %cdr.disposition,
            route = %self.route.id,
            "call ended"
        );
        let mut ids = vec![self.invite.call_id.clone()];
        ids.extend(self.forks.iter().map(|f| f.dialog.call_id.clone()));
        self.calls.finished(&self.invite.call_id, &ids[1..], cdr);
        // the A-leg route stays until the drain is over, so a retransmitted
        // BYE or late CANCEL still finds the call
        self.a_tx = None;
    }

    /// After the call: absorb what is still in flight (late 2xx from
    /// cancelled forks get ACK + BYE; late requests get 481), then forget
    /// the A-leg's Call-ID.
    async fn drain(mut self, rx: &mut mpsc::UnboundedReceiver<Event>) {
        let until = Instant::now() + DRAIN;
        let open = |c: &Self| {
            c.forks
                .iter()
                .any(|f| matches!(f.state, ForkState::Trying | ForkState::Early))
        };
        while open(&self) {
            let ev = tokio::select! {
                ev = rx.recv() => ev,
                () = tokio::time::sleep_until(until) => None,
            };
            let Some(ev) = ev else {
                break;
            };
            match ev {
                Event::Client { id, code, bytes } => {
                    if let Some(Pending::Invite(i)) = self.pending.remove(&id) {
                        if (200..300).contains(&code) {
                            if let Ok(Message::Response(resp)) = message::parse(&bytes) {
                                self.forks[i].dialog.uac_confirm(&resp);
                            }
                            self.ack_fork(i, None);
                            self.bye_fork(i);
                        } else if code < 200 {
                            if self.forks[i].state == ForkState::Trying {
                                self.forks[i].state = ForkState::Early;
                            }
                            if !self.forks[i].cancel_sent {
                                self.cancel_fork(i);
                            }
                            self.pending.insert(id, Pending::Invite(i));
                        } else {
                            self.forks[i].state = ForkState::Done;
                        }
                    }
                }
                Event::ClientFailed { id, .. } => {
                    if let Some(Pending::Invite(i)) = self.pending.remove(&id) {
                        self.forks[i].state = ForkState::Done;
                    }
                }
                Event::Request {
                    req, tx: Some(tx), ..
                } => {
                    self.calls
                        .respond(&tx, &req, 481, "Call/Transaction Does Not Exist");
                }
                _ => {}
            }
        }
        self.calls.remove_route(&self.invite.call_id);
    }
}

/// Where a `sip:` URI target is sent: its host must be an IP literal (no
/// DNS yet), on the caller's address family or any.
fn uri_target(uri: &str, like: &Target) -> Option<Target> {
    let u = switchboard_sip::message::Uri::parse(uri).ok()?;
    let host = u.host.trim_start_matches('[').trim_end_matches(']');
    let ip: std::net::IpAddr = host.parse().ok()?;
    let remote = std::net::SocketAddr::new(ip, u.port.unwrap_or(5060));
    if remote.is_ipv4() != like.local.is_ipv4() {
        return None;
    }
    Some(Target {
        transport: like.transport,
        local: like.local,
        remote,
        conn: None,
    })
}

fn sdp_body(resp: &Response) -> Option<(&str, &[u8])> {
    let ct = resp.header("Content-Type")?;
    (!resp.body.is_empty()).then_some((ct, resp.body.as_slice()))
}

fn sdp_body_req(req: &Request) -> Option<(&str, &[u8])> {
    let ct = req.header("Content-Type")?;
    (!req.body.is_empty()).then_some((ct, req.body.as_slice()))
}

fn sdp_or_any_body(req: &Request) -> Option<(&str, &[u8])> {
    sdp_body_req(req)
}

fn sdp_or_any_body_resp(resp: &Response) -> Option<(&str, &[u8])> {
    sdp_body(resp)
}

/// An SDP answer declining every offered stream (RFC 3264 §6: port 0).
fn decline_sdp(offer: &[u8], local: &Target) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(offer).ok()?;
    if !text.starts_with("v=0") {
        return None;
    }
    let ip = local.local.ip();
    let family = if ip.is_ipv4() { "IP4" } else { "IP6" };
    let mut out = format!(
        "v=0\r\no=switchboard 1 1 IN {family} {ip}\r\ns=switchboard\r\nc=IN {family} {ip}\r\nt=0 0\r\n"
    );
    for line in text.lines() {
        if let Some(m) = line.strip_prefix("m=") {
            let mut parts = m.split_whitespace();
            let media = parts.next().unwrap_or("audio");
            let _port = parts.next();
            let proto = parts.next().unwrap_or("RTP/AVP");
            let fmt = parts.next().unwrap_or("0");
            out.push_str(&format!("m={media} 0 {proto} {fmt}\r\n"));
        }
    }
    Some(out.into_bytes())
}
