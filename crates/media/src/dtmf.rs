//! RFC 4733 telephone-events (DTMF over RTP): payload parsing/building, a
//! detector that reports each key press exactly once, and a generator for the
//! packet train the RTP manager sends for one digit.

/// Payload type commonly negotiated for `telephone-event/8000`.
pub const DEFAULT_PAYLOAD_TYPE: u8 = 101;
/// RTP timestamp units (8 kHz) covered by one 20 ms packet.
pub const SAMPLES_PER_PACKET: u16 = 160;
/// How many times the final (end) packet of an event is sent.
pub const END_PACKET_REPEATS: usize = 3;

/// One RFC 4733 event payload (the first 4 bytes of the RTP payload).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TelephoneEvent {
    /// Event code (0–15 are the DTMF keys).
    pub event: u8,
    /// E bit: this is (a retransmission of) the final packet of the event.
    pub end: bool,
    /// Power level as −dBm0, 6 bits (0–63).
    pub volume: u8,
    /// Duration so far, in RTP timestamp units.
    pub duration: u16,
}

impl TelephoneEvent {
    /// Parses the first event of a payload; `None` when shorter than 4 bytes.
    /// The reserved R bit is ignored.
    pub fn parse(payload: &[u8]) -> Option<TelephoneEvent> {
        let &[event, flags, d0, d1, ..] = payload else {
            return None;
        };
        Some(TelephoneEvent {
            event,
            end: flags & 0x80 != 0,
            volume: flags & 0x3F,
            duration: u16::from_be_bytes([d0, d1]),
        })
    }

    /// Serialises to the 4-byte wire form (R bit 0, volume masked to 6 bits).
    pub fn to_bytes(&self) -> [u8; 4] {
        let [d0, d1] = self.duration.to_be_bytes();
        let flags = if self.end { 0x80 } else { 0 } | (self.volume & 0x3F);
        [self.event, flags, d0, d1]
    }
}

/// DTMF event code → key: 0–9, 10 `*`, 11 `#`, 12–15 `A`–`D`.
pub fn event_to_digit(event: u8) -> Option<char> {
    match event {
        0..=9 => Some(char::from(b'0' + event)),
        10 => Some('*'),
        11 => Some('#'),
        12..=15 => Some(char::from(b'A' + (event - 12))),
        _ => None,
    }
}

/// Key → DTMF event code; accepts `a`–`d` as well as `A`–`D`.
pub fn digit_to_event(c: char) -> Option<u8> {
    match c {
        '0'..='9' => Some(c as u8 - b'0'),
        '*' => Some(10),
        '#' => Some(11),
        'A'..='D' => Some(c as u8 - b'A' + 12),
        'a'..='d' => Some(c as u8 - b'a' + 12),
        _ => None,
    }
}

/// How many recently seen event timestamps are remembered, so that late or
/// reordered packets of an earlier press are not reported again.
const RECENT_EVENTS: usize = 8;
/// A new timestamp continues the current event (RFC 4733 §2.5.1.3 long-event
/// segment, sent without marker) only if the current event already lasted at
/// least this long and has not ended.
const LONG_EVENT_MIN_DURATION: u16 = 0xFFFF - 8000;
/// Slack (timestamp units) allowed between a segment's end and the next one.
const SEGMENT_SLACK: u32 = 8000;

#[derive(Debug, Clone, Copy)]
struct CurrentEvent {
    timestamp: u32,
    event: u8,
    ended: bool,
    max_duration: u16,
}

/// Turns received telephone-event packets into key presses, each reported
/// once: on the first packet seen with a new RTP timestamp (normally the
/// marker packet, but a press whose first packets were lost is still
/// reported). Updates and the repeated end packets of the same timestamp are
/// ignored, as are payloads that are too short or carry non-DTMF events.
#[derive(Debug, Clone, Default)]
pub struct DtmfDetector {
    recent: [Option<u32>; RECENT_EVENTS],
    next_slot: usize,
    current: Option<CurrentEvent>,
}

impl DtmfDetector {
    /// A detector that has seen nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// Forgets all state (e.g. when the sender's SSRC changes).
    pub fn reset(&mut self) {
        *self = Self::default();
    }

    /// Feeds one telephone-event packet; returns the key when it starts a
    /// new press.
    pub fn on_packet(&mut self, rtp_timestamp: u32, marker: bool, payload: &[u8]) -> Option<char> {
        let ev = TelephoneEvent::parse(payload)?;
        let digit = event_to_digit(ev.event)?;

        if let Some(cur) = self.current.as_mut()
            && cur.timestamp == rtp_timestamp
        {
            if cur.event == ev.event {
                cur.ended |= ev.end;
                cur.max_duration = cur.max_duration.max(ev.duration);
            }
            return None;
        }
        if self.recent.contains(&Some(rtp_timestamp)) {
            return None;
        }

        let continues = self.current.is_some_and(|cur| {
            let delta = rtp_timestamp.wrapping_sub(cur.timestamp);
            !marker
                && !cur.ended
                && cur.event == ev.event
                && cur.max_duration >= LONG_EVENT_MIN_DURATION
                && delta >= u32::from(cur.max_duration)
                && delta <= u32::from(u16::MAX) + SEGMENT_SLACK
        });

        self.recent[self.next_slot] = Some(rtp_timestamp);
        self.next_slot = (self.next_slot + 1) % RECENT_EVENTS;
        self.current = Some(CurrentEvent {
            timestamp: rtp_timestamp,
            event: ev.event,
            ended: ev.end,
            max_duration: ev.duration,
        });
        if continues { None } else { Some(digit) }
    }
}

/// Builds the payloads for sending one key press.
#[derive(Debug, Clone, Copy, Default)]
pub struct DtmfGenerator;

impl DtmfGenerator {
    /// Payloads for one press of `digit`, in sending order, each with its
    /// marker flag (set on the first only). The caller sends them 20 ms apart
    /// under one RTP timestamp: updates with durations 160, 320, … below the
    /// total, then [`END_PACKET_REPEATS`] end packets carrying the total.
    ///
    /// `duration_ms` is clamped to 20..=8191 ms (one 16-bit duration field;
    /// long-event segments are not generated) and `volume` to 0..=63.
    /// Returns `None` for a character that is not a DTMF key.
    pub fn packets(digit: char, duration_ms: u32, volume: u8) -> Option<Vec<([u8; 4], bool)>> {
        let event = digit_to_event(digit)?;
        let volume = volume.min(63);
        let step = u32::from(SAMPLES_PER_PACKET);
        let total = duration_ms
            .saturating_mul(8)
            .clamp(step, u32::from(u16::MAX));
        let updates = total.div_ceil(step).saturating_sub(1).max(1);

        let mut out = Vec::with_capacity(updates as usize + END_PACKET_REPEATS);
        for i in 1..=updates {
            let duration = (i * step).min(total);
            let ev = TelephoneEvent {
                event,
                end: false,
                volume,
                duration: u16::try_from(duration).unwrap_or(u16::MAX),
            };
            out.push((ev.to_bytes(), i == 1));
        }
        let end = TelephoneEvent {
            event,
            end: true,
            volume,
            duration: u16::try_from(total).unwrap_or(u16::MAX),
        };
        for _ in 0..END_PACKET_REPEATS {
            out.push((end.to_bytes(), false));
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_serialise() {
        let cases: &[(&[u8], Option<TelephoneEvent>)] = &[
            (&[], None),
            (&[1, 2, 3], None),
            (
                &[5, 0x0A, 0x01, 0x40],
                Some(TelephoneEvent {
                    event: 5,
                    end: false,
                    volume: 10,
                    duration: 320,
                }),
            ),
            (
                &[11, 0x8A, 0x03, 0x20],
                Some(TelephoneEvent {
                    event: 11,
                    end: true,
                    volume: 10,
                    duration: 800,
                }),
            ),
            // R bit set, volume 63, max duration, trailing bytes ignored.
            (
                &[200, 0x7F, 0xFF, 0xFF, 9, 9],
                Some(TelephoneEvent {
                    event: 200,
                    end: false,
                    volume: 63,
                    duration: 0xFFFF,
                }),
            ),
        ];
        for (bytes, expected) in cases {
            assert_eq!(TelephoneEvent::parse(bytes), *expected, "{bytes:?}");
        }
        let ev = TelephoneEvent {
            event: 11,
            end: true,
            volume: 10,
            duration: 800,
        };
        assert_eq!(ev.to_bytes(), [11, 0x8A, 0x03, 0x20]);
        assert_eq!(TelephoneEvent::parse(&ev.to_bytes()), Some(ev));
        // Volume is masked to 6 bits and never sets the E/R bits.
        let loud = TelephoneEvent {
            event: 1,
            end: false,
            volume: 0xFF,
            duration: 0,
        };
        assert_eq!(loud.to_bytes()[1], 0x3F);
    }

    #[test]
    fn digit_mapping() {
        let table: &[(u8, char)] = &[
            (0, '0'),
            (1, '1'),
            (5, '5'),
            (9, '9'),
            (10, '*'),
            (11, '#'),
            (12, 'A'),
            (13, 'B'),
            (14, 'C'),
            (15, 'D'),
        ];
        for &(event, digit) in table {
            assert_eq!(event_to_digit(event), Some(digit));
            assert_eq!(digit_to_event(digit), Some(event));
            assert_eq!(digit_to_event(digit.to_ascii_lowercase()), Some(event));
        }
        for event in 16..=255u8 {
            assert_eq!(event_to_digit(event), None);
        }
        for c in ['e', 'E', ' ', 'x', '+', '/', ':', 'é'] {
            assert_eq!(digit_to_event(c), None, "{c:?}");
        }
    }

    fn payload(event: u8, end: bool, duration: u16) -> [u8; 4] {
        TelephoneEvent {
            event,
            end,
            volume: 10,
            duration,
        }
        .to_bytes()
    }

    /// (timestamp, marker, payload, expected report)
    type Step = (u32, bool, Vec<u8>, Option<char>);

    fn run(steps: &[Step]) {
        let mut det = DtmfDetector::new();
        for (i, (ts, marker, p, expected)) in steps.iter().enumerate() {
            assert_eq!(det.on_packet(*ts, *marker, p), *expected, "step {i}");
        }
    }

    #[test]
    fn detector_reports_once_per_press() {
        run(&[
            (1000, true, payload(1, false, 160).to_vec(), Some('1')),
            (1000, false, payload(1, false, 320).to_vec(), None),
            (1000, false, payload(1, false, 480).to_vec(), None),
            (1000, false, payload(1, true, 640).to_vec(), None),
            (1000, false, payload(1, true, 640).to_vec(), None),
            (1000, false, payload(1, true, 640).to_vec(), None),
            // Same key again: new timestamp, new press.
            (3000, true, payload(1, false, 160).to_vec(), Some('1')),
            (3000, false, payload(1, true, 320).to_vec(), None),
            // Another key.
            (5000, true, payload(11, false, 160).to_vec(), Some('#')),
            (5000, false, payload(11, true, 320).to_vec(), None),
        ]);
    }

    #[test]
    fn detector_survives_loss_and_garbage() {
        run(&[
            // First packets lost: report on the first seen (no marker).
            (1000, false, payload(2, false, 480).to_vec(), Some('2')),
            (1000, false, payload(2, true, 800).to_vec(), None),
            // Only an end packet of a press survives.
            (2000, false, payload(3, true, 800).to_vec(), Some('3')),
            (2000, false, payload(3, true, 800).to_vec(), None),
            // Garbage: too short, non-DTMF event codes.
            (3000, true, vec![], None),
            (3000, true, vec![1, 2], None),
            (3000, true, payload(16, false, 160).to_vec(), None),
            (3000, true, payload(255, false, 160).to_vec(), None),
            // A valid press with that timestamp still counts.
            (3000, true, payload(12, false, 160).to_vec(), Some('A')),
            // Late end packet of the first press: not reported again.
            (1000, false, payload(2, true, 800).to_vec(), None),
            // Wrapping timestamps.
            (u32::MAX, true, payload(0, false, 160).to_vec(), Some('0')),
            (4, true, payload(0, false, 160).to_vec(), Some('0')),
        ]);
    }

    #[test]
    fn detector_long_event_segments_are_one_press() {
        run(&[
            (10_000, true, payload(5, false, 160).to_vec(), Some('5')),
            (10_000, false, payload(5, false, 0xFFFF).to_vec(), None),
            // Next segment: timestamp advanced by 0xFFFF, no marker.
            (
                10_000 + 0xFFFF,
                false,
                payload(5, false, 160).to_vec(),
                None,
            ),
            (
                10_000 + 0xFFFF,
                false,
                payload(5, true, 4000).to_vec(),
                None,
            ),
            // After the end, the same key is a new press even without marker.
            (
                10_000 + 0xFFFF + 8000,
                false,
                payload(5, false, 160).to_vec(),
                Some('5'),
            ),
        ]);
    }

    #[test]
    fn detector_reset() {
        let mut det = DtmfDetector::new();
        assert_eq!(det.on_packet(7, true, &payload(4, false, 160)), Some('4'));
        assert_eq!(det.on_packet(7, false, &payload(4, false, 320)), None);
        det.reset();
        assert_eq!(det.on_packet(7, false, &payload(4, false, 480)), Some('4'));
    }

    #[test]
    fn generator_packet_trains() {
        // (digit, duration_ms) → expected update durations and end duration
        let cases: &[(char, u32, &[u16], u16)] = &[
            ('5', 100, &[160, 320, 480, 640], 800),
            ('#', 20, &[160], 160),
            ('0', 0, &[160], 160),
            ('d', 50, &[160, 320], 400),
            ('*', 60, &[160, 320], 480),
            ('1', 1_000_000, &[], 0xFFFF),
        ];
        for &(digit, ms, updates, end_duration) in cases {
            let packets = DtmfGenerator::packets(digit, ms, 10).unwrap();
            let event = digit_to_event(digit).unwrap();
            let n_updates = if updates.is_empty() {
                packets.len() - END_PACKET_REPEATS
            } else {
                updates.len()
            };
            assert_eq!(
                packets.len(),
                n_updates + END_PACKET_REPEATS,
                "{digit} {ms}"
            );
            for (i, (bytes, marker)) in packets.iter().enumerate() {
                let ev = TelephoneEvent::parse(bytes).unwrap();
                assert_eq!(ev.event, event);
                assert_eq!(ev.volume, 10);
                assert_eq!(*marker, i == 0);
                if i < n_updates {
                    assert!(!ev.end);
                    assert_eq!(ev.duration, (i as u16 + 1) * SAMPLES_PER_PACKET);
                    if let Some(&d) = updates.get(i) {
                        assert_eq!(ev.duration, d);
                    }
                } else {
                    assert!(ev.end);
                    assert_eq!(ev.duration, end_duration);
                }
            }
        }
        assert_eq!(DtmfGenerator::packets('x', 100, 10), None);
        let loud = DtmfGenerator::packets('1', 100, 200).unwrap();
        assert_eq!(TelephoneEvent::parse(&loud[0].0).unwrap().volume, 63);
    }

    #[test]
    fn generator_output_detected_once() {
        for digit in "0123456789*#ABCD".chars() {
            let mut det = DtmfDetector::new();
            let packets = DtmfGenerator::packets(digit, 120, 10).unwrap();
            let reported: Vec<char> = packets
                .iter()
                .filter_map(|(p, m)| det.on_packet(42, *m, p))
                .collect();
            assert_eq!(reported, vec![digit]);
        }
    }
}
