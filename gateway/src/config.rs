//! `plugins.toml`: listeners, limits, auth profiles, plugins and routes.

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
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: vec![SocketAddr::from(([127, 0, 0, 1], 8080))],
            cache_dir: PathBuf::from(".gateway-cache"),
            shutdown_grace_ms: 5000,
            max_http_body_bytes: 1 << 20,
        }
    }
}

/// Connection to a Redis server (standalone, >= 6.2) that carries the streams.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    /// `redis://[user:pass@]host:port[/db]`; `url_env` wins when set.
    #[serde(default)]
    pub url: Option<String>,
    /// Environment variable holding the URL.
    #[serde(default)]
    pub url_env: Option<String>,
}

impl RedisConfig {
    /// The URL to connect to.
    pub fn resolved_url(&self) -> Result<String, String> {
        if let Some(var) = &self.url_env
            && let Ok(v) = std::env::var(var)
        {
            return Ok(v);
        }
        self.url
            .clone()
            .ok_or_else(|| "[redis] needs url or url_env (set)".to_string())
    }
}

/// The embedded stream backend: entries live in memory and are appended to a log file in
/// `data_dir` before anyone sees them, so a restart (or a crash) loses nothing delivered.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StreamsConfig {
    /// Directory of the stream log; relative to the config file.
    pub data_dir: PathBuf,
    /// `fdatasync` the log at most this often (0 = never; a process crash loses nothing
    /// either way, this bounds what a power loss may take).
    pub sync_interval_ms: u64,
}

impl Default for StreamsConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("data/streams"),
            sync_interval_ms: 1000,
        }
    }
}

/// Which blob store to use.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum StorageKind {
    /// Files under `path`.
    #[default]
    Fs,
    /// Amazon S3 or an S3-compatible server.
    S3,
    /// Google Cloud Storage.
    Gcs,
    /// Process memory (tests).
    Memory,
}

/// Blob storage settings.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// Backend.
    pub kind: StorageKind,
    /// Root directory for `fs`; relative to the config file.
    pub path: PathBuf,
    /// Bucket for `s3` and `gcs`.
    pub bucket: Option<String>,
    /// Endpoint URL for S3-compatible servers.
    pub endpoint: Option<String>,
    /// S3 region.
    pub region: Option<String>,
    /// S3 access key id (prefer `access_key_id_env`).
    pub access_key_id: Option<String>,
    /// Environment variable with the S3 access key id.
    pub access_key_id_env: Option<String>,
    /// S3 secret key (prefer `secret_access_key_env`).
    pub secret_access_key: Option<String>,
    /// Environment variable with the S3 secret key.
    pub secret_access_key_env: Option<String>,
    /// Allow plain-HTTP endpoints (local S3 servers).
    pub allow_http: bool,
    /// GCS service account JSON file.
    pub service_account_path: Option<PathBuf>,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            kind: StorageKind::Fs,
            path: PathBuf::from("data/storage"),
            bucket: None,
            endpoint: None,
            region: None,
            access_key_id: None,
            access_key_id_env: None,
            secret_access_key: None,
            secret_access_key_env: None,
            allow_http: false,
            service_account_path: None,
        }
    }
}

/// The compaction worker (y-redis semantics: tasks on `{prefix}:worker`, debounced by
/// XAUTOCLAIM idle time).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct WorkerConfig {
    /// Run the worker inside `gateway serve` (`gateway worker` always runs it).
    pub enabled: bool,
    /// Stream prefixes whose worker queues are served (a string or a list).
    #[serde(deserialize_with = "one_or_many")]
    pub prefix: Vec<String>,
    /// A room is compacted once its task has been idle this long.
    pub task_debounce_ms: u64,
    /// Stream entries are kept at least this long after the newest entry.
    pub min_message_lifetime_ms: u64,
    /// Tasks claimed per round.
    pub try_claim_count: u32,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            prefix: vec!["y".into()],
            task_debounce_ms: 10_000,
            min_message_lifetime_ms: 60_000,
            try_claim_count: 5,
        }
    }
}

fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
    })
}

/// Per-connection limits; a route may override any field.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest single frame; larger closes with 1009.
    pub max_frame_bytes: usize,
    /// Largest reassembled message; larger closes with 1009.
    pub max_message_bytes: usize,
    /// Outbound bytes queued before the connection is cut off as a slow consumer.
    pub queue_max_bytes: usize,
    /// Outbound frames queued before the connection is cut off as a slow consumer.
    pub queue_max_frames: usize,
    /// Interval between server pings.
    pub ping_interval_ms: u64,
    /// Silence after which a connection is closed with 1001.
    pub idle_timeout_ms: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_frame_bytes: 64 << 10,
            max_message_bytes: 1 << 20,
            queue_max_bytes: 1 << 20,
            queue_max_frames: 4096,
            ping_interval_ms: 20_000,
            idle_timeout_ms: 60_000,
        }
    }
}

/// Optional overrides of [`Limits`] for one route.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LimitOverrides {
    max_frame_bytes: Option<usize>,
    max_message_bytes: Option<usize>,
    queue_max_bytes: Option<usize>,
    queue_max_frames: Option<usize>,
    ping_interval_ms: Option<u64>,
    idle_timeout_ms: Option<u64>,
}

impl LimitOverrides {
    /// The defaults with this route's overrides applied.
    pub fn apply(&self, base: Limits) -> Limits {
        Limits {
            max_frame_bytes: self.max_frame_bytes.unwrap_or(base.max_frame_bytes),
            max_message_bytes: self.max_message_bytes.unwrap_or(base.max_message_bytes),
            queue_max_bytes: self.queue_max_bytes.unwrap_or(base.queue_max_bytes),
            queue_max_frames: self.queue_max_frames.unwrap_or(base.queue_max_frames),
            ping_interval_ms: self.ping_interval_ms.unwrap_or(base.ping_interval_ms),
            idle_timeout_ms: self.idle_timeout_ms.unwrap_or(base.idle_timeout_ms),
        }
    }
}

/// Unit of the `exp`/`nbf`/`iat` claims.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum ExpUnit {
    /// Seconds since the epoch (RFC 7519).
    #[default]
    Seconds,
    /// Milliseconds since the epoch (y-redis).
    Milliseconds,
}

/// How tokens are found and verified for a route.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthProfile {
    /// Accepted algorithms, e.g. `["HS256"]`; `none` is never accepted.
    pub algorithms: Vec<String>,
    /// Environment variable holding the HMAC secret.
    pub secret_env: Option<String>,
    /// A literal HMAC secret (tests only; prefer `secret_env`).
    pub secret: Option<String>,
    /// PEM file with an RSA or EC public key.
    pub public_key_file: Option<PathBuf>,
    /// Environment variable holding a PEM public key.
    pub public_key_env: Option<String>,
    /// JWK or JWK-set file.
    pub jwk_file: Option<PathBuf>,
    /// Unit of `exp`/`nbf`.
    #[serde(default)]
    pub exp_unit: ExpUnit,
    /// Accepted audiences; empty means `aud` is not checked.
    #[serde(default)]
    pub audience: Vec<String>,
    /// Required issuer.
    pub issuer: Option<String>,
    /// Claims that must be present.
    #[serde(default)]
    pub required_claims: Vec<String>,
    /// Allowed clock skew in seconds.
    #[serde(default)]
    pub leeway_s: u64,
    /// Where the token is taken from, in order: `query:NAME`, `header:authorization`,
    /// `subprotocol:PREFIX`.
    #[serde(default = "default_token_from")]
    pub token_from: Vec<String>,
    /// y-redis permission callback: the gateway GETs `{url}/{room}/{claims.yuserid}` and
    /// expects `{"yaccess": "rw" | "r"}`; anything else refuses the connection (403) and an
    /// unreachable or malformed answer refuses it with 401. The answer reaches the plugin as
    /// the claim `yaccess`.
    pub permission_callback: Option<String>,
    /// The claim holding the user id for `permission_callback`.
    #[serde(default = "default_user_claim")]
    pub user_claim: String,
}

fn default_user_claim() -> String {
    "yuserid".into()
}

fn default_token_from() -> Vec<String> {
    vec!["query:token".into(), "header:authorization".into()]
}

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
    pub faults: crate::plugin::faults::FaultPolicy,
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
                crate::auth::parse_algorithm(alg).map_err(|e| format!("[auth.{name}] {e}"))?;
            }
            for src in &p.token_from {
                crate::auth::TokenSource::parse(src).map_err(|e| format!("[auth.{name}] {e}"))?;
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
