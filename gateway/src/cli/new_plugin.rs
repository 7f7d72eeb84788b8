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
    /// The plugin SDK to depend on (default: the one this gateway was built with).
    #[arg(long, value_name = "PATH")]
    sdk: Option<PathBuf>,
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
    let sdk = std::fs::canonicalize(sdk).unwrap_or_else(|_| sdk.to_path_buf());
    let ident = name.replace('-', "_");
    let files = [
        ("Cargo.toml", cargo_toml(name, &sdk)),
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
    Ok(root)
}

/// Runs the command.
pub fn run(args: NewPluginArgs) -> anyhow::Result<()> {
    let (name, dir) = (&args.name, &args.dir);
    // The SDK this binary was built with, unless told otherwise.
    let sdk = args
        .sdk
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../plugin-sdk")));
    let root = new_plugin(name, dir, &sdk)?;
    println!("created {}", root.display());
    println!(
        "build:  (cd {} && cargo build --release --target wasm32-wasip2)",
        root.display()
    );
    println!(
        "then add the [plugins.{name}] table and a route from {}/README.md to plugins.toml",
        root.display()
    );
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

[profile.release]
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

A gateway plugin: echoes frames, and broadcasts `/all <text>` to every connection.

Build (once: `rustup target add wasm32-wasip2`):

    cargo build --release --target wasm32-wasip2

Load it by adding to `plugins.toml`:

    [plugins.{name}]
    wasm = "<this dir>/target/wasm32-wasip2/release/{ident}.wasm"

    [[routes]]
    path = "/{name}"
    kind = "websocket"
    plugin = "{name}"

The gateway picks up a rebuilt `.wasm` without dropping connections. See the SDK guide
(`plugin-sdk/README.md`) for every host call and its limits.
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_bad_names_and_existing_dirs() {
        let dir = std::env::temp_dir().join(format!("scaffold-test-{}", std::process::id()));
        assert!(matches!(
            new_plugin("Bad", &dir, Path::new(".")),
            Err(ScaffoldError::BadName(_))
        ));
        let root = new_plugin("ok-name", &dir, Path::new(".")).unwrap();
        assert!(root.join("src/lib.rs").exists());
        assert!(matches!(
            new_plugin("ok-name", &dir, Path::new(".")),
            Err(ScaffoldError::Exists(_))
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
