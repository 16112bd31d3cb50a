//! RFC 3550 reception statistics (A.1 sequence tracking, A.3 loss, A.8
//! interarrival jitter) for one incoming RTP stream at the 8 kHz clock, and
//! an E-model (ITU-T G.107) MOS estimate for the RTP manager's call reports.

/// RTP clock units per millisecond (G.711 and telephone-events: 8 kHz).
const UNITS_PER_MS: f64 = 8.0;
/// A.1: a forward jump up to this many sequence numbers is in-order loss.
const MAX_DROPOUT: u16 = 3000;
/// A.1: a backward jump up to this many sequence numbers is reordering.
const MAX_MISORDER: u16 = 100;
const SEQ_MOD: u32 = 1 << 16;

/// Reception statistics for one SSRC.
///
/// Follows RFC 3550 A.1 with probation simplified: the first packet
/// initialises the state. A jump of more than `MAX_DROPOUT` ahead (or
/// `MAX_MISORDER` behind) is ignored unless the next packet follows it, in
/// which case the sender is taken to have restarted and counting starts over.
/// Duplicates are counted as received, as in the RFC, so `lost()` saturates.
#[derive(Debug, Clone, Default)]
pub struct ReceiveStats {
    initialised: bool,
    max_seq: u16,
    /// Shifted count of sequence number wraps (multiples of 2^16).
    cycles: u32,
    base_seq: u32,
    /// Sequence number after a large jump; `None` when no jump is pending.
    bad_seq: Option<u16>,
    received: u64,
    expected_prior: u64,
    received_prior: u64,
    /// Relative transit time of the previous packet.
    transit: i32,
    /// Interarrival jitter in RTP units.
    jitter: f64,
}

impl ReceiveStats {
    /// Records one packet: its sequence number, RTP timestamp and arrival
    /// time expressed in the same 8 kHz clock (any origin, wrapping).
    pub fn on_packet(&mut self, seq: u16, rtp_timestamp: u32, arrival_rtp_units: u32) {
        let transit = arrival_rtp_units.wrapping_sub(rtp_timestamp) as i32;
        if !self.initialised {
            self.init_seq(seq, transit);
            self.received = 1;
            return;
        }
        let udelta = seq.wrapping_sub(self.max_seq);
        if udelta < MAX_DROPOUT {
            // In order, with a permissible gap.
            if seq < self.max_seq {
                self.cycles = self.cycles.wrapping_add(SEQ_MOD);
            }
            self.max_seq = seq;
        } else if udelta <= u16::MAX - MAX_MISORDER {
            // Very large jump.
            if self.bad_seq == Some(seq) {
                // Two sequential packets: the sender restarted.
                self.init_seq(seq, transit);
                self.received = 1;
                return;
            }
            self.bad_seq = Some(seq.wrapping_add(1));
            return;
        }
        // else: duplicate or reordered packet, counted as received.
        self.bad_seq = None;
        self.received += 1;
        self.update_jitter(transit);
    }

    fn init_seq(&mut self, seq: u16, transit: i32) {
        *self = ReceiveStats {
            initialised: true,
            max_seq: seq,
            base_seq: u32::from(seq),
            transit,
            ..ReceiveStats::default()
        };
    }

    /// RFC 3550 A.8.
    fn update_jitter(&mut self, transit: i32) {
        let d = f64::from(transit.wrapping_sub(self.transit)).abs();
        self.transit = transit;
        self.jitter += (d - self.jitter) / 16.0;
    }

    /// Packets received (duplicates included).
    pub fn packets(&self) -> u64 {
        self.received
    }

    /// Highest sequence number seen, extended with the wrap count.
    pub fn extended_max_seq(&self) -> u32 {
        self.cycles.wrapping_add(u32::from(self.max_seq))
    }

    fn extended_max(&self) -> u64 {
        u64::from(self.cycles) + u64::from(self.max_seq)
    }

    /// Packets expected: extended highest sequence − base + 1.
    pub fn expected(&self) -> u64 {
        if !self.initialised {
            return 0;
        }
        (self.extended_max() + 1).saturating_sub(u64::from(self.base_seq))
    }

    /// Packets lost: expected − received, never below 0.
    pub fn lost(&self) -> u64 {
        self.expected().saturating_sub(self.received)
    }

    /// Fraction of expected packets lost since the start, 0.0..=1.0.
    pub fn loss_fraction(&self) -> f64 {
        let expected = self.expected();
        if expected == 0 {
            0.0
        } else {
            self.lost() as f64 / expected as f64
        }
    }

    /// Interarrival jitter in RTP units (the RTCP report value).
    pub fn jitter_rtp_units(&self) -> u32 {
        self.jitter.round() as u32
    }

    /// Interarrival jitter in milliseconds (8 kHz clock).
    pub fn jitter_ms(&self) -> f64 {
        self.jitter / UNITS_PER_MS
    }

    /// RFC 3550 A.3 "fraction lost" for an RTCP report: loss since the
    /// previous call as an 8-bit fixed-point fraction (0 when nothing was
    /// lost or packets were duplicated).
    pub fn take_interval_fraction_lost(&mut self) -> u8 {
        let expected = self.expected();
        let expected_interval = expected.saturating_sub(self.expected_prior);
        self.expected_prior = expected;
        let received_interval = self.received.saturating_sub(self.received_prior);
        self.received_prior = self.received;
        let lost_interval = expected_interval.saturating_sub(received_interval);
        if expected_interval == 0 || lost_interval == 0 {
            0
        } else {
            u8::try_from((lost_interval << 8) / expected_interval).unwrap_or(u8::MAX)
        }
    }
}

/// Default E-model rating R0 − Is (ITU-T G.107 with all default parameters).
const R_DEFAULT: f64 = 93.2;
/// Packet-loss robustness factor Bpl of G.711 with packet loss concealment
/// (ITU-T G.113 Appendix I); Ie = 0 for G.711.
const BPL_G711_PLC: f64 = 25.1;
/// Fixed delay added to the one-way delay: one 20 ms packet of buffering is
/// not in the measured delay, half of it on average (ms).
const CODEC_DELAY_MS: f64 = 10.0;

/// Estimates MOS-CQE for a G.711 call with a simplified E-model
/// (ITU-T G.107): R = 93.2 − Id − Ie,eff with
/// * effective delay d = one-way delay + 2·jitter + 10 ms,
/// * Id = 0.024·d + 0.11·(d − 177.3)·[d > 177.3],
/// * Ie,eff = 95·Ppl / (Ppl + 25.1) (G.711 with PLC, random loss, Ppl in %),
///
/// mapped to MOS by the G.107 formula and clamped to 1.0..=4.5. Perfect
/// conditions give ≈ 4.40. Inputs are clamped: loss to 0..=1, times to ≥ 0.
pub fn mos_estimate(loss_fraction: f64, jitter_ms: f64, one_way_delay_ms: f64) -> f64 {
    let sane = |x: f64| if x.is_nan() { 0.0 } else { x.max(0.0) };
    let ppl = sane(loss_fraction).min(1.0) * 100.0;
    let d = sane(one_way_delay_ms) + 2.0 * sane(jitter_ms) + CODEC_DELAY_MS;
    let id = 0.024 * d + if d > 177.3 { 0.11 * (d - 177.3) } else { 0.0 };
    let ie_eff = 95.0 * ppl / (ppl + BPL_G711_PLC);
    let r = R_DEFAULT - id - ie_eff;
    let mos = if r.is_nan() || r <= 0.0 {
        1.0
    } else if r >= 100.0 {
        4.5
    } else {
        1.0 + 0.035 * r + r * (r - 60.0) * (100.0 - r) * 7.0e-6
    };
    mos.clamp(1.0, 4.5)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds (seq, ts, arrival) triples.
    fn feed(packets: &[(u16, u32, u32)]) -> ReceiveStats {
        let mut s = ReceiveStats::default();
        for &(seq, ts, arrival) in packets {
            s.on_packet(seq, ts, arrival);
        }
        s
    }

    /// Packets with constant transit (arrival = ts) for the given sequence numbers.
    fn seqs(list: &[u16]) -> ReceiveStats {
        let packets: Vec<(u16, u32, u32)> = list
            .iter()
            .map(|&s| (s, u32::from(s) * 160, u32::from(s) * 160))
            .collect();
        feed(&packets)
    }

    #[test]
    fn sequence_accounting_table() {
        // (name, sequence numbers, packets, expected, lost)
        let cases: &[(&str, &[u16], u64, u64, u64)] = &[
            ("empty", &[], 0, 0, 0),
            ("single", &[7], 1, 1, 0),
            ("in order", &[1, 2, 3, 4, 5], 5, 5, 0),
            ("reordered", &[1, 3, 2, 5, 4], 5, 5, 0),
            ("loss", &[1, 2, 5, 6], 4, 6, 2),
            ("loss at end is unknown", &[10, 11, 12], 3, 3, 0),
            ("duplicates", &[1, 2, 2, 3, 3, 3], 6, 3, 0),
            ("duplicates hide loss", &[1, 1, 3], 3, 3, 0),
            ("wrap", &[65534, 65535, 0, 1], 4, 4, 0),
            ("wrap with loss", &[65533, 65535, 1, 2], 4, 6, 2),
            ("reorder across wrap", &[65534, 0, 65535, 1], 4, 4, 0),
            ("late packet before base", &[100, 101, 99], 3, 2, 0),
            ("single big jump ignored", &[1, 2, 40_000, 3], 3, 3, 0),
            (
                "restart after jump",
                &[1, 2, 40_000, 40_001, 40_002],
                2,
                2,
                0,
            ),
        ];
        for &(name, list, packets, expected, lost) in cases {
            let s = seqs(list);
            assert_eq!(s.packets(), packets, "{name}: packets");
            assert_eq!(s.expected(), expected, "{name}: expected");
            assert_eq!(s.lost(), lost, "{name}: lost");
        }
    }

    #[test]
    fn many_wraps_extend_sequence() {
        let mut s = ReceiveStats::default();
        let mut seq: u16 = 65_000;
        let n = 3 * 65_536 + 10;
        for i in 0..n {
            if i % 10 != 3 {
                s.on_packet(seq, 0, 0);
            }
            seq = seq.wrapping_add(1);
        }
        assert_eq!(s.expected(), n as u64);
        assert_eq!(s.lost(), n as u64 / 10 + 1);
        assert_eq!(s.extended_max_seq(), 65_000 + n - 1);
        assert!((s.loss_fraction() - 0.1).abs() < 0.001);
    }

    #[test]
    fn jitter_zero_for_constant_transit() {
        let packets: Vec<(u16, u32, u32)> = (0..100u16)
            .map(|i| (i, u32::from(i) * 160, 12_345 + u32::from(i) * 160))
            .collect();
        let s = feed(&packets);
        assert_eq!(s.jitter_ms(), 0.0);
        assert_eq!(s.jitter_rtp_units(), 0);
    }

    #[test]
    fn jitter_alternating_transit_follows_rfc_formula() {
        // Transit alternates between +80 and −80 units: |D| = 160 each time.
        let mut s = ReceiveStats::default();
        let mut expected = 0.0f64;
        for i in 0..200u32 {
            let ts = 1_000_000u32.wrapping_add(i * 160);
            let arrival = if i % 2 == 0 {
                ts.wrapping_add(80)
            } else {
                ts.wrapping_sub(80)
            };
            s.on_packet(i as u16, ts, arrival);
            if i > 0 {
                expected += (160.0 - expected) / 16.0;
            }
            assert!((s.jitter_ms() * 8.0 - expected).abs() < 1e-9, "packet {i}");
        }
        // Closed form: J_n = 160·(1 − (15/16)^n) after n differences.
        let closed = 160.0 * (1.0 - (15.0f64 / 16.0).powi(199));
        assert!((s.jitter_ms() * 8.0 - closed).abs() < 1e-6);
        assert!((s.jitter_ms() - 20.0).abs() < 0.01);
        assert_eq!(s.jitter_rtp_units(), 160);
    }

    #[test]
    fn jitter_handles_clock_wrap() {
        let packets: Vec<(u16, u32, u32)> = (0..50u16)
            .map(|i| {
                let ts = (u32::MAX - 1000).wrapping_add(u32::from(i) * 160);
                (i, ts, ts.wrapping_add(4000))
            })
            .collect();
        assert_eq!(feed(&packets).jitter_ms(), 0.0);
    }

    #[test]
    fn interval_fraction_lost() {
        let mut s = ReceiveStats::default();
        for seq in 0..100u16 {
            if seq % 4 != 1 {
                s.on_packet(seq, 0, 0);
            }
        }
        // 25 of 100 lost → 64/256.
        assert_eq!(s.take_interval_fraction_lost(), 64);
        for seq in 100..200u16 {
            s.on_packet(seq, 0, 0);
        }
        assert_eq!(s.take_interval_fraction_lost(), 0);
        assert_eq!(s.take_interval_fraction_lost(), 0);
    }

    #[test]
    fn mos_values() {
        let perfect = mos_estimate(0.0, 0.0, 0.0);
        assert!((perfect - 4.40).abs() < 0.01, "{perfect}");
        // (loss, jitter, delay, min, max)
        let cases: &[(f64, f64, f64, f64, f64)] = &[
            (0.01, 5.0, 40.0, 4.2, 4.4),
            (0.05, 20.0, 100.0, 3.5, 4.0),
            (0.0, 0.0, 400.0, 2.8, 3.2),
            (0.5, 0.0, 0.0, 1.0, 2.0),
            (1.0, 0.0, 0.0, 1.0, 1.5),
            (0.0, 0.0, 1e9, 1.0, 1.0),
            (f64::NAN, f64::NAN, f64::NAN, 4.39, 4.41),
            (-1.0, -5.0, -5.0, 4.39, 4.41),
            (0.0, 0.0, f64::INFINITY, 1.0, 1.0),
        ];
        for &(loss, jitter, delay, lo, hi) in cases {
            let mos = mos_estimate(loss, jitter, delay);
            assert!(
                (lo..=hi).contains(&mos),
                "loss {loss} jitter {jitter} delay {delay}: {mos}"
            );
        }
    }

    #[test]
    fn mos_monotone_in_loss_jitter_and_delay() {
        let mut prev = f64::INFINITY;
        for i in 0..=100 {
            let mos = mos_estimate(f64::from(i) / 100.0, 10.0, 50.0);
            assert!(mos < prev, "loss {i}%");
            assert!((1.0..=4.5).contains(&mos));
            prev = mos;
        }
        let mut prev = f64::INFINITY;
        for ms in (0..500).step_by(10) {
            let mos = mos_estimate(0.01, f64::from(ms), 20.0);
            assert!(mos <= prev);
            prev = mos;
        }
    }
}
