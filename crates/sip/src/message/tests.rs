use super::*;

const REGISTER: &str = "REGISTER sip:example.com SIP/2.0\r\n\
    Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1;rport\r\n\
    Max-Forwards: 70\r\n\
    From: <sip:alice@example.com>;tag=a1\r\n\
    To: <sip:alice@example.com>\r\n\
    Call-ID: c1@192.0.2.1\r\n\
    CSeq: 1 REGISTER\r\n\
    Contact: <sip:alice@192.0.2.1:5060>;expires=60, \"A\" <sip:alice@198.51.100.1>\r\n\
    Expires: 3600\r\n\
    Content-Length: 0\r\n\r\n";

fn req(s: &str) -> Request {
    match parse(s.as_bytes()) {
        Ok(Message::Request(r)) => r,
        other => panic!("expected a request, got {other:?}"),
    }
}

#[test]
fn register_view() {
    let r = req(REGISTER);
    assert_eq!(r.method, Method::Register);
    assert!(r.method == rsip::Method::Register);
    assert_eq!(r.uri.aor(), "sip:example.com");
    assert_eq!(r.to.parsed_uri().unwrap().aor(), "sip:alice@example.com");
    assert_eq!(r.cseq, 1);
    assert_eq!(r.max_forwards, Some(70));
    assert_eq!(r.vias[0].rport, Some(None));
    assert_eq!(r.from.tag(), Some("a1"));
    assert_eq!(r.expires(), Some(3600));
    assert_eq!(r.header("m"), r.header("CONTACT"));
    assert_eq!(r.header_values("Contact").len(), 2);
    match r.contacts().unwrap() {
        Contacts::List(l) => {
            assert_eq!(l.len(), 2);
            assert_eq!(l[0].param("expires"), Some(Some("60")));
            assert_eq!(l[1].display.as_deref(), Some("A"));
        }
        Contacts::Star => panic!("not a star"),
    }
    // rsip sees the typed headers.
    assert!(
        r.headers
            .iter()
            .any(|h| matches!(h, rsip::Header::Contact(_)))
    );
}

#[test]
fn compact_forms_map_to_rsip_variants() {
    let r = req(
        "OPTIONS sip:a@b SIP/2.0\r\nv: SIP/2.0/UDP h;branch=z9hG4bK2\r\nf: <sip:a@b>;tag=1\r\nt: <sip:c@d>\r\ni: x\r\nCSeq: 2 OPTIONS\r\nl: 0\r\n\r\n",
    );
    assert!(r.headers.iter().any(|h| matches!(h, rsip::Header::Via(_))));
    assert!(
        r.headers
            .iter()
            .any(|h| matches!(h, rsip::Header::CallId(_)))
    );
    assert_eq!(r.header("Call-ID"), Some("x"));
    assert_eq!(r.header("i"), Some("x"));
}

#[test]
fn star_contact() {
    let r = req(&REGISTER.replace(
        "Contact: <sip:alice@192.0.2.1:5060>;expires=60, \"A\" <sip:alice@198.51.100.1>",
        "Contact: *",
    ));
    assert_eq!(r.contacts().unwrap(), Contacts::Star);
    let r = req(&REGISTER.replace(
        "Contact: <sip:alice@192.0.2.1:5060>;expires=60,",
        "Contact: *,",
    ));
    let err = r.contacts().unwrap_err();
    assert!(err.bad_request.unwrap().starts_with(b"SIP/2.0 400 "));
}

#[test]
fn rejections() {
    // (replace, with, expected reason fragment)
    let cases: &[(&str, &str, &str)] = &[
        ("CSeq: 1 REGISTER", "CSeq: 1 INVITE", "CSeq method"),
        ("CSeq: 1 REGISTER", "CSeq: 2147483648 REGISTER", "CSeq"),
        (
            "CSeq: 1 REGISTER",
            "CSeq: 2147483647 register",
            "CSeq method",
        ),
        ("CSeq: 1 REGISTER", "CSeq: REGISTER", "CSeq"),
        ("Max-Forwards: 70", "Max-Forwards: 256", "Max-Forwards"),
        (
            "Max-Forwards: 70",
            "Max-Forwards: 70\r\nMax-Forwards: 69",
            "multiple Max-Forwards",
        ),
        ("Call-ID: c1@192.0.2.1", "Call-ID: a b", "Call-ID"),
        (
            "Call-ID: c1@192.0.2.1",
            "Call-ID: a\r\ni: b",
            "multiple Call-ID",
        ),
        ("Content-Length: 0", "Content-Length: 5", "Content-Length"),
        (
            "Content-Length: 0",
            "Content-Length: 0\r\nl: 0",
            "multiple Content-Length",
        ),
        (
            "Expires: 3600",
            "Expires: 3600\r\nExpires: 60",
            "multiple Expires",
        ),
        (
            "Expires: 3600",
            "Date: Sat, 13 Nov 2010 23:29:00 EST",
            "Date",
        ),
        (
            "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1;rport\r\n",
            "",
            "missing Via",
        ),
        ("To: <sip:alice@example.com>\r\n", "", "missing To"),
        (
            "From: <sip:alice@example.com>;tag=a1\r\n",
            "",
            "missing From",
        ),
        (
            "REGISTER sip:example.com SIP/2.0",
            "REGISTER sip:example.com SIP/2.0 ",
            "Request-Line",
        ),
        (
            "REGISTER sip:example.com SIP/2.0",
            "REGISTER sip:example.com HTTP/1.1",
            "SIP-Version",
        ),
        (
            "Max-Forwards: 70\r\n",
            "Max-Forwards: 70\n",
            "bare CR or LF",
        ),
        ("SIP/2.0\r\n", "SIP/2.0\r\n X: y\r\n", "continuation"),
        (
            "Max-Forwards: 70\r\n",
            "Max Forwards: 70\r\n",
            "header name",
        ),
        ("Max-Forwards: 70\r\n", "Max-Forwards 70\r\n", "':'"),
    ];
    for (from, to, want) in cases {
        let msg = REGISTER.replacen(from, to, 1);
        let err = parse(msg.as_bytes()).unwrap_err();
        assert!(
            err.reason.contains(want),
            "{from} -> {to}: got {:?}",
            err.reason
        );
    }
}

#[test]
fn bad_request_is_sendable() {
    let msg = REGISTER.replace("CSeq: 1 REGISTER", "CSeq: 1 INVITE");
    let err = parse(msg.as_bytes()).unwrap_err();
    let resp = err.bad_request.unwrap();
    match parse(&resp).unwrap() {
        Message::Response(r) => {
            assert_eq!(r.code, 400);
            assert_eq!(r.call_id, "c1@192.0.2.1");
            assert!(r.to.tag().is_some());
            assert_eq!(r.vias.len(), 1);
        }
        Message::Request(_) => panic!("expected response"),
    }
    let err = parse(REGISTER.replace("SIP/2.0\r\n", "SIP/3.0\r\n").as_bytes()).unwrap_err();
    assert!(
        err.bad_request
            .unwrap()
            .starts_with(b"SIP/2.0 505 Version Not Supported\r\n")
    );
}

#[test]
fn status_lines() {
    let tail = "Via: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:a@b>;tag=2\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n";
    let ok: &[(&str, u16, &str)] = &[
        ("SIP/2.0 200 OK", 200, "OK"),
        ("SIP/2.0 100 ", 100, ""),
        ("SIP/2.0 180", 180, ""),
        ("sip/2.0 486 Busy Here", 486, "Busy Here"),
        ("SIP/2.0 699 x", 699, "x"),
    ];
    for (line, code, reason) in ok {
        match parse(format!("{line}\r\n{tail}").as_bytes()) {
            Ok(Message::Response(r)) => {
                assert_eq!(r.code, *code);
                assert_eq!(r.reason, *reason);
            }
            other => panic!("{line}: {other:?}"),
        }
    }
    for line in [
        "SIP/2.0 2000 OK",
        "SIP/2.0 099 x",
        "SIP/2.0 700 x",
        "SIP/2.0 20 OK",
        "SIP/2.0  200 OK",
        "SIP/2.0 2x0 OK",
        "SIP/2.0",
    ] {
        let err = parse(format!("{line}\r\n{tail}").as_bytes()).unwrap_err();
        assert!(err.bad_request.is_none(), "{line}");
    }
}

#[test]
fn datagram_body_rules() {
    let head = "MESSAGE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: x\r\nCSeq: 1 MESSAGE\r\n";
    let r = req(&format!("{head}Content-Length: 5\r\n\r\nhello world"));
    assert_eq!(r.body, b"hello");
    let r = req(&format!("{head}\r\nhello world"));
    assert_eq!(r.body, b"hello world");
    assert!(parse(format!("{head}Content-Length: 50\r\n\r\nhello").as_bytes()).is_err());
    assert!(parse(format!("{head}Content-Length: -1\r\n\r\n").as_bytes()).is_err());
}

#[test]
fn round_trip_serialization() {
    let r = req(REGISTER);
    let again = req(std::str::from_utf8(&r.to_bytes()).unwrap());
    assert_eq!(again, r);
}

#[test]
fn dates() {
    for (d, ok) in [
        ("Sat, 15 Oct 2005 04:44:56 GMT", true),
        ("Fri, 01 Jan 2010 16:00:00 EST", false),
        ("Sat, 15 Oct 2005 04:44:56 GMT ", false),
        ("Sat 15 Oct 2005 04:44:56 GMT", false),
        ("Xyz, 15 Oct 2005 04:44:56 GMT", false),
        ("Sat, 15 Oct 2005 04:44:5x GMT", false),
        ("Sat, 15 Ócr 2005 04:44:56 GMT", false),
    ] {
        assert_eq!(valid_date(d), ok, "{d}");
    }
}

#[test]
fn non_utf8_text_is_kept_lossily() {
    let mut msg = REGISTER
        .replace("From: <sip", "From: \"M\u{1}ller\" <sip")
        .into_bytes();
    let at = msg.iter().position(|b| *b == 1).unwrap();
    msg[at] = 0xFC; // Latin-1 u-umlaut
    let r = match parse(&msg).unwrap() {
        Message::Request(r) => r,
        Message::Response(_) => panic!(),
    };
    assert_eq!(r.from.display.as_deref(), Some("M\u{FFFD}ller"));
    assert_eq!(r.from.tag(), Some("a1"));
}

#[test]
fn unfolding() {
    assert_eq!(unfold("a  \r\n   b\r\n\tc "), "a b c");
    assert_eq!(unfold(" x"), "x");
}
