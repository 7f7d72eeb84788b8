//! `gateway check [FILE]`: validates a configuration offline (errors carry `file:line:col`),
//! builds its auth profiles and loads and links every plugin's `.wasm` against this host.

use super::ConfigArg;
use gateway::auth;
use gateway::config::Config;
use gateway::plugin::{PluginEngine, PluginSlot, load_component};
use std::path::PathBuf;

/// Flags of `gateway check`.
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// The config file (instead of `--config`).
    #[arg(value_name = "FILE")]
    file: Option<PathBuf>,
    #[command(flatten)]
    config: ConfigArg,
    /// Check the file only; do not load the plugins' `.wasm` files.
    #[arg(long)]
    no_wasm: bool,
}

/// Loads and links one plugin; the error says what is wrong with it.
fn load_plugin(engine: &PluginEngine, path: &std::path::Path) -> anyhow::Result<()> {
    let (component, _hash) = load_component(engine, path)?;
    PluginSlot::link(&engine.engine, &component)
        .map_err(|e| anyhow::anyhow!("{}: does not fit this host: {e:#}", path.display()))?;
    Ok(())
}

fn check(path: &std::path::Path, wasm: bool) -> anyhow::Result<Config> {
    let c = Config::load(path)?;
    auth::Authenticator::new(&c)?;
    if !wasm {
        return Ok(c);
    }
    let engine = PluginEngine::new(8, c.resolve(&c.server.cache_dir))?;
    let mut failed = Vec::new();
    for (name, pc) in &c.plugins {
        let file = c.resolve(&pc.wasm);
        let started = std::time::Instant::now();
        match load_plugin(&engine, &file) {
            Ok(()) => println!(
                "  plugin {name}: {} loads ({} ms)",
                file.display(),
                started.elapsed().as_millis()
            ),
            Err(e) => failed.push(format!("plugin {name}: {e:#}")),
        }
    }
    if !failed.is_empty() {
        anyhow::bail!("{}: {}", path.display(), failed.join("\n"));
    }
    Ok(c)
}

/// Runs the command; exits with 1 when the file or a plugin is refused.
pub fn run(args: CheckArgs) -> anyhow::Result<()> {
    let path = args.file.unwrap_or(args.config.config);
    match check(&path, !args.no_wasm) {
        Ok(c) => {
            println!(
                "{}: ok ({} plugins, {} routes, {} listeners)",
                path.display(),
                c.plugins.len(),
                c.routes.len(),
                c.server.listen.len()
            );
            Ok(())
        }
        Err(e) => {
            eprintln!("{e:#}");
            std::process::exit(1)
        }
    }
}
