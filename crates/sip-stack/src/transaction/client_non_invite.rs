//! Non-INVITE client transaction, RFC 3261 §17.1.2 (Figure 6).
//!
//! Sans-IO: the machine is handed events and returns [`Output`]s. Unlike
//! INVITE, a provisional response does not stop retransmission: Timer E keeps
//! firing, at T2 intervals once in Proceeding, until a final response or
//! Timer F.

use std::time::Duration;

use bytes::Bytes;

use super::output::{Class, Output, outputs};
use super::timers::{Timer, TimerConfig};
use crate::target::TransportKind;

/// The states of RFC 3261 Figure 6.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientNonInviteState {
    /// Request sent; Timer E retransmits (UDP), F times out.
    Trying,
    /// A provisional response arrived; E now retransmits every T2.
    Proceeding,
    /// A final response arrived; Timer K absorbs its retransmissions.
    Completed,
    /// Over.
    Terminated,
}

/// A non-INVITE client transaction.
#[derive(Debug, Clone)]
pub struct ClientNonInvite {
    state: ClientNonInviteState,
    config: TimerConfig,
    transport: TransportKind,
    /// The request, kept only while it may be retransmitted.
    request: Bytes,
    /// The interval Timer E was last started with (zero: not used).
    interval_e: Duration,
}

impl ClientNonInvite {
    /// Start the transaction: send `request` and arm Timers E (UDP) and F.
    pub fn new(
        config: TimerConfig,
        transport: TransportKind,
        request: Bytes,
    ) -> (Self, Vec<Output>) {
        let interval_e = config.duration(Timer::E, transport);
        let mut out = outputs();
        out.push(Output::Transmit(request.clone()));
        if !interval_e.is_zero() {
            out.push(Output::Start(Timer::E, interval_e));
        }
        out.push(Output::Start(
            Timer::F,
            config.duration(Timer::F, transport),
        ));
        let machine = Self {
            state: ClientNonInviteState::Trying,
            config,
            transport,
            request,
            interval_e,
        };
        (machine, out)
    }

    /// The current state.
    pub fn state(&self) -> ClientNonInviteState {
        self.state
    }

    /// A response with status `code` matched this transaction.
    pub fn on_response(&mut self, code: u16) -> Vec<Output> {
        let mut out = outputs();
        let class = Class::of(code);
        if class == Class::Invalid {
            return out;
        }
        match self.state {
            ClientNonInviteState::Trying | ClientNonInviteState::Proceeding => {
                if class == Class::Provisional {
                    self.state = ClientNonInviteState::Proceeding;
                    out.push(Output::Deliver(code));
                    return out;
                }
                let k = self.config.duration(Timer::K, self.transport);
                if k.is_zero() {
                    out.push(Output::Deliver(code));
                    self.terminate(&mut out);
                } else {
                    if !self.interval_e.is_zero() {
                        out.push(Output::Stop(Timer::E));
                    }
                    out.push(Output::Stop(Timer::F));
                    out.push(Output::Deliver(code));
                    out.push(Output::Start(Timer::K, k));
                    self.state = ClientNonInviteState::Completed;
                    self.request = Bytes::new();
                }
            }
            ClientNonInviteState::Completed => out.push(Output::Absorbed),
            ClientNonInviteState::Terminated => {}
        }
        out
    }

    /// A timer this machine started fired. Stale timers are ignored.
    pub fn on_timer(&mut self, timer: Timer) -> Vec<Output> {
        let mut out = outputs();
        match (self.state, timer) {
            (ClientNonInviteState::Trying, Timer::E) => {
                self.interval_e = self.config.backoff(Timer::E, self.interval_e);
                out.push(Output::Retransmit(self.request.clone()));
                out.push(Output::Start(Timer::E, self.interval_e));
            }
            (ClientNonInviteState::Proceeding, Timer::E) => {
                // §17.1.2.2: in Proceeding, E is always reset to T2.
                self.interval_e = self.config.t2;
                out.push(Output::Retransmit(self.request.clone()));
                out.push(Output::Start(Timer::E, self.interval_e));
            }
            (ClientNonInviteState::Trying | ClientNonInviteState::Proceeding, Timer::F) => {
                out.push(Output::Timeout);
                self.terminate(&mut out);
            }
            (ClientNonInviteState::Completed, Timer::K) => self.terminate(&mut out),
            _ => {}
        }
        out
    }

    /// Sending the request failed (RFC 3261 §17.1.4). Ignored once Completed:
    /// the TU already has its final response and nothing more is sent.
    pub fn on_transport_error(&mut self) -> Vec<Output> {
        let mut out = outputs();
        if matches!(
            self.state,
            ClientNonInviteState::Trying | ClientNonInviteState::Proceeding
        ) {
            out.push(Output::TransportError);
            self.terminate(&mut out);
        }
        out
    }

    fn terminate(&mut self, out: &mut Vec<Output>) {
        self.state = ClientNonInviteState::Terminated;
        self.request = Bytes::new();
        out.push(Output::Terminated);
    }
}

#[cfg(test)]
mod tests {
    use super::ClientNonInviteState::{Completed, Proceeding, Trying};
    use super::*;
    use Output::*;

    /// The state; `Terminated` alone names the output.
    const DONE: ClientNonInviteState = ClientNonInviteState::Terminated;

    #[derive(Debug, Clone, Copy)]
    enum Ev {
        Resp(u16),
        Fire(Timer),
        TransportErr,
    }

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }
    fn req() -> Bytes {
        Bytes::from_static(b"OPTIONS")
    }

    fn run(
        transport: TransportKind,
        initial: Vec<Output>,
        steps: &[(Ev, Vec<Output>, ClientNonInviteState)],
    ) {
        let (mut m, out) = ClientNonInvite::new(TimerConfig::default(), transport, req());
        assert_eq!(out, initial, "initial outputs");
        assert_eq!(m.state(), Trying);
        for (i, (ev, want, state)) in steps.iter().enumerate() {
            let got = match *ev {
                Ev::Resp(code) => m.on_response(code),
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
            Start(Timer::E, ms(500)),
            Start(Timer::F, ms(32_000)),
        ]
    }

    fn e(next: u64, state: ClientNonInviteState) -> (Ev, Vec<Output>, ClientNonInviteState) {
        (
            Ev::Fire(Timer::E),
            vec![Retransmit(req()), Start(Timer::E, ms(next))],
            state,
        )
    }

    #[test]
    fn timer_e_doubles_capped_at_t2_until_f() {
        run(
            TransportKind::Udp,
            udp_start(),
            &[
                e(1000, Trying),
                e(2000, Trying),
                e(4000, Trying),
                e(4000, Trying),
                e(4000, Trying),
                (Ev::Fire(Timer::F), vec![Timeout, Terminated], DONE),
                (Ev::Fire(Timer::E), vec![], DONE),
            ],
        );
    }

    #[test]
    fn proceeding_retransmits_every_t2() {
        run(
            TransportKind::Udp,
            udp_start(),
            &[
                e(1000, Trying),
                (Ev::Resp(100), vec![Deliver(100)], Proceeding),
                e(4000, Proceeding),
                (Ev::Resp(180), vec![Deliver(180)], Proceeding),
                e(4000, Proceeding),
                (Ev::Fire(Timer::F), vec![Timeout, Terminated], DONE),
            ],
        );
    }

    #[test]
    fn final_in_trying_waits_k_and_absorbs_retransmissions() {
        run(
            TransportKind::Udp,
            udp_start(),
            &[
                (
                    Ev::Resp(200),
                    vec![
                        Stop(Timer::E),
                        Stop(Timer::F),
                        Deliver(200),
                        Start(Timer::K, ms(5000)),
                    ],
                    Completed,
                ),
                (Ev::Resp(200), vec![Absorbed], Completed),
                (Ev::Resp(100), vec![Absorbed], Completed),
                (Ev::Fire(Timer::E), vec![], Completed),
                (Ev::TransportErr, vec![], Completed),
                (Ev::Fire(Timer::K), vec![Terminated], DONE),
            ],
        );
    }

    #[test]
    fn final_in_proceeding() {
        run(
            TransportKind::Udp,
            udp_start(),
            &[
                (Ev::Resp(100), vec![Deliver(100)], Proceeding),
                (
                    Ev::Resp(404),
                    vec![
                        Stop(Timer::E),
                        Stop(Timer::F),
                        Deliver(404),
                        Start(Timer::K, ms(5000)),
                    ],
                    Completed,
                ),
            ],
        );
    }

    #[test]
    fn reliable_transport_has_no_e_and_no_k() {
        let start = vec![Transmit(req()), Start(Timer::F, ms(32_000))];
        run(
            TransportKind::Tcp,
            start.clone(),
            &[
                (Ev::Resp(100), vec![Deliver(100)], Proceeding),
                (Ev::Resp(200), vec![Deliver(200), Terminated], DONE),
                (Ev::Resp(200), vec![], DONE),
            ],
        );
        run(
            TransportKind::Tcp,
            start,
            &[(Ev::Fire(Timer::F), vec![Timeout, Terminated], DONE)],
        );
    }

    #[test]
    fn transport_error_in_trying_and_proceeding() {
        run(
            TransportKind::Udp,
            udp_start(),
            &[(Ev::TransportErr, vec![TransportError, Terminated], DONE)],
        );
        run(
            TransportKind::Udp,
            udp_start(),
            &[
                (Ev::Resp(100), vec![Deliver(100)], Proceeding),
                (Ev::TransportErr, vec![TransportError, Terminated], DONE),
            ],
        );
    }
}
