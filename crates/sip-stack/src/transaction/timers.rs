//! RFC 3261 §17 timer names and values (Table 4), derived per transport.
//!
//! The state machines never read a clock: they emit `Start(timer, duration)`
//! and receive `on_timer(timer)`. This file is the single place that turns the
//! three base values (T1, T2, T4) and the transport's reliability into the
//! concrete durations, so the machines and the tests agree on them.

use std::time::Duration;

use crate::target::TransportKind;

/// The base timer values of RFC 3261 §17.1.1.1 and Table 4.
///
/// Kept configurable because T1 is an RTT estimate: a deployment on a
/// low-latency private network may shorten it, one behind satellite links
/// may lengthen it (RFC 3261 §17.1.1.1 allows both).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimerConfig {
    /// RTT estimate; first retransmission interval (default 500 ms).
    pub t1: Duration,
    /// Maximum retransmission interval for non-INVITE requests and INVITE
    /// responses (default 4 s).
    pub t2: Duration,
    /// Maximum time a message may remain in the network (default 5 s).
    pub t4: Duration,
}

impl Default for TimerConfig {
    fn default() -> Self {
        Self {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
        }
    }
}

/// The named transaction timers.
///
/// Names and meanings follow RFC 3261 Table 4 (A to K) and RFC 6026 §8.4
/// (L); they are kept as names, not bare durations, so traces and tests say
/// which rule fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Timer {
    /// RFC 3261 Table 4, §17.1.1.2: INVITE request retransmit interval, for
    /// UDP only; initially T1, doubling without cap.
    A,
    /// RFC 3261 Table 4, §17.1.1.2: INVITE transaction timeout timer, 64·T1.
    B,
    /// RFC 3261 Table 4, §17.1.1.2: wait time for response retransmits,
    /// 32 s for UDP (the RFC's lower bound), 0 s for TCP/SCTP.
    D,
    /// RFC 3261 Table 4, §17.1.2.2: non-INVITE request retransmit interval,
    /// UDP only; initially T1, doubling up to T2.
    E,
    /// RFC 3261 Table 4, §17.1.2.2: non-INVITE transaction timeout timer,
    /// 64·T1.
    F,
    /// RFC 3261 Table 4, §17.2.1: INVITE response retransmit interval;
    /// initially T1, doubling up to T2 (UDP only).
    G,
    /// RFC 3261 Table 4, §17.2.1: wait time for ACK receipt, 64·T1.
    H,
    /// RFC 3261 Table 4, §17.2.1: wait time for ACK retransmits, T4 for UDP,
    /// 0 s for TCP/SCTP.
    I,
    /// RFC 3261 Table 4, §17.2.2: wait time for non-INVITE request
    /// retransmits, 64·T1 for UDP, 0 s for TCP/SCTP.
    J,
    /// RFC 3261 Table 4, §17.1.2.2: wait time for response retransmits, T4
    /// for UDP, 0 s for TCP/SCTP.
    K,
    /// RFC 6026 §8.4 (Table 4 addition): wait time for accepted INVITE
    /// request retransmits (server "Accepted" state), 64·T1.
    L,
}

impl TimerConfig {
    /// 64·T1: the transaction timeout shared by B, F, H, J (UDP) and L.
    pub fn timeout(&self) -> Duration {
        self.t1.saturating_mul(64)
    }

    /// The value `timer` is first started with on `transport`.
    ///
    /// `Duration::ZERO` means the timer is not used on this transport: for
    /// the retransmit timers (A, E, G) it is never started on a reliable
    /// transport; for the wait timers (D, I, J, K) the machine moves to
    /// Terminated at once instead of starting it.
    pub fn duration(&self, timer: Timer, transport: TransportKind) -> Duration {
        let unreliable = !transport.is_reliable();
        let only_unreliable = |d: Duration| if unreliable { d } else { Duration::ZERO };
        match timer {
            Timer::A | Timer::E | Timer::G => only_unreliable(self.t1),
            Timer::B | Timer::F | Timer::H | Timer::L => self.timeout(),
            Timer::D => only_unreliable(Duration::from_secs(32)),
            Timer::I | Timer::K => only_unreliable(self.t4),
            Timer::J => only_unreliable(self.timeout()),
        }
    }

    /// The interval after a retransmit timer that ran for `previous` fired.
    ///
    /// Timer A doubles without bound (Timer B ends it); E and G double but
    /// are capped at T2 so long non-INVITE transactions and unacknowledged
    /// INVITE responses do not back off into silence. Other timers do not
    /// repeat and return `previous`.
    pub fn backoff(&self, timer: Timer, previous: Duration) -> Duration {
        let doubled = previous.saturating_mul(2);
        match timer {
            Timer::A => doubled,
            Timer::E | Timer::G => doubled.min(self.t2),
            _ => previous,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn defaults_are_rfc_values() {
        let c = TimerConfig::default();
        assert_eq!((c.t1, c.t2, c.t4), (MS(500), MS(4000), MS(5000)));
        assert_eq!(c.timeout(), MS(32_000));
    }

    #[test]
    fn durations_per_transport() {
        let c = TimerConfig::default();
        let udp = TransportKind::Udp;
        let tcp = TransportKind::Tcp;
        let table = [
            (Timer::A, MS(500), Duration::ZERO),
            (Timer::B, MS(32_000), MS(32_000)),
            (Timer::D, MS(32_000), Duration::ZERO),
            (Timer::E, MS(500), Duration::ZERO),
            (Timer::F, MS(32_000), MS(32_000)),
            (Timer::G, MS(500), Duration::ZERO),
            (Timer::H, MS(32_000), MS(32_000)),
            (Timer::I, MS(5000), Duration::ZERO),
            (Timer::J, MS(32_000), Duration::ZERO),
            (Timer::K, MS(5000), Duration::ZERO),
            (Timer::L, MS(32_000), MS(32_000)),
        ];
        for (timer, on_udp, on_tcp) in table {
            assert_eq!(c.duration(timer, udp), on_udp, "{timer:?} over UDP");
            assert_eq!(c.duration(timer, tcp), on_tcp, "{timer:?} over TCP");
            assert_eq!(
                c.duration(timer, TransportKind::Tls),
                on_tcp,
                "{timer:?} over TLS"
            );
        }
    }

    #[test]
    fn timer_d_does_not_follow_t1() {
        let c = TimerConfig {
            t1: MS(100),
            ..TimerConfig::default()
        };
        assert_eq!(c.duration(Timer::D, TransportKind::Udp), MS(32_000));
        assert_eq!(c.duration(Timer::B, TransportKind::Udp), MS(6400));
    }

    #[test]
    fn backoff_doubles_a_and_caps_e_and_g() {
        let c = TimerConfig::default();
        let mut a = vec![MS(500)];
        let mut e = vec![MS(500)];
        for _ in 0..5 {
            a.push(c.backoff(Timer::A, *a.last().unwrap_or(&Duration::ZERO)));
            e.push(c.backoff(Timer::E, *e.last().unwrap_or(&Duration::ZERO)));
        }
        assert_eq!(a, [500, 1000, 2000, 4000, 8000, 16_000].map(MS));
        assert_eq!(e, [500, 1000, 2000, 4000, 4000, 4000].map(MS));
        assert_eq!(c.backoff(Timer::G, MS(4000)), MS(4000));
        assert_eq!(c.backoff(Timer::B, MS(32_000)), MS(32_000));
    }
}
