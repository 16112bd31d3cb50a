//! Throughput check for the registrar hot path: parse a REGISTER and build
//! its 200. Ignored by default (meaningless in debug builds); run with
//! `cargo test --release -p switchboard-sip --test perf -- --ignored --nocapture`.

#![allow(clippy::unwrap_used)] // tests may unwrap

use std::time::Instant;

use switchboard_sip::{Message, parse, reason_phrase, response};

const REGISTER: &[u8] = b"REGISTER sip:example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK776asdhds;rport\r\n\
Max-Forwards: 70\r\n\
From: \"Alice\" <sip:alice@example.com>;tag=1928301774\r\n\
To: <sip:alice@example.com>\r\n\
Call-ID: a84b4c76e66710@pc33.example.com\r\n\
CSeq: 314159 REGISTER\r\n\
Contact: <sip:alice@192.0.2.10:5060;transport=udp>;expires=3600;+sip.instance=\"<urn:uuid:00000000-0000-1000-8000-000A95A0E128>\"\r\n\
Authorization: Digest username=\"alice\", realm=\"example.com\", nonce=\"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\", uri=\"sip:example.com\", response=\"0123456789abcdef0123456789abcdef\", algorithm=MD5, qop=auth, nc=00000001, cnonce=\"abc\"\r\n\
User-Agent: Switchboard-Test/1.0\r\n\
Expires: 3600\r\n\
Content-Length: 0\r\n\r\n";

fn rate(label: &str, n: usize, f: impl Fn() -> usize) {
    let start = Instant::now();
    let mut sink = 0;
    for _ in 0..n {
        sink += f();
    }
    let elapsed = start.elapsed();
    let per_sec = n as f64 / elapsed.as_secs_f64();
    eprintln!(
        "{label:<32} {per_sec:>9.0}/s on one core ({:.2} us each, sink {sink})",
        1e6 / per_sec
    );
}

#[test]
#[ignore = "throughput measurement; run in release"]
fn register_parse_and_answer_throughput() {
    let n = 200_000;
    rate(
        "framing::check",
        n,
        || match switchboard_sip::framing::check(REGISTER, 65535) {
            Ok(Some(_)) => 1,
            _ => 0,
        },
    );
    rate("rsip SipMessage::try_from", n, || {
        usize::from(switchboard_sip::rsip::SipMessage::try_from(REGISTER).is_ok())
    });
    rate("parse", n, || usize::from(parse(REGISTER).is_ok()));
    rate("parse + contacts", n, || {
        let Message::Request(req) = parse(REGISTER).unwrap() else {
            panic!()
        };
        req.contacts().map_or(0, |_| 1)
    });
    rate("parse + contacts + build 200", n, || {
        let Message::Request(req) = parse(REGISTER).unwrap() else {
            panic!()
        };
        let _ = req.contacts().unwrap();
        response(&req, 200, reason_phrase(200))
            .header("Expires", "3600")
            .build()
            .len()
    });
}
