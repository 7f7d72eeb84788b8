//! The subcommands of the `gateway` binary, one file each, and what they share: the clap
//! definitions of the command line, logging and the shutdown signal.

pub mod check;
pub mod client;
pub mod dev;
pub mod init;
pub mod new_plugin;
pub mod serve;
pub mod token;
pub mod worker;

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// The version line: `0.1.0`, or `0.1.0 (commit)` when the build knew its commit.
pub fn version() -> &'static str {
    static V: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    V.get_or_init(|| match gateway::COMMIT {
        Some(c) => format!("{} ({c})", gateway::VERSION),
        None => gateway::VERSION.to_string(),
    })
}

/// The whole command line.
#[derive(Debug, Parser)]
#[command(
    name = "gateway",
    version = version(),
    about = "WebSocket/HTTP gateway that runs protocol logic in hot-reloadable wasm plugins",
    propagate_version = true,
    after_help = "Run `gateway <COMMAND> --help` for a command's flags. Logs go to stderr, \
                  filtered by RUST_LOG (default info)."
)]
pub struct Cli {
    /// Log line format on stderr.
    #[arg(long, global = true, env = "GATEWAY_LOG_FORMAT", value_enum, ignore_case = true, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Log line formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway.
    Serve(serve::ServeArgs),
    /// Serve, and rebuild + hot-reload plugins whose sources change.
    Dev(serve::ServeArgs),
    /// Run only the stream compaction worker (no listener; needs [redis]).
    Worker(worker::WorkerArgs),
    /// Mint a token for an auth profile of the config (HMAC profiles).
    Token(token::TokenArgs),
    /// Validate a config file offline, loading every plugin it names.
    Check(check::CheckArgs),
    /// Write a commented starter config.
    Init(init::InitArgs),
    /// Scaffold a plugin crate that `gateway dev` builds and reloads.
    NewPlugin(new_plugin::NewPluginArgs),
    /// An interactive terminal client for the chat protocol.
    Client(client::ClientArgs),
}

/// The `--config` flag the commands share.
#[derive(Debug, Clone, Args)]
pub struct ConfigArg {
    /// The config file.
    #[arg(
        long,
        short = 'c',
        env = "GATEWAY_CONFIG",
        default_value = "plugins.toml"
    )]
    pub config: PathBuf,
}

/// Logs to stderr, filtered by `RUST_LOG` (else `default`), as text or JSON lines.
pub fn init_logs(format: LogFormat, default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => logs.json().init(),
        LogFormat::Text => logs.init(),
    }
}

/// Installs the SIGTERM and SIGINT handlers now; the future resolves on the first signal.
pub fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }
}
