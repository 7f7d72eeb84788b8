//! The plugin's `config` table from `plugins.toml`.

use serde::Deserialize;
use std::sync::OnceLock;

/// Settings; every field has a default.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct Config {
    /// LetShare: most members (connections) in one room, across every gateway.
    pub max_room_members: u64,
    /// LetShare: most rooms one connection may be in at once.
    pub max_rooms_per_connection: usize,
    /// LetShare: most distinct events one connection may subscribe to in one room.
    pub max_events_per_room: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_room_members: 50,
            max_rooms_per_connection: 8,
            max_events_per_room: 32,
        }
    }
}

static CURRENT: OnceLock<Config> = OnceLock::new();

impl Config {
    /// Parses the JSON config; returns it and the keys it did not know.
    pub fn parse(json: &str) -> Result<(Config, Vec<String>), String> {
        let value: serde_json::Value = if json.trim().is_empty() {
            serde_json::Value::Object(Default::default())
        } else {
            serde_json::from_str(json).map_err(|e| format!("ably-rooms config: {e}"))?
        };
        let known = [
            "max_room_members",
            "max_rooms_per_connection",
            "max_events_per_room",
        ];
        let unknown = value
            .as_object()
            .map(|o| {
                o.keys()
                    .filter(|k| !known.contains(&k.as_str()))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        let config: Config =
            serde_json::from_value(value).map_err(|e| format!("ably-rooms config: {e}"))?;
        if config.max_room_members == 0 || config.max_rooms_per_connection == 0 {
            return Err("ably-rooms config: limits must be positive".into());
        }
        Ok((config, unknown))
    }

    /// Makes this the configuration of this instance (the first install wins; `init` runs once
    /// per instance).
    pub fn install(self) {
        let _ = CURRENT.set(self);
    }

    /// The installed configuration (defaults before `init`).
    pub fn current() -> &'static Config {
        CURRENT.get_or_init(Config::default)
    }
}
