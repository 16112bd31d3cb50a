//! The typed state of a call's legs, pure: every transition is a method
//! that takes what happened and returns what must be sent, so the rules
//! are unit-tested here without sockets and the actor only carries them
//! out.
//!
//! - [`Inbound`]: the caller's INVITE, where we are the UAS (RFC 3261
//!   §13.3): proceeding, answered with a 2xx we resend until the ACK
//!   (§13.3.1.4), confirmed, or refused.
//! - [`Outbound`]: one B-leg INVITE (a fork), where we are the UAC: calling,
//!   ringing (a CANCEL may only follow a provisional, §9.1), answered, or
//!   ended.
//! - [`OfferSlots`]: the INVITE/offer transactions open in each direction
//!   of a confirmed dialog, for glare (491, §14.1) and overlapping INVITEs
//!   (500 with Retry-After, §14.2).
//! - [`Resend`]: the T1-doubling schedule of a 2xx until its ACK.

use std::time::Duration;

use tokio::time::Instant;

/// RFC 3261 timer values for 2xx retransmission.
pub(crate) const T1: Duration = Duration::from_millis(500);
pub(crate) const T2: Duration = Duration::from_secs(4);

/// When to resend a 2xx that waits for its ACK, and when to give up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Resend {
    /// Next resend; `None` on a reliable transport (only the give-up runs).
    next: Option<Instant>,
    interval: Duration,
    give_up: Instant,
}

/// What a due [`Resend`] asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Due {
    /// Send the 2xx again.
    Resend,
    /// 64·T1 without ACK: the dialog is dead (§13.3.1.4: send BYE).
    GiveUp,
    Nothing,
}

impl Resend {
    pub(crate) fn start(now: Instant, reliable: bool) -> Self {
        Self {
            next: (!reliable).then_some(now + T1),
            interval: T1,
            give_up: now + T1 * 64,
        }
    }

    /// The next instant this schedule needs attention.
    pub(crate) fn at(&self) -> Instant {
        self.next.map_or(self.give_up, |n| n.min(self.give_up))
    }

    pub(crate) fn due(&mut self, now: Instant) -> Due {
        if now >= self.give_up {
            return Due::GiveUp;
        }
        match self.next {
            Some(n) if now >= n => {
                self.interval = (self.interval * 2).min(T2);
                self.next = Some(now + self.interval);
                Due::Resend
            }
            _ => Due::Nothing,
        }
    }
}

/// The caller's INVITE transaction, as its UAS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Inbound {
    /// No final response yet: a CANCEL ends the call with 487.
    Proceeding,
    /// Our 2xx went out; it is resent until the ACK.
    Accepted(Resend),
    /// The ACK arrived (or we placed the call and sent the ACK ourselves).
    Confirmed,
    /// A final error response went out.
    Refused(u16),
}

impl Inbound {
    pub(crate) fn is_answered(&self) -> bool {
        matches!(self, Inbound::Accepted(_) | Inbound::Confirmed)
    }

    pub(crate) fn is_open(&self) -> bool {
        matches!(self, Inbound::Proceeding)
    }

    /// We answered 2xx: false if that is not allowed any more.
    pub(crate) fn answer(&mut self, now: Instant, reliable: bool) -> bool {
        if !self.is_open() {
            return false;
        }
        *self = Inbound::Accepted(Resend::start(now, reliable));
        true
    }

    /// We refused with `code`: false if a final response already went out.
    pub(crate) fn refuse(&mut self, code: u16) -> bool {
        if !self.is_open() {
            return false;
        }
        *self = Inbound::Refused(code);
        true
    }

    /// The ACK for our 2xx: true the first time (it may carry the answer
    /// to our offer).
    pub(crate) fn ack(&mut self) -> bool {
        if matches!(self, Inbound::Accepted(_)) {
            *self = Inbound::Confirmed;
            return true;
        }
        false
    }
}

/// A CANCEL for a fork, which may only be sent after its first
/// provisional response (§9.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cancel {
    No,
    /// Asked for before any provisional: sent when one arrives.
    Owed,
    Sent,
}

/// One B-leg INVITE, as its UAC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outbound {
    /// Sent, nothing back yet.
    Calling(Cancel),
    /// A provisional arrived (early dialog).
    Ringing(Cancel),
    /// Its 2xx was taken: this fork is the call's B-leg.
    Answered,
    /// A final error, a timeout, or torn down after a 2xx nobody wanted.
    Ended(u16),
}

/// What a fork transition asks the actor to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ForkAction {
    None,
    SendCancel,
    /// A 2xx nobody wants (another fork won, or the call is over): ACK it
    /// and send BYE.
    AckAndBye,
    /// This 2xx wins: ACK it and bridge.
    Take,
}

impl Outbound {
    pub(crate) fn is_pending(&self) -> bool {
        matches!(self, Outbound::Calling(_) | Outbound::Ringing(_))
    }

    /// We want this fork to stop ringing.
    pub(crate) fn cancel(&mut self) -> ForkAction {
        match *self {
            Outbound::Calling(Cancel::No) => {
                *self = Outbound::Calling(Cancel::Owed);
                ForkAction::None
            }
            Outbound::Ringing(Cancel::No | Cancel::Owed) => {
                *self = Outbound::Ringing(Cancel::Sent);
                ForkAction::SendCancel
            }
            _ => ForkAction::None,
        }
    }

    /// A provisional response: sends a CANCEL that was owed.
    pub(crate) fn provisional(&mut self) -> ForkAction {
        match *self {
            Outbound::Calling(Cancel::Owed) => {
                *self = Outbound::Ringing(Cancel::Sent);
                ForkAction::SendCancel
            }
            Outbound::Calling(c) => {
                *self = Outbound::Ringing(c);
                ForkAction::None
            }
            _ => ForkAction::None,
        }
    }

    /// A 2xx: `wanted` says whether the call can still take an answer (no
    /// other fork won and nobody hung up). A cancelled fork answering
    /// anyway (the 2xx crossed our CANCEL) is not wanted either.
    pub(crate) fn success(&mut self, wanted: bool) -> ForkAction {
        let cancelled = matches!(
            self,
            Outbound::Calling(Cancel::Owed | Cancel::Sent) | Outbound::Ringing(Cancel::Sent)
        );
        match *self {
            Outbound::Calling(_) | Outbound::Ringing(_) if wanted && !cancelled => {
                *self = Outbound::Answered;
                ForkAction::Take
            }
            // a retransmitted 2xx of the answer we took: the actor resends
            // the ACK (see the dialog), nothing changes here
            Outbound::Answered => ForkAction::None,
            _ => {
                *self = Outbound::Ended(200);
                ForkAction::AckAndBye
            }
        }
    }

    /// A final error response, a timeout (408) or a transport error (503).
    pub(crate) fn failure(&mut self, code: u16) {
        if self.is_pending() {
            *self = Outbound::Ended(code);
        }
    }

    /// We sent BYE on the answered fork.
    pub(crate) fn hung_up(&mut self) {
        if matches!(self, Outbound::Answered) {
            *self = Outbound::Ended(200);
        }
    }

    pub(crate) fn final_code(&self) -> Option<u16> {
        match self {
            Outbound::Answered => Some(200),
            Outbound::Ended(c) => Some(*c),
            _ => None,
        }
    }
}

/// The best final answer of a finished dial (RFC 3261 §16.7 step 6 in
/// short: a 6xx wins, then busy, then the lowest class), as the caller
/// should hear it: timeouts and our own cancellations become 480.
pub(crate) fn best_failure(codes: &[u16]) -> u16 {
    let best = codes
        .iter()
        .copied()
        .find(|c| *c >= 600)
        .or_else(|| codes.iter().copied().find(|c| *c == 486))
        .or_else(|| codes.iter().copied().filter(|c| *c >= 300).min())
        .unwrap_or(480);
    match best {
        408 | 487 => 480,
        c => c,
    }
}

/// Why an offer (re-INVITE, or UPDATE with SDP) from a leg is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OfferRefusal {
    /// Our own offer to that leg is pending: both sides offered at once
    /// (RFC 3261 §14.1, RFC 3311 §5.2): 491.
    Glare,
    /// Its previous offer is still unanswered (§14.2): 500 with a
    /// Retry-After of 0–10 s.
    Overlap,
}

impl OfferRefusal {
    pub(crate) fn code(self) -> u16 {
        match self {
            OfferRefusal::Glare => 491,
            OfferRefusal::Overlap => 500,
        }
    }
}

/// The offers in flight on one confirmed dialog: one it sent us that we
/// have not answered yet, and one we sent it that it has not answered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct OfferSlots {
    /// Theirs: the CSeq of their pending offer.
    pub(crate) theirs: Option<u32>,
    /// Ours: the CSeq of our pending offer.
    pub(crate) ours: Option<u32>,
}

impl OfferSlots {
    /// An offer arrives from the leg with CSeq `cseq`.
    pub(crate) fn incoming(&mut self, cseq: u32) -> Result<(), OfferRefusal> {
        if self.theirs.is_some() {
            return Err(OfferRefusal::Overlap);
        }
        if self.ours.is_some() {
            return Err(OfferRefusal::Glare);
        }
        self.theirs = Some(cseq);
        Ok(())
    }

    /// We want to send an offer to the leg: false while one is in flight
    /// either way (the caller retries later or refuses upstream).
    pub(crate) fn outgoing(&mut self, cseq: u32) -> bool {
        if self.theirs.is_some() || self.ours.is_some() {
            return false;
        }
        self.ours = Some(cseq);
        true
    }

    /// We answered their offer (any final response).
    pub(crate) fn answered_theirs(&mut self) {
        self.theirs = None;
    }

    /// They answered ours (any final response, or the transaction failed).
    pub(crate) fn answered_ours(&mut self) {
        self.ours = None;
    }
}

/// A random Retry-After for a 500 to an overlapping INVITE (§14.2: 0–10 s).
pub(crate) fn overlap_retry_after() -> u32 {
    rand::random::<u32>() % 11
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resend_doubles_to_t2_then_gives_up_at_64_t1() {
        let t0 = Instant::now();
        let mut r = Resend::start(t0, false);
        let mut at = Vec::new();
        let now = loop {
            let now = r.at();
            match r.due(now) {
                Due::Resend => at.push(now.duration_since(t0).as_millis()),
                Due::GiveUp => break now,
                Due::Nothing => panic!("due at its own instant"),
            }
        };
        assert_eq!(
            &at[..6],
            &[500, 1500, 3500, 7500, 11500, 15500],
            "T1, doubling, capped at T2"
        );
        assert_eq!(now.duration_since(t0), T1 * 64);
        // reliable transports never resend, but still give up
        let mut r = Resend::start(t0, true);
        assert_eq!(r.at(), t0 + T1 * 64);
        assert_eq!(r.due(t0 + T1 * 10), Due::Nothing);
        assert_eq!(r.due(t0 + T1 * 64), Due::GiveUp);
    }

    #[test]
    fn inbound_answers_once_and_confirms_on_ack() {
        let now = Instant::now();
        let mut a = Inbound::Proceeding;
        assert!(!a.ack(), "an ACK before our 2xx means nothing");
        assert!(a.answer(now, false));
        assert!(a.is_answered());
        assert!(!a.answer(now, false), "one 2xx");
        assert!(!a.refuse(480), "no error after a 2xx");
        assert!(a.ack());
        assert_eq!(a, Inbound::Confirmed);
        assert!(!a.ack(), "a retransmitted ACK changes nothing");
        let mut b = Inbound::Proceeding;
        assert!(b.refuse(486));
        assert!(!b.answer(now, false), "no 2xx after an error");
        assert_eq!(b, Inbound::Refused(486));
    }

    #[test]
    fn forks_cancel_only_after_a_provisional() {
        // (transitions, expected actions, final state)
        let mut f = Outbound::Calling(Cancel::No);
        assert_eq!(f.cancel(), ForkAction::None, "no CANCEL before a 1xx");
        assert_eq!(f, Outbound::Calling(Cancel::Owed));
        assert_eq!(f.provisional(), ForkAction::SendCancel, "owed CANCEL goes");
        assert_eq!(f.provisional(), ForkAction::None, "once");
        assert_eq!(f.cancel(), ForkAction::None, "once");
        // the 2xx crossed our CANCEL: ACK and BYE, never bridged
        assert_eq!(f.success(true), ForkAction::AckAndBye);
        assert_eq!(f.final_code(), Some(200));

        let mut g = Outbound::Calling(Cancel::No);
        assert_eq!(g.provisional(), ForkAction::None);
        assert_eq!(g.cancel(), ForkAction::SendCancel);
        g.failure(487);
        assert_eq!(g, Outbound::Ended(487));
        assert!(!g.is_pending());
    }

    #[test]
    fn the_first_wanted_2xx_wins_and_later_ones_are_torn_down() {
        let mut a = Outbound::Ringing(Cancel::No);
        let mut b = Outbound::Ringing(Cancel::No);
        assert_eq!(a.success(true), ForkAction::Take);
        assert_eq!(a.success(false), ForkAction::None, "a retransmission");
        assert_eq!(b.success(false), ForkAction::AckAndBye);
        a.hung_up();
        assert_eq!(a, Outbound::Ended(200));
        let mut late = Outbound::Calling(Cancel::No);
        late.failure(408);
        assert_eq!(late.success(true), ForkAction::AckAndBye);
    }

    #[test]
    fn dial_outcomes_pick_the_caller_visible_code() {
        for (codes, want) in [
            (&[486u16, 404][..], 486),
            (&[404, 603, 486], 603),
            (&[404, 480], 404),
            (&[408], 480),
            (&[487, 487], 480),
            (&[503, 404], 404),
            (&[], 480),
            (&[200], 480),
        ] {
            assert_eq!(best_failure(codes), want, "{codes:?}");
        }
    }

    #[test]
    fn offers_glare_and_overlap() {
        let mut s = OfferSlots::default();
        assert_eq!(s.incoming(2), Ok(()));
        assert_eq!(s.incoming(3), Err(OfferRefusal::Overlap));
        assert!(!s.outgoing(5), "no offer of ours while theirs is open");
        s.answered_theirs();
        assert!(s.outgoing(5));
        assert_eq!(s.incoming(4), Err(OfferRefusal::Glare));
        assert_eq!(OfferRefusal::Glare.code(), 491);
        s.answered_ours();
        assert_eq!(s.incoming(4), Ok(()));
        for _ in 0..100 {
            assert!(overlap_retry_after() <= 10);
        }
    }
}
