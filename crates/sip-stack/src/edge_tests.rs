use super::*;
use switchboard_sip::message::{Message, parse};

fn key() -> EdgeKey {
    EdgeKey::new([7; 32])
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn target(t: TransportKind, remote: &str) -> Target {
    Target {
        transport: t,
        local: addr("127.0.0.1:5060"),
        remote: addr(remote),
        conn: None,
    }
}

fn request(text: &str) -> Request {
    let text = if text.contains('\r') {
        text.to_string()
    } else {
        text.replace('\n', "\r\n")
    };
    match parse(text.as_bytes()).unwrap() {
        Message::Request(r) => r,
        Message::Response(_) => panic!("not a request"),
    }
}

fn response(bytes: &[u8]) -> Response {
    match parse(bytes).unwrap() {
        Message::Response(r) => r,
        Message::Request(_) => panic!("not a response"),
    }
}

fn forwarded(r: Relay) -> (Target, String) {
    match r {
        Relay::Forward(t, b) => (t, String::from_utf8(b.to_vec()).unwrap()),
        other => panic!("not forwarded: {other:?}"),
    }
}

const PHONE_TCP: &str = "127.0.0.9:40001";
const PEER: &str = "127.0.0.2:5062";

fn token(t: TransportKind) -> FlowToken {
    FlowToken {
        transport: t,
        flow: addr(PHONE_TCP),
        peer: addr(PEER),
    }
}

fn invite(route: &str, extra: &str) -> String {
    format!(
        "INVITE sip:alice@10.0.0.5:5060;ob SIP/2.0\n\
         Via: SIP/2.0/UDP 127.0.0.2:5062;branch=z9hG4bKpeer1;rport\n\
         Route: {route}\n\
         {extra}\
         Max-Forwards: 70\n\
         From: <sip:bob@example.com>;tag=b1\n\
         To: <sip:alice@example.com>\n\
         Call-ID: c1@peer\n\
         CSeq: 1 INVITE\n\
         Contact: <sip:sb@127.0.0.2:5062>\n\
         Content-Type: application/sdp\n\
         Content-Length: 5\n\n\
         v=0\n"
    )
}

#[test]
fn tokens_round_trip_and_refuse_forgeries() {
    let k = key();
    for t in [
        token(TransportKind::Tcp),
        token(TransportKind::Udp),
        token(TransportKind::Ws),
        token(TransportKind::Wss),
        FlowToken {
            transport: TransportKind::Udp,
            flow: addr("[2001:db8::1]:5060"),
            peer: addr("[::1]:5070"),
        },
    ] {
        let s = k.mint(&t);
        assert!(s.bytes().all(|b| b.is_ascii_hexdigit()), "{s}");
        assert_eq!(k.open(&s), Some(t));
        assert_eq!(
            EdgeKey::new([8; 32]).open(&s),
            None,
            "another cluster's key"
        );
        let mut flipped = s.clone().into_bytes();
        flipped[3] = if flipped[3] == b'0' { b'1' } else { b'0' };
        assert_eq!(k.open(std::str::from_utf8(&flipped).unwrap()), None);
    }
    for junk in ["", "zz", "0", &"ab".repeat(200), "00112233"] {
        assert_eq!(k.open(junk), None, "{junk}");
    }
}

#[test]
fn a_request_from_the_peer_goes_down_the_flow_with_record_route() {
    let k = key();
    let route = k.route(addr("127.0.0.1:5060"), &token(TransportKind::Tcp));
    let req = request(&invite(&route, ""));
    let edge = Edge::new(k);
    let (to, text) = forwarded(edge.request(&req, &target(TransportKind::Udp, PEER)));
    assert_eq!(to.transport, TransportKind::Tcp);
    assert_eq!(to.remote, addr(PHONE_TCP), "the phone's own flow");
    let fwd = request(&text);
    assert_eq!(fwd.vias.len(), 2);
    assert!(
        fwd.vias[0]
            .branch
            .as_deref()
            .unwrap()
            .starts_with("z9hG4bK-sbe-")
    );
    assert_eq!(fwd.vias[0].transport, "TCP");
    assert_eq!(
        fwd.vias[1].rport,
        Some(Some(5062)),
        "the peer's Via stamped"
    );
    assert!(fwd.header("Route").is_none(), "our Route popped");
    // double record-routing: the phone reaches us over TCP on its own
    // connection, the replicas over UDP
    let token_param = route
        .split("sb-flow=")
        .nth(1)
        .unwrap()
        .trim_end_matches('>');
    let phone_side = format!("<sip:127.0.0.1:5060;transport=tcp;lr;sb-flow={token_param}>");
    assert_eq!(
        fwd.header_values("Record-Route"),
        vec![phone_side.as_str(), route.as_str()]
    );
    assert_eq!(fwd.max_forwards, Some(69));
    assert_eq!(fwd.uri.to_string(), "sip:alice@10.0.0.5:5060;ob");
    assert_eq!(fwd.body, b"v=0\r\n");
    assert_eq!(fwd.header("Contact"), Some("<sip:sb@127.0.0.2:5062>"));
}

#[test]
fn a_request_from_the_phone_goes_to_the_peer_named_in_the_token() {
    let k = key();
    let route = k.route(addr("127.0.0.1:5060"), &token(TransportKind::Tcp));
    let bye = format!(
        "BYE sip:sb@198.51.100.7:5060 SIP/2.0\n\
         Via: SIP/2.0/TCP 10.0.0.5:5060;branch=z9hG4bKph1\n\
         Route: {route}, <sip:other.example;lr>\n\
         From: <sip:alice@example.com>;tag=a1\n\
         To: <sip:bob@example.com>;tag=b1\n\
         Call-ID: c1@peer\n\
         CSeq: 2 BYE\n\
         Content-Length: 0\n\n"
    );
    let edge = Edge::new(k);
    let (to, text) =
        forwarded(edge.request(&request(&bye), &target(TransportKind::Tcp, PHONE_TCP)));
    assert_eq!(
        (to.transport, to.remote),
        (TransportKind::Udp, addr(PEER)),
        "to the peer in the token, not to the Request-URI's host"
    );
    let fwd = request(&text);
    assert_eq!(fwd.header("Route"), Some("<sip:other.example;lr>"));
    assert!(
        fwd.header("Record-Route").is_none(),
        "in-dialog: no Record-Route"
    );
    assert_eq!(fwd.vias[1].received.as_deref(), Some("127.0.0.9"));
    assert_eq!(
        fwd.vias[1].rport,
        Some(Some(40001)),
        "the response returns on the phone's connection, rport or not"
    );
    assert_eq!(
        fwd.max_forwards,
        Some(69),
        "absent Max-Forwards counts as 70"
    );
}

#[test]
fn foreign_tokens_and_plain_routes() {
    let edge = Edge::new(key());
    let forged = EdgeKey::new([1; 32]).route(addr("127.0.0.1:5060"), &token(TransportKind::Udp));
    let from = target(TransportKind::Udp, "127.0.0.66:5060");
    assert!(matches!(
        edge.request(&request(&invite(&forged, "")), &from),
        Relay::Drop(_)
    ));
    let bare = "<sip:127.0.0.1;lr;sb-flow>";
    assert!(matches!(
        edge.request(&request(&invite(bare, "")), &from),
        Relay::Drop(_)
    ));
    let plain = "<sip:proxy.example;lr>";
    assert_eq!(
        edge.request(&request(&invite(plain, "")), &from),
        Relay::Pass
    );
}

#[test]
fn exhausted_max_forwards_is_answered_483() {
    let k = key();
    let route = k.route(addr("127.0.0.1:5060"), &token(TransportKind::Udp));
    let text = invite(&route, "").replace("Max-Forwards: 70", "Max-Forwards: 0");
    match Edge::new(k).request(&request(&text), &target(TransportKind::Udp, PEER)) {
        Relay::Reply(b) => assert!(b.starts_with(b"SIP/2.0 483 ")),
        other => panic!("{other:?}"),
    }
}

#[test]
fn responses_lose_our_via_and_only_ours() {
    let k = key();
    let route = k.route(addr("127.0.0.1:5060"), &token(TransportKind::Tcp));
    let edge = Edge::new(k);
    let (_, text) = forwarded(edge.request(
        &request(&invite(&route, "")),
        &target(TransportKind::Udp, PEER),
    ));
    let fwd = request(&text);
    let ringing = switchboard_sip::response::response(&fwd, 180, "Ringing")
        .to_tag("p1")
        .build();
    let (to, text) = forwarded(edge.response(&response(&ringing)));
    assert_eq!((to.transport, to.remote), (TransportKind::Udp, addr(PEER)));
    let back = response(text.as_bytes());
    assert_eq!(back.code, 180);
    assert_eq!(back.vias.len(), 1);
    assert_eq!(back.vias[0].branch.as_deref(), Some("z9hG4bKpeer1"));

    // a response forged with our prefix but not our MAC goes nowhere
    let forged =
        String::from_utf8(ringing.clone())
            .unwrap()
            .replacen("z9hG4bK-sbe-", "z9hG4bK-sbe-0", 1);
    assert!(matches!(
        edge.response(&response(forged.as_bytes())),
        Relay::Drop(_)
    ));
    // nor one whose next hop was rewritten
    let redirected = String::from_utf8(ringing)
        .unwrap()
        .replace("rport=5062", "rport=9");
    assert!(matches!(
        edge.response(&response(redirected.as_bytes())),
        Relay::Drop(_)
    ));
    // responses to our own requests are not the edge's
    let own = request(&invite("<sip:x;lr>", ""));
    let ok = switchboard_sip::response::response(&own, 200, "OK").build();
    assert_eq!(edge.response(&response(&ok)), Relay::Pass);
}

/// The INVITE from the peer for a TLS phone, as the edge forwards it.
fn tls_invite(edge: &Edge, route: &str) -> (Target, Request) {
    let req = request(&invite(route, ""));
    let (to, text) = forwarded(edge.request(&req, &target(TransportKind::Udp, PEER)));
    (to, request(&text))
}

#[test]
fn a_tls_phone_is_record_routed_by_our_tls_port_and_both_routes_are_removed() {
    let k = key();
    let route = k.route(addr("127.0.0.1:5060"), &token(TransportKind::Tls));
    let raw = route
        .split("sb-flow=")
        .nth(1)
        .unwrap()
        .trim_end_matches('>');
    let edge = Edge::new(k.clone());
    edge.set_tls_port(5061);
    let (to, fwd) = tls_invite(&edge, &route);
    assert_eq!(
        (to.transport, to.remote),
        (TransportKind::Tls, addr(PHONE_TCP))
    );
    assert_eq!(fwd.vias[0].transport, "TLS");
    let phone_side = format!("<sip:127.0.0.1:5061;transport=tls;lr;sb-flow={raw}>");
    assert_eq!(
        fwd.header_values("Record-Route"),
        vec![phone_side.as_str(), route.as_str()],
        "the phone's side on top"
    );

    // the phone's BYE, on its connection, routed by its route set (the
    // Record-Route as it came): to the peer, neither of our Routes left
    let bye = |route_set: &str, via: &str| {
        request(&format!(
            "BYE sip:sb@127.0.0.2:5062 SIP/2.0\n\
             Via: SIP/2.0/{via} 10.0.0.5:5061;branch=z9hG4bKph2\n\
             Route: {route_set}\n\
             From: <sip:alice@example.com>;tag=a1\n\
             To: <sip:bob@example.com>;tag=b1\n\
             Call-ID: c1@peer\n\
             CSeq: 2 BYE\n\
             Content-Length: 0\n\n"
        ))
    };
    let from_phone = bye(&format!("{phone_side}, {route}"), "TLS");
    let (to, text) = forwarded(edge.request(&from_phone, &target(TransportKind::Tls, PHONE_TCP)));
    assert_eq!((to.transport, to.remote), (TransportKind::Udp, addr(PEER)));
    assert!(request(&text).header("Route").is_none(), "{text}");

    // the peer's BYE, its route set reversed: down the flow, no Route left
    let from_peer = bye(
        &format!("{route}, {phone_side}, <sip:other.example;lr>"),
        "UDP",
    );
    let (to, text) = forwarded(edge.request(&from_peer, &target(TransportKind::Udp, PEER)));
    assert_eq!(
        (to.transport, to.remote),
        (TransportKind::Tls, addr(PHONE_TCP))
    );
    assert_eq!(
        request(&text).header("Route"),
        Some("<sip:other.example;lr>"),
        "only the routes that are not ours"
    );

    // another flow's token in second place is not ours to remove
    let other = k.route(addr("127.0.0.1:5060"), &token(TransportKind::Udp));
    let mixed = bye(&format!("{route}, {other}"), "UDP");
    let (_, text) = forwarded(edge.request(&mixed, &target(TransportKind::Udp, PEER)));
    assert_eq!(request(&text).header("Route"), Some(other.as_str()));
}

#[test]
fn without_a_tls_listener_a_tls_phone_gets_the_single_record_route() {
    let k = key();
    let route = k.route(addr("127.0.0.1:5060"), &token(TransportKind::Tls));
    let (_, fwd) = tls_invite(&Edge::new(k), &route);
    assert_eq!(fwd.header_values("Record-Route"), vec![route.as_str()]);
    // and a UDP phone never gets two
    let k = key();
    let udp = k.route(addr("127.0.0.1:5060"), &token(TransportKind::Udp));
    let edge = Edge::new(k);
    edge.set_tls_port(5061);
    let (_, fwd) = tls_invite(&edge, &udp);
    assert_eq!(fwd.header_values("Record-Route"), vec![udp.as_str()]);
}

#[test]
fn a_websocket_phone_is_record_routed_by_our_websocket_port() {
    for (kind, param, port) in [
        (TransportKind::Ws, "ws", 8088),
        (TransportKind::Wss, "wss", 8089),
    ] {
        let k = key();
        let route = k.route(addr("127.0.0.1:5060"), &token(kind));
        let raw = route
            .split("sb-flow=")
            .nth(1)
            .unwrap()
            .trim_end_matches('>');
        let edge = Edge::new(k);
        edge.set_ws_port(TransportKind::Ws, 8088);
        edge.set_ws_port(TransportKind::Wss, 8089);
        let (to, fwd) = tls_invite(&edge, &route);
        assert_eq!((to.transport, to.remote), (kind, addr(PHONE_TCP)));
        assert_eq!(fwd.vias[0].transport, kind.via_token());
        let phone_side = format!("<sip:127.0.0.1:{port};transport={param};lr;sb-flow={raw}>");
        assert_eq!(
            fwd.header_values("Record-Route"),
            vec![phone_side.as_str(), route.as_str()]
        );
    }
}
