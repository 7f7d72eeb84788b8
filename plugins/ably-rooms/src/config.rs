//! The plugin's `config` table from `plugins.toml`.

use crate::ably::Capability;
use serde::Deserialize;
use std::collections::BTreeMap;
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
    /// Ably: the API keys clients may connect with (`appId.keyId:secret`), besides those in the
    /// `GATEWAY_ABLY_KEYS` environment variable (comma-separated).
    pub keys: Vec<String>,
    /// Ably: capabilities per key name (`appId.keyId`); a key without one may do everything.
    pub capabilities: BTreeMap<String, serde_json::Value>,
    /// Ably: a gateway auth profile whose tokens are accepted as `access_token` (clientId from
    /// `sub` or `user_id`, capability from an `x-ably-capability` claim, else everything).
    pub token_profile: Option<String>,
    /// Ably: messages (MESSAGE and PRESENCE) per second one connection may send, with bursts
    /// of as many; more are NACKed with 42910. 0 = no limit.
    pub max_inbound_rate: u64,
    /// Ably: how long a channel's messages are kept for resume, rewind and history (seconds).
    pub history_seconds: u64,
    /// The parsed `capabilities`.
    #[serde(skip)]
    parsed_capabilities: BTreeMap<String, Capability>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_room_members: 50,
            max_rooms_per_connection: 8,
            max_events_per_room: 32,
            keys: Vec::new(),
            capabilities: BTreeMap::new(),
            token_profile: None,
            history_seconds: 120,
            max_inbound_rate: 100,
            parsed_capabilities: BTreeMap::new(),
        }
    }
}

static CURRENT: OnceLock<Config> = OnceLock::new();

/// The environment variable holding API keys (the plugin sees it when `plugins.toml` lists it in
/// the plugin's `env`).
pub const KEYS_ENV: &str = "GATEWAY_ABLY_KEYS";

/// Whether `key` is `appId.keyId:secret` with no empty part.
fn valid_key(key: &str) -> bool {
    match key.split_once(':') {
        Some((name, secret)) => {
            !secret.is_empty()
                && name
                    .split_once('.')
                    .is_some_and(|(app, id)| !app.is_empty() && !id.is_empty())
        }
        None => false,
    }
}

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
            "keys",
            "capabilities",
            "token_profile",
            "history_seconds",
            "max_inbound_rate",
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
        let mut config = config;
        if config.max_room_members == 0 || config.max_rooms_per_connection == 0 {
            return Err("ably-rooms config: limits must be positive".into());
        }
        if let Ok(env) = std::env::var(KEYS_ENV) {
            config.keys.extend(
                env.split(',')
                    .map(str::trim)
                    .filter(|k| !k.is_empty())
                    .map(str::to_string),
            );
        }
        if let Some(bad) = config.keys.iter().find(|k| !valid_key(k)) {
            let name = bad.split(':').next().unwrap_or_default();
            return Err(format!(
                "ably-rooms config: key '{name}' is not of the form appId.keyId:secret"
            ));
        }
        for (name, value) in &config.capabilities {
            let parsed = Capability::parse(value)
                .map_err(|e| format!("ably-rooms config: capabilities.\"{name}\": {e}"))?;
            config.parsed_capabilities.insert(name.clone(), parsed);
        }
        Ok((config, unknown))
    }

    /// Makes this the configuration of this instance (the first install wins; `init` runs once
    /// per instance).
    pub fn install(self) {
        let _ = CURRENT.set(self);
    }

    /// The capability of key `name` (`appId.keyId`).
    pub fn capability_of(&self, name: &str) -> Capability {
        self.parsed_capabilities
            .get(name)
            .cloned()
            .unwrap_or_else(Capability::all)
    }

    /// The installed configuration (defaults before `init`).
    pub fn current() -> &'static Config {
        CURRENT.get_or_init(Config::default)
    }
}
