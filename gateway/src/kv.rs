//! A plugin's key-value namespace, owned by the host so it survives instance churn and reloads.

use parking_lot::Mutex;
use std::collections::BTreeMap;

/// Longest key accepted.
pub const MAX_KEY: usize = 1024;
/// Largest value accepted.
pub const MAX_VALUE: usize = 1 << 20;
/// Most entries one namespace holds.
pub const MAX_ENTRIES: usize = 1_000_000;
/// Most bytes (keys plus values) one namespace holds.
pub const MAX_BYTES: usize = 256 << 20;

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

/// An ordered map with optional per-entry expiry (unix ms), bounded by entries and bytes.
pub struct Kv {
    map: Mutex<Inner>,
    max_bytes: usize,
}

impl Default for Kv {
    fn default() -> Self {
        Self::with_max_bytes(MAX_BYTES)
    }
}

#[derive(Default)]
struct Inner {
    entries: BTreeMap<String, Entry>,
    /// Keys plus values of every entry held.
    bytes: usize,
}

impl Inner {
    fn remove(&mut self, key: &str) -> Option<Entry> {
        let old = self.entries.remove(key)?;
        self.bytes -= key.len() + old.0.len();
        Some(old)
    }

    fn purge_expired(&mut self, now_ms: u64) {
        let mut freed = 0;
        self.entries.retain(|k, (v, exp)| {
            let keep = exp.is_none_or(|e| e > now_ms);
            if !keep {
                freed += k.len() + v.len();
            }
            keep
        });
        self.bytes -= freed;
    }
}

impl Kv {
    /// A namespace holding at most `max_bytes` of keys and values.
    pub fn with_max_bytes(max_bytes: usize) -> Self {
        Self {
            map: Mutex::default(),
            max_bytes,
        }
    }

    /// The live value of `key`.
    pub fn get(&self, key: &str, now_ms: u64) -> Option<Vec<u8>> {
        let mut m = self.map.lock();
        match m.entries.get(key) {
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
        let old = m.entries.get(&key).map_or(0, |(v, _)| key.len() + v.len());
        let after = |m: &Inner| m.bytes - old + key.len() + value.len();
        let full = |m: &Inner| {
            (m.entries.len() >= MAX_ENTRIES && old == 0 && !m.entries.contains_key(&key))
                || after(m) > self.max_bytes
        };
        if full(&m) {
            m.purge_expired(now_ms);
            if full(&m) {
                return Err(KvError::TooLarge(format!(
                    "namespace is full ({MAX_ENTRIES} entries or {} bytes)",
                    self.max_bytes
                )));
            }
        }
        m.remove(&key);
        m.bytes += key.len() + value.len();
        m.entries
            .insert(key, (value, ttl_ms.map(|t| now_ms.saturating_add(t))));
        Ok(())
    }

    /// Deletes `key`; returns whether a live entry existed.
    pub fn delete(&self, key: &str, now_ms: u64) -> bool {
        matches!(self.map.lock().remove(key), Some((_, exp)) if exp.is_none_or(|e| e > now_ms))
    }

    /// Up to `limit` live entries with keys starting with `prefix`, in key order.
    pub fn scan(&self, prefix: &str, limit: usize, now_ms: u64) -> Vec<(String, Vec<u8>)> {
        let m = self.map.lock();
        m.entries
            .range(prefix.to_string()..)
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
        m.entries
            .range(prefix.to_string()..)
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

    #[test]
    fn bounded_by_bytes() {
        let kv = Kv::with_max_bytes(100);
        for i in 0..4 {
            kv.set(format!("k{i}"), vec![0; 20], None, 0).unwrap(); // 22 bytes each
        }
        assert!(matches!(
            kv.set("k4".into(), vec![0; 20], None, 0),
            Err(KvError::TooLarge(_))
        ));
        // Overwriting in place and deleting free room.
        kv.set("k0".into(), vec![0; 2], None, 0).unwrap();
        kv.set("k4".into(), vec![0; 20], Some(5), 0).unwrap();
        assert!(kv.delete("k1", 0));
        kv.set("k5".into(), vec![0; 20], None, 10).unwrap();
        // Expired entries are purged to make room.
        kv.set("k6".into(), vec![0; 20], None, 10).unwrap();
        assert_eq!(kv.count("k", 10), 5);
    }
}
