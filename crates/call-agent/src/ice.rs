//! ICE (RFC 8445) for the call's media when `SIP_ICE_ENABLED`, with
//! webrtc-rs `ice` (the `webrtc-ice` crate). We are the offerer and the
//! controlling agent; the SDP attributes are RFC 8839's.
//!
//! The agent gathers host candidates on the address that routes to the SIP
//! server only (never `SIP_PUBLIC_ADDRESS`, never other interfaces),
//! server-reflexive ones from `SIP_STUN_SERVERS` (and the TURN server,
//! which answers binding requests too) and a relay from the TURN settings
//! (webrtc-rs binds the sockets of those two kinds on the wildcard address
//! of the family). One component: `a=rtcp-mux`.
//!
//! The default candidate (`c=`/`m=`) is the plain media socket the agent
//! uses without ICE ([`crate::media::Local`]: the TURN relay, else the
//! STUN/public address, else the local one), written as an `a=candidate`
//! of its own so a peer finds `c=`/`m=` among the candidates (RFC 8839
//! §4.2.1; no ice-mismatch). That socket does not answer connectivity
//! checks, so with a peer doing ICE its pairs fail and the ICE agent's own
//! candidates carry the media; a peer that answers without ICE gets the
//! plain stream from that socket to its `c=`/`m=` address, exactly as with
//! ICE disabled, and the ICE agent is closed.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use switchboard_sip::sdp::webrtc::Transport;
use tokio::sync::mpsc;
use webrtc_ice::agent::Agent;
use webrtc_ice::agent::agent_config::AgentConfig;
use webrtc_ice::candidate::candidate_base::unmarshal_candidate;
use webrtc_ice::candidate::{Candidate, CandidateType};
use webrtc_ice::mdns::MulticastDnsMode;
use webrtc_ice::network_type::NetworkType;
use webrtc_ice::url::Url;

use crate::config::Settings;
use crate::media::{Local, Socket};

/// How long gathering may take (a TURN allocation included).
pub const GATHER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the connectivity checks may take after the answer.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(10);

/// Our ICE side: the agent and what goes into the offer.
pub struct Ice {
    agent: Agent,
    v4: bool,
    pub ufrag: String,
    pub pwd: String,
    /// The gathered candidates as `a=candidate` values (the default one is
    /// written before them, see [`Ice::sdp_lines`]).
    pub candidates: Vec<String>,
}

/// The outcome of successful checks.
pub struct Connected {
    /// The connection on the selected pair.
    pub sock: Socket,
    /// The pair as `<type> <address> -> <type> <address>`, ours first.
    pub pair: String,
    /// Our relayed address when our side of the pair is a TURN relay.
    pub relay: Option<SocketAddr>,
}

/// The STUN and TURN servers of the settings as the agent's URLs.
///
/// # Errors
/// A server that is not `host:port`.
pub fn urls(s: &Settings) -> Result<Vec<Url>, String> {
    let mut urls = Vec::new();
    for server in &s.stun_servers {
        urls.push(
            Url::parse_url(&format!("stun:{server}"))
                .map_err(|e| format!("SIP_STUN_SERVERS {server}: {e}"))?,
        );
    }
    if let Some(t) = &s.turn {
        let mut u = Url::parse_url(&format!("turn:{}?transport=udp", t.server))
            .map_err(|e| format!("SIP_TURN_SERVER {}: {e}", t.server))?;
        u.username.clone_from(&t.username);
        u.password.clone_from(&t.password);
        urls.push(u);
    }
    Ok(urls)
}

/// The `a=candidate` value of the default candidate `local`, whose socket
/// is bound on `local_ip`: RFC 8445 §5.1.2.1 priority with the lowest
/// local preference, so a peer checks the ICE agent's own candidates
/// first. A relay's related address is left unsaid (`0.0.0.0 9`, RFC 8839
/// §5.1).
pub fn default_candidate(local: &Local, local_ip: IpAddr) -> String {
    let at = local.advertised;
    let base = SocketAddr::new(local_ip, at.port());
    let (typ, type_pref, raddr) = if local.relayed_by_turn() {
        let any = if local_ip.is_ipv4() {
            IpAddr::from([0, 0, 0, 0])
        } else {
            IpAddr::from([0u16; 8])
        };
        ("relay", 0u32, Some(SocketAddr::new(any, 9)))
    } else if at == base {
        ("host", 126, None)
    } else {
        ("srflx", 100, Some(base))
    };
    let priority = (type_pref << 24) + 255;
    let mut line = format!(
        "sb{typ} 1 udp {priority} {} {} typ {typ}",
        at.ip(),
        at.port()
    );
    if let Some(r) = raddr {
        line.push_str(&format!(" raddr {} rport {}", r.ip(), r.port()));
    }
    line
}

impl Ice {
    /// Creates the controlling agent on `local_ip` and gathers.
    ///
    /// # Errors
    /// The agent cannot be made, or gathers nothing in time.
    pub async fn gather(s: &Settings, local_ip: IpAddr) -> Result<Ice, String> {
        let network = if local_ip.is_ipv4() {
            NetworkType::Udp4
        } else {
            NetworkType::Udp6
        };
        let agent = Agent::new(AgentConfig {
            urls: urls(s)?,
            network_types: vec![network],
            is_controlling: true,
            multicast_dns_mode: MulticastDnsMode::Disabled,
            include_loopback: local_ip.is_loopback(),
            ip_filter: Arc::new(Some(Box::new(move |ip: IpAddr| ip == local_ip))),
            ..AgentConfig::default()
        })
        .await
        .map_err(|e| format!("ICE agent: {e}"))?;
        let (done_tx, mut done) = mpsc::channel::<()>(1);
        agent.on_candidate(Box::new(move |c| {
            let done_tx = done_tx.clone();
            Box::pin(async move {
                if c.is_none() {
                    let _ = done_tx.send(()).await;
                }
            })
        }));
        agent
            .gather_candidates()
            .map_err(|e| format!("ICE gathering: {e}"))?;
        if tokio::time::timeout(GATHER_TIMEOUT, done.recv())
            .await
            .is_err()
        {
            tracing::warn!("ICE gathering did not complete in time; offering what it found");
        }
        let gathered = agent
            .get_local_candidates()
            .await
            .map_err(|e| format!("ICE candidates: {e}"))?;
        if gathered.is_empty() {
            let _ = agent.close().await;
            return Err(format!("ICE gathered no candidate on {local_ip}"));
        }
        let (ufrag, pwd) = agent.get_local_user_credentials().await;
        Ok(Ice {
            agent,
            v4: local_ip.is_ipv4(),
            ufrag,
            pwd,
            candidates: gathered.iter().map(|c| c.marshal()).collect(),
        })
    }

    /// The offer's ICE lines for the media section, after `default`.
    pub fn sdp_lines(&self, default: &str) -> String {
        let mut out = format!(
            "a=ice-ufrag:{}\r\na=ice-pwd:{}\r\na=rtcp-mux\r\na=candidate:{default}\r\n",
            self.ufrag, self.pwd
        );
        for c in &self.candidates {
            out.push_str(&format!("a=candidate:{c}\r\n"));
        }
        out
    }

    /// Checks against the answer's credentials and candidates (component 1,
    /// UDP, IP addresses) as the controlling agent, up to
    /// [`CHECK_TIMEOUT`]. Returns the connection on the selected pair.
    ///
    /// # Errors
    /// No usable candidate, or no pair succeeded in time.
    pub async fn connect(&self, answer: &Transport) -> Result<Connected, String> {
        let (Some(ufrag), Some(pwd)) = (&answer.ice_ufrag, &answer.ice_pwd) else {
            return Err("the answer has no ice-ufrag/ice-pwd".into());
        };
        let mut added = 0;
        for (i, c) in answer.candidates.iter().enumerate() {
            let family_ok = c.ip().is_some_and(|ip| ip.is_ipv4() == self.v4);
            if c.component != 1 || c.transport != "udp" || !family_ok {
                continue;
            }
            let raw = format!(
                "r{i} 1 udp {} {} {} typ {}",
                c.priority, c.address, c.port, c.typ
            );
            match unmarshal_candidate(&raw) {
                Ok(rc) => {
                    let rc: Arc<dyn Candidate + Send + Sync> = Arc::new(rc);
                    if self.agent.add_remote_candidate(&rc).is_ok() {
                        added += 1;
                    }
                }
                Err(e) => tracing::debug!(candidate = %raw, cause = %e, "remote candidate skipped"),
            }
        }
        if added == 0 {
            return Err("the answer has no usable a=candidate".into());
        }
        // the agent gives up when this sender is dropped: kept to the end
        let (_cancel, cancel_rx) = mpsc::channel::<()>(1);
        let conn = tokio::time::timeout(
            CHECK_TIMEOUT,
            self.agent.dial(cancel_rx, ufrag.clone(), pwd.clone()),
        )
        .await
        .map_err(|_| {
            format!(
                "no candidate pair succeeded within {} s",
                CHECK_TIMEOUT.as_secs()
            )
        })?
        .map_err(|e| e.to_string())?;
        let selected = self.agent.get_selected_candidate_pair();
        let pair = selected
            .as_ref()
            .map(|p| {
                format!(
                    "{} {} -> {} {}",
                    p.local.candidate_type(),
                    p.local.addr(),
                    p.remote.candidate_type(),
                    p.remote.addr()
                )
            })
            .unwrap_or_default();
        let relay = selected
            .filter(|p| p.local.candidate_type() == CandidateType::Relay)
            .map(|p| p.local.addr());
        Ok(Connected {
            sock: conn,
            pair,
            relay,
        })
    }

    /// Closes the agent (its sockets and relay), bounded in time.
    pub async fn close(self) {
        let _ = tokio::time::timeout(Duration::from_secs(2), self.agent.close()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_default_candidate_is_written_by_its_kind() {
        let lo = IpAddr::from([127, 0, 0, 1]);
        let host = Local::udp(lo, lo).await.unwrap();
        let port = host.advertised.port();
        assert_eq!(
            default_candidate(&host, lo),
            format!("sbhost 1 udp 2113929471 127.0.0.1 {port} typ host")
        );
        let public = Local::udp(lo, IpAddr::from([203, 0, 113, 7]))
            .await
            .unwrap();
        let port = public.advertised.port();
        assert_eq!(
            default_candidate(&public, lo),
            format!(
                "sbsrflx 1 udp 1677721855 203.0.113.7 {port} typ srflx raddr 127.0.0.1 rport {port}"
            )
        );
        // what the callee parses back
        let c = switchboard_sip::sdp::webrtc::Candidate::parse(&default_candidate(&public, lo))
            .unwrap();
        assert_eq!((c.component, c.typ.as_str(), c.port), (1, "srflx", port));
    }
}
