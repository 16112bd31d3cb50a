//! A route's `srtp` setting: whether the caller must offer SRTP (RTP/SAVP
//! with SDES keys, RFC 4568).

use switchboard_rtpmanager_api::v1 as pb;

use super::{DialplanError, err};

/// What a route asks of the caller's media.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Srtp {
    /// The default: a caller offering SRTP gets SRTP, a plain caller plain
    /// RTP; callees are offered plain RTP/AVP (any phone takes it).
    #[default]
    Optional,
    /// A caller offering plain RTP gets 488 Not Acceptable Here.
    Required,
}

impl Srtp {
    /// The setting as written in a route (`None`: absent, the default).
    pub fn parse(value: Option<&str>, path: &str) -> Result<Srtp, DialplanError> {
        match value {
            None | Some("optional") => Ok(Srtp::Optional),
            Some("required") => Ok(Srtp::Required),
            Some(other) => Err(err(
                path,
                format!("must be \"optional\" or \"required\", not {other:?}"),
            )),
        }
    }

    /// The caller's leg policy on the RTP manager.
    pub fn policy(self) -> pb::SrtpPolicy {
        match self {
            Srtp::Optional => pb::SrtpPolicy::Optional,
            Srtp::Required => pb::SrtpPolicy::Required,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values() {
        let p = "routes[0] (id \"x\").srtp";
        assert_eq!(Srtp::parse(None, p).ok(), Some(Srtp::Optional));
        assert_eq!(Srtp::parse(Some("optional"), p).ok(), Some(Srtp::Optional));
        assert_eq!(Srtp::parse(Some("required"), p).ok(), Some(Srtp::Required));
        for bad in ["Required", "yes", "", "disabled"] {
            let e = Srtp::parse(Some(bad), p).err();
            assert!(e.as_ref().is_some_and(|e| e.path == p), "{bad}: {e:?}");
        }
    }
}
