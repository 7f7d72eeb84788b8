//! Gateway TOML configs: the chat building blocks, placeholder rendering and atomic file replacement.

use std::path::{Path, PathBuf};
use std::time::Instant;

use super::paths::{fixture, plugin_wasm, shared_cache_dir, toml_path};

/// Chat plugin section (no routes): placeholders are filled by [`GatewayBuilder::start`].
pub const CHAT_PLUGIN: &str = r#"
[plugins.chat]
wasm = @CHAT_WASM@
max_instances = 4
memory_limit_mb = 64
call_timeout_ms = 2000

[plugins.chat.config]
idle_cleanup_seconds = 300
max_online_list = 100
"#;

/// The default auth profile: HS256 with `GATEWAY_JWT_SECRET`, as in `plugins.toml`.
pub const DEFAULT_AUTH: &str = r#"
[auth.default]
algorithms = ["HS256"]
secret_env = "GATEWAY_JWT_SECRET"
exp_unit = "seconds"
required_claims = ["sub", "exp"]
token_from = ["query:token", "header:authorization"]
"#;

/// `/ws` (chat, default auth) and the admin routes `/ws/*`.
pub const CHAT_ROUTES: &str = r#"
[[routes]]
path = "/ws"
kind = "websocket"
plugin = "chat"
auth = "default"
origins = ["*"]

[[routes]]
path = "/ws/*"
kind = "http"
plugin = "chat"
admin = true
"#;

/// A complete chat config like `plugins.toml`, with an optional `[routes.limits]` body for `/ws`.
pub fn chat_config(ws_limits: Option<&str>) -> String {
    let mut cfg = String::new();
    cfg.push_str(DEFAULT_AUTH);
    cfg.push_str(CHAT_PLUGIN);
    cfg.push_str(
        r#"
[[routes]]
path = "/ws"
kind = "websocket"
plugin = "chat"
auth = "default"
origins = ["*"]
"#,
    );
    if let Some(limits) = ws_limits {
        cfg.push_str("\n[routes.limits]\n");
        cfg.push_str(limits);
        cfg.push('\n');
    }
    cfg.push_str(
        r#"
[[routes]]
path = "/ws/*"
kind = "http"
plugin = "chat"
admin = true
"#,
    );
    cfg
}

/// Renders a test config: fills the placeholders (see [`GatewayBuilder::new`]) and adds the
/// standard `[server]` section unless `config` has one. Rendering the same text twice gives the
/// same output, so a reload config differs from the original only where the test changes it.
pub(super) fn render_config(config: &str, dir: &Path) -> String {
    let mut cfg = String::new();
    if !config.contains("[server]") {
        cfg.push_str(&format!(
            "[server]\nlisten = [\"127.0.0.1:0\"]\ncache_dir = {}\nshutdown_grace_ms = 3000\n\n",
            toml_path(&shared_cache_dir())
        ));
    }
    cfg.push_str(config);
    let quoted_dir = toml_path(dir);
    cfg.replace("@CHAT_WASM@", &toml_path(&plugin_wasm("chat")))
        .replace("@FAULTY_WASM@", &toml_path(&plugin_wasm("faulty")))
        .replace("@ECHO_WASM@", &toml_path(&plugin_wasm("echo")))
        .replace("@FIXTURES@", &toml_path(&fixture("")))
        .replace("@CACHE_DIR@", &toml_path(&shared_cache_dir()))
        .replace("@DIR@", &quoted_dir[1..quoted_dir.len() - 1])
}

/// Replaces `path` atomically: writes `<path>.tmp` in the same directory, then renames it over
/// `path`. Returns the moment just before the rename (the file change a reload reacts to).
pub fn replace_file(path: &Path, contents: &[u8]) -> Instant {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, contents).unwrap_or_else(|e| panic!("write {}: {e}", tmp.display()));
    let at = Instant::now();
    std::fs::rename(&tmp, path)
        .unwrap_or_else(|e| panic!("rename {} -> {}: {e}", tmp.display(), path.display()));
    at
}
