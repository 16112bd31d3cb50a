//! The connection to Redis: a reconnecting [`ConnectionManager`], a
//! supervisor task that probes it, and the wrapper every operation goes
//! through.
//!
//! Three rules keep a SIP transaction from ever waiting on a dead Redis:
//! every operation is bounded by the response timeout; once the supervisor
//! (or an operation) has seen the connection fail, operations fail at once
//! with [`Error::Unavailable`] instead of queueing behind reconnect attempts;
//! and the supervisor probes every [`DOWN_PROBE`] until the server answers
//! again. A manager whose probes keep timing out (a peer that vanished
//! without closing the socket) is replaced by a fresh one, since the manager
//! itself only reconnects after errors that prove the socket dead.
//!
//! The probe is `CLIENT ID`: a different id means a different connection,
//! so the connection generation increments even when the manager
//! reconnected between two probes.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{FromRedisValue, RedisResult, ScriptInvocation};
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::error::{Error, Result};
use crate::stats::Stats;

/// Probe interval while connected.
const UP_PROBE: Duration = Duration::from_secs(1);
/// Probe interval while disconnected: how quickly a returning server is noticed.
const DOWN_PROBE: Duration = Duration::from_millis(250);
/// Consecutive probe timeouts after which the manager is replaced.
const STUCK_PROBES: u32 = 3;

/// Whether the shared state is usable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    /// The last probe succeeded.
    Ok,
    /// Redis is unreachable or not answering; the reason is for logs and
    /// the health endpoint. Operations fail fast meanwhile.
    Degraded(String),
}

/// Connection state as operations see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Link {
    /// Not probed yet: operations are attempted (bounded by the timeout).
    Unknown = 0,
    Up = 1,
    /// Operations fail at once until a probe succeeds.
    Down = 2,
}

impl Link {
    fn from_u8(v: u8) -> Self {
        match v {
            1 => Link::Up,
            2 => Link::Down,
            _ => Link::Unknown,
        }
    }
}

/// One request: a command, a pipeline (`MULTI`/`EXEC` when atomic) or a
/// script call (`EVALSHA`, loading the script after a server restart).
pub(crate) enum Req<'a> {
    Cmd(&'a redis::Cmd),
    Pipe(&'a redis::Pipeline),
    Script(&'a ScriptInvocation<'a>),
}

impl Req<'_> {
    async fn send<T: FromRedisValue>(&self, c: &mut ConnectionManager) -> RedisResult<T> {
        match self {
            Req::Cmd(x) => x.query_async(c).await,
            Req::Pipe(x) => x.query_async(c).await,
            Req::Script(x) => x.invoke_async(c).await,
        }
    }
}

impl<'a> From<&'a redis::Cmd> for Req<'a> {
    fn from(x: &'a redis::Cmd) -> Self {
        Req::Cmd(x)
    }
}

impl<'a> From<&'a redis::Pipeline> for Req<'a> {
    fn from(x: &'a redis::Pipeline) -> Self {
        Req::Pipe(x)
    }
}

impl<'a> From<&'a mut redis::Cmd> for Req<'a> {
    fn from(x: &'a mut redis::Cmd) -> Self {
        Req::Cmd(x)
    }
}

impl<'a> From<&'a mut redis::Pipeline> for Req<'a> {
    fn from(x: &'a mut redis::Pipeline) -> Self {
        Req::Pipe(x)
    }
}

impl<'a, 'b: 'a> From<&'a ScriptInvocation<'b>> for Req<'a> {
    fn from(x: &'a ScriptInvocation<'b>) -> Self {
        Req::Script(x)
    }
}

impl<'a, 'b: 'a> From<&'a mut ScriptInvocation<'b>> for Req<'a> {
    fn from(x: &'a mut ScriptInvocation<'b>) -> Self {
        Req::Script(x)
    }
}

pub(crate) struct Conn {
    client: redis::Client,
    config: ConnectionManagerConfig,
    /// Replaced (not mutated) when the supervisor gives up on a stuck
    /// manager; the lock is only held to clone or swap the handle.
    manager: RwLock<ConnectionManager>,
    link: AtomicU8,
    health: watch::Sender<Health>,
    generation: watch::Sender<u64>,
    /// Wakes the supervisor early when an operation saw the link fail.
    wake: Notify,
    pub(crate) op_timeout: Duration,
    pub(crate) connect_timeout: Duration,
    stats: Arc<Stats>,
}

impl Conn {
    /// A lazily connecting manager; nothing touches the network here.
    pub(crate) fn new(
        client: redis::Client,
        op_timeout: Duration,
        connect_timeout: Duration,
        stats: Arc<Stats>,
    ) -> Result<Self> {
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(connect_timeout))
            .set_response_timeout(Some(op_timeout))
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_millis(500))
            .set_number_of_retries(2);
        let manager = client.get_connection_manager_lazy(config.clone())?;
        Ok(Self {
            client,
            config,
            manager: RwLock::new(manager),
            link: AtomicU8::new(Link::Unknown as u8),
            health: watch::Sender::new(Health::Degraded("connecting".into())),
            generation: watch::Sender::new(0),
            wake: Notify::new(),
            op_timeout,
            connect_timeout,
            stats,
        })
    }

    pub(crate) fn client(&self) -> &redis::Client {
        &self.client
    }

    pub(crate) fn health(&self) -> Health {
        self.health.borrow().clone()
    }

    pub(crate) fn health_watch(&self) -> watch::Receiver<Health> {
        self.health.subscribe()
    }

    pub(crate) fn generation(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }

    fn manager(&self) -> ConnectionManager {
        match self.manager.read() {
            Ok(m) => m.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn link(&self) -> Link {
        Link::from_u8(self.link.load(Ordering::Acquire))
    }

    /// Sends one request on the shared connection, bounded by the response
    /// timeout, counting it and noting a failed link for the supervisor. A
    /// request that finds the connection dropped (the server restarted
    /// since the last request) is sent once more on the manager's new
    /// connection, within the same bound.
    pub(crate) async fn run<'a, T: FromRedisValue>(&self, req: impl Into<Req<'a>>) -> Result<T> {
        let req = req.into();
        if self.link() == Link::Down {
            let reason = match &*self.health.borrow() {
                Health::Degraded(r) => r.clone(),
                Health::Ok => "link down".into(),
            };
            return Err(self.stats.failed(Error::Unavailable(reason)));
        }
        self.stats.op();
        let attempt = async {
            match req.send(&mut self.manager()).await {
                Err(e) if e.is_connection_dropped() && !e.is_connection_refusal() => {
                    req.send(&mut self.manager()).await
                }
                r => r,
            }
        };
        match tokio::time::timeout(self.op_timeout, attempt).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                if link_failure(&e) {
                    self.link_failed(&e.to_string());
                }
                // The connection's own response timeout is the same bound.
                let e = if e.is_timeout() {
                    Error::Timeout
                } else {
                    Error::Redis(e)
                };
                Err(self.stats.failed(e))
            }
            Err(_) => {
                self.link_failed("operation timed out");
                Err(self.stats.failed(Error::Timeout))
            }
        }
    }

    fn link_failed(&self, reason: &str) {
        if self.link.swap(Link::Down as u8, Ordering::AcqRel) != Link::Down as u8 {
            self.set_health(Health::Degraded(reason.to_owned()));
            self.stats.set_connected(false);
        }
        self.wake.notify_one();
    }

    fn set_health(&self, h: Health) {
        self.health.send_if_modified(|cur| {
            if *cur == h {
                false
            } else {
                *cur = h;
                true
            }
        });
    }

    /// Probes until `stop` is cancelled; owns the link state, health and
    /// generation.
    pub(crate) async fn supervise(self: Arc<Self>, stop: CancellationToken) {
        let mut last_id: Option<i64> = None;
        // the server's version is checked once per connection
        let mut too_old: Option<String> = None;
        let mut stuck = 0u32;
        let mut first = true;
        loop {
            if !first {
                let wait = if self.link() == Link::Up {
                    UP_PROBE
                } else {
                    DOWN_PROBE
                };
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(wait) => {}
                    () = self.wake.notified() => {}
                }
            }
            first = false;
            let probe = async {
                let mut m = self.manager();
                redis::cmd("CLIENT")
                    .arg("ID")
                    .query_async::<i64>(&mut m)
                    .await
            };
            let outcome = tokio::select! {
                () = stop.cancelled() => return,
                r = tokio::time::timeout(self.op_timeout, probe) => r,
            };
            match outcome {
                Ok(Ok(id)) => {
                    stuck = 0;
                    let new_connection = last_id != Some(id);
                    if new_connection {
                        too_old = self.version_problem().await;
                    }
                    match &too_old {
                        Some(reason) => self.probe_failed(reason),
                        None => self.link_up(new_connection),
                    }
                    last_id = Some(id);
                }
                // Answered, but not allowed to run CLIENT ID (ACLs): the
                // link is up; only a down→up transition counts as new.
                Ok(Err(e))
                    if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoPerm) =>
                {
                    stuck = 0;
                    self.link_up(false);
                }
                Ok(Err(e)) => {
                    stuck = 0;
                    self.probe_failed(&e.to_string());
                }
                Err(_) => {
                    stuck += 1;
                    self.probe_failed("probe timed out");
                    if stuck >= STUCK_PROBES {
                        stuck = 0;
                        self.replace_manager();
                    }
                }
            }
        }
    }

    /// Why the server cannot hold the shared state (too old for the
    /// scripts' commands), from `INFO server`; `None` when it can or when
    /// it does not say (an ACL refusing `INFO` is no reason to stop).
    async fn version_problem(&self) -> Option<String> {
        let info = async {
            let mut m = self.manager();
            redis::cmd("INFO")
                .arg("server")
                .query_async::<String>(&mut m)
                .await
        };
        match tokio::time::timeout(self.op_timeout, info).await {
            Ok(Ok(info)) => {
                let problem = version_problem(&info);
                if let Some(p) = &problem {
                    tracing::error!(cause = %p, "shared state off until the server is upgraded");
                }
                problem
            }
            _ => None,
        }
    }

    fn link_up(&self, new_connection: bool) {
        let was = Link::from_u8(self.link.swap(Link::Up as u8, Ordering::AcqRel));
        if was != Link::Up || new_connection {
            let g = {
                let mut g = 0;
                self.generation.send_modify(|v| {
                    *v += 1;
                    g = *v;
                });
                g
            };
            self.stats.reconnected();
            info!(generation = g, "redis connection established");
        }
        self.stats.set_connected(true);
        self.set_health(Health::Ok);
    }

    fn probe_failed(&self, reason: &str) {
        let was = Link::from_u8(self.link.swap(Link::Down as u8, Ordering::AcqRel));
        if was != Link::Down {
            warn!(cause = %reason, "redis unreachable; shared state degraded");
        }
        self.stats.set_connected(false);
        self.set_health(Health::Degraded(reason.to_owned()));
    }

    fn replace_manager(&self) {
        match self.client.get_connection_manager_lazy(self.config.clone()) {
            Ok(fresh) => {
                warn!("redis connection stuck; replacing it");
                match self.manager.write() {
                    Ok(mut m) => *m = fresh,
                    Err(poisoned) => *poisoned.into_inner() = fresh,
                }
            }
            Err(e) => warn!(cause = %e, "could not create a new redis connection manager"),
        }
    }
}

/// The oldest server the scripts run on: `ZADD … LT` and `SET … KEEPTTL`
/// came with Redis 6.2.
const MIN_VERSION: (u32, u32) = (6, 2);

/// Why a server whose `INFO server` says `info` is too old, if it is.
fn version_problem(info: &str) -> Option<String> {
    let v = info
        .lines()
        .find_map(|l| l.strip_prefix("redis_version:"))?
        .trim();
    let mut parts = v.split('.').map(|p| p.parse::<u32>().ok());
    let (Some(Some(major)), Some(Some(minor))) = (parts.next(), parts.next()) else {
        return None;
    };
    ((major, minor) < MIN_VERSION).then(|| {
        format!(
            "Redis {v} is older than {}.{}, which the shared state needs (ZADD LT, SET KEEPTTL)",
            MIN_VERSION.0, MIN_VERSION.1
        )
    })
}

/// Errors that say the link (not the request) failed.
fn link_failure(e: &redis::RedisError) -> bool {
    e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() || e.is_timeout()
}

#[cfg(test)]
mod tests {
    use super::version_problem;

    #[test]
    fn servers_older_than_6_2_are_refused_by_name() {
        let info = |v: &str| format!("# Server\r\nredis_version:{v}\r\nredis_mode:standalone\r\n");
        for ok in ["6.2.0", "7.0.15", "7.4.1", "8.0.2", "10.0.0"] {
            assert_eq!(version_problem(&info(ok)), None, "{ok}");
        }
        for old in ["6.0.16", "5.0.7", "4.0.9"] {
            let p = version_problem(&info(old)).unwrap_or_default();
            assert!(
                p.starts_with(&format!("Redis {old} is older than 6.2")),
                "{p}"
            );
        }
        // a server that does not say (or says something else) is not refused
        for odd in [
            "",
            "# Server\r\n",
            "redis_version:unknown\r\n",
            "redis_version:7\r\n",
        ] {
            assert_eq!(version_problem(odd), None, "{odd:?}");
        }
    }
}
