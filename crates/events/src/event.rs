//! Event values and their JSON payload (version 1).
//!
//! Every payload is one JSON object with a common head and the fields of
//! its family at the same level:
//!
//! ```json
//! {"version":1,"type":"call.answered","node":"sig-0","ts":1718000000000,
//!  "call_uuid":"5f0c…","legs":[{"sip_call_id":"a84b4c76e66710","side":"a"}]}
//! ```
//!
//! * `version`: 1; a payload of another version is rejected, so a breaking
//!   change must bump it.
//! * `type`: `{family}.{verb}` (`call.answered`, `registration.expired`,
//!   `session.dtmf`, `rtpmanager.draining`), the same verb as the subject.
//! * `node`: the signaling replica that published it.
//! * `ts`: when it happened, unix milliseconds.
//!
//! Family fields: calls `call_uuid`, `legs` and optional `caller`, `callee`,
//! `account_id`, `status`, `reason`, `disposition`; registrations `aor`,
//! `contact`, `expires` (seconds) and optional `source`, `user_agent`;
//! sessions `session_id` and optional `call_uuid`, `rtpmanager`, `digit`,
//! `duration_ms`; RTP managers `name`, `address`. Optional fields are left
//! out when unset.
//!
//! Decoding ignores fields it does not know (a newer publisher may add
//! some) and returns an error, never panics, on anything else that is off.

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use crate::subject::{self, CallVerb, RegistrationVerb, RtpManagerVerb, SessionVerb, Verb};

/// Payload version written and accepted.
pub const PAYLOAD_VERSION: u32 = 1;

/// One fact about a call, binding, media session or RTP manager.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// The replica that published it; [`EventBus::publish`](crate::EventBus::publish)
    /// sets it.
    pub node: String,
    /// When it happened, unix ms.
    pub ts: i64,
    /// The family, verb and family fields.
    pub kind: EventKind,
}

/// What an [`Event`] is about: the family with its verb and fields.
#[derive(Debug, Clone, PartialEq)]
pub enum EventKind {
    /// `switchboard.calls.{call_uuid}.{verb}`
    Call {
        /// What happened.
        verb: CallVerb,
        /// The call.
        call: CallEvent,
    },
    /// `switchboard.registrations.{aor}.{verb}`
    Registration {
        /// What happened.
        verb: RegistrationVerb,
        /// The binding.
        registration: RegistrationEvent,
    },
    /// `switchboard.sessions.{session_id}.{verb}`
    Session {
        /// What happened.
        verb: SessionVerb,
        /// The media session.
        session: SessionEvent,
    },
    /// `switchboard.rtpmanagers.{name}.{verb}`
    RtpManager {
        /// What happened.
        verb: RtpManagerVerb,
        /// The RTP manager.
        rtpmanager: RtpManagerEvent,
    },
}

/// Fields of a call event.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CallEvent {
    /// The call's own UUID (the CDR's `call_id`), never a peer's Call-ID.
    pub call_uuid: String,
    /// The SIP dialogs of the call known so far: the A-leg, then B-legs.
    #[serde(default)]
    pub legs: Vec<Leg>,
    /// Calling party.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caller: Option<String>,
    /// Called party.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callee: Option<String>,
    /// Account (tenant) of the call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_id: Option<i64>,
    /// SIP status of the response behind the event (180, 200, 486 …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Hangup reason of an ended call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Outcome of an ended call, as in the CDR (`answered`, `busy` …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disposition: Option<String>,
}

/// One SIP dialog of a call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Leg {
    /// The dialog's Call-ID as on the wire.
    pub sip_call_id: String,
    /// Which side of the B2BUA it is on.
    pub side: Side,
}

/// Side of a B2BUA leg.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    /// The caller's leg.
    A,
    /// A leg the B2BUA placed towards a callee.
    B,
}

/// Fields of a registration event.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RegistrationEvent {
    /// Address of record, e.g. `sip:alice@example.com`.
    pub aor: String,
    /// The bound Contact URI.
    pub contact: String,
    /// Seconds the binding is valid for (0 when removed).
    pub expires: u32,
    /// Where the REGISTER came from, `transport:ip:port`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// User-Agent of the phone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
}

/// Fields of a media session event.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SessionEvent {
    /// The RTP manager's session id.
    pub session_id: String,
    /// The call the session belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call_uuid: Option<String>,
    /// The RTP manager holding it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtpmanager: Option<String>,
    /// The DTMF digit of a `dtmf` event (`0`-`9`, `*`, `#`, `A`-`D`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digit: Option<String>,
    /// How long the digit was held, ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u32>,
}

/// Fields of an RTP manager event.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RtpManagerEvent {
    /// Its name, e.g. `rtpmanager-0`.
    pub name: String,
    /// Its gRPC address, e.g. `10.0.0.7:9090`.
    pub address: String,
}

impl Event {
    /// An event happening now, published by no node yet.
    pub fn new(kind: EventKind) -> Event {
        Event {
            node: String::new(),
            ts: switchboard_store::now_ms(),
            kind,
        }
    }

    /// A call event happening now.
    pub fn call(verb: CallVerb, call: CallEvent) -> Event {
        Event::new(EventKind::Call { verb, call })
    }

    /// A registration event happening now.
    pub fn registration(verb: RegistrationVerb, registration: RegistrationEvent) -> Event {
        Event::new(EventKind::Registration { verb, registration })
    }

    /// A media session event happening now.
    pub fn session(verb: SessionVerb, session: SessionEvent) -> Event {
        Event::new(EventKind::Session { verb, session })
    }

    /// An RTP manager event happening now.
    pub fn rtpmanager(verb: RtpManagerVerb, rtpmanager: RtpManagerEvent) -> Event {
        Event::new(EventKind::RtpManager { verb, rtpmanager })
    }

    /// The verb, and with it the family.
    pub fn verb(&self) -> Verb {
        match &self.kind {
            EventKind::Call { verb, .. } => Verb::Call(*verb),
            EventKind::Registration { verb, .. } => Verb::Registration(*verb),
            EventKind::Session { verb, .. } => Verb::Session(*verb),
            EventKind::RtpManager { verb, .. } => Verb::RtpManager(*verb),
        }
    }

    /// The id in the subject: call UUID, AOR, session id or RTP manager name.
    pub fn id(&self) -> &str {
        match &self.kind {
            EventKind::Call { call, .. } => &call.call_uuid,
            EventKind::Registration { registration, .. } => &registration.aor,
            EventKind::Session { session, .. } => &session.session_id,
            EventKind::RtpManager { rtpmanager, .. } => &rtpmanager.name,
        }
    }

    /// The subject under `root` (`switchboard` in production).
    pub fn subject(&self, root: &str) -> String {
        subject::subject(root, self.verb(), self.id())
    }

    /// The JSON payload.
    pub fn to_json(&self) -> Vec<u8> {
        // serializing plain structs of strings and numbers cannot fail
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Decodes a payload.
    ///
    /// # Errors
    /// Not JSON, not an object, another `version`, an unknown `type`, or a
    /// required field missing or of the wrong type.
    pub fn from_json(payload: &[u8]) -> Result<Event, String> {
        let value: Value = serde_json::from_slice(payload).map_err(|e| e.to_string())?;
        Event::from_value(&value)
    }

    fn from_value(value: &Value) -> Result<Event, String> {
        if !value.is_object() {
            return Err("event payload is not a JSON object".to_owned());
        }
        let head = Head::deserialize(value).map_err(|e| e.to_string())?;
        if head.version != PAYLOAD_VERSION {
            return Err(format!(
                "event payload version {} (expected {PAYLOAD_VERSION})",
                head.version
            ));
        }
        let verb = Verb::from_type_name(&head.type_name)
            .ok_or_else(|| format!("unknown event type {:?}", head.type_name))?;
        let err = |e: serde_json::Error| format!("{}: {e}", head.type_name);
        let kind = match verb {
            Verb::Call(verb) => EventKind::Call {
                verb,
                call: CallEvent::deserialize(value).map_err(err)?,
            },
            Verb::Registration(verb) => EventKind::Registration {
                verb,
                registration: RegistrationEvent::deserialize(value).map_err(err)?,
            },
            Verb::Session(verb) => EventKind::Session {
                verb,
                session: SessionEvent::deserialize(value).map_err(err)?,
            },
            Verb::RtpManager(verb) => EventKind::RtpManager {
                verb,
                rtpmanager: RtpManagerEvent::deserialize(value).map_err(err)?,
            },
        };
        Ok(Event {
            node: head.node,
            ts: head.ts,
            kind,
        })
    }
}

/// The common head of every payload, as decoded.
#[derive(Deserialize)]
struct Head {
    version: u32,
    #[serde(rename = "type")]
    type_name: String,
    node: String,
    ts: i64,
}

/// The common head followed by the family fields, as encoded.
#[derive(Serialize)]
struct WireOut<'a, T> {
    version: u32,
    #[serde(rename = "type")]
    type_name: String,
    node: &'a str,
    ts: i64,
    #[serde(flatten)]
    fields: &'a T,
}

impl Serialize for Event {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        fn out<'a, T, S: Serializer>(e: &'a Event, fields: &'a T, s: S) -> Result<S::Ok, S::Error>
        where
            T: Serialize,
        {
            WireOut {
                version: PAYLOAD_VERSION,
                type_name: e.verb().type_name(),
                node: &e.node,
                ts: e.ts,
                fields,
            }
            .serialize(s)
        }
        match &self.kind {
            EventKind::Call { call, .. } => out(self, call, serializer),
            EventKind::Registration { registration, .. } => out(self, registration, serializer),
            EventKind::Session { session, .. } => out(self, session, serializer),
            EventKind::RtpManager { rtpmanager, .. } => out(self, rtpmanager, serializer),
        }
    }
}

impl<'de> Deserialize<'de> for Event {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Event, D::Error> {
        let value = Value::deserialize(deserializer)?;
        Event::from_value(&value).map_err(D::Error::custom)
    }
}

#[cfg(test)]
mod tests;
