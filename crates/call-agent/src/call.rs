//! The SIP side of one call, on the project's own stack (`switchboard-sip`
//! messages and digest, `switchboard-sip-stack` transports, transactions,
//! dialog and UA): register when there are credentials, INVITE answering
//! one 401/407, CANCEL at the timeout, ACK the 2xx, take the far end's BYE,
//! send ours, unregister.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use switchboard_sip::digest::{Challenge, respond};
use switchboard_sip::message::{self, Message, Method, Request, Response};
use switchboard_sip::request::cancel_for;
use switchboard_sip::response::response;
use switchboard_sip_stack::dialog::Dialog;
use switchboard_sip_stack::target::{Target, TransportKind};
use switchboard_sip_stack::transaction::{ClientEvent, TransactionKey};
use switchboard_sip_stack::transport::TransportConfig;
use switchboard_sip_stack::transport::tls::{TlsClient, TlsPeer, TlsSetup};
use switchboard_sip_stack::ua::{Inbound, RegisterParams, Ua};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::Settings;
use crate::report::{Outcome, Report};

/// The User-Agent we send.
pub const USER_AGENT: &str = concat!("switchboard-call/", env!("CARGO_PKG_VERSION"));

/// The agent's SIP presence: its UA, the server and where requests go.
pub struct Sip {
    pub ua: Ua,
    pub inbox: mpsc::Receiver<Inbound>,
    pub server: SocketAddr,
    pub local_ip: IpAddr,
    pub transport: TransportKind,
    /// The domain of our address and the Request-URI's host.
    pub domain: String,
}

/// The error of a call stopped (SIGTERM: the Job deleted) while it rang.
const STOPPED_RINGING: &str = "stopped (SIGTERM or Ctrl-C) while ringing: the call was cancelled";

/// Why we sent a CANCEL for our ringing INVITE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cancelled {
    /// Nobody answered within CALL_TIMEOUT.
    Timeout,
    /// SIGTERM or Ctrl-C.
    Stopped,
}

impl Cancelled {
    /// How long the INVITE's final answer (the 487) is waited for after
    /// the CANCEL: 64·T1 after a timeout; a stopped agent has a grace
    /// period to keep, and its CANCEL is out either way.
    fn wait(self) -> Duration {
        match self {
            Cancelled::Timeout => Duration::from_secs(32),
            Cancelled::Stopped => Duration::from_secs(5),
        }
    }

    fn error(self) -> &'static str {
        match self {
            Cancelled::Timeout => "no answer within CALL_TIMEOUT",
            Cancelled::Stopped => STOPPED_RINGING,
        }
    }
}

/// An early end of the call: the outcome and what to say about it.
pub struct Failed {
    pub outcome: Outcome,
    pub error: String,
}

fn failed(outcome: Outcome, error: impl Into<String>) -> Failed {
    Failed {
        outcome,
        error: error.into(),
    }
}

impl Sip {
    /// Resolves the server, binds on the local address that reaches it,
    /// and sets TLS up as asked.
    ///
    /// # Errors
    /// A name that does not resolve, a socket that does not bind (network),
    /// an unreadable CA file (configuration).
    pub async fn open(s: &Settings) -> Result<Sip, Failed> {
        let bare = s.server_host.trim_start_matches('[').trim_end_matches(']');
        let server = tokio::net::lookup_host((bare, s.server_port))
            .await
            .map_err(|e| {
                failed(
                    Outcome::Network,
                    format!("SIP_SERVER {}: {e}", s.server_host),
                )
            })?
            .next()
            .ok_or_else(|| {
                failed(
                    Outcome::Network,
                    format!("SIP_SERVER {}: no address", s.server_host),
                )
            })?;
        let local_ip = route_to(server)
            .await
            .map_err(|e| failed(Outcome::Network, format!("no route to {server}: {e}")))?;
        let ca = match &s.tls_ca_file {
            Some(p) => Some(std::fs::read(p).map_err(|e| {
                failed(
                    Outcome::Configuration,
                    format!("SIP_TLS_CA_FILE {}: {e}", p.display()),
                )
            })?),
            None => None,
        };
        let client = TlsClient::new(true, ca.as_deref())
            .map_err(|e| failed(Outcome::Configuration, format!("SIP_TLS_CA_FILE: {e}")))?;
        let config = TransportConfig {
            addrs: vec![local_ip],
            port: 0,
            tls: Some(TlsSetup {
                listen: None,
                client: Arc::new(client),
            }),
            ..TransportConfig::default()
        };
        let (ua, inbox) = Ua::bind_with_inbox(config, 16)
            .await
            .map_err(|e| failed(Outcome::Network, format!("binding the SIP socket: {e}")))?;
        // the certificate must name SIP_SERVER's host (a name is also sent
        // as SNI); an address is checked against the certificate's IPs
        let name = bare.parse::<IpAddr>().is_err().then(|| bare.to_owned());
        let peer = TlsPeer {
            server_name: name,
            insecure: !s.tls_verify,
            ..TlsPeer::default()
        };
        ua.transports()
            .set_tls_peers(Arc::new(move |_| Some(peer.clone())));
        Ok(Sip {
            ua,
            inbox,
            server,
            local_ip,
            transport: s.transport,
            domain: s.server_host.clone(),
        })
    }

    fn flow(&self) -> Result<Target, Failed> {
        let local = self
            .ua
            .transports()
            .local_for_kind(&self.server, self.transport)
            .ok_or_else(|| failed(Outcome::Network, "no local address for the server's family"))?;
        Ok(Target {
            transport: self.transport,
            local,
            remote: self.server,
            conn: None,
        })
    }

    /// CRLF keep-alives to the server every `every` (RFC 5626 §3.5.1 on
    /// TCP and TLS; on UDP a double CRLF as common phones send, which
    /// keeps a NAT binding open).
    pub fn keepalive(&self, every: Option<Duration>) -> Option<tokio::task::JoinHandle<()>> {
        let every = every?;
        let flow = self.flow().ok()?;
        let endpoint = Arc::clone(self.ua.endpoint());
        Some(tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tick.tick().await;
                endpoint.send_raw(&flow, Bytes::from_static(b"\r\n\r\n"));
            }
        }))
    }

    /// Registers (`expires` 0: unregisters).
    ///
    /// # Errors
    /// A refusal (rejected, with the code) or no answer (network).
    pub async fn register(
        &self,
        s: &Settings,
        report: &mut Report,
        expires: u32,
    ) -> Result<(), Failed> {
        let (Some(user), Some(password)) = (&s.user, &s.password) else {
            return Ok(());
        };
        let params = RegisterParams {
            server: self.server,
            transport: self.transport,
            user: user.clone(),
            password: password.clone(),
            domain: Some(self.domain.clone()),
            expires,
            prefer: None,
            extra_headers: vec![format!("User-Agent: {USER_AGENT}")],
        };
        // bounded by CALL_TIMEOUT too: an unreachable registrar would
        // otherwise hold the agent for Timer F (32 s) whatever the timeout
        let bounded = tokio::time::timeout(s.timeout, self.ua.register(&params));
        let registered = tokio::select! {
            r = bounded => match r {
                Ok(r) => r,
                Err(_) => {
                    report.registered = Some(false);
                    return Err(failed(Outcome::Network, "no answer to the REGISTER within CALL_TIMEOUT"));
                }
            },
            e = self.tls_refused() => {
                report.registered = Some(false);
                return Err(e);
            }
        };
        match registered {
            Ok(o) if (200..300).contains(&o.code) => {
                if expires > 0 {
                    report.registered = Some(true);
                }
                Ok(())
            }
            Ok(o) => {
                report.registered = Some(false);
                report.sip_code = Some(o.code);
                report.sip_reason = Some(o.response.reason.clone());
                Err(failed(
                    Outcome::Rejected,
                    format!("registration refused: {} {}", o.code, o.response.reason),
                ))
            }
            Err(e) => {
                report.registered = Some(false);
                Err(failed(Outcome::Network, format!("registration: {e}")))
            }
        }
    }

    /// Resolves once a TLS handshake of ours fails: the transaction layer
    /// would only notice at its timeout (32 s), the handshake says at once.
    async fn tls_refused(&self) -> Failed {
        use std::sync::atomic::Ordering::Relaxed;
        let stats = &self.ua.transports().stats;
        let before =
            stats.tls_handshake_failures.load(Relaxed) + stats.tls_handshake_timeouts.load(Relaxed);
        loop {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let now = stats.tls_handshake_failures.load(Relaxed)
                + stats.tls_handshake_timeouts.load(Relaxed);
            if now > before {
                return failed(
                    Outcome::Network,
                    format!(
                        "TLS handshake with {} failed (a certificate not trusted or not naming {}? \
                         SIP_TLS_CA_FILE, SIP_TLS_VERIFY_SERVER)",
                        self.server, self.domain
                    ),
                );
            }
        }
    }

    /// The Request-URI of the destination.
    fn dest_uri(&self, dest: &str) -> String {
        if dest.starts_with("sip:") || dest.starts_with("sips:") {
            return dest.to_owned();
        }
        let port = self.server.port();
        let t = match self.transport {
            TransportKind::Udp => String::new(),
            other => format!(";transport={}", other.via_token().to_ascii_lowercase()),
        };
        format!("sip:{dest}@{}:{port}{t}", self.domain)
    }

    /// Sends the INVITE with `sdp` and waits for its final answer, up to
    /// `timeout` or until `stop` (SIGTERM), either of which CANCELs it.
    /// Returns the dialog and the 2xx (which can still come after our
    /// CANCEL crossed it: the caller then hangs up at once when stopped).
    ///
    /// # Errors
    /// Every way a call does not get answered, as its outcome.
    pub async fn invite(
        &self,
        s: &Settings,
        sdp: &str,
        report: &mut Report,
        stop: &CancellationToken,
    ) -> Result<(Dialog, Response), Failed> {
        let flow = self.flow()?;
        let user = s.user.clone().unwrap_or_else(|| "switchboard-call".into());
        let tag = format!("{:016x}", rand::random::<u64>());
        let uri = self.dest_uri(&s.dest);
        let to_uri = uri.split(';').next().unwrap_or(&uri).to_owned();
        let mut d = Dialog::uac(
            &format!("{:032x}@switchboard-call", rand::random::<u128>()),
            &tag,
            &format!("<sip:{user}@{}>;tag={tag}", self.domain),
            &format!("<{to_uri}>"),
            &uri,
            Vec::new(),
            flow,
        );
        let body = Some(("application/sdp", sdp.as_bytes()));
        let mut extra: Vec<(String, String)> = vec![
            ("User-Agent".into(), USER_AGENT.into()),
            ("Allow".into(), "INVITE, ACK, BYE, CANCEL, OPTIONS".into()),
        ];
        let started = Instant::now();
        let deadline = tokio::time::Instant::now() + s.timeout;
        let mut authed = false;
        loop {
            // stopped before (another) INVITE goes out: a challenge or a
            // refused SRTP offer is not answered with a new call
            if stop.is_cancelled() {
                report.ring_seconds = secs(started.elapsed());
                return Err(failed(Outcome::NoAnswer, STOPPED_RINGING));
            }
            let pairs: Vec<(&str, &str)> = extra
                .iter()
                .map(|(a, b)| (a.as_str(), b.as_str()))
                .collect();
            let out = d.invite(body, &pairs);
            let request = match message::parse(&out.bytes) {
                Ok(Message::Request(r)) => r,
                _ => {
                    return Err(failed(
                        Outcome::Configuration,
                        "CALL_DEST: the INVITE would not parse",
                    ));
                }
            };
            let mut tx = self.ua.endpoint().send_request(
                TransactionKey::client(&out.branch, "INVITE"),
                true,
                d.destination(),
                Bytes::from(out.bytes),
            );
            let mut cancelled = None;
            let final_response = loop {
                let event = match cancelled {
                    None => tokio::select! {
                        e = tokio::time::timeout_at(deadline, tx.next_event()) => match e {
                            Ok(e) => e,
                            Err(_) => {
                                self.cancel(&request, &out.branch, &d);
                                cancelled = Some(Cancelled::Timeout);
                                continue;
                            }
                        },
                        () = stop.cancelled() => {
                            self.cancel(&request, &out.branch, &d);
                            cancelled = Some(Cancelled::Stopped);
                            continue;
                        }
                        f = self.tls_refused(), if self.transport == TransportKind::Tls => return Err(f),
                    },
                    // the 487 (or a 2xx that crossed the CANCEL)
                    Some(why) => tokio::time::timeout(why.wait(), tx.next_event())
                        .await
                        .ok()
                        .flatten(),
                };
                match event {
                    Some(ClientEvent::Response(code, bytes)) => {
                        let Ok(Message::Response(r)) = message::parse(&bytes) else {
                            continue;
                        };
                        if code >= 200 {
                            break r;
                        }
                    }
                    Some(ClientEvent::Timeout) | None => {
                        report.ring_seconds = secs(started.elapsed());
                        return Err(match cancelled {
                            Some(why) => {
                                report.sip_code = Some(487);
                                failed(Outcome::NoAnswer, why.error())
                            }
                            None => failed(Outcome::Network, "no response to the INVITE"),
                        });
                    }
                    Some(ClientEvent::TransportError) => {
                        return Err(failed(
                            Outcome::Network,
                            format!(
                                "could not send the INVITE over {}",
                                self.transport.via_token()
                            ),
                        ));
                    }
                }
            };
            report.ring_seconds = secs(started.elapsed());
            report.sip_code = Some(final_response.code);
            report.sip_reason = Some(final_response.reason.clone());
            let code = final_response.code;
            if (200..300).contains(&code) {
                d.establish(&final_response);
                let ack = d.ack(out.cseq, None);
                self.ua
                    .endpoint()
                    .send_raw(&d.destination(), Bytes::from(ack));
                return Ok((d, final_response));
            }
            if let Some(why) = cancelled {
                // cancelled, and the answer is not a 2xx: a 487, or a
                // challenge or refusal that crossed the CANCEL
                return Err(failed(
                    if code == 487 {
                        Outcome::NoAnswer
                    } else {
                        Outcome::of_code(code)
                    },
                    why.error(),
                ));
            }
            if (code == 401 || code == 407) && !authed {
                let (Some(user), Some(password)) = (&s.user, &s.password) else {
                    return Err(failed(
                        Outcome::Rejected,
                        format!("{code}: the server wants SIP_USER and SIP_PASSWORD"),
                    ));
                };
                let header = if code == 401 {
                    "WWW-Authenticate"
                } else {
                    "Proxy-Authenticate"
                };
                let Some(ch) = final_response
                    .header_lines(header)
                    .into_iter()
                    .find_map(|v| Challenge::parse(v).ok())
                else {
                    return Err(failed(
                        Outcome::Rejected,
                        format!("{code} without a usable challenge"),
                    ));
                };
                let cnonce = format!("{:016x}", rand::random::<u64>());
                let creds = respond(&ch, "INVITE", &uri, user, password, &cnonce, 1);
                let name = if code == 401 {
                    "Authorization"
                } else {
                    "Proxy-Authorization"
                };
                extra.push((name.into(), creds.to_header_value()));
                authed = true;
                continue;
            }
            let outcome = Outcome::of_code(code);
            let why = if code == 401 || code == 407 {
                format!(
                    "{code} {}: wrong SIP_USER or SIP_PASSWORD",
                    final_response.reason
                )
            } else {
                format!("{code} {}", final_response.reason)
            };
            return Err(failed(outcome, why));
        }
    }

    fn cancel(&self, invite: &Request, branch: &str, d: &Dialog) {
        let bytes = cancel_for(invite);
        // the CANCEL's own transaction; its 200 is all it gets
        let tx = self.ua.endpoint().send_request(
            TransactionKey::client(branch, "CANCEL"),
            false,
            d.destination(),
            Bytes::from(bytes),
        );
        tokio::spawn(async move {
            let mut tx = tx;
            while tx.next_event().await.is_some() {}
        });
    }

    /// Sends our BYE and waits up to 5 s for its answer.
    pub async fn bye(&self, d: &mut Dialog) {
        let out = d.request(&Method::Bye, None, &[("User-Agent", USER_AGENT)]);
        let mut tx = self.ua.endpoint().send_request(
            TransactionKey::client(&out.branch, "BYE"),
            false,
            d.destination(),
            Bytes::from(out.bytes),
        );
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            while let Some(ClientEvent::Response(code, _)) = tx.next_event().await {
                if code >= 200 {
                    break;
                }
            }
        })
        .await;
    }

    /// Answers the far end's requests until `until`; true when it hung up
    /// (its BYE got our 200).
    pub async fn serve_until(&mut self, d: &mut Dialog, until: tokio::time::Instant) -> bool {
        loop {
            let Ok(Some(i)) = tokio::time::timeout_at(until, self.inbox.recv()).await else {
                return false;
            };
            if answer(d, i) {
                return true;
            }
        }
    }
}

/// Answers one request from the far end; true for the dialog's BYE.
fn answer(d: &mut Dialog, i: Inbound) -> bool {
    let req = i.request;
    let (code, reason, bye) = match (&req.method, d.matches(&req)) {
        (Method::Bye, true) => (200, "OK", true),
        (Method::Options, _) => (200, "OK", false),
        // a re-INVITE could move the media; this agent keeps its stream
        (Method::Invite, true) => (488, "Not Acceptable Here", false),
        (Method::Ack, _) => return false,
        _ => (481, "Call/Transaction Does Not Exist", false),
    };
    if bye {
        let _ = d.accept(&req);
    }
    i.tx.respond(code, Bytes::from(response(&req, code, reason).build()));
    bye
}

/// The local address the kernel would send to `server` from.
async fn route_to(server: SocketAddr) -> std::io::Result<IpAddr> {
    let any: SocketAddr = if server.is_ipv4() {
        (IpAddr::from([0, 0, 0, 0]), 0).into()
    } else {
        (IpAddr::from([0u16; 8]), 0).into()
    };
    let s = tokio::net::UdpSocket::bind(any).await?;
    s.connect(server).await?;
    Ok(s.local_addr()?.ip())
}

pub fn secs(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0).round() / 1000.0
}
