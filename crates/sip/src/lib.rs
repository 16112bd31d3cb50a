//! The pure SIP message layer of Switchboard: parsing and validating SIP
//! messages, building responses, framing streams and HTTP-style digest
//! authentication. No I/O lives here; transports and transactions are in
//! `switchboard-sip-stack`.
//!
//! [`rsip`] stays the tokenizer underneath (header names are mapped to
//! `rsip::Header` variants and kept in `rsip::Headers`); [`message`] adds the
//! RFC 3261 / RFC 4475 validation and the typed view the stack works with.

// Tests may unwrap (the workspace warns on unwrap_used elsewhere).
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod digest;
pub mod framing;
pub mod message;
pub mod request;
pub mod response;
pub mod sdp;

/// Re-exported so users of this crate reach the exact rsip version our
/// [`message::Request::headers`] is built from.
pub use rsip;

pub use message::{
    Contacts, Message, Method, NameAddr, ParseError, Request, Response, Uri, Via, parse,
};
pub use response::{ResponseBuilder, reason_phrase, response};
