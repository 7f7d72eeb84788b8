//! `gateway dev`: watches the bundled plugins' sources; on a change rebuilds that plugin for
//! `wasm32-wasip2` and copies it over the configured `.wasm`, which the reload watcher then
//! swaps in. A failed build prints the compiler's errors and the old version keeps serving.

use gateway::app::App;
use gateway::watch::DirWatcher;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A plugin crate found next to the configuration.
#[derive(Debug, Clone)]
pub struct PluginCrate {
    /// Plugin (and package) name.
    pub name: String,
    /// The crate directory.
    pub dir: PathBuf,
    /// Where the built `.wasm` goes (the plugin's configured path).
    pub wasm: PathBuf,
}

/// The configured plugins whose crate lives at `<workspace>/plugins/<name>` or
/// `<workspace>/tests/plugins/<name>`.
pub fn plugin_crates(app: &App, workspace: &Path) -> Vec<PluginCrate> {
    let live = app.live();
    live.config
        .plugins
        .iter()
        .filter_map(|(name, pc)| {
            let dir = ["plugins", "tests/plugins"]
                .iter()
                .map(|d| workspace.join(d).join(name))
                .find(|d| d.join("Cargo.toml").exists())?;
            Some(PluginCrate {
                name: name.clone(),
                dir,
                wasm: live.config.resolve(&pc.wasm),
            })
        })
        .collect()
}

/// Builds one plugin and installs its `.wasm` atomically; returns whether it succeeded.
pub async fn rebuild(workspace: &Path, krate: &PluginCrate) -> bool {
    let started = std::time::Instant::now();
    tracing::info!(plugin = %krate.name, "source changed: rebuilding");
    let status = tokio::process::Command::new("cargo")
        .current_dir(workspace)
        .args([
            "build",
            "--profile",
            "plugin",
            "--target",
            "wasm32-wasip2",
            "-p",
            &krate.name,
        ])
        .status()
        .await;
    match status {
        Ok(s) if s.success() => {}
        Ok(_) => {
            tracing::error!(plugin = %krate.name, "build failed (errors above); the previous version keeps serving");
            return false;
        }
        Err(e) => {
            tracing::error!(plugin = %krate.name, "cannot run cargo: {e}");
            return false;
        }
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace.join("target"));
    let built = target
        .join("wasm32-wasip2/plugin")
        .join(format!("{}.wasm", krate.name.replace('-', "_")));
    let tmp = krate.wasm.with_extension("wasm.building");
    let copied = std::fs::create_dir_all(krate.wasm.parent().unwrap_or(Path::new(".")))
        .and_then(|_| std::fs::copy(&built, &tmp))
        .and_then(|_| std::fs::rename(&tmp, &krate.wasm));
    match copied {
        Ok(()) => {
            tracing::info!(plugin = %krate.name, build_ms = started.elapsed().as_millis() as u64, "rebuilt; reloading");
            true
        }
        Err(e) => {
            tracing::error!(plugin = %krate.name, "cannot install {}: {e}", built.display());
            false
        }
    }
}

/// Watches the plugin crates under `workspace` and rebuilds on change, for the app's lifetime.
pub fn spawn(app: &Arc<App>, workspace: PathBuf) -> anyhow::Result<()> {
    let crates = plugin_crates(app, &workspace);
    if crates.is_empty() {
        tracing::warn!(workspace = %workspace.display(), "dev: no plugin crates found to watch");
        return Ok(());
    }
    let mut watcher = DirWatcher::new()?;
    let dirs: BTreeSet<PathBuf> = crates
        .iter()
        .filter_map(|c| std::fs::canonicalize(c.dir.join("src")).ok())
        .collect();
    watcher.watch_dirs(dirs, notify::RecursiveMode::Recursive);
    for c in &crates {
        tracing::info!(plugin = %c.name, dir = %c.dir.display(), "dev: watching sources");
    }
    tokio::spawn(async move {
        while let Some(changes) = watcher.next().await {
            let touched: Vec<&PluginCrate> = crates
                .iter()
                .filter(|c| {
                    let src = std::fs::canonicalize(c.dir.join("src")).unwrap_or_default();
                    changes.paths.iter().any(|p| p.starts_with(&src))
                })
                .collect();
            for c in touched {
                rebuild(&workspace, c).await;
            }
        }
    });
    Ok(())
}
