//! Where a message goes or came from: the flow it uses on the wire.

use std::fmt;
use std::net::SocketAddr;

/// The transport protocol a message travels on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransportKind {
    Udp,
    Tcp,
    Tls,
    /// SIP over WebSocket (RFC 7118): only ever on a connection the peer
    /// opened to us (we never open one).
    Ws,
    /// SIP over secure WebSocket (RFC 7118, WebSocket over TLS).
    Wss,
}

impl TransportKind {
    /// Reliable transports need no retransmissions (RFC 3261 §17.1.1.2, §17.2.1).
    pub fn is_reliable(self) -> bool {
        !matches!(self, TransportKind::Udp)
    }

    /// WebSocket flows: reachable only over the connection the peer opened.
    pub fn is_websocket(self) -> bool {
        matches!(self, TransportKind::Ws | TransportKind::Wss)
    }

    /// Encrypted on the wire (TLS, WebSocket over TLS).
    pub fn is_secure(self) -> bool {
        matches!(self, TransportKind::Tls | TransportKind::Wss)
    }

    /// The token used in a Via header (`SIP/2.0/UDP`).
    pub fn via_token(self) -> &'static str {
        match self {
            TransportKind::Udp => "UDP",
            TransportKind::Tcp => "TCP",
            TransportKind::Tls => "TLS",
            TransportKind::Ws => "WS",
            TransportKind::Wss => "WSS",
        }
    }

    /// The `transport` URI parameter's value (`udp`, `tcp`, `tls`, `ws`,
    /// `wss`).
    pub fn uri_param(self) -> &'static str {
        match self {
            TransportKind::Udp => "udp",
            TransportKind::Tcp => "tcp",
            TransportKind::Tls => "tls",
            TransportKind::Ws => "ws",
            TransportKind::Wss => "wss",
        }
    }

    /// A Via token or `transport` parameter, in any case; `None` for one
    /// we do not speak (SCTP).
    pub fn from_token(token: &str) -> Option<Self> {
        [
            TransportKind::Udp,
            TransportKind::Tcp,
            TransportKind::Tls,
            TransportKind::Ws,
            TransportKind::Wss,
        ]
        .into_iter()
        .find(|k| k.via_token().eq_ignore_ascii_case(token))
    }
}

impl fmt::Display for TransportKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.via_token())
    }
}

/// A flow: the transport, the local socket and the remote address. For
/// streams, `conn` names the connection so a response goes back on the
/// connection its request came on (RFC 3261 §18.2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Target {
    pub transport: TransportKind,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    /// Stream connection id, if the message came on (or must use) a known connection.
    pub conn: Option<u64>,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.transport, self.remote)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_in_any_case() {
        for k in [
            TransportKind::Udp,
            TransportKind::Tcp,
            TransportKind::Tls,
            TransportKind::Ws,
            TransportKind::Wss,
        ] {
            assert_eq!(TransportKind::from_token(k.via_token()), Some(k));
            assert_eq!(TransportKind::from_token(k.uri_param()), Some(k));
        }
        assert_eq!(TransportKind::from_token("wSs"), Some(TransportKind::Wss));
        assert_eq!(TransportKind::from_token("SCTP"), None);
        assert!(TransportKind::Ws.is_reliable() && TransportKind::Ws.is_websocket());
        assert!(TransportKind::Wss.is_secure() && !TransportKind::Ws.is_secure());
    }
}
