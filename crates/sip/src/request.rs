//! Building requests: the generic [`RequestBuilder`] a UAC or B2BUA uses for
//! new requests, and the two requests RFC 3261 derives from an INVITE it
//! sent — the ACK for a 300-699 final (§17.1.1.3) and CANCEL (§9.1).

use crate::message::Request;

/// RFC 3261 §8.1.1.7 magic cookie every branch we create starts with.
pub const BRANCH_PREFIX: &str = "z9hG4bK";

/// A fresh Via branch: the magic cookie and 96 random bits.
pub fn new_branch() -> String {
    format!("{BRANCH_PREFIX}{:024x}", rand::random::<u128>() >> 32)
}

/// A fresh Call-ID: 128 random bits, with `host` after an `@` when given.
pub fn new_call_id(host: Option<&str>) -> String {
    let id = format!("{:032x}", rand::random::<u128>());
    match host {
        Some(h) => format!("{id}@{h}"),
        None => id,
    }
}

/// Replaces CR and LF so a value can never start a new header line.
fn clean(s: &str) -> String {
    s.replace(['\r', '\n'], " ")
}

/// A request, header by header. Content-Length is always written.
#[derive(Debug, Clone)]
pub struct RequestBuilder {
    method: String,
    uri: String,
    headers: Vec<(String, String)>,
    body: Option<(String, Vec<u8>)>,
}

impl RequestBuilder {
    /// Starts `METHOD uri SIP/2.0`.
    pub fn new(method: &str, uri: &str) -> Self {
        Self {
            method: clean(method),
            uri: clean(uri),
            headers: Vec::with_capacity(10),
            body: None,
        }
    }

    /// Adds a header line (CR/LF in name or value become spaces).
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((clean(name), clean(value)));
        self
    }

    /// Adds `Via: SIP/2.0/<transport> <sent_by>;branch=<branch>;rport`.
    pub fn via(self, transport: &str, sent_by: &str, branch: &str) -> Self {
        let v = format!("SIP/2.0/{transport} {sent_by};branch={branch};rport");
        self.header("Via", &v)
    }

    /// Sets the body and its Content-Type.
    pub fn body(mut self, content_type: &str, bytes: impl Into<Vec<u8>>) -> Self {
        self.body = Some((clean(content_type), bytes.into()));
        self
    }

    /// Writes the request.
    pub fn build(self) -> Vec<u8> {
        let body_len = self.body.as_ref().map_or(0, |(_, b)| b.len());
        let mut out = Vec::with_capacity(
            64 + body_len
                + self
                    .headers
                    .iter()
                    .map(|(n, v)| n.len() + v.len() + 4)
                    .sum::<usize>(),
        );
        for part in [&self.method, " ", &self.uri, " SIP/2.0\r\n"] {
            out.extend_from_slice(part.as_bytes());
        }
        for (name, value) in &self.headers {
            line(&mut out, name, value);
        }
        match &self.body {
            Some((ct, body)) => {
                line(&mut out, "Content-Type", ct);
                line(&mut out, "Content-Length", &body.len().to_string());
                out.extend_from_slice(b"\r\n");
                out.extend_from_slice(body);
            }
            None => out.extend_from_slice(b"Content-Length: 0\r\n\r\n"),
        }
        out
    }
}

fn line(out: &mut Vec<u8>, name: &str, value: &str) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// The headers an INVITE's ACK (non-2xx) and CANCEL copy from it: the
/// request line's URI, the top Via only, From, Call-ID, Route.
fn derived(invite: &Request, method: &str, to: &str) -> RequestBuilder {
    let mut b = RequestBuilder::new(method, &invite.uri.to_string());
    if let Some(via) = invite.vias.first() {
        b = b.header("Via", &via.raw);
    }
    b = b.header("Max-Forwards", "70");
    let from = invite
        .header("From")
        .map_or_else(|| invite.from.to_string(), str::to_owned);
    b = b
        .header("From", &from)
        .header("To", to)
        .header("Call-ID", &invite.call_id)
        .header("CSeq", &format!("{} {method}", invite.cseq));
    for route in invite.header_values("Route") {
        b = b.header("Route", route);
    }
    b
}

/// RFC 3261 §17.1.1.3: the ACK for a 300-699 final response to `invite`,
/// whose To header (with the callee's tag) is `response_to`.
pub fn ack_for_failure(invite: &Request, response_to: &str) -> Vec<u8> {
    derived(invite, "ACK", response_to).build()
}

/// RFC 3261 §9.1: the CANCEL for `invite` (same branch, so it matches the
/// INVITE's server transaction at the far end).
pub fn cancel_for(invite: &Request) -> Vec<u8> {
    let to = invite
        .header("To")
        .map_or_else(|| invite.to.to_string(), str::to_owned);
    derived(invite, "CANCEL", &to).build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{Message, parse};

    fn invite() -> Request {
        let raw = "INVITE sip:bob@127.0.0.1:5070 SIP/2.0\r\n\
             Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKabc;rport\r\n\
             Max-Forwards: 69\r\n\
             Route: <sip:127.0.0.9;lr>\r\n\
             From: \"Alice\" <sip:alice@127.0.0.1>;tag=a1\r\n\
             To: <sip:bob@127.0.0.1>\r\n\
             Call-ID: c1@127.0.0.1\r\n\
             CSeq: 7 INVITE\r\n\
             Contact: <sip:alice@127.0.0.1:5060>\r\n\
             Content-Type: application/sdp\r\n\
             Content-Length: 4\r\n\r\nv=0\n";
        match parse(raw.as_bytes()) {
            Ok(Message::Request(r)) => r,
            other => panic!("{other:?}"),
        }
    }

    fn reparse(bytes: &[u8]) -> Request {
        match parse(bytes) {
            Ok(Message::Request(r)) => r,
            other => panic!("{other:?}: {}", String::from_utf8_lossy(bytes)),
        }
    }

    #[test]
    fn builder_writes_a_request_that_parses() {
        let branch = new_branch();
        assert!(
            branch.starts_with("z9hG4bK") && branch.len() == 31,
            "{branch}"
        );
        let bytes = RequestBuilder::new("OPTIONS", "sip:127.0.0.1")
            .via("UDP", "127.0.0.1:5060", &branch)
            .header("Max-Forwards", "70")
            .header("From", "<sip:ping@127.0.0.1>;tag=x")
            .header("To", "<sip:127.0.0.1>")
            .header("Call-ID", "id-1@127.0.0.1")
            .header("CSeq", "1 OPTIONS")
            .header("Subject", "hello\r\nInjected: yes")
            .body("text/plain", "hi")
            .build();
        let r = reparse(&bytes);
        assert_eq!(r.method.to_string(), "OPTIONS");
        assert_eq!(r.vias[0].branch.as_deref(), Some(branch.as_str()));
        assert_eq!(r.call_id, "id-1@127.0.0.1");
        assert_eq!(r.header("Subject"), Some("hello  Injected: yes"));
        assert!(r.header("Injected").is_none());
        assert_eq!(r.body, b"hi");
        assert_eq!(r.header("Content-Length"), Some("2"));
    }

    #[test]
    fn ack_for_failure_follows_17_1_1_3() {
        let inv = invite();
        let ack = reparse(&ack_for_failure(&inv, "<sip:bob@127.0.0.1>;tag=b9"));
        assert_eq!(ack.method.to_string(), "ACK");
        assert_eq!(ack.uri.to_string(), "sip:bob@127.0.0.1:5070");
        assert_eq!(ack.vias.len(), 1);
        assert_eq!(ack.vias[0].branch.as_deref(), Some("z9hG4bKabc"));
        assert_eq!(ack.cseq, 7);
        assert_eq!(ack.cseq_method.to_string(), "ACK");
        assert_eq!(ack.to.tag(), Some("b9"));
        assert_eq!(ack.from.tag(), Some("a1"));
        assert_eq!(ack.call_id, "c1@127.0.0.1");
        assert_eq!(ack.header("Route"), Some("<sip:127.0.0.9;lr>"));
        assert!(ack.body.is_empty());
    }

    #[test]
    fn cancel_follows_9_1() {
        let inv = invite();
        let cancel = reparse(&cancel_for(&inv));
        assert_eq!(cancel.method.to_string(), "CANCEL");
        assert_eq!(cancel.uri.to_string(), "sip:bob@127.0.0.1:5070");
        assert_eq!(cancel.vias[0].raw, inv.vias[0].raw);
        assert_eq!(cancel.cseq, 7);
        assert_eq!(cancel.cseq_method.to_string(), "CANCEL");
        assert_eq!(cancel.to.tag(), None);
        assert_eq!(cancel.header("Route"), Some("<sip:127.0.0.9;lr>"));
    }
}
