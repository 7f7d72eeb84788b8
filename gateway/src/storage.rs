//! Blob storage for plugins and the compaction worker: a directory (default), S3, GCS or
//! memory. Names are `/`-separated and used verbatim as object keys (y-redis names them
//! `enc(room)/enc(docid)/uuid`, already percent-encoded, so nothing is encoded again).

use crate::config::{StorageConfig, StorageKind};
use bytes::Bytes;
use futures::TryStreamExt;
use object_store::ObjectStore;
use object_store::path::Path as ObjPath;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Why a storage operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The name is empty, absolute, has `.`/`..`/empty segments, or starts with the reserved
    /// `.gateway-tmp`.
    #[error("invalid object name '{0}'")]
    InvalidName(String),
    /// The backend failed.
    #[error("storage: {0}")]
    Backend(String),
    /// The configuration is incomplete.
    #[error("storage config: {0}")]
    Config(String),
}

/// The configured blob store.
#[derive(Clone)]
pub enum Storage {
    /// Files under a root directory, written atomically (temporary file + rename).
    Dir(Arc<PathBuf>),
    /// An `object_store` backend (S3, GCS, memory).
    Object(Arc<dyn ObjectStore>),
}

/// The directory under a `Dir` root where writes in progress live (a reserved name).
const TMP_DIR: &str = ".gateway-tmp";

fn check_name(name: &str) -> Result<(), StorageError> {
    let bad = name.is_empty()
        || name.starts_with('/')
        || name.split('/').next() == Some(TMP_DIR)
        || name
            .split('/')
            .any(|s| s.is_empty() || s == "." || s == "..")
        || name.bytes().any(|b| b < 0x20);
    if bad {
        Err(StorageError::InvalidName(name.to_string()))
    } else {
        Ok(())
    }
}

/// The object path for a name, verbatim (no second percent-encoding).
fn obj_path(name: &str) -> Result<ObjPath, StorageError> {
    ObjPath::parse(name).map_err(|_| StorageError::InvalidName(name.to_string()))
}

fn check_prefix(prefix: &str) -> Result<(), StorageError> {
    if prefix.is_empty() {
        return Ok(());
    }
    check_name(prefix.trim_end_matches('/'))
}

/// HTTP timeouts for S3/GCS: a hung store fails a request in 15 s instead of the client's
/// default 30 s, so the compaction worker (one batch at a time) moves on sooner.
fn client_options() -> object_store::ClientOptions {
    object_store::ClientOptions::new()
        .with_connect_timeout(std::time::Duration::from_secs(5))
        .with_timeout(std::time::Duration::from_secs(15))
}

/// Retries of failed S3/GCS requests: a few, within 30 s (the worker retries the task later).
fn retry_config() -> object_store::RetryConfig {
    object_store::RetryConfig {
        max_retries: 4,
        retry_timeout: std::time::Duration::from_secs(30),
        ..object_store::RetryConfig::default()
    }
}

fn secret(lit: &Option<String>, env: &Option<String>) -> Option<String> {
    env.as_ref()
        .and_then(|v| std::env::var(v).ok())
        .or_else(|| lit.clone())
}

impl Storage {
    /// Opens the store described by `cfg` (relative paths against `base`).
    pub fn open(cfg: &StorageConfig, base: &Path) -> Result<Storage, StorageError> {
        let be = |e: object_store::Error| StorageError::Backend(e.to_string());
        match cfg.kind {
            StorageKind::Fs => {
                let root = if cfg.path.is_absolute() {
                    cfg.path.clone()
                } else {
                    base.join(&cfg.path)
                };
                std::fs::create_dir_all(&root)
                    .map_err(|e| StorageError::Backend(format!("{}: {e}", root.display())))?;
                Ok(Storage::Dir(Arc::new(root)))
            }
            StorageKind::Memory => Ok(Storage::Object(Arc::new(
                object_store::memory::InMemory::new(),
            ))),
            StorageKind::S3 => {
                let bucket = cfg
                    .bucket
                    .clone()
                    .ok_or_else(|| StorageError::Config("s3 needs a bucket".into()))?;
                let mut b = object_store::aws::AmazonS3Builder::from_env()
                    .with_bucket_name(bucket)
                    // Client options first: they replace `allow_http`, which is one of them.
                    .with_client_options(client_options())
                    .with_allow_http(cfg.allow_http)
                    .with_retry(retry_config());
                if let Some(r) = &cfg.region {
                    b = b.with_region(r);
                }
                if let Some(e) = &cfg.endpoint {
                    b = b.with_endpoint(e).with_virtual_hosted_style_request(false);
                }
                if let Some(k) = secret(&cfg.access_key_id, &cfg.access_key_id_env) {
                    b = b.with_access_key_id(k);
                }
                if let Some(k) = secret(&cfg.secret_access_key, &cfg.secret_access_key_env) {
                    b = b.with_secret_access_key(k);
                }
                Ok(Storage::Object(Arc::new(b.build().map_err(be)?)))
            }
            StorageKind::Gcs => {
                let bucket = cfg
                    .bucket
                    .clone()
                    .ok_or_else(|| StorageError::Config("gcs needs a bucket".into()))?;
                let mut b = object_store::gcp::GoogleCloudStorageBuilder::from_env()
                    .with_bucket_name(bucket)
                    .with_client_options(client_options())
                    .with_retry(retry_config());
                if let Some(p) = &cfg.service_account_path {
                    b = b.with_service_account_path(p.display().to_string());
                }
                Ok(Storage::Object(Arc::new(b.build().map_err(be)?)))
            }
        }
    }

    /// Reads an object; `None` when it does not exist.
    pub async fn get(&self, name: &str) -> Result<Option<Bytes>, StorageError> {
        check_name(name)?;
        match self {
            Storage::Dir(root) => match tokio::fs::read(root.join(name)).await {
                Ok(b) => Ok(Some(Bytes::from(b))),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(StorageError::Backend(format!("{name}: {e}"))),
            },
            Storage::Object(s) => match s.get(&obj_path(name)?).await {
                Ok(r) => r
                    .bytes()
                    .await
                    .map(Some)
                    .map_err(|e| StorageError::Backend(e.to_string())),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(StorageError::Backend(e.to_string())),
            },
        }
    }

    /// Writes (replaces) an object atomically.
    pub async fn put(&self, name: &str, data: Bytes) -> Result<(), StorageError> {
        check_name(name)?;
        match self {
            Storage::Dir(root) => {
                let path = root.join(name);
                // Written beside the tree and renamed into place: a short temporary name
                // whatever the object's, never listed, removed again when the write fails.
                let tmp_dir = root.join(TMP_DIR);
                let tmp = tmp_dir.join(uuid::Uuid::new_v4().to_string());
                let io = |e: std::io::Error| StorageError::Backend(format!("{name}: {e}"));
                tokio::task::spawn_blocking(move || {
                    use std::io::Write;
                    std::fs::create_dir_all(&tmp_dir)?;
                    if let Some(dir) = path.parent() {
                        std::fs::create_dir_all(dir)?;
                    }
                    let written = std::fs::File::create(&tmp).and_then(|mut f| {
                        f.write_all(&data)?;
                        f.sync_all()?;
                        std::fs::rename(&tmp, &path)
                    });
                    if written.is_err() {
                        let _ = std::fs::remove_file(&tmp);
                    }
                    written
                })
                .await
                .map_err(|e| StorageError::Backend(e.to_string()))?
                .map_err(io)
            }
            Storage::Object(s) => s
                .put(&obj_path(name)?, data.into())
                .await
                .map(drop)
                .map_err(|e| StorageError::Backend(e.to_string())),
        }
    }

    /// Deletes an object; a missing one is not an error.
    pub async fn delete(&self, name: &str) -> Result<(), StorageError> {
        check_name(name)?;
        match self {
            Storage::Dir(root) => match tokio::fs::remove_file(root.join(name)).await {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(StorageError::Backend(format!("{name}: {e}"))),
            },
            Storage::Object(s) => match s.delete(&obj_path(name)?).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                Err(e) => Err(StorageError::Backend(e.to_string())),
            },
        }
    }

    /// Names of every object under the directory prefix `prefix`, sorted.
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        check_prefix(prefix)?;
        let mut out = match self {
            Storage::Dir(root) => {
                let root = root.as_ref().clone();
                let prefix = prefix.trim_end_matches('/').to_string();
                tokio::task::spawn_blocking(move || list_dir(&root, &prefix))
                    .await
                    .map_err(|e| StorageError::Backend(e.to_string()))??
            }
            Storage::Object(s) => {
                let p = prefix.trim_end_matches('/');
                let p = if p.is_empty() {
                    None
                } else {
                    Some(obj_path(p)?)
                };
                s.list(p.as_ref())
                    .map_ok(|m| m.location.as_ref().to_string())
                    .try_collect::<Vec<_>>()
                    .await
                    .map_err(|e| StorageError::Backend(e.to_string()))?
            }
        };
        out.sort();
        Ok(out)
    }
}

fn list_dir(root: &Path, prefix: &str) -> Result<Vec<String>, StorageError> {
    let mut out = Vec::new();
    let start = if prefix.is_empty() {
        root.to_path_buf()
    } else {
        root.join(prefix)
    };
    let mut stack = vec![(start, prefix.to_string())];
    while let Some((dir, name)) = stack.pop() {
        let rd = match std::fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(StorageError::Backend(format!("{}: {e}", dir.display()))),
        };
        for ent in rd.flatten() {
            let Ok(file) = ent.file_name().into_string() else {
                continue;
            };
            if name.is_empty() && file == TMP_DIR {
                continue; // writes in progress
            }
            let full = if name.is_empty() {
                file.clone()
            } else {
                format!("{name}/{file}")
            };
            match ent.file_type() {
                Ok(t) if t.is_dir() => stack.push((ent.path(), full)),
                Ok(_) => out.push(full),
                Err(_) => {}
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn exercise(s: &Storage) {
        s.put("a%20b/index/u1", Bytes::from_static(b"one"))
            .await
            .unwrap();
        s.put("a%20b/index/u2", Bytes::from_static(b"two"))
            .await
            .unwrap();
        s.put("other/index/u3", Bytes::from_static(b"3"))
            .await
            .unwrap();
        assert_eq!(
            s.list("a%20b/index/").await.unwrap(),
            vec!["a%20b/index/u1", "a%20b/index/u2"]
        );
        assert_eq!(
            s.get("a%20b/index/u2").await.unwrap().as_deref(),
            Some(&b"two"[..])
        );
        s.delete("a%20b/index/u1").await.unwrap();
        s.delete("a%20b/index/u1").await.unwrap();
        assert_eq!(s.get("a%20b/index/u1").await.unwrap(), None);
        assert_eq!(s.list("a%20b/index").await.unwrap().len(), 1);
        assert!(s.get("../x").await.is_err());
    }

    #[tokio::test]
    async fn dir_and_memory_agree() {
        let dir = std::env::temp_dir().join(format!("gw-st-{}", uuid::Uuid::new_v4()));
        let cfg = StorageConfig {
            path: dir.clone(),
            ..Default::default()
        };
        let s = Storage::open(&cfg, Path::new(".")).unwrap();
        exercise(&s).await;
        assert!(
            dir.join("a%20b/index/u2").exists(),
            "names are used verbatim"
        );
        std::fs::remove_dir_all(&dir).unwrap();
        let cfg = StorageConfig {
            kind: StorageKind::Memory,
            ..Default::default()
        };
        exercise(&Storage::open(&cfg, Path::new(".")).unwrap()).await;
    }
}
