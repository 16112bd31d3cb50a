//! WebRTC legs (a browser's `UDP/TLS/RTP/SAVPF` offer): ICE-lite and
//! DTLS-SRTP on the leg's one RTP port, rtcp-mux.
//!
//! - [`ice`]: the demultiplexer (RFC 7983: STUN, DTLS, RTP/RTCP by first
//!   byte), the STUN Binding checks we answer, and which authenticated
//!   address the leg's media goes to;
//! - [`dtls`]: the manager's certificate, the DTLS server handshake with
//!   the peer's fingerprint checked, the SRTP keys it exports.
//!
//! The engine's glue (which state a leg is in, the handshake task and its
//! deadline) is `engine/webrtc.rs`. SDP is `switchboard_sip::sdp::webrtc`.

pub mod dtls;
pub mod ice;
