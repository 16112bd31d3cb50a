//! What happens to a binding when the connection it was learnt on closes:
//! `UNREGISTER_ON_CLOSE`.
//!
//! A browser (SIP over WebSocket) can never be reached again once its
//! socket closes: it cannot accept a connection, so its bindings go at
//! once. A phone on TCP or TLS behind NAT cannot be reached either, but
//! some phones on a public address close their connection between
//! REGISTERs on purpose and expect the registrar to connect to their
//! Contact: removing TCP and TLS bindings is asked for (`all`). Asterisk's
//! PJSIP removes them always; Kamailio deployments remove WebSocket
//! contacts in their `websocket:closed` event route.

use clap::{Args, ValueEnum};
use switchboard_sip_stack::target::TransportKind;

/// Which closed connections take their bindings with them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum UnregisterOnClose {
    /// WebSocket and secure WebSocket.
    #[value(name = "ws")]
    WebSocket,
    /// WS and WSS, TCP and TLS.
    #[value(name = "all")]
    All,
    /// None: bindings stay until they expire or are refreshed.
    #[value(name = "none")]
    Never,
}

impl UnregisterOnClose {
    /// The transports whose closed connections remove their bindings.
    pub fn kinds(self) -> &'static [TransportKind] {
        match self {
            Self::WebSocket => &[TransportKind::Ws, TransportKind::Wss],
            Self::All => &[
                TransportKind::Tcp,
                TransportKind::Tls,
                TransportKind::Ws,
                TransportKind::Wss,
            ],
            Self::Never => &[],
        }
    }
}

/// `UNREGISTER_ON_CLOSE`.
#[derive(Debug, Clone, Args)]
pub struct FlowConfig {
    /// Which closed connections remove the bindings registered over them,
    /// as an unregistration would: `ws` (WS and WSS), `all` (TCP and TLS
    /// too), `none`.
    #[arg(
        long,
        env = "UNREGISTER_ON_CLOSE",
        value_name = "UNREGISTER_ON_CLOSE",
        value_enum,
        default_value = "ws"
    )]
    pub unregister_on_close: UnregisterOnClose,
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::Config;

    #[test]
    fn unregister_on_close_values() {
        let parse = |args: &[&str]| {
            Config::try_parse_from([&["switchboard-signaling"], args].concat())
                .map(|c| c.flows.unregister_on_close)
                .map_err(|e| e.to_string())
        };
        assert_eq!(parse(&[]), Ok(UnregisterOnClose::WebSocket));
        for (value, want, kinds) in [
            ("ws", UnregisterOnClose::WebSocket, 2),
            ("all", UnregisterOnClose::All, 4),
            ("none", UnregisterOnClose::Never, 0),
        ] {
            let got = parse(&["--unregister-on-close", value]).unwrap();
            assert_eq!(got, want, "{value}");
            assert_eq!(got.kinds().len(), kinds, "{value}");
        }
        assert!(
            !UnregisterOnClose::WebSocket
                .kinds()
                .contains(&TransportKind::Tcp)
        );
        for bad in ["tcp", "WS,TCP", "", "yes"] {
            let err = parse(&["--unregister-on-close", bad]).expect_err(bad);
            assert!(err.contains("UNREGISTER_ON_CLOSE"), "{bad}: {err}");
        }
    }
}
