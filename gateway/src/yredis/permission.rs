//! The y-redis permission callback: before a Yjs connection is accepted, the gateway asks
//! `GET {callback}/{room}/{user}` and expects `{"yaccess": "rw" | "r"}`, which is added to the
//! claims the plugin sees. Anything else is a [`Denied`] that the server renders as HTTP.

use crate::config::AuthProfile;
use std::time::Duration;

/// Why the callback refused a connection. The message is safe to show to the client.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum Denied {
    /// The token names no user, the callback is unreachable or its answer is malformed (401).
    #[error("{0}")]
    Unauthenticated(String),
    /// The callback answered without read or write access (403).
    #[error("{0}")]
    Forbidden(String),
}

/// Asks the profile's permission callback (if it has one) about `room` and returns the claims
/// with `yaccess` added; without a callback the claims are returned unchanged.
pub async fn check(
    profile: &AuthProfile,
    room: &str,
    claims: Option<String>,
) -> Result<Option<String>, Denied> {
    let Some(callback) = &profile.permission_callback else {
        return Ok(claims);
    };
    let mut map: serde_json::Map<String, serde_json::Value> = claims
        .as_deref()
        .and_then(|c| serde_json::from_str(c).ok())
        .unwrap_or_default();
    let user = match map.get(&profile.user_claim) {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(serde_json::Value::Number(n)) => n.to_string(),
        _ => {
            return Err(Denied::Unauthenticated(format!(
                "token has no '{}' claim",
                profile.user_claim
            )));
        }
    };
    let url = format!(
        "{}/{room}/{}",
        callback.trim_end_matches('/'),
        yjs_core::keys::encode_uri_component(&user)
    );
    static CLIENT: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    let client = CLIENT.get_or_init(|| {
        reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap_or_default()
    });
    let answer = async {
        let r = client.get(&url).send().await.map_err(|e| e.to_string())?;
        if !r.status().is_success() {
            return Err(format!("permission callback answered {}", r.status()));
        }
        let body = r.bytes().await.map_err(|e| e.to_string())?;
        serde_json::from_slice::<serde_json::Value>(&body).map_err(|e| e.to_string())
    }
    .await
    .map_err(|e| Denied::Unauthenticated(format!("permission check failed: {e}")))?;
    match answer.get("yaccess").and_then(|v| v.as_str()) {
        Some(a @ ("rw" | "r")) => {
            map.insert("yaccess".into(), serde_json::Value::String(a.into()));
            Ok(Some(serde_json::Value::Object(map).to_string()))
        }
        other => Err(Denied::Forbidden(format!(
            "no access to this room ({})",
            other.unwrap_or("no yaccess")
        ))),
    }
}
