//! RFC 3261 §17 transactions.
//!
//! Two halves, so the protocol logic can be tested without a runtime:
//!
//! - Four pure state machines, one per RFC figure — [`ClientInvite`]
//!   (Figure 5), [`ClientNonInvite`] (Figure 6), [`ServerInvite`] (Figure 7
//!   with RFC 6026's Accepted state) and [`ServerNonInvite`] (Figure 8).
//!   They never touch sockets or clocks: events go in, [`Output`]s come out,
//!   and timers are named ([`Timer`]) outputs and inputs whose durations come
//!   from [`TimerConfig`].
//! - [`TransactionLayer`], the tokio runtime that matches messages to
//!   transactions by [`TransactionKey`], interprets the outputs, sends bytes
//!   through a [`Transmit`] implementation and runs the timers.
//!
//! Messages are carried as already-serialized [`bytes::Bytes`] plus the
//! status code where behaviour depends on it: parsing and building messages
//! belong to the layers above, which keeps this module independent of the
//! message types.

pub mod client_invite;
pub mod client_non_invite;
pub mod key;
pub mod layer;
pub mod output;
pub mod server_invite;
pub mod server_non_invite;
pub mod timers;

pub use client_invite::{ClientInvite, ClientInviteState};
pub use client_non_invite::{ClientNonInvite, ClientNonInviteState};
pub use key::{MAGIC_COOKIE, TransactionKey, has_magic_cookie};
pub use layer::{
    ClientEvent, ClientTx, Incoming, KindCounts, MetricsSnapshot, ServerEvent, ServerTx,
    TransactionKind, TransactionLayer, Transmit,
};
pub use output::Output;
pub use server_invite::{ServerInvite, ServerInviteState};
pub use server_non_invite::{ServerNonInvite, ServerNonInviteState};
pub use timers::{Timer, TimerConfig};
