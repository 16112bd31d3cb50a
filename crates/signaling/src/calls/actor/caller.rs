//! The caller's leg: our answers to its INVITE.

use std::time::Duration;

use bytes::Bytes;
use switchboard_sip::response::response;
use switchboard_sip_stack::dialog::our_contact;
use switchboard_sip_stack::target::Target;
use tokio::time::Instant;

use super::{Call, Phase, now_ms};
use crate::calls::actor::end::Disposition;
use crate::calls::leg::Inbound;
use crate::calls::session_timer::{SessionTimer, UasTimer, negotiate_uas};
use crate::calls::{ALLOW, CALL_SUPPORTED};

impl Call {
    pub(super) fn a_response(
        &self,
        code: u16,
        reason: &str,
        body: Option<(&str, &[u8])>,
    ) -> Vec<u8> {
        let mut b = response(&self.invite, code, reason).to_tag(&self.a.peer.dialog.local_tag);
        if (101..300).contains(&code) {
            b = b
                .header("Contact", &our_contact(&self.a.source))
                .header("Allow", ALLOW)
                .header("Supported", &CALL_SUPPORTED.join(", "));
            for rr in self.invite.header_values("Record-Route") {
                b = b.header("Record-Route", rr);
            }
        }
        if (200..300).contains(&code)
            && let Some(t) = &self.a.peer.timer
        {
            b = b
                .header("Session-Expires", &t.header(true))
                .header("Require", "timer");
        }
        if let Some((ct, bytes)) = body {
            b = b.body(ct, bytes.to_vec());
        }
        b.build()
    }

    /// A provisional to the caller (while its INVITE is open).
    pub(super) fn a_provisional(&mut self, code: u16, bytes: Vec<u8>) {
        if self.a.state.is_open() {
            self.calls.metrics.responses_out.inc(code);
            if let Some(tx) = &self.a.tx {
                tx.respond(code, Bytes::from(bytes));
            }
        }
    }

    /// The caller's INVITE is answered: our 200 (resent until its ACK), or,
    /// for a call the API placed, the ACK that completes the user's INVITE
    /// with `body` (the callee's SDP answer to the user's offer).
    pub(super) fn answered(&mut self, body: Option<(&str, &[u8])>) {
        if self.is_originated() {
            let ack = Bytes::from(self.a.peer.dialog.ack(1, body));
            self.ep
                .send_raw(&self.a.peer.dialog.destination(), ack.clone());
            self.a.peer.remember_ack(1, ack);
            self.a.state = Inbound::Confirmed;
        } else {
            let bytes = self.a_response(200, "OK", body);
            let reliable = self.a.source.transport.is_reliable();
            if !self.a.state.answer(Instant::now(), reliable) {
                return;
            }
            self.calls.metrics.responses_out.inc(200);
            if let Some(tx) = &self.a.tx {
                tx.respond(200, Bytes::from(bytes.clone()));
            }
            self.a.ok = Some(Bytes::from(bytes));
            self.forget_invite_key();
        }
        if let Some(t) = &mut self.a.peer.timer {
            t.refreshed(Instant::now());
        }
        let now = now_ms();
        self.answer_at = Some(now);
        self.end.disposition = Disposition::Answered;
        self.update_view(|v| {
            v.state = "answered".into();
            v.answer_at = Some(now);
        });
    }

    /// The caller's INVITE transaction has its final answer: a CANCEL can
    /// no longer find it.
    pub(super) fn forget_invite_key(&mut self) {
        if let Some(key) = self.a.invite_key.take() {
            self.calls.remove_invite(&key);
        }
    }

    /// `answer`: 200 OK from us, with the manager's SDP (or an answer that
    /// declines every stream when media is not anchored).
    pub(super) fn ensure_answered(&mut self) {
        if self.a.state.is_answered() || self.phase == Phase::Over {
            return;
        }
        let sdp = match &self.media {
            Some(m) => Some(m.a_sdp.clone().into_bytes()),
            None => decline_sdp(&self.invite.body, &self.a.source),
        };
        self.answered(sdp.as_deref().map(|s| ("application/sdp", s)));
        if self.phase == Phase::Routing {
            self.phase = Phase::Answered;
        }
    }

    /// RFC 4028 with the caller: 422 when its interval is too small,
    /// otherwise its leg's timer (if it supports timers).
    pub(super) fn check_session_timer(&mut self) -> Option<u16> {
        if self.is_originated() {
            return None;
        }
        match negotiate_uas(&self.invite, self.policy()) {
            UasTimer::None => None,
            UasTimer::TooSmall(min) => {
                let b = response(&self.invite, 422, "Session Interval Too Small")
                    .header("Min-SE", &min.to_string())
                    .build();
                if self.a.state.refuse(422) {
                    self.calls.metrics.responses_out.inc(422);
                    if let Some(tx) = &self.a.tx {
                        tx.respond(422, Bytes::from(b));
                    }
                }
                Some(422)
            }
            UasTimer::Use(secs, refresher) => {
                self.a.peer.timer = Some(SessionTimer::new(
                    Duration::from_secs(u64::from(secs)),
                    refresher,
                    Instant::now(),
                ));
                None
            }
        }
    }
}

/// An SDP answer declining every offered stream (RFC 3264 §6: port 0).
pub(super) fn decline_sdp(offer: &[u8], local: &Target) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(offer).ok()?;
    if !text.starts_with("v=0") {
        return None;
    }
    let ip = local.local.ip();
    let family = if ip.is_ipv4() { "IP4" } else { "IP6" };
    let mut out = format!(
        "v=0\r\no=switchboard 1 1 IN {family} {ip}\r\ns=switchboard\r\nc=IN {family} {ip}\r\nt=0 0\r\n"
    );
    for line in text.lines() {
        if let Some(m) = line.strip_prefix("m=") {
            let mut parts = m.split_whitespace();
            let media = parts.next().unwrap_or("audio");
            let _port = parts.next();
            let proto = parts.next().unwrap_or("RTP/AVP");
            let fmt = parts.next().unwrap_or("0");
            out.push_str(&format!("m={media} 0 {proto} {fmt}\r\n"));
        }
    }
    Some(out.into_bytes())
}
