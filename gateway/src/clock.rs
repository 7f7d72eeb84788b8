//! The process clock: wall-clock Unix time in milliseconds, as stamped on connections, stream
//! ids, key-value expiries and token checks.

/// Unix time in milliseconds (0 if the system clock is before 1970).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
