//! RFC 4028 session timers, per leg, pure.
//!
//! A B2BUA keeps a session timer with each leg separately: a leg whose
//! phone supports `timer` gets a refresh interval; whoever is the
//! refresher sends a re-INVITE or UPDATE before half of it has passed. When
//! we are the refresher and the refresh fails, or when the phone is and
//! its refresh does not come, the call is dead (a phone that crashed or
//! lost its network) and is ended with a CDR instead of staying up as a
//! ghost.

use std::time::Duration;

use switchboard_sip::message::{Request, Response};
use tokio::time::Instant;

/// Who sends the refreshes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refresher {
    /// We refresh the leg (at half the interval).
    Us,
    /// The phone refreshes; we end the call if it stops.
    Them,
}

/// What a due timer asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TimerDue {
    /// Send a refresh now.
    Refresh,
    /// No refresh came in time: end the call.
    Expired,
}

/// One leg's negotiated session timer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SessionTimer {
    pub(crate) interval: Duration,
    pub(crate) refresher: Refresher,
    /// When it is next due.
    pub(crate) at: Instant,
}

impl SessionTimer {
    pub(crate) fn new(interval: Duration, refresher: Refresher, now: Instant) -> Self {
        let mut t = Self {
            interval,
            refresher,
            at: now,
        };
        t.refreshed(now);
        t
    }

    /// A refresh succeeded (either direction): the interval starts over.
    pub(crate) fn refreshed(&mut self, now: Instant) {
        self.at = now
            + match self.refresher {
                Refresher::Us => self.interval / 2,
                // §10: the expiry is the interval minus a third of it, or
                // 32 s, whichever is less
                Refresher::Them => self.interval - (self.interval / 3).min(Duration::from_secs(32)),
            };
    }

    /// A refresh of ours is in flight: look again at expiry (§10), after
    /// which the leg is given up if the refresh never completed.
    pub(crate) fn refresh_sent(&mut self, now: Instant) {
        self.at = now + (self.interval / 2).max(Duration::from_secs(1));
    }

    pub(crate) fn due(&self, now: Instant, refresh_in_flight: bool) -> Option<TimerDue> {
        if now < self.at {
            return None;
        }
        match (self.refresher, refresh_in_flight) {
            (Refresher::Us, false) => Some(TimerDue::Refresh),
            _ => Some(TimerDue::Expired),
        }
    }

    /// `Session-Expires` for a message to the leg; `role` is who the
    /// refresher is in the transaction that carries it (`uac`/`uas`).
    pub(crate) fn header(&self, we_are_uas: bool) -> String {
        let role = match (self.refresher, we_are_uas) {
            (Refresher::Us, true) | (Refresher::Them, false) => "uas",
            (Refresher::Us, false) | (Refresher::Them, true) => "uac",
        };
        format!("{};refresher={role}", self.interval.as_secs())
    }
}

/// `Session-Expires: 1800;refresher=uac` → (1800, Some("uac")).
pub(crate) fn parse_session_expires(v: &str) -> Option<(u32, Option<String>)> {
    let mut parts = v.split(';');
    let secs = parts.next()?.trim().parse().ok()?;
    let refresher = parts.find_map(|p| {
        let (n, v) = p.split_once('=')?;
        n.trim()
            .eq_ignore_ascii_case("refresher")
            .then(|| v.trim().to_ascii_lowercase())
    });
    Some((secs, refresher))
}

fn header_has_token(values: Vec<&str>, token: &str) -> bool {
    values
        .iter()
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// Whether a message lists `timer` in Supported or Require.
pub(crate) fn supports_timer(req: &Request) -> bool {
    header_has_token(req.header_values("Supported"), "timer")
        || header_has_token(req.header_values("Require"), "timer")
}

/// The configured session timer policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Policy {
    /// The interval we ask for (`SESSION_EXPIRES`); 0 disables timers.
    pub(crate) expires: u32,
    /// The smallest we accept (`Min-SE`, at least RFC 4028's 90 s).
    pub(crate) min_se: u32,
}

/// What the caller's INVITE and our policy make of its leg.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum UasTimer {
    /// No timer with this leg (it does not support them, or ours are off).
    None,
    /// Too short: answer 422 with this `Min-SE`.
    TooSmall(u32),
    /// Use this interval with this refresher.
    Use(u32, Refresher),
}

/// §9: the UAS side. A phone that supports `timer` gets the smaller of its
/// interval and ours, and the refresher it asked for (else us).
pub(crate) fn negotiate_uas(invite: &Request, policy: Policy) -> UasTimer {
    if policy.expires == 0 {
        return UasTimer::None;
    }
    let asked = invite
        .header("Session-Expires")
        .or_else(|| invite.header("x"))
        .and_then(parse_session_expires);
    if let Some((secs, _)) = &asked
        && *secs < policy.min_se
    {
        return UasTimer::TooSmall(policy.min_se);
    }
    if !supports_timer(invite) {
        return UasTimer::None;
    }
    let (secs, refresher) = match asked {
        Some((s, r)) => (s.min(policy.expires), r),
        None => (policy.expires, None),
    };
    let refresher = match refresher.as_deref() {
        Some("uac") => Refresher::Them,
        _ => Refresher::Us,
    };
    UasTimer::Use(secs.max(policy.min_se), refresher)
}

/// §7.2: the UAC side, from the callee's 2xx: a `Session-Expires` there
/// means it supports timers and says who refreshes.
pub(crate) fn from_uac_answer(resp: &Response, policy: Policy) -> Option<(u32, Refresher)> {
    if policy.expires == 0 {
        return None;
    }
    let (secs, refresher) = resp
        .header("Session-Expires")
        .or_else(|| resp.header("x"))
        .and_then(parse_session_expires)?;
    let refresher = match refresher.as_deref() {
        Some("uas") => Refresher::Them,
        _ => Refresher::Us,
    };
    Some((secs.max(policy.min_se.min(secs)).max(1), refresher))
}

/// Whether a leg accepts UPDATE (refreshes then need no SDP), from the
/// `Allow` of its INVITE or answer.
pub(crate) fn allows_update(allow: Vec<&str>) -> bool {
    header_has_token(allow, "UPDATE")
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_sip::message::{Message, parse};

    fn invite(extra: &str) -> Request {
        let raw = format!(
            "INVITE sip:1002@127.0.0.1 SIP/2.0\r\n\
             Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1\r\n\
             From: <sip:1001@127.0.0.1>;tag=a\r\n\
             To: <sip:1002@127.0.0.1>\r\n\
             Call-ID: c\r\n\
             CSeq: 1 INVITE\r\n\
             Max-Forwards: 70\r\n\
             {extra}Content-Length: 0\r\n\r\n"
        );
        match parse(raw.as_bytes()) {
            Ok(Message::Request(r)) => r,
            other => panic!("{other:?}"),
        }
    }

    const POLICY: Policy = Policy {
        expires: 1800,
        min_se: 90,
    };

    #[test]
    fn uas_negotiation_table() {
        let cases = [
            ("", UasTimer::None),
            ("Supported: timer\r\n", UasTimer::Use(1800, Refresher::Us)),
            (
                "Supported: 100rel, timer\r\nSession-Expires: 600\r\n",
                UasTimer::Use(600, Refresher::Us),
            ),
            (
                "Supported: timer\r\nSession-Expires: 7200;refresher=uac\r\n",
                UasTimer::Use(1800, Refresher::Them),
            ),
            (
                "Supported: timer\r\nSession-Expires: 60\r\n",
                UasTimer::TooSmall(90),
            ),
            // compact form, and a phone that sends Session-Expires without
            // Supported: timer gets no timer (it would not refresh)
            ("x: 300\r\n", UasTimer::None),
            (
                "k: timer\r\nx: 300;refresher=uas\r\n",
                UasTimer::Use(300, Refresher::Us),
            ),
        ];
        for (extra, want) in cases {
            assert_eq!(negotiate_uas(&invite(extra), POLICY), want, "{extra:?}");
        }
        let off = Policy {
            expires: 0,
            min_se: 90,
        };
        assert_eq!(
            negotiate_uas(&invite("Supported: timer\r\n"), off),
            UasTimer::None
        );
    }

    #[test]
    fn timers_fall_due_at_half_or_at_expiry() {
        let t0 = Instant::now();
        let us = SessionTimer::new(Duration::from_secs(600), Refresher::Us, t0);
        assert_eq!(us.due(t0 + Duration::from_secs(299), false), None);
        assert_eq!(
            us.due(t0 + Duration::from_secs(300), false),
            Some(TimerDue::Refresh)
        );
        assert_eq!(
            us.due(t0 + Duration::from_secs(300), true),
            Some(TimerDue::Expired),
            "our refresh did not complete in time"
        );
        let mut them = SessionTimer::new(Duration::from_secs(90), Refresher::Them, t0);
        assert_eq!(them.at, t0 + Duration::from_secs(60), "90 - 30");
        them.refreshed(t0 + Duration::from_secs(50));
        assert_eq!(them.due(t0 + Duration::from_secs(100), false), None);
        assert_eq!(
            them.due(t0 + Duration::from_secs(110), false),
            Some(TimerDue::Expired)
        );
        assert_eq!(us.header(true), "600;refresher=uas");
        assert_eq!(us.header(false), "600;refresher=uac");
        assert_eq!(them.header(true), "90;refresher=uac");
    }

    #[test]
    fn parses_session_expires_and_allow() {
        assert_eq!(
            parse_session_expires("1800 ; refresher = UAC"),
            Some((1800, Some("uac".into())))
        );
        assert_eq!(parse_session_expires("abc"), None);
        assert!(allows_update(vec!["INVITE, ACK, UPDATE"]));
        assert!(!allows_update(vec!["INVITE, ACK, BYE"]));
    }
}
