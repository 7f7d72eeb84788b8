//! Parsing of `ws://` URLs, restricted to loopback (127.0.0.0/8) targets.

use std::net::{Ipv4Addr, SocketAddr};

use anyhow::{Context, bail};

/// Where the load tool connects.
#[derive(Debug, Clone)]
pub struct Target {
    /// Socket address (always in 127.0.0.0/8).
    pub addr: SocketAddr,
    /// Value for the `Host` header.
    pub host: String,
    /// Path and optional query, e.g. `/ws` or `/ws?x=1`.
    pub path_and_query: String,
}

impl Target {
    /// Parses `ws://HOST[:PORT]/PATH[?QUERY]`; refuses anything outside 127.0.0.0/8.
    pub fn parse(url: &str) -> anyhow::Result<Self> {
        let rest = url
            .strip_prefix("ws://")
            .with_context(|| format!("only ws:// URLs are supported: {url}"))?;
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let path = if path.starts_with('?') {
            format!("/{path}")
        } else {
            path.to_string()
        };
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) => (h, p.parse::<u16>().context("bad port")?),
            None => (authority, 80),
        };
        let ip: Ipv4Addr = if host.eq_ignore_ascii_case("localhost") {
            Ipv4Addr::LOCALHOST
        } else {
            host.parse()
                .with_context(|| format!("host must be an IPv4 literal or localhost: {host}"))?
        };
        if !ip.is_loopback() {
            bail!("refusing to connect to {ip}: only 127.0.0.0/8 is allowed");
        }
        Ok(Self {
            addr: SocketAddr::from((ip, port)),
            host: authority.to_string(),
            path_and_query: path,
        })
    }

    /// The target with `key=` (the first key of `GATEWAY_ABLY_KEYS`) added to its query, unless
    /// it already names a key.
    pub fn with_ably_key(mut self) -> anyhow::Result<Self> {
        if self.path_and_query.contains("key=") {
            return Ok(self);
        }
        let keys = std::env::var("GATEWAY_ABLY_KEYS")
            .context("ably mode needs a key: set GATEWAY_ABLY_KEYS or put key= in the URL")?;
        let key = keys.split(',').next().unwrap_or_default().trim();
        let encoded: String = key
            .bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect();
        let sep = if self.path_and_query.contains('?') {
            '&'
        } else {
            '?'
        };
        self.path_and_query = format!("{}{sep}key={encoded}", self.path_and_query);
        Ok(self)
    }

    /// The request target with `token` appended as the `token` query parameter.
    pub fn with_token(&self, token: Option<&str>) -> String {
        match token {
            None => self.path_and_query.clone(),
            Some(t) => {
                let sep = if self.path_and_query.contains('?') {
                    '&'
                } else {
                    '?'
                };
                format!("{}{sep}token={t}", self.path_and_query)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_loopback() {
        let t = Target::parse("ws://127.0.0.1:8080/ws").unwrap();
        assert_eq!(t.addr.port(), 8080);
        assert_eq!(t.with_token(Some("abc")), "/ws?token=abc");
        let t = Target::parse("ws://localhost:9001/ws?a=1").unwrap();
        assert_eq!(t.with_token(Some("x")), "/ws?a=1&token=x");
        assert!(Target::parse("ws://127.3.2.1").is_ok());
    }

    #[test]
    fn refuses_others() {
        assert!(Target::parse("ws://10.0.0.1:80/ws").is_err());
        assert!(Target::parse("ws://example.com/ws").is_err());
        assert!(Target::parse("wss://127.0.0.1/ws").is_err());
        assert!(Target::parse("ws://[::1]:80/ws").is_err());
    }
}
