//! SIP transports, RFC 3261 transactions and the endpoint glue shared by
//! signaling and the outbound call agent.
//!
//! Layering (bottom up): [`transport`] moves bytes over UDP/TCP and frames
//! streams; [`transaction`] holds the four RFC 3261 §17 state machines (pure,
//! time passed in) and the tokio runtime that drives their named timers;
//! [`endpoint`] ties both to a transaction user (the registrar, the B2BUA);
//! [`dialog`] is the RFC 3261 §12 dialog state a UA keeps per call leg;
//! [`ua`] is a small client (register, send requests) on top.

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod alias;
pub mod dialog;
pub mod edge;
pub mod endpoint;
pub mod flood;
mod merge;
pub mod source;
pub mod target;
pub mod transaction;
pub mod transport;
pub mod ua;
