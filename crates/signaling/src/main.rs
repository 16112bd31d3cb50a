//! The `switchboard-signaling` binary: configuration, logging, signals.
//! Everything else is the library's [`switchboard_signaling::run`].

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use switchboard_signaling::probe::{self, Cli, Command};
use switchboard_signaling::run;
use tracing::{error, info};
use tracing_subscriber::EnvFilter;

/// mimalloc instead of glibc malloc: a registrar's memory comes in bursts
/// (every REGISTER's transaction is kept 32 s for retransmissions), and
/// glibc keeps the freed arenas resident, so a burst of 250,000
/// transactions left ~300 MB behind long after they ended. mimalloc
/// returns freed pages to the OS, so resident memory follows what is live.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// sysexits.h EX_USAGE: the configuration was wrong.
const EX_USAGE: u8 = 64;

#[tokio::main]
async fn main() -> ExitCode {
    let Cli { config, command } = Cli::parse();
    if let Some(Command::Health) = command {
        return probe::main(&config).await;
    }
    let filter = match EnvFilter::try_new(&config.loglevel) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("LOGLEVEL: invalid filter {:?}: {e}", config.loglevel);
            return ExitCode::from(EX_USAGE);
        }
    };
    tracing_subscriber::fmt().with_env_filter(filter).init();
    if let Err(e) = config.validate() {
        error!("{e}");
        return ExitCode::from(EX_USAGE);
    }
    let running = match run(config).await {
        Ok(r) => r,
        Err(e) => {
            error!("start-up failed: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    info!(sip = ?running.sip_addrs, api = %running.api_addr, "switchboard-signaling started");
    wait_for_signal(&running.node).await;
    info!("shutting down");
    let grace = Duration::from_secs(running.node.config.shutdown_grace);
    running.shutdown(grace).await;
    ExitCode::SUCCESS
}

/// Waits for SIGTERM or Ctrl-C; SIGHUP meanwhile reloads the dialplan and
/// the TLS certificates, SIP's and the API's (a bad file is logged and the
/// one in use stays).
async fn wait_for_signal(node: &switchboard_signaling::Node) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut term), Ok(mut hup)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::hangup()),
        ) else {
            let _ = tokio::signal::ctrl_c().await;
            return;
        };
        loop {
            tokio::select! {
                _ = term.recv() => return,
                _ = tokio::signal::ctrl_c() => return,
                _ = hup.recv() => {
                    match node.reload_dialplan() {
                        Ok(routes) => info!(routes, "dialplan reloaded (SIGHUP)"),
                        Err(e) => error!("dialplan not reloaded, keeping the last good one: {e}"),
                    }
                    match node.reload_tls() {
                        Ok(true) => info!("TLS certificate reloaded (SIGHUP)"),
                        Ok(false) => {}
                        Err(e) => error!("TLS certificate not reloaded, keeping the one in use: {e:#}"),
                    }
                    match node.reload_api_tls() {
                        Ok(true) => info!("API TLS certificate reloaded (SIGHUP)"),
                        Ok(false) => {}
                        Err(e) => error!("API TLS certificate not reloaded, keeping the one in use: {e:#}"),
                    }
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = node;
        let _ = tokio::signal::ctrl_c().await;
    }
}
