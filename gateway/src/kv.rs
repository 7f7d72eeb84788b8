//! A plugin's key-value namespace, owned by the host so it survives instance churn and reloads.

use parking_lot::Mutex;
use std::collections::BTreeMap;

/// Longest key accepted.
pub const MAX_KEY: usize = 1024;
/// Largest value accepted.
pub const MAX_VALUE: usize = 1 << 20;
/// Most entries one namespace holds.
pub const MAX_ENTRIES: usize = 1_000_000;

/// Why a write was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KvError {
    /// The key or value is too large, or the namespace is full.
    #[error("{0}")]
    TooLarge(String),
    /// The shared store (Redis) did not answer.
    #[error("key-value store unavailable: {0}")]
    Unavailable(String),
}

/// Refuses keys and values over the limits.
pub fn check(key: &str, value: &[u8]) -> Result<(), KvError> {
    if key.len() > MAX_KEY {
        return Err(KvError::TooLarge(format!(
            "key longer than {MAX_KEY} bytes"
        )));
    }
    if value.len() > MAX_VALUE {
        return Err(KvError::TooLarge(format!(
            "value larger than {MAX_VALUE} bytes"
        )));
    }
    Ok(())
}

/// A value and its expiry (unix ms), if any.
type Entry = (Vec<u8>, Option<u64>);

/// An ordered map with optional per-entry expiry (unix ms).
#[derive(Default)]
pub struct Kv {
    map: Mutex<BTreeMap<String, Entry>>,
}

impl Kv {
    /// The live value of `key`.
    pub fn get(&self, key: &str, now_ms: u64) -> Option<Vec<u8>> {
        let mut m = self.map.lock();
        match m.get(key) {
            Some((_, Some(exp))) if *exp <= now_ms => {
                m.remove(key);
                None
            }
            Some((v, _)) => Some(v.clone()),
            None => None,
        }
    }

    /// Writes `key`, expiring `ttl_ms` after `now_ms` when given.
    pub fn set(
        &self,
        key: String,
        value: Vec<u8>,
        ttl_ms: Option<u64>,
        now_ms: u64,
    ) -> Result<(), KvError> {
        check(&key, &value)?;
        let mut m = self.map.lock();
        if m.len() >= MAX_ENTRIES && !m.contains_key(&key) {
            m.retain(|_, (_, exp)| exp.is_none_or(|e| e > now_ms));
            if m.len() >= MAX_ENTRIES {
                return Err(KvError::TooLarge(format!(
                    "namespace holds {MAX_ENTRIES} entries"
                )));
            }
        }
        m.insert(key, (value, ttl_ms.map(|t| now_ms.saturating_add(t))));
        Ok(())
    }

    /// Deletes `key`; returns whether a live entry existed.
    pub fn delete(&self, key: &str, now_ms: u64) -> bool {
        matches!(self.map.lock().remove(key), Some((_, exp)) if exp.is_none_or(|e| e > now_ms))
    }

    /// Up to `limit` live entries with keys starting with `prefix`, in key order.
    pub fn scan(&self, prefix: &str, limit: usize, now_ms: u64) -> Vec<(String, Vec<u8>)> {
        let m = self.map.lock();
        m.range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .filter(|(_, (_, exp))| exp.is_none_or(|e| e > now_ms))
            .take(limit)
            .map(|(k, (v, _))| (k.clone(), v.clone()))
            .collect()
    }
}

impl Kv {
    /// How many live entries have keys starting with `prefix`.
    pub fn count(&self, prefix: &str, now_ms: u64) -> u64 {
        let m = self.map.lock();
        m.range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .filter(|(_, (_, exp))| exp.is_none_or(|e| e > now_ms))
            .count() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_and_scan() {
        let kv = Kv::default();
        kv.set("a:1".into(), b"x".to_vec(), None, 0).unwrap();
        kv.set("a:2".into(), b"y".to_vec(), Some(10), 0).unwrap();
        kv.set("b:1".into(), b"z".to_vec(), None, 0).unwrap();
        assert_eq!(kv.scan("a:", 10, 5).len(), 2);
        assert_eq!(kv.scan("a:", 10, 10).len(), 1);
        assert_eq!(kv.count("a:", 5), 2);
        assert_eq!(kv.count("a:", 10), 1);
        assert_eq!(kv.get("a:2", 11), None);
        assert!(kv.delete("b:1", 0));
        assert!(!kv.delete("b:1", 0));
    }
}
