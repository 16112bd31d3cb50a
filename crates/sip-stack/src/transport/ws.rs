//! SIP over WebSocket and secure WebSocket (RFC 7118): the HTTP upgrade
//! with its checks (subprotocol `sip`, the `Origin` policy), and the
//! reader and writer of an upgraded connection, one SIP message per
//! WebSocket message.
//!
//! The WebSocket protocol itself (RFC 6455: the handshake's accept key,
//! framing, masking, fragmentation, ping/pong, the close handshake, UTF-8
//! of text frames) is tokio-tungstenite's, a maintained implementation
//! with the limits we need as settings (message and frame size, write
//! buffer, a bounded HTTP request). It is built without its TLS and
//! connect features: WSS is the TLS listener's rustls acceptor in front of
//! the same upgrade, and we never open a WebSocket ourselves.
//!
//! Everything else is the stream code's ([`super::stream`]): a WebSocket
//! connection is adopted like a TCP one (it counts against the connection
//! caps from accept on), gets the TLS handshake deadline for TLS and again
//! for the upgrade, the short idle life until it has sent SIP and the long
//! one after, the message deadline once a message has started ([`Paced`]),
//! and the same bounded writer queue. Messages are not framed
//! by Content-Length (RFC 7118 §5.2): each WebSocket message is one SIP
//! message, and one larger than [`MAX_MESSAGE`] closes the connection.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::mpsc;
use tokio::time::{Instant, Sleep};
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode, header};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Error as WsError, Message, Utf8Bytes};
use tracing::debug;

use super::stream::{Close, Connection, Standing};
use super::{MAX_MESSAGE, Received, Transports};
use crate::target::TransportKind;

/// The WebSocket subprotocol of SIP (RFC 7118 §3).
pub const SUBPROTOCOL: &str = "sip";

/// Each connection's read buffer, allocated when it is upgraded
/// (tungstenite's default is 128 KiB, too much for ten thousand idle
/// phones; a larger message grows it up to the message cap).
const READ_BUFFER: usize = 8 * 1024;

/// Most bytes a connection's WebSocket layer holds for writing (our own
/// queue in front of it is bounded by messages).
const MAX_WRITE_BUFFER: usize = 4 * MAX_MESSAGE;

/// SIP over WebSocket listeners and the upgrade's policy.
#[derive(Debug, Clone, Default)]
pub struct WsSetup {
    /// Plain WebSocket port on every address (`0`: a free one); `None`:
    /// no WS listener.
    pub ws_port: Option<u16>,
    /// WebSocket over TLS port on every address (`0`: a free one), with
    /// the TLS listener's certificate; `None`: no WSS listener.
    pub wss_port: Option<u16>,
    /// Which `Origin` headers an upgrade may carry.
    pub origins: Arc<Origins>,
}

/// Which browsers' pages may open a WebSocket to us, by the `Origin`
/// header browsers send (RFC 6455 §10.2). A client that sends no `Origin`
/// is not a browser page (a SIP phone or a server) and is always let in:
/// the check is against other sites' pages using a visitor's browser, not
/// an authentication (digest does that).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Origins {
    /// No origin listed: only upgrades without an `Origin` header.
    #[default]
    NoBrowsers,
    /// `*`: any origin.
    Any,
    /// These exact origins (`scheme://host[:port]`, lower case).
    Listed(Vec<String>),
}

impl Origins {
    /// `WS_ALLOWED_ORIGINS`: comma-separated origins such as
    /// `https://pbx.example.com`, or `*`; empty: [`Origins::NoBrowsers`].
    ///
    /// # Errors
    /// An entry that is not `http(s)://host[:port]` (a path, a missing
    /// scheme), or `*` next to other entries.
    pub fn parse(list: &str) -> Result<Self, String> {
        let entries: Vec<&str> = list
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .collect();
        if entries.is_empty() {
            return Ok(Origins::NoBrowsers);
        }
        if entries.contains(&"*") {
            return if entries.len() == 1 {
                Ok(Origins::Any)
            } else {
                Err("`*` allows every origin: list nothing else with it".into())
            };
        }
        let mut out = Vec::with_capacity(entries.len());
        for e in entries {
            let normal = e.trim_end_matches('/').to_ascii_lowercase();
            let host = normal
                .strip_prefix("https://")
                .or_else(|| normal.strip_prefix("http://"))
                .ok_or_else(|| format!("{e:?}: an origin is http(s)://host[:port]"))?;
            if host.is_empty() || host.contains(['/', '?', '#', '@', ' ']) {
                return Err(format!(
                    "{e:?}: an origin is http(s)://host[:port], without path"
                ));
            }
            out.push(normal);
        }
        Ok(Origins::Listed(out))
    }

    /// Whether an upgrade with this `Origin` header (`None`: none sent)
    /// is let in.
    pub fn allows(&self, origin: Option<&str>) -> bool {
        let Some(origin) = origin else {
            return true;
        };
        match self {
            Origins::NoBrowsers => false,
            Origins::Any => true,
            Origins::Listed(list) => {
                let origin = origin.trim().trim_end_matches('/');
                list.iter().any(|o| o.eq_ignore_ascii_case(origin))
            }
        }
    }
}

/// Why an upgrade was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refused {
    /// An `Origin` the policy does not allow: 403.
    Origin,
    /// No `sip` among the offered subprotocols: 400.
    Subprotocol,
    /// Not a WebSocket upgrade at all (or not HTTP): closed.
    NotWebSocket,
}

/// The upgrade's checks: the `Origin` first (403, counted), then the
/// subprotocol. RFC 7118 §4.1 has the server answer with `sip` as the
/// subprotocol; a client that did not offer it cannot be carrying SIP,
/// and accepting it without a subprotocol would only make it fail later,
/// so it gets a 400 saying why. The request path is not looked at.
// tungstenite's callback returns its (large) ErrorResponse by value
#[allow(clippy::result_large_err)]
fn check(
    req: &Request,
    mut resp: Response,
    origins: &Origins,
    refused: &mut Option<Refused>,
) -> Result<Response, ErrorResponse> {
    let origin = req
        .headers()
        .get(header::ORIGIN)
        .map(|v| v.to_str().unwrap_or("\u{fffd}"));
    if !origins.allows(origin) {
        *refused = Some(Refused::Origin);
        return Err(error_response(
            StatusCode::FORBIDDEN,
            "Origin not allowed\n",
        ));
    }
    let offers_sip = req
        .headers()
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim().eq_ignore_ascii_case(SUBPROTOCOL));
    if !offers_sip {
        *refused = Some(Refused::Subprotocol);
        return Err(error_response(
            StatusCode::BAD_REQUEST,
            "WebSocket subprotocol \"sip\" required (RFC 7118)\n",
        ));
    }
    resp.headers_mut().insert(
        header::SEC_WEBSOCKET_PROTOCOL,
        HeaderValue::from_static(SUBPROTOCOL),
    );
    Ok(resp)
}

fn error_response(status: StatusCode, text: &str) -> ErrorResponse {
    let mut r = ErrorResponse::new(Some(text.to_owned()));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(text.len()));
    h.insert(header::CONNECTION, HeaderValue::from_static("close"));
    r
}

fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .max_write_buffer_size(MAX_WRITE_BUFFER)
        .max_message_size(Some(MAX_MESSAGE))
        .max_frame_size(Some(MAX_MESSAGE))
}

impl Transports {
    /// An accepted WS or WSS connection after its TLS handshake (if any):
    /// the upgrade under the handshake deadline, then reader and writer
    /// until either stops.
    // the handshake callback's shape is tungstenite's (see `check`)
    #[allow(clippy::result_large_err)]
    pub(super) async fn serve_ws<S>(
        &self,
        stream: S,
        origins: &Origins,
        conn: Connection,
        rx: mpsc::Receiver<Bytes>,
    ) -> Option<Close>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let pace = Arc::new(AtomicBool::new(false));
        let paced = Paced {
            inner: stream,
            limit: self.config.message_timeout,
            timer: None,
            done: pace.clone(),
        };
        // why the check refused, read after the handshake's future is gone
        let refused = OnceLock::new();
        let upgrade = tokio_tungstenite::accept_hdr_async_with_config(
            paced,
            |req: &Request, resp: Response| {
                let mut why = None;
                let checked = check(req, resp, origins, &mut why);
                if let Some(why) = why {
                    let _ = refused.set(why);
                }
                checked
            },
            Some(ws_config()),
        );
        let ws = match tokio::time::timeout(self.config.handshake_timeout, upgrade).await {
            Ok(Ok(ws)) => ws,
            Ok(Err(e)) => {
                let why = refused.get().copied().unwrap_or(Refused::NotWebSocket);
                debug!(remote = %conn.target.remote, cause = %e, ?why, "WebSocket upgrade refused");
                return Some(Close::WsRefused(why));
            }
            Err(_) => return Some(Close::UpgradeTimeout),
        };
        // the clock for a message's completion starts with the message
        pace.store(true, Ordering::Relaxed);
        let upgraded = match conn.target.transport {
            TransportKind::Wss => &self.stats.wss_upgraded,
            _ => &self.stats.ws_upgraded,
        };
        upgraded.fetch_add(1, Ordering::Relaxed);
        let (sink, messages) = ws.split();
        tokio::select! {
            close = self.ws_reader(messages, &conn, &pace) => Some(close),
            _ = ws_writer(sink, rx) => None,
        }
    }

    /// Hands each WebSocket message up as one SIP message. Returns when the
    /// peer closes, on a protocol error or an oversize message, or when a
    /// deadline passes (as [`super::stream`]'s reader: the new-connection
    /// timeout until the peer has sent SIP, the idle timeout after, and
    /// the message timeout through [`Paced`]).
    async fn ws_reader<M>(&self, mut messages: M, conn: &Connection, pace: &AtomicBool) -> Close
    where
        M: Stream<Item = Result<Message, WsError>> + Unpin,
    {
        let target = conn.target;
        let mut standing = conn.standing;
        let messages_in = match target.transport {
            TransportKind::Wss => &self.stats.wss_in,
            _ => &self.stats.ws_in,
        };
        loop {
            let deadline = match standing {
                Standing::New { until } => until,
                Standing::Proven => Instant::now() + self.config.idle_timeout,
            };
            let next = match tokio::time::timeout_at(deadline, messages.next()).await {
                Err(_) => {
                    return match standing {
                        Standing::New { .. } => Close::IdleNew,
                        Standing::Proven => Close::Idle,
                    };
                }
                Ok(None) => return Close::PeerClosed,
                Ok(Some(Err(e))) => return closed_by(&e),
                Ok(Some(Ok(m))) => m,
            };
            pace.store(true, Ordering::Relaxed);
            let bytes = match next {
                Message::Text(_) | Message::Binary(_) => next.into_data(),
                // tungstenite answers pings itself and replies to a close;
                // the stream then ends
                Message::Ping(_) | Message::Pong(_) | Message::Close(_) | Message::Frame(_) => {
                    continue;
                }
            };
            // a keep-alive of blank lines (some clients send RFC 5626's
            // CRLFs in a message): nothing to parse
            if bytes.iter().all(|b| matches!(b, b'\r' | b'\n' | b' ')) {
                continue;
            }
            messages_in.fetch_add(1, Ordering::Relaxed);
            if self.receiver.receive(bytes, target) == Received::Sip {
                standing = Standing::Proven;
                conn.spoke_sip.store(true, Ordering::Relaxed);
            }
        }
    }
}

/// Why the WebSocket layer gave up on a connection.
fn closed_by(e: &WsError) -> Close {
    match e {
        WsError::Capacity(_) => Close::TooBig,
        WsError::Io(err) if err.kind() == io::ErrorKind::TimedOut => Close::Slow,
        WsError::ConnectionClosed | WsError::AlreadyClosed | WsError::Io(_) => Close::PeerClosed,
        WsError::Protocol(p) => {
            debug!(cause = %p, "WebSocket protocol error");
            Close::WsProtocol
        }
        _ => Close::WsProtocol,
    }
}

/// Sends each queued SIP message as one WebSocket message: a text message
/// when it is UTF-8 (as RFC 7118 §5.1 asks), else a binary one.
async fn ws_writer<W>(mut sink: W, mut rx: mpsc::Receiver<Bytes>)
where
    W: Sink<Message, Error = WsError> + Unpin,
{
    while let Some(bytes) = rx.recv().await {
        let message = match Utf8Bytes::try_from(bytes.clone()) {
            Ok(text) => Message::Text(text),
            Err(_) => Message::Binary(bytes),
        };
        if sink.send(message).await.is_err() {
            return;
        }
    }
}

/// A byte stream that fails a read with `TimedOut` once a message has been
/// arriving for longer than `limit` (a slowloris: without it a peer could
/// hold a half-sent message until the idle timeout). The clock starts at
/// the first bytes read after the reader marked the previous message done
/// (`done`); bytes of a next message that came in one read with the
/// previous one start it only at its next read, so a peer that sends part
/// of a message and then nothing is left to the idle timeouts.
struct Paced<S> {
    inner: S,
    /// Zero: no deadline.
    limit: Duration,
    timer: Option<Pin<Box<Sleep>>>,
    /// Set by the reader when a message (or control frame) completed.
    done: Arc<AtomicBool>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Paced<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.done.swap(false, Ordering::Relaxed) {
            this.timer = None;
        }
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        match &polled {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before && this.timer.is_none() && !this.limit.is_zero() {
                    this.timer = Some(Box::pin(tokio::time::sleep(this.limit)));
                }
            }
            Poll::Pending => {
                if let Some(timer) = this.timer.as_mut()
                    && timer.as_mut().poll(cx).is_ready()
                {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "message not completed in time",
                    )));
                }
            }
            Poll::Ready(Err(_)) => {}
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Paced<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upgrade(headers: &[(&str, &str)]) -> Request {
        let mut b = Request::builder().uri("/any/path?x=1");
        for (n, v) in headers {
            b = b.header(*n, *v);
        }
        b.body(()).unwrap()
    }

    fn decide(origins: &Origins, headers: &[(&str, &str)]) -> Result<String, (u16, Refused)> {
        let mut refused = None;
        match check(&upgrade(headers), Response::new(()), origins, &mut refused) {
            Ok(r) => Ok(r
                .headers()
                .get(header::SEC_WEBSOCKET_PROTOCOL)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned()),
            Err(e) => Err((
                e.status().as_u16(),
                refused.unwrap_or(Refused::NotWebSocket),
            )),
        }
    }

    #[test]
    fn origin_policy() {
        let listed = Origins::parse(" https://pbx.example.com/, http://localhost:8080").unwrap();
        assert_eq!(
            listed,
            Origins::Listed(vec![
                "https://pbx.example.com".into(),
                "http://localhost:8080".into()
            ])
        );
        let cases = [
            // (policy, Origin header, allowed)
            (&listed, None, true),
            (&listed, Some("https://pbx.example.com"), true),
            (&listed, Some("HTTPS://PBX.example.com"), true),
            (&listed, Some("http://pbx.example.com"), false),
            (&listed, Some("https://pbx.example.com.evil.net"), false),
            (&listed, Some("null"), false),
            (&Origins::NoBrowsers, None, true),
            (&Origins::NoBrowsers, Some("https://pbx.example.com"), false),
            (&Origins::Any, Some("https://anything.example"), true),
        ];
        for (policy, origin, want) in cases {
            assert_eq!(policy.allows(origin), want, "{policy:?} {origin:?}");
        }
        assert_eq!(Origins::parse(""), Ok(Origins::NoBrowsers));
        assert_eq!(Origins::parse(" * "), Ok(Origins::Any));
        for bad in [
            "pbx.example.com",
            "https://pbx.example.com/phone",
            "*,https://a.example",
            "https://",
        ] {
            assert!(Origins::parse(bad).is_err(), "{bad}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_message_that_stalls_once_started_times_out() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut peer, ours) = tokio::io::duplex(64);
        let done = Arc::new(AtomicBool::new(false));
        let mut paced = Paced {
            inner: ours,
            limit: Duration::from_secs(10),
            timer: None,
            done: done.clone(),
        };
        let mut buf = [0u8; 16];
        let minute = Duration::from_secs(60);
        // nothing started: quiet is not slow (the idle timeouts judge it)
        assert!(
            tokio::time::timeout(minute, paced.read(&mut buf))
                .await
                .is_err()
        );
        peer.write_all(b"INV").await.unwrap();
        assert_eq!(paced.read(&mut buf).await.unwrap(), 3);
        // started, then stalled: the read fails after the limit
        let started = Instant::now();
        let err = paced.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), Duration::from_secs(10));
        // once the reader has the whole message, quiet is idle again
        done.store(true, Ordering::Relaxed);
        assert!(
            tokio::time::timeout(minute, paced.read(&mut buf))
                .await
                .is_err()
        );
        // and the next message starts its own clock
        peer.write_all(b"BYE").await.unwrap();
        assert_eq!(paced.read(&mut buf).await.unwrap(), 3);
        let started = Instant::now();
        assert!(paced.read(&mut buf).await.is_err());
        assert_eq!(started.elapsed(), Duration::from_secs(10));
    }

    #[test]
    fn upgrades_need_sip_and_an_allowed_origin() {
        let listed = Origins::parse("https://pbx.example.com").unwrap();
        let sip = ("Sec-WebSocket-Protocol", "sip");
        // JsSIP in a browser on the listed site
        assert_eq!(
            decide(&listed, &[sip, ("Origin", "https://pbx.example.com")]),
            Ok("sip".into())
        );
        // a phone (no Origin), offering several subprotocols
        assert_eq!(
            decide(&listed, &[("Sec-WebSocket-Protocol", "xmpp, SIP")]),
            Ok("sip".into())
        );
        assert_eq!(
            decide(&listed, &[sip, ("Origin", "https://evil.example")]),
            Err((403, Refused::Origin))
        );
        assert_eq!(
            decide(
                &Origins::NoBrowsers,
                &[sip, ("Origin", "https://pbx.example.com")]
            ),
            Err((403, Refused::Origin))
        );
        assert_eq!(decide(&listed, &[]), Err((400, Refused::Subprotocol)));
        assert_eq!(
            decide(&listed, &[("Sec-WebSocket-Protocol", "sipx")]),
            Err((400, Refused::Subprotocol))
        );
    }
}
