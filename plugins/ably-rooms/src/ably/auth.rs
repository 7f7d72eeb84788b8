//! Who an Ably client is: the connect URL's query (`key` or `access_token`, `clientId`,
//! `format`, `echo`, `resume`, `heartbeats`) checked against the API keys in the plugin config
//! (`appId.keyId:secret`, each with an optional capability), Ably JWTs signed with those keys,
//! or tokens of one of the gateway's own auth profiles.

use super::capability::Capability;
use super::token::{self, TokenError};
use crate::config::Config;
use serde_json::Value;

/// The parts of the connect query this plugin uses.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ConnectParams {
    /// `key=`: a full API key (basic auth).
    pub key: Option<String>,
    /// `access_token=`: an Ably token or JWT.
    pub access_token: Option<String>,
    /// `clientId=`.
    pub client_id: Option<String>,
    /// `format=` (`json` or `msgpack`).
    pub format: Option<String>,
    /// `echo=false` turns off the echo of the connection's own messages.
    pub echo: bool,
    /// `resume=`: the connectionKey of a connection to resume.
    pub resume: Option<String>,
    /// `heartbeats=true`: the client cannot see WebSocket pings and wants HEARTBEAT messages.
    pub heartbeats: bool,
}

/// Percent-decodes a query value or path segment (`+` is a space).
pub fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The decoded `key=value` pairs of a raw query string.
pub fn query_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|s| !s.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(k), decode(v))
        })
        .collect()
}

/// Parses a raw query string.
pub fn parse_query(query: &str) -> ConnectParams {
    let mut p = ConnectParams {
        echo: true,
        ..Default::default()
    };
    for pair in query.split('&').filter(|s| !s.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = decode(v);
        match k {
            "key" => p.key = Some(v),
            "access_token" => p.access_token = Some(v),
            "clientId" => p.client_id = Some(v).filter(|c| !c.is_empty()),
            "format" => p.format = Some(v),
            "echo" => p.echo = v != "false",
            "heartbeats" => p.heartbeats = v == "true",
            "resume" | "recover" => p.resume = Some(v),
            _ => {}
        }
    }
    p
}

/// Whether two secrets are equal, comparing every byte so timing does not tell how much
/// matched.
pub fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// Why a client is refused: an Ably error code, HTTP status and message.
pub type Refusal = (u64, u64, String);

/// A verified client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The enforced clientId (`None` = anonymous).
    pub client_id: Option<String>,
    /// What it may do.
    pub capability: Capability,
    /// When its token expires (ms), if it came with one.
    pub expires_ms: Option<u64>,
}

/// Checks the credentials of a connect query (or of an AUTH message's token) with `now_ms`.
pub fn authenticate(
    key: Option<&str>,
    token: Option<&str>,
    client_id: Option<&str>,
    config: &Config,
    now_ms: u64,
) -> Result<Identity, Refusal> {
    match (key, token) {
        (Some(key), _) => {
            let name = check_key(key, &config.keys)?;
            if client_id == Some("*") {
                return Err((40012, 400, "clientId * is not a valid clientId".into()));
            }
            Ok(Identity {
                client_id: client_id.map(str::to_string),
                capability: config.capability_of(&name),
                expires_ms: None,
            })
        }
        (None, Some(token)) => {
            let (token_client, capability, expires_ms) = verify_token(token, config, now_ms)?;
            let client_id = match (token_client.as_deref(), client_id) {
                (Some("*"), asked) => asked.map(str::to_string),
                (Some(mine), Some(asked)) if mine != asked => {
                    return Err((
                        40102,
                        401,
                        format!("clientId {asked} does not match the token's clientId {mine}"),
                    ));
                }
                (None, Some(asked)) => {
                    return Err((
                        40102,
                        401,
                        format!("clientId {asked} is not allowed: the token has no clientId"),
                    ));
                }
                (mine, _) => mine.map(str::to_string),
            };
            Ok(Identity {
                client_id,
                capability,
                expires_ms,
            })
        }
        (None, None) => Err((
            40101,
            401,
            "no credentials: connect with key or access_token".into(),
        )),
    }
}

/// An Ably JWT signed with a configured key, else a token of the configured gateway profile:
/// returns its clientId, capability and expiry.
fn verify_token(
    token: &str,
    config: &Config,
    now_ms: u64,
) -> Result<(Option<String>, Capability, Option<u64>), Refusal> {
    let jwt = token::parse(token);
    let key = jwt.as_ref().and_then(|j| j.kid.as_deref()).and_then(|kid| {
        config
            .keys
            .iter()
            .find_map(|k| k.split_once(':').filter(|(name, _)| *name == kid))
    });
    if let (Some(jwt), Some((name, secret))) = (jwt, key) {
        let claims = jwt.verify(secret, now_ms / 1000).map_err(token_refusal)?;
        let granted = match claims.get("x-ably-capability") {
            None => Capability::all(),
            Some(Value::String(s)) => serde_json::from_str(s)
                .map_err(|_| TokenError::BadClaim("x-ably-capability"))
                .and_then(|v| {
                    Capability::parse(&v).map_err(|_| TokenError::BadClaim("x-ably-capability"))
                })
                .map_err(token_refusal)?,
            Some(_) => return Err(token_refusal(TokenError::BadClaim("x-ably-capability"))),
        };
        let client = match claims.get("x-ably-clientId") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => return Err(token_refusal(TokenError::BadClaim("x-ably-clientId"))),
        };
        let expires = claims.get("exp").and_then(Value::as_u64).map(|s| s * 1000);
        return Ok((
            client,
            config.capability_of(name).intersect(&granted),
            expires,
        ));
    }
    if let Some(profile) = &config.token_profile {
        let claims = plugin_sdk::host::verify_token(token, profile).map_err(|e| {
            let code = if e.contains("xpired") { 40142 } else { 40144 };
            (code, 401, format!("invalid token: {e}"))
        })?;
        let claims: Value = serde_json::from_str(&claims).unwrap_or_default();
        let client = ["sub", "user_id"]
            .iter()
            .find_map(|k| claims.get(*k).and_then(Value::as_str))
            .map(str::to_string);
        let capability = match claims.get("x-ably-capability").and_then(Value::as_str) {
            Some(s) => serde_json::from_str(s)
                .ok()
                .and_then(|v| Capability::parse(&v).ok())
                .ok_or_else(|| token_refusal(TokenError::BadClaim("x-ably-capability")))?,
            None => Capability::all(),
        };
        let expires = claims.get("exp").and_then(Value::as_u64).map(|s| s * 1000);
        return Ok((client, capability, expires));
    }
    Err((
        40144,
        401,
        "invalid token: not an Ably JWT signed with a known key".into(),
    ))
}

fn token_refusal(e: TokenError) -> Refusal {
    match e {
        TokenError::Expired => (40142, 401, "token expired".into()),
        TokenError::BadSignature => (40144, 401, "invalid JWT: bad signature".into()),
        TokenError::Malformed => (40144, 401, "invalid JWT".into()),
        TokenError::BadClaim(c) => (40144, 401, format!("invalid JWT: bad {c} claim")),
    }
}

/// The key name (`appId.keyId`) of a valid full key.
pub fn check_key(key: &str, keys: &[String]) -> Result<String, Refusal> {
    let Some((name, _)) = key.split_once(':') else {
        return Err((
            40101,
            401,
            "invalid key (expected appId.keyId:secret)".into(),
        ));
    };
    // Compare every byte of every configured key, so timing does not tell how much matched.
    let found = keys
        .iter()
        .fold(false, |found, k| found | same_secret(k, key));
    if keys.is_empty() {
        return Err((
            40101,
            401,
            "no API keys are configured: set GATEWAY_ABLY_KEYS".into(),
        ));
    }
    if found {
        Ok(name.to_string())
    } else {
        Err((40101, 401, format!("invalid credentials for key {name}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query() {
        let p = parse_query(
            "key=app.k1%3Asecret&clientId=alice%20b&format=json&heartbeats=false&v=6&echo=false",
        );
        assert_eq!(p.key.as_deref(), Some("app.k1:secret"));
        assert_eq!(p.client_id.as_deref(), Some("alice b"));
        assert_eq!(p.format.as_deref(), Some("json"));
        assert!(!p.echo);
        assert!(parse_query("").echo);
        assert_eq!(parse_query("resume=abc").resume.as_deref(), Some("abc"));
        assert_eq!(
            parse_query("clientId=%zz").client_id.as_deref(),
            Some("%zz")
        );
    }

    #[test]
    fn tokens() {
        let (config, _) = Config::parse(r#"{"keys": ["app.k1:secret"]}"#).unwrap();
        let cap = r#"{"chat:*":["subscribe"]}"#;
        let t = token::sign(
            "app.k1",
            "secret",
            &serde_json::json!({"exp": 2000, "x-ably-capability": cap, "x-ably-clientId": "ann"}),
        );
        let id = authenticate(None, Some(&t), None, &config, 1_000_000).unwrap();
        assert_eq!(id.client_id.as_deref(), Some("ann"));
        assert_eq!(id.expires_ms, Some(2_000_000));
        assert!(
            id.capability
                .allows("chat:x", super::super::capability::Op::Subscribe)
        );
        assert!(
            !id.capability
                .allows("chat:x", super::super::capability::Op::Publish)
        );
        let err = |r: Result<Identity, Refusal>| r.unwrap_err().0;
        assert_eq!(
            err(authenticate(None, Some(&t), None, &config, 2_000_000)),
            40142
        );
        assert_eq!(
            err(authenticate(
                None,
                Some(&t),
                Some("bob"),
                &config,
                1_000_000
            )),
            40102
        );
        let forged = token::sign("app.k1", "wrong", &serde_json::json!({"exp": 2000}));
        assert_eq!(
            err(authenticate(None, Some(&forged), None, &config, 0)),
            40144
        );
        assert_eq!(
            err(authenticate(None, Some("junk"), None, &config, 0)),
            40144
        );
        assert_eq!(err(authenticate(None, None, None, &config, 0)), 40101);
        let basic = authenticate(Some("app.k1:secret"), None, Some("zed"), &config, 0).unwrap();
        assert_eq!(basic.client_id.as_deref(), Some("zed"));
        assert_eq!(basic.capability, Capability::all());
    }

    #[test]
    fn keys() {
        let keys = vec!["app.k1:secret".to_string()];
        assert_eq!(check_key("app.k1:secret", &keys), Ok("app.k1".into()));
        assert_eq!(check_key("app.k1:secreT", &keys).unwrap_err().0, 40101);
        assert_eq!(check_key("nocolon", &keys).unwrap_err().0, 40101);
    }
}
