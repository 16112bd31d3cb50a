//! `switchboard-call`: one outbound call from the environment or flags;
//! the JSON report is the last line of standard output and the exit code
//! says the outcome (see `switchboard_call::report::Outcome`).

use clap::Parser;
use switchboard_call::config::Config;
use switchboard_call::report::{Outcome, Report};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let config = Config::parse();
    let settings = config.settings();
    let verbose = settings.as_ref().is_ok_and(|s| s.verbose);
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(if verbose { "debug" } else { "warn" })
        .init();
    let report = match settings {
        Ok(s) => match tokio::runtime::Runtime::new() {
            Ok(rt) => rt.block_on(async {
                // SIGTERM (the Job deleted) or Ctrl-C: hang up and report
                let stop = tokio_util::sync::CancellationToken::new();
                let on_signal = stop.clone();
                tokio::spawn(async move {
                    let term = async {
                        match tokio::signal::unix::signal(
                            tokio::signal::unix::SignalKind::terminate(),
                        ) {
                            Ok(mut t) => {
                                t.recv().await;
                            }
                            Err(_) => std::future::pending::<()>().await,
                        }
                    };
                    tokio::select! {
                        () = term => {}
                        _ = tokio::signal::ctrl_c() => {}
                    }
                    on_signal.cancel();
                });
                switchboard_call::run_until(&s, stop).await
            }),
            Err(e) => failed(
                &s.dest,
                Outcome::Configuration,
                format!("tokio runtime: {e}"),
            ),
        },
        Err(e) => failed(
            config.dest.as_deref().unwrap_or(""),
            Outcome::Configuration,
            e.0,
        ),
    };
    println!("{}", report.to_line());
    std::process::exit(report.exit_code);
}

fn failed(dest: &str, outcome: Outcome, error: String) -> Report {
    let mut r = Report::new(dest);
    r.errors.push(error);
    r.finish(outcome);
    r
}
