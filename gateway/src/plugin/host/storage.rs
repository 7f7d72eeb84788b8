//! The `storage` interface: named blobs in the configured object store.

use super::{HostState, MAX_BLOB, MAX_KEY, check_len};
use crate::plugin::bindings::gateway::plugin::{storage, types};
use bytes::Bytes;

fn storage_err(e: crate::storage::StorageError) -> types::HostError {
    match e {
        crate::storage::StorageError::InvalidName(m) => types::HostError::Invalid(m),
        other => types::HostError::Unavailable(other.to_string()),
    }
}

impl storage::Host for HostState {
    async fn get(&mut self, name: String) -> Result<Option<Vec<u8>>, types::HostError> {
        check_len("object name", name.len(), MAX_KEY)?;
        self.shared
            .storage
            .get(&name)
            .await
            .map(|b| b.map(|b| b.to_vec()))
            .map_err(storage_err)
    }

    async fn put(&mut self, name: String, data: Vec<u8>) -> Result<(), types::HostError> {
        check_len("object name", name.len(), MAX_KEY)?;
        check_len("object", data.len(), MAX_BLOB)?;
        self.shared
            .storage
            .put(&name, Bytes::from(data))
            .await
            .map_err(storage_err)
    }

    async fn delete(&mut self, name: String) -> Result<(), types::HostError> {
        check_len("object name", name.len(), MAX_KEY)?;
        self.shared.storage.delete(&name).await.map_err(storage_err)
    }

    async fn list(&mut self, prefix: String) -> Result<Vec<String>, types::HostError> {
        check_len("prefix", prefix.len(), MAX_KEY)?;
        self.shared.storage.list(&prefix).await.map_err(storage_err)
    }
}
