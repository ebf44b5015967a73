//! `cargo run -p app`: serves the API; `--help` lists the settings.

use anyhow::Context;
use std::io::IsTerminal as _;

use app::{Application, Command, Config, LogFormat};
use clap::Parser;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run(Config::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            // The cause chain, without a backtrace: this is a user's error
            // message, not a crash report.
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(config: Config) -> anyhow::Result<()> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    match config.log_format {
        LogFormat::Json => tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .init(),
        // Colours only for a person at a terminal, never into a file.
        LogFormat::Text => tracing_subscriber::fmt()
            .with_ansi(std::io::stdout().is_terminal())
            .with_env_filter(filter)
            .init(),
    }
    match &config.command {
        Some(Command::Relay) => return app::run_relay(&config, shutdown_signal()).await,
        Some(Command::Unpark { queue }) => return app::unpark(&config, queue).await,
        // example-only: begin
        Some(Command::Example(command)) => return app::example::cli::run(&config, command).await,
        // example-only: end
        None => {}
    }
    let application = Application::build(config).await?;
    application
        .run_until_stopped(shutdown_signal())
        .await
        .context("serving")
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let interrupt = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        () = interrupt => {},
        () = terminate => {},
    }
    tracing::info!("shutting down; finishing in-flight requests");
}
