//! RFC 4475 torture messages against `parse()`.
//!
//! Fixtures live in `tests/torture/<tag>.sip`, named after the RFC's tags;
//! see `tests/torture/README.md` for where the bytes come from. Every file
//! is parsed; the table gives the verdict, and valid messages also get their
//! view checked. Where the RFC wants a specific response for a message that
//! is fine at parse level (416, 420, 415, 406, 483...), the test asserts
//! that the view exposes what the application needs to send it.

#![allow(clippy::unwrap_used)] // tests may unwrap

use std::path::Path;

use switchboard_sip::digest::{Credentials, DigestError};
use switchboard_sip::{
    Contacts, Message, Method, NameAddr, ParseError, Request, Response, Uri, parse,
};

#[derive(Debug, Clone, Copy, PartialEq)]
enum Verdict {
    /// Parses.
    Accept,
    /// Refused; the reason contains the fragment; a ready response with this
    /// status code is expected (`None`: nothing can be sent).
    Reject(&'static str, Option<u16>),
}
use Verdict::{Accept, Reject};

/// (tag, RFC section, verdict)
const TABLE: &[(&str, &str, Verdict)] = &[
    // 3.1.1 valid messages
    ("wsinv", "3.1.1.1", Accept),
    ("intmeth", "3.1.1.2", Accept),
    ("esc01", "3.1.1.3", Accept),
    ("escnull", "3.1.1.4", Accept),
    ("esc02", "3.1.1.5", Accept),
    ("lwsdisp", "3.1.1.6", Accept),
    ("longreq", "3.1.1.7", Accept),
    ("dblreq", "3.1.1.8", Accept),
    ("semiuri", "3.1.1.9", Accept),
    ("transports", "3.1.1.10", Accept),
    ("mpart01", "3.1.1.11", Accept),
    ("unreason", "3.1.1.12", Accept),
    ("noreason", "3.1.1.13", Accept),
    // 3.1.2 invalid messages
    ("badinv01", "3.1.2.1", Reject("Via", Some(400))),
    ("clerr", "3.1.2.2", Reject("Content-Length", Some(400))),
    ("ncl", "3.1.2.3", Reject("Content-Length", Some(400))),
    ("scalar02", "3.1.2.4", Reject("CSeq", Some(400))),
    ("scalarlg", "3.1.2.5", Reject("CSeq", None)),
    ("quotbal", "3.1.2.6", Reject("To", Some(400))),
    ("ltgtruri", "3.1.2.7", Reject("Request-URI", Some(400))),
    ("lwsruri", "3.1.2.8", Reject("Request-Line", Some(400))),
    ("lwsstart", "3.1.2.9", Reject("Request-Line", Some(400))),
    ("trws", "3.1.2.10", Reject("Request-Line", Some(400))),
    ("escruri", "3.1.2.11", Reject("Request-URI", Some(400))),
    ("baddate", "3.1.2.12", Reject("Date", Some(400))),
    ("regbadct", "3.1.2.13", Reject("Contact", Some(400))),
    ("badaspec", "3.1.2.14", Reject("To", Some(400))),
    // The archived baddn.dat has no empty line after its last header; the
    // display-name check itself is asserted in `baddn_display_name` below.
    ("baddn", "3.1.2.15", Reject("not terminated", Some(400))),
    ("badvers", "3.1.2.16", Reject("version", Some(505))),
    ("mismatch01", "3.1.2.17", Reject("CSeq method", Some(400))),
    ("mismatch02", "3.1.2.18", Reject("CSeq method", Some(400))),
    ("bigcode", "3.1.2.19", Reject("status code", None)),
    // 3.2 transaction layer
    ("badbranch", "3.2.1", Accept),
    // 3.3 application layer
    ("insuf", "3.3.1", Reject("missing", None)),
    ("unkscm", "3.3.2", Accept),
    ("novelsc", "3.3.3", Accept),
    ("unksm2", "3.3.4", Accept),
    ("bext01", "3.3.5", Accept),
    ("invut", "3.3.6", Accept),
    ("regaut01", "3.3.7", Accept),
    ("multi01", "3.3.8", Reject("multiple CSeq", Some(400))),
    (
        "mcl01",
        "3.3.9",
        Reject("multiple Content-Length", Some(400)),
    ),
    ("bcast", "3.3.10", Accept),
    ("zeromf", "3.3.11", Accept),
    ("cparam01", "3.3.12", Accept),
    ("cparam02", "3.3.13", Accept),
    ("regescrt", "3.3.14", Accept),
    ("sdp01", "3.3.15", Accept),
    // 3.4 backward compatibility
    ("inv2543", "3.4.1", Accept),
];

fn fixture(tag: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/torture")
        .join(format!("{tag}.sip"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn request(tag: &str) -> Request {
    match parse(&fixture(tag)) {
        Ok(Message::Request(r)) => r,
        other => panic!("{tag}: expected a request, got {other:?}"),
    }
}

fn response(tag: &str) -> Response {
    match parse(&fixture(tag)) {
        Ok(Message::Response(r)) => r,
        other => panic!("{tag}: expected a response, got {other:?}"),
    }
}

fn contacts(r: &Request) -> Vec<NameAddr> {
    match r.contacts() {
        Ok(Contacts::List(l)) => l,
        other => panic!("expected a contact list, got {other:?}"),
    }
}

fn status_of(resp: &[u8]) -> u16 {
    let text = String::from_utf8_lossy(resp);
    text.get(8..11).and_then(|c| c.parse().ok()).unwrap_or(0)
}

#[test]
fn every_fixture_has_a_verdict_and_gets_it() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/torture");
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            name.strip_suffix(".sip").map(str::to_owned)
        })
        .collect();
    files.sort();
    let mut listed: Vec<String> = TABLE.iter().map(|(t, _, _)| (*t).to_owned()).collect();
    listed.sort();
    assert_eq!(files, listed, "fixtures and table differ");

    let mut failures = Vec::new();
    for (tag, section, verdict) in TABLE {
        let result = parse(&fixture(tag));
        let ok = match (verdict, &result) {
            (Accept, Ok(msg)) => {
                // Every accepted message re-serializes to something that parses alike.
                let again = parse(&msg.to_bytes()).map_err(|e| e.reason);
                again
                    .as_ref()
                    .map(|m| m.call_id() == msg.call_id() && m.vias() == msg.vias())
                    == Ok(true)
            }
            (
                Reject(fragment, code),
                Err(ParseError {
                    reason,
                    bad_request,
                }),
            ) => reason.contains(fragment) && bad_request.as_deref().map(status_of) == *code,
            _ => false,
        };
        if !ok {
            let shown = match &result {
                Ok(_) => "Ok(..)".to_owned(),
                Err(e) => format!(
                    "Err({:?}, bad_request: {:?})",
                    e.reason,
                    e.bad_request.as_deref().map(status_of)
                ),
            };
            failures.push(format!(
                "{tag} (§{section}): expected {verdict:?}, got {shown}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn wsinv_short_tortuous_invite() {
    let r = request("wsinv");
    assert_eq!(r.method, Method::Invite);
    assert_eq!(r.uri.user.as_deref(), Some("vivekg"));
    assert_eq!(r.uri.param("unknownparam"), Some(None));
    assert_eq!(r.to.tag(), Some("1918181833n"));
    assert_eq!(r.from.tag(), Some("98asjd8"));
    assert_eq!(r.from.display.as_deref(), Some(r#"J Rosenberg \\\""#));
    assert_eq!(r.max_forwards, Some(68));
    assert_eq!(r.cseq, 9);
    assert_eq!(r.call_id, "wsinv.ndaksdj@192.0.2.1");
    let vias: Vec<(&str, &str, Option<&str>)> = r
        .vias
        .iter()
        .map(|v| (v.transport.as_str(), v.host.as_str(), v.branch.as_deref()))
        .collect();
    assert_eq!(
        vias,
        [
            ("UDP", "192.0.2.2", Some("390skdjuw")),
            ("TCP", "spindle.example.com", Some("z9hG4bK9ikj8")),
            ("UDP", "192.168.255.111", Some("z9hG4bK30239")),
        ]
    );
    assert_eq!(r.header("Subject"), Some(""));
    assert_eq!(
        r.header("NewFangledHeader"),
        Some("newfangled value continued newfangled value")
    );
    assert_eq!(r.header("UnknownHeaderWithUnusualValue"), Some(";;,,;;,;"));
    let c = contacts(&r);
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].display.as_deref(), Some(r#"Quoted string \"\""#));
    assert_eq!(c[0].param("newparam"), Some(Some("newvalue")));
    assert_eq!(c[0].param("secondparam"), Some(None));
    assert_eq!(c[0].param("q"), Some(Some("0.33")));
    assert_eq!(r.body.len(), 150);
}

#[test]
fn intmeth_wide_range_of_valid_characters() {
    let r = request("intmeth");
    let method = "!interesting-Method0123456789_*+`.%indeed'~";
    assert_eq!(r.method, Method::Extension(method.into()));
    assert_eq!(
        r.method.to_rsip(),
        None,
        "endpoints answer 501, proxies forward"
    );
    assert_eq!(r.cseq_method, r.method);
    assert_eq!(r.cseq, 139_122_385);
    assert_eq!(
        r.uri.user.as_deref(),
        Some("1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*")
    );
    assert_eq!(
        r.uri.password.as_deref(),
        Some("&it+has=1,weird!*pas$wo~d_too.(doesn't-it)")
    );
    assert_eq!(r.uri.host, "example.com");
    assert_eq!(r.vias[0].branch.as_deref(), Some("z9hG4bK-.!%66*_+`'~"));
    assert_eq!(
        r.to.display.as_deref(),
        Some("BEL:\\\x07 NUL:\\\x00 DEL:\\\x7F")
    );
    assert_eq!(
        r.from.display.as_deref(),
        Some("token1~` token2'+_ token3*%!.-")
    );
    assert_eq!(
        r.from.param("fromParam''~+*_!.-%"),
        Some(Some("\"работающий\""))
    );
    assert_eq!(r.from.tag(), Some("_token~1'+`*%!-."));
    assert_eq!(r.call_id, "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{");
    assert_eq!(r.max_forwards, Some(255));
    assert_eq!(
        r.header("extensionHeader-!.%*+_`'~"),
        Some("\u{feff}大停電")
    );
}

#[test]
fn escapes() {
    let r = request("esc01");
    assert_eq!(r.uri.user.as_deref(), Some("sips%3Auser%40example.com"));
    assert_eq!(r.uri.host, "example.net");
    assert_eq!(
        r.to.parsed_uri().unwrap().aor(),
        "sip:user@example.com",
        "%75se%72 is user"
    );
    assert_eq!(r.header("Content-Type"), Some("application/sdp"));
    let c = contacts(&r);
    let uri = c[0].parsed_uri().unwrap();
    assert_eq!(uri.user.as_deref(), Some("cal%6Cer"));
    assert_eq!(
        uri.params,
        [
            ("%6C%72".to_owned(), None),
            ("n%61me".to_owned(), Some("v%61lue%25%34%31".to_owned()))
        ]
    );

    let r = request("escnull");
    assert_eq!(
        r.to.parsed_uri().unwrap().user.as_deref(),
        Some("null-%00-null")
    );
    assert_eq!(contacts(&r).len(), 2);

    let r = request("esc02");
    assert_eq!(
        r.method,
        Method::Extension("RE%47IST%45R".into()),
        "% is not an escape in a method"
    );
    assert_eq!(r.to.display.as_deref(), Some("%Z%45"));
    assert_eq!(r.vias[0].branch.as_deref(), Some("z9hG4bK209%fzsnel234"));
    // C%6Fntact is an unknown header, not a Contact.
    assert_eq!(contacts(&r).len(), 2);
    assert_eq!(
        r.header("C%6Fntact"),
        Some("<sip:alias2@host2.example.com>")
    );
}

#[test]
fn lwsdisp_longreq_dblreq_semiuri_transports() {
    assert_eq!(request("lwsdisp").from.display.as_deref(), Some("caller"));

    let r = request("longreq");
    assert_eq!(r.vias.len(), 34);
    assert!(r.vias.iter().all(|v| v.transport == "TCP"));
    assert_eq!(
        r.vias.last().and_then(|v| v.received.as_deref()),
        Some("192.0.2.5")
    );
    assert_eq!(r.to.parsed_uri().unwrap().port, Some(6000));
    assert!(r.from.tag().is_some_and(|t| t.len() > 150));
    assert_eq!(r.body.len(), 150);

    let r = request("dblreq");
    assert_eq!(r.method, Method::Register);
    assert!(
        r.body.is_empty(),
        "octets past Content-Length are discarded"
    );

    let r = request("semiuri");
    assert_eq!(r.uri.user.as_deref(), Some("user;par=u%40example.net"));
    assert_eq!(r.uri.host, "example.com");
    assert!(r.uri.params.is_empty());
    assert_eq!(r.header_values("Accept").len(), 6);

    let r = request("transports");
    let t: Vec<&str> = r.vias.iter().map(|v| v.transport.as_str()).collect();
    assert_eq!(t, ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]);
    assert_eq!(r.call_id, "transports.kijh4akdnaqjkwendsasfdj");
}

#[test]
fn mpart01_binary_body() {
    let r = request("mpart01");
    assert_eq!(r.method, Method::Message);
    assert_eq!(r.body.len(), 553);
    assert!(
        r.body
            .ends_with(b"\x99\xD0\x05\r\n--7a9cbec02ceef655--\r\n")
    );
    assert_eq!(r.vias[0].rport, Some(None));
    assert_eq!(r.vias[0].port, Some(5070));
    assert_eq!(
        r.header("Content-Type"),
        Some("multipart/mixed;boundary=7a9cbec02ceef655")
    );
}

#[test]
fn unusual_and_empty_reason_phrases() {
    let r = response("unreason");
    assert_eq!(r.code, 200);
    assert_eq!(r.reason, "= 2**3 * 5**2 но сто девяносто девять - простое");
    assert_eq!(r.body.len(), 154);
    let r = response("noreason");
    assert_eq!(r.code, 100);
    assert_eq!(r.reason, "");
}

#[test]
fn baddn_display_name() {
    // The same message with its missing empty line added fails on the
    // display name, which is what §3.1.2.15 is about.
    let mut bytes = fixture("baddn");
    bytes.extend_from_slice(b"\r\n");
    let err = parse(&bytes).unwrap_err();
    assert!(
        err.reason.contains("From") && err.reason.contains("display name"),
        "{}",
        err.reason
    );
    assert_eq!(err.bad_request.as_deref().map(status_of), Some(400));
}

#[test]
fn invalid_requests_get_a_usable_400() {
    // The 400 copies the request's identifiers and parses as a response.
    // (Where the broken header is itself one that must be copied, e.g. the To
    // of quotbal or the CSeq of scalar02, the 400 necessarily carries it too.)
    for tag in [
        "ltgtruri",
        "lwsruri",
        "trws",
        "mismatch02",
        "escruri",
        "baddate",
        "multi01",
        "mcl01",
    ] {
        let bytes = fixture(tag);
        let err = parse(&bytes).unwrap_err();
        let resp = err
            .bad_request
            .unwrap_or_else(|| panic!("{tag}: no response"));
        match parse(&resp) {
            Ok(Message::Response(r)) => {
                assert_eq!(r.code, 400, "{tag}");
                assert!(r.to.tag().is_some(), "{tag}");
                assert!(
                    String::from_utf8_lossy(&bytes).contains(&r.call_id),
                    "{tag}"
                );
            }
            other => panic!("{tag}: {other:?}"),
        }
    }
    let resp = parse(&fixture("badvers")).unwrap_err().bad_request.unwrap();
    assert!(resp.starts_with(b"SIP/2.0 505 Version Not Supported\r\n"));
}

#[test]
fn transaction_and_application_layer_cases() {
    // 3.2.1: no magic cookie; the transaction layer uses RFC 2543 matching.
    let r = request("badbranch");
    assert_eq!(r.vias[0].branch.as_deref(), Some("z9hG4bK"));

    // 3.3.2 / 3.3.3: the scheme is exposed; the application answers 416.
    assert_eq!(request("unkscm").uri.scheme, "nobodyknowsthisscheme");
    let novel = request("novelsc");
    assert_eq!(novel.uri.scheme, "soap.beep");
    assert_eq!(novel.uri.to_string(), "soap.beep://192.0.2.103:3002");

    // 3.3.4: unknown schemes in To/From/Contact are fine at parse level.
    let r = request("unksm2");
    assert_eq!(r.to.uri, "isbn:2983792873");
    assert_eq!(r.from.uri, "http://www.example.com");
    assert_eq!(contacts(&r)[0].uri, "name:John_Smith");

    // 3.3.5: Require / Proxy-Require listed for the 420 + Unsupported.
    let r = request("bext01");
    assert_eq!(
        r.header_values("Require"),
        ["nothingSupportsThis", "nothingSupportsThisEither"]
    );
    assert_eq!(
        r.header_values("Proxy-Require"),
        ["noProxiesSupportThis", "norDoAnyProxiesSupportThis"]
    );
    assert_eq!(r.vias[0].transport, "TLS");

    // 3.3.6: unknown body type for the 415.
    assert_eq!(
        request("invut").header("Content-Type"),
        Some("application/unknownformat")
    );

    // 3.3.7: an unknown auth scheme is not Digest: challenge with 401.
    let r = request("regaut01");
    let auth = r.header("Authorization").unwrap();
    assert_eq!(Credentials::parse(auth), Err(DigestError::NotDigest));

    // 3.3.10: a response with a broadcast Via parses; the transport must not
    // send anything to it (not this layer's business).
    let r = response("bcast");
    assert_eq!(r.vias[1].host, "255.255.255.255");

    // 3.3.11: Max-Forwards 0 on OPTIONS: answered by the element itself.
    assert_eq!(request("zeromf").max_forwards, Some(0));

    // 3.3.12: without <> the parameter belongs to the Contact header.
    let c = contacts(&request("cparam01"));
    assert_eq!(c[0].uri, "sip:+19725552222@gw1.example.net");
    assert_eq!(c[0].param("unknownparam"), Some(None));

    // 3.3.13: inside <> it belongs to the URI.
    let c = contacts(&request("cparam02"));
    assert!(c[0].params.is_empty());
    assert_eq!(c[0].parsed_uri().unwrap().param("unknownparam"), Some(None));

    // 3.3.14: an escaped header in a Contact URI is legal.
    let c = contacts(&request("regescrt"));
    let uri: Uri = c[0].parsed_uri().unwrap();
    assert_eq!(
        uri.headers.as_deref(),
        Some("Route=%3Csip:sip.example.com%3E")
    );

    // 3.3.15: Accept offers no SDP: 406 from the application.
    assert_eq!(
        request("sdp01").header("Accept"),
        Some("text/nobodyKnowsThis")
    );

    // 3.4.1: RFC 2543 syntax: no branch, no Max-Forwards, no Content-Length.
    let r = request("inv2543");
    assert_eq!(r.vias[0].branch, None);
    assert_eq!(r.max_forwards, None);
    assert_eq!(r.to.param("user"), Some(Some("phone")));
    assert_eq!(r.body.len(), 105);
}
