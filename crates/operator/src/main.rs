//! The `switchboard-operator` binary: configuration, logging, signals.
//! Everything else is the library's.
//!
//! `switchboard-operator health` is the image's HEALTHCHECK: GET /health on
//! 127.0.0.1:PORT within 2 s, exit 0 on HTTP 200.
//!
//! `switchboard-operator dumpjob < body.json` prints the Job (and per-Job
//! Secret) a `POST /call` with that body would create under the current
//! environment, as JSON, without talking to Kubernetes (sipstuff's
//! `dumpjob`); an invalid body prints the 422 detail and exits 1.

use std::net::{Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use switchboard_operator::{
    AppState, CallRequest, OperatorConfig, build_job, job_name, kube_client, serve,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tracing::{error, info, warn};
use tracing_subscriber::EnvFilter;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// sysexits.h EX_USAGE: the configuration was wrong.
const EX_USAGE: u8 = 64;

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let config = match OperatorConfig::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("switchboard-operator: {e}");
            return ExitCode::from(EX_USAGE);
        }
    };
    match args.first().map(String::as_str) {
        None => {}
        Some("health") => return health(config.port).await,
        Some("dumpjob") => return dumpjob(&config),
        Some(other) => {
            eprintln!("switchboard-operator: unknown argument {other:?} (`health` or `dumpjob`)");
            return ExitCode::from(EX_USAGE);
        }
    }
    let filter = std::env::var("LOG_LEVEL").unwrap_or_else(|_| "info".into());
    let filter = match EnvFilter::try_new(&filter) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("LOG_LEVEL: invalid filter {filter:?}: {e}");
            return ExitCode::from(EX_USAGE);
        }
    };
    tracing_subscriber::fmt().with_env_filter(filter).init();
    let token = match &config.token {
        Some(t) => t.clone(),
        None => {
            let t = hex::encode(rand::random::<[u8; 24]>());
            warn!(token = %t, "OPERATOR_TOKEN is not set: generated this bearer token for this run");
            t
        }
    };
    let kube = kube_client().await;
    if let Err(e) = &kube {
        // /health still answers (the process lives), /ready and the job
        // routes answer 503 with this reason
        error!("{e}");
    }
    let addr = SocketAddr::from((Ipv4Addr::UNSPECIFIED, config.port));
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            error!("PORT: cannot listen on {addr}: {e}");
            return ExitCode::from(EX_USAGE);
        }
    };
    info!(
        namespace = %config.namespace, image = %config.job_image,
        secret = %config.sip_secret_name, "switchboard-operator on {addr}"
    );
    let state = Arc::new(AppState::new(config, &token, kube));
    let running = match serve(listener, state) {
        Ok(r) => r,
        Err(e) => {
            error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    wait_for_signal().await;
    info!("shutting down");
    running.shutdown(Duration::from_secs(5)).await;
    ExitCode::SUCCESS
}

/// `dumpjob`: the request on stdin, the objects on stdout.
fn dumpjob(config: &OperatorConfig) -> ExitCode {
    let mut body = String::new();
    if let Err(e) = std::io::Read::read_to_string(&mut std::io::stdin(), &mut body) {
        eprintln!("switchboard-operator dumpjob: stdin: {e}");
        return ExitCode::FAILURE;
    }
    let parsed: serde_json::Value = match serde_json::from_str(&body) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("switchboard-operator dumpjob: not JSON: {e}");
            return ExitCode::FAILURE;
        }
    };
    let req = match CallRequest::from_json(&parsed) {
        Ok(r) => r,
        Err(errors) => {
            eprintln!("{}", serde_json::json!({ "detail": errors }));
            return ExitCode::FAILURE;
        }
    };
    let name = job_name(jiff::Timestamp::now());
    let (job, secret) = build_job(&req, config, &name);
    println!(
        "{}",
        serde_json::to_string_pretty(&serde_json::json!({"job": job, "secret": secret}))
            .unwrap_or_default()
    );
    ExitCode::SUCCESS
}

/// GET /health on loopback: exit 0 on 200.
async fn health(port: u16) -> ExitCode {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let exchange = async {
        let mut s = tokio::net::TcpStream::connect(addr).await?;
        s.write_all(
            format!("GET /health HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await?;
        let mut raw = Vec::new();
        s.take(16 * 1024).read_to_end(&mut raw).await?;
        Ok::<_, std::io::Error>(raw)
    };
    let answer = match tokio::time::timeout(Duration::from_secs(2), exchange).await {
        Ok(Ok(raw)) => raw,
        Ok(Err(e)) => {
            eprintln!("switchboard-operator health: {addr}: {e}");
            return ExitCode::FAILURE;
        }
        Err(_) => {
            eprintln!("switchboard-operator health: {addr}: no answer within 2 s");
            return ExitCode::FAILURE;
        }
    };
    let text = String::from_utf8_lossy(&answer);
    let status = text
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1));
    if status == Some("200") {
        println!("ok");
        ExitCode::SUCCESS
    } else {
        eprintln!("switchboard-operator health: {addr} answered {status:?}");
        ExitCode::FAILURE
    }
}

/// SIGTERM or Ctrl-C.
async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
