//! Building responses to a parsed request, straight to bytes.
//!
//! RFC 3261 §8.2.6.2: a response copies the request's Via headers (in
//! order), From, To, Call-ID and CSeq, and a UAS adds a To tag to every
//! response but 100 when the request had none. The registrar answers tens of
//! thousands of REGISTERs a second, so this writes one buffer without going
//! through an intermediate message structure.

use std::borrow::Cow;

use crate::message::Request;

/// A response under construction; finish it with [`ResponseBuilder::build`].
#[derive(Debug, Clone)]
pub struct ResponseBuilder<'a> {
    req: &'a Request,
    code: u16,
    reason: &'a str,
    to_tag: Option<Cow<'a, str>>,
    headers: Vec<(String, String)>,
    body: Option<(String, Vec<u8>)>,
}

/// Starts a response to `req` with the given status code and reason phrase
/// (use [`reason_phrase`] for the standard one).
pub fn response<'a>(req: &'a Request, code: u16, reason: &'a str) -> ResponseBuilder<'a> {
    ResponseBuilder {
        req,
        code,
        reason,
        to_tag: None,
        headers: Vec::new(),
        body: None,
    }
}

/// Replaces CR and LF so a value can never start a new header line.
fn sanitize(s: &str) -> String {
    s.replace(['\r', '\n'], " ")
}

impl<'a> ResponseBuilder<'a> {
    /// Uses this To tag instead of a random one. Ignored when the request's
    /// To already has a tag (it is an in-dialog request) or for code 100.
    pub fn to_tag(mut self, tag: &'a str) -> Self {
        self.to_tag = Some(Cow::Borrowed(tag));
        self
    }

    /// Adds a header line. CR/LF in name or value are replaced by spaces.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((sanitize(name), sanitize(value)));
        self
    }

    /// Sets the body and its Content-Type.
    pub fn body(mut self, content_type: &str, bytes: impl Into<Vec<u8>>) -> Self {
        self.body = Some((sanitize(content_type), bytes.into()));
        self
    }

    /// Writes the response; Content-Length is always present (it is
    /// mandatory on streams, RFC 3261 §18.3).
    pub fn build(self) -> Vec<u8> {
        let req = self.req;
        let body_len = self.body.as_ref().map_or(0, |(_, b)| b.len());
        let mut out = Vec::with_capacity(
            384 + body_len + req.vias.iter().map(|v| v.raw.len() + 7).sum::<usize>(),
        );
        push(&mut out, &format!("SIP/2.0 {} ", self.code));
        push(&mut out, &sanitize(self.reason));
        push(&mut out, "\r\n");
        for via in &req.vias {
            header_line(&mut out, "Via", &via.raw);
        }
        let from = req
            .header("From")
            .map_or_else(|| Cow::Owned(req.from.to_string()), Cow::Borrowed);
        header_line(&mut out, "From", &from);
        let to = req
            .header("To")
            .map_or_else(|| Cow::Owned(req.to.to_string()), Cow::Borrowed);
        push(&mut out, "To: ");
        push(&mut out, &to);
        if self.code > 100 && req.to.tag().is_none() {
            push(&mut out, ";tag=");
            match &self.to_tag {
                Some(tag) => push(&mut out, &sanitize(tag)),
                None => push(&mut out, &new_tag()),
            }
        }
        push(&mut out, "\r\n");
        header_line(&mut out, "Call-ID", &req.call_id);
        let cseq = req.header("CSeq").map_or_else(
            || Cow::Owned(format!("{} {}", req.cseq, req.cseq_method)),
            Cow::Borrowed,
        );
        header_line(&mut out, "CSeq", &cseq);
        for (name, value) in &self.headers {
            header_line(&mut out, name, value);
        }
        match &self.body {
            Some((content_type, body)) => {
                header_line(&mut out, "Content-Type", content_type);
                push(&mut out, &format!("Content-Length: {}\r\n\r\n", body.len()));
                out.extend_from_slice(body);
            }
            None => push(&mut out, "Content-Length: 0\r\n\r\n"),
        }
        out
    }
}

fn push(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(s.as_bytes());
}

fn header_line(out: &mut Vec<u8>, name: &str, value: &str) {
    push(out, name);
    push(out, ": ");
    push(out, value);
    push(out, "\r\n");
}

/// A fresh To tag: 64 random bits (RFC 3261 §19.3 asks for at least 32).
pub fn new_tag() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// The standard reason phrase of a status code (RFC 3261 §21 and the
/// extension RFCs); a generic class phrase for unknown codes.
pub fn reason_phrase(code: u16) -> &'static str {
    match code {
        100 => "Trying",
        180 => "Ringing",
        181 => "Call Is Being Forwarded",
        182 => "Queued",
        183 => "Session Progress",
        199 => "Early Dialog Terminated",
        200 => "OK",
        202 => "Accepted",
        204 => "No Notification",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Moved Temporarily",
        305 => "Use Proxy",
        380 => "Alternative Service",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        410 => "Gone",
        412 => "Conditional Request Failed",
        413 => "Request Entity Too Large",
        414 => "Request-URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Unsupported URI Scheme",
        417 => "Unknown Resource-Priority",
        420 => "Bad Extension",
        421 => "Extension Required",
        422 => "Session Interval Too Small",
        423 => "Interval Too Brief",
        428 => "Use Identity Header",
        429 => "Provide Referrer Identity",
        430 => "Flow Failed",
        433 => "Anonymity Disallowed",
        436 => "Bad Identity-Info",
        437 => "Unsupported Certificate",
        438 => "Invalid Identity Header",
        439 => "First Hop Lacks Outbound Support",
        440 => "Max-Breadth Exceeded",
        469 => "Bad Info Package",
        470 => "Consent Needed",
        480 => "Temporarily Unavailable",
        481 => "Call/Transaction Does Not Exist",
        482 => "Loop Detected",
        483 => "Too Many Hops",
        484 => "Address Incomplete",
        485 => "Ambiguous",
        486 => "Busy Here",
        487 => "Request Terminated",
        488 => "Not Acceptable Here",
        489 => "Bad Event",
        491 => "Request Pending",
        493 => "Undecipherable",
        494 => "Security Agreement Required",
        500 => "Server Internal Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Server Time-out",
        505 => "Version Not Supported",
        513 => "Message Too Large",
        555 => "Push Notification Service Not Supported",
        580 => "Precondition Failure",
        600 => "Busy Everywhere",
        603 => "Decline",
        604 => "Does Not Exist Anywhere",
        606 => "Not Acceptable",
        607 => "Unwanted",
        608 => "Rejected",
        _ => match code / 100 {
            1 => "Provisional",
            2 => "Success",
            3 => "Redirection",
            4 => "Client Error",
            5 => "Server Error",
            6 => "Global Failure",
            _ => "Unknown",
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{Message, parse};

    fn req(s: &str) -> Request {
        match parse(s.as_bytes()) {
            Ok(Message::Request(r)) => r,
            other => panic!("{other:?}"),
        }
    }

    const INVITE: &str = "INVITE sip:bob@example.com SIP/2.0\r\n\
        Via: SIP/2.0/UDP p1.example.com;branch=z9hG4bKa, SIP/2.0/UDP p2.example.com;branch=z9hG4bKb\r\n\
        v: SIP/2.0/TCP ua.example.com;branch=z9hG4bKc;received=192.0.2.7\r\n\
        Max-Forwards: 69\r\n\
        f: \"Alice\" <sip:alice@example.com>;tag=9fx\r\n\
        To: Bob <sip:bob@example.com>\r\n\
        Call-ID: 3848276298220188511@ua.example.com\r\n\
        CSeq: 314159 INVITE\r\n\
        Content-Length: 0\r\n\r\n";

    #[test]
    fn copies_headers_in_order() {
        let r = req(INVITE);
        let bytes = response(&r, 486, reason_phrase(486))
            .to_tag("xyz")
            .header("Retry-After", "30")
            .build();
        let text = String::from_utf8(bytes.clone()).unwrap();
        let expected = "SIP/2.0 486 Busy Here\r\n\
            Via: SIP/2.0/UDP p1.example.com;branch=z9hG4bKa\r\n\
            Via: SIP/2.0/UDP p2.example.com;branch=z9hG4bKb\r\n\
            Via: SIP/2.0/TCP ua.example.com;branch=z9hG4bKc;received=192.0.2.7\r\n\
            From: \"Alice\" <sip:alice@example.com>;tag=9fx\r\n\
            To: Bob <sip:bob@example.com>;tag=xyz\r\n\
            Call-ID: 3848276298220188511@ua.example.com\r\n\
            CSeq: 314159 INVITE\r\n\
            Retry-After: 30\r\n\
            Content-Length: 0\r\n\r\n";
        assert_eq!(text, expected);
        match parse(&bytes).unwrap() {
            Message::Response(resp) => {
                assert_eq!(resp.code, 486);
                assert_eq!(resp.to.tag(), Some("xyz"));
                assert_eq!(resp.vias.len(), 3);
            }
            Message::Request(_) => panic!(),
        }
    }

    #[test]
    fn to_tag_rules() {
        let r = req(INVITE);
        // (code, fixed tag, expect a tag)
        for (code, fixed, want_tag) in [
            (100, None, false),
            (180, None, true),
            (200, Some("t1"), true),
            (100, Some("t1"), false),
        ] {
            let mut b = response(&r, code, reason_phrase(code));
            if let Some(t) = fixed {
                b = b.to_tag(t);
            }
            let resp = match parse(&b.build()).unwrap() {
                Message::Response(resp) => resp,
                Message::Request(_) => panic!(),
            };
            assert_eq!(resp.to.tag().is_some(), want_tag, "{code}");
            if let (Some(t), true) = (fixed, want_tag) {
                assert_eq!(resp.to.tag(), Some(t));
            }
        }
        // Random tags differ.
        let a = response(&r, 200, "OK").build();
        let b = response(&r, 200, "OK").build();
        assert_ne!(a, b);
        // An existing To tag is kept and not doubled.
        let in_dialog = req(&INVITE.replace(
            "To: Bob <sip:bob@example.com>",
            "To: Bob <sip:bob@example.com>;tag=abc",
        ));
        let text =
            String::from_utf8(response(&in_dialog, 200, "OK").to_tag("zzz").build()).unwrap();
        assert!(
            text.contains("To: Bob <sip:bob@example.com>;tag=abc\r\n"),
            "{text}"
        );
    }

    #[test]
    fn body_and_injection() {
        let r = req(INVITE);
        let bytes = response(&r, 200, "OK\r\nX: y")
            .header("X-Evil", "a\r\nVia: forged")
            .body("application/sdp", b"v=0\r\n".to_vec())
            .build();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(text.starts_with("SIP/2.0 200 OK  X: y\r\n"));
        assert!(text.contains("X-Evil: a  Via: forged\r\n"));
        assert!(
            text.ends_with("Content-Type: application/sdp\r\nContent-Length: 5\r\n\r\nv=0\r\n")
        );
        assert_eq!(
            crate::framing::check(&bytes, 65535),
            Ok(Some(crate::framing::Frame::Message(bytes.len())))
        );
    }

    #[test]
    fn phrases() {
        for (code, phrase) in [
            (200, "OK"),
            (401, "Unauthorized"),
            (416, "Unsupported URI Scheme"),
            (420, "Bad Extension"),
            (423, "Interval Too Brief"),
            (505, "Version Not Supported"),
            (299, "Success"),
            (799, "Unknown"),
        ] {
            assert_eq!(reason_phrase(code), phrase);
        }
    }
}
