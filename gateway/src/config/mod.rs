//! `plugins.toml`: listeners, limits, auth profiles, plugins and routes. The schema is plain
//! data: this module and its children import nothing else of the crate, so every other module
//! may depend on it.

mod auth;
mod backends;
mod faults;
mod limits;
mod plugins;

pub use auth::{AuthProfile, ExpUnit, TokenSource, parse_algorithm};
pub use backends::{
    CpuPriority, RedisConfig, StorageConfig, StorageKind, StreamsConfig, WorkerConfig, redacted_url,
};
pub use faults::{FaultPolicy, OnFault};
pub use limits::{LimitOverrides, Limits};
pub use plugins::{PluginConfig, Route, RouteKind};

use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Why a configuration file was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}")]
    Io {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML or does not match the schema.
    #[error("{path}:{line}:{col}: {message}")]
    Parse {
        /// The file.
        path: String,
        /// 1-based line of the error.
        line: usize,
        /// 1-based column of the error.
        col: usize,
        /// What is wrong.
        message: String,
    },
    /// The file parses but is inconsistent.
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
}

/// The whole gateway configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Listener and process settings.
    #[serde(default)]
    pub server: ServerConfig,
    /// Default per-connection limits.
    #[serde(default)]
    pub limits: Limits,
    /// Auth profiles by name.
    #[serde(default)]
    pub auth: BTreeMap<String, AuthProfile>,
    /// Plugins by name.
    #[serde(default)]
    pub plugins: BTreeMap<String, PluginConfig>,
    /// Routes, matched in order.
    #[serde(default)]
    pub routes: Vec<Route>,
    /// Redis for streams when several gateways share rooms; absent = in-process streams.
    pub redis: Option<RedisConfig>,
    /// The embedded (in-process) stream backend.
    #[serde(default)]
    pub streams: StreamsConfig,
    /// Blob storage for plugins and the compaction worker.
    #[serde(default)]
    pub storage: StorageConfig,
    /// The stream compaction worker.
    #[serde(default)]
    pub worker: WorkerConfig,
    /// Directory the file was read from; relative paths resolve against it.
    #[serde(skip)]
    pub base_dir: PathBuf,
}

/// Listener and process settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Addresses to listen on.
    pub listen: Vec<SocketAddr>,
    /// Where precompiled plugin components are cached.
    pub cache_dir: PathBuf,
    /// How long a graceful shutdown waits for connections to drain.
    pub shutdown_grace_ms: u64,
    /// Largest HTTP request body accepted for plugin HTTP routes.
    pub max_http_body_bytes: usize,
    /// Most WebSocket connections this gateway holds; more are refused with 503 (0 = no cap).
    pub max_connections: usize,
    /// Most WebSocket connections from one IP address; more are refused with 429 (0 = no cap).
    pub max_connections_per_ip: usize,
    /// New WebSocket connections accepted per second, gateway-wide (bursts of one second's
    /// worth); more are refused with 503 and `Retry-After: 1` (0 = no limit).
    pub max_upgrades_per_s: u32,
    /// Connections whose `on-open` runs at once; more are refused with 503 (0 = no cap).
    pub max_concurrent_opens: usize,
    /// Serve the built demo pages (`scripts/build-demo`) under `/demo/`.
    pub demo: bool,
    /// Where the built demo pages are, relative to the config file's directory.
    pub demo_dir: PathBuf,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: vec![SocketAddr::from(([127, 0, 0, 1], 8080))],
            cache_dir: PathBuf::from(".gateway-cache"),
            shutdown_grace_ms: 5000,
            max_http_body_bytes: 1 << 20,
            max_connections: 0,
            max_connections_per_ip: 0,
            max_upgrades_per_s: 0,
            max_concurrent_opens: 0,
            demo: false,
            demo_dir: PathBuf::from("demo/dist"),
        }
    }
}

impl Config {
    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.display().to_string(),
            source,
        })?;
        let base = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        let base = if base.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            base
        };
        Self::parse(&text, &path.display().to_string(), &base)
    }

    /// Parses and validates configuration text; `name` is used in error messages.
    pub fn parse(text: &str, name: &str, base_dir: &Path) -> Result<Config, ConfigError> {
        let mut cfg: Config = toml::from_str(text).map_err(|e| {
            let (line, col) = e.span().map(|s| line_col(text, s.start)).unwrap_or((1, 1));
            ConfigError::Parse {
                path: name.to_string(),
                line,
                col,
                message: e.message().to_string(),
            }
        })?;
        cfg.base_dir = base_dir.to_path_buf();
        cfg.validate().map_err(|message| ConfigError::Invalid {
            path: name.to_string(),
            message,
        })?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<(), String> {
        if self.server.listen.is_empty() {
            return Err("[server] listen must name at least one address".into());
        }
        for (name, p) in &self.auth {
            if p.algorithms.is_empty() {
                return Err(format!("[auth.{name}] algorithms is empty"));
            }
            for alg in &p.algorithms {
                parse_algorithm(alg).map_err(|e| format!("[auth.{name}] {e}"))?;
            }
            for src in &p.token_from {
                TokenSource::parse(src).map_err(|e| format!("[auth.{name}] {e}"))?;
            }
        }
        if let Some(r) = &self.redis {
            r.resolved_url()?;
        }
        if matches!(self.storage.kind, StorageKind::S3 | StorageKind::Gcs)
            && self.storage.bucket.is_none()
        {
            return Err("[storage] s3 and gcs need a bucket".into());
        }
        if self.worker.try_claim_count == 0 {
            return Err("[worker] try_claim_count must be > 0".into());
        }
        for (name, p) in &self.plugins {
            if p.max_instances == 0 || p.max_instances > 1024 {
                return Err(format!("[plugins.{name}] max_instances must be 1..=1024"));
            }
            if p.memory_limit_mb == 0 || p.memory_limit_mb > 4096 {
                return Err(format!("[plugins.{name}] memory_limit_mb must be 1..=4096"));
            }
            if p.call_timeout_ms == 0 {
                return Err(format!("[plugins.{name}] call_timeout_ms must be > 0"));
            }
            if p.faults.window_s == 0 {
                return Err(format!("[plugins.{name}.faults] window_s must be > 0"));
            }
            if let Some(bad) = p.env.iter().find(|v| {
                v.is_empty() || !v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            }) {
                return Err(format!(
                    "[plugins.{name}] env: '{bad}' is not an environment variable name"
                ));
            }
        }
        for (i, r) in self.routes.iter().enumerate() {
            let at = format!("routes[{i}] ({})", r.path);
            if !r.path.starts_with('/') {
                return Err(format!("{at}: path must start with '/'"));
            }
            if !self.plugins.contains_key(&r.plugin) {
                return Err(format!("{at}: unknown plugin '{}'", r.plugin));
            }
            if let Some(a) = &r.auth
                && !self.auth.contains_key(a)
            {
                return Err(format!("{at}: unknown auth profile '{a}'"));
            }
            if r.admin && r.kind == RouteKind::Websocket {
                return Err(format!("{at}: admin applies to http routes only"));
            }
            if r.path.contains('*') && !r.path.ends_with("/*") {
                return Err(format!("{at}: '*' is only allowed as a trailing '/*'"));
            }
        }
        Ok(())
    }

    /// Resolves a path from the file against the file's directory.
    pub fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base_dir.join(p)
        }
    }

    /// The route serving `path` with the given kind, first match wins.
    pub fn route_for(&self, path: &str, kind: RouteKind) -> Option<&Route> {
        self.routes
            .iter()
            .find(|r| r.kind == kind && r.matches(path))
    }
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.len() - before.rfind('\n').map(|i| i + 1).unwrap_or(0) + 1;
    (line, col)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_line_and_column() {
        let err = Config::parse("[server]\nlisten = [\"x\"\n", "p.toml", Path::new("."))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("p.toml:2:"), "{err}");
    }

    #[test]
    fn rejects_unknown_plugin() {
        let err = Config::parse(
            "[[routes]]\npath = \"/ws\"\nkind = \"websocket\"\nplugin = \"nope\"\n",
            "p.toml",
            Path::new("."),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("unknown plugin 'nope'"), "{err}");
    }

    #[test]
    fn worker_cpu_priority() {
        let parse = |v: &str| {
            Config::parse(
                &format!("[worker]\ncpu_priority = \"{v}\"\n"),
                "p.toml",
                Path::new("."),
            )
            .map(|c| c.worker.cpu_priority)
            .map_err(|e| e.to_string())
        };
        assert_eq!(parse("idle"), Ok(CpuPriority::Idle));
        assert_eq!(parse("normal"), Ok(CpuPriority::Normal));
        assert_eq!(
            Config::parse("", "p.toml", Path::new("."))
                .unwrap()
                .worker
                .cpu_priority,
            CpuPriority::Low
        );
        let err = parse("high").unwrap_err();
        assert!(err.starts_with("p.toml:2:"), "{err}");
    }

    #[test]
    fn shipped_config_is_valid() {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins.toml");
        Config::load(&p).unwrap();
    }

    #[test]
    fn prefix_routes_match() {
        let cfg = Config::parse(
            "[plugins.c]\nwasm = \"c.wasm\"\n[[routes]]\npath = \"/ws/*\"\nkind = \"http\"\nplugin = \"c\"\n",
            "p",
            Path::new("."),
        )
        .unwrap();
        assert!(cfg.route_for("/ws/online", RouteKind::Http).is_some());
        assert!(cfg.route_for("/ws", RouteKind::Http).is_none());
    }
}
