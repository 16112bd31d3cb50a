//! A small user agent client on the project's own stack: it registers
//! (answering digest challenges, MD5 or SHA-256) and sends requests in
//! client transactions. Trunk registration and the outbound call agent
//! build on it; the tests use it as a second real peer beside sipp (which,
//! in the 3.6 series Debian ships, speaks only MD5 digest).

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use bytes::Bytes;
use switchboard_sip::digest::{Algorithm, Challenge, respond};
use switchboard_sip::message::{self, Message, Request, Response};
use switchboard_sip::response::response;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::endpoint::{Core, Endpoint};
use crate::target::{Target, TransportKind};
use crate::transaction::{ClientEvent, ServerTx, TimerConfig, TransactionKey};
use crate::transport::{TransportConfig, Transports, UDP_REQUEST_LIMIT};

/// Why a UA operation failed.
#[derive(Debug, thiserror::Error)]
pub enum UaError {
    #[error("transport: {0}")]
    Io(#[from] io::Error),
    #[error("no response (transaction timed out)")]
    Timeout,
    #[error("transport error while sending")]
    Transport,
    #[error("unparseable response: {0}")]
    BadResponse(String),
    #[error("challenged but no usable challenge (algorithms offered: {0})")]
    NoUsableChallenge(String),
    #[error("no local address of the server's family")]
    NoLocalAddress,
}

/// A request's final outcome.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub code: u16,
    pub response: Response,
    /// The transport the request finally went over (TCP when it was too
    /// large for UDP).
    pub transport: TransportKind,
}

impl Outcome {
    /// Contact header values of the response (a registrar's binding list).
    pub fn contacts(&self) -> Vec<String> {
        self.response
            .header_values("Contact")
            .into_iter()
            .map(str::to_string)
            .collect()
    }
}

/// What to register.
#[derive(Debug, Clone)]
pub struct RegisterParams {
    pub server: SocketAddr,
    pub transport: TransportKind,
    pub user: String,
    pub password: String,
    /// The AOR's domain (the To/From host); defaults to the server address.
    pub domain: Option<String>,
    pub expires: u32,
    /// Which algorithm to answer when several are challenged; None takes
    /// the first the server offered.
    pub prefer: Option<Algorithm>,
    /// Extra header lines (without CRLF), e.g. `User-Agent: x`.
    pub extra_headers: Vec<String>,
}

/// A request the far end sent to the UA, with the server transaction that
/// answers it and the flow it came on.
pub struct Inbound {
    pub request: Request,
    pub tx: ServerTx,
    pub from: Target,
}

/// Requests to a UA go to its inbox when it has one (a call in progress
/// wants the far end's BYE); without one, or when the inbox is full, they
/// are answered as a phone with no such call would.
struct UaCore {
    inbox: Option<mpsc::Sender<Inbound>>,
}

impl Core for UaCore {
    fn on_request(&self, req: Request, tx: ServerTx, from: Target) {
        let (req, tx) = match &self.inbox {
            Some(inbox) => match inbox.try_send(Inbound {
                request: req,
                tx,
                from,
            }) {
                Ok(()) => return,
                Err(mpsc::error::TrySendError::Full(i) | mpsc::error::TrySendError::Closed(i)) => {
                    (i.request, i.tx)
                }
            },
            None => (req, tx),
        };
        let (code, reason) = match req.method.to_string().as_str() {
            "OPTIONS" => (200, "OK"),
            _ => (481, "Call/Transaction Does Not Exist"),
        };
        tx.respond(code, Bytes::from(response(&req, code, reason).build()));
    }
}

/// A user agent bound to one local address (UDP and TCP).
pub struct Ua {
    endpoint: Arc<Endpoint>,
    transports: Arc<Transports>,
    shutdown: CancellationToken,
    cseq: AtomicU32,
    call_id: String,
    from_tag: String,
}

fn token() -> String {
    hex_string(rand::random::<u64>())
}

fn hex_string(v: u64) -> String {
    format!("{v:016x}")
}

impl Ua {
    /// Binds UDP and TCP on `ip` (ephemeral port).
    ///
    /// # Errors
    /// Bind failures.
    pub async fn bind(ip: IpAddr) -> Result<Self, UaError> {
        Self::bind_with(TransportConfig {
            addrs: vec![ip],
            port: 0,
            ..TransportConfig::default()
        })
        .await
    }

    /// Binds with these transport settings (TLS among them).
    ///
    /// # Errors
    /// Bind failures.
    pub async fn bind_with(config: TransportConfig) -> Result<Self, UaError> {
        Self::bind_inner(config, None).await
    }

    /// [`Ua::bind_with`], with the far end's requests delivered to the
    /// returned inbox (at most `capacity` waiting; more are answered 481).
    ///
    /// # Errors
    /// Bind failures.
    pub async fn bind_with_inbox(
        config: TransportConfig,
        capacity: usize,
    ) -> Result<(Self, mpsc::Receiver<Inbound>), UaError> {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        Ok((Self::bind_inner(config, Some(tx)).await?, rx))
    }

    async fn bind_inner(
        config: TransportConfig,
        inbox: Option<mpsc::Sender<Inbound>>,
    ) -> Result<Self, UaError> {
        let endpoint = Endpoint::new(Arc::new(UaCore { inbox }), TimerConfig::default());
        let shutdown = CancellationToken::new();
        let transports = Transports::bind(config, endpoint.clone(), shutdown.clone()).await?;
        endpoint.wire.set(transports.clone());
        Ok(Self {
            endpoint,
            transports,
            shutdown,
            cseq: AtomicU32::new(1),
            call_id: format!("{}@switchboard-ua", token()),
            from_tag: token(),
        })
    }

    /// The local UDP address.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.transports.local_addrs().into_iter().next()
    }

    /// The UA's endpoint: client transactions of requests built elsewhere
    /// (a dialog's), and messages sent outside any (a 2xx's ACK).
    pub fn endpoint(&self) -> &Arc<Endpoint> {
        &self.endpoint
    }

    /// The UA's transports (their counters, connections, TLS settings).
    pub fn transports(&self) -> &Arc<Transports> {
        &self.transports
    }

    /// Registers (or with `expires: 0` unregisters), answering one digest
    /// challenge. Returns the final response.
    ///
    /// # Errors
    /// Transport failures, timeouts, a challenge with no algorithm we can
    /// answer.
    pub async fn register(&self, p: &RegisterParams) -> Result<Outcome, UaError> {
        let first = self.register_once(p, None).await?;
        if first.code != 401 && first.code != 407 {
            return Ok(first);
        }
        let header = if first.code == 401 {
            "WWW-Authenticate"
        } else {
            "Proxy-Authenticate"
        };
        let challenges: Vec<Challenge> = first
            .response
            .headers
            .iter()
            .filter_map(|h| {
                let line = h.to_string();
                let (name, value) = line.split_once(':')?;
                name.trim()
                    .eq_ignore_ascii_case(header)
                    .then(|| Challenge::parse(value.trim()).ok())
                    .flatten()
            })
            .collect();
        let chosen = match p.prefer {
            Some(alg) => challenges.iter().find(|c| c.algorithm == alg),
            None => challenges.first(),
        }
        .ok_or_else(|| {
            UaError::NoUsableChallenge(
                challenges
                    .iter()
                    .map(|c| c.algorithm.name())
                    .collect::<Vec<_>>()
                    .join(","),
            )
        })?;
        let uri = format!("sip:{}", host_port(&p.server));
        let creds = respond(chosen, "REGISTER", &uri, &p.user, &p.password, &token(), 1);
        let auth_header = if first.code == 401 {
            "Authorization"
        } else {
            "Proxy-Authorization"
        };
        self.register_once(
            p,
            Some(format!("{auth_header}: {}", creds.to_header_value())),
        )
        .await
    }

    async fn register_once(
        &self,
        p: &RegisterParams,
        auth: Option<String>,
    ) -> Result<Outcome, UaError> {
        let local = self
            .transports
            .local_for_kind(&p.server, p.transport)
            .ok_or(UaError::NoLocalAddress)?;
        let domain = p.domain.clone().unwrap_or_else(|| host(&p.server));
        let cseq = self.cseq.fetch_add(1, Ordering::Relaxed);
        let build = |transport: TransportKind, branch: &str| {
            let mut m = format!(
                "REGISTER sip:{server} SIP/2.0\r\n\
                 Via: SIP/2.0/{t} {local};branch={branch};rport\r\n\
                 Max-Forwards: 70\r\n\
                 From: <sip:{user}@{domain}>;tag={tag}\r\n\
                 To: <sip:{user}@{domain}>\r\n\
                 Call-ID: {call_id}\r\n\
                 CSeq: {cseq} REGISTER\r\n\
                 Contact: <sip:{user}@{local};transport={tl}>\r\n\
                 Expires: {expires}\r\n",
                server = host_port(&p.server),
                t = transport.via_token(),
                local = host_port(&local),
                user = p.user,
                tag = self.from_tag,
                call_id = self.call_id,
                tl = transport.via_token().to_ascii_lowercase(),
                expires = p.expires,
            );
            if let Some(a) = &auth {
                m.push_str(a);
                m.push_str("\r\n");
            }
            for h in &p.extra_headers {
                m.push_str(h);
                m.push_str("\r\n");
            }
            m.push_str("Content-Length: 0\r\n\r\n");
            m
        };
        self.send(p.server, p.transport, "REGISTER", build).await
    }

    /// Sends a request built by `build(transport, branch)` in a client
    /// transaction and waits for its final response. A request larger than
    /// 1300 bytes meant for UDP is rebuilt for TCP (RFC 3261 §18.1.1).
    ///
    /// # Errors
    /// Timeout, transport error, unparseable response.
    pub async fn send(
        &self,
        server: SocketAddr,
        transport: TransportKind,
        method: &str,
        build: impl Fn(TransportKind, &str) -> String,
    ) -> Result<Outcome, UaError> {
        let branch = format!("z9hG4bK{}", token());
        let mut transport = transport;
        let mut text = build(transport, &branch);
        if transport == TransportKind::Udp && text.len() > UDP_REQUEST_LIMIT {
            transport = TransportKind::Tcp;
            text = build(transport, &branch);
        }
        let local = self
            .transports
            .local_for_kind(&server, transport)
            .ok_or(UaError::NoLocalAddress)?;
        let target = Target {
            transport,
            local,
            remote: server,
            conn: None,
        };
        let key = TransactionKey::client(&branch, method);
        let mut tx = self
            .endpoint
            .send_request(key, method == "INVITE", target, Bytes::from(text));
        loop {
            match tx.next_event().await {
                Some(ClientEvent::Response(code, bytes)) => {
                    if code < 200 {
                        continue;
                    }
                    return match message::parse(&bytes) {
                        Ok(Message::Response(response)) => Ok(Outcome {
                            code,
                            response,
                            transport,
                        }),
                        Ok(Message::Request(_)) => Err(UaError::BadResponse(
                            "a request where a response was due".into(),
                        )),
                        Err(e) => Err(UaError::BadResponse(e.reason)),
                    };
                }
                Some(ClientEvent::Timeout) | None => return Err(UaError::Timeout),
                Some(ClientEvent::TransportError) => return Err(UaError::Transport),
            }
        }
    }

    /// Closes the sockets.
    pub fn close(&self) {
        self.shutdown.cancel();
    }
}

impl Drop for Ua {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

fn host(addr: &SocketAddr) -> String {
    match addr {
        SocketAddr::V4(a) => a.ip().to_string(),
        SocketAddr::V6(a) => format!("[{}]", a.ip()),
    }
}

fn host_port(addr: &SocketAddr) -> String {
    format!("{}:{}", host(addr), addr.port())
}

/// How long [`Ua::register`] may take at most, for callers that want a
/// bound tighter than Timer F: two transactions of 64·T1 each.
pub const REGISTER_TIMEOUT: Duration = Duration::from_secs(64);
