//! INVITE server transaction, RFC 3261 §17.2.1 (Figure 7) as updated by
//! RFC 6026 §7.1 (the Accepted state).
//!
//! Sans-IO: the machine is handed events and returns [`Output`]s.
//!
//! RFC 6026 instead of plain RFC 3261 for 2xx: RFC 3261 destroys the
//! transaction when the TU sends a 2xx, so retransmitted INVITEs would look
//! like new requests and a second call would be offered. Here a 2xx moves
//! the machine to Accepted for Timer L (64·T1): retransmitted INVITEs are
//! absorbed, the TU's own 2xx retransmissions are sent through it, and an
//! ACK that matches it is handed to the TU ([`Output::AckToTu`]).
//!
//! 100 Trying: the runtime answers every INVITE at once (B2BUA behaviour, so
//! the previous hop stops retransmitting while the far leg is set up), which
//! is why [`ServerInvite::new`] takes the 100's bytes and emits it.

use std::time::Duration;

use bytes::Bytes;

use super::output::{Class, Output, outputs};
use super::timers::{Timer, TimerConfig};
use crate::target::TransportKind;

/// The states of RFC 3261 Figure 7 plus RFC 6026's Accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerInviteState {
    /// Waiting for the TU; a retransmitted INVITE resends the last 1xx.
    Proceeding,
    /// RFC 6026: a 2xx was sent; INVITEs are absorbed until Timer L.
    Accepted,
    /// A 300-699 was sent; Timer G retransmits it (UDP) until the ACK or H.
    Completed,
    /// The ACK arrived; Timer I absorbs ACK retransmissions.
    Confirmed,
    /// Over.
    Terminated,
}

/// An INVITE server transaction.
#[derive(Debug, Clone)]
pub struct ServerInvite {
    state: ServerInviteState,
    config: TimerConfig,
    transport: TransportKind,
    /// The last provisional (Proceeding) or the final (Completed); empty
    /// when there is nothing to retransmit.
    last: Bytes,
    /// The interval Timer G was last started with.
    interval_g: Duration,
}

impl ServerInvite {
    /// A new INVITE arrived. `trying` is the 100 Trying to send at once;
    /// `None` if the TU will answer within 200 ms (RFC 3261 §17.2.1).
    pub fn new(
        config: TimerConfig,
        transport: TransportKind,
        trying: Option<Bytes>,
    ) -> (Self, Vec<Output>) {
        let mut out = outputs();
        let last = match trying {
            Some(bytes) => {
                out.push(Output::Transmit(bytes.clone()));
                bytes
            }
            None => Bytes::new(),
        };
        let machine = Self {
            state: ServerInviteState::Proceeding,
            config,
            transport,
            last,
            interval_g: Duration::ZERO,
        };
        (machine, out)
    }

    /// The current state.
    pub fn state(&self) -> ServerInviteState {
        self.state
    }

    /// Whether a 100 Trying is still owed: nothing has been sent yet. A
    /// runtime that did not send one on creation checks this 200 ms later.
    pub fn needs_trying(&self) -> bool {
        self.state == ServerInviteState::Proceeding && self.last.is_empty()
    }

    /// A retransmission of the INVITE arrived.
    pub fn on_request(&mut self) -> Vec<Output> {
        let mut out = outputs();
        if self.state == ServerInviteState::Terminated {
            return out;
        }
        out.push(Output::Absorbed);
        let resend = matches!(
            self.state,
            ServerInviteState::Proceeding | ServerInviteState::Completed
        );
        if resend && !self.last.is_empty() {
            out.push(Output::Retransmit(self.last.clone()));
        }
        out
    }

    /// An ACK matched this transaction.
    ///
    /// In Completed it acknowledges our 300-699 and is absorbed here; in
    /// Accepted it acknowledges a 2xx and goes to the TU (RFC 6026). An ACK
    /// before any final response is bogus and ignored.
    pub fn on_ack(&mut self) -> Vec<Output> {
        let mut out = outputs();
        match self.state {
            ServerInviteState::Completed => {
                let i = self.config.duration(Timer::I, self.transport);
                if i.is_zero() {
                    self.terminate(&mut out);
                } else {
                    if !self.interval_g.is_zero() {
                        out.push(Output::Stop(Timer::G));
                    }
                    out.push(Output::Stop(Timer::H));
                    out.push(Output::Start(Timer::I, i));
                    self.state = ServerInviteState::Confirmed;
                    self.last = Bytes::new();
                }
            }
            ServerInviteState::Confirmed => out.push(Output::Absorbed),
            ServerInviteState::Accepted => out.push(Output::AckToTu),
            ServerInviteState::Proceeding | ServerInviteState::Terminated => {}
        }
        out
    }

    /// The TU sends a response with status `code`, serialized as `bytes`.
    ///
    /// Responses the state no longer allows (anything after a 300-699, a
    /// non-2xx after a 2xx, invalid codes) are discarded, as §17.2.1 and
    /// RFC 6026 §7.1 require.
    pub fn respond(&mut self, code: u16, bytes: Bytes) -> Vec<Output> {
        let mut out = outputs();
        match (self.state, Class::of(code)) {
            (ServerInviteState::Proceeding, Class::Provisional) => {
                out.push(Output::Transmit(bytes.clone()));
                self.last = bytes;
            }
            (ServerInviteState::Proceeding, Class::Success) => {
                out.push(Output::Transmit(bytes));
                out.push(Output::Start(
                    Timer::L,
                    self.config.duration(Timer::L, self.transport),
                ));
                self.state = ServerInviteState::Accepted;
                self.last = Bytes::new();
            }
            (ServerInviteState::Proceeding, Class::Failure) => {
                out.push(Output::Transmit(bytes.clone()));
                self.interval_g = self.config.duration(Timer::G, self.transport);
                if !self.interval_g.is_zero() {
                    out.push(Output::Start(Timer::G, self.interval_g));
                }
                out.push(Output::Start(
                    Timer::H,
                    self.config.duration(Timer::H, self.transport),
                ));
                self.state = ServerInviteState::Completed;
                self.last = bytes;
            }
            (ServerInviteState::Accepted, Class::Success) => {
                out.push(Output::Transmit(bytes));
            }
            _ => {}
        }
        out
    }

    /// A timer this machine started fired. Stale timers are ignored.
    pub fn on_timer(&mut self, timer: Timer) -> Vec<Output> {
        let mut out = outputs();
        match (self.state, timer) {
            (ServerInviteState::Completed, Timer::G) => {
                self.interval_g = self.config.backoff(Timer::G, self.interval_g);
                out.push(Output::Retransmit(self.last.clone()));
                out.push(Output::Start(Timer::G, self.interval_g));
            }
            (ServerInviteState::Completed, Timer::H) => {
                out.push(Output::Timeout);
                self.terminate(&mut out);
            }
            (ServerInviteState::Confirmed, Timer::I) | (ServerInviteState::Accepted, Timer::L) => {
                self.terminate(&mut out);
            }
            _ => {}
        }
        out
    }

    /// Sending a response failed (RFC 3261 §17.2.4). In Accepted the TU is
    /// told but the machine stays, as RFC 6026 Figure 7 shows, so INVITE
    /// retransmissions are still absorbed.
    pub fn on_transport_error(&mut self) -> Vec<Output> {
        let mut out = outputs();
        match self.state {
            ServerInviteState::Proceeding | ServerInviteState::Completed => {
                out.push(Output::TransportError);
                self.terminate(&mut out);
            }
            ServerInviteState::Accepted => out.push(Output::TransportError),
            ServerInviteState::Confirmed | ServerInviteState::Terminated => {}
        }
        out
    }

    fn terminate(&mut self, out: &mut Vec<Output>) {
        self.state = ServerInviteState::Terminated;
        self.last = Bytes::new();
        out.push(Output::Terminated);
    }
}

#[cfg(test)]
mod tests {
    use super::ServerInviteState::{Accepted, Completed, Confirmed, Proceeding};
    use super::*;
    use Output::*;

    /// The state; `Terminated` alone names the output.
    const DONE: ServerInviteState = ServerInviteState::Terminated;

    #[derive(Debug, Clone, Copy)]
    enum Ev {
        Invite,
        Ack,
        Tu(u16),
        Fire(Timer),
        TransportErr,
    }

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }
    fn resp(code: u16) -> Bytes {
        Bytes::from(format!("SIP/2.0 {code}"))
    }

    fn run(transport: TransportKind, trying: bool, steps: &[(Ev, Vec<Output>, ServerInviteState)]) {
        let trying = trying.then(|| resp(100));
        let (mut m, out) = ServerInvite::new(TimerConfig::default(), transport, trying.clone());
        assert_eq!(out, trying.map(Transmit).into_iter().collect::<Vec<_>>());
        assert_eq!(m.state(), Proceeding);
        for (i, (ev, want, state)) in steps.iter().enumerate() {
            let got = match *ev {
                Ev::Invite => m.on_request(),
                Ev::Ack => m.on_ack(),
                Ev::Tu(code) => m.respond(code, resp(code)),
                Ev::Fire(t) => m.on_timer(t),
                Ev::TransportErr => m.on_transport_error(),
            };
            assert_eq!(&got, want, "step {i}: {ev:?}");
            assert_eq!(m.state(), *state, "state after step {i}: {ev:?}");
        }
    }

    fn g(next: u64) -> (Ev, Vec<Output>, ServerInviteState) {
        (
            Ev::Fire(Timer::G),
            vec![Retransmit(resp(486)), Start(Timer::G, ms(next))],
            Completed,
        )
    }

    #[test]
    fn proceeding_resends_last_provisional() {
        run(
            TransportKind::Udp,
            true,
            &[
                (
                    Ev::Invite,
                    vec![Absorbed, Retransmit(resp(100))],
                    Proceeding,
                ),
                (Ev::Tu(180), vec![Transmit(resp(180))], Proceeding),
                (
                    Ev::Invite,
                    vec![Absorbed, Retransmit(resp(180))],
                    Proceeding,
                ),
                (Ev::Ack, vec![], Proceeding),
                (Ev::Fire(Timer::G), vec![], Proceeding),
            ],
        );
    }

    #[test]
    fn without_trying_retransmission_is_absorbed_silently() {
        let (m, _) = ServerInvite::new(TimerConfig::default(), TransportKind::Udp, None);
        assert!(m.needs_trying());
        run(
            TransportKind::Udp,
            false,
            &[
                (Ev::Invite, vec![Absorbed], Proceeding),
                (Ev::Tu(180), vec![Transmit(resp(180))], Proceeding),
            ],
        );
        let (m, _) = ServerInvite::new(TimerConfig::default(), TransportKind::Udp, Some(resp(100)));
        assert!(!m.needs_trying());
    }

    #[test]
    fn failure_retransmitted_by_g_capped_at_t2_until_ack_then_i() {
        run(
            TransportKind::Udp,
            true,
            &[
                (
                    Ev::Tu(486),
                    vec![
                        Transmit(resp(486)),
                        Start(Timer::G, ms(500)),
                        Start(Timer::H, ms(32_000)),
                    ],
                    Completed,
                ),
                g(1000),
                g(2000),
                g(4000),
                g(4000),
                (Ev::Invite, vec![Absorbed, Retransmit(resp(486))], Completed),
                (Ev::Tu(200), vec![], Completed),
                (Ev::Tu(500), vec![], Completed),
                (
                    Ev::Ack,
                    vec![Stop(Timer::G), Stop(Timer::H), Start(Timer::I, ms(5000))],
                    Confirmed,
                ),
                (Ev::Ack, vec![Absorbed], Confirmed),
                (Ev::Invite, vec![Absorbed], Confirmed),
                (Ev::Fire(Timer::G), vec![], Confirmed),
                (Ev::TransportErr, vec![], Confirmed),
                (Ev::Fire(Timer::I), vec![Terminated], DONE),
                (Ev::Ack, vec![], DONE),
                (Ev::Invite, vec![], DONE),
            ],
        );
    }

    #[test]
    fn timer_h_times_out() {
        run(
            TransportKind::Udp,
            true,
            &[
                (
                    Ev::Tu(603),
                    vec![
                        Transmit(resp(603)),
                        Start(Timer::G, ms(500)),
                        Start(Timer::H, ms(32_000)),
                    ],
                    Completed,
                ),
                (Ev::Fire(Timer::H), vec![Timeout, Terminated], DONE),
            ],
        );
    }

    #[test]
    fn reliable_failure_has_no_g_and_no_i() {
        run(
            TransportKind::Tcp,
            true,
            &[
                (
                    Ev::Tu(404),
                    vec![Transmit(resp(404)), Start(Timer::H, ms(32_000))],
                    Completed,
                ),
                (Ev::Invite, vec![Absorbed, Retransmit(resp(404))], Completed),
                (Ev::Ack, vec![Terminated], DONE),
            ],
        );
    }

    #[test]
    fn success_enters_accepted_per_rfc_6026() {
        for transport in [TransportKind::Udp, TransportKind::Tcp] {
            run(
                transport,
                true,
                &[
                    (Ev::Tu(180), vec![Transmit(resp(180))], Proceeding),
                    (
                        Ev::Tu(200),
                        vec![Transmit(resp(200)), Start(Timer::L, ms(32_000))],
                        Accepted,
                    ),
                    (Ev::Invite, vec![Absorbed], Accepted),
                    (Ev::Tu(200), vec![Transmit(resp(200))], Accepted),
                    (Ev::Tu(180), vec![], Accepted),
                    (Ev::Tu(486), vec![], Accepted),
                    (Ev::Ack, vec![AckToTu], Accepted),
                    (Ev::Ack, vec![AckToTu], Accepted),
                    (Ev::TransportErr, vec![TransportError], Accepted),
                    (Ev::Fire(Timer::L), vec![Terminated], DONE),
                    (Ev::Ack, vec![], DONE),
                ],
            );
        }
    }

    #[test]
    fn transport_errors_terminate_proceeding_and_completed() {
        run(
            TransportKind::Udp,
            true,
            &[(Ev::TransportErr, vec![TransportError, Terminated], DONE)],
        );
        run(
            TransportKind::Udp,
            true,
            &[
                (
                    Ev::Tu(500),
                    vec![
                        Transmit(resp(500)),
                        Start(Timer::G, ms(500)),
                        Start(Timer::H, ms(32_000)),
                    ],
                    Completed,
                ),
                (Ev::TransportErr, vec![TransportError, Terminated], DONE),
                (Ev::Tu(500), vec![], DONE),
            ],
        );
    }

    #[test]
    fn invalid_codes_are_discarded() {
        run(
            TransportKind::Udp,
            true,
            &[
                (Ev::Tu(42), vec![], Proceeding),
                (Ev::Tu(700), vec![], Proceeding),
            ],
        );
    }
}
