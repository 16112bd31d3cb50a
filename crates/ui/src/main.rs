//! The `switchboard-ui` binary: configuration, logging, signals. Everything
//! else is the library's [`switchboard_ui::run`].

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use switchboard_ui::probe::{self, Cli, Command};
use switchboard_ui::run;
use tracing::{error, info};
use tracing_subscriber::EnvFilter;

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
            eprintln!("UI_LOGLEVEL: invalid filter {:?}: {e}", config.loglevel);
            return ExitCode::from(EX_USAGE);
        }
    };
    tracing_subscriber::fmt().with_env_filter(filter).init();
    let running = match run(config).await {
        Ok(r) => r,
        Err(e) => {
            error!("{e:#}");
            return ExitCode::from(EX_USAGE);
        }
    };
    let backends: Vec<&str> = running.state.backends.names().collect();
    info!(addr = %running.addr, ?backends, "switchboard-ui started");
    wait_for_signal().await;
    info!("shutting down");
    running.shutdown(Duration::from_secs(5)).await;
    ExitCode::SUCCESS
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
