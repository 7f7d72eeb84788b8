//! `gateway worker`: the compaction worker alone, on the configured streams and storage.

use super::{ConfigArg, shutdown_signal};
use anyhow::bail;
use gateway::config::Config;

/// Flags of `gateway worker`.
#[derive(Debug, clap::Args)]
pub struct WorkerArgs {
    #[command(flatten)]
    config: ConfigArg,
}

/// Runs the worker until SIGTERM or SIGINT; refuses a config without `[redis]`.
pub fn run(args: WorkerArgs) -> anyhow::Result<()> {
    let path = args.config.config;
    let config = Config::load(&path)?;
    if config.redis.is_none() {
        bail!(
            "{}: `gateway worker` needs [redis]: the in-process streams belong to one `gateway serve` (whose [worker] compacts them)",
            path.display()
        );
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let signal = shutdown_signal()?;
        let b = gateway::backends::Backends::open(&config, true).await?;
        println!("gateway worker running (prefixes {:?})", b.prefixes);
        signal.await;
        b.close().await;
        anyhow::Ok(())
    })
}
