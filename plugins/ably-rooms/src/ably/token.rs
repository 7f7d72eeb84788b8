//! Ably JWTs: HS256, signed with an API key's secret, `kid` naming the key (`appId.keyId`),
//! claims `exp` and `iat` in seconds, `x-ably-capability` (a JSON string) and optionally
//! `x-ably-clientId`.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

/// The parts of a JWT needed before its signature can be checked.
#[derive(Debug)]
pub struct Unverified {
    /// The header's `kid`.
    pub kid: Option<String>,
    /// The header's `alg`.
    pub alg: String,
    signed: String,
    signature: Vec<u8>,
    claims: Value,
}

/// Why a JWT is refused.
#[derive(Debug, PartialEq, Eq)]
pub enum TokenError {
    /// Not a JWT, or not readable.
    Malformed,
    /// Wrong signature or algorithm.
    BadSignature,
    /// `exp` is in the past (or missing).
    Expired,
    /// A claim has the wrong type.
    BadClaim(&'static str),
}

/// Splits and decodes a JWT without checking it; `None` when it is not a JWT at all.
pub fn parse(token: &str) -> Option<Unverified> {
    let mut parts = token.split('.');
    let (h, c, s) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let header: Value = serde_json::from_slice(&B64URL.decode(h).ok()?).ok()?;
    let claims: Value = serde_json::from_slice(&B64URL.decode(c).ok()?).ok()?;
    Some(Unverified {
        kid: header
            .get("kid")
            .and_then(Value::as_str)
            .map(str::to_string),
        alg: header.get("alg").and_then(Value::as_str)?.to_string(),
        signed: format!("{h}.{c}"),
        signature: B64URL.decode(s).ok()?,
        claims,
    })
}

impl Unverified {
    /// Checks the HS256 signature with `secret` and the expiry against `now_s`; returns the claims.
    pub fn verify(self, secret: &str, now_s: u64) -> Result<Value, TokenError> {
        if self.alg != "HS256" {
            return Err(TokenError::BadSignature);
        }
        let mut mac =
            Hmac::<Sha256>::new_from_slice(secret.as_bytes()).map_err(|_| TokenError::Malformed)?;
        mac.update(self.signed.as_bytes());
        // verify_slice compares in constant time.
        mac.verify_slice(&self.signature)
            .map_err(|_| TokenError::BadSignature)?;
        let exp = self
            .claims
            .get("exp")
            .and_then(Value::as_u64)
            .ok_or(TokenError::Expired)?;
        if exp <= now_s {
            return Err(TokenError::Expired);
        }
        Ok(self.claims)
    }
}

/// Signs claims as an HS256 JWT (tests; the REST `requestToken` answer would use it too).
#[cfg(any(test, fuzzing))]
pub fn sign(kid: &str, secret: &str, claims: &Value) -> String {
    let header = serde_json::json!({"typ": "JWT", "alg": "HS256", "kid": kid});
    let signed = format!(
        "{}.{}",
        B64URL.encode(header.to_string()),
        B64URL.encode(claims.to_string())
    );
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(signed.as_bytes());
    format!("{signed}.{}", B64URL.encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn verifies_signature_and_expiry() {
        let t = sign(
            "app.k",
            "secret",
            &json!({"exp": 2000, "x-ably-clientId": "a"}),
        );
        let u = parse(&t).unwrap();
        assert_eq!(u.kid.as_deref(), Some("app.k"));
        assert_eq!(u.verify("secret", 1000).unwrap()["x-ably-clientId"], "a");
        assert_eq!(
            parse(&t).unwrap().verify("other", 1000),
            Err(TokenError::BadSignature)
        );
        assert_eq!(
            parse(&t).unwrap().verify("secret", 2000),
            Err(TokenError::Expired)
        );
        assert!(parse("not-a-jwt").is_none());
        assert!(parse("a.b.c.d").is_none());
    }
}
