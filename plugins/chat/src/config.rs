//! The plugin's `[plugins.chat.config]` table.

use std::sync::RwLock;

use serde_json::{Map, Value};

/// Settings from `plugins.toml`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// Default idle threshold of `POST /ws/cleanup`, in seconds.
    pub idle_cleanup_seconds: u64,
    /// Most entries in the `online_users` list sent on connect.
    pub max_online_list: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            idle_cleanup_seconds: 300,
            max_online_list: 100,
        }
    }
}

/// The config of this instance, set by `init`. A per-instance cache: `init` runs on every
/// new instance before any event, so it is always present when a handler runs.
static CURRENT: RwLock<Option<Config>> = RwLock::new(None);

impl Config {
    /// Parses the config JSON. An empty string or `null` means defaults; unknown keys are
    /// returned so the caller can warn about them.
    pub fn parse(json: &str) -> Result<(Config, Vec<String>), String> {
        let mut config = Config::default();
        if json.trim().is_empty() {
            return Ok((config, Vec::new()));
        }
        let table = match serde_json::from_str::<Value>(json) {
            Ok(Value::Null) => Map::new(),
            Ok(Value::Object(map)) => map,
            Ok(_) => return Err("the chat config must be a table".into()),
            Err(e) => return Err(format!("the chat config is not valid JSON: {e}")),
        };
        let mut unknown = Vec::new();
        for (key, value) in table {
            match key.as_str() {
                "idle_cleanup_seconds" => config.idle_cleanup_seconds = int(&key, &value)?,
                "max_online_list" => {
                    config.max_online_list = u32::try_from(int(&key, &value)?)
                        .map_err(|_| format!("`{key}` is too large"))?;
                }
                _ => unknown.push(key),
            }
        }
        Ok((config, unknown))
    }

    /// Makes `self` the config of this instance.
    pub fn install(self) {
        if let Ok(mut current) = CURRENT.write() {
            *current = Some(self);
        }
    }

    /// The config of this instance (defaults if `init` has not run).
    pub fn current() -> Config {
        CURRENT.read().ok().and_then(|c| *c).unwrap_or_default()
    }
}

/// A non-negative integer setting.
fn int(key: &str, value: &Value) -> Result<u64, String> {
    value
        .as_u64()
        .ok_or_else(|| format!("`{key}` must be a non-negative integer"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        for empty in ["", "  ", "null", "{}"] {
            assert_eq!(Config::parse(empty).unwrap(), (Config::default(), vec![]));
        }
    }

    #[test]
    fn values_and_unknown_keys() {
        let (c, unknown) =
            Config::parse(r#"{"idle_cleanup_seconds":60,"max_online_list":5,"other":1}"#).unwrap();
        assert_eq!(
            c,
            Config {
                idle_cleanup_seconds: 60,
                max_online_list: 5
            }
        );
        assert_eq!(unknown, vec!["other".to_string()]);
    }

    #[test]
    fn invalid() {
        assert!(Config::parse("[1]").is_err());
        assert!(Config::parse("{").is_err());
        assert!(Config::parse(r#"{"idle_cleanup_seconds":-1}"#).is_err());
        assert!(Config::parse(r#"{"idle_cleanup_seconds":"300"}"#).is_err());
        assert!(Config::parse(r#"{"max_online_list":1.5}"#).is_err());
        assert!(Config::parse(r#"{"max_online_list":5000000000}"#).is_err());
    }

    #[test]
    fn install_and_read() {
        let c = Config {
            idle_cleanup_seconds: 1,
            max_online_list: 2,
        };
        c.install();
        assert_eq!(Config::current(), c);
    }
}
