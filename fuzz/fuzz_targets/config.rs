//! `Config::parse`: any text is a config or an error with a position, never a panic.
#![no_main]

use gateway::config::{Config, ConfigError};
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Config::parse(text, "fuzz.toml", Path::new("/nonexistent")) {
        Ok(cfg) => {
            let _ = cfg.route_for("/", gateway::config::RouteKind::Websocket);
        }
        Err(ConfigError::Parse { line, col, .. }) => {
            assert!(line >= 1 && col >= 1);
            assert!(
                line <= text.lines().count().max(1) + 1,
                "line {line} past the end"
            );
        }
        Err(_) => {}
    }
});
