//! The authenticated user behind a connection, kept in the connection's attachment.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;

/// The claims a chat user is read from (a JSON object; other members are ignored).
#[derive(Deserialize)]
struct Claims<'a> {
    #[serde(borrow, default)]
    sub: Option<&'a RawValue>,
    #[serde(borrow, default)]
    username: Option<&'a RawValue>,
}

/// A chat user: the JWT `sub` and display name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// The `sub` claim.
    pub user_id: String,
    /// The `username` claim, or `user_id` when absent.
    pub username: String,
}

impl User {
    /// Reads the user from verified JWT claims (a JSON object).
    ///
    /// `sub` must be a non-empty string (a number is accepted and used as text);
    /// `username` falls back to `sub` when missing, empty or not a string.
    pub fn from_claims(claims: Option<&str>) -> Result<User, &'static str> {
        let claims = claims.ok_or("no token claims")?;
        // Only the two claims this plugin reads, borrowed; the rest are skipped unparsed.
        let claims: Claims<'_> = serde_json::from_str(claims).map_err(|_| "claims are not JSON")?;
        let user_id = match claims
            .sub
            .map(|raw| serde_json::from_str::<Value>(raw.get()))
        {
            Some(Ok(Value::String(s))) if !s.is_empty() => s,
            Some(Ok(Value::Number(n))) => n.to_string(),
            _ => return Err("token has no `sub` claim"),
        };
        let username = match claims
            .username
            .map(|raw| serde_json::from_str::<Value>(raw.get()))
        {
            Some(Ok(Value::String(s))) if !s.is_empty() => s,
            _ => user_id.clone(),
        };
        Ok(User { user_id, username })
    }

    /// The bytes stored as the connection attachment.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Reads an attachment written by [`User::encode`].
    pub fn decode(bytes: &[u8]) -> Option<User> {
        serde_json::from_slice(bytes).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_with_username() {
        let u = User::from_claims(Some(r#"{"sub":"u1","username":"alice","exp":1}"#)).unwrap();
        assert_eq!(u.user_id, "u1");
        assert_eq!(u.username, "alice");
    }

    #[test]
    fn username_defaults_to_sub() {
        let u = User::from_claims(Some(r#"{"sub":"u1"}"#)).unwrap();
        assert_eq!(u.username, "u1");
        let u = User::from_claims(Some(r#"{"sub":"u1","username":""}"#)).unwrap();
        assert_eq!(u.username, "u1");
        let u = User::from_claims(Some(r#"{"sub":42,"username":7}"#)).unwrap();
        assert_eq!((u.user_id.as_str(), u.username.as_str()), ("42", "42"));
    }

    #[test]
    fn missing_sub_is_refused() {
        assert!(User::from_claims(None).is_err());
        assert!(User::from_claims(Some("{}")).is_err());
        assert!(User::from_claims(Some(r#"{"sub":""}"#)).is_err());
        assert!(User::from_claims(Some(r#"{"sub":null}"#)).is_err());
        assert!(User::from_claims(Some("not json")).is_err());
        assert!(User::from_claims(Some("[]")).is_err());
    }

    #[test]
    fn attachment_round_trip() {
        let u = User {
            user_id: "u\"1".into(),
            username: "Zoë".into(),
        };
        assert_eq!(User::decode(&u.encode()), Some(u));
        assert_eq!(User::decode(b""), None);
        assert_eq!(User::decode(b"garbage"), None);
    }
}
