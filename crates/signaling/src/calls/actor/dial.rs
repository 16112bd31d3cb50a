//! `dial`: the B-legs. Every target becomes one or more forks (one per
//! registered contact of a user); the first 2xx wins and is bridged, the
//! others are cancelled, and a 2xx nobody wants gets its own ACK and BYE.

use bytes::Bytes;
use switchboard_sip::message::{Method, Response};
use switchboard_sip::request::{cancel_for, new_call_id};
use switchboard_sip::response::new_tag;
use switchboard_sip_stack::dialog::{Dialog, advertised, host_port, uri_addr};
use switchboard_sip_stack::target::{Target, TransportKind};
use tracing::{debug, info};

use super::anchor::is_sdp;
use super::{Call, Fork, Peer, Pending, Phase, Waited, uac_timer};
use crate::calls::leg::{Cancel, ForkAction, Outbound, best_failure};
use crate::calls::session_timer::allows_update;
use crate::calls::{ALLOW, CALL_SUPPORTED, LegId, LegView, answer_challenge, source_text};
use crate::dialplan::{DialTarget, expand};

/// A fork to start: where and to whom.
struct ForkTarget {
    uri: String,
    flow: Target,
    to: String,
    label: String,
    user: Option<String>,
    /// Route headers preloaded from the binding's Path (RFC 3327).
    path: Vec<String>,
    credentials: Option<(String, String)>,
    /// The callee's media policy: a trunk's `srtp`, else optional (plain
    /// RTP/AVP, which any phone takes).
    srtp: crate::dialplan::Srtp,
}

impl Call {
    /// Starts the forks of a `dial`; `Some` is the caller's answer when not
    /// one could be started.
    pub(super) async fn dial(&mut self, targets: &[DialTarget]) -> Option<(u16, String)> {
        let first = self.forks.len();
        let mut not_found = 0;
        let mut unavailable = 0;
        let mut starts = Vec::new();
        // a sips: call is secure on every hop (RFC 3261 §26.2.2, RFC 5630
        // §3.1.3): never placed over UDP or TCP, those targets are
        // unavailable to it
        let sips = is_sips(&self.invite.uri.scheme);
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
                    // every replica's bindings, each reached through the
                    // replica holding its flow while that one lives; a
                    // phone on a WebSocket whose connection is gone cannot
                    // be reached at all (we never open one)
                    let found: Vec<_> = self
                        .calls
                        .cluster
                        .locate(&self.calls.location, &aor, super::now_ms())
                        .await
                        .into_iter()
                        .filter(|l| self.calls.can_reach(&l.flow))
                        // the phone's own flow, wherever it is held; a
                        // sips: Contact is secure only over TLS too
                        .filter(|l| {
                            l.binding.received.transport.is_secure()
                                || !(sips || is_sips_uri(&l.binding.contact))
                        })
                        .collect();
                    if found.is_empty() {
                        unavailable += 1;
                    }
                    for l in found {
                        starts.push(ForkTarget {
                            uri: l.binding.contact.to_string(),
                            flow: l.flow,
                            to: format!("<sip:{who}@{realm}>"),
                            label: aor.clone(),
                            user: Some(user.username.to_string()),
                            path: l.path,
                            credentials: None,
                            srtp: crate::dialplan::Srtp::Optional,
                        });
                    }
                }
                DialTarget::Uri(uri) => {
                    let uri = expand(uri, &self.vars);
                    let flow = uri_target(&uri, &self.a.source, |remote, kind| {
                        self.calls.local_for(remote, kind)
                    });
                    match flow {
                        Some(flow) if sips && !flow.transport.is_secure() => unavailable += 1,
                        Some(flow) => starts.push(ForkTarget {
                            to: format!("<{uri}>"),
                            label: uri.clone(),
                            uri,
                            flow,
                            user: None,
                            path: Vec::new(),
                            credentials: None,
                            srtp: crate::dialplan::Srtp::Optional,
                        }),
                        None => not_found += 1,
                    }
                }
                DialTarget::Gateway(name) => {
                    let Some(trunk) = self.calls.trunks.get(name) else {
                        debug!(gateway = %name, "no such trunk");
                        unavailable += 1;
                        continue;
                    };
                    if sips && !trunk.transport.is_secure() {
                        debug!(gateway = %name, "a sips: call is not placed over a trunk without TLS");
                        unavailable += 1;
                        continue;
                    }
                    let number = trunk.config.rewrite(&self.destination);
                    let uri = format!("sip:{number}@{}", trunk.config.domain());
                    let Some((remote, local)) =
                        trunk.pick(|a| self.calls.local_for(a, trunk.transport))
                    else {
                        debug!(gateway = %name, addresses = ?trunk.addrs(), "no address of the trunk to send to");
                        // its name may resolve now: look again for the next call
                        trunk.resolve_soon();
                        unavailable += 1;
                        continue;
                    };
                    starts.push(ForkTarget {
                        to: format!("<{uri}>"),
                        uri,
                        flow: Target {
                            transport: trunk.transport,
                            local,
                            remote,
                            conn: None,
                        },
                        label: format!("gateway/{name}"),
                        user: None,
                        path: Vec::new(),
                        credentials: trunk
                            .config
                            .username
                            .clone()
                            .zip(trunk.config.password.clone()),
                        srtp: trunk.srtp(),
                    });
                }
            }
        }
        for t in starts {
            if !self.start_fork(t).await {
                unavailable += 1;
            }
        }
        if self.forks.len() == first {
            return Some(if unavailable == 0 && not_found > 0 {
                (404, "Not Found".into())
            } else {
                (480, "Temporarily Unavailable".into())
            });
        }
        if self.phase == Phase::Routing {
            self.update_view(|v| v.state = "ringing".into());
        }
        None
    }

    /// Sends one B-leg INVITE; false when it could not be started.
    async fn start_fork(&mut self, t: ForkTarget) -> bool {
        let index = self.forks.len();
        let offer: Option<(String, Vec<u8>)> = if self.media.is_some() {
            match self.fork_offer(index, &t.flow, t.srtp).await {
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
        let from_host = host_port(&advertised(&t.flow));
        let from = if name.is_empty() {
            format!("<sip:{caller_id}@{from_host}>;tag={tag}")
        } else {
            format!(
                "\"{}\" <sip:{caller_id}@{from_host}>;tag={tag}",
                name.replace(['"', '\\'], "")
            )
        };
        let dialog = Dialog::uac(&call_id, &tag, &from, &t.to, &t.uri, t.path, t.flow);
        let mut fork = Fork {
            peer: Peer::new(dialog),
            invite: self.invite.clone(),
            state: Outbound::Calling(Cancel::No),
            label: t.label.clone(),
            user: t.user,
            credentials: t.credentials,
            authenticated: false,
            offer,
        };
        let Some((branch, bytes)) = self.fork_invite(&mut fork, None) else {
            debug!(uri = %t.uri, "B-leg INVITE did not parse; target skipped");
            return false;
        };
        let to = fork.peer.dialog.destination();
        self.calls
            .add_dialog(&call_id, &tag, &self.mailbox, LegId::B(index));
        self.forks.push(fork);
        self.update_view(|v| {
            v.legs.push(LegView {
                leg: format!("B{}", index + 1),
                call_id: call_id.clone(),
                target: format!("{} via {}", t.label, source_text(&to)),
                state: "trying".into(),
            })
        });
        self.send_request(&branch, &Method::Invite, to, bytes, Pending::Invite(index));
        if !self.setup_recorded {
            self.setup_recorded = true;
            let us = u64::try_from(self.started.elapsed().as_micros()).unwrap_or(u64::MAX);
            self.calls.stats.record_setup(us);
        }
        true
    }

    /// The fork's INVITE (next CSeq of its dialog), with `auth` credentials
    /// when answering a challenge; keeps the parsed copy for its CANCEL.
    fn fork_invite(
        &self,
        fork: &mut Fork,
        auth: Option<(&str, &str)>,
    ) -> Option<(String, Vec<u8>)> {
        let max_forwards = self
            .invite
            .max_forwards
            .unwrap_or(70)
            .saturating_sub(1)
            .to_string();
        let supported = CALL_SUPPORTED.join(", ");
        let policy = self.policy();
        let se = policy.expires.to_string();
        let min_se = policy.min_se.to_string();
        let mut extra: Vec<(&str, &str)> = vec![
            ("Max-Forwards", &max_forwards),
            ("Allow", ALLOW),
            ("Supported", &supported),
        ];
        if policy.expires > 0 {
            extra.push(("Session-Expires", &se));
            extra.push(("Min-SE", &min_se));
        }
        if let Some(a) = auth {
            extra.push(a);
        }
        let body = fork
            .offer
            .as_ref()
            .map(|(ct, b)| (ct.as_str(), b.as_slice()));
        let out = fork.peer.dialog.invite(body, &extra);
        let Ok(switchboard_sip::message::Message::Request(parsed)) =
            switchboard_sip::message::parse(&out.bytes)
        else {
            return None;
        };
        fork.invite = parsed;
        Some((out.branch, out.bytes))
    }

    /// Whether the dial from fork `first` on is over (every fork ended).
    pub(super) fn dial_settled(&self, first: usize) -> Option<Waited> {
        let forks = &self.forks[first..];
        if forks.iter().any(|f| f.state.is_pending()) {
            return None;
        }
        let codes: Vec<u16> = forks.iter().filter_map(|f| f.state.final_code()).collect();
        let code = best_failure(&codes);
        Some(Waited::Failed(
            code,
            switchboard_sip::reason_phrase(code).to_owned(),
        ))
    }

    /// A response to a fork's INVITE (`None`: the transaction failed with
    /// `code`).
    pub(super) async fn fork_response(&mut self, i: usize, code: u16, resp: Option<&Response>) {
        let Some(resp) = resp else {
            // no answer at all (timeout, transport error): a trunk's
            // provider may have moved, so its name is looked up again
            if let Some(t) = self.forks[i]
                .label
                .strip_prefix("gateway/")
                .and_then(|name| self.calls.trunks.get(name))
            {
                t.resolve_soon();
            }
            self.forks[i].state.failure(code);
            return self.fork_view(i, &format!("failed {code}"));
        };
        match code {
            100..=199 => self.fork_provisional(i, resp).await,
            200..=299 => self.fork_2xx(i, resp).await,
            401 | 407
                if self.forks[i].credentials.is_some()
                    && !self.forks[i].authenticated
                    && self.retry_with_credentials(i, resp) => {}
            _ => {
                self.forks[i].state.failure(code);
                self.fork_view(i, &format!("failed {code}"));
            }
        }
    }

    fn fork_view(&self, i: usize, state: &str) {
        self.update_view(|v| {
            if let Some(l) = v.legs.get_mut(i + 1) {
                l.state = state.to_owned();
            }
        });
    }

    async fn fork_provisional(&mut self, i: usize, resp: &Response) {
        if self.forks[i].state.provisional() == ForkAction::SendCancel {
            self.send_cancel(i);
        }
        if resp.code == 100 || self.forks[i].state != Outbound::Ringing(Cancel::No) {
            return;
        }
        if resp.to.tag().is_some() {
            self.forks[i].peer.dialog.establish(resp);
        }
        if !self.a.state.is_open() || self.phase != Phase::Routing {
            return;
        }
        if self.ring_at.is_none() {
            let now = super::now_ms();
            self.ring_at = Some(now);
            self.update_view(|v| v.ring_at = Some(now));
        }
        self.fork_view(i, "early");
        let out = if self.media.is_some() {
            // early media: the fork's answer goes to its session, bridged
            // to the caller's
            let early = is_sdp(resp.header("Content-Type"), &resp.body)
                && self.fork_answered_media(i, &resp.body).await;
            let ours = self
                .media
                .as_ref()
                .filter(|m| early && !m.a_late)
                .map(|m| m.a_sdp.clone().into_bytes());
            let body = ours.as_deref().map(|b| ("application/sdp", b));
            self.a_response(resp.code, &resp.reason, body)
        } else {
            self.a_response(resp.code, &resp.reason, body_of(resp))
        };
        self.a_provisional(resp.code, out);
    }

    async fn fork_2xx(&mut self, i: usize, resp: &Response) {
        let wanted = self.phase != Phase::Over && !matches!(self.phase, Phase::Bridged(_));
        match self.forks[i].state.success(wanted) {
            ForkAction::Take => {}
            ForkAction::AckAndBye => return self.unwanted_2xx(i, resp),
            ForkAction::None | ForkAction::SendCancel => return self.fork_2xx_again(i, resp),
        }
        let policy = self.policy();
        let fork = &mut self.forks[i];
        fork.peer.dialog.establish(resp);
        fork.peer.timer = uac_timer(resp, policy);
        fork.peer.allows_update = allows_update(resp.header_values("Allow"));
        if self.media.is_some() || !self.invite.body.is_empty() {
            self.ack_fork(i, None);
        }
        for j in 0..self.forks.len() {
            if j != i {
                self.cancel_fork(j);
            }
        }
        if self.media.is_some() {
            if !self.fork_answered_media(i, &resp.body).await {
                // an answer the manager cannot use: no media between the
                // two, so the call cannot go on with this fork
                self.bye_fork(i);
                self.forks[i].state = Outbound::Ended(488);
                return;
            }
            if !self.a.state.is_answered() {
                let ours = self.media.as_ref().map(|m| m.a_sdp.clone().into_bytes());
                self.answered(ours.as_deref().map(|b| ("application/sdp", b)));
            }
        } else {
            self.answered(body_of(resp));
        }
        self.phase = Phase::Bridged(i);
        let label = self.forks[i].label.clone();
        info!(call = %self.id, callee = %label, "call answered");
        self.fork_view(i, "confirmed");
        self.calls
            .set_manager(&self.id, self.media.as_ref().map(|m| m.mgr.name.clone()));
    }

    /// A 2xx on a fork that already has its answer: the same dialog (a
    /// retransmission: our ACK again) or another one (a forking proxy's
    /// second answer: its own ACK and BYE, §13.2.2.4).
    pub(super) fn fork_2xx_again(&mut self, i: usize, resp: &Response) {
        let fork = &self.forks[i];
        if fork.peer.dialog.remote_tag.is_some()
            && resp.to.tag() == fork.peer.dialog.remote_tag.as_deref()
        {
            if let Some(ack) = fork.peer.ack_for(resp.cseq) {
                let to = fork.peer.dialog.destination();
                self.ep.send_raw(&to, ack);
            }
            return;
        }
        self.unwanted_2xx(i, resp);
    }

    /// ACK and BYE on the dialog `resp` establishes, which nobody wants.
    fn unwanted_2xx(&mut self, i: usize, resp: &Response) {
        let mut d = self.forks[i].peer.dialog.fork_for(resp);
        let to = d.destination();
        let ack = d.ack(resp.cseq, None);
        self.ep.send_raw(&to, Bytes::from(ack));
        d.local_cseq = d.local_cseq.max(resp.cseq + 1);
        let bye = d.request(&Method::Bye, None, &[]);
        self.send_request(&bye.branch, &Method::Bye, to, bye.bytes, Pending::Ignore);
        debug!(call = %self.id, fork = i, "an answer nobody wants: ACK and BYE");
    }

    /// Answers a trunk's digest challenge: the same INVITE with credentials,
    /// next CSeq, new branch (RFC 3261 §22.2). False if it cannot.
    fn retry_with_credentials(&mut self, i: usize, resp: &Response) -> bool {
        let Some((user, password)) = self.forks[i].credentials.clone() else {
            return false;
        };
        let uri = self.forks[i].peer.dialog.remote_target.clone();
        let Some((header, value)) = answer_challenge(resp, "INVITE", &uri, &user, &password) else {
            return false;
        };
        let stand_in = placeholder(&self.forks[i]);
        let mut fork = std::mem::replace(&mut self.forks[i], stand_in);
        let built = self.fork_invite(&mut fork, Some((header, &value)));
        fork.authenticated = true;
        fork.state = Outbound::Calling(Cancel::No);
        let to = fork.peer.dialog.destination();
        self.forks[i] = fork;
        let Some((branch, bytes)) = built else {
            return false;
        };
        self.send_request(&branch, &Method::Invite, to, bytes, Pending::Invite(i));
        true
    }

    pub(super) fn ack_fork(&mut self, i: usize, body: Option<(&str, &[u8])>) {
        let fork = &mut self.forks[i];
        let cseq = fork.invite.cseq;
        let ack = Bytes::from(fork.peer.dialog.ack(cseq, body));
        let to = fork.peer.dialog.destination();
        fork.peer.remember_ack(cseq, ack.clone());
        self.ep.send_raw(&to, ack);
    }

    pub(super) fn bye_fork(&mut self, i: usize) {
        self.send_in_dialog(LegId::B(i), &Method::Bye, None, &[], Pending::Ignore);
        self.forks[i].state.hung_up();
    }

    /// Stops a fork ringing: CANCEL now, or once it has rung (§9.1).
    pub(super) fn cancel_fork(&mut self, i: usize) {
        if self.forks[i].state.cancel() == ForkAction::SendCancel {
            self.send_cancel(i);
        }
    }

    fn send_cancel(&mut self, i: usize) {
        let f = &self.forks[i];
        let bytes = cancel_for(&f.invite);
        let branch = f
            .invite
            .vias
            .first()
            .and_then(|v| v.branch.clone())
            .unwrap_or_default();
        let to = f.peer.dialog.destination();
        self.send_request(&branch, &Method::Cancel, to, bytes, Pending::Ignore);
    }

    pub(super) fn cancel_forks(&mut self, first: usize) {
        for i in first..self.forks.len() {
            self.cancel_fork(i);
        }
    }
}

/// A stand-in while a fork is rebuilt in place.
fn placeholder(f: &Fork) -> Fork {
    Fork {
        peer: Peer::new(f.peer.dialog.clone()),
        invite: f.invite.clone(),
        state: f.state,
        label: String::new(),
        user: None,
        credentials: None,
        authenticated: true,
        offer: None,
    }
}

fn body_of(resp: &Response) -> Option<(&str, &[u8])> {
    let ct = resp.header("Content-Type")?;
    (!resp.body.is_empty()).then_some((ct, resp.body.as_slice()))
}

/// A binding's Path value (comma-joined Path headers) as Route entries.
/// Where a `sip:`/`sips:` URI target is sent: its host must be an IP
/// literal (no DNS yet), on the caller's address family; over TLS for
/// `sips:` (RFC 3261 §26.2) or the transport its `transport` parameter
/// names, else over the caller's transport (UDP for a caller on a
/// WebSocket: we open no WebSocket, and a URI naming `ws`/`wss` is not
/// reachable). `local_for` gives our address for a transport other than
/// the caller's.
fn uri_target(
    uri: &str,
    like: &Target,
    local_for: impl Fn(&std::net::SocketAddr, TransportKind) -> Option<std::net::SocketAddr>,
) -> Option<Target> {
    let u = switchboard_sip::message::Uri::parse(uri).ok()?;
    let remote = uri_addr(&u)?;
    if remote.is_ipv4() != like.local.is_ipv4() {
        return None;
    }
    let transport = match uri_transport(&u) {
        Some(t) if t.is_websocket() => return None,
        Some(t) => t,
        None if like.transport.is_websocket() => TransportKind::Udp,
        None => like.transport,
    };
    let local = if transport == like.transport {
        like.local
    } else {
        local_for(&remote, transport)?
    };
    Some(Target {
        transport,
        local,
        remote,
        conn: None,
    })
}

fn is_sips(scheme: &str) -> bool {
    scheme.eq_ignore_ascii_case("sips")
}

/// Whether a URI (as text) is a `sips:` one.
fn is_sips_uri(uri: &str) -> bool {
    uri.get(..5)
        .is_some_and(|s| s.eq_ignore_ascii_case("sips:"))
}

/// The transport a URI asks for: TLS for `sips:`, else its `transport`
/// parameter (`None`: none named, or one we do not speak).
fn uri_transport(u: &switchboard_sip::message::Uri) -> Option<TransportKind> {
    if is_sips(&u.scheme) {
        return Some(TransportKind::Tls);
    }
    TransportKind::from_token(u.param("transport")??)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_targets_take_the_transport_the_uri_asks_for() {
        let caller = Target {
            transport: TransportKind::Udp,
            local: "127.0.0.1:5060".parse().unwrap(),
            remote: "127.0.0.1:40000".parse().unwrap(),
            conn: Some(7),
        };
        let tls_local: std::net::SocketAddr = "127.0.0.1:5061".parse().unwrap();
        let tcp_local: std::net::SocketAddr = "127.0.0.1:5060".parse().unwrap();
        let local_for = |_: &std::net::SocketAddr, kind: TransportKind| match kind {
            TransportKind::Tls => Some(tls_local),
            _ => Some(tcp_local),
        };
        let cases = [
            // (URI, transport, local, remote)
            (
                "sip:1000@192.0.2.1",
                TransportKind::Udp,
                tcp_local,
                "192.0.2.1:5060",
            ),
            (
                "sips:1000@192.0.2.1",
                TransportKind::Tls,
                tls_local,
                "192.0.2.1:5061",
            ),
            (
                "sips:1000@192.0.2.1:5071",
                TransportKind::Tls,
                tls_local,
                "192.0.2.1:5071",
            ),
            (
                "sip:1000@192.0.2.1;transport=tls",
                TransportKind::Tls,
                tls_local,
                "192.0.2.1:5061",
            ),
            (
                "sip:1000@192.0.2.1;transport=TCP",
                TransportKind::Tcp,
                tcp_local,
                "192.0.2.1:5060",
            ),
            (
                "sip:1000@192.0.2.1;transport=sctp",
                TransportKind::Udp,
                tcp_local,
                "192.0.2.1:5060",
            ),
        ];
        for (uri, transport, local, remote) in cases {
            let t = uri_target(uri, &caller, local_for).unwrap();
            assert_eq!(t.transport, transport, "{uri}");
            assert_eq!(t.local, local, "{uri}");
            assert_eq!(
                t.remote,
                remote.parse::<std::net::SocketAddr>().unwrap(),
                "{uri}"
            );
            assert_eq!(t.conn, None, "{uri}: a new flow");
        }
        // we never open a WebSocket: a caller on one dials URIs over UDP,
        // and a URI asking for WS is not reachable
        let ws_caller = Target {
            transport: TransportKind::Wss,
            ..caller
        };
        let t = uri_target("sip:1000@192.0.2.1", &ws_caller, local_for).unwrap();
        assert_eq!((t.transport, t.local), (TransportKind::Udp, tcp_local));
        assert_eq!(
            uri_target("sip:1000@192.0.2.1;transport=ws", &caller, local_for),
            None
        );
        // no DNS, no other address family, no address for that transport
        assert!(uri_target("sip:1000@example.com", &caller, local_for).is_none());
        assert!(uri_target("sip:1000@[2001:db8::1]", &caller, local_for).is_none());
        assert!(uri_target("sips:1000@192.0.2.1", &caller, |_, _| None).is_none());
        assert!(is_sips_uri("sips:a@192.0.2.1") && is_sips_uri("SIPS:a@192.0.2.1"));
        assert!(!is_sips_uri("sip:a@192.0.2.1") && !is_sips_uri("sips") && !is_sips_uri(""));
    }
}
