//! JWT verification per auth profile: where the token comes from, which keys and algorithms
//! verify it, and which claims must hold.

use crate::clock::now_ms;
use crate::config::{AuthProfile, ExpUnit, TokenSource, parse_algorithm};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, jwk::JwkSet};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, OnceLock};

/// Why a token was refused. The message is safe to show to the client.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum AuthError {
    /// No token in any configured place.
    #[error("missing token")]
    Missing,
    /// The token is past its `exp`.
    #[error("token expired")]
    Expired,
    /// The token's `nbf` is in the future.
    #[error("token not yet valid")]
    NotYetValid,
    /// A required claim is absent.
    #[error("missing claim '{0}'")]
    MissingClaim(String),
    /// Signature, algorithm, audience, issuer or format is wrong.
    #[error("invalid token: {0}")]
    Invalid(String),
}

/// Why an auth profile could not be built.
#[derive(Debug, thiserror::Error)]
pub enum AuthSetupError {
    /// A key could not be loaded.
    #[error("auth profile '{profile}': {message}")]
    Key {
        /// Profile name.
        profile: String,
        /// What went wrong.
        message: String,
    },
}

/// A token found in a request, with the subprotocol to echo when it came from one.
#[derive(Debug, Clone)]
pub struct FoundToken {
    /// The raw token.
    pub token: String,
    /// The `Sec-WebSocket-Protocol` entry that carried it.
    pub subprotocol: Option<String>,
}

/// The request parts tokens are read from.
pub struct TokenCarrier<'a> {
    /// Raw query string.
    pub query: &'a str,
    /// `Authorization` header.
    pub authorization: Option<&'a str>,
    /// `Sec-WebSocket-Protocol` header.
    pub subprotocols: Option<&'a str>,
}

/// A verifier for one profile.
pub struct Verifier {
    keys: Vec<(Option<String>, DecodingKey)>,
    algorithms: Vec<Algorithm>,
    validation: Validation,
    exp_unit: ExpUnit,
    leeway: u64,
    required: Vec<String>,
    sources: Vec<TokenSource>,
    /// Whether the secret was generated for this process because none was configured.
    pub ephemeral_secret: Option<String>,
}

fn ephemeral_secret() -> &'static str {
    static SECRET: OnceLock<String> = OnceLock::new();
    SECRET.get_or_init(|| {
        let bytes: [u8; 32] = rand::random();
        hex::encode(bytes)
    })
}

impl Verifier {
    /// Builds a verifier from a profile; key files resolve against `base`.
    pub fn new(name: &str, p: &AuthProfile, base: &Path) -> Result<Self, AuthSetupError> {
        let err = |message: String| AuthSetupError::Key {
            profile: name.to_string(),
            message,
        };
        let algorithms: Vec<Algorithm> = p
            .algorithms
            .iter()
            .map(|a| parse_algorithm(a))
            .collect::<Result<_, _>>()
            .map_err(err)?;
        let mut keys = Vec::new();
        let mut ephemeral = None;
        let hmac = algorithms
            .iter()
            .any(|a| matches!(a, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512));
        if let Some(s) = &p.secret {
            keys.push((None, DecodingKey::from_secret(s.as_bytes())));
        } else if let Some(var) = &p.secret_env {
            match std::env::var(var) {
                Ok(s) if !s.is_empty() => keys.push((None, DecodingKey::from_secret(s.as_bytes()))),
                _ => {
                    let s = ephemeral_secret();
                    keys.push((None, DecodingKey::from_secret(s.as_bytes())));
                    ephemeral = Some(s.to_string());
                }
            }
        } else if hmac && p.public_key_file.is_none() && p.jwk_file.is_none() {
            return Err(err("an HS* profile needs `secret_env` or `secret`".into()));
        }
        let pem = match (&p.public_key_file, &p.public_key_env) {
            (Some(f), _) => {
                let path = if f.is_absolute() {
                    f.clone()
                } else {
                    base.join(f)
                };
                Some(std::fs::read(&path).map_err(|e| err(format!("{}: {e}", path.display())))?)
            }
            (None, Some(var)) => Some(
                std::env::var(var)
                    .map_err(|_| err(format!("environment variable {var} is not set")))?
                    .into_bytes(),
            ),
            _ => None,
        };
        if let Some(pem) = pem {
            let key = if algorithms
                .iter()
                .any(|a| matches!(a, Algorithm::ES256 | Algorithm::ES384))
            {
                DecodingKey::from_ec_pem(&pem)
            } else if algorithms.contains(&Algorithm::EdDSA) {
                DecodingKey::from_ed_pem(&pem)
            } else {
                DecodingKey::from_rsa_pem(&pem)
            }
            .map_err(|e| err(format!("public key: {e}")))?;
            keys.push((None, key));
        }
        if let Some(f) = &p.jwk_file {
            let path = if f.is_absolute() {
                f.clone()
            } else {
                base.join(f)
            };
            let text = std::fs::read_to_string(&path)
                .map_err(|e| err(format!("{}: {e}", path.display())))?;
            let set: JwkSet = serde_json::from_str(&text)
                .or_else(|_| serde_json::from_str(&text).map(|k| JwkSet { keys: vec![k] }))
                .map_err(|e| err(format!("{}: {e}", path.display())))?;
            for jwk in &set.keys {
                let key = DecodingKey::from_jwk(jwk).map_err(|e| err(format!("jwk: {e}")))?;
                keys.push((jwk.common.key_id.clone(), key));
            }
        }
        if keys.is_empty() {
            return Err(err("no key configured".into()));
        }
        let mut validation = Validation::new(algorithms[0]);
        validation.algorithms = algorithms.clone();
        // exp/nbf are checked here so that both seconds and milliseconds work.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.required_spec_claims.clear();
        if p.audience.is_empty() {
            validation.validate_aud = false;
        } else {
            validation.set_audience(&p.audience);
            validation.required_spec_claims.insert("aud".into());
        }
        if let Some(iss) = &p.issuer {
            validation.set_issuer(&[iss]);
            validation.required_spec_claims.insert("iss".into());
        }
        let sources = p
            .token_from
            .iter()
            .map(|s| TokenSource::parse(s))
            .collect::<Result<_, _>>()
            .map_err(err)?;
        Ok(Self {
            keys,
            algorithms,
            validation,
            exp_unit: p.exp_unit,
            leeway: p.leeway_s,
            required: p.required_claims.clone(),
            sources,
            ephemeral_secret: ephemeral,
        })
    }

    /// Finds the token in a request, trying the configured sources in order.
    pub fn find_token(&self, req: &TokenCarrier<'_>) -> Option<FoundToken> {
        for src in &self.sources {
            match src {
                TokenSource::Query(name) => {
                    if let Some(v) = query_param(req.query, name) {
                        return Some(FoundToken {
                            token: v,
                            subprotocol: None,
                        });
                    }
                }
                TokenSource::Bearer => {
                    if let Some(v) = req.authorization.and_then(bearer) {
                        return Some(FoundToken {
                            token: v.to_string(),
                            subprotocol: None,
                        });
                    }
                }
                TokenSource::Subprotocol(prefix) => {
                    for proto in req.subprotocols.unwrap_or("").split(',').map(str::trim) {
                        if let Some(t) = proto.strip_prefix(prefix.as_str()) {
                            return Some(FoundToken {
                                token: t.to_string(),
                                subprotocol: Some(proto.to_string()),
                            });
                        }
                    }
                }
            }
        }
        None
    }

    /// Verifies a token and returns its claims.
    pub fn verify(
        &self,
        token: &str,
    ) -> Result<serde_json::Map<String, serde_json::Value>, AuthError> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| AuthError::Invalid(e.to_string()))?;
        if !self.algorithms.contains(&header.alg) {
            return Err(AuthError::Invalid(format!(
                "algorithm {:?} not allowed",
                header.alg
            )));
        }
        let candidates = self
            .keys
            .iter()
            .filter(|(kid, _)| kid.is_none() || header.kid.is_none() || *kid == header.kid);
        let mut last = AuthError::Invalid("no matching key".into());
        for (_, key) in candidates {
            match jsonwebtoken::decode::<serde_json::Map<String, serde_json::Value>>(
                token,
                key,
                &self.validation,
            ) {
                Ok(data) => return self.check_claims(data.claims),
                Err(e) => last = AuthError::Invalid(e.to_string()),
            }
        }
        Err(last)
    }

    /// When verified claims expire, in unix milliseconds.
    pub fn expiry_ms(&self, claims: &serde_json::Map<String, serde_json::Value>) -> Option<u64> {
        let exp = claims.get("exp")?.as_f64()?;
        Some(match self.exp_unit {
            ExpUnit::Seconds => exp * 1000.0,
            ExpUnit::Milliseconds => exp,
        } as u64)
    }

    fn check_claims(
        &self,
        claims: serde_json::Map<String, serde_json::Value>,
    ) -> Result<serde_json::Map<String, serde_json::Value>, AuthError> {
        for c in &self.required {
            if !claims.contains_key(c) {
                return Err(AuthError::MissingClaim(c.clone()));
            }
        }
        let now_ms = now_ms() as f64;
        let scale = match self.exp_unit {
            ExpUnit::Seconds => 1000.0,
            ExpUnit::Milliseconds => 1.0,
        };
        let leeway = self.leeway as f64 * 1000.0;
        if let Some(exp) = claims.get("exp") {
            let exp = exp
                .as_f64()
                .ok_or_else(|| AuthError::Invalid("exp is not a number".into()))?;
            if exp * scale + leeway <= now_ms {
                return Err(AuthError::Expired);
            }
        }
        if let Some(nbf) = claims.get("nbf") {
            let nbf = nbf
                .as_f64()
                .ok_or_else(|| AuthError::Invalid("nbf is not a number".into()))?;
            if nbf * scale - leeway > now_ms {
                return Err(AuthError::NotYetValid);
            }
        }
        Ok(claims)
    }
}

/// All configured profiles, built once per config.
#[derive(Default)]
pub struct Authenticator {
    profiles: BTreeMap<String, Arc<Verifier>>,
}

impl Authenticator {
    /// Builds every profile of a config.
    pub fn new(cfg: &crate::config::Config) -> Result<Self, AuthSetupError> {
        let mut profiles = BTreeMap::new();
        for (name, p) in &cfg.auth {
            profiles.insert(
                name.clone(),
                Arc::new(Verifier::new(name, p, &cfg.base_dir)?),
            );
        }
        Ok(Self { profiles })
    }

    /// A profile by name; "" means `default`.
    pub fn profile(&self, name: &str) -> Option<&Arc<Verifier>> {
        self.profiles
            .get(if name.is_empty() { "default" } else { name })
    }

    /// The profiles whose HMAC secret was generated for this process.
    pub fn ephemeral(&self) -> impl Iterator<Item = (&str, &str)> {
        self.profiles
            .iter()
            .filter_map(|(n, v)| v.ephemeral_secret.as_deref().map(|s| (n.as_str(), s)))
    }
}

/// Mints an HS256 token; used by `gateway token` and the dev banner.
pub fn mint_hs256(
    secret: &str,
    claims: &serde_json::Value,
) -> Result<String, jsonwebtoken::errors::Error> {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(Algorithm::HS256),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
}

/// The HMAC secret `gateway token` and `serve` use: `GATEWAY_JWT_SECRET` or the ephemeral one.
pub fn default_secret() -> String {
    std::env::var("GATEWAY_JWT_SECRET")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| ephemeral_secret().to_string())
}

fn bearer(h: &str) -> Option<&str> {
    let (scheme, rest) = h.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
}

/// The percent-decoded value of a query parameter.
pub fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(k) == name).then(|| percent_decode(v))
    })
}

/// Decodes `%XX` escapes and `+` in a query component.
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => match (hex_val(b[i + 1]), hex_val(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h * 16 + l);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_val(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn profile() -> AuthProfile {
        AuthProfile {
            algorithms: vec!["HS256".into()],
            secret_env: None,
            secret: Some("s3cret".into()),
            public_key_file: None,
            public_key_env: None,
            jwk_file: None,
            exp_unit: ExpUnit::Seconds,
            audience: vec![],
            issuer: None,
            required_claims: vec!["sub".into()],
            leeway_s: 0,
            token_from: vec!["query:token".into(), "subprotocol:yauth-".into()],
            permission_callback: None,
            user_claim: "yuserid".into(),
        }
    }

    #[test]
    fn verifies_and_rejects() {
        let v = Verifier::new("t", &profile(), Path::new(".")).unwrap();
        let now = now_ms() / 1000;
        let ok = mint_hs256("s3cret", &json!({"sub": "a", "exp": now + 60})).unwrap();
        assert_eq!(v.verify(&ok).unwrap()["sub"], "a");
        let old = mint_hs256("s3cret", &json!({"sub": "a", "exp": now - 1})).unwrap();
        assert_eq!(v.verify(&old), Err(AuthError::Expired));
        let nosub = mint_hs256("s3cret", &json!({"exp": now + 60})).unwrap();
        assert_eq!(v.verify(&nosub), Err(AuthError::MissingClaim("sub".into())));
        let wrong = mint_hs256("other", &json!({"sub": "a", "exp": now + 60})).unwrap();
        assert!(matches!(v.verify(&wrong), Err(AuthError::Invalid(_))));
    }

    #[test]
    fn finds_tokens() {
        let v = Verifier::new("t", &profile(), Path::new(".")).unwrap();
        let t = v
            .find_token(&TokenCarrier {
                query: "a=1&token=x%2By",
                authorization: None,
                subprotocols: None,
            })
            .unwrap();
        assert_eq!(t.token, "x+y");
        let t = v
            .find_token(&TokenCarrier {
                query: "",
                authorization: None,
                subprotocols: Some("foo, yauth-abc"),
            })
            .unwrap();
        assert_eq!(
            (t.token.as_str(), t.subprotocol.as_deref()),
            ("abc", Some("yauth-abc"))
        );
    }
}
