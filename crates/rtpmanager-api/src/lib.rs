//! The gRPC contract between signaling and the RTP managers, generated from
//! `proto/switchboard/rtpmanager/v1/rtpmanager.proto` (read it for the
//! meaning of every call and field).

#![allow(unreachable_pub, clippy::all)]

/// `switchboard.rtpmanager.v1`: messages, the `RtpManager` client and server.
pub mod v1 {
    include!(concat!(env!("OUT_DIR"), "/switchboard.rtpmanager.v1.rs"));
}

pub use v1::rtp_manager_client::RtpManagerClient;
pub use v1::rtp_manager_server::{RtpManager, RtpManagerServer};
