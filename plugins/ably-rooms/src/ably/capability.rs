//! Ably capabilities: which operations a key or token allows on which channels, written as
//! `{"resource": ["op", ...]}`. A resource `*` matches every channel, `ns:*` matches `ns:a` and
//! `ns:a:b`, `a:*:c` matches one middle segment; anything else is literal. Op `*` allows all.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What a connection may do.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capability(BTreeMap<String, Vec<String>>);

/// Operations the plugin checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Publishing messages.
    Publish,
    /// Receiving messages and presence events.
    Subscribe,
    /// Entering presence.
    Presence,
    /// Reading history.
    History,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Publish => "publish",
            Op::Subscribe => "subscribe",
            Op::Presence => "presence",
            Op::History => "history",
        }
    }
}

impl Capability {
    /// Everything on every channel (a key without a configured capability).
    pub fn all() -> Capability {
        Capability(BTreeMap::from([("*".to_string(), vec!["*".to_string()])]))
    }

    /// Parses the JSON object form (as in `x-ably-capability` or `plugins.toml`).
    pub fn parse(value: &serde_json::Value) -> Result<Capability, String> {
        let object = value
            .as_object()
            .ok_or("a capability must be an object of resource -> operations")?;
        let mut map = BTreeMap::new();
        for (resource, ops) in object {
            let ops = ops
                .as_array()
                .ok_or_else(|| format!("capability for '{resource}' must be a list"))?
                .iter()
                .map(|o| {
                    o.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| format!("capability for '{resource}' lists a non-string"))
                })
                .collect::<Result<Vec<_>, _>>()?;
            map.insert(resource.clone(), ops);
        }
        Ok(Capability(map))
    }

    /// Whether `op` is allowed on `channel`.
    pub fn allows(&self, channel: &str, op: Op) -> bool {
        self.0.iter().any(|(resource, ops)| {
            matches(resource, channel) && ops.iter().any(|o| o == "*" || o == op.name())
        })
    }

    /// Whether anything at all is allowed on `channel`.
    pub fn allows_any(&self, channel: &str) -> bool {
        self.0
            .iter()
            .any(|(resource, ops)| matches(resource, channel) && !ops.is_empty())
    }

    /// The intersection with `token` (a token may only narrow its key's capability): for each
    /// resource the token names, the operations both allow.
    pub fn intersect(&self, token: &Capability) -> Capability {
        let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (resource, token_ops) in &token.0 {
            // A wildcard token resource takes the key's resources; a named one keeps its name.
            let pairs: Vec<(&String, &Vec<String>)> = if resource == "*" {
                self.0.iter().collect()
            } else {
                self.0
                    .iter()
                    .filter(|(r, _)| matches(r, resource))
                    .map(|(_, ops)| (resource, ops))
                    .collect()
            };
            for (name, key_ops) in pairs {
                let ops: Vec<String> = if key_ops.iter().any(|o| o == "*") {
                    token_ops.clone()
                } else if token_ops.iter().any(|o| o == "*") {
                    key_ops.clone()
                } else {
                    token_ops
                        .iter()
                        .filter(|o| key_ops.contains(o))
                        .cloned()
                        .collect()
                };
                let entry = map.entry(name.clone()).or_default();
                for op in ops {
                    if !entry.contains(&op) {
                        entry.push(op);
                    }
                }
            }
        }
        map.retain(|_, ops| !ops.is_empty());
        Capability(map)
    }
}

/// Whether resource pattern `pattern` matches channel `channel`.
fn matches(pattern: &str, channel: &str) -> bool {
    if pattern == "*" || pattern == channel {
        return true;
    }
    let p: Vec<&str> = pattern.split(':').collect();
    let c: Vec<&str> = channel.split(':').collect();
    for (i, seg) in p.iter().enumerate() {
        let last = i == p.len() - 1;
        match c.get(i) {
            None => return false,
            Some(_) if *seg == "*" && last => return true,
            Some(_) if *seg == "*" => {}
            Some(s) if s == seg => {}
            Some(_) => return false,
        }
    }
    p.len() == c.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn resource_patterns() {
        assert!(matches("*", "anything:at:all"));
        assert!(matches("chat:*", "chat:a"));
        assert!(matches("chat:*", "chat:a:b"));
        assert!(!matches("chat:*", "chat"));
        assert!(!matches("chat:*", "other:a"));
        assert!(matches("a:*:c", "a:b:c"));
        assert!(!matches("a:*:c", "a:b:d"));
        assert!(!matches("a:*:c", "a:b:c:d"));
        assert!(!matches("foo*", "foobar"));
        assert!(matches("foo*", "foo*"));
    }

    #[test]
    fn operations() {
        let c = Capability::parse(
            &json!({"chat:*": ["publish", "subscribe"], "status": ["subscribe"]}),
        )
        .unwrap();
        assert!(c.allows("chat:1", Op::Publish));
        assert!(!c.allows("chat:1", Op::Presence));
        assert!(c.allows("status", Op::Subscribe));
        assert!(!c.allows("status", Op::Publish));
        assert!(!c.allows_any("other"));
        assert!(Capability::all().allows("x", Op::Presence));
        assert!(Capability::parse(&json!(["x"])).is_err());
        assert!(Capability::parse(&json!({"x": "publish"})).is_err());
    }

    #[test]
    fn narrowing() {
        let key = Capability::parse(&json!({"chat:*": ["publish", "subscribe"]})).unwrap();
        let token = Capability::parse(&json!({"chat:a": ["*"], "admin": ["publish"]})).unwrap();
        let both = key.intersect(&token);
        assert!(both.allows("chat:a", Op::Publish));
        assert!(!both.allows("chat:a", Op::Presence));
        assert!(!both.allows("admin", Op::Publish));
        assert_eq!(Capability::all().intersect(&token), token);
        let wide = key.intersect(&Capability::all());
        assert!(wide.allows("chat:b", Op::Subscribe));
        assert!(!wide.allows("other", Op::Subscribe));
    }
}
