//! HS256 tokens in the shape the chat plugin expects.

use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;

#[derive(Serialize)]
struct Claims<'a> {
    sub: &'a str,
    /// The shipped `default` profile's audience.
    aud: &'a str,
    username: &'a str,
    exp: u64,
    iat: u64,
    jti: String,
}

/// Mints a fresh token per call.
pub struct Minter {
    key: EncodingKey,
    header: Header,
    run: u64,
}

impl Minter {
    /// A minter signing with `secret`.
    pub fn new(secret: &str) -> Self {
        Self {
            key: EncodingKey::from_secret(secret.as_bytes()),
            header: Header::new(Algorithm::HS256),
            run: crate::clock::now_ns() ^ unix_now().wrapping_mul(1_000_003),
        }
    }

    /// A token for user `sub` (username = `sub`), valid for one hour; `n` makes the `jti` unique.
    pub fn mint(&self, sub: &str, n: u64) -> anyhow::Result<String> {
        let iat = unix_now();
        let claims = Claims {
            sub,
            aud: "gateway",
            username: sub,
            exp: iat + 3600,
            iat,
            jti: format!("{:x}-{n}", self.run),
        };
        Ok(jsonwebtoken::encode(&self.header, &claims, &self.key)?)
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{DecodingKey, Validation, decode};

    #[test]
    fn tokens_verify() {
        let m = Minter::new("s3cret");
        let t = m.mint("user-7", 7).unwrap();
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_audience(&["gateway"]);
        let data =
            decode::<serde_json::Value>(&t, &DecodingKey::from_secret(b"s3cret"), &validation)
                .unwrap();
        assert_eq!(data.claims["sub"], "user-7");
        assert_eq!(data.claims["username"], "user-7");
        assert!(data.claims["jti"].as_str().unwrap().ends_with("-7"));
    }
}
