//! `register-bench`: authenticated registrations over UDP or TLS, as fast
//! as a registrar answers them; prints one JSON line with what came back.
//!
//! One registration is what a phone does: REGISTER → 401 with a digest
//! challenge → REGISTER with credentials → 200 OK carrying the Contact.
//! `--connections` transports (UDP sockets, or TLS connections kept open
//! and reused, as phones behind a NAT or a proxy in front of a registrar
//! keep theirs) each hold `--window` registrations in flight; a slot whose
//! answer is late (`--timeout`) counts a timeout and starts again. Only the
//! registrations that complete within `--seconds`, after `--warmup`, count.
//!
//! The same generator drives both transports, so the ratio TLS/UDP that
//! `bench/tls.sh` prints compares the server's two paths, not two tools.
//! `register-bench cert --dir D` writes a test CA (`ca.pem`) and a server
//! certificate for 127.0.0.1 (`server.pem`, `server.key`) signed by it.

#![cfg_attr(test, allow(clippy::unwrap_used))]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use clap::{Parser, Subcommand, ValueEnum};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, ServerName};
use switchboard_sip::digest::{Challenge, respond};
use switchboard_sip::framing::{Frame, Framer};
use switchboard_sip::message::{Message, parse};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::mpsc;

#[derive(Parser, Debug)]
#[command(about = "Authenticated REGISTER load over UDP or TLS")]
struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Writes ca.pem, server.pem and server.key (for 127.0.0.1) into DIR.
    Cert {
        #[arg(long)]
        dir: PathBuf,
    },
    /// Registers users as fast as the server answers.
    Run(RunArgs),
}

#[derive(Parser, Debug)]
struct RunArgs {
    /// The registrar: its UDP port, or its TLS port with `--transport tls`.
    #[arg(long)]
    server: SocketAddr,
    #[arg(long, value_enum, default_value = "udp")]
    transport: Transport,
    /// PEM CA certificate the server's TLS certificate must chain to.
    #[arg(long)]
    ca: Option<PathBuf>,
    /// Users `user<first>` … with password `password-<N>`, registered in turn.
    #[arg(long, default_value_t = 1000)]
    users: u32,
    #[arg(long, default_value_t = 0)]
    first: u32,
    /// UDP sockets or TLS connections.
    #[arg(long, default_value_t = 8)]
    connections: usize,
    /// Registrations in flight on each.
    #[arg(long, default_value_t = 8)]
    window: usize,
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Seconds a slot waits for an answer before it counts a timeout.
    #[arg(long, default_value_t = 2.0)]
    timeout: f64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Transport {
    Udp,
    Tls,
}

impl Transport {
    fn via(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tls => "TLS",
        }
    }
}

#[derive(Default)]
struct Counts {
    ok: AtomicU64,
    failed: AtomicU64,
    timeouts: AtomicU64,
}

fn main() -> Result<()> {
    let args = Args::parse();
    match args.cmd {
        Cmd::Cert { dir } => write_certs(&dir),
        Cmd::Run(run) => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(run_load(run))
        }
    }
}

fn write_certs(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "register-bench CA");
    let ca = CertifiedIssuer::self_signed(params, KeyPair::generate()?)?;
    let key = KeyPair::generate()?;
    let cert = CertificateParams::new(vec!["127.0.0.1".to_string()])?.signed_by(&key, &ca)?;
    std::fs::write(dir.join("ca.pem"), ca.pem())?;
    std::fs::write(dir.join("server.pem"), cert.pem())?;
    std::fs::write(dir.join("server.key"), key.serialize_pem())?;
    Ok(())
}

#[allow(deprecated)] // ring lacks only post-quantum key exchange
fn tls_config(ca: &Path) -> Result<Arc<rustls::ClientConfig>> {
    let pem = std::fs::read(ca).with_context(|| format!("reading {}", ca.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile_certs(&pem)? {
        roots.add(cert)?;
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Arc::new(config))
}

fn rustls_pemfile_certs(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>> {
    use rustls::pki_types::pem::PemObject;
    CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow!("CA file: {e}"))
}

async fn run_load(a: RunArgs) -> Result<()> {
    if a.users == 0 || a.connections == 0 || a.window == 0 {
        bail!("--users, --connections and --window must be positive");
    }
    if (a.users as usize) < a.connections * a.window {
        // two slots of one transport must never hold the same user (Call-ID)
        bail!("--users must be at least --connections × --window");
    }
    let tls = match a.transport {
        Transport::Tls => Some(tls_config(
            a.ca.as_deref().context("--transport tls needs --ca")?,
        )?),
        Transport::Udp => None,
    };
    let counts = Arc::new(Counts::default());
    let started = Instant::now();
    let measure_from = started + Duration::from_secs_f64(a.warmup);
    let end = measure_from + Duration::from_secs_f64(a.seconds);
    let a = Arc::new(a);
    let mut workers = Vec::new();
    for w in 0..a.connections {
        let (a, counts, tls) = (a.clone(), counts.clone(), tls.clone());
        workers.push(tokio::spawn(async move {
            worker(w, &a, tls, &counts, measure_from, end).await
        }));
    }
    let mut errors = Vec::new();
    for w in workers {
        if let Err(e) = w.await? {
            errors.push(format!("{e:#}"));
        }
    }
    let ok = counts.ok.load(Ordering::Relaxed);
    let out = serde_json::json!({
        "transport": format!("{:?}", a.transport).to_lowercase(),
        "connections": a.connections,
        "window": a.window,
        "seconds": a.seconds,
        "registrations": ok,
        "per_second": (ok as f64 / a.seconds).round(),
        "failed": counts.failed.load(Ordering::Relaxed),
        "timeouts": counts.timeouts.load(Ordering::Relaxed),
        "errors": errors,
    });
    println!("{out}");
    Ok(())
}

/// One registration in flight.
struct Slot {
    user: u32,
    cseq: u32,
    sent: Instant,
}

/// Where a worker's messages go: a connected UDP socket or a TLS
/// connection's writer.
enum Sender {
    Udp(Arc<UdpSocket>),
    Tls(tokio::io::WriteHalf<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl Sender {
    async fn send(&mut self, bytes: &[u8]) -> Result<()> {
        match self {
            Sender::Udp(s) => {
                s.send(bytes).await?;
            }
            Sender::Tls(w) => w.write_all(bytes).await?,
        }
        Ok(())
    }
}

async fn worker(
    w: usize,
    a: &RunArgs,
    tls: Option<Arc<rustls::ClientConfig>>,
    counts: &Counts,
    measure_from: Instant,
    end: Instant,
) -> Result<()> {
    let (tx, mut rx) = mpsc::channel::<Message>(1024);
    let (mut sender, local) = match tls {
        None => {
            let sock = Arc::new(UdpSocket::bind("127.0.0.1:0").await?);
            sock.connect(a.server).await?;
            let local = sock.local_addr()?;
            let reader = sock.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                while let Ok(n) = reader.recv(&mut buf).await {
                    if let Ok(m) = parse(&buf[..n])
                        && tx.send(m).await.is_err()
                    {
                        return;
                    }
                }
            });
            (Sender::Udp(sock), local)
        }
        Some(config) => {
            let tcp = TcpStream::connect(a.server).await?;
            tcp.set_nodelay(true)?;
            let local = tcp.local_addr()?;
            let stream = tokio_rustls::TlsConnector::from(config)
                .connect(ServerName::IpAddress(a.server.ip().into()), tcp)
                .await
                .context("TLS handshake")?;
            let (mut read, write) = tokio::io::split(stream);
            tokio::spawn(async move {
                let mut buf = Vec::with_capacity(1 << 16);
                let mut chunk = vec![0u8; 1 << 16];
                let mut framer = Framer::default();
                loop {
                    match framer.check(&buf, 1 << 16) {
                        Ok(Some(Frame::Message(n))) => {
                            let m = parse(&buf[..n]);
                            buf.drain(..n);
                            if let Ok(m) = m
                                && tx.send(m).await.is_err()
                            {
                                return;
                            }
                            continue;
                        }
                        Ok(Some(f)) => {
                            buf.drain(..f.len());
                            continue;
                        }
                        Ok(None) => {}
                        Err(_) => return,
                    }
                    match read.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
            });
            (Sender::Tls(write), local)
        }
    };
    let per_worker = a.users / a.connections as u32;
    let base = a.first + per_worker * w as u32;
    let span = per_worker.max(1);
    let mut next = 0u32;
    let mut slots: HashMap<String, Slot> = HashMap::new();
    // one counter for branches and CSeqs: a user registered again later
    // reuses its Call-ID (as a phone does), so its CSeq must keep growing
    let mut branch = 0u64;
    let timeout = Duration::from_secs_f64(a.timeout);
    let host = a.server.ip().to_string();
    for _ in 0..a.window {
        let user = base + next % span;
        next += 1;
        let call_id = format!("rb-{w}-{user}");
        branch += 1;
        let cseq = branch as u32;
        sender
            .send(register(a, local, &host, user, &call_id, cseq, branch, None).as_bytes())
            .await?;
        slots.insert(
            call_id,
            Slot {
                user,
                cseq,
                sent: Instant::now(),
            },
        );
    }
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    loop {
        if Instant::now() >= end {
            return Ok(());
        }
        let m = tokio::select! {
            m = rx.recv() => m.ok_or_else(|| anyhow!("connection {w} closed by the server"))?,
            _ = tick.tick() => {
                // late answers: count and start the slot again
                let now = Instant::now();
                let late: Vec<String> = slots.iter()
                    .filter(|(_, s)| now.duration_since(s.sent) > timeout)
                    .map(|(k, _)| k.clone()).collect();
                for call_id in late {
                    if let Some(mut s) = slots.remove(&call_id) {
                        counts.timeouts.fetch_add(1, Ordering::Relaxed);
                        branch += 1;
                        s.cseq = branch as u32;
                        s.sent = now;
                        sender.send(register(a, local, &host, s.user, &call_id, s.cseq, branch, None)
                            .as_bytes()).await?;
                        slots.insert(call_id, s);
                    }
                }
                continue;
            }
        };
        let Message::Response(r) = m else { continue };
        let Some(mut slot) = slots.remove(&r.call_id) else {
            continue;
        };
        if r.cseq != slot.cseq || r.code < 200 {
            slots.insert(r.call_id, slot);
            continue;
        }
        let auth = if r.code == 401 {
            let challenge = r
                .header("WWW-Authenticate")
                .and_then(|h| Challenge::parse(h).ok());
            match challenge {
                Some(c) => {
                    let uri = format!("sip:{host}:{}", a.server.port());
                    let creds = respond(
                        &c,
                        "REGISTER",
                        &uri,
                        &format!("user{}", slot.user),
                        &format!("password-{}", slot.user),
                        "0a4f113b",
                        1,
                    );
                    Some(creds.to_header_value())
                }
                None => {
                    counts.failed.fetch_add(1, Ordering::Relaxed);
                    None
                }
            }
        } else {
            let now = Instant::now();
            if r.code == 200 {
                if now >= measure_from && now < end {
                    counts.ok.fetch_add(1, Ordering::Relaxed);
                }
            } else {
                counts.failed.fetch_add(1, Ordering::Relaxed);
            }
            // the next user on this slot, with its own Call-ID (not one
            // another slot still waits on)
            loop {
                slot.user = base + next % span;
                next += 1;
                if !slots.contains_key(&format!("rb-{w}-{}", slot.user)) {
                    break;
                }
            }
            None
        };
        let call_id = format!("rb-{w}-{}", slot.user);
        branch += 1;
        slot.cseq = branch as u32;
        slot.sent = Instant::now();
        let msg = register(
            a,
            local,
            &host,
            slot.user,
            &call_id,
            slot.cseq,
            branch,
            auth.as_deref(),
        );
        sender.send(msg.as_bytes()).await?;
        slots.insert(call_id, slot);
    }
}

#[allow(clippy::too_many_arguments)]
fn register(
    a: &RunArgs,
    local: SocketAddr,
    host: &str,
    user: u32,
    call_id: &str,
    cseq: u32,
    branch: u64,
    auth: Option<&str>,
) -> String {
    let port = a.server.port();
    let transport = a.transport.via();
    let contact_param = match a.transport {
        Transport::Udp => "",
        Transport::Tls => ";transport=tls",
    };
    let auth = auth
        .map(|v| format!("Authorization: {v}\r\n"))
        .unwrap_or_default();
    format!(
        "REGISTER sip:{host}:{port} SIP/2.0\r\n\
         Via: SIP/2.0/{transport} {local};branch=z9hG4bK-rb-{branch};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:user{user}@{host}>;tag=rb{user}\r\n\
         To: <sip:user{user}@{host}>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: {cseq} REGISTER\r\n\
         Contact: <sip:user{user}@{local}{contact_param}>\r\n\
         {auth}Expires: 3600\r\n\
         User-Agent: register-bench\r\n\
         Content-Length: 0\r\n\r\n"
    )
}
