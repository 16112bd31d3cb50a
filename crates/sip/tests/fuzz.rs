//! Bounded, deterministic mutation fuzzing of `parse()` and
//! `framing::check()`: a seeded PRNG mutates small valid messages (bit
//! flips, byte insertions and deletions, header-line splices, truncations,
//! huge numbers, CRLF games) and every result must hold these properties:
//!
//! * nothing panics;
//! * an accepted message re-serializes, the serialization parses again and
//!   serializes to the same bytes, and frames as exactly one message;
//! * a ready error response is a complete, frameable 400/505;
//! * framing never reports more bytes than the buffer holds.
//!
//! Messages are kept small so 120k inputs run in a few seconds in debug.

#![allow(clippy::unwrap_used)] // tests may unwrap

use switchboard_sip::framing::{self, Frame};
use switchboard_sip::{Message, parse};

const ITERATIONS: usize = 120_000;

const SEEDS: &[&[u8]] = &[
    b"REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1;rport\r\nMax-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=a1\r\nTo: <sip:alice@example.com>\r\nCall-ID: c1@192.0.2.1\r\nCSeq: 1 REGISTER\r\nContact: <sip:alice@192.0.2.1>;expires=60\r\nExpires: 3600\r\nContent-Length: 0\r\n\r\n",
    b"INVITE sip:bob@example.com SIP/2.0\r\nv: SIP/2.0/TCP h;branch=z9hG4bK2, SIP/2.0/UDP [2001:db8::1]:5060\r\nf: \"A, B\" <sip:a@b>;tag=x\r\nt: Bob <sip:bob@example.com>\r\ni: abc@h\r\nCSeq: 2 INVITE\r\nc: application/sdp\r\nl: 5\r\n\r\nv=0\r\n",
    b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK3;received=192.0.2.9\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>;tag=2\r\nCall-ID: x\r\nCSeq: 3 OPTIONS\r\nDate: Sat, 15 Oct 2005 04:44:56 GMT\r\nContent-Length: 0\r\n\r\n",
    b"OPTIONS sip:u@h;lr SIP/2.0\r\nVia  : SIP / 2.0 /UDP\r\n h;branch=z9hG4bK4\r\nFrom: x<sip:a@b>;tag=1\r\nTo: sip:c@d\r\nCall-ID: y\r\ncseq: 0009\r\n  OPTIONS\r\nSubject :\r\nAccept: a/b,\r\n c/d\r\n\r\n",
    b"MESSAGE sips:%75@h:5061 SIP/2.0\r\nVia: SIP/2.0/TLS h:5061;branch=z9hG4bK5\r\nFrom: <sips:a@b>;tag=t\r\nTo: <tel:+15551234;phone-context=x>\r\nCall-ID: m\r\nCSeq: 5 MESSAGE\r\nContent-Length: 3\r\n\r\nhi!trailing",
    b"\r\n\r\nSIP/2.0 100 \r\nVia: SIP/2.0/UDP h;branch=z9hG4bK6\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\nCall-ID: z\r\nCSeq: 6 INVITE\r\nl: 0\r\n\r\n",
];

const INTERESTING: &[u8] = b"\r\n\t :;,<>\"\\%@/=?*09aZ\x00\xff\x80";
const NUMBERS: &[&[u8]] = &[
    b"4294967296",
    b"99999999999999999999999",
    b"-1",
    b"0",
    b"2147483648",
    b"256",
    b"65536",
    b"18446744073709551616",
];
const CRLF_GAMES: &[&[u8]] = &[
    b"\n",
    b"\r",
    b"\r\n ",
    b"\r\n\r\n",
    b"",
    b"\r\n\t",
    b"\r\r\n",
    b" \r\n",
];

/// xorshift64*: tiny, deterministic, good enough to pick mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

fn line_starts(buf: &[u8]) -> Vec<usize> {
    let mut v = vec![0];
    v.extend(
        buf.windows(2)
            .enumerate()
            .filter(|(_, w)| *w == b"\r\n")
            .map(|(i, _)| i + 2),
    );
    v
}

fn mutate(rng: &mut Rng, buf: &mut Vec<u8>) {
    let len = buf.len();
    match rng.below(9) {
        0 if len > 0 => {
            let i = rng.below(len);
            buf[i] ^= 1 << rng.below(8);
        }
        1 => {
            let i = rng.below(len + 1);
            let b = *rng.pick(INTERESTING);
            buf.insert(i, b);
        }
        2 if len > 0 => {
            let i = rng.below(len);
            let n = 1 + rng.below(8.min(len - i));
            buf.drain(i..i + n);
        }
        3 => {
            // Splice a header line of some seed in at a line boundary.
            let seed = *rng.pick(SEEDS);
            let starts = line_starts(seed);
            let s = *rng.pick(&starts);
            let e = seed[s..]
                .windows(2)
                .position(|w| w == b"\r\n")
                .map_or(seed.len(), |p| s + p + 2);
            let at = *rng.pick(&line_starts(buf));
            let line = seed[s..e].to_vec();
            buf.splice(at..at, line);
        }
        4 if len > 0 => buf.truncate(rng.below(len)),
        5 => {
            let digits: Vec<usize> = (0..len).filter(|i| buf[*i].is_ascii_digit()).collect();
            if !digits.is_empty() {
                let start = *rng.pick(&digits);
                let end = (start..len)
                    .find(|i| !buf[*i].is_ascii_digit())
                    .unwrap_or(len);
                buf.splice(start..end, rng.pick(NUMBERS).iter().copied());
            }
        }
        6 => {
            let crlfs: Vec<usize> = buf
                .windows(2)
                .enumerate()
                .filter(|(_, w)| *w == b"\r\n")
                .map(|(i, _)| i)
                .collect();
            if !crlfs.is_empty() {
                let at = *rng.pick(&crlfs);
                buf.splice(at..at + 2, rng.pick(CRLF_GAMES).iter().copied());
            }
        }
        7 if len > 0 => {
            let i = rng.below(len);
            buf[i] = *rng.pick(b":;,<>\"\\%@ /=?");
        }
        _ => {
            // Swap two lines.
            let starts = line_starts(buf);
            if starts.len() > 2 {
                let a = rng.below(starts.len() - 1);
                let b = rng.below(starts.len() - 1);
                let (a, b) = (a.min(b), a.max(b));
                if a != b {
                    let (sa, ea) = (starts[a], starts[a + 1]);
                    let (sb, eb) = (starts[b], starts[b + 1]);
                    let mut out = Vec::with_capacity(buf.len());
                    out.extend_from_slice(&buf[..sa]);
                    out.extend_from_slice(&buf[sb..eb]);
                    out.extend_from_slice(&buf[ea..sb]);
                    out.extend_from_slice(&buf[sa..ea]);
                    out.extend_from_slice(&buf[eb..]);
                    *buf = out;
                }
            }
        }
    }
}

fn check_framing(input: &[u8]) {
    for max in [64, 2048] {
        let whole = framing::check(input, max);
        match whole {
            Ok(Some(Frame::Ping)) => assert!(input.starts_with(framing::PING)),
            Ok(Some(Frame::KeepAlive(n))) => assert!(n > 0 && n <= input.len()),
            Ok(Some(Frame::Message(n))) => assert!(n > 0 && n <= input.len() && n <= max),
            Ok(None) | Err(_) => {}
        }
        // The incremental framer fed the same bytes in pieces reaches the
        // same verdict, on the whole or on an earlier prefix.
        let mut framer = framing::Framer::default();
        let mut verdict = Ok(None);
        for end in (7..input.len()).step_by(7).chain([input.len()]) {
            verdict = framer.check(&input[..end], max);
            if !matches!(verdict, Ok(None)) {
                break;
            }
        }
        match (verdict, whole) {
            (Ok(Some(a)), Ok(Some(b))) => assert_eq!(a, b),
            (Err(a), Err(b)) => assert_eq!(a, b),
            (Ok(None), Ok(None)) => {}
            (a, b) => panic!(
                "incremental {a:?} vs whole {b:?} for {:?}",
                String::from_utf8_lossy(input)
            ),
        }
    }
}

#[test]
fn mutation_fuzz_parse_and_framing() {
    for seed in SEEDS {
        assert!(
            parse(seed).is_ok(),
            "seed must be valid: {:?}",
            String::from_utf8_lossy(seed)
        );
    }
    let started = std::time::Instant::now();
    let mut rng = Rng(0x5EED_CAFE_F00D_D00D);
    let (mut accepted, mut answered) = (0usize, 0usize);
    for i in 0..ITERATIONS {
        let mut input = SEEDS[i % SEEDS.len()].to_vec();
        for _ in 0..=rng.below(3) {
            mutate(&mut rng, &mut input);
        }
        check_framing(&input);
        match parse(&input) {
            Ok(msg) => {
                accepted += 1;
                let bytes = msg.to_bytes();
                let again = parse(&bytes).unwrap_or_else(|e| {
                    panic!(
                        "re-parse failed ({}):\ninput: {:?}\nserialized: {:?}",
                        e.reason,
                        String::from_utf8_lossy(&input),
                        String::from_utf8_lossy(&bytes)
                    )
                });
                assert_eq!(
                    again.to_bytes(),
                    bytes,
                    "serialization not stable for {:?}",
                    String::from_utf8_lossy(&input)
                );
                assert_eq!(again.call_id(), msg.call_id());
                assert_eq!(again.vias(), msg.vias());
                assert_eq!(again.body(), msg.body());
                if let (Message::Request(a), Message::Request(b)) = (&again, &msg) {
                    assert_eq!(a.uri, b.uri);
                    assert_eq!(a.method, b.method);
                }
                assert_eq!(
                    framing::check(&bytes, usize::MAX),
                    Ok(Some(Frame::Message(bytes.len())))
                );
            }
            Err(e) => {
                assert!(!e.reason.is_empty());
                if let Some(resp) = e.bad_request {
                    answered += 1;
                    assert!(resp.starts_with(b"SIP/2.0 400 ") || resp.starts_with(b"SIP/2.0 505 "));
                    assert_eq!(
                        framing::check(&resp, usize::MAX),
                        Ok(Some(Frame::Message(resp.len())))
                    );
                }
            }
        }
    }
    let elapsed = started.elapsed();
    eprintln!(
        "{ITERATIONS} inputs: {accepted} accepted, {answered} answered with an error response, {elapsed:?}"
    );
    // The mutations must leave enough valid messages to exercise the round trip.
    assert!(accepted > ITERATIONS / 10, "only {accepted} accepted");
    assert!(answered > ITERATIONS / 10, "only {answered} answered");
}

#[test]
fn torture_fixtures_split_anywhere_never_panic() {
    // Every prefix of every RFC 4475 fixture: parse and frame without panic.
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/torture");
    for entry in std::fs::read_dir(dir).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        for cut in 0..=bytes.len() {
            let _ = parse(&bytes[..cut]);
            check_framing(&bytes[..cut]);
        }
    }
}
