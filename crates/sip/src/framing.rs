//! Finding message boundaries in a SIP byte stream (TCP/TLS), two-phase
//! in the style of mini-redis `Frame::check`: [`Framer::check`] only looks
//! at the buffered bytes and says how many to take; the caller then cuts
//! them off and hands them to [`crate::message::parse`].
//!
//! The framer is incremental: it remembers how far it has searched for the
//! blank line that ends the head, and the message's length once the head
//! is complete, so a peer dribbling a 60 KB head one byte per read costs
//! O(n) in total, not a rescan from byte 0 on every read.
//!
//! On streams Content-Length is mandatory (RFC 3261 §18.3, §20.14): without
//! it the end of the body is unknowable, so the stream cannot be
//! resynchronised and the connection must be closed. CRLFs between messages
//! are RFC 5626 §4.4.1 keep-alives: a double CRLF is a ping the transport
//! answers with a single CRLF (a pong); any other run of line ends is
//! consumed silently.

/// The RFC 5626 keep-alive ping on streams.
pub const PING: &[u8] = b"\r\n\r\n";

/// The answer to a [`PING`].
pub const PONG: &[u8] = b"\r\n";

/// What the front of the buffer holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame {
    /// A keep-alive ping ([`PING`], 4 bytes): consume it and answer [`PONG`].
    Ping,
    /// This many leading CR/LF bytes that are not a ping (a pong, stray
    /// line ends): consume them, answer nothing.
    KeepAlive(usize),
    /// A complete message of this many bytes (head and body).
    Message(usize),
}

impl Frame {
    /// How many bytes to take off the front of the buffer.
    pub fn len(self) -> usize {
        match self {
            Frame::Ping => PING.len(),
            Frame::KeepAlive(n) | Frame::Message(n) => n,
        }
    }

    /// Never true: every frame takes at least one byte (for clippy's
    /// `len_without_is_empty`).
    pub fn is_empty(self) -> bool {
        self.len() == 0
    }
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

/// The framing state of one stream: where the search for the end of the
/// head resumes, and the length of the message at the front once known.
///
/// Contract: after [`Framer::check`] returns a frame, the caller removes
/// exactly [`Frame::len`] bytes from the front of its buffer before the
/// next call, and otherwise only appends to the buffer. The framer resets
/// itself when it returns a frame.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Framer {
    /// Bytes at the front already searched for `\r\n\r\n` without finding
    /// one (the search resumes 3 bytes earlier, in case it straddles).
    scanned: usize,
    /// Head and body length of the message at the front, once its head is
    /// complete.
    total: Option<usize>,
}

/// Inspects the start of `buf` from scratch (a fresh [`Framer`]).
/// `Ok(None)`: incomplete, read more bytes. `max` bounds the size of one
/// message (head + body).
pub fn check(buf: &[u8], max: usize) -> Result<Option<Frame>, FrameError> {
    Framer::default().check(buf, max)
}

/// Whether `buf` holds (part of) a message rather than only keep-alive line
/// ends: the moment a message's first byte has arrived.
pub fn holds_message(buf: &[u8]) -> bool {
    buf.iter().any(|b| *b != b'\r' && *b != b'\n')
}

impl Framer {
    /// Inspects the start of `buf`, resuming where the last call stopped.
    /// `Ok(None)`: incomplete, read more bytes. `max` bounds the size of
    /// one message (head + body).
    pub fn check(&mut self, buf: &[u8], max: usize) -> Result<Option<Frame>, FrameError> {
        let found = self.find(buf, max);
        if matches!(found, Ok(Some(_)) | Err(_)) {
            *self = Framer::default();
        }
        found
    }

    fn find(&mut self, buf: &[u8], max: usize) -> Result<Option<Frame>, FrameError> {
        if let Some(total) = self.total {
            return Ok((buf.len() >= total).then_some(Frame::Message(total)));
        }
        let crlf = buf
            .iter()
            .take_while(|b| **b == b'\r' || **b == b'\n')
            .count();
        if crlf > 0 {
            return Ok(keep_alive(buf, crlf));
        }
        let window = &buf[..buf.len().min(max)];
        let from = self.scanned.saturating_sub(PING.len() - 1);
        let Some(head_end) = find_head_end(window, from) else {
            self.scanned = window.len();
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
        self.total = Some(total);
        Ok((buf.len() >= total).then_some(Frame::Message(total)))
    }
}

/// The frame at the front of `buf`, which starts with `crlf` CR/LF bytes.
fn keep_alive(buf: &[u8], crlf: usize) -> Option<Frame> {
    if buf.starts_with(PING) {
        return Some(Frame::Ping);
    }
    let run = &buf[..crlf];
    // Stray line ends before a ping are consumed up to the ping.
    let mut stop = find_from(run, PING, 0).unwrap_or(crlf);
    if stop == crlf && crlf == buf.len() {
        // The run reaches the end of what arrived: its tail may be the
        // start of a ping still in flight, so keep that part.
        let keep = (1..PING.len())
            .rev()
            .find(|n| *n <= crlf && run.ends_with(&PING[..*n]))
            .unwrap_or(0);
        stop = crlf - keep;
    }
    (stop > 0).then_some(Frame::KeepAlive(stop))
}

/// Index just past the first `\r\n\r\n` starting at or after `from`.
fn find_head_end(buf: &[u8], from: usize) -> Option<usize> {
    find_from(buf, PING, from).map(|i| i + PING.len())
}

fn find_from(buf: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    buf.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|i| i + from)
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

    /// Frames a stream arriving `step` bytes per read with one framer, as
    /// the transport does; returns the frames.
    fn dribble(stream: &[u8], step: usize, max: usize) -> Result<Vec<Frame>, FrameError> {
        let mut framer = Framer::default();
        let mut buf = Vec::new();
        let mut frames = Vec::new();
        for chunk in stream.chunks(step) {
            buf.extend_from_slice(chunk);
            while let Some(f) = framer.check(&buf, max)? {
                frames.push(f);
                buf.drain(..f.len());
            }
        }
        assert!(!holds_message(&buf), "left over: {buf:?}");
        Ok(frames)
    }

    #[test]
    fn pipelined_and_keepalives() {
        let mut stream = Vec::new();
        stream.extend_from_slice(b"\r\n\r\n");
        stream.extend_from_slice(MSG);
        stream.extend_from_slice(b"\r\n");
        stream.extend_from_slice(EMPTY);
        stream.extend_from_slice(MSG);
        stream.extend_from_slice(b"\r\n\r\n\r\n\r\n");
        let want = vec![
            Frame::Ping,
            Frame::Message(MSG.len()),
            Frame::KeepAlive(2),
            Frame::Message(EMPTY.len()),
            Frame::Message(MSG.len()),
            Frame::Ping,
            Frame::Ping,
        ];
        // every read size, from one byte per read to all at once
        for step in [1, 2, 3, 5, 7, 64, stream.len()] {
            assert_eq!(
                dribble(&stream, step, 65535),
                Ok(want.clone()),
                "step {step}"
            );
        }
    }

    #[test]
    fn a_dribbled_ping_is_one_ping() {
        let mut framer = Framer::default();
        assert_eq!(framer.check(b"\r", 100), Ok(None));
        assert_eq!(framer.check(b"\r\n", 100), Ok(None));
        assert_eq!(framer.check(b"\r\n\r", 100), Ok(None));
        assert_eq!(framer.check(b"\r\n\r\n", 100), Ok(Some(Frame::Ping)));
        assert!(!holds_message(b"\r\n\r"));
        assert!(holds_message(b"\r\nI"));
    }

    #[test]
    fn a_slow_head_is_searched_once() {
        // 60 KB of header arriving one byte per read: each read resumes the
        // search where the last one stopped (3 bytes back for a straddling
        // CRLFCRLF) instead of rescanning from byte 0.
        let head = [
            b"INVITE sip:a SIP/2.0\r\nX: ".as_slice(),
            &[b'a'; 60_000],
            b"\r\nContent-Length: 2\r\n\r\nhi",
        ]
        .concat();
        let mut framer = Framer::default();
        let mut frames = Vec::new();
        for end in 1..=head.len() {
            if let Some(f) = framer.check(&head[..end], 65535).unwrap() {
                frames.push(f);
            } else if end < head.len() - 2 {
                assert_eq!(framer.scanned, end, "resumes at the end of what was seen");
            }
        }
        assert_eq!(frames, vec![Frame::Message(head.len())]);
    }

    #[test]
    fn body_length_is_remembered() {
        let mut framer = Framer::default();
        let cut = MSG.len() - 3;
        assert_eq!(framer.check(&MSG[..cut], 65535), Ok(None));
        assert_eq!(framer.total, Some(MSG.len()));
        assert_eq!(
            framer.check(MSG, 65535),
            Ok(Some(Frame::Message(MSG.len())))
        );
        assert_eq!(framer, Framer::default(), "reset after a frame");
    }

    #[test]
    fn table() {
        let big_cl = b"INVITE sip:a SIP/2.0\r\nContent-Length: 100000\r\n\r\n".to_vec();
        let long_head = [b"INVITE sip:a SIP/2.0\r\nX: ".as_slice(), &[b'a'; 200]].concat();
        type Row<'a> = (&'a [u8], usize, Result<Option<Frame>, FrameError>);
        let cases: Vec<Row> = vec![
            (b"", 100, Ok(None)),
            (b"\r", 100, Ok(None)),
            // a lone CRLF may be the first half of a ping: wait
            (b"\r\n", 100, Ok(None)),
            (b"\r\n\r", 100, Ok(None)),
            (b"\r\n\r\n", 100, Ok(Some(Frame::Ping))),
            (b"\r\n\r\nOPT", 100, Ok(Some(Frame::Ping))),
            (b"\r\n\r\n\r\n", 100, Ok(Some(Frame::Ping))),
            // a pong (or stray CRLF) before a message
            (b"\r\nOPT", 100, Ok(Some(Frame::KeepAlive(2)))),
            (b"\n\n", 100, Ok(Some(Frame::KeepAlive(2)))),
            (b"\n\r", 100, Ok(Some(Frame::KeepAlive(1)))),
            (b"\n\r\n\r\n", 100, Ok(Some(Frame::KeepAlive(1)))),
            (b"\r\r\n\r\n", 100, Ok(Some(Frame::KeepAlive(1)))),
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
            let text = String::from_utf8_lossy(input);
            assert_eq!(check(input, max), want, "{text:?}");
            // the same verdict when the bytes arrive one at a time
            let mut framer = Framer::default();
            let mut got = Ok(None);
            for end in 1..=input.len() {
                got = framer.check(&input[..end], max);
                if got != Ok(None) {
                    break;
                }
            }
            if input.iter().all(|b| *b == b'\r' || *b == b'\n') {
                continue; // a keep-alive run is cut where it stands
            }
            assert_eq!(got, want, "dribbled {text:?}");
        }
    }
}
