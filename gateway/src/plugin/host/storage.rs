//! The `storage` interface: named blobs in the configured object store, each plugin under its
//! `storage_root` (default `<plugin name>/`; it sees and lists only its own names, unprefixed).

use super::{HostState, MAX_BLOB, MAX_KEY, check_len};
use crate::plugin::bindings::gateway::plugin::{storage, types};
use bytes::Bytes;
use std::time::Instant;

fn storage_err(e: crate::storage::StorageError) -> types::HostError {
    match e {
        crate::storage::StorageError::InvalidName(m) => types::HostError::Invalid(m),
        other => types::HostError::Unavailable(other.to_string()),
    }
}

/// The store's name of a plugin's object.
fn own(root: &str, name: &str) -> String {
    format!("{root}{name}")
}

impl storage::Host for HostState {
    async fn get(&mut self, name: String) -> Result<Option<Vec<u8>>, types::HostError> {
        let started = Instant::now();
        let shared = self.shared.clone();
        let root = self.storage_root.clone();
        let r = async move {
            check_len("object name", name.len(), MAX_KEY)?;
            shared
                .storage
                .get(&own(&root, &name))
                .await
                .map(|b| b.map(|b| b.to_vec()))
                .map_err(storage_err)
        }
        .await;
        self.credit(started);
        r
    }

    async fn put(&mut self, name: String, data: Vec<u8>) -> Result<(), types::HostError> {
        let started = Instant::now();
        let shared = self.shared.clone();
        let root = self.storage_root.clone();
        let r = async move {
            check_len("object name", name.len(), MAX_KEY)?;
            check_len("object", data.len(), MAX_BLOB)?;
            shared
                .storage
                .put(&own(&root, &name), Bytes::from(data))
                .await
                .map_err(storage_err)
        }
        .await;
        self.credit(started);
        r
    }

    async fn delete(&mut self, name: String) -> Result<(), types::HostError> {
        let started = Instant::now();
        let shared = self.shared.clone();
        let root = self.storage_root.clone();
        let r = async move {
            check_len("object name", name.len(), MAX_KEY)?;
            shared
                .storage
                .delete(&own(&root, &name))
                .await
                .map_err(storage_err)
        }
        .await;
        self.credit(started);
        r
    }

    async fn list(&mut self, prefix: String) -> Result<Vec<String>, types::HostError> {
        let started = Instant::now();
        let shared = self.shared.clone();
        let root = self.storage_root.clone();
        let r = async move {
            check_len("prefix", prefix.len(), MAX_KEY)?;
            let mine = own(&root, "");
            let names = shared
                .storage
                .list(&own(&root, &prefix))
                .await
                .map_err(storage_err)?;
            Ok(names
                .into_iter()
                .filter_map(|n| n.strip_prefix(&mine).map(str::to_string))
                .collect())
        }
        .await;
        self.credit(started);
        r
    }
}
