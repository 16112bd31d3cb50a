//! The `switchboard-rtpmanager` binary: configuration, logging, signals.
//!
//! The first SIGTERM (or SIGINT) drains: no new sessions, the live ones go
//! on until the last ends or SHUTDOWN_GRACE passes; a second one ends them
//! at once. `health [--ready]` is the probe ([`switchboard_rtpmanager::probe`]).

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use switchboard_rtpmanager::{Cli, Command, fdlimit, probe, run};
use tracing::{error, info, warn};
use tracing_subscriber::EnvFilter;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// sysexits.h EX_USAGE: the configuration was wrong.
const EX_USAGE: u8 = 64;

#[tokio::main]
async fn main() -> ExitCode {
    let Cli { config, command } = Cli::parse();
    if let Some(Command::Health(args)) = command {
        return probe::main(&config, args.ready).await;
    }
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
    let id = config.identity();
    match (id.ordinal, id.source) {
        (Some(n), "HOSTNAME") => warn!(
            ordinal = n,
            hostname = id.name,
            "StatefulSet ordinal taken from HOSTNAME; under hostNetwork that is the node's \
             name: set POD_NAME (Downward API metadata.name)"
        ),
        (Some(n), source) => info!(
            ordinal = n,
            from = source,
            name = id.name,
            "StatefulSet ordinal"
        ),
        (None, source) => info!(from = source, name = id.name, "no StatefulSet ordinal"),
    }
    let ports = config.ports();
    if let Some(limit) = fdlimit::raise() {
        let pairs = (u64::from(ports.rtp_max) + 1).saturating_sub(u64::from(ports.rtp_min)) / 2;
        let allowed = fdlimit::sessions_allowed(limit);
        if allowed < pairs {
            warn!(
                rlimit_nofile = limit,
                sessions = allowed,
                port_pairs = pairs,
                "the open-files limit allows fewer sessions than the RTP port range; raise it \
                 (ulimit -n, the container runtime's nofile) to use the whole range"
            );
        }
    }
    let grace = Duration::from_secs(config.shutdown_grace);
    let config_token = config.rtpmanager_token.is_some();
    let config_tls = match (&config.grpc_tls_cert, &config.grpc_tls_client_ca) {
        (None, _) => "off",
        (Some(_), None) => "on",
        (Some(_), Some(_)) => "client certificates",
    };
    // before serving, so a signal from then on drains
    let mut signals = Signals::new();
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
        shutdown_grace = grace.as_secs(),
        "switchboard-rtpmanager started"
    );
    let first = signals.next().await;
    info!(signal = first, "stopping: draining first");
    let again = async {
        let second = signals.next().await;
        warn!(signal = second, "second signal");
    };
    running.drain_and_shutdown(grace, again).await;
    info!("stopped");
    ExitCode::SUCCESS
}

/// SIGTERM and SIGINT, each received as often as it comes.
struct Signals {
    #[cfg(unix)]
    unix: Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>,
}

impl Signals {
    fn new() -> Signals {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let unix = match (
                signal(SignalKind::terminate()),
                signal(SignalKind::interrupt()),
            ) {
                (Ok(term), Ok(int)) => Some((term, int)),
                _ => None,
            };
            Signals { unix }
        }
        #[cfg(not(unix))]
        Signals {}
    }

    /// The next signal's name.
    async fn next(&mut self) -> &'static str {
        #[cfg(unix)]
        if let Some((term, int)) = &mut self.unix {
            return tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            };
        }
        let _ = tokio::signal::ctrl_c().await;
        "SIGINT"
    }
}
