//! JWT minting and tampering: claims, HS256/RS256/ES256, `alg: none`, payload swaps.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use super::paths::fixture;

pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

pub fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as u64
}

/// Claims for a chat user valid for an hour.
pub fn user_claims(sub: &str, username: Option<&str>) -> Value {
    let now = now_secs();
    let mut claims =
        json!({"sub": sub, "iat": now, "exp": now + 3600, "jti": format!("jti-{sub}-{now}")});
    // The shipped `default` profile's audience (ignored by profiles without one).
    claims["aud"] = json!("gateway");
    if let Some(name) = username {
        claims["username"] = json!(name);
    }
    claims
}

/// An HS256 token.
pub fn hs256(secret: &str, claims: &Value) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("encode HS256")
}

/// An RS256 token signed with the PKCS#8 PEM key in `tests/fixtures/<key_file>`.
pub fn rs256(key_file: &str, claims: &Value) -> String {
    let pem = std::fs::read(fixture(key_file)).expect("read RSA key fixture");
    let key = EncodingKey::from_rsa_pem(&pem).expect("RSA PEM");
    jsonwebtoken::encode(&Header::new(Algorithm::RS256), claims, &key).expect("encode RS256")
}

/// An ES256 token signed with the PKCS#8 PEM key in `tests/fixtures/<key_file>`.
pub fn es256(key_file: &str, claims: &Value) -> String {
    let pem = std::fs::read(fixture(key_file)).expect("read EC key fixture");
    let key = EncodingKey::from_ec_pem(&pem).expect("EC PEM");
    jsonwebtoken::encode(&Header::new(Algorithm::ES256), claims, &key).expect("encode ES256")
}

/// A hand-made unsigned token: header `{"alg":"none","typ":"JWT"}` and an empty signature.
pub fn alg_none(claims: &Value) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    format!("{header}.{payload}.")
}

/// `token` with its payload replaced by `claims` and the original signature kept.
pub fn with_payload(token: &str, claims: &Value) -> String {
    let mut parts = token.split('.');
    let header = parts.next().expect("header");
    let _payload = parts.next().expect("payload");
    let signature = parts.next().expect("signature");
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    format!("{header}.{payload}.{signature}")
}

/// The decoded payload of a token (no verification).
pub fn decode_payload(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("token has a payload");
    let bytes = URL_SAFE_NO_PAD.decode(payload).expect("base64url payload");
    serde_json::from_slice(&bytes).expect("JSON payload")
}
