//! The `switchboard-rtpmanager` binary: configuration, logging, signals.

use std::process::ExitCode;

use clap::Parser;
use switchboard_rtpmanager::{Config, run};
use tracing::{error, info};
use tracing_subscriber::EnvFilter;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// sysexits.h EX_USAGE: the configuration was wrong.
const EX_USAGE: u8 = 64;

#[tokio::main]
async fn main() -> ExitCode {
    let config = Config::parse();
    let filter = match EnvFilter::try_new(&config.loglevel) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("LOGLEVEL: invalid filter {:?}: {e}", config.loglevel);
            return ExitCode::from(EX_USAGE);
        }
    };
    tracing_subscriber::fmt().with_env_filter(filter).init();
    if let Err(e) = config.engine().and_then(|_| config.security()) {
        error!("{e}");
        return ExitCode::from(EX_USAGE);
    }
    let ports = config.ports();
    let config_token = config.rtpmanager_token.is_some();
    let config_tls = match (&config.grpc_tls_cert, &config.grpc_tls_client_ca) {
        (None, _) => "off",
        (Some(_), None) => "on",
        (Some(_), Some(_)) => "client certificates",
    };
    let running = match run(config).await {
        Ok(r) => r,
        Err(e) => {
            error!("start-up failed: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let health = running.engine.health();
    info!(
        grpc = %running.grpc_addr,
        token = config_token,
        tls = config_tls,
        rtp_ports = %format!("{}-{}", ports.rtp_min, ports.rtp_max),
        advertise = ?health.advertise,
        "switchboard-rtpmanager started"
    );
    wait_for_signal().await;
    info!("shutting down");
    running.shutdown().await;
    ExitCode::SUCCESS
}

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
