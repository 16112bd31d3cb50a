//! RFC 5923 connection reuse: a peer that opened a TCP or TLS connection
//! and puts `;alias` on the top Via of a request it sends on it asks that
//! requests for its sent-by address (where it would listen) come on that
//! connection instead of a new one. [`via_alias`] decides whether a
//! request's Via does; [`crate::transport::Transports::add_alias`] keeps
//! it for the life of the connection.
//!
//! RFC 5923 §4 wants a TLS alias backed by the peer's certificate; phones
//! present none, so the alias is taken only for the connection's own IP
//! address (another port of the host that opened it): a peer can stand
//! for itself, never for another host. Names in sent-by are not
//! resolved, so they are no alias either.

use std::net::{IpAddr, SocketAddr};

use switchboard_sip::message::Via;

use crate::target::{Target, TransportKind};

/// The address `via` (the top Via of a request that came from `from`)
/// asks its connection to stand for: `Some` when it carries `alias`, came
/// over TCP or TLS on a connection, names that transport, and its sent-by
/// is the connection's own IP address at another port (the default port
/// of the transport when none is given).
pub fn via_alias(via: &Via, from: &Target) -> Option<SocketAddr> {
    if from.conn.is_none() || !matches!(from.transport, TransportKind::Tcp | TransportKind::Tls) {
        return None;
    }
    if !via.params.iter().any(|(name, _)| name == "alias") {
        return None;
    }
    if TransportKind::from_token(&via.transport) != Some(from.transport) {
        return None;
    }
    let host = via.host.trim_start_matches('[').trim_end_matches(']');
    let ip: IpAddr = host.parse().ok()?;
    if ip != from.remote.ip() {
        return None;
    }
    let default_port = match from.transport {
        TransportKind::Tls => 5061,
        _ => 5060,
    };
    let alias = SocketAddr::new(ip, via.port.unwrap_or(default_port));
    (alias != from.remote).then_some(alias)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from(transport: TransportKind, remote: &str, conn: Option<u64>) -> Target {
        Target {
            transport,
            local: "127.0.0.1:5061".parse().unwrap(),
            remote: remote.parse().unwrap(),
            conn,
        }
    }

    #[test]
    fn which_vias_are_aliases() {
        use TransportKind::{Tcp, Tls, Udp, Ws};
        let cases: &[(&str, TransportKind, &str, Option<&str>)] = &[
            // the ordinary case: listening port named, sent from another
            (
                "SIP/2.0/TLS 127.0.0.1:5062;branch=z9hG4bK1;alias",
                Tls,
                "127.0.0.1:40000",
                Some("127.0.0.1:5062"),
            ),
            (
                "SIP/2.0/TCP 192.0.2.7:5070;alias;branch=z9hG4bK1",
                Tcp,
                "192.0.2.7:40000",
                Some("192.0.2.7:5070"),
            ),
            // parameter names are case-insensitive; a value is tolerated
            (
                "SIP/2.0/TLS 127.0.0.1:5062;branch=z9hG4bK1;ALIAS",
                Tls,
                "127.0.0.1:40000",
                Some("127.0.0.1:5062"),
            ),
            (
                "SIP/2.0/TLS 127.0.0.1:5062;alias=yes",
                Tls,
                "127.0.0.1:40000",
                Some("127.0.0.1:5062"),
            ),
            // no port: the transport's default
            (
                "SIP/2.0/TLS 127.0.0.1;alias",
                Tls,
                "127.0.0.1:40000",
                Some("127.0.0.1:5061"),
            ),
            (
                "SIP/2.0/TCP 127.0.0.1;alias",
                Tcp,
                "127.0.0.1:40000",
                Some("127.0.0.1:5060"),
            ),
            // IPv6
            (
                "SIP/2.0/TLS [::1]:5062;alias",
                Tls,
                "[::1]:40000",
                Some("[::1]:5062"),
            ),
            // no alias parameter
            (
                "SIP/2.0/TLS 127.0.0.1:5062;branch=z9hG4bK1;rport",
                Tls,
                "127.0.0.1:40000",
                None,
            ),
            (
                "SIP/2.0/TLS 127.0.0.1:5062;aliases",
                Tls,
                "127.0.0.1:40000",
                None,
            ),
            // another host: never
            (
                "SIP/2.0/TLS 192.0.2.9:5061;alias",
                Tls,
                "127.0.0.1:40000",
                None,
            ),
            // a name: not resolved
            (
                "SIP/2.0/TLS phone.example.com:5061;alias",
                Tls,
                "127.0.0.1:40000",
                None,
            ),
            // the Via names another transport than the connection's
            (
                "SIP/2.0/TCP 127.0.0.1:5062;alias",
                Tls,
                "127.0.0.1:40000",
                None,
            ),
            // UDP and WebSocket have no alias
            (
                "SIP/2.0/UDP 127.0.0.1:5062;alias",
                Udp,
                "127.0.0.1:40000",
                None,
            ),
            (
                "SIP/2.0/WS 127.0.0.1:5062;alias",
                Ws,
                "127.0.0.1:40000",
                None,
            ),
            // the connection's own address: nothing to add
            (
                "SIP/2.0/TLS 127.0.0.1:40000;alias",
                Tls,
                "127.0.0.1:40000",
                None,
            ),
        ];
        for (via, transport, remote, want) in cases {
            let v = Via::parse(via).unwrap();
            let got = via_alias(&v, &from(*transport, remote, Some(1)));
            let want = want.map(|w| w.parse::<SocketAddr>().unwrap());
            assert_eq!(got, want, "{via} from {transport} {remote}");
        }
        // not on a connection
        let v = Via::parse("SIP/2.0/TLS 127.0.0.1:5062;alias").unwrap();
        assert_eq!(via_alias(&v, &from(Tls, "127.0.0.1:40000", None)), None);
    }
}
