//! Where a new session's sockets go: the address family, a free port
//! pair bound.

use std::net::{IpAddr, SocketAddr};

use tokio::net::UdpSocket;
use tracing::debug;

use super::{Engine, EngineError, RtpAddress, lock};

impl Engine {
    pub(super) fn pick_address(&self, want_v6: Option<bool>) -> Result<RtpAddress, EngineError> {
        let addrs = &self.inner.config.addresses;
        match want_v6 {
            None => Ok(addrs[0]),
            Some(v6) => addrs
                .iter()
                .find(|a| a.bind.is_ipv6() == v6)
                .copied()
                .ok_or_else(|| {
                    EngineError::InvalidArgument(format!(
                        "this RTP manager has no {} address",
                        if v6 { "IPv6" } else { "IPv4" }
                    ))
                }),
        }
    }

    /// Binds a free pair picked at random; pairs another process holds are
    /// skipped (and go back to the pool).
    pub(super) fn bind_pair(&self, ip: IpAddr) -> Result<(u16, UdpSocket, UdpSocket), EngineError> {
        let tries = lock(&self.inner.ports).total_pairs();
        let mut busy = Vec::new();
        let mut bound = None;
        let mut out_of_files = false;
        for _ in 0..tries {
            let Some(port) = lock(&self.inner.ports).allocate() else {
                break;
            };
            match (bind_udp(ip, port), bind_udp(ip, port + 1)) {
                (Ok(a), Ok(b)) => {
                    bound = Some((port, a, b));
                    break;
                }
                (a, b) => {
                    let cause = a.err().or(b.err());
                    if cause.as_ref().is_some_and(crate::fdlimit::out_of_files) {
                        // every other pair would fail the same way: trying
                        // them all burnt a core per request under load
                        busy.push(port);
                        out_of_files = true;
                        break;
                    }
                    debug!(port, cause = ?cause, "RTP port pair busy, trying another");
                    // kept out of the pool until this search ends, so it is
                    // not picked again
                    busy.push(port);
                }
            }
        }
        {
            let mut pool = lock(&self.inner.ports);
            for p in busy {
                pool.release(p);
            }
        }
        if out_of_files {
            return Err(EngineError::Limit(
                "out of file descriptors for RTP sockets (RLIMIT_NOFILE): raise the open-files \
                 limit or add managers"
                    .into(),
            ));
        }
        bound.ok_or_else(|| {
            let c = &self.inner.config;
            EngineError::Exhausted(format!("{}-{}", c.port_min, c.port_max))
        })
    }
}

fn bind_udp(ip: IpAddr, port: u16) -> std::io::Result<UdpSocket> {
    let socket = std::net::UdpSocket::bind(SocketAddr::new(ip, port))?;
    socket.set_nonblocking(true)?;
    UdpSocket::from_std(socket)
}
