//! `[plugins.NAME]` and `[[routes]]`: which component serves which path, with what budget.

use super::faults::FaultPolicy;
use super::limits::LimitOverrides;
use serde::Deserialize;
use std::path::PathBuf;

/// One plugin.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PluginConfig {
    /// The component file.
    pub wasm: PathBuf,
    /// Most instances that run at once.
    #[serde(default = "default_instances")]
    pub max_instances: u32,
    /// Linear memory cap per instance.
    #[serde(default = "default_memory_mb")]
    pub memory_limit_mb: u64,
    /// Wall-clock budget of one call; past it the call traps.
    #[serde(default = "default_call_timeout")]
    pub call_timeout_ms: u64,
    /// Free table handed to the plugin's `init` as JSON.
    #[serde(default)]
    pub config: toml::Table,
    /// What traps and deadlines do, and the crash budget.
    #[serde(default)]
    pub faults: FaultPolicy,
    /// Environment variables of the gateway the plugin may read (its WASI environment); an
    /// unset variable is absent. Nothing else of the environment is visible to a plugin.
    #[serde(default)]
    pub env: Vec<String>,
    /// Stream keys the plugin may append to, read and tail: those starting with one of these
    /// prefixes (default: `<plugin name>:`). `[""]` allows every key, e.g. for y-redis room
    /// keys shared with other servers.
    #[serde(default)]
    pub stream_prefixes: Option<Vec<String>>,
    /// Where the plugin's storage names live in the store (default `<plugin name>/`); `""`
    /// gives it the whole store, e.g. to read the rooms the y-redis compaction worker stores.
    #[serde(default)]
    pub storage_root: Option<String>,
    /// The plugin's source crate (a folder with a `Cargo.toml`, relative to the config): `gateway
    /// dev` rebuilds it when its sources change and installs the result at `wasm`. `serve`
    /// ignores it.
    #[serde(default, rename = "crate")]
    pub source_crate: Option<PathBuf>,
}

fn default_instances() -> u32 {
    8
}
fn default_memory_mb() -> u64 {
    64
}
fn default_call_timeout() -> u64 {
    250
}

/// What a route serves.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RouteKind {
    /// WebSocket upgrades handled by the plugin's connection events.
    Websocket,
    /// Plain HTTP requests handled by the plugin's `on-http`.
    Http,
}

/// One route.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// Exact path, or a prefix ending in `/*`.
    pub path: String,
    /// WebSocket or HTTP.
    pub kind: RouteKind,
    /// The plugin that handles it.
    pub plugin: String,
    /// Auth profile; none means anonymous.
    pub auth: Option<String>,
    /// Allowed `Origin` values; empty or `*` allows all.
    #[serde(default)]
    pub origins: Vec<String>,
    /// Require the admin key (HTTP routes).
    #[serde(default)]
    pub admin: bool,
    /// Limit overrides for this route.
    #[serde(default)]
    pub limits: LimitOverrides,
}

impl Route {
    /// Whether `path` is served by this route.
    pub fn matches(&self, path: &str) -> bool {
        match self.path.strip_suffix('*') {
            Some(prefix) => path.starts_with(prefix),
            None => self.path == path,
        }
    }

    /// Whether a request with this `Origin` header may use the route.
    pub fn origin_allowed(&self, origin: Option<&str>) -> bool {
        if self.origins.is_empty() || self.origins.iter().any(|o| o == "*") {
            return true;
        }
        match origin {
            Some(o) => self.origins.iter().any(|a| a.eq_ignore_ascii_case(o)),
            // Non-browser clients send no Origin; the allow-list guards browsers.
            None => true,
        }
    }
}
