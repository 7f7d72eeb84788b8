//! `gateway dev`: finds each plugin's source crate (`crate = "path"` in its table, else
//! `plugins/<name>` or `tests/plugins/<name>` beside the config), builds the stale ones before
//! serving, then rebuilds a crate for `wasm32-wasip2` whenever its sources change and copies
//! the `.wasm` over the configured one, which the reload watcher swaps in. A failed build
//! prints the compiler's errors and the old version keeps serving.

use gateway::app::App;
use gateway::config::Config;
use gateway::watch::DirWatcher;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::SystemTime;

/// A plugin's source crate, as `cargo metadata` describes it.
#[derive(Debug, Clone)]
pub struct PluginCrate {
    /// The plugin's name in the config.
    pub name: String,
    /// The crate directory.
    pub dir: PathBuf,
    /// The crate's library target (the `.wasm` is named after it).
    pub target: String,
    /// The cargo profile it is built with: `plugin` where its workspace defines one, else
    /// `release`.
    pub profile: String,
    /// Where the built `.wasm` goes (the plugin's configured path).
    pub wasm: PathBuf,
}

/// What `cargo metadata` says about the crate in `dir`: its cdylib target and whether its
/// workspace defines `[profile.plugin]`.
fn describe(name: &str, dir: &Path, wasm: PathBuf) -> Result<PluginCrate, String> {
    let manifest = dir.join("Cargo.toml");
    let out = Command::new(cargo())
        .args([
            "metadata",
            "--no-deps",
            "--format-version",
            "1",
            "--manifest-path",
        ])
        .arg(&manifest)
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let meta: serde_json::Value =
        serde_json::from_slice(&out.stdout).map_err(|e| format!("cargo metadata: {e}"))?;
    let manifest = std::fs::canonicalize(&manifest).unwrap_or(manifest);
    let package = meta["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["manifest_path"].as_str().map(Path::new) == Some(manifest.as_path()))
        .ok_or_else(|| format!("{} names no package", manifest.display()))?;
    let target = package["targets"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|t| {
            t["crate_types"]
                .as_array()
                .is_some_and(|c| c.iter().any(|k| k == "cdylib"))
        })
        .and_then(|t| t["name"].as_str())
        .ok_or_else(|| {
            format!(
                "{} has no cdylib target (`[lib] crate-type = [\"cdylib\"]`)",
                manifest.display()
            )
        })?;
    let root = Path::new(meta["workspace_root"].as_str().unwrap_or_default()).join("Cargo.toml");
    let has_plugin_profile = std::fs::read_to_string(&root)
        .ok()
        .and_then(|t| t.parse::<toml::Table>().ok())
        .is_some_and(|t| t.get("profile").and_then(|p| p.get("plugin")).is_some());
    Ok(PluginCrate {
        name: name.to_string(),
        dir: dir.to_path_buf(),
        target: target.to_string(),
        profile: if has_plugin_profile {
            "plugin"
        } else {
            "release"
        }
        .into(),
        wasm,
    })
}

/// The configured plugins' source crates, and a warning for each plugin that has none.
pub fn plugin_crates(config: &Config) -> (Vec<PluginCrate>, Vec<String>) {
    let mut crates = Vec::new();
    let mut warnings = Vec::new();
    for (name, pc) in &config.plugins {
        let wasm = config.resolve(&pc.wasm);
        let dir = match &pc.source_crate {
            Some(dir) => config.resolve(dir),
            None => {
                let found = ["plugins", "tests/plugins"]
                    .iter()
                    .map(|d| config.resolve(&Path::new(d).join(name)))
                    .find(|d| d.join("Cargo.toml").exists());
                match found {
                    Some(d) => d,
                    None => {
                        warnings.push(format!(
                            "plugin '{name}' has no source crate to watch (set `crate = \"path/to/crate\"` in [plugins.{name}]); a new {} is still hot-reloaded",
                            wasm.display()
                        ));
                        continue;
                    }
                }
            }
        };
        match describe(name, &dir, wasm) {
            Ok(c) => crates.push(c),
            Err(e) => warnings.push(format!(
                "plugin '{name}': cannot watch {}: {e}",
                dir.display()
            )),
        }
    }
    (crates, warnings)
}

fn cargo() -> std::ffi::OsString {
    std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into())
}

/// The build of one crate; JSON messages on stdout name the artifact, the compiler's
/// diagnostics are rendered on stderr.
fn build_command(krate: &PluginCrate) -> Command {
    let mut cmd = Command::new(cargo());
    cmd.args(["build", "--target", "wasm32-wasip2", "--profile"])
        .arg(&krate.profile)
        .arg("--message-format=json-render-diagnostics")
        .arg("--manifest-path")
        .arg(krate.dir.join("Cargo.toml"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    cmd
}

/// The `.wasm` the build reported for the crate's target.
fn artifact(stdout: &[u8], target: &str) -> Option<PathBuf> {
    String::from_utf8_lossy(stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == target)
        .flat_map(|m| m["filenames"].as_array().cloned().unwrap_or_default())
        .filter_map(|f| f.as_str().map(PathBuf::from))
        .find(|f| f.extension().is_some_and(|e| e == "wasm"))
}

/// Copies the built `.wasm` over the configured one in one rename, so the reload watcher never
/// sees half a file.
fn install(krate: &PluginCrate, built: &Path) -> std::io::Result<()> {
    let tmp = krate.wasm.with_extension("wasm.building");
    std::fs::create_dir_all(krate.wasm.parent().unwrap_or(Path::new(".")))?;
    std::fs::copy(built, &tmp)?;
    std::fs::rename(&tmp, &krate.wasm)
}

/// What a finished build produced.
fn finish(krate: &PluginCrate, output: std::io::Result<std::process::Output>) -> bool {
    let out = match output {
        Ok(o) => o,
        Err(e) => {
            tracing::error!(plugin = %krate.name, "cannot run cargo: {e}");
            return false;
        }
    };
    if !out.status.success() {
        tracing::error!(plugin = %krate.name, "build failed (errors above); the previous version keeps serving");
        return false;
    }
    let Some(built) = artifact(&out.stdout, &krate.target) else {
        tracing::error!(plugin = %krate.name, "the build reported no .wasm for target {}", krate.target);
        return false;
    };
    match install(krate, &built) {
        Ok(()) => true,
        Err(e) => {
            tracing::error!(plugin = %krate.name, "cannot install {} at {}: {e}", built.display(), krate.wasm.display());
            false
        }
    }
}

/// Builds one plugin and installs its `.wasm`; returns whether it succeeded.
pub async fn rebuild(krate: &PluginCrate) -> bool {
    let started = std::time::Instant::now();
    tracing::info!(plugin = %krate.name, "source changed: rebuilding");
    let out = tokio::process::Command::from(build_command(krate))
        .output()
        .await;
    let ok = finish(krate, out);
    if ok {
        tracing::info!(plugin = %krate.name, build_ms = started.elapsed().as_millis() as u64, "rebuilt; reloading");
    }
    ok
}

/// The newest modification time of the crate's sources (`src/**` and `Cargo.toml`).
fn sources_mtime(dir: &Path) -> Option<SystemTime> {
    fn walk(p: &Path, newest: &mut Option<SystemTime>) {
        let Ok(meta) = std::fs::metadata(p) else {
            return;
        };
        if meta.is_dir() {
            for e in std::fs::read_dir(p).into_iter().flatten().flatten() {
                walk(&e.path(), newest);
            }
        } else if let Ok(m) = meta.modified() {
            *newest = (*newest).max(Some(m));
        }
    }
    let mut newest = None;
    walk(&dir.join("src"), &mut newest);
    walk(&dir.join("Cargo.toml"), &mut newest);
    newest
}

/// Finds the source crates, warns about plugins it cannot watch, and builds (blocking) every
/// crate whose `.wasm` is missing or older than its sources, so `serve` starts on fresh code.
pub fn prepare(config: &Config) -> Vec<PluginCrate> {
    let (crates, warnings) = plugin_crates(config);
    for w in warnings {
        tracing::warn!("dev: {w}");
    }
    for c in &crates {
        let built = std::fs::metadata(&c.wasm).and_then(|m| m.modified()).ok();
        let stale = match (built, sources_mtime(&c.dir)) {
            (None, _) => true,
            (Some(b), Some(s)) => s > b,
            (Some(_), None) => false,
        };
        if stale {
            tracing::info!(plugin = %c.name, dir = %c.dir.display(), "dev: building (the .wasm is missing or older than the sources)");
            let started = std::time::Instant::now();
            if finish(c, build_command(c).output()) {
                tracing::info!(plugin = %c.name, build_ms = started.elapsed().as_millis() as u64, "dev: built");
            }
        }
    }
    crates
}

/// Watches the crates' sources and rebuilds on change, for the app's lifetime.
pub fn spawn(_app: &Arc<App>, crates: Vec<PluginCrate>) -> anyhow::Result<()> {
    if crates.is_empty() {
        tracing::warn!("dev: no plugin crates to watch");
        return Ok(());
    }
    // Sources recursively; the crate folder itself only for its Cargo.toml (not its target/).
    let mut sources = DirWatcher::new()?;
    sources.watch_dirs(
        crates
            .iter()
            .filter_map(|c| std::fs::canonicalize(c.dir.join("src")).ok())
            .collect(),
        notify::RecursiveMode::Recursive,
    );
    let mut manifests = DirWatcher::new()?;
    manifests.watch_dirs(
        crates
            .iter()
            .filter_map(|c| std::fs::canonicalize(&c.dir).ok())
            .collect::<BTreeSet<_>>(),
        notify::RecursiveMode::NonRecursive,
    );
    for c in &crates {
        tracing::info!(plugin = %c.name, dir = %c.dir.display(), profile = %c.profile, "dev: watching sources");
    }
    tokio::spawn(async move {
        loop {
            let changes = tokio::select! {
                c = sources.next() => c,
                c = manifests.next() => c,
            };
            let Some(changes) = changes else { break };
            let touched: Vec<&PluginCrate> = crates
                .iter()
                .filter(|c| {
                    let dir = std::fs::canonicalize(&c.dir).unwrap_or_default();
                    let (src, manifest) = (dir.join("src"), dir.join("Cargo.toml"));
                    changes
                        .paths
                        .iter()
                        .any(|p| p.starts_with(&src) || *p == manifest)
                })
                .collect();
            for c in touched {
                rebuild(c).await;
            }
        }
    });
    Ok(())
}
