//! Finding message boundaries in a SIP byte stream (TCP/TLS), two-phase
//! in the style of mini-redis `Frame::check`: [`check`] only looks at the
//! buffered bytes and says how many to take; the caller then cuts them off
//! and hands them to [`crate::message::parse`].
//!
//! On streams Content-Length is mandatory (RFC 3261 §18.3, §20.14): without
//! it the end of the body is unknowable, so the stream cannot be
//! resynchronised and the connection must be closed. CRLFs between messages
//! are RFC 5626 keep-alives (`\r\n\r\n` ping, `\r\n` pong) and are reported
//! separately so the transport can answer pings.

/// What the front of the buffer holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame {
    /// This many leading CR/LF bytes (keep-alive ping/pong) to consume.
    KeepAlive(usize),
    /// A complete message of this many bytes (head and body).
    Message(usize),
}

/// Why the stream cannot be framed; the connection should be closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The message (or its head, still unterminated) exceeds the limit.
    #[error("message exceeds the size limit")]
    TooLarge,
    /// A complete head without Content-Length.
    #[error("message without Content-Length on a stream")]
    MissingContentLength,
    /// Content-Length unparsable, or given more than once.
    #[error("invalid or repeated Content-Length")]
    BadContentLength,
}

/// Inspects the start of `buf`. `Ok(None)`: incomplete, read more bytes.
/// `max` bounds the size of one message (head + body).
pub fn check(buf: &[u8], max: usize) -> Result<Option<Frame>, FrameError> {
    let crlf = buf
        .iter()
        .take_while(|b| **b == b'\r' || **b == b'\n')
        .count();
    if crlf > 0 {
        // A trailing lone CR may be the first half of a CRLF still in flight.
        let n = if crlf == buf.len() && buf[crlf - 1] == b'\r' {
            crlf - 1
        } else {
            crlf
        };
        return Ok((n > 0).then_some(Frame::KeepAlive(n)));
    }
    let window = &buf[..buf.len().min(max)];
    let Some(head_end) = find_head_end(window) else {
        return if buf.len() >= max {
            Err(FrameError::TooLarge)
        } else {
            Ok(None)
        };
    };
    let body_len = content_length(&buf[..head_end])?;
    let total = head_end.checked_add(body_len).ok_or(FrameError::TooLarge)?;
    if total > max {
        return Err(FrameError::TooLarge);
    }
    Ok((buf.len() >= total).then_some(Frame::Message(total)))
}

/// Index just past the `\r\n\r\n` that ends the head.
fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

/// The single Content-Length (or compact `l`) value of a head.
fn content_length(head: &[u8]) -> Result<usize, FrameError> {
    let mut found = None;
    // Skip the start line; continuation lines (leading SP/HT) cannot start
    // a Content-Length header.
    for line in head.split(|b| *b == b'\n').skip(1) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let name = trim(&line[..colon]);
        if line.first().is_some_and(|b| *b == b' ' || *b == b'\t') {
            continue;
        }
        if !(name.eq_ignore_ascii_case(b"Content-Length") || name.eq_ignore_ascii_case(b"l")) {
            continue;
        }
        if found.is_some() {
            return Err(FrameError::BadContentLength);
        }
        let value = trim(&line[colon + 1..]);
        if value.is_empty() || value.len() > 19 || !value.iter().all(u8::is_ascii_digit) {
            return Err(FrameError::BadContentLength);
        }
        let n = value
            .iter()
            .fold(0u64, |acc, d| acc * 10 + u64::from(d - b'0'));
        found = Some(usize::try_from(n).map_err(|_| FrameError::BadContentLength)?);
    }
    found.ok_or(FrameError::MissingContentLength)
}

fn trim(b: &[u8]) -> &[u8] {
    let start = b
        .iter()
        .position(|c| *c != b' ' && *c != b'\t')
        .unwrap_or(b.len());
    let end = b
        .iter()
        .rposition(|c| *c != b' ' && *c != b'\t')
        .map_or(start, |e| e + 1);
    &b[start..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSG: &[u8] = b"MESSAGE sip:a@b SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: x\r\nCSeq: 1 MESSAGE\r\nl: 5\r\n\r\nhello";
    const EMPTY: &[u8] = b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length : 0\r\n\r\n";

    #[test]
    fn every_split_point() {
        for cut in 0..MSG.len() {
            assert_eq!(check(&MSG[..cut], 65535), Ok(None), "cut at {cut}");
        }
        assert_eq!(check(MSG, 65535), Ok(Some(Frame::Message(MSG.len()))));
    }

    #[test]
    fn pipelined_and_keepalives() {
        let mut stream = Vec::new();
        stream.extend_from_slice(b"\r\n\r\n");
        stream.extend_from_slice(MSG);
        stream.extend_from_slice(b"\r\n");
        stream.extend_from_slice(EMPTY);
        stream.extend_from_slice(MSG);
        let mut frames = Vec::new();
        let mut buf = &stream[..];
        while let Some(f) = check(buf, 65535).unwrap() {
            let n = match f {
                Frame::KeepAlive(n) | Frame::Message(n) => n,
            };
            frames.push(f);
            buf = &buf[n..];
        }
        assert!(buf.is_empty());
        assert_eq!(
            frames,
            vec![
                Frame::KeepAlive(4),
                Frame::Message(MSG.len()),
                Frame::KeepAlive(2),
                Frame::Message(EMPTY.len()),
                Frame::Message(MSG.len()),
            ]
        );
    }

    #[test]
    fn table() {
        let big_cl = b"INVITE sip:a SIP/2.0\r\nContent-Length: 100000\r\n\r\n".to_vec();
        let long_head = [b"INVITE sip:a SIP/2.0\r\nX: ".as_slice(), &[b'a'; 200]].concat();
        type Row<'a> = (&'a [u8], usize, Result<Option<Frame>, FrameError>);
        let cases: Vec<Row> = vec![
            (b"", 100, Ok(None)),
            (b"\r", 100, Ok(None)),
            (b"\r\n", 100, Ok(Some(Frame::KeepAlive(2)))),
            (b"\r\n\r", 100, Ok(Some(Frame::KeepAlive(2)))),
            (b"\r\n\r\nOPT", 100, Ok(Some(Frame::KeepAlive(4)))),
            (
                b"OPTIONS sip:a SIP/2.0\r\nVia: x\r\n\r\n",
                100,
                Err(FrameError::MissingContentLength),
            ),
            (
                b"OPTIONS sip:a SIP/2.0\r\nContent-Length: x\r\n\r\n",
                100,
                Err(FrameError::BadContentLength),
            ),
            (
                b"OPTIONS sip:a SIP/2.0\r\nContent-Length: -1\r\n\r\n",
                100,
                Err(FrameError::BadContentLength),
            ),
            (
                b"OPTIONS sip:a SIP/2.0\r\nContent-Length: 99999999999999999999999\r\n\r\n",
                1000,
                Err(FrameError::BadContentLength),
            ),
            (
                b"OPTIONS sip:a SIP/2.0\r\nl: 0\r\nContent-Length: 0\r\n\r\n",
                100,
                Err(FrameError::BadContentLength),
            ),
            (
                b"OPTIONS sip:a SIP/2.0\r\nContent-Length:0\r\n\r\n",
                100,
                Ok(Some(Frame::Message(43))),
            ),
            (
                b"OPTIONS sip:a SIP/2.0\r\nX-Content-Length: 9\r\nL: 0\r\n\r\n",
                100,
                Ok(Some(Frame::Message(52))),
            ),
            (&big_cl, 65535, Err(FrameError::TooLarge)),
            (&long_head, 100, Err(FrameError::TooLarge)),
            (&long_head, 1000, Ok(None)),
        ];
        for (input, max, want) in cases {
            assert_eq!(
                check(input, max),
                want,
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }
}
