//! `gateway init`: writes a commented starter config (the shipped `plugins.toml`: every
//! bundled plugin, its routes and the embedded defaults), pointed at the given plugins folder.

use anyhow::{Context, bail};
use std::path::{Path, PathBuf};

/// The shipped configuration, the starting point of every new one.
const SHIPPED: &str = include_str!("../../../plugins.toml");

/// Flags of `gateway init`.
#[derive(Debug, clap::Args)]
pub struct InitArgs {
    /// Where to write the config.
    #[arg(value_name = "FILE", default_value = "plugins.toml")]
    file: PathBuf,
    /// The folder holding the bundled plugins' `.wasm` files, as the config will name it.
    #[arg(long, default_value = "dist/plugins", value_name = "DIR")]
    plugins_dir: String,
    /// Run as a cluster on this Redis (`redis://host:6379`): streams and the bus live there.
    #[arg(long, value_name = "URL")]
    redis: Option<String>,
    /// Replace an existing file.
    #[arg(long)]
    force: bool,
}

/// The starter text for these flags.
pub fn starter(plugins_dir: &str, redis: Option<&str>) -> String {
    let dir = plugins_dir.trim_end_matches('/');
    let mut text = SHIPPED
        .replace("\"dist/plugins/", &format!("\"{dir}/"))
        .replacen(
            "# `gateway check plugins.toml` validates this file offline.",
            "# Written by `gateway init`; `gateway check FILE` validates it offline (and loads the plugins).",
            1,
        );
    if let Some(url) = redis {
        let at = text.find("[streams]").unwrap_or(text.len());
        text.insert_str(at, &format!("[redis]\nurl = {}\n\n", toml_string(url)));
    }
    text
}

fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

fn write(path: &Path, text: &str, force: bool) -> anyhow::Result<()> {
    if path.exists() && !force {
        bail!(
            "{} already exists (pass --force to replace it)",
            path.display()
        );
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

/// Runs the command.
pub fn run(args: InitArgs) -> anyhow::Result<()> {
    let text = starter(&args.plugins_dir, args.redis.as_deref());
    write(&args.file, &text, args.force)?;
    let f = args.file.display();
    println!("wrote {f}");
    println!("next:  gateway check {f}    then    gateway serve --config {f} --dev");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_starter_parses_with_and_without_redis() {
        for redis in [None, Some("redis://127.0.0.1:6379")] {
            let text = starter("/opt/gateway/plugins/", redis);
            let c = gateway::config::Config::parse(&text, "starter.toml", Path::new("/x"))
                .unwrap_or_else(|e| panic!("{e}"));
            assert!(
                c.plugins
                    .values()
                    .all(|p| p.wasm.starts_with("/opt/gateway/plugins"))
            );
            assert_eq!(c.redis.is_some(), redis.is_some());
        }
    }
}
