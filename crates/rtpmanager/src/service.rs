//! The gRPC face of the engine: `switchboard.rtpmanager.v1.RtpManager`.
//!
//! Thin by design: each call converts its request, calls the [`Engine`]
//! and maps [`EngineError`] onto a status code (the table is in the proto
//! file's header). Signaling's embedded mode calls this same service
//! in-process, so both modes share one code path.

use std::pin::Pin;

use switchboard_rtpmanager_api::v1::{self as pb, playback_event, session_event};
use switchboard_sip::sdp::Direction;
use tokio::sync::broadcast::error::RecvError;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::codec::AudioCodec;
use crate::engine::{self, Engine, EngineError, EventKind, PlaybackKind, SrtpPolicy};

/// A server-streamed reply.
pub type EventStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// The `RtpManager` gRPC service over one engine.
#[derive(Clone)]
pub struct Service {
    engine: Engine,
}

impl Service {
    pub fn new(engine: Engine) -> Service {
        Service { engine }
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }
}

impl From<EngineError> for Status {
    fn from(e: EngineError) -> Status {
        let msg = e.to_string();
        match e {
            EngineError::NotFound(_) => Status::not_found(msg),
            EngineError::InvalidArgument(_) => Status::invalid_argument(msg),
            EngineError::Exhausted(_) | EngineError::Limit(_) => Status::resource_exhausted(msg),
            EngineError::Draining => Status::unavailable(msg),
            EngineError::Precondition(_) => Status::failed_precondition(msg),
            EngineError::Internal(_) => Status::internal(msg),
        }
    }
}

fn codec(c: Option<(u8, AudioCodec)>) -> Option<pb::Codec> {
    c.map(|(pt, codec)| pb::Codec {
        payload_type: u32::from(pt),
        name: codec.name().to_string(),
        clock_rate: codec.clock_rate(),
    })
}

fn required<'a>(field: &str, value: &'a str) -> Result<&'a str, Status> {
    if value.is_empty() {
        Err(Status::invalid_argument(format!("{field}: required")))
    } else {
        Ok(value)
    }
}

fn direction(d: i32) -> Result<Direction, Status> {
    match pb::Direction::try_from(d) {
        Ok(pb::Direction::Unspecified | pb::Direction::Sendrecv) => Ok(Direction::SendRecv),
        Ok(pb::Direction::Sendonly) => Ok(Direction::SendOnly),
        Ok(pb::Direction::Recvonly) => Ok(Direction::RecvOnly),
        Ok(pb::Direction::Inactive) => Ok(Direction::Inactive),
        Err(_) => Err(Status::invalid_argument(format!(
            "direction: unknown value {d}"
        ))),
    }
}

pub fn session_info(i: engine::SessionInfo) -> pb::SessionInfo {
    pb::SessionInfo {
        session_id: i.session_id,
        call_id: i.call_id,
        leg: i.leg,
        local_address: i.local_address.to_string(),
        remote_address: i.remote_address.map(|a| a.to_string()).unwrap_or_default(),
        codec: codec(i.codec),
        bridged_to: i.bridged_to.unwrap_or_default(),
        packets_received: i.packets_received,
        packets_sent: i.packets_sent,
        packets_lost: i.packets_lost,
        jitter_ms: i.jitter_ms,
        mos: i.mos,
        age_ms: i.age.as_millis() as u64,
    }
}

fn playback_event(e: &engine::PlaybackEvent) -> pb::PlaybackEvent {
    let kind = match e.kind {
        PlaybackKind::Started => playback_event::Kind::Started,
        PlaybackKind::Finished => playback_event::Kind::Finished,
        PlaybackKind::Interrupted => playback_event::Kind::Interrupted,
    };
    pb::PlaybackEvent {
        kind: kind as i32,
        playback_id: e.playback_id.to_string(),
        duration_ms: e.duration_ms,
    }
}

fn health(h: engine::Health) -> pb::HealthResponse {
    pb::HealthResponse {
        sessions: h.sessions as u32,
        free_port_pairs: h.free_port_pairs as u32,
        draining: h.draining,
        advertise_address: h
            .advertise
            .iter()
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
            .join(","),
        rtp_foreign_dropped: h.stats.foreign_dropped,
        sessions_expired: h.stats.sessions_expired,
        events_dropped: h.stats.events_dropped,
        recording_dropped: h.stats.recording_dropped,
        srtp_dropped: h.stats.srtp_dropped,
        ice_refused: h.stats.ice_refused,
        dtls_failed: h.stats.dtls_failed,
    }
}

fn session_event(ev: &engine::Event) -> pb::SessionEvent {
    let event = match &ev.kind {
        EventKind::Dtmf { digit, duration_ms } => session_event::Event::Dtmf(pb::Dtmf {
            digit: digit.to_string(),
            duration_ms: *duration_ms,
        }),
        EventKind::RtpTimeout { seconds } => {
            session_event::Event::RtpTimeout(pb::RtpTimeout { seconds: *seconds })
        }
        EventKind::Playback(p) => session_event::Event::Playback(playback_event(p)),
    };
    pb::SessionEvent {
        session_id: ev.session_id.to_string(),
        event: Some(event),
    }
}

#[tonic::async_trait]
impl pb::rtp_manager_server::RtpManager for Service {
    async fn create_session(
        &self,
        request: Request<pb::CreateSessionRequest>,
    ) -> Result<Response<pb::CreateSessionResponse>, Status> {
        let r = request.into_inner();
        let remote = (!r.remote_sdp.is_empty()).then_some(r.remote_sdp.as_bytes());
        let family = (!r.address_family.is_empty()).then_some(r.address_family.as_str());
        let srtp = match pb::SrtpPolicy::try_from(r.srtp) {
            Ok(pb::SrtpPolicy::Unspecified | pb::SrtpPolicy::Optional) => SrtpPolicy::Optional,
            Ok(pb::SrtpPolicy::Disabled) => SrtpPolicy::Disabled,
            Ok(pb::SrtpPolicy::Required) => SrtpPolicy::Required,
            Err(_) => {
                return Err(Status::invalid_argument(format!(
                    "srtp: {} is not an SrtpPolicy",
                    r.srtp
                )));
            }
        };
        let webrtc = match pb::Profile::try_from(r.profile) {
            Ok(pb::Profile::Unspecified | pb::Profile::Rtp) => false,
            Ok(pb::Profile::Webrtc) => true,
            Err(_) => {
                return Err(Status::invalid_argument(format!(
                    "profile: {} is not a Profile",
                    r.profile
                )));
            }
        };
        let c = self
            .engine
            .create_session(&r.call_id, &r.leg, remote, family, srtp, webrtc)
            .await?;
        Ok(Response::new(pb::CreateSessionResponse {
            session_id: c.session_id,
            local_sdp: c.local_sdp,
            offered: c
                .offered
                .into_iter()
                .map(|o| pb::Codec {
                    payload_type: u32::from(o.payload_type),
                    name: o.name,
                    clock_rate: o.clock_rate,
                })
                .collect(),
            chosen: codec(c.chosen),
            telephone_event_pt: c.telephone_event.map(u32::from).unwrap_or(0),
            local_address: c.local_address.to_string(),
        }))
    }

    async fn update_session(
        &self,
        request: Request<pb::UpdateSessionRequest>,
    ) -> Result<Response<pb::UpdateSessionResponse>, Status> {
        let r = request.into_inner();
        let id = required("session_id", &r.session_id)?;
        let sdp = required("remote_sdp", &r.remote_sdp)?;
        let u = self.engine.update_session(id, sdp.as_bytes(), r.is_offer)?;
        Ok(Response::new(pb::UpdateSessionResponse {
            local_sdp: u.local_sdp.unwrap_or_default(),
            chosen: codec(u.chosen),
            telephone_event_pt: u.telephone_event.map(u32::from).unwrap_or(0),
        }))
    }

    async fn create_offer(
        &self,
        request: Request<pb::CreateOfferRequest>,
    ) -> Result<Response<pb::CreateOfferResponse>, Status> {
        let r = request.into_inner();
        let id = required("session_id", &r.session_id)?;
        let sdp = self.engine.create_offer(id, direction(r.direction)?)?;
        Ok(Response::new(pb::CreateOfferResponse { local_sdp: sdp }))
    }

    async fn bridge(
        &self,
        request: Request<pb::BridgeRequest>,
    ) -> Result<Response<pb::BridgeResponse>, Status> {
        let r = request.into_inner();
        self.engine.bridge(
            required("session_a", &r.session_a)?,
            required("session_b", &r.session_b)?,
        )?;
        Ok(Response::new(pb::BridgeResponse {}))
    }

    async fn unbridge(
        &self,
        request: Request<pb::UnbridgeRequest>,
    ) -> Result<Response<pb::UnbridgeResponse>, Status> {
        let r = request.into_inner();
        self.engine.unbridge(
            required("session_a", &r.session_a)?,
            required("session_b", &r.session_b)?,
        )?;
        Ok(Response::new(pb::UnbridgeResponse {}))
    }

    type PlayStream = EventStream<pb::PlaybackEvent>;

    async fn play(
        &self,
        request: Request<pb::PlayRequest>,
    ) -> Result<Response<Self::PlayStream>, Status> {
        let r = request.into_inner();
        let id = required("session_id", &r.session_id)?;
        let (_, rx) = self.engine.play(id, &r.files, r.repeat).await?;
        let stream =
            tokio_stream::StreamExt::map(ReceiverStream::new(rx), |e| Ok(playback_event(&e)));
        Ok(Response::new(Box::pin(stream)))
    }

    async fn stop_playback(
        &self,
        request: Request<pb::StopPlaybackRequest>,
    ) -> Result<Response<pb::StopPlaybackResponse>, Status> {
        let r = request.into_inner();
        let stopped = self
            .engine
            .stop_playback(required("session_id", &r.session_id)?)?;
        Ok(Response::new(pb::StopPlaybackResponse { stopped }))
    }

    async fn echo(
        &self,
        request: Request<pb::EchoRequest>,
    ) -> Result<Response<pb::EchoResponse>, Status> {
        let r = request.into_inner();
        self.engine.echo(required("session_id", &r.session_id)?)?;
        Ok(Response::new(pb::EchoResponse {}))
    }

    async fn record(
        &self,
        request: Request<pb::RecordRequest>,
    ) -> Result<Response<pb::RecordResponse>, Status> {
        let r = request.into_inner();
        let path = self
            .engine
            .record(
                required("session_id", &r.session_id)?,
                required("file", &r.file)?,
                r.both_sides,
            )
            .await?;
        Ok(Response::new(pb::RecordResponse {
            path: path.display().to_string(),
        }))
    }

    async fn stop_recording(
        &self,
        request: Request<pb::StopRecordingRequest>,
    ) -> Result<Response<pb::StopRecordingResponse>, Status> {
        let r = request.into_inner();
        let done = self
            .engine
            .stop_recording(required("session_id", &r.session_id)?)
            .await?;
        let (path, samples) = done
            .map(|(p, n)| (p.display().to_string(), n))
            .unwrap_or_default();
        Ok(Response::new(pb::StopRecordingResponse { path, samples }))
    }

    type WatchEventsStream = EventStream<pb::SessionEvent>;

    async fn watch_events(
        &self,
        request: Request<pb::WatchEventsRequest>,
    ) -> Result<Response<Self::WatchEventsStream>, Status> {
        let r = request.into_inner();
        if !r.session_id.is_empty() {
            // one session: its own bounded queue, ended with the session
            let rx = self.engine.watch(&r.session_id)?;
            let stream =
                tokio_stream::StreamExt::map(ReceiverStream::new(rx), |ev| Ok(session_event(&ev)));
            return Ok(Response::new(Box::pin(stream)));
        }
        // every session: the engine's broadcast, which loses the oldest
        // events of a reader that is behind (reported as DATA_LOSS)
        let mut rx = self.engine.subscribe();
        let (tx, out) = tokio::sync::mpsc::channel(64);
        let engine = self.engine.clone();
        tokio::spawn(async move {
            loop {
                let ev = tokio::select! {
                    ev = rx.recv() => ev,
                    _ = tx.closed() => return,
                    // the stream ends with the engine, so a stopping gRPC
                    // server is not kept waiting for it
                    _ = engine.stopped() => return,
                };
                let msg = match ev {
                    Ok(ev) => Ok(session_event(&ev)),
                    Err(RecvError::Lagged(n)) => {
                        Err(Status::data_loss(format!("{n} events dropped")))
                    }
                    Err(RecvError::Closed) => return,
                };
                if tx.send(msg).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(out))))
    }

    async fn get_session(
        &self,
        request: Request<pb::GetSessionRequest>,
    ) -> Result<Response<pb::SessionInfo>, Status> {
        let r = request.into_inner();
        let info = self.engine.info(required("session_id", &r.session_id)?)?;
        Ok(Response::new(session_info(info)))
    }

    async fn list_sessions(
        &self,
        _request: Request<pb::ListSessionsRequest>,
    ) -> Result<Response<pb::ListSessionsResponse>, Status> {
        let sessions = self.engine.list().into_iter().map(session_info).collect();
        Ok(Response::new(pb::ListSessionsResponse { sessions }))
    }

    async fn destroy_session(
        &self,
        request: Request<pb::DestroySessionRequest>,
    ) -> Result<Response<pb::SessionInfo>, Status> {
        let r = request.into_inner();
        let info = self
            .engine
            .destroy(required("session_id", &r.session_id)?)?;
        Ok(Response::new(session_info(info)))
    }

    async fn health(
        &self,
        _request: Request<pb::HealthRequest>,
    ) -> Result<Response<pb::HealthResponse>, Status> {
        Ok(Response::new(health(self.engine.health())))
    }

    async fn set_draining(
        &self,
        request: Request<pb::SetDrainingRequest>,
    ) -> Result<Response<pb::HealthResponse>, Status> {
        let r = request.into_inner();
        Ok(Response::new(health(self.engine.set_draining(r.draining))))
    }
}
