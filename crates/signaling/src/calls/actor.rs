//! One call: its legs, its dialplan actions, its CDR. Runs as one task.
//!
//! The call is in one [`Phase`]: routing (actions run, nobody answered),
//! answered by us (a media action serves the caller), bridged to a fork,
//! or over. Every event goes through [`Call::on_event`], whatever action
//! is waiting, so a BYE, a CANCEL, a stray 2xx or an API hangup is handled
//! the same way in every phase; an action only says what it waits for
//! ([`Wait`]). Each leg's protocol state lives in the typed machines of
//! [`super::leg`] and [`super::session_timer`] and in its
//! [`Dialog`](switchboard_sip_stack::dialog::Dialog).

mod anchor;
mod caller;
mod dial;
mod end;
mod events;
mod migrate;
mod relay;
mod timers;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use switchboard_sip::message::Request;
use switchboard_sip::response::new_tag;
use switchboard_sip_stack::dialog::Dialog;
use switchboard_sip_stack::endpoint::{Endpoint, server_key};
use switchboard_sip_stack::target::Target;
use switchboard_sip_stack::transaction::{ServerTx, TransactionKey};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{debug, info};

use super::leg::{Inbound, OfferSlots, Outbound};
use super::session_timer::{Policy, SessionTimer, allows_update};
use super::{CallNote, Calls, Event, LegId, LegView, new_call_uuid, source_text};
use crate::dialplan::{Action, Route, expand};
use crate::directory::UserEntry;
use crate::registrar::Now;
use anchor::{CallMedia, Migration};
pub(super) use end::Side;

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
    /// The call's id when it was chosen before (click-to-call answers the
    /// API with it); else a new one.
    pub id: Option<String>,
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
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct CallView {
    /// Our id of the call (a UUID): the API's and the CDR's key.
    pub id: String,
    /// The caller's SIP Call-ID.
    pub sip_call_id: String,
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
    /// The replica handling the call (in a cluster's shared list).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

/// Where the call is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    /// Dialplan actions run; nobody answered yet.
    Routing,
    /// We answered (a media action serves the caller), no B-leg bridged.
    Answered,
    /// Bridged to this fork.
    Bridged(usize),
    /// Ended: both sides hung up or refused, CDR pending.
    Over,
}

/// The far end of one leg: its dialog and what is in flight on it.
pub(super) struct Peer {
    pub(super) dialog: Dialog,
    pub(super) offers: OfferSlots,
    pub(super) timer: Option<SessionTimer>,
    /// It accepts UPDATE: refreshes need no SDP.
    pub(super) allows_update: bool,
    /// A session refresh of ours is in flight.
    pub(super) refreshing: bool,
    /// The ACKs we sent for 2xx to our INVITEs on this dialog, by CSeq, to
    /// answer a retransmitted 2xx (a handful: the newest are kept).
    pub(super) acks: VecDeque<(u32, Bytes)>,
    /// The SDP this leg last had accepted by the RTP manager, and the
    /// direction we last offered it: what a rejected re-offer rolls back to.
    pub(super) remote_sdp: Option<Vec<u8>>,
    pub(super) direction: switchboard_sip::sdp::Direction,
}

impl Peer {
    fn new(dialog: Dialog) -> Self {
        Self {
            dialog,
            offers: OfferSlots::default(),
            timer: None,
            allows_update: false,
            refreshing: false,
            acks: VecDeque::new(),
            remote_sdp: None,
            direction: switchboard_sip::sdp::Direction::SendRecv,
        }
    }

    pub(super) fn remember_ack(&mut self, cseq: u32, ack: Bytes) {
        if self.acks.len() >= 4 {
            self.acks.pop_front();
        }
        self.acks.push_back((cseq, ack));
    }

    pub(super) fn ack_for(&self, cseq: u32) -> Option<Bytes> {
        self.acks
            .iter()
            .rev()
            .find(|(c, _)| *c == cseq)
            .map(|(_, a)| a.clone())
    }
}

/// The caller's leg.
pub(super) struct ALeg {
    pub(super) peer: Peer,
    /// Our INVITE transaction with the caller (`None`: the API placed the
    /// call, we are the caller's UAC).
    pub(super) tx: Option<ServerTx>,
    pub(super) invite_key: Option<TransactionKey>,
    pub(super) state: Inbound,
    /// Our 2xx, resent until the ACK.
    pub(super) ok: Option<Bytes>,
    /// Where its messages come from.
    pub(super) source: Target,
}

/// One B-leg INVITE (a fork) and its dialog.
pub(super) struct Fork {
    pub(super) peer: Peer,
    /// The INVITE as sent (for its CANCEL).
    pub(super) invite: Request,
    pub(super) state: Outbound,
    pub(super) label: String,
    /// The local user this fork rings, if any.
    pub(super) user: Option<String>,
    /// A trunk's credentials, to answer its 401/407 once.
    pub(super) credentials: Option<(String, String)>,
    pub(super) authenticated: bool,
    /// The INVITE's body (content type, bytes), resent with credentials.
    pub(super) offer: Option<(String, Vec<u8>)>,
}

/// What an outstanding client transaction is for.
pub(super) enum Pending {
    Invite(usize),
    /// A request relayed from one leg into the other.
    Relay(Box<relay::Relay>),
    /// A session refresh we sent.
    Refresh(LegId),
    /// A re-INVITE moving the leg's media to another RTP manager.
    Migrate(LegId),
    /// BYE, CANCEL, ACK-and-BYE of unwanted answers: nothing follows.
    Ignore,
}

/// What an action waits for.
pub(super) enum Wait {
    /// The forks from index `first` on: an answer, or all failed, or the
    /// deadline.
    Dial {
        first: usize,
        deadline: Instant,
    },
    Deadline(Instant),
    Playback(crate::media::BoxStream<switchboard_rtpmanager_api::v1::PlaybackEvent>),
    Digits {
        max: usize,
        deadline: Instant,
    },
    /// The bridged call, until it ends.
    Bridge,
}

/// How a wait ended.
pub(super) enum Waited {
    /// The action is done (digits read, if it read any).
    Done(String),
    /// A fork answered and is bridged.
    Answered,
    /// The dial failed with this answer for the caller.
    Failed(u16, String),
    /// The call is over.
    Over,
}

pub(crate) struct Call {
    /// Our id of the call.
    id: String,
    calls: Arc<Calls>,
    ep: Arc<Endpoint>,
    mailbox: mpsc::Sender<Event>,
    invite: Request,
    a: ALeg,
    forks: Vec<Fork>,
    phase: Phase,
    pending: HashMap<u64, Pending>,
    /// Our 2xx to relayed re-INVITEs, resent until their ACK.
    unacked: Vec<relay::Unacked>,
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
    end: end::Ending,
    /// When the INVITE arrived (setup latency).
    started: Instant,
    setup_recorded: bool,
    /// No call lives past this (`MAX_CALL_DURATION`).
    deadline: Instant,
    /// The first local user a dial resolved to, for the CDR.
    dialled_user: Option<String>,
    /// Anchored media; `None` when SDP passes through unchanged.
    media: Option<CallMedia>,
    media_stats: Option<end::MediaStats>,
    /// DTMF from the caller not read by `read_digits` yet.
    digits: VecDeque<char>,
    /// A move to another RTP manager in progress.
    migration: Option<Migration>,
}

fn now_ms() -> i64 {
    Now::current().unix_ms
}

impl Call {
    pub(crate) fn new(
        calls: Arc<Calls>,
        ep: Arc<Endpoint>,
        s: Setup,
        mailbox: mpsc::Sender<Event>,
    ) -> Self {
        let id = s.id.clone().unwrap_or_else(new_call_uuid);
        let dialog = s
            .a_dialog
            .unwrap_or_else(|| Dialog::uas(&s.invite, &new_tag(), s.from));
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
        vars.insert("call_id".to_owned(), id.clone());
        vars.insert("sip_call_id".to_owned(), s.invite.call_id.clone());
        let invite_at = now_ms();
        let view = CallView {
            id: id.clone(),
            sip_call_id: s.invite.call_id.clone(),
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
            node: None,
        };
        let mut peer = Peer::new(dialog);
        peer.allows_update = allows_update(s.invite.header_values("Allow"));
        let invite_key = s.tx.as_ref().map(|t| t.key().clone());
        let deadline = s.received + calls.limits.max_duration;
        Self {
            id,
            calls,
            ep,
            mailbox,
            a: ALeg {
                peer,
                tx: s.tx,
                invite_key,
                // for a call the API placed: the user's 2xx awaits our ACK
                state: Inbound::Proceeding,
                ok: None,
                source: s.from,
            },
            forks: Vec::new(),
            phase: Phase::Routing,
            pending: HashMap::new(),
            unacked: Vec::new(),
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
            end: end::Ending::default(),
            dialled_user: None,
            started: s.received,
            setup_recorded: false,
            deadline,
            invite: s.invite,
            media: None,
            media_stats: None,
            digits: VecDeque::new(),
            migration: None,
        }
    }

    pub(crate) fn id(&self) -> &str {
        &self.id
    }

    /// The caller's dialog in the router: its Call-ID and our tag.
    pub(crate) fn a_dialog_key(&self) -> (String, String) {
        let d = &self.a.peer.dialog;
        (d.call_id.clone(), d.local_tag.clone())
    }

    /// The caller's INVITE transaction, for CANCEL.
    pub(crate) fn a_invite_key(&self) -> Option<TransactionKey> {
        self.a.invite_key.clone()
    }

    pub(crate) fn view(&self) -> Arc<Mutex<CallView>> {
        Arc::clone(&self.view)
    }

    fn update_view(&self, f: impl FnOnce(&mut CallView)) {
        let changed = match self.view.lock() {
            Ok(mut v) => {
                f(&mut v);
                v.clone()
            }
            Err(_) => return,
        };
        self.calls.note(CallNote::Changed(changed));
    }

    pub(super) fn is_originated(&self) -> bool {
        self.a.tx.is_none() && self.a.invite_key.is_none()
    }

    pub(super) fn policy(&self) -> Policy {
        Policy {
            expires: self.calls.limits.session_expires,
            min_se: self.calls.limits.min_se,
        }
    }

    pub(super) fn peer(&self, leg: LegId) -> Option<&Peer> {
        match leg {
            LegId::A => Some(&self.a.peer),
            LegId::B(i) => self.forks.get(i).map(|f| &f.peer),
        }
    }

    pub(super) fn peer_mut(&mut self, leg: LegId) -> Option<&mut Peer> {
        match leg {
            LegId::A => Some(&mut self.a.peer),
            LegId::B(i) => self.forks.get_mut(i).map(|f| &mut f.peer),
        }
    }

    /// The other side of a bridged call.
    pub(super) fn other(&self, leg: LegId) -> Option<LegId> {
        match (self.phase, leg) {
            (Phase::Bridged(w), LegId::A) => Some(LegId::B(w)),
            (Phase::Bridged(w), LegId::B(i)) if i == w => Some(LegId::A),
            _ => None,
        }
    }

    pub(crate) async fn run(mut self, mut rx: mpsc::Receiver<Event>) {
        let actions = self.route.actions.clone();
        let mut last_failure: Option<(u16, String)> = None;
        if let Some(code) = self.check_session_timer() {
            self.end_call(Side::System, "Session Interval Too Small", code, None);
        }
        if self.phase != Phase::Over && !self.calls.cluster_slot(&self.id, self.account_id).await {
            let code = self.calls.limit_code;
            let reason = if code == 486 {
                "Busy Here"
            } else {
                "Service Unavailable"
            };
            debug!(call = %self.id, account = self.account_id, "max_concurrent_calls reached on the platform");
            self.end_call(Side::System, reason, code, None);
        }
        if self.phase != Phase::Over && self.srtp_refused() {
            info!(call = %self.id, route = %self.route.id, "plain RTP offered on a route that requires SRTP");
            self.end_call(Side::System, "Not Acceptable Here", 488, None);
        }
        let anchor = !self.route.direct_media && self.calls.media.anchors();
        if anchor
            && self.phase != Phase::Over
            && let Err((code, reason)) = self.setup_media().await
        {
            self.end_call(Side::System, reason, code, None);
        }
        for action in actions.iter() {
            if self.phase == Phase::Over {
                break;
            }
            match action {
                Action::Set { name, value } => {
                    let v = expand(value, &self.vars);
                    self.vars.insert(name.clone(), v);
                }
                Action::Answer => self.ensure_answered(),
                Action::Hangup { code, reason } => {
                    let code = if *code == 0 { 480 } else { *code };
                    self.end_call(Side::System, reason, code, None);
                }
                Action::Dial { targets, timeout } => {
                    let first = self.forks.len();
                    if let Some(failed) = self.dial(targets).await {
                        last_failure = Some(failed);
                        continue;
                    }
                    let deadline = Instant::now() + *timeout;
                    match self.wait(&mut rx, Wait::Dial { first, deadline }).await {
                        Waited::Answered => {
                            self.bridge_up().await;
                            self.wait(&mut rx, Wait::Bridge).await;
                        }
                        Waited::Failed(code, reason) => last_failure = Some((code, reason)),
                        Waited::Done(_) | Waited::Over => {}
                    }
                }
                Action::PlayAudio { files, repeat } => {
                    let files = files
                        .iter()
                        .map(|f| anchor::file_name(f, &self.vars))
                        .collect();
                    self.play(&mut rx, files, *repeat).await;
                }
                Action::Echo { timeout } => self.echo(&mut rx, *timeout).await,
                Action::Record { file, both_sides } => {
                    let file = anchor::file_name(file, &self.vars);
                    self.record(file, *both_sides).await;
                }
                Action::Wait { duration } => {
                    self.ensure_answered();
                    self.wait(&mut rx, Wait::Deadline(Instant::now() + *duration))
                        .await;
                }
                Action::ReadDigits {
                    max,
                    timeout,
                    variable,
                } => {
                    self.ensure_answered();
                    let until = Wait::Digits {
                        max: *max as usize,
                        deadline: Instant::now() + *timeout,
                    };
                    if let Waited::Done(digits) = self.wait(&mut rx, until).await {
                        info!(call = %self.id, %digits, "digits read");
                        self.vars.insert(variable.clone(), digits);
                    }
                }
            }
        }
        if self.phase != Phase::Over {
            if self.a.state.is_answered() {
                // the dialplan ran out on an answered call: we hang up
                self.end_call(Side::System, "Dialplan Finished", 200, None);
            } else {
                let (code, reason) =
                    last_failure.unwrap_or((480, "Temporarily Unavailable".into()));
                self.end_call(Side::Callee, &reason, code, None);
            }
        }
        self.release_media().await;
        self.finish().await;
        self.drain(&mut rx).await;
    }

    /// Waits for `until` while serving every event of the call; returns
    /// early when the call ends.
    pub(super) async fn wait(&mut self, rx: &mut mpsc::Receiver<Event>, mut until: Wait) -> Waited {
        loop {
            if self.phase == Phase::Over {
                return Waited::Over;
            }
            if let Some(done) = self.wait_done(&mut until) {
                return done;
            }
            let deadline = match &until {
                Wait::Dial { deadline, .. }
                | Wait::Deadline(deadline)
                | Wait::Digits { deadline, .. } => Some(*deadline),
                Wait::Playback(_) | Wait::Bridge => None,
            };
            let timer = self.next_timer();
            let playback = async {
                match &mut until {
                    Wait::Playback(s) => tokio_stream::StreamExt::next(s).await,
                    _ => std::future::pending().await,
                }
            };
            tokio::select! {
                ev = rx.recv() => match ev {
                    Some(ev) => self.on_event(ev).await,
                    None => return Waited::Over,
                },
                p = playback => {
                    use switchboard_rtpmanager_api::v1::playback_event::Kind;
                    match p {
                        Some(Ok(e)) if e.kind == Kind::Started as i32 => {}
                        _ => return Waited::Done(String::new()),
                    }
                }
                () = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                    return self.wait_expired(until);
                }
                () = tokio::time::sleep_until(timer.unwrap_or_else(Instant::now)), if timer.is_some() => {
                    self.on_timers().await;
                }
            }
        }
    }

    /// Whether what `until` waits for has happened.
    fn wait_done(&mut self, until: &mut Wait) -> Option<Waited> {
        match until {
            Wait::Dial { first, .. } => {
                if let Phase::Bridged(_) = self.phase {
                    return Some(Waited::Answered);
                }
                self.dial_settled(*first)
            }
            Wait::Digits { max, .. } => {
                let end = self.digits.iter().position(|d| *d == '#');
                if end.is_none() && self.digits.len() < *max {
                    return None;
                }
                let n = end.unwrap_or(*max);
                let got: String = self.digits.drain(..n).collect();
                if end.is_some() {
                    self.digits.pop_front(); // the '#'
                }
                Some(Waited::Done(got))
            }
            Wait::Deadline(_) | Wait::Playback(_) | Wait::Bridge => None,
        }
    }

    fn wait_expired(&mut self, until: Wait) -> Waited {
        match until {
            Wait::Dial { first, .. } => {
                self.cancel_forks(first);
                Waited::Failed(480, "Temporarily Unavailable".into())
            }
            Wait::Digits { .. } => {
                let got: String = self.digits.drain(..).filter(|d| *d != '#').collect();
                Waited::Done(got)
            }
            _ => Waited::Done(String::new()),
        }
    }

    // ----------------------------------------------------------------------
    // after the end
    // ----------------------------------------------------------------------

    /// After the call: absorb what is still in flight (late 2xx from
    /// cancelled forks get ACK + BYE; late requests get 481), then leave the
    /// router.
    async fn drain(mut self, rx: &mut mpsc::Receiver<Event>) {
        let until = Instant::now() + DRAIN;
        while self.forks.iter().any(|f| f.state.is_pending()) {
            let ev = tokio::select! {
                ev = rx.recv() => ev,
                () = tokio::time::sleep_until(until) => None,
            };
            match ev {
                None => break,
                Some(Event::Request {
                    req, tx: Some(tx), ..
                }) => self
                    .calls
                    .respond(&tx, &req, 481, "Call/Transaction Does Not Exist"),
                Some(
                    ev @ (Event::Client { .. }
                    | Event::ClientFailed { .. }
                    | Event::StrayResponse { .. }),
                ) => self.on_event(ev).await,
                Some(_) => {}
            }
        }
        self.forget_invite_key();
        let (call_id, tag) = self.a_dialog_key();
        self.calls.remove_dialog(&call_id, &tag);
        for f in &self.forks {
            self.calls
                .remove_dialog(&f.peer.dialog.call_id, &f.peer.dialog.local_tag);
        }
    }

    pub(super) fn server_key_of(&self, req: &Request) -> TransactionKey {
        server_key(req, self.a.source.transport)
    }
}

/// The refresher role a 2xx to our INVITE gives us with the callee.
pub(super) fn uac_timer(
    resp: &switchboard_sip::message::Response,
    policy: Policy,
) -> Option<SessionTimer> {
    let (secs, refresher) = super::session_timer::from_uac_answer(resp, policy)?;
    Some(SessionTimer::new(
        Duration::from_secs(u64::from(secs)),
        refresher,
        Instant::now(),
    ))
}
