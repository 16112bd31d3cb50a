//! `srtp-cost`: the CPU the RTP manager's SRTP adds per relayed packet,
//! measured on its own code (`switchboard_rtpmanager::srtp::LegSrtp`), next
//! to the plain relay's work on the same packet (parse, restamp, copy); no
//! sockets. Prints one JSON line: ns per packet for each, and the relay
//! capacity SRTP leaves relative to plain RTP given the plain relay's whole
//! cost per packet (syscalls included), `--plain-ns` (default: 13,750 ns,
//! README's bench table: 55 % of a core at 40,000 packets/s in).
//!
//! Two cases: an SRTP leg bridged to a plain one (each packet is either
//! decrypted or encrypted: one operation on average) and two SRTP legs
//! (each packet decrypted then encrypted).

use std::hint::black_box;
use std::time::Instant;

use anyhow::{Result, anyhow};
use clap::Parser;
use switchboard_media::rtp_header::{RtpView, write_header};
use switchboard_rtpmanager::srtp::{LegSrtp, our_crypto};
use switchboard_sip::sdp::crypto::Suite;

#[derive(Parser, Debug)]
#[command(about = "CPU per packet of SRTP against the plain relay path")]
struct Args {
    /// Packets per measurement.
    #[arg(long, default_value_t = 2_000_000)]
    packets: u32,
    /// The plain relay's whole cost per packet in ns (syscalls included).
    #[arg(long, default_value_t = 13_750.0)]
    plain_ns: f64,
    /// `80` or `32` (AES_CM_128_HMAC_SHA1_80 / _32).
    #[arg(long, default_value_t = 80)]
    tag: u32,
}

fn packet(seq: u16, ssrc: u32) -> Vec<u8> {
    let mut p = Vec::with_capacity(200);
    write_header(&mut p, 0, false, seq, u32::from(seq) * 160, ssrc);
    p.extend_from_slice(&[0x55; 160]);
    p
}

/// What the relay does to a plain packet besides the syscalls.
fn plain_path(n: u32) -> f64 {
    let mut out = Vec::with_capacity(200);
    let start = Instant::now();
    for i in 0..n {
        let p = packet(i as u16, 7);
        let v = RtpView::parse(black_box(&p)).map(|v| (v.sequence(), v.payload().len()));
        out.clear();
        write_header(&mut out, 0, false, i as u16, i * 160, 9);
        out.extend_from_slice(&p[12..]);
        black_box((&out, v));
    }
    start.elapsed().as_nanos() as f64 / f64::from(n)
}

fn main() -> Result<()> {
    let args = Args::parse();
    let suite = match args.tag {
        80 => Suite::AesCm128HmacSha1_80,
        32 => Suite::AesCm128HmacSha1_32,
        t => return Err(anyhow!("--tag {t}: 80 or 32")),
    };
    let n = args.packets;
    // the phone's side and the relay's side of one leg
    let (phone_key, relay_key) = (our_crypto(1, suite), our_crypto(1, suite));
    let mut phone = LegSrtp::new(phone_key.clone(), relay_key.clone()).map_err(|e| anyhow!(e))?;
    let mut relay = LegSrtp::new(relay_key, phone_key).map_err(|e| anyhow!(e))?;

    // sealed by the phone beforehand: only the relay's work is timed
    let sealed: Vec<Vec<u8>> = (0..n.min(65_000))
        .map(|i| {
            let mut p = packet(i as u16, 7);
            phone.protect_rtp(&mut p);
            p
        })
        .collect();
    let mut plain_out = Vec::with_capacity(200);
    let mut ok = 0u32;
    let start = Instant::now();
    for p in &sealed {
        ok += u32::from(relay.unprotect_rtp(black_box(p), &mut plain_out));
    }
    let decrypt_ns = start.elapsed().as_nanos() as f64 / sealed.len() as f64;
    if ok as usize != sealed.len() {
        return Err(anyhow!(
            "{} of {} packets did not decrypt",
            sealed.len() - ok as usize,
            sealed.len()
        ));
    }

    let start = Instant::now();
    for i in 0..n {
        let mut p = packet(i as u16, 9);
        relay.protect_rtp(black_box(&mut p));
        black_box(&p);
    }
    let encrypt_ns = start.elapsed().as_nanos() as f64 / f64::from(n);
    let plain_work_ns = plain_path(n);

    let p = args.plain_ns;
    let one_srtp_leg = p / (p + (decrypt_ns + encrypt_ns) / 2.0);
    let both_srtp = p / (p + decrypt_ns + encrypt_ns);
    println!(
        "{}",
        serde_json::json!({
            "suite": suite.name(),
            "packets": n,
            "plain_path_ns": (plain_work_ns * 10.0).round() / 10.0,
            "srtp_decrypt_ns": decrypt_ns.round(),
            "srtp_encrypt_ns": encrypt_ns.round(),
            "plain_relay_ns_per_packet": p,
            "capacity_vs_plain_srtp_to_plain": (one_srtp_leg * 1000.0).round() / 1000.0,
            "capacity_vs_plain_srtp_to_srtp": (both_srtp * 1000.0).round() / 1000.0,
        })
    );
    Ok(())
}
