//! Non-INVITE server transaction, RFC 3261 §17.2.2 (Figure 8).
//!
//! Sans-IO: the machine is handed events and returns [`Output`]s. It exists
//! to absorb request retransmissions: nothing reaches the TU twice, and the
//! last response is resent so the client stops retransmitting.

use bytes::Bytes;

use super::output::{Class, Output, outputs};
use super::timers::{Timer, TimerConfig};
use crate::target::TransportKind;

/// The states of RFC 3261 Figure 8.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerNonInviteState {
    /// The request went to the TU; retransmissions are absorbed silently.
    Trying,
    /// The TU sent a provisional; retransmissions get it again.
    Proceeding,
    /// The TU sent a final; retransmissions get it again until Timer J.
    Completed,
    /// Over.
    Terminated,
}

/// A non-INVITE server transaction.
#[derive(Debug, Clone)]
pub struct ServerNonInvite {
    state: ServerNonInviteState,
    config: TimerConfig,
    transport: TransportKind,
    /// The last response sent; empty in Trying.
    last: Bytes,
}

impl ServerNonInvite {
    /// A new request arrived. There is nothing to send yet, so the initial
    /// outputs are empty; they are returned for symmetry with the others.
    pub fn new(config: TimerConfig, transport: TransportKind) -> (Self, Vec<Output>) {
        let machine = Self {
            state: ServerNonInviteState::Trying,
            config,
            transport,
            last: Bytes::new(),
        };
        (machine, Vec::new())
    }

    /// The current state.
    pub fn state(&self) -> ServerNonInviteState {
        self.state
    }

    /// The last response sent (empty in Trying).
    pub fn last_response(&self) -> &Bytes {
        &self.last
    }

    /// A retransmission of the request arrived.
    pub fn on_request(&mut self) -> Vec<Output> {
        let mut out = outputs();
        match self.state {
            ServerNonInviteState::Trying => out.push(Output::Absorbed),
            ServerNonInviteState::Proceeding | ServerNonInviteState::Completed => {
                out.push(Output::Absorbed);
                out.push(Output::Retransmit(self.last.clone()));
            }
            ServerNonInviteState::Terminated => {}
        }
        out
    }

    /// The TU sends a response with status `code`, serialized as `bytes`.
    /// Anything after the final response is discarded (§17.2.2).
    pub fn respond(&mut self, code: u16, bytes: Bytes) -> Vec<Output> {
        let mut out = outputs();
        if !matches!(
            self.state,
            ServerNonInviteState::Trying | ServerNonInviteState::Proceeding
        ) {
            return out;
        }
        match Class::of(code) {
            Class::Provisional => {
                out.push(Output::Transmit(bytes.clone()));
                self.state = ServerNonInviteState::Proceeding;
                self.last = bytes;
            }
            Class::Success | Class::Failure => {
                out.push(Output::Transmit(bytes.clone()));
                let j = self.config.duration(Timer::J, self.transport);
                if j.is_zero() {
                    self.terminate(&mut out);
                } else {
                    out.push(Output::Start(Timer::J, j));
                    self.state = ServerNonInviteState::Completed;
                    self.last = bytes;
                }
            }
            Class::Invalid => {}
        }
        out
    }

    /// A timer this machine started fired. Stale timers are ignored.
    pub fn on_timer(&mut self, timer: Timer) -> Vec<Output> {
        let mut out = outputs();
        if (self.state, timer) == (ServerNonInviteState::Completed, Timer::J) {
            self.terminate(&mut out);
        }
        out
    }

    /// Sending a response failed (RFC 3261 §17.2.4). Ignored in Trying,
    /// where nothing has been sent.
    pub fn on_transport_error(&mut self) -> Vec<Output> {
        let mut out = outputs();
        if matches!(
            self.state,
            ServerNonInviteState::Proceeding | ServerNonInviteState::Completed
        ) {
            out.push(Output::TransportError);
            self.terminate(&mut out);
        }
        out
    }

    fn terminate(&mut self, out: &mut Vec<Output>) {
        self.state = ServerNonInviteState::Terminated;
        self.last = Bytes::new();
        out.push(Output::Terminated);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::ServerNonInviteState::{Completed, Proceeding, Trying};
    use super::*;
    use Output::*;

    /// The state; `Terminated` alone names the output.
    const DONE: ServerNonInviteState = ServerNonInviteState::Terminated;

    #[derive(Debug, Clone, Copy)]
    enum Ev {
        Request,
        Tu(u16),
        Fire(Timer),
        TransportErr,
    }

    fn resp(code: u16) -> Bytes {
        Bytes::from(format!("SIP/2.0 {code}"))
    }

    fn run(transport: TransportKind, steps: &[(Ev, Vec<Output>, ServerNonInviteState)]) {
        let (mut m, out) = ServerNonInvite::new(TimerConfig::default(), transport);
        assert!(out.is_empty());
        assert_eq!(m.state(), Trying);
        for (i, (ev, want, state)) in steps.iter().enumerate() {
            let got = match *ev {
                Ev::Request => m.on_request(),
                Ev::Tu(code) => m.respond(code, resp(code)),
                Ev::Fire(t) => m.on_timer(t),
                Ev::TransportErr => m.on_transport_error(),
            };
            assert_eq!(&got, want, "step {i}: {ev:?}");
            assert_eq!(m.state(), *state, "state after step {i}: {ev:?}");
        }
    }

    #[test]
    fn udp_final_then_retransmission_then_j() {
        run(
            TransportKind::Udp,
            &[
                (Ev::Request, vec![Absorbed], Trying),
                (Ev::TransportErr, vec![], Trying),
                (
                    Ev::Tu(200),
                    vec![
                        Transmit(resp(200)),
                        Start(Timer::J, Duration::from_secs(32)),
                    ],
                    Completed,
                ),
                (
                    Ev::Request,
                    vec![Absorbed, Retransmit(resp(200))],
                    Completed,
                ),
                (Ev::Tu(500), vec![], Completed),
                (Ev::Tu(100), vec![], Completed),
                (Ev::Fire(Timer::J), vec![Terminated], DONE),
                (Ev::Request, vec![], DONE),
            ],
        );
    }

    #[test]
    fn proceeding_resends_provisional() {
        run(
            TransportKind::Udp,
            &[
                (Ev::Tu(100), vec![Transmit(resp(100))], Proceeding),
                (
                    Ev::Request,
                    vec![Absorbed, Retransmit(resp(100))],
                    Proceeding,
                ),
                (Ev::Tu(183), vec![Transmit(resp(183))], Proceeding),
                (
                    Ev::Request,
                    vec![Absorbed, Retransmit(resp(183))],
                    Proceeding,
                ),
                (Ev::Fire(Timer::J), vec![], Proceeding),
                (
                    Ev::Tu(404),
                    vec![
                        Transmit(resp(404)),
                        Start(Timer::J, Duration::from_secs(32)),
                    ],
                    Completed,
                ),
                (Ev::TransportErr, vec![TransportError, Terminated], DONE),
            ],
        );
    }

    #[test]
    fn tcp_final_terminates_at_once() {
        run(
            TransportKind::Tcp,
            &[(Ev::Tu(200), vec![Transmit(resp(200)), Terminated], DONE)],
        );
        run(
            TransportKind::Tls,
            &[
                (Ev::Tu(100), vec![Transmit(resp(100))], Proceeding),
                (Ev::Tu(403), vec![Transmit(resp(403)), Terminated], DONE),
            ],
        );
    }

    #[test]
    fn transport_error_in_proceeding() {
        run(
            TransportKind::Udp,
            &[
                (Ev::Tu(100), vec![Transmit(resp(100))], Proceeding),
                (Ev::TransportErr, vec![TransportError, Terminated], DONE),
            ],
        );
    }

    #[test]
    fn invalid_codes_are_discarded() {
        run(TransportKind::Udp, &[(Ev::Tu(0), vec![], Trying)]);
    }
}
