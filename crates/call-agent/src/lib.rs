//! `switchboard-call`: the outbound call agent. It registers when it has
//! credentials, calls the destination, waits for the answer up to the
//! timeout, waits `pre_delay` and then for `wait_for_silence` seconds of
//! remote silence, plays the text (TTS) or WAV `repeat` times with
//! `inter_delay` between, hangs up after `post_delay`, records what the far
//! end said, transcribes it, and reports everything as one JSON line.
//!
//! Modules: [`config`] (env and flags), [`call`] (SIP), [`media`] (RTP and
//! SRTP), [`ice`] (ICE when asked), [`audio`] (TTS, WAV, silence, transcription), [`report`].
//! `switchboard-operator` runs it as a Kubernetes Job; it runs as well from
//! a shell or a cron job.

#![cfg_attr(test, allow(clippy::unwrap_used))]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub mod audio;
pub mod call;
pub mod config;
pub mod ice;
pub mod media;
pub mod report;

use call::{Failed, Sip, secs};
use config::{Settings, SrtpMode};
use report::{Outcome, Played, Report};
use tokio_util::sync::CancellationToken;

/// The longest wait for remote silence beyond `wait_for_silence` itself:
/// a far end that never stops talking still hears the message.
pub const SILENCE_WAIT_CAP: Duration = Duration::from_secs(30);

/// Places the call the settings describe and reports it. Never panics on
/// what the network does; every failure is an outcome in the report.
pub async fn run(s: &Settings) -> Report {
    run_until(s, CancellationToken::new()).await
}

/// [`run`], cut short by `stop` (SIGTERM: the Job deleted): an answered
/// call is hung up with a BYE and reported with what was played so far.
pub async fn run_until(s: &Settings, stop: CancellationToken) -> Report {
    let mut report = Report::new(&s.dest);
    let scratch = scratch_dir();
    let outcome = match place(s, &mut report, &scratch, &stop).await {
        Ok(()) => Outcome::Answered,
        Err(f) => {
            report.errors.push(f.error);
            f.outcome
        }
    };
    report.finish(outcome);
    if let Some(rec) = &report.recording {
        let path = PathBuf::from(format!("{rec}.json"));
        if let Err(e) = std::fs::write(&path, report.to_line()) {
            report.errors.push(format!("{}: {e}", path.display()));
        }
    }
    let _ = std::fs::remove_dir_all(&scratch);
    report
}

fn scratch_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "switchboard-call-{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    ));
    let _ = std::fs::create_dir_all(&dir);
    dir
}

async fn place(
    s: &Settings,
    report: &mut Report,
    scratch: &Path,
    stop: &CancellationToken,
) -> Result<(), Failed> {
    // the prompt first: a missing voice or file is known before a phone rings
    let prompt = audio::prompt(s, scratch).await.map_err(|e| Failed {
        outcome: Outcome::Configuration,
        error: e.0,
    })?;
    let mut sip = Sip::open(s).await?;
    report.transport = Some(s.transport.via_token());
    let keepalive = sip.keepalive(s.keepalive);
    sip.register(s, report, 300).await?;
    let result = talk(s, report, &mut sip, prompt, scratch, stop).await;
    if report.registered == Some(true) {
        let _ = sip.register(s, &mut Report::new(&s.dest), 0).await;
    }
    if let Some(k) = keepalive {
        k.abort();
    }
    sip.ua.close();
    result
}

async fn talk(
    s: &Settings,
    report: &mut Report,
    sip: &mut Sip,
    prompt: audio::Prompt,
    scratch: &Path,
    stop: &CancellationToken,
) -> Result<(), Failed> {
    let local = match &s.turn {
        Some(t) => media::Local::relayed(sip.local_ip, t)
            .await
            .map_err(|e| Failed {
                outcome: Outcome::Network,
                error: format!("SIP_TURN_SERVER {}: {e}", t.server),
            })?,
        None => {
            let advertise = match s.public_address {
                Some(ip) => ip,
                None => stun_address(s, sip).await.unwrap_or(sip.local_ip),
            };
            media::Local::udp(sip.local_ip, advertise)
                .await
                .map_err(|e| Failed {
                    outcome: Outcome::Network,
                    error: format!("binding the RTP socket: {e}"),
                })?
        }
    };
    report.media.turn_relay = local
        .relayed_by_turn()
        .then(|| local.advertised.to_string());
    // ICE: the agent's candidates beside the plain socket, the default
    // candidate (see `ice`); a gathering that fails leaves a plain offer
    let ice = if s.ice {
        match ice::Ice::gather(s, sip.local_ip).await {
            Ok(i) => Some(i),
            Err(e) => {
                report.errors.push(format!(
                    "warning: SIP_ICE_ENABLED: {e}; offering without ICE"
                ));
                None
            }
        }
    } else {
        None
    };
    let ice_lines = ice
        .as_ref()
        .map(|i| i.sdp_lines(&ice::default_candidate(&local, sip.local_ip)))
        .unwrap_or_default();
    let make_offer = |srtp: bool| {
        let mut o = media::offer(&local, srtp);
        o.sdp.push_str(&ice_lines);
        o
    };
    let mut offer = make_offer(s.srtp != SrtpMode::Disabled);
    let (mut dialog, ok) = match sip.invite(s, &offer.sdp, report, stop).await {
        Err(f) if s.srtp == SrtpMode::Optional && report.sip_code == Some(488) => {
            report.errors.push(format!(
                "the far end refused SRTP ({}); calling again with plain RTP",
                f.error
            ));
            offer = make_offer(false);
            sip.invite(s, &offer.sdp, report, stop).await?
        }
        Err(f) if s.srtp == SrtpMode::Mandatory && report.sip_code == Some(488) => {
            return Err(Failed {
                outcome: Outcome::Rejected,
                error: format!(
                    "SIP_SRTP mandatory and the far end does not take SRTP: {}",
                    f.error
                ),
            });
        }
        other => other?,
    };
    report.answered = true;
    let answered = Instant::now();
    let mut agreed = match media::agree(&offer, &ok.body) {
        Ok(a) => a,
        Err(e) => {
            sip.bye(&mut dialog).await;
            report.hangup_by = Some("us");
            return Err(Failed {
                outcome: Outcome::Rejected,
                error: format!("answered with unusable media: {e}"),
            });
        }
    };
    // an answer with ICE: the media goes over the pair the checks select;
    // without: the plain stream from the default candidate's socket
    let mut sock = Arc::clone(&offer.sock);
    let mut ice_pair = None;
    let ice = match ice {
        Some(i) if answers_ice(&ok.body) => {
            let transport = switchboard_sip::sdp::parse(&ok.body)
                .map(|d| d.webrtc)
                .unwrap_or_default();
            // the far end's requests are answered during the checks
            let checked = {
                let checks = i.connect(&transport);
                tokio::pin!(checks);
                loop {
                    tokio::select! {
                        r = &mut checks => break Some(r),
                        bye = sip.serve_until(&mut dialog, tokio::time::Instant::now() + Duration::from_millis(200)) => {
                            if bye { break None; }
                        }
                    }
                }
            };
            match checked {
                Some(Ok(c)) => {
                    agreed.remote = c.sock.remote_addr().unwrap_or(agreed.remote);
                    agreed.connected = true;
                    sock = c.sock;
                    ice_pair = Some(c.pair);
                    // the plain relay carries nothing; the pair's may
                    report.media.turn_relay = c.relay.map(|r| r.to_string());
                    Some(i)
                }
                Some(Err(e)) => {
                    i.close().await;
                    sip.bye(&mut dialog).await;
                    report.hangup_by = Some("us");
                    return Err(Failed {
                        outcome: Outcome::Network,
                        error: format!("ICE failed: {e}"),
                    });
                }
                None => {
                    i.close().await;
                    report.hangup_by = Some("remote");
                    return Err(Failed {
                        outcome: Outcome::Network,
                        error: "ICE: the far end hung up during the connectivity checks".into(),
                    });
                }
            }
        }
        Some(i) => {
            i.close().await;
            None
        }
        None => None,
    };
    let mut stream = media::Stream::start(sock, agreed);
    let samples = Arc::new(prompt.samples);
    // the script: pre-delay, silence, the prompt `repeat` times,
    // post-delay; true when the far end hung up
    let script = async {
        if sip
            .serve_until(&mut dialog, tokio::time::Instant::now() + s.pre_delay)
            .await
        {
            return true;
        }
        if let Some(quiet) = s.wait_for_silence {
            let give_up = tokio::time::Instant::now() + quiet + SILENCE_WAIT_CAP;
            let mut found = false;
            while tokio::time::Instant::now() < give_up {
                // silence counts once audio arrives (a far end that sends
                // nothing is silent from the start)
                if stream.quiet_for() >= quiet
                    || (stream.received() == 0 && answered.elapsed() >= quiet)
                {
                    found = true;
                    break;
                }
                if sip
                    .serve_until(
                        &mut dialog,
                        tokio::time::Instant::now() + Duration::from_millis(100),
                    )
                    .await
                {
                    return true;
                }
            }
            report.silence_detected = Some(found);
        }
        for i in 0..s.repeat {
            if i > 0
                && sip
                    .serve_until(&mut dialog, tokio::time::Instant::now() + s.inter_delay)
                    .await
            {
                return true;
            }
            let started = Instant::now();
            let playing = stream.play(Arc::clone(&samples));
            tokio::pin!(playing);
            let hung_up = loop {
                tokio::select! {
                    () = &mut playing => break false,
                    bye = sip.serve_until(&mut dialog, tokio::time::Instant::now() + Duration::from_millis(200)) => {
                        if bye { break true; }
                    }
                }
            };
            report.played.push(Played {
                kind: prompt.kind,
                what: prompt.what.clone(),
                seconds: secs(started.elapsed()),
            });
            if hung_up {
                return true;
            }
        }
        sip.serve_until(&mut dialog, tokio::time::Instant::now() + s.post_delay)
            .await
    };
    let remote_hung_up = tokio::select! {
        bye = script => bye,
        () = stop.cancelled() => {
            report.errors.push("stopped (SIGTERM or Ctrl-C): the call was hung up early".into());
            false
        }
    };
    if remote_hung_up {
        report.hangup_by = Some("remote");
    } else {
        sip.bye(&mut dialog).await;
        report.hangup_by = Some("us");
    }
    report.talk_seconds = secs(answered.elapsed());
    let (heard, stats) = stream.stop();
    let relay = report.media.turn_relay.take();
    report.media = stats;
    report.media.turn_relay = relay;
    report.media.ice = ice_pair;
    if let Some(i) = ice {
        i.close().await;
    }
    drop(local);
    if let Some(path) = &s.record {
        keep_recording(s, report, path, &heard, scratch).await;
    }
    Ok(())
}

/// Whether an answer does ICE: it has `a=ice-ufrag` and `a=ice-pwd`.
fn answers_ice(answer: &[u8]) -> bool {
    switchboard_sip::sdp::parse(answer)
        .is_ok_and(|d| d.webrtc.ice_ufrag.is_some() && d.webrtc.ice_pwd.is_some())
}

/// Writes the recording and, when asked, its transcript into the report.
async fn keep_recording(
    s: &Settings,
    report: &mut Report,
    path: &Path,
    heard: &[i16],
    scratch: &Path,
) {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        let _ = std::fs::create_dir_all(dir);
    }
    if let Err(e) = audio::write_wav(path, 8000, heard) {
        report
            .errors
            .push(format!("recording {}: {e}", path.display()));
        return;
    }
    report.recording = Some(path.display().to_string());
    if s.transcribe {
        match audio::transcribe(s, path, scratch).await {
            Ok((text, engine)) => {
                report.transcript = Some(text);
                report.transcript_engine = Some(engine);
            }
            Err(e) => report.errors.push(format!("transcription: {e}")),
        }
    }
}

/// Our public address from the first STUN server that answers (RFC 5389
/// binding request from the RTP side's address family), if any is set.
async fn stun_address(s: &Settings, sip: &Sip) -> Option<std::net::IpAddr> {
    for server in &s.stun_servers {
        match stun_binding(server, sip.local_ip).await {
            Ok(ip) => return Some(ip),
            Err(e) => tracing::warn!(%server, cause = %e, "STUN server did not answer"),
        }
    }
    None
}

async fn stun_binding(server: &str, local: std::net::IpAddr) -> Result<std::net::IpAddr, String> {
    use stun::agent::TransactionId;
    use stun::message::{BINDING_REQUEST, Getter, Message};
    use stun::xoraddr::XorMappedAddress;
    let addr = tokio::net::lookup_host(server)
        .await
        .map_err(|e| e.to_string())?
        .find(|a| a.is_ipv4() == local.is_ipv4())
        .ok_or("no address of our family")?;
    let sock = tokio::net::UdpSocket::bind((local, 0))
        .await
        .map_err(|e| e.to_string())?;
    let mut m = Message::new();
    m.build(&[Box::new(TransactionId::new()), Box::new(BINDING_REQUEST)])
        .map_err(|e| e.to_string())?;
    let mut buf = [0u8; 1500];
    for _ in 0..3 {
        sock.send_to(&m.raw, addr)
            .await
            .map_err(|e| e.to_string())?;
        if let Ok(Ok((n, _))) =
            tokio::time::timeout(Duration::from_millis(500), sock.recv_from(&mut buf)).await
        {
            let mut r = Message::new();
            r.raw = buf[..n].to_vec();
            r.decode().map_err(|e| e.to_string())?;
            let mut x = XorMappedAddress::default();
            x.get_from(&r).map_err(|e| e.to_string())?;
            return Ok(x.ip);
        }
    }
    Err("no answer".into())
}
