//! Filesystem locations: the repository, built plugins, fixtures, the gateway binary, temp dirs.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// The repository root (`tests/` is `CARGO_MANIFEST_DIR`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// A built plugin: `<repo>/dist/plugins/NAME.wasm`.
pub fn plugin_wasm(name: &str) -> PathBuf {
    repo_root()
        .join("dist")
        .join("plugins")
        .join(format!("{name}.wasm"))
}

/// A file under `tests/fixtures/`.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name)
}

/// `<target>/debug` (the test executable lives in `<target>/debug/deps`).
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    exe.parent()
        .and_then(Path::parent)
        .expect("test executable lives in <target>/<profile>/deps")
        .to_path_buf()
}

/// The gateway binary: `GATEWAY_BIN`, else `<target>/debug/gateway`.
pub fn gateway_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("GATEWAY_BIN") {
        return PathBuf::from(bin);
    }
    profile_dir().join(format!("gateway{}", std::env::consts::EXE_SUFFIX))
}

/// Compiled-plugin cache shared by every test gateway (lives in the target directory).
pub(super) fn shared_cache_dir() -> PathBuf {
    profile_dir()
        .parent()
        .map(|target| target.join("gateway-test-cache"))
        .unwrap_or_else(|| std::env::temp_dir().join("gateway-test-cache"))
}

pub(super) static UNIQUE: AtomicU64 = AtomicU64::new(0);

/// A fresh, unique directory under the system temp dir.
pub fn unique_temp_dir(label: &str) -> PathBuf {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let n = UNIQUE.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!(
        "gateway-test-{label}-{}-{n}-{nanos}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).expect("create temp dir");
    dir
}

pub(super) fn toml_path(p: &Path) -> String {
    // Basic TOML string: escape backslashes and quotes.
    format!(
        "\"{}\"",
        p.display()
            .to_string()
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
    )
}
