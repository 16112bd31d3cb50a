//! SIP over WebSocket (RFC 7118) for the tests: a WebSocket client (the
//! tokio-tungstenite client, so the server's upgrade and framing are
//! checked by another implementation than its own), over TLS with the
//! test CA for WSS, and a [`StreamPhone`] on it that speaks as JsSIP in a
//! browser does: subprotocol `sip`, one SIP message per text message, a
//! `.invalid` host in its Via and Contact (`transport=ws`/`wss`).

#![allow(clippy::unwrap_used)] // test code may unwrap

use std::net::SocketAddr;

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use rustls::pki_types::ServerName;
use switchboard_sip::message::{Message, parse};
use switchboard_sip_stack::target::TransportKind;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_rustls::TlsConnector;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue};
use tokio_tungstenite::tungstenite::{Error as WsError, Message as WsMessage};

use super::tls_phone::{Ca, Out, StreamPhone, ca, client_config, leaf};
use super::{TestServer, start_in, temp_dir};

/// A byte stream a WebSocket runs on: TCP or TLS.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

pub type Ws = WebSocketStream<Box<dyn Io>>;
pub type WsSink = SplitSink<Ws, WsMessage>;

/// Connects to `server` (over TLS trusting `tls` for WSS) and asks for a
/// WebSocket at an arbitrary path with these extra request headers
/// (`Sec-WebSocket-Protocol`, `Origin`); returns the socket's local
/// address too. The server's refusal comes back as `WsError::Http` with
/// its status.
pub async fn ws_connect(
    server: SocketAddr,
    tls: Option<&Ca>,
    headers: &[(&str, &str)],
) -> Result<(Ws, SocketAddr), WsError> {
    let tcp = TcpStream::connect(server).await?;
    let local = tcp.local_addr()?;
    let io: Box<dyn Io> = match tls {
        Some(ca) => {
            let name = ServerName::IpAddress(server.ip().into());
            Box::new(
                TlsConnector::from(client_config(ca))
                    .connect(name, tcp)
                    .await?,
            )
        }
        None => Box::new(tcp),
    };
    let scheme = if tls.is_some() { "wss" } else { "ws" };
    let mut req = format!("{scheme}://{server}/phone/ws?x=1").into_client_request()?;
    for (n, v) in headers {
        req.headers_mut().insert(
            HeaderName::from_bytes(n.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    let (ws, _response) = tokio_tungstenite::client_async(req, io).await?;
    Ok((ws, local))
}

/// Sends one SIP message as one text message.
pub async fn send(sink: &mut WsSink, bytes: &[u8]) {
    let text = String::from_utf8(bytes.to_vec()).expect("SIP as UTF-8");
    sink.send(WsMessage::text(text))
        .await
        .expect("send SIP over WebSocket");
}

/// A phone on a new WebSocket to `server` (WSS with `tls`), offering
/// subprotocol `sip` and no Origin (as a desk phone), or `origin` (as a
/// browser page).
pub async fn ws_phone(server: SocketAddr, tls: Option<&Ca>, origin: Option<&str>) -> StreamPhone {
    let mut headers = vec![("Sec-WebSocket-Protocol", "sip")];
    if let Some(o) = origin {
        headers.push(("Origin", o));
    }
    let (ws, local) = ws_connect(server, tls, &headers)
        .await
        .expect("WebSocket upgrade");
    let (sink, stream) = ws.split();
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(read_messages(stream, tx));
    let kind = if tls.is_some() {
        TransportKind::Wss
    } else {
        TransportKind::Ws
    };
    let host = format!("{:x}.invalid", rand::random::<u32>());
    StreamPhone::from_parts(Out::Ws(sink), rx, local, server, kind, host)
}

/// Each text or binary message parsed as one SIP message; ends when the
/// server closes.
async fn read_messages(mut stream: SplitStream<Ws>, tx: mpsc::Sender<Message>) {
    while let Some(Ok(m)) = stream.next().await {
        let data = match m {
            WsMessage::Text(_) | WsMessage::Binary(_) => m.into_data(),
            _ => continue,
        };
        if let Ok(sip) = parse(&data)
            && tx.send(sip).await.is_err()
        {
            return;
        }
    }
}

/// Whether the server ends `ws` (a close, an error, or the end of the
/// stream) within `wait`, whatever it sends before.
pub async fn closed_within(ws: &mut Ws, wait: std::time::Duration) -> bool {
    tokio::time::timeout(wait, async {
        while let Some(Ok(m)) = ws.next().await {
            if m.is_close() {
                break;
            }
        }
    })
    .await
    .is_ok()
}

/// A node serving WS and WSS (a certificate for 127.0.0.1 from a test
/// CA) on free ports; returns it, its WS and WSS addresses and the CA.
pub async fn ws_node(
    name: &str,
    tweak: impl FnOnce(&mut switchboard_signaling::Config),
) -> (TestServer, SocketAddr, SocketAddr, Ca) {
    let ca = ca("switchboard test CA");
    let dir = temp_dir(name);
    leaf(&dir, "server", &["127.0.0.1"], &ca);
    let (cert, key) = (dir.join("server.pem"), dir.join("server.key"));
    let s = start_in(dir, |c| {
        c.tls.tls_cert = Some(cert);
        c.tls.tls_key = Some(key);
        c.tls.ws_port = Some(0);
        c.tls.wss_port = Some(0);
        tweak(c);
    })
    .await;
    let (ws, wss) = (s.running.ws_addrs[0], s.running.wss_addrs[0]);
    (s, ws, wss, ca)
}

/// A browser's answer (as the RTCPeerConnection behind JsSIP writes one)
/// to the manager's WebRTC offer `offer`: PCMU and telephone-event, the
/// offer's mid bundled, ICE credentials, `a=setup:active`, rtcp-mux, and a
/// fingerprint of no real certificate (these tests run no DTLS).
pub fn webrtc_answer(offer: &[u8]) -> String {
    let d = switchboard_sip::sdp::parse(offer).unwrap();
    assert!(d.is_webrtc(), "{}", String::from_utf8_lossy(offer));
    let mid = d.webrtc.mid.unwrap_or_else(|| "0".into());
    let fp = (0..32u8)
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":");
    format!(
        "v=0\r\no=- 4611731400430051337 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
         a=group:BUNDLE {mid}\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0 101\r\nc=IN IP4 0.0.0.0\r\n\
         a=rtcp:9 IN IP4 0.0.0.0\r\na=ice-ufrag:EsAw\r\na=ice-pwd:P2uYro0UCOQ4zxjKXaWCBui1\r\n\
         a=ice-options:trickle\r\na=fingerprint:sha-256 {fp}\r\na=setup:active\r\n\
         a=mid:{mid}\r\na=sendrecv\r\na=rtcp-mux\r\na=rtpmap:0 PCMU/8000\r\n\
         a=rtpmap:101 telephone-event/8000\r\na=ssrc:1 cname:browser\r\n"
    )
}
