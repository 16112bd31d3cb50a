//! INVITE client transaction, RFC 3261 §17.1.1 (Figure 5).
//!
//! Sans-IO: the machine is handed events and returns [`Output`]s; the
//! runtime owns sockets and clocks.
//!
//! A 2xx ends the transaction at once (RFC 3261 behaviour): the ACK for a
//! 2xx and any 2xx retransmissions are the TU's (dialog layer's) business.
//! RFC 6026's client-side Accepted state (Timer M) is not implemented, so a
//! retransmitted or forked 2xx reaches the runtime as a stray response that
//! must be routed to the dialog layer.

use std::time::Duration;

use bytes::Bytes;

use super::output::{Class, Output, outputs};
use super::timers::{Timer, TimerConfig};
use crate::target::TransportKind;

/// The states of RFC 3261 Figure 5.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientInviteState {
    /// INVITE sent, no response yet; Timer A retransmits (UDP), B times out.
    Calling,
    /// A provisional response arrived; retransmission stops.
    Proceeding,
    /// A 300-699 arrived and was ACKed; Timer D absorbs its retransmissions.
    Completed,
    /// Over.
    Terminated,
}

/// An INVITE client transaction.
#[derive(Debug, Clone)]
pub struct ClientInvite {
    state: ClientInviteState,
    config: TimerConfig,
    transport: TransportKind,
    /// The INVITE: retransmitted in Calling, and the source of the ACK for
    /// a 300-699 final; dropped once the final arrived.
    request: Bytes,
    /// The ACK for a non-2xx final, kept in Completed to answer retransmits.
    ack: Bytes,
    /// The interval Timer A was last started with.
    interval_a: Duration,
}

impl ClientInvite {
    /// Start the transaction: send `request` and arm Timers A (UDP) and B.
    pub fn new(
        config: TimerConfig,
        transport: TransportKind,
        request: Bytes,
    ) -> (Self, Vec<Output>) {
        let interval_a = config.duration(Timer::A, transport);
        let mut out = outputs();
        out.push(Output::Transmit(request.clone()));
        if !interval_a.is_zero() {
            out.push(Output::Start(Timer::A, interval_a));
        }
        out.push(Output::Start(
            Timer::B,
            config.duration(Timer::B, transport),
        ));
        let machine = Self {
            state: ClientInviteState::Calling,
            config,
            transport,
            request,
            ack: Bytes::new(),
            interval_a,
        };
        (machine, out)
    }

    /// The current state.
    pub fn state(&self) -> ClientInviteState {
        self.state
    }

    /// A response with status `code` matched this transaction.
    ///
    /// `ack` builds the ACK for a 300-699 final from the INVITE; it is
    /// called at most once, on the first such response, because only the
    /// layer above can parse and build messages (RFC 3261 §17.1.1.3 fixes
    /// its contents).
    pub fn on_response(&mut self, code: u16, ack: impl FnOnce(&Bytes) -> Bytes) -> Vec<Output> {
        let mut out = outputs();
        let class = Class::of(code);
        if class == Class::Invalid {
            return out;
        }
        match self.state {
            ClientInviteState::Calling | ClientInviteState::Proceeding => match class {
                Class::Provisional => {
                    self.leave_calling(&mut out);
                    self.state = ClientInviteState::Proceeding;
                    out.push(Output::Deliver(code));
                }
                Class::Success => {
                    out.push(Output::Deliver(code));
                    self.terminate(&mut out);
                }
                Class::Failure | Class::Invalid => {
                    let d = self.config.duration(Timer::D, self.transport);
                    if !d.is_zero() {
                        self.leave_calling(&mut out);
                    }
                    self.ack = ack(&self.request);
                    self.request = Bytes::new();
                    out.push(Output::Transmit(self.ack.clone()));
                    out.push(Output::Deliver(code));
                    if d.is_zero() {
                        self.terminate(&mut out);
                    } else {
                        self.state = ClientInviteState::Completed;
                        out.push(Output::Start(Timer::D, d));
                    }
                }
            },
            ClientInviteState::Completed => {
                out.push(Output::Absorbed);
                if class == Class::Failure {
                    out.push(Output::Retransmit(self.ack.clone()));
                }
            }
            ClientInviteState::Terminated => {}
        }
        out
    }

    /// A timer this machine started fired. Stale timers are ignored.
    pub fn on_timer(&mut self, timer: Timer) -> Vec<Output> {
        let mut out = outputs();
        match (self.state, timer) {
            (ClientInviteState::Calling, Timer::A) => {
                self.interval_a = self.config.backoff(Timer::A, self.interval_a);
                out.push(Output::Retransmit(self.request.clone()));
                out.push(Output::Start(Timer::A, self.interval_a));
            }
            (ClientInviteState::Calling, Timer::B) => {
                out.push(Output::Timeout);
                self.terminate(&mut out);
            }
            (ClientInviteState::Completed, Timer::D) => self.terminate(&mut out),
            _ => {}
        }
        out
    }

    /// Sending the INVITE or the ACK failed (RFC 3261 §17.1.4).
    ///
    /// Also honoured in Proceeding (Figure 5 has no such edge) because the
    /// runtime may report a dead flow there, and the final response could
    /// then never arrive.
    pub fn on_transport_error(&mut self) -> Vec<Output> {
        let mut out = outputs();
        if self.state != ClientInviteState::Terminated {
            out.push(Output::TransportError);
            self.terminate(&mut out);
        }
        out
    }

    /// Stops Calling's timers: once any response has arrived the INVITE
    /// is never retransmitted (§17.1.1.2).
    fn leave_calling(&mut self, out: &mut Vec<Output>) {
        if self.state == ClientInviteState::Calling {
            if !self.interval_a.is_zero() {
                out.push(Output::Stop(Timer::A));
            }
            out.push(Output::Stop(Timer::B));
        }
    }

    fn terminate(&mut self, out: &mut Vec<Output>) {
        self.state = ClientInviteState::Terminated;
        self.request = Bytes::new();
        self.ack = Bytes::new();
        out.push(Output::Terminated);
    }
}

#[cfg(test)]
mod tests {
    use super::ClientInviteState::{Calling, Completed, Proceeding};
    use super::*;
    use Output::*;

    /// The state; `Terminated` alone names the output.
    const DONE: ClientInviteState = ClientInviteState::Terminated;

    #[derive(Debug, Clone, Copy)]
    enum Ev {
        Resp(u16),
        Fire(Timer),
        TransportErr,
    }

    const REQ: &[u8] = b"INVITE";
    const ACK: &[u8] = b"ACK";

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }
    fn req() -> Bytes {
        Bytes::from_static(REQ)
    }
    fn ack() -> Bytes {
        Bytes::from_static(ACK)
    }

    /// Runs `steps` from a fresh machine, checking outputs and state after each.
    fn run(
        transport: TransportKind,
        initial: Vec<Output>,
        steps: &[(Ev, Vec<Output>, ClientInviteState)],
    ) {
        let (mut m, out) = ClientInvite::new(TimerConfig::default(), transport, req());
        assert_eq!(out, initial, "initial outputs");
        assert_eq!(m.state(), Calling);
        for (i, (ev, want, state)) in steps.iter().enumerate() {
            let got = match *ev {
                Ev::Resp(code) => m.on_response(code, |_| ack()),
                Ev::Fire(t) => m.on_timer(t),
                Ev::TransportErr => m.on_transport_error(),
            };
            assert_eq!(&got, want, "step {i}: {ev:?}");
            assert_eq!(m.state(), *state, "state after step {i}: {ev:?}");
        }
    }

    fn udp_start() -> Vec<Output> {
        vec![
            Transmit(req()),
            Start(Timer::A, ms(500)),
            Start(Timer::B, ms(32_000)),
        ]
    }

    fn tcp_start() -> Vec<Output> {
        vec![Transmit(req()), Start(Timer::B, ms(32_000))]
    }

    #[test]
    fn timer_a_doubles_until_b() {
        let mut steps = Vec::new();
        for next in [1000, 2000, 4000, 8000, 16_000, 32_000] {
            steps.push((
                Ev::Fire(Timer::A),
                vec![Retransmit(req()), Start(Timer::A, ms(next))],
                Calling,
            ));
        }
        steps.push((Ev::Fire(Timer::B), vec![Timeout, Terminated], DONE));
        steps.push((Ev::Fire(Timer::A), vec![], DONE));
        steps.push((Ev::Resp(200), vec![], DONE));
        run(TransportKind::Udp, udp_start(), &steps);
    }

    #[test]
    fn provisional_then_2xx_over_udp() {
        run(
            TransportKind::Udp,
            udp_start(),
            &[
                (
                    Ev::Resp(100),
                    vec![Stop(Timer::A), Stop(Timer::B), Deliver(100)],
                    Proceeding,
                ),
                (Ev::Resp(180), vec![Deliver(180)], Proceeding),
                (Ev::Fire(Timer::A), vec![], Proceeding),
                (Ev::Fire(Timer::B), vec![], Proceeding),
                (Ev::Resp(200), vec![Deliver(200), Terminated], DONE),
            ],
        );
    }

    #[test]
    fn direct_2xx_in_calling_terminates() {
        run(
            TransportKind::Udp,
            udp_start(),
            &[(Ev::Resp(200), vec![Deliver(200), Terminated], DONE)],
        );
    }

    #[test]
    fn failure_in_calling_acks_and_waits_d() {
        run(
            TransportKind::Udp,
            udp_start(),
            &[
                (
                    Ev::Resp(486),
                    vec![
                        Stop(Timer::A),
                        Stop(Timer::B),
                        Transmit(ack()),
                        Deliver(486),
                        Start(Timer::D, ms(32_000)),
                    ],
                    Completed,
                ),
                (Ev::Resp(486), vec![Absorbed, Retransmit(ack())], Completed),
                (Ev::Resp(180), vec![Absorbed], Completed),
                (Ev::Resp(200), vec![Absorbed], Completed),
                (Ev::Fire(Timer::D), vec![Terminated], DONE),
            ],
        );
    }

    #[test]
    fn failure_in_proceeding_acks() {
        run(
            TransportKind::Udp,
            udp_start(),
            &[
                (
                    Ev::Resp(180),
                    vec![Stop(Timer::A), Stop(Timer::B), Deliver(180)],
                    Proceeding,
                ),
                (
                    Ev::Resp(603),
                    vec![Transmit(ack()), Deliver(603), Start(Timer::D, ms(32_000))],
                    Completed,
                ),
                (Ev::TransportErr, vec![TransportError, Terminated], DONE),
            ],
        );
    }

    #[test]
    fn reliable_transport_never_retransmits_and_skips_d() {
        run(
            TransportKind::Tcp,
            tcp_start(),
            &[
                (
                    Ev::Resp(100),
                    vec![Stop(Timer::B), Deliver(100)],
                    Proceeding,
                ),
                (
                    Ev::Resp(404),
                    vec![Transmit(ack()), Deliver(404), Terminated],
                    DONE,
                ),
            ],
        );
        run(
            TransportKind::Tcp,
            tcp_start(),
            &[(
                Ev::Resp(500),
                vec![Transmit(ack()), Deliver(500), Terminated],
                DONE,
            )],
        );
        run(
            TransportKind::Tls,
            tcp_start(),
            &[(Ev::Fire(Timer::B), vec![Timeout, Terminated], DONE)],
        );
    }

    #[test]
    fn transport_error_in_calling_and_proceeding() {
        run(
            TransportKind::Udp,
            udp_start(),
            &[
                (Ev::TransportErr, vec![TransportError, Terminated], DONE),
                (Ev::TransportErr, vec![], DONE),
            ],
        );
        run(
            TransportKind::Tcp,
            tcp_start(),
            &[
                (
                    Ev::Resp(183),
                    vec![Stop(Timer::B), Deliver(183)],
                    Proceeding,
                ),
                (Ev::TransportErr, vec![TransportError, Terminated], DONE),
            ],
        );
    }

    #[test]
    fn invalid_codes_are_ignored() {
        run(
            TransportKind::Udp,
            udp_start(),
            &[
                (Ev::Resp(99), vec![], Calling),
                (Ev::Resp(700), vec![], Calling),
            ],
        );
    }

    #[test]
    fn ack_is_built_once() {
        let (mut m, _) = ClientInvite::new(TimerConfig::default(), TransportKind::Udp, req());
        let mut built = 0;
        for _ in 0..3 {
            m.on_response(500, |_| {
                built += 1;
                ack()
            });
        }
        m.on_response(180, |_| {
            built += 1;
            ack()
        });
        assert_eq!(built, 1);
    }
}
