//! Where plugins keep lasting state outside the process: `[redis]`, `[streams]` (the embedded
//! stream log), `[storage]` and `[worker]` (stream compaction).

use serde::Deserialize;
use std::path::PathBuf;

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
    /// Prefix of the cluster bus's keys and channels (node heartbeats, PUB/SUB, presence).
    #[serde(default = "default_cluster_prefix")]
    pub cluster_prefix: String,
}

fn default_cluster_prefix() -> String {
    "gateway".to_string()
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
    /// Rewrite the log once it is this large and at least twice the live data (bytes).
    pub rewrite_min_bytes: u64,
}

impl Default for StreamsConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("data/streams"),
            sync_interval_ms: 1000,
            rewrite_min_bytes: 64 << 20,
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
    /// The CPU priority of the in-process worker's thread.
    pub cpu_priority: CpuPriority,
}

/// How the in-process worker competes with the connections for the cores.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum CpuPriority {
    /// Like every other thread.
    Normal,
    /// Nice 10: about a tenth of a core's share while the connections keep the cores busy.
    #[default]
    Low,
    /// Only when a core would otherwise idle (Linux `SCHED_IDLE`): the lowest latency for the
    /// connections, but compaction can fall behind on a saturated machine.
    Idle,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            prefix: vec!["y".into()],
            task_debounce_ms: 10_000,
            min_message_lifetime_ms: 60_000,
            try_claim_count: 5,
            cpu_priority: CpuPriority::Low,
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

/// `url` with any password replaced by `***`, for logs and error messages
/// (`redis://user:secret@host` -> `redis://user:***@host`).
pub fn redacted_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            let masked = if userinfo.contains(':') {
                format!("{user}:***")
            } else {
                "***".to_string()
            };
            format!("{scheme}://{masked}@{host}{path}")
        }
        None => url.to_string(),
    }
}

#[cfg(test)]
mod redaction_tests {
    use super::redacted_url;

    #[test]
    fn passwords_never_show() {
        assert_eq!(
            redacted_url("redis://user:s3cret@127.0.0.1:6379/0"),
            "redis://user:***@127.0.0.1:6379/0"
        );
        assert_eq!(redacted_url("redis://:s3cret@host"), "redis://:***@host");
        assert_eq!(redacted_url("rediss://token@host"), "rediss://***@host");
        assert_eq!(
            redacted_url("redis://127.0.0.1:6379"),
            "redis://127.0.0.1:6379"
        );
        assert_eq!(redacted_url("not a url"), "not a url");
    }
}
