//! What a transaction state machine asks its runtime to do.
//!
//! One type for all four machines so the runtime has a single interpreter
//! and the tests compare plain vectors.

use std::time::Duration;

use bytes::Bytes;

use super::timers::Timer;

/// One action requested by a state machine, in the order to perform them.
///
/// Conventions shared by all machines:
/// - `Start` (re)arms the named timer to fire `Duration` from now, replacing
///   any pending instance of it; `Stop` disarms it.
/// - `Terminated` is always last and implies every timer is stopped and the
///   transaction's memory can be released; no `Stop` precedes it.
/// - Timers are only stopped explicitly when the machine lives on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Send these bytes to the transaction's peer for the first time.
    Transmit(Bytes),
    /// Send these bytes again (a timer fired or a duplicate came in). Kept
    /// apart from `Transmit` so the runtime can count retransmissions.
    Retransmit(Bytes),
    /// Client side: pass the response just received, with this status code,
    /// to the transaction user.
    Deliver(u16),
    /// The message just received was a duplicate (or arrived too late to
    /// matter) and was absorbed: do not pass it to the transaction user.
    Absorbed,
    /// Server INVITE in the RFC 6026 Accepted state: the ACK just received
    /// acknowledges a 2xx and belongs to the transaction user (dialog layer).
    AckToTu,
    /// Arm a timer.
    Start(Timer, Duration),
    /// Disarm a timer.
    Stop(Timer),
    /// Timer B, F or H fired: tell the transaction user the peer never
    /// answered (client) or never acknowledged (server).
    Timeout,
    /// A send for this transaction failed: tell the transaction user.
    TransportError,
    /// The transaction is over; forget it.
    Terminated,
}

/// A fresh output list; four fits every event of every machine.
pub(crate) fn outputs() -> Vec<Output> {
    Vec::with_capacity(4)
}

/// How the machines classify a response status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    Provisional,
    Success,
    Failure,
    /// Outside 100..=699: never acted on.
    Invalid,
}

impl Class {
    pub(crate) fn of(code: u16) -> Self {
        match code {
            100..=199 => Class::Provisional,
            200..=299 => Class::Success,
            300..=699 => Class::Failure,
            _ => Class::Invalid,
        }
    }
}
