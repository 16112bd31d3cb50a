//! One RTP manager as signaling drives it: the embedded engine's service
//! or a gRPC client, every call with its token and deadline, failures
//! marking it down, destroys retried in the background, its health checks.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use switchboard_rtpmanager::Service;
use switchboard_rtpmanager_api::RtpManagerClient;
use switchboard_rtpmanager_api::v1 as pb;
use switchboard_rtpmanager_api::v1::rtp_manager_server::RtpManager as _;
use tokio_stream::Stream;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::Channel;
use tonic::{Code, Request, Status};
use tracing::{info, warn};

use super::Told;
use super::recovery::{retry_until, worth_retrying};

/// Failed health checks in a row after which a member's calls are moved
/// or ended (a restart of the manager takes less).
pub const LOST_AFTER: u32 = 3;
/// A gRPC call to a member that takes longer has failed.
const CALL_TIMEOUT: Duration = Duration::from_secs(2);
/// A failed destroy is retried for this long (by then the manager has
/// ended the session itself: no RTP for 2×RTP_TIMEOUT).
pub const DESTROY_RETRY_FOR: Duration = Duration::from_secs(300);
/// First wait before a destroy is retried; doubled each time.
const DESTROY_BACKOFF_MIN: Duration = Duration::from_millis(500);
const DESTROY_BACKOFF_MAX: Duration = Duration::from_secs(30);
/// Destroys being retried at once; beyond, a failed destroy is given up
/// at once (the manager's own expiry still frees the ports).
pub const MAX_DESTROY_RETRIES: u64 = 10_000;

/// A server stream from either kind of member.
pub type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

#[derive(Clone)]
pub(super) enum Client {
    Local(Service),
    Remote(RtpManagerClient<Channel>),
}

/// Signaling's own counters of its dealings with the RTP managers.
#[derive(Debug, Default)]
pub struct MediaCounters {
    /// Destroys retried (each further attempt counts).
    pub destroy_retries: AtomicU64,
    /// Destroys given up: still failing after [`DESTROY_RETRY_FOR`], or
    /// too many pending.
    pub destroy_abandoned: AtomicU64,
    /// Destroys being retried now.
    pub destroy_pending: AtomicU64,
    /// Event streams subscribed again after an error.
    pub watch_resubscribes: AtomicU64,
}

/// What the Kubernetes endpoints say of a member: whether it takes new
/// sessions. Members from `RTPMANAGER_ADDRS` and the embedded engine are
/// always [`EndpointState::Ready`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EndpointState {
    /// `conditions.ready`: takes new sessions.
    Ready,
    /// Not ready (and not terminating): keeps its calls and its health
    /// checks, takes no new sessions.
    NotReady,
    /// `conditions.terminating`: as not ready; its calls finish where they
    /// are unless its Service asks for them to move ([`discovery`]).
    Terminating,
}

impl EndpointState {
    pub const ALL: [EndpointState; 3] = [
        EndpointState::Ready,
        EndpointState::NotReady,
        EndpointState::Terminating,
    ];

    /// The name in the API and in /metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            EndpointState::Ready => "ready",
            EndpointState::NotReady => "not_ready",
            EndpointState::Terminating => "terminating",
        }
    }

    pub(super) fn from_u8(v: u8) -> EndpointState {
        match v {
            0 => EndpointState::Ready,
            1 => EndpointState::NotReady,
            _ => EndpointState::Terminating,
        }
    }

    pub(super) fn as_u8(self) -> u8 {
        match self {
            EndpointState::Ready => 0,
            EndpointState::NotReady => 1,
            EndpointState::Terminating => 2,
        }
    }
}

/// One RTP manager.
pub struct Manager {
    pub name: String,
    pub addr: String,
    pub(super) client: Client,
    /// `Bearer <RTPMANAGER_TOKEN>`, sent on every call to a remote member.
    pub(super) auth: Option<MetadataValue<Ascii>>,
    pub(super) healthy: AtomicBool,
    pub(super) draining: AtomicBool,
    /// Found by [`discovery`] (else configured, or embedded).
    pub(super) discovered: bool,
    /// The endpoint's [`EndpointState`] (`as_u8`); written by discovery only.
    pub(super) endpoint: AtomicU8,
    /// Terminating with its Service asking for its calls to move, as last
    /// applied by discovery (the move is asked once, when this turns true).
    pub(super) moving: AtomicBool,
    /// Health checks failed in a row.
    pub(super) failed_checks: std::sync::atomic::AtomicU32,
    /// The member's last health answer (its own counters), for /metrics.
    pub(super) last_health: Mutex<Option<pb::HealthResponse>>,
    pub(super) counters: Arc<MediaCounters>,
}

/// `name=host:port` or `host:port` (named after the address).
pub fn parse_member(s: &str) -> Result<(String, String), String> {
    let s = s.trim();
    let (name, addr) = match s.split_once('=') {
        Some((n, a)) => (n.trim().to_owned(), a.trim().to_owned()),
        None => (s.to_owned(), s.to_owned()),
    };
    if name.is_empty() || name.contains('/') {
        return Err(format!("{s:?}: bad member name"));
    }
    let url = format!("http://{addr}");
    let ok = url
        .parse::<tonic::codegen::http::Uri>()
        .ok()
        .filter(|u| u.port_u16().is_some() && u.host().is_some_and(|h| !h.is_empty()));
    if ok.is_none() {
        return Err(format!("{s:?}: expected host:port"));
    }
    Ok((name, addr))
}

/// A request to a remote member: the token, and a deadline unless it
/// opens a stream.
fn remote_request<T>(req: T, auth: Option<&MetadataValue<Ascii>>, deadline: bool) -> Request<T> {
    let mut r = Request::new(req);
    if deadline {
        r.set_timeout(CALL_TIMEOUT);
    }
    if let Some(a) = auth {
        r.metadata_mut().insert("authorization", a.clone());
    }
    r
}

macro_rules! rpc {
    ($self:ident, $method:ident, $req:expr) => {{
        let result = match &$self.client {
            Client::Local(svc) => svc.$method(Request::new($req)).await,
            Client::Remote(c) => {
                c.clone()
                    .$method(remote_request($req, $self.auth.as_ref(), true))
                    .await
            }
        };
        $self.observe(result.map(|r| r.into_inner()))
    }};
}

macro_rules! rpc_stream {
    ($self:ident, $method:ident, $req:expr) => {{
        match &$self.client {
            Client::Local(svc) => {
                let s = svc.$method(Request::new($req)).await;
                $self.observe(s.map(|r| -> BoxStream<_> { Box::pin(r.into_inner()) }))
            }
            Client::Remote(c) => {
                let s = c
                    .clone()
                    .$method(remote_request($req, $self.auth.as_ref(), false))
                    .await;
                $self.observe(s.map(|r| -> BoxStream<_> { Box::pin(r.into_inner()) }))
            }
        }
    }};
}

/// One destroy call, outside any [`Manager`] (for the background retries).
async fn destroy_once(
    client: &Client,
    auth: Option<&MetadataValue<Ascii>>,
    session: &str,
) -> Result<pb::SessionInfo, Status> {
    let req = pb::DestroySessionRequest {
        session_id: session.to_owned(),
    };
    let r = match client {
        Client::Local(svc) => svc.destroy_session(Request::new(req)).await,
        Client::Remote(c) => {
            c.clone()
                .destroy_session(remote_request(req, auth, true))
                .await
        }
    };
    r.map(|r| r.into_inner())
}

impl Manager {
    /// Marks the member down when the failure says it is unreachable
    /// (as opposed to a bad request).
    pub(super) fn observe<T>(&self, r: Result<T, Status>) -> Result<T, Status> {
        if let Err(e) = &r
            && matches!(
                e.code(),
                Code::Unavailable | Code::DeadlineExceeded | Code::Unknown
            )
            && self.healthy.swap(false, Ordering::Relaxed)
        {
            warn!(manager = %self.name, cause = %e, "RTP manager unreachable; skipped for new calls");
        }
        r
    }

    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Found by Kubernetes discovery (`RTPMANAGER_SERVICE`).
    pub fn is_discovered(&self) -> bool {
        self.discovered
    }

    /// What its endpoint says ([`EndpointState::Ready`] unless discovered).
    pub fn endpoint_state(&self) -> EndpointState {
        EndpointState::from_u8(self.endpoint.load(Ordering::Relaxed))
    }

    /// Whether new calls may go to it: healthy, not draining, ready.
    pub fn takes_new_calls(&self) -> bool {
        self.is_healthy() && !self.is_draining() && self.endpoint_state() == EndpointState::Ready
    }

    /// What the events tell of it now.
    pub(super) fn told(&self) -> Told {
        Told {
            healthy: self.is_healthy(),
            open: !self.is_draining() && self.endpoint_state() == EndpointState::Ready,
        }
    }

    pub(super) fn new(
        name: String,
        addr: String,
        client: Client,
        auth: Option<MetadataValue<Ascii>>,
        discovered: bool,
        counters: &Arc<MediaCounters>,
    ) -> Manager {
        Manager {
            name,
            addr,
            client,
            auth,
            // optimistic until the first check says otherwise
            healthy: AtomicBool::new(true),
            draining: AtomicBool::new(false),
            discovered,
            endpoint: AtomicU8::new(EndpointState::Ready.as_u8()),
            moving: AtomicBool::new(false),
            failed_checks: std::sync::atomic::AtomicU32::new(0),
            last_health: Mutex::new(None),
            counters: Arc::clone(counters),
        }
    }

    pub fn is_local(&self) -> bool {
        matches!(self.client, Client::Local(_))
    }

    pub async fn create_session(
        &self,
        req: pb::CreateSessionRequest,
    ) -> Result<pb::CreateSessionResponse, Status> {
        rpc!(self, create_session, req)
    }

    pub async fn update_session(
        &self,
        req: pb::UpdateSessionRequest,
    ) -> Result<pb::UpdateSessionResponse, Status> {
        rpc!(self, update_session, req)
    }

    pub async fn create_offer(
        &self,
        req: pb::CreateOfferRequest,
    ) -> Result<pb::CreateOfferResponse, Status> {
        rpc!(self, create_offer, req)
    }

    pub async fn bridge(&self, a: &str, b: &str) -> Result<(), Status> {
        let req = pb::BridgeRequest {
            session_a: a.to_owned(),
            session_b: b.to_owned(),
        };
        rpc!(self, bridge, req).map(|_| ())
    }

    pub async fn echo(&self, session: &str) -> Result<(), Status> {
        let req = pb::EchoRequest {
            session_id: session.to_owned(),
        };
        rpc!(self, echo, req).map(|_| ())
    }

    pub async fn play(
        &self,
        session: &str,
        files: Vec<String>,
        repeat: u32,
    ) -> Result<BoxStream<pb::PlaybackEvent>, Status> {
        let req = pb::PlayRequest {
            session_id: session.to_owned(),
            files,
            repeat,
        };
        rpc_stream!(self, play, req)
    }

    pub async fn stop_playback(&self, session: &str) -> Result<bool, Status> {
        let req = pb::StopPlaybackRequest {
            session_id: session.to_owned(),
        };
        rpc!(self, stop_playback, req).map(|r| r.stopped)
    }

    pub async fn record(&self, session: &str, file: &str, both: bool) -> Result<String, Status> {
        let req = pb::RecordRequest {
            session_id: session.to_owned(),
            file: file.to_owned(),
            both_sides: both,
        };
        rpc!(self, record, req).map(|r| r.path)
    }

    pub async fn stop_recording(&self, session: &str) -> Result<pb::StopRecordingResponse, Status> {
        let req = pb::StopRecordingRequest {
            session_id: session.to_owned(),
        };
        rpc!(self, stop_recording, req)
    }

    pub async fn watch_events(&self, session: &str) -> Result<BoxStream<pb::SessionEvent>, Status> {
        let req = pb::WatchEventsRequest {
            session_id: session.to_owned(),
        };
        rpc_stream!(self, watch_events, req)
    }

    /// Ends a session and returns its final counters. When the manager
    /// cannot be reached, the destroy goes on in the background with
    /// back-off for up to [`DESTROY_RETRY_FOR`] (counted in /metrics); the
    /// first attempt's error is returned all the same.
    pub async fn destroy(&self, session: &str) -> Result<pb::SessionInfo, Status> {
        let r = self.observe(destroy_once(&self.client, self.auth.as_ref(), session).await);
        if let Err(e) = &r
            && worth_retrying(e)
        {
            self.retry_destroy(session, e);
        }
        r
    }

    pub(super) fn retry_destroy(&self, session: &str, first: &Status) {
        let counters = Arc::clone(&self.counters);
        if counters.destroy_pending.fetch_add(1, Ordering::Relaxed) >= MAX_DESTROY_RETRIES {
            counters.destroy_pending.fetch_sub(1, Ordering::Relaxed);
            counters.destroy_abandoned.fetch_add(1, Ordering::Relaxed);
            warn!(manager = %self.name, session, cause = %first, "destroy failed; too many retries pending, left to the manager's expiry");
            return;
        }
        warn!(manager = %self.name, session, cause = %first, "destroy failed; retrying in the background");
        let client = self.client.clone();
        let auth = self.auth.clone();
        let (name, session) = (self.name.clone(), session.to_owned());
        tokio::spawn(async move {
            let done = retry_until(
                DESTROY_RETRY_FOR,
                DESTROY_BACKOFF_MIN,
                DESTROY_BACKOFF_MAX,
                || {
                    counters.destroy_retries.fetch_add(1, Ordering::Relaxed);
                    destroy_once(&client, auth.as_ref(), &session)
                },
                |r| match r {
                    Ok(_) => true,
                    // gone already (a retry after a lost reply, or expiry)
                    Err(e) => !worth_retrying(e),
                },
            )
            .await;
            counters.destroy_pending.fetch_sub(1, Ordering::Relaxed);
            match done {
                Some(_) => info!(manager = %name, %session, "destroy succeeded on retry"),
                None => {
                    counters.destroy_abandoned.fetch_add(1, Ordering::Relaxed);
                    warn!(manager = %name, %session, "destroy given up; left to the manager's expiry");
                }
            }
        });
    }

    pub async fn list_sessions(&self) -> Result<Vec<pb::SessionInfo>, Status> {
        rpc!(self, list_sessions, pb::ListSessionsRequest {}).map(|r| r.sessions)
    }

    pub async fn health(&self) -> Result<pb::HealthResponse, Status> {
        rpc!(self, health, pb::HealthRequest {})
    }

    pub async fn set_draining(&self, draining: bool) -> Result<pb::HealthResponse, Status> {
        let r = rpc!(self, set_draining, pb::SetDrainingRequest { draining });
        if let Ok(h) = &r {
            self.draining.store(h.draining, Ordering::Relaxed);
        }
        r
    }

    /// One health check: reachable (and whether it drains) or not. True
    /// when this check made the member lost ([`LOST_AFTER`] failures in a
    /// row).
    pub(super) async fn check(&self) -> bool {
        match self.health().await {
            Ok(h) => {
                self.draining.store(h.draining, Ordering::Relaxed);
                self.failed_checks.store(0, Ordering::Relaxed);
                *self.last_health.lock().unwrap_or_else(|e| e.into_inner()) = Some(h);
                if !self.healthy.swap(true, Ordering::Relaxed) {
                    info!(manager = %self.name, "RTP manager is back");
                }
                false
            }
            Err(e) => {
                if self.healthy.swap(false, Ordering::Relaxed) {
                    warn!(manager = %self.name, cause = %e, "RTP manager failed its health check");
                }
                let n = self.failed_checks.fetch_add(1, Ordering::Relaxed) + 1;
                if n == LOST_AFTER {
                    warn!(manager = %self.name, checks = n, "RTP manager lost; its calls move or end");
                }
                n == LOST_AFTER
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_parse_with_or_without_a_name() {
        let ok = [
            ("127.0.0.1:9090", ("127.0.0.1:9090", "127.0.0.1:9090")),
            ("rtp0=127.0.0.1:9090", ("rtp0", "127.0.0.1:9090")),
            (
                " rtp1 = rtpmanager-1.rtpmanager:9091 ",
                ("rtp1", "rtpmanager-1.rtpmanager:9091"),
            ),
            ("v6=[::1]:9090", ("v6", "[::1]:9090")),
        ];
        for (s, (n, a)) in ok {
            assert_eq!(
                parse_member(s).unwrap(),
                (n.to_owned(), a.to_owned()),
                "{s}"
            );
        }
        for bad in [
            "",
            "rtp0=",
            "127.0.0.1",
            "=1.2.3.4:5",
            "a/b=1.2.3.4:5",
            "x=:9090",
        ] {
            assert!(parse_member(bad).is_err(), "{bad:?}");
        }
    }
}
