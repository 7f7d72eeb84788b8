//! Token extraction and verification: any request parts and any token are found/refused
//! without panicking; any claims signed with the profile's secret verify or are refused for a
//! claim, never crash the verifier.
#![no_main]

use gateway::auth::{Authenticator, TokenCarrier, mint_hs256, percent_decode, query_param};
use gateway::config::Config;
use libfuzzer_sys::fuzz_target;
use std::path::Path;
use std::sync::OnceLock;

const CONFIG: &str = r#"
[server]
listen = ["127.0.0.1:0"]

[auth.default]
algorithms = ["HS256"]
secret = "fuzz-secret"
audience = ["gw"]
required_claims = ["sub"]
token_from = ["query:token", "header:authorization", "subprotocol:bearer."]
"#;

fn auth() -> &'static Authenticator {
    static AUTH: OnceLock<Authenticator> = OnceLock::new();
    AUTH.get_or_init(|| {
        let cfg = Config::parse(CONFIG, "fuzz.toml", Path::new("/")).expect("config");
        Authenticator::new(&cfg).expect("authenticator")
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let v = auth().profile("default").expect("profile");
    let mut parts = text.splitn(3, '\n');
    let carrier = TokenCarrier {
        query: parts.next().unwrap_or(""),
        authorization: parts.next(),
        subprotocols: parts.next(),
    };
    if let Some(found) = v.find_token(&carrier) {
        let _ = v.verify(&found.token);
    }
    let _ = v.verify(text);
    let _ = query_param(text, "token");
    let _ = percent_decode(text);
    if let Ok(serde_json::Value::Object(claims)) = serde_json::from_str(text) {
        let token = mint_hs256("fuzz-secret", &serde_json::Value::Object(claims.clone()));
        if let Ok(token) = token
            && let Ok(back) = v.verify(&token)
        {
            assert_eq!(back.get("sub"), claims.get("sub"));
            let _ = v.expiry_ms(&back);
        }
    }
});
