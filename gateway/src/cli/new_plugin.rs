//! `gateway new-plugin`: writes a small, working plugin crate to start from.

use std::path::{Path, PathBuf};

/// Flags of `gateway new-plugin`.
#[derive(Debug, clap::Args)]
pub struct NewPluginArgs {
    /// The plugin's name (lower-case letters, digits, `-`, `_`).
    name: String,
    /// The folder the crate is made in.
    #[arg(long, default_value = "plugins", value_name = "PATH")]
    dir: PathBuf,
    /// The plugin SDK (`plugin-sdk`) to depend on; default: the first `plugin-sdk/` found
    /// walking up from `--dir`, else the one this gateway was built from.
    #[arg(long, value_name = "PATH")]
    sdk: Option<PathBuf>,
    /// The config the plugin is added to (its table with `crate`, and a WebSocket and an HTTP
    /// route under `/plugins/NAME`), so `gateway dev` builds and serves it as it is.
    #[arg(
        long,
        short = 'c',
        env = "GATEWAY_CONFIG",
        default_value = "plugins.toml"
    )]
    config: PathBuf,
    /// Make the crate only; leave the config alone.
    #[arg(long)]
    no_config: bool,
}

/// Why scaffolding failed.
#[derive(Debug, thiserror::Error)]
pub enum ScaffoldError {
    /// The name is not a valid crate name.
    #[error(
        "plugin name '{0}' must be lower-case letters, digits, '-' or '_', starting with a letter"
    )]
    BadName(String),
    /// The target directory already exists.
    #[error("{0} already exists")]
    Exists(String),
    /// The SDK folder is missing or is not the `plugin-sdk` crate.
    #[error("plugin SDK: {0}")]
    Sdk(String),
    /// Writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        source: std::io::Error,
    },
}

/// Creates `dir/name` holding a plugin crate that depends on the SDK at `sdk`.
/// Returns the crate directory.
pub fn new_plugin(name: &str, dir: &Path, sdk: &Path) -> Result<PathBuf, ScaffoldError> {
    let valid = name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if !valid {
        return Err(ScaffoldError::BadName(name.into()));
    }
    let root = dir.join(name);
    if root.exists() {
        return Err(ScaffoldError::Exists(root.display().to_string()));
    }
    let sdk = checked_sdk(sdk)?;
    std::fs::create_dir_all(&root).map_err(|source| ScaffoldError::Io {
        path: root.display().to_string(),
        source,
    })?;
    let rel_sdk = relative(&std::fs::canonicalize(&root).unwrap_or(root.clone()), &sdk);
    let ident = name.replace('-', "_");
    let files = [
        ("Cargo.toml", cargo_toml(name, &rel_sdk)),
        ("src/lib.rs", LIB_RS.replace("{name}", name)),
        ("README.md", readme(name, &ident)),
        (".gitignore", "target/\n".into()),
    ];
    for (rel, text) in files {
        let path = root.join(rel);
        let io = |source| ScaffoldError::Io {
            path: path.display().to_string(),
            source,
        };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        std::fs::write(&path, text).map_err(io)?;
    }
    // The SDK's workspace lock, so the crate builds with the versions the gateway was tested
    // with (and reuses their build artifacts); cargo adds what is missing.
    if let Some(lock) = sdk
        .parent()
        .map(|p| p.join("Cargo.lock"))
        .filter(|l| l.is_file())
    {
        let _ = std::fs::copy(lock, root.join("Cargo.lock"));
    }
    Ok(root)
}

/// The SDK folder, canonical, after checking that it holds the `plugin-sdk` package.
fn checked_sdk(sdk: &Path) -> Result<PathBuf, ScaffoldError> {
    let bad = |why: &str| ScaffoldError::Sdk(format!("{}: {why}", sdk.display()));
    let dir = std::fs::canonicalize(sdk).map_err(|e| bad(&e.to_string()))?;
    let manifest = std::fs::read_to_string(dir.join("Cargo.toml"))
        .map_err(|e| bad(&format!("no Cargo.toml ({e})")))?;
    let name = manifest
        .parse::<toml::Table>()
        .ok()
        .and_then(|t| t.get("package")?.get("name")?.as_str().map(str::to_string));
    if name.as_deref() != Some("plugin-sdk") {
        return Err(bad("is not the plugin-sdk crate"));
    }
    Ok(dir)
}

/// `to` relative to `from` when they share a root (`../../plugin-sdk`), else `to` itself.
fn relative(from: &Path, to: &Path) -> PathBuf {
    let (f, t): (Vec<_>, Vec<_>) = (from.components().collect(), to.components().collect());
    let common = f.iter().zip(&t).take_while(|(a, b)| a == b).count();
    if common <= 1 {
        return to.to_path_buf();
    }
    let mut out: PathBuf = f[common..].iter().map(|_| "..").collect();
    out.extend(&t[common..]);
    out
}

/// The SDK to use: `explicit`, else a `plugin-sdk/` in `start` or a folder above it, else the
/// one this binary was built from (when it still exists).
pub fn find_sdk(explicit: Option<&Path>, start: &Path) -> Result<PathBuf, ScaffoldError> {
    if let Some(p) = explicit {
        return Ok(p.to_path_buf());
    }
    let start = std::fs::canonicalize(start)
        .or_else(|_| std::env::current_dir())
        .unwrap_or_default();
    let built_from = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../plugin-sdk"));
    start
        .ancestors()
        .map(|d| d.join("plugin-sdk"))
        .chain([built_from])
        .find(|d| d.join("Cargo.toml").is_file())
        .ok_or_else(|| {
            ScaffoldError::Sdk(
                "no plugin-sdk/ found above the target folder: pass --sdk PATH (the gateway repository's plugin-sdk folder)".into(),
            )
        })
}

/// The lines `new-plugin` adds to a config: the plugin, with its crate, and two routes.
pub fn config_entry(name: &str, crate_path: &Path) -> String {
    let q = |s: &str| toml::Value::String(s.to_string()).to_string();
    let ident = name.replace('-', "_");
    format!(
        r#"
# Added by `gateway new-plugin {name}`: `gateway dev` builds the crate and reloads the plugin.
[plugins.{name}]
crate = {krate}
wasm = {wasm}
max_instances = 4
memory_limit_mb = 64

[[routes]]
path = "/plugins/{name}"
kind = "websocket"
plugin = "{name}"
origins = ["*"]

[[routes]]
path = "/plugins/{name}/*"
kind = "http"
plugin = "{name}"
"#,
        krate = q(&crate_path.display().to_string()),
        wasm = q(&format!("dist/plugins/{ident}.wasm")),
    )
}

/// Adds the plugin to the config at `config` (the caller checked the name is free), keeping the
/// rest of the file as it is.
fn register(config: &Path, name: &str, crate_dir: &Path) -> anyhow::Result<()> {
    use anyhow::Context;
    let text = std::fs::read_to_string(config)
        .with_context(|| format!("cannot read {}", config.display()))?;
    let base = std::fs::canonicalize(config)?
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let dir = std::fs::canonicalize(crate_dir)?;
    let shown = dir
        .strip_prefix(&base)
        .map(Path::to_path_buf)
        .unwrap_or(dir);
    let mut out = text;
    if !out.ends_with('\n') {
        out.push('\n');
    }
    out.push_str(&config_entry(name, &shown));
    std::fs::write(config, out).with_context(|| format!("cannot write {}", config.display()))
}

/// Runs the command.
pub fn run(args: NewPluginArgs) -> anyhow::Result<()> {
    let name = &args.name;
    let register_in = (!args.no_config).then_some(&args.config);
    // Refuse a name the config already has before making anything.
    if let Some(config) = register_in {
        anyhow::ensure!(
            config.is_file(),
            "{} not found: pass --config FILE, or --no-config to make the crate only",
            config.display()
        );
        let table: toml::Table = std::fs::read_to_string(config)?
            .parse()
            .map_err(|e| anyhow::anyhow!("{} is not valid TOML: {e}", config.display()))?;
        let taken = table
            .get("plugins")
            .and_then(|p| p.get(name.as_str()))
            .is_some();
        anyhow::ensure!(!taken, "{} already has [plugins.{name}]", config.display());
    }
    let sdk = find_sdk(args.sdk.as_deref(), &args.dir)?;
    let root = new_plugin(name, &args.dir, &sdk)?;
    println!("created {}", root.display());
    match register_in {
        Some(config) => {
            register(config, name, &root)?;
            println!(
                "added [plugins.{name}] and the routes /plugins/{name} (WebSocket) and /plugins/{name}/* (HTTP) to {}",
                config.display()
            );
            println!(
                "run:    gateway dev --config {}    (builds it, serves it, rebuilds and reloads on save)",
                config.display()
            );
        }
        None => println!("add it to a config with:\n{}", config_entry(name, &root)),
    }
    Ok(())
}

fn cargo_toml(name: &str, sdk: &Path) -> String {
    format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"
publish = false

[lib]
crate-type = ["cdylib"]

[dependencies]
plugin-sdk = {{ path = "{sdk}" }}

# A workspace of its own, so the crate builds wherever it lives.
[workspace]

# The profile `gateway dev` builds plugins with: small and fast wasm.
[profile.plugin]
inherits = "release"
opt-level = "s"
lto = true
codegen-units = 1
panic = "abort"
strip = true
"#,
        sdk = sdk.display()
    )
}

const LIB_RS: &str = r#"//! The `{name}` gateway plugin.

use plugin_sdk::{ConnInfo, Frame, HttpRequest, HttpResponse, Plugin, Reject, export_plugin, host};

struct MyPlugin;

impl Plugin for MyPlugin {
    fn init(config: &str) -> Result<(), String> {
        plugin_sdk::log_info(&format!("{name} starting with config {config}"));
        Ok(())
    }

    fn on_open(conn: ConnInfo) -> Result<(), Reject> {
        // Every connection joins one topic; `publish` fans out natively in the host.
        let _ = host::subscribe(conn.id, "everyone");
        let _ = host::send(conn.id, &Frame::text("welcome to {name}"));
        Ok(())
    }

    fn on_frame(conn: u64, _attachment: Vec<u8>, frame: Frame) {
        host::counter_add("frames", 1);
        match frame {
            Frame::Text(t) if t.starts_with("/all ") => {
                host::publish("everyone", &Frame::text(&t[5..]), None);
            }
            other => {
                let _ = host::send(conn, &other);
            }
        }
    }

    fn on_http(_request: HttpRequest) -> HttpResponse {
        HttpResponse::json(200, &format!("{name}: {} connections", host::members("everyone").len()))
    }
}

export_plugin!(MyPlugin);
"#;

fn readme(name: &str, ident: &str) -> String {
    format!(
        r#"# {name}

A gateway plugin: greets, echoes frames, and broadcasts `/all <text>` to every connection.

`gateway new-plugin` added it to the config (`[plugins.{name}]` with `crate = ...`, and the
routes `/plugins/{name}` and `/plugins/{name}/*`). Run the gateway in development mode:

    gateway dev --config plugins.toml

It builds this crate for `wasm32-wasip2` (once: `rustup target add wasm32-wasip2`), serves it,
and rebuilds and hot-reloads it whenever a file under `src/` or `Cargo.toml` changes, without
dropping connections. Try it: `npx wscat -c ws://127.0.0.1:8080/plugins/{name}`.

For a release build without `gateway dev`:

    cargo build --profile plugin --target wasm32-wasip2
    # -> <target dir>/wasm32-wasip2/plugin/{ident}.wasm, the file `wasm = ...` names

See the SDK guide (`plugin-sdk/README.md`) for every host call and its limits.
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_bad_names_and_existing_dirs() {
        let dir = std::env::temp_dir().join(format!("scaffold-test-{}", std::process::id()));
        let sdk = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../plugin-sdk"));
        assert!(matches!(
            new_plugin("Bad", &dir, &sdk),
            Err(ScaffoldError::BadName(_))
        ));
        assert!(matches!(
            new_plugin("no-sdk", &dir, Path::new(env!("CARGO_MANIFEST_DIR"))),
            Err(ScaffoldError::Sdk(_))
        ));
        let root = new_plugin("ok-name", &dir, &sdk).unwrap();
        assert!(root.join("src/lib.rs").exists());
        assert!(matches!(
            new_plugin("ok-name", &dir, &sdk),
            Err(ScaffoldError::Exists(_))
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn relative_paths() {
        assert_eq!(
            relative(Path::new("/a/b/plugins/x"), Path::new("/a/b/plugin-sdk")),
            PathBuf::from("../../plugin-sdk")
        );
        assert_eq!(
            relative(Path::new("/tmp/x"), Path::new("/opt/sdk")),
            PathBuf::from("/opt/sdk")
        );
    }
}
