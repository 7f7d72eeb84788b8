//! Auth profiles: which algorithms and keys verify a token, where the token is read from, and
//! which claims must hold. Parsing only; verification lives in `crate::auth`.

use jsonwebtoken::Algorithm;
use serde::Deserialize;
use std::path::PathBuf;

/// Unit of the `exp`/`nbf`/`iat` claims.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum ExpUnit {
    /// Seconds since the epoch (RFC 7519).
    #[default]
    Seconds,
    /// Milliseconds since the epoch (y-redis).
    Milliseconds,
}

/// How tokens are found and verified for a route.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthProfile {
    /// Accepted algorithms, e.g. `["HS256"]`; `none` is never accepted.
    pub algorithms: Vec<String>,
    /// Environment variable holding the HMAC secret.
    pub secret_env: Option<String>,
    /// A literal HMAC secret (tests only; prefer `secret_env`).
    pub secret: Option<String>,
    /// PEM file with an RSA or EC public key.
    pub public_key_file: Option<PathBuf>,
    /// Environment variable holding a PEM public key.
    pub public_key_env: Option<String>,
    /// JWK or JWK-set file.
    pub jwk_file: Option<PathBuf>,
    /// Unit of `exp`/`nbf`.
    #[serde(default)]
    pub exp_unit: ExpUnit,
    /// Accepted audiences; empty means `aud` is not checked.
    #[serde(default)]
    pub audience: Vec<String>,
    /// Required issuer.
    pub issuer: Option<String>,
    /// Claims that must be present.
    #[serde(default)]
    pub required_claims: Vec<String>,
    /// Allowed clock skew in seconds.
    #[serde(default)]
    pub leeway_s: u64,
    /// Where the token is taken from, in order: `query:NAME`, `header:authorization`,
    /// `subprotocol:PREFIX`.
    #[serde(default = "default_token_from")]
    pub token_from: Vec<String>,
    /// y-redis permission callback: the gateway GETs `{url}/{room}/{claims.yuserid}` and
    /// expects `{"yaccess": "rw" | "r"}`; anything else refuses the connection (403) and an
    /// unreachable or malformed answer refuses it with 401. The answer reaches the plugin as
    /// the claim `yaccess`.
    pub permission_callback: Option<String>,
    /// The claim holding the user id for `permission_callback`.
    #[serde(default = "default_user_claim")]
    pub user_claim: String,
}

fn default_user_claim() -> String {
    "yuserid".into()
}

fn default_token_from() -> Vec<String> {
    vec!["query:token".into(), "header:authorization".into()]
}

/// Parses an algorithm name; `none` and unknown names are errors.
pub fn parse_algorithm(name: &str) -> Result<Algorithm, String> {
    match name {
        "HS256" => Ok(Algorithm::HS256),
        "HS384" => Ok(Algorithm::HS384),
        "HS512" => Ok(Algorithm::HS512),
        "RS256" => Ok(Algorithm::RS256),
        "RS384" => Ok(Algorithm::RS384),
        "RS512" => Ok(Algorithm::RS512),
        "PS256" => Ok(Algorithm::PS256),
        "PS384" => Ok(Algorithm::PS384),
        "PS512" => Ok(Algorithm::PS512),
        "ES256" => Ok(Algorithm::ES256),
        "ES384" => Ok(Algorithm::ES384),
        "EdDSA" => Ok(Algorithm::EdDSA),
        other => Err(format!("unsupported algorithm '{other}'")),
    }
}

/// A place a token is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// A query parameter.
    Query(String),
    /// `Authorization: Bearer <token>`.
    Bearer,
    /// A `Sec-WebSocket-Protocol` entry starting with this prefix; the entry is echoed back.
    Subprotocol(String),
}

impl TokenSource {
    /// Parses `query:NAME`, `header:authorization` or `subprotocol:PREFIX`.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s.split_once(':') {
            Some(("query", name)) if !name.is_empty() => Ok(Self::Query(name.into())),
            Some(("header", h)) if h.eq_ignore_ascii_case("authorization") => Ok(Self::Bearer),
            Some(("subprotocol", prefix)) if !prefix.is_empty() => {
                Ok(Self::Subprotocol(prefix.into()))
            }
            _ => Err(format!(
                "token_from entry '{s}' must be query:NAME, header:authorization or subprotocol:PREFIX"
            )),
        }
    }
}
