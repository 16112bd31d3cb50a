//! Switchboard's pure media layer: G.711 µ-law/A-law, RFC 4733
//! telephone-events (DTMF), RTP header views, WAV loading/resampling and
//! recording, RFC 3550 reception statistics with a MOS estimate, and the
//! rules for learning where a leg's packets may come from.
//! No sockets and no tokio: the RTP manager's engine is thin around this.

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod dtmf;
pub mod g711;
pub mod learning;
pub mod rtcp;
pub mod rtp_header;
pub mod stats;
pub mod wav;
