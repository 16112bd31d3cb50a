//! `relay-bench`: N bridged calls through an RTP relay, each with two legs
//! sending 50 packets/s (20 ms PCMU), for a fixed time; prints one JSON
//! line with what came back: packets sent and received, loss, and the
//! one-way latency through the relay (p50/p99/max).
//!
//! The relay is either switchboard-rtpmanager (sessions over gRPC) or
//! rtpengine (its ng control protocol over UDP). All legs of one side
//! send from, and receive on, one socket of this tool: a relay latches
//! each session to where its packets come from, so calls need no socket
//! of their own, and two sockets keep this generator's own cost low
//! (one receive syscall per packet, no polling of thousands of sockets).
//!
//! Every packet carries its send time and call index; latency is measured
//! on this machine's monotonic clock, so it includes loopback delivery
//! (a few µs), which makes it an upper bound of the relay's added latency.

#![cfg_attr(test, allow(clippy::unwrap_used))]

use std::collections::HashMap;
use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use clap::Parser;
use switchboard_media::rtp_header::{RtpView, write_header};
use switchboard_rtpmanager::srtp::{LegSrtp, our_crypto};
use switchboard_rtpmanager_api::RtpManagerClient;
use switchboard_rtpmanager_api::v1 as pb;
use switchboard_sip::sdp::crypto::{self, Crypto, Suite};

#[derive(Parser, Debug)]
#[command(about = "RTP relay load: N bridged calls, 2 legs × 50 packets/s")]
struct Args {
    /// `switchboard` (gRPC) or `rtpengine` (ng protocol).
    #[arg(long)]
    target: String,
    /// Control address: the manager's gRPC or rtpengine's ng port.
    #[arg(long)]
    control: SocketAddr,
    /// Concurrent bridged calls.
    #[arg(long)]
    calls: usize,
    /// Seconds measured (after the warm-up).
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Seconds sent but not counted first.
    #[arg(long, default_value_t = 2)]
    warmup: u64,
    /// switchboard only: leg A of every call is SRTP (RTP/SAVP with
    /// AES_CM_128_HMAC_SHA1_80 keys given by SDES), leg B plain RTP, so the
    /// relay decrypts every packet from A and encrypts every packet to A.
    #[arg(long)]
    srtp: bool,
}

const PTIME: Duration = Duration::from_millis(20);
const PAYLOAD: usize = 160;

/// One call as the generator sees it: where each leg sends to.
struct Call {
    /// The relay's address for leg A's packets (they come out towards B).
    to_from_a: SocketAddr,
    to_from_b: SocketAddr,
}

fn sdp(port: u16, session: usize) -> String {
    sdp_with(port, session, None)
}

/// An offer, `RTP/SAVP` with `crypto` when given.
fn sdp_with(port: u16, session: usize, crypto: Option<&Crypto>) -> String {
    let (profile, line) = match crypto {
        Some(c) => ("RTP/SAVP", format!("a=crypto:{}\r\n", crypto::format(c))),
        None => ("RTP/AVP", String::new()),
    };
    format!(
        "v=0\r\no=bench {session} 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {port} {profile} 0\r\na=rtpmap:0 PCMU/8000\r\n{line}a=ptime:20\r\na=sendrecv\r\n"
    )
}

/// The generator's side of an SRTP leg A: our key as offered, the relay's
/// from its answer.
fn generator_srtp(ours: Crypto, answer: &str) -> Result<LegSrtp> {
    let line = answer
        .lines()
        .find_map(|l| l.strip_prefix("a=crypto:"))
        .ok_or_else(|| anyhow!("the relay answered RTP/SAVP without a=crypto: {answer}"))?;
    let theirs = crypto::parse(line.trim()).map_err(|e| anyhow!("a=crypto: {e}"))?;
    LegSrtp::new(ours, theirs).map_err(|e| anyhow!(e))
}

/// The audio address an SDP body names.
fn sdp_addr(sdp: &str) -> Result<SocketAddr> {
    let mut ip = None;
    let mut port = None;
    for line in sdp.lines() {
        if let Some(c) = line.strip_prefix("c=IN IP4 ") {
            ip = Some(c.trim().to_owned());
        }
        if let Some(m) = line.strip_prefix("m=audio ") {
            port = m.split_whitespace().next().map(str::to_owned);
        }
    }
    let (ip, port) = ip
        .zip(port)
        .ok_or_else(|| anyhow!("no address in SDP: {sdp}"))?;
    Ok(format!("{ip}:{port}").parse()?)
}

// --- switchboard-rtpmanager over gRPC ----------------------------------------

async fn setup_switchboard(
    control: SocketAddr,
    n: usize,
    a_port: u16,
    b_port: u16,
    srtp: bool,
) -> Result<(Vec<Call>, Vec<String>, Vec<LegSrtp>)> {
    let mut client = RtpManagerClient::connect(format!("http://{control}")).await?;
    let mut calls = Vec::with_capacity(n);
    let mut sessions = Vec::with_capacity(2 * n);
    let mut keys = Vec::new();
    for i in 0..n {
        let mut created = Vec::new();
        for (leg, port) in [("A", a_port), ("B", b_port)] {
            let ours = (srtp && leg == "A").then(|| our_crypto(1, Suite::AesCm128HmacSha1_80));
            let r = client
                .create_session(pb::CreateSessionRequest {
                    call_id: format!("bench-{i}"),
                    leg: leg.into(),
                    remote_sdp: sdp_with(port, i, ours.as_ref()),
                    address_family: String::new(),
                    ..Default::default()
                })
                .await
                .with_context(|| format!("create session {i}{leg}"))?
                .into_inner();
            if let Some(ours) = ours {
                keys.push(generator_srtp(ours, &r.local_sdp)?);
            }
            created.push(r);
        }
        client
            .bridge(pb::BridgeRequest {
                session_a: created[0].session_id.clone(),
                session_b: created[1].session_id.clone(),
            })
            .await?;
        calls.push(Call {
            to_from_a: sdp_addr(&created[0].local_sdp)?,
            to_from_b: sdp_addr(&created[1].local_sdp)?,
        });
        sessions.extend(created.into_iter().map(|c| c.session_id));
    }
    Ok((calls, sessions, keys))
}

async fn teardown_switchboard(control: SocketAddr, sessions: Vec<String>) -> Result<()> {
    let mut client = RtpManagerClient::connect(format!("http://{control}")).await?;
    for s in sessions {
        client
            .destroy_session(pb::DestroySessionRequest { session_id: s })
            .await?;
    }
    Ok(())
}

// --- rtpengine over the ng protocol ------------------------------------------

/// Bencode of a flat string dictionary (what the ng commands need).
fn bencode(pairs: &[(&str, &str)]) -> Vec<u8> {
    let mut sorted: Vec<&(&str, &str)> = pairs.iter().collect();
    sorted.sort_by_key(|(k, _)| *k);
    let mut out = b"d".to_vec();
    for (k, v) in sorted {
        out.extend_from_slice(format!("{}:{k}{}:", k.len(), v.len()).as_bytes());
        out.extend_from_slice(v.as_bytes());
    }
    out.push(b'e');
    out
}

/// The string value of `key` in a bencoded dictionary (flat lookup).
fn bdecode_str(msg: &[u8], key: &str) -> Option<String> {
    let needle = format!("{}:{key}", key.len());
    let at = msg
        .windows(needle.len())
        .position(|w| w == needle.as_bytes())?
        + needle.len();
    let rest = &msg[at..];
    let colon = rest.iter().position(|b| *b == b':')?;
    let len: usize = std::str::from_utf8(&rest[..colon]).ok()?.parse().ok()?;
    let body = rest.get(colon + 1..colon + 1 + len)?;
    Some(String::from_utf8_lossy(body).into_owned())
}

/// One ng command. Cookies must be unique across runs: rtpengine answers a
/// repeated cookie from its cache (it takes it for a retransmission).
fn ng(sock: &UdpSocket, control: SocketAddr, n: usize, pairs: &[(&str, &str)]) -> Result<Vec<u8>> {
    let cookie = format!("{}_{n}", std::process::id());
    let mut msg = format!("{cookie} ").into_bytes();
    msg.extend_from_slice(&bencode(pairs));
    sock.send_to(&msg, control)?;
    let mut buf = vec![0u8; 65536];
    loop {
        let (n, _) = sock.recv_from(&mut buf).context("ng reply")?;
        let reply = &buf[..n];
        let prefix = format!("{cookie} ");
        if let Some(body) = reply.strip_prefix(prefix.as_bytes()) {
            if bdecode_str(body, "result").as_deref() != Some("ok") {
                bail!(
                    "ng {:?} failed: {}",
                    pairs.first(),
                    String::from_utf8_lossy(body)
                );
            }
            return Ok(body.to_vec());
        }
    }
}

fn setup_rtpengine(control: SocketAddr, n: usize, a_port: u16, b_port: u16) -> Result<Vec<Call>> {
    let sock = UdpSocket::bind("127.0.0.1:0")?;
    sock.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut calls = Vec::with_capacity(n);
    for i in 0..n {
        let call_id = format!("bench-{i}");
        let (ft, tt) = (format!("a{i}"), format!("b{i}"));
        let offer_sdp = sdp(a_port, i);
        let offer = ng(
            &sock,
            control,
            2 * i,
            &[
                ("command", "offer"),
                ("call-id", &call_id),
                ("from-tag", &ft),
                ("sdp", &offer_sdp),
            ],
        )?;
        // the offer as B gets it: where B sends
        let to_from_b = sdp_addr(&bdecode_str(&offer, "sdp").ok_or_else(|| anyhow!("no sdp"))?)?;
        let answer_sdp = sdp(b_port, i);
        let answer = ng(
            &sock,
            control,
            2 * i + 1,
            &[
                ("command", "answer"),
                ("call-id", &call_id),
                ("from-tag", &ft),
                ("to-tag", &tt),
                ("sdp", &answer_sdp),
            ],
        )?;
        let to_from_a = sdp_addr(&bdecode_str(&answer, "sdp").ok_or_else(|| anyhow!("no sdp"))?)?;
        calls.push(Call {
            to_from_a,
            to_from_b,
        });
    }
    Ok(calls)
}

fn teardown_rtpengine(control: SocketAddr, n: usize) -> Result<()> {
    let sock = UdpSocket::bind("127.0.0.1:0")?;
    sock.set_read_timeout(Some(Duration::from_secs(5)))?;
    for i in 0..n {
        let call_id = format!("bench-{i}");
        let ft = format!("a{i}");
        ng(
            &sock,
            control,
            1_000_000 + i,
            &[
                ("command", "delete"),
                ("call-id", &call_id),
                ("from-tag", &ft),
            ],
        )?;
    }
    Ok(())
}

// --- the load ------------------------------------------------------------------

struct Tally {
    sent: u64,
    received: u64,
    latencies_us: Vec<u32>,
}

/// A generator socket with deep buffers: it carries every call's packets
/// of one side, and a pause of this process must not drop them.
fn socket() -> Result<UdpSocket> {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None)?;
    s.set_recv_buffer_size(32 << 20)?;
    s.set_send_buffer_size(8 << 20)?;
    s.bind(&"127.0.0.1:0".parse::<SocketAddr>()?.into())?;
    s.set_nonblocking(true)?;
    Ok(s.into())
}

/// Sends every leg's packets on schedule (each leg at its own phase of the
/// 20 ms period, so the load is even) and receives what the relay sends.
/// With `srtp` (one context per call, for leg A), A's packets are sealed
/// before sending and what comes back to A is opened first (the call is
/// known by the relay address it came from).
fn run_load(
    calls: &[Call],
    a: &UdpSocket,
    b: &UdpSocket,
    warmup: Duration,
    measure: Duration,
    srtp: &mut [LegSrtp],
) -> Tally {
    let by_relay_addr: HashMap<SocketAddr, usize> = calls
        .iter()
        .enumerate()
        .map(|(i, c)| (c.to_from_a, i))
        .collect();
    let mut opened = Vec::with_capacity(2048);
    let legs = calls.len() * 2;
    let start = Instant::now();
    let counted_from = start + warmup;
    let stop_sending = counted_from + measure;
    // packets sent in the last 100 ms may still be in flight at the end
    let count_until = stop_sending - Duration::from_millis(100);
    let stop = stop_sending + Duration::from_millis(300);
    let step = PTIME.as_nanos() as u64 / legs.max(1) as u64;
    let mut next_leg = 0usize;
    let mut period = 0u64;
    let mut seqs = vec![0u16; legs];
    let mut tally = Tally {
        sent: 0,
        received: 0,
        latencies_us: Vec::with_capacity(legs * 50 * measure.as_secs() as usize + 1),
    };
    let mut pkt = Vec::with_capacity(12 + PAYLOAD);
    let mut buf = [0u8; 2048];
    loop {
        let now = Instant::now();
        if now >= stop {
            break;
        }
        // send what is due
        let mut sent_any = false;
        loop {
            let now = Instant::now();
            let due = start
                + Duration::from_nanos(period * PTIME.as_nanos() as u64 + step * next_leg as u64);
            if now >= stop_sending || due > now {
                break;
            }
            let call = next_leg / 2;
            let from_a = next_leg.is_multiple_of(2);
            let seq = seqs[next_leg];
            seqs[next_leg] = seq.wrapping_add(1);
            pkt.clear();
            write_header(
                &mut pkt,
                0,
                false,
                seq,
                u32::from(seq).wrapping_mul(160),
                next_leg as u32,
            );
            let sent_at = now.duration_since(start).as_nanos() as u64;
            pkt.extend_from_slice(&sent_at.to_be_bytes());
            pkt.extend_from_slice(&(call as u32).to_be_bytes());
            pkt.resize(12 + PAYLOAD, 0xff);
            if from_a && let Some(ctx) = srtp.get_mut(call) {
                ctx.protect_rtp(&mut pkt);
            }
            let (sock, to) = if from_a {
                (a, calls[call].to_from_a)
            } else {
                (b, calls[call].to_from_b)
            };
            if sock.send_to(&pkt, to).is_ok() && now >= counted_from && now < count_until {
                tally.sent += 1;
            }
            sent_any = true;
            next_leg += 1;
            if next_leg == legs {
                next_leg = 0;
                period += 1;
            }
        }
        // receive what is there
        let mut got_any = false;
        for (side_a, sock) in [(true, a), (false, b)] {
            loop {
                match sock.recv_from(&mut buf) {
                    Ok((n, from)) => {
                        got_any = true;
                        let at = Instant::now();
                        let mut packet = &buf[..n];
                        if side_a && !srtp.is_empty() {
                            let Some(ctx) = by_relay_addr.get(&from).and_then(|i| srtp.get_mut(*i))
                            else {
                                continue;
                            };
                            if !ctx.unprotect_rtp(packet, &mut opened) {
                                continue;
                            }
                            packet = &opened;
                        }
                        let Some(v) = RtpView::parse(packet) else {
                            continue;
                        };
                        let p = v.payload();
                        if p.len() < 12 {
                            continue;
                        }
                        let mut t = [0u8; 8];
                        t.copy_from_slice(&p[..8]);
                        let sent_ns = u64::from_be_bytes(t);
                        let sent_at = start + Duration::from_nanos(sent_ns);
                        if sent_at >= counted_from && sent_at < count_until {
                            tally.received += 1;
                            let us = at.saturating_duration_since(sent_at).as_micros();
                            tally.latencies_us.push(us.min(u128::from(u32::MAX)) as u32);
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(_) => break,
                }
            }
        }
        if !sent_any && !got_any {
            std::thread::sleep(Duration::from_micros(50));
        }
    }
    tally
}

fn percentile(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn main() -> Result<()> {
    let args = Args::parse();
    let a = socket()?;
    let b = socket()?;
    let (a_port, b_port) = (a.local_addr()?.port(), b.local_addr()?.port());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let setup_started = Instant::now();
    if args.srtp && args.target != "switchboard" {
        bail!("--srtp: switchboard only");
    }
    let (calls, sessions, mut keys) = match args.target.as_str() {
        "switchboard" => rt.block_on(setup_switchboard(
            args.control,
            args.calls,
            a_port,
            b_port,
            args.srtp,
        ))?,
        "rtpengine" => (
            setup_rtpengine(args.control, args.calls, a_port, b_port)?,
            Vec::new(),
            Vec::new(),
        ),
        other => bail!("--target: {other:?} is neither switchboard nor rtpengine"),
    };
    let setup_ms = setup_started.elapsed().as_millis();
    let mut tally = run_load(
        &calls,
        &a,
        &b,
        Duration::from_secs(args.warmup),
        Duration::from_secs(args.seconds),
        &mut keys,
    );
    match args.target.as_str() {
        "switchboard" => rt.block_on(teardown_switchboard(args.control, sessions))?,
        _ => teardown_rtpengine(args.control, args.calls)?,
    }
    tally.latencies_us.sort_unstable();
    let loss = if tally.sent == 0 {
        1.0
    } else {
        1.0 - (tally.received as f64 / tally.sent as f64)
    };
    let mut out = HashMap::new();
    out.insert("target", serde_json::json!(args.target));
    out.insert("srtp", serde_json::json!(args.srtp));
    out.insert("calls", serde_json::json!(args.calls));
    out.insert("seconds", serde_json::json!(args.seconds));
    out.insert("setup_ms", serde_json::json!(setup_ms));
    out.insert("sent", serde_json::json!(tally.sent));
    out.insert("received", serde_json::json!(tally.received));
    out.insert("loss", serde_json::json!(loss.max(0.0)));
    out.insert(
        "p50_us",
        serde_json::json!(percentile(&tally.latencies_us, 0.50)),
    );
    out.insert(
        "p99_us",
        serde_json::json!(percentile(&tally.latencies_us, 0.99)),
    );
    out.insert(
        "max_us",
        serde_json::json!(tally.latencies_us.last().copied().unwrap_or(0)),
    );
    println!(
        "{}",
        serde_json::Value::from_iter(out.into_iter().map(|(k, v)| (k.to_owned(), v)))
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bencode_round_trips_the_fields_ng_uses() {
        let msg = bencode(&[("command", "offer"), ("call-id", "c1"), ("sdp", "v=0\r\n")]);
        assert_eq!(
            msg,
            b"d7:call-id2:c17:command5:offer3:sdp5:v=0\r\ne".to_vec()
        );
        assert_eq!(bdecode_str(&msg, "sdp").as_deref(), Some("v=0\r\n"));
        assert_eq!(
            bdecode_str(b"d6:result2:oke", "result").as_deref(),
            Some("ok")
        );
        assert_eq!(bdecode_str(b"d6:result2:oke", "sdp"), None);
    }

    #[test]
    fn sdp_addresses_are_read_back() {
        assert_eq!(
            sdp_addr(&sdp(4000, 1)).unwrap(),
            "127.0.0.1:4000".parse::<SocketAddr>().unwrap()
        );
        assert!(sdp_addr("v=0\r\n").is_err());
    }
}
