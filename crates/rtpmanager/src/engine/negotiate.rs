//! What the engine answers and offers: the codec chosen from a leg's SDP,
//! our offer, and the leg's SRTP (SDES) under its [`SrtpPolicy`].

use switchboard_sip::sdp::crypto::{self, Crypto, Suite};
use switchboard_sip::sdp::{self, Description, Direction, LocalMedia};

use super::{CODECS, EngineError, OFFER_TE_PT, PTIME_MS};
use crate::codec::{AudioCodec, OPUS_CLOCK};
use crate::srtp::{LegSrtp, SrtpPolicy, our_crypto};

pub(super) fn parse_sdp(body: &[u8]) -> Result<Description, EngineError> {
    sdp::parse(body).map_err(|e| EngineError::InvalidArgument(format!("remote_sdp: {e}")))
}

fn invalid(why: impl std::fmt::Display) -> EngineError {
    EngineError::InvalidArgument(format!("remote_sdp: {why}"))
}

/// The leg's SRTP after a new SDP.
pub(super) enum Next {
    /// Plain RTP from now on.
    Plain,
    /// The current keys stay (the SDP repeats them), so the streams'
    /// rollover counters and replay windows carry on.
    Keep,
    /// New keys.
    New(Box<LegSrtp>),
}

impl Next {
    /// Applies the outcome to the leg's current state.
    pub(super) fn apply(self, current: &mut Option<LegSrtp>) {
        match self {
            Next::Plain => *current = None,
            Next::Keep => {}
            Next::New(s) => *current = Some(*s),
        }
    }
}

/// The leg's SRTP after its offer `d` under `policy`; `current` is what it
/// has now.
pub(super) fn on_offer(
    d: &Description,
    policy: SrtpPolicy,
    current: Option<&LegSrtp>,
) -> Result<Next, EngineError> {
    match (d.is_savp(), policy) {
        (false, SrtpPolicy::Required) => Err(invalid(
            "SRTP is required on this leg (srtp: required) and the offer is plain RTP/AVP",
        )),
        (false, _) => Ok(Next::Plain),
        (true, SrtpPolicy::Disabled) => Err(invalid(
            "RTP/SAVP offered and SRTP is disabled on this leg (srtp: disabled)",
        )),
        (true, _) => {
            let remote = crypto::choose(&d.crypto).map_err(invalid)?;
            if current.is_some_and(|cur| cur.remote() == Some(&remote)) {
                return Ok(Next::Keep);
            }
            let local = our_crypto(remote.tag, remote.suite);
            LegSrtp::new(local, remote)
                .map(|s| Next::New(Box::new(s)))
                .map_err(invalid)
        }
    }
}

/// The leg's SRTP after its answer `d` to our offer, which carried
/// `offered` (`None`: plain RTP/AVP).
pub(super) fn on_answer(
    d: &Description,
    offered: Option<&Crypto>,
    current: Option<&LegSrtp>,
) -> Result<Next, EngineError> {
    match (offered, d.is_savp()) {
        (None, false) => Ok(Next::Plain),
        (None, true) => Err(invalid("RTP/SAVP answer to our plain RTP/AVP offer")),
        (Some(_), false) => Err(invalid("plain RTP/AVP answer to our RTP/SAVP offer")),
        (Some(ours), true) => {
            let remote = crypto::choose(&d.crypto).map_err(invalid)?;
            if remote.tag != ours.tag || remote.suite != ours.suite {
                return Err(invalid(format!(
                    "a=crypto: the answer's tag {} / {} is not our offer's ({} / {})",
                    remote.tag, remote.suite, ours.tag, ours.suite
                )));
            }
            if current.is_some_and(|cur| cur.remote() == Some(&remote) && cur.local() == Some(ours))
            {
                return Ok(Next::Keep);
            }
            LegSrtp::new(ours.clone(), remote)
                .map(|s| Next::New(Box::new(s)))
                .map_err(invalid)
        }
    }
}

/// The crypto of an offer we write for a leg: the key it already has, a
/// fresh AES_CM_128_HMAC_SHA1_80 key when its policy requires SRTP, else
/// none (plain RTP/AVP).
pub(super) fn offer_crypto(policy: SrtpPolicy, current: Option<&LegSrtp>) -> Option<Crypto> {
    match (current.and_then(LegSrtp::local), policy) {
        (Some(cur), _) => Some(cur.clone()),
        (None, SrtpPolicy::Required) => Some(our_crypto(1, Suite::AesCm128HmacSha1_80)),
        (None, _) => None,
    }
}

/// The codec for the leg, keeping the SDP's PT: the first G.711 one
/// (PCMU or PCMA) it lists, else Opus (`opus/48000/2`).
///
/// G.711 before Opus, whatever the order: the far leg of a call through
/// the manager is nearly always a desk phone or a trunk on G.711, so the
/// call is narrowband whatever the browser's leg carries. G.711 on the
/// browser's leg is relayed as it is (no transcoding: no added delay, no
/// second lossy generation, no CPU per packet beyond the relay), where
/// Opus would cost a decode and an encode per packet each way for no
/// audio the phone can hear. Opus is taken when the SDP has no G.711
/// (a browser set to Opus only): its audio is transcoded then.
pub(super) fn choose(d: &Description) -> Result<(u8, AudioCodec), EngineError> {
    let names: Vec<&str> = CODECS.iter().map(|c| c.name()).collect();
    sdp::choose_codec(d, &names)
        .and_then(|c| AudioCodec::from_name(&c.name).map(|codec| (c.payload_type, codec)))
        .or_else(|| {
            d.codecs
                .iter()
                .find(|c| c.name.eq_ignore_ascii_case("opus") && c.clock_rate == OPUS_CLOCK)
                .map(|c| (c.payload_type, AudioCodec::Opus))
        })
        .ok_or_else(|| {
            EngineError::InvalidArgument(format!(
                "remote_sdp: no common codec (offered {}; supported PCMU, PCMA, opus)",
                d.codecs
                    .iter()
                    .map(|c| c.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })
}

/// Our offer; `RTP/SAVP` with `crypto` when given.
pub(super) fn our_offer(
    media: &LocalMedia,
    direction: Direction,
    crypto: Option<&Crypto>,
) -> String {
    let codecs: Vec<(u8, &str)> = CODECS
        .iter()
        .map(|c| (c.payload_type(), c.name()))
        .collect();
    let line = crypto.map(crypto::format);
    sdp::offer_with_crypto(
        media,
        &codecs,
        Some(OFFER_TE_PT),
        direction,
        PTIME_MS,
        line.as_deref(),
    )
}

/// Our answer to the leg's offer `d`: the chosen codec, `RTP/SAVP` with our
/// `a=crypto` when the leg is SRTP.
pub(super) fn our_answer(
    media: &LocalMedia,
    d: &Description,
    chosen: (u8, AudioCodec),
    srtp: Option<&LegSrtp>,
) -> String {
    let line = srtp.and_then(LegSrtp::local).map(crypto::format);
    sdp::answer_with_crypto(
        media,
        d,
        (chosen.0, chosen.1.name()),
        None,
        PTIME_MS,
        line.as_deref(),
    )
}
