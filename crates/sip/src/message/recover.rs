//! Building a ready-to-send error response for a request we could not parse.
//!
//! RFC 3261 §8.2.6.1/§8.2.6.2 (and RFC 4475 §3.1.2) want a 400 for a
//! malformed request, with Via, From, To (plus a tag), Call-ID and CSeq
//! copied from it. The full parser refused the message, so this does a
//! deliberately dumb line scan that only needs those five headers to be
//! findable. If any is missing (RFC 4475 §3.3.1), or the message is a
//! response or an ACK (neither may be answered), there is nothing to send.

use super::syntax::{Kind, expand_compact, is_wsp, kind_of, trim_lws};

/// Returns `SIP/2.0 <code> <reason>` with the recovered headers, or `None`.
pub(crate) fn error_response(bytes: &[u8], code: u16, reason: &str) -> Option<Vec<u8>> {
    let mut input = bytes;
    while let Some(rest) = input.strip_prefix(b"\r\n") {
        input = rest;
    }
    let mut lines = input
        .split(|b| *b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let start = lines.next()?;
    if start.len() < 4 || start[..4].eq_ignore_ascii_case(b"SIP/") {
        return None;
    }
    let method = start.split(|b| *b == b' ').next()?;
    if method == b"ACK" {
        return None;
    }

    // Logical header lines: (start index into `raw`, joined text).
    let mut joined: Vec<Vec<u8>> = Vec::new();
    for line in lines {
        if line.is_empty() {
            break;
        }
        if is_wsp(line[0]) {
            if let Some(last) = joined.last_mut() {
                last.push(b' ');
                last.extend_from_slice(trim_bytes(line));
            }
            continue;
        }
        joined.push(line.to_vec());
    }

    let mut vias: Vec<&str> = Vec::new();
    let (mut from, mut to, mut call_id, mut cseq) = (None, None, None, None);
    for line in &joined {
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let (Ok(name), Ok(value)) = (
            std::str::from_utf8(&line[..colon]),
            std::str::from_utf8(&line[colon + 1..]),
        ) else {
            continue;
        };
        let value = trim_lws(value);
        if value.bytes().any(|b| b == b'\r' || b == b'\n') {
            continue;
        }
        match kind_of(expand_compact(trim_lws(name))) {
            Kind::Via if !value.is_empty() => vias.push(value),
            Kind::From => {
                from.get_or_insert(value);
            }
            Kind::To => {
                to.get_or_insert(value);
            }
            Kind::CallId => {
                call_id.get_or_insert(value);
            }
            Kind::CSeq => {
                cseq.get_or_insert(value);
            }
            _ => {}
        }
    }
    let (from, to, call_id, cseq) = (from?, to?, call_id?, cseq?);
    if vias.is_empty() {
        return None;
    }

    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(format!("SIP/2.0 {code} ").as_bytes());
    // The reason phrase must stay on its line and be plain text.
    out.extend(
        reason
            .bytes()
            .map(|b| if b.is_ascii_graphic() { b } else { b' ' }),
    );
    out.extend_from_slice(b"\r\n");
    for v in vias {
        push_header(&mut out, "Via", v);
    }
    push_header(&mut out, "From", from);
    if has_tag(to) {
        push_header(&mut out, "To", to);
    } else {
        let tag = format!("{to};tag={:016x}", rand::random::<u64>());
        push_header(&mut out, "To", &tag);
    }
    push_header(&mut out, "Call-ID", call_id);
    push_header(&mut out, "CSeq", cseq);
    out.extend_from_slice(b"Content-Length: 0\r\n\r\n");
    Some(out)
}

fn push_header(out: &mut Vec<u8>, name: &str, value: &str) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value.as_bytes());
    out.extend_from_slice(b"\r\n");
}

fn trim_bytes(b: &[u8]) -> &[u8] {
    let start = b.iter().position(|c| !is_wsp(*c)).unwrap_or(b.len());
    let end = b.iter().rposition(|c| !is_wsp(*c)).map_or(start, |e| e + 1);
    &b[start..end]
}

/// True if a To value already carries a `tag` parameter (outside quotes).
pub(crate) fn has_tag(to: &str) -> bool {
    let b = to.as_bytes();
    let mut in_quote = false;
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\\' if in_quote => i += 1,
            b'"' => in_quote = !in_quote,
            b';' if !in_quote => {
                let rest = trim_lws(to.get(i + 1..).unwrap_or_default());
                if rest.len() >= 3 && rest.as_bytes()[..3].eq_ignore_ascii_case(b"tag") {
                    let after = trim_lws(&rest[3..]);
                    if after.starts_with('=') {
                        return true;
                    }
                }
            }
            _ => {}
        }
        i += 1;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_400_with_copied_headers() {
        let msg = b"INVITE <sip:x> SIP/2.0\r\nv: SIP/2.0/UDP a;branch=z9hG4bK1\r\nVia: SIP/2.0/UDP b\r\nf: <sip:a@b>;tag=1\r\nt: <sip:c@d>\r\ni: abc\r\nCSeq: 1\r\n  INVITE\r\n\r\n";
        let out = error_response(msg, 400, "Bad Request-URI").unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.starts_with("SIP/2.0 400 Bad Request-URI\r\n"),
            "{text}"
        );
        assert!(text.contains("Via: SIP/2.0/UDP a;branch=z9hG4bK1\r\nVia: SIP/2.0/UDP b\r\n"));
        assert!(text.contains("From: <sip:a@b>;tag=1\r\n"));
        assert!(text.contains("To: <sip:c@d>;tag="));
        assert!(text.contains("Call-ID: abc\r\n"));
        assert!(text.contains("CSeq: 1 INVITE\r\n"));
        assert!(text.ends_with("Content-Length: 0\r\n\r\n"));
    }

    #[test]
    fn nothing_to_send() {
        let cases: &[&[u8]] = &[
            b"SIP/2.0 200 OK\r\nVia: x\r\nFrom: a\r\nTo: b\r\nCall-ID: c\r\nCSeq: 1 X\r\n\r\n",
            b"ACK sip:a SIP/2.0\r\nVia: x\r\nFrom: a\r\nTo: b\r\nCall-ID: c\r\nCSeq: 1 ACK\r\n\r\n",
            b"INVITE sip:a SIP/2.0\r\nVia: x\r\nCSeq: 1 INVITE\r\n\r\n",
            b"",
            b"\r\n\r\n",
        ];
        for c in cases {
            assert!(error_response(c, 400, "x").is_none());
        }
    }

    #[test]
    fn tag_detection() {
        for (to, want) in [
            ("<sip:a>;tag=1", true),
            ("<sip:a> ; TAG = 1", true),
            ("\"x;tag=1\" <sip:a>", false),
            ("<sip:a>;tagx=1", false),
            ("sip:a", false),
        ] {
            assert_eq!(has_tag(to), want, "{to}");
        }
    }
}
