//! The subcommands of the `gateway` binary, one file each, and the argument helpers they share.

pub mod check;
pub mod dev;
pub mod new_plugin;
pub mod serve;
pub mod token;
pub mod worker;

use anyhow::Context;
use std::path::PathBuf;

/// The value after `name` in `rest`, if the flag is present.
pub fn flag<'a>(rest: &'a [String], name: &str) -> anyhow::Result<Option<&'a str>> {
    match rest.iter().position(|a| a == name) {
        Some(i) => rest
            .get(i + 1)
            .map(|v| Some(v.as_str()))
            .with_context(|| format!("{name} needs a value")),
        None => Ok(None),
    }
}

/// The config file: `explicit`, else `GATEWAY_CONFIG`, else `plugins.toml`.
pub fn config_path(explicit: Option<&str>) -> PathBuf {
    explicit
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("GATEWAY_CONFIG").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("plugins.toml"))
}

/// Logs to stderr, filtered by `RUST_LOG` (default `info`); JSON lines with
/// `GATEWAY_LOG_FORMAT=json`.
pub fn init_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if std::env::var("GATEWAY_LOG_FORMAT").is_ok_and(|f| f == "json") {
        logs.json().init();
    } else {
        logs.init();
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
