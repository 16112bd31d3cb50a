//! Switchboard events and CDRs over NATS JetStream (or in process).
//!
//! * [`subject`]: subject names (`switchboard.calls.{uuid}.answered` …),
//!   the typed verbs of each family, and the reversible escaping that turns
//!   any id into one subject token.
//! * [`Event`]: the event values and their versioned JSON payload.
//! * [`EventBus`]: what components publish to. In process by default (local
//!   subscribers only); with `NATS_URL`, also to the JetStream stream
//!   `SWITCHBOARD_EVENTS` without ever blocking the caller, with a bounded
//!   disk spool while NATS is unreachable.
//! * [`CdrStream`] and [`spawn_cdr_consumer`]: CDRs published to
//!   `switchboard.cdr.raw` with their `call_id` as message id, and the
//!   durable pull consumer the replicas share to store each CDR once.
//! * [`Nats`], [`parse_nats_urls`], [`Health`]: the connection, the
//!   `NATS_URL` syntax, and what a replica's health endpoint reports.
//!
//! Nothing here depends on the signaling crate: it only needs the store's
//! `Cdr` and `Store`.
//!
//! Layout: `subject.rs`, `event.rs` (pure, table-tested), `nats.rs`
//! (connection), `bus.rs` + `publisher.rs` + `spool.rs` (event bus),
//! `cdr.rs` + `cdr_consumer.rs` (CDR stream).

mod bus;
mod cdr;
mod cdr_consumer;
mod event;
mod nats;
mod publisher;
mod spool;
pub mod subject;

pub use bus::{EVENT_SPOOL_FILE, EventBus, EventBusOptions, EventBusStats};
pub use cdr::{CdrStream, CdrStreamOptions, CdrStreamStats};
pub use cdr_consumer::spawn_cdr_consumer;
pub use event::{
    CallEvent, Event, EventKind, Leg, PAYLOAD_VERSION, RegistrationEvent, RtpManagerEvent,
    SessionEvent, Side,
};
pub use nats::{Credentials, ENV_NATS_URL, Health, Nats, credentials, parse_nats_urls};
pub use subject::{
    CallVerb, Family, RegistrationVerb, RtpManagerVerb, SessionVerb, Verb, escape_token,
    unescape_token,
};
