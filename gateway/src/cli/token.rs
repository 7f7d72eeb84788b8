//! `gateway token`: mints an HS256 token with `GATEWAY_JWT_SECRET` (a development aid).

use super::flag;
use anyhow::{Context, bail};
use gateway::{auth, clock};

fn parse_ttl(s: &str) -> anyhow::Result<u64> {
    let (num, mult) = match s.chars().last() {
        Some('s') => (&s[..s.len() - 1], 1),
        Some('m') => (&s[..s.len() - 1], 60),
        Some('h') => (&s[..s.len() - 1], 3600),
        Some('d') => (&s[..s.len() - 1], 86400),
        _ => (s, 1),
    };
    Ok(num
        .parse::<u64>()
        .with_context(|| format!("bad --ttl '{s}'"))?
        * mult)
}

/// Runs the command: `--sub ID [--aud AUD] [--claim k=v]... [--ttl 1h]`. The audience is
/// `gateway` (the shipped `default` profile's) unless `--aud` names another (`yjs`).
pub fn run(rest: &[String]) -> anyhow::Result<()> {
    let sub = flag(rest, "--sub")?.context("--sub ID is required")?;
    let aud = flag(rest, "--aud")?.unwrap_or("gateway");
    let ttl = parse_ttl(flag(rest, "--ttl")?.unwrap_or("1h"))?;
    if std::env::var("GATEWAY_JWT_SECRET").map_or(true, |s| s.is_empty()) {
        bail!(
            "GATEWAY_JWT_SECRET is not set (without it, `gateway serve` makes an ephemeral secret and prints a dev token)"
        );
    }
    let now = clock::now_ms() / 1000;
    let mut claims = serde_json::json!({"sub": sub, "aud": aud, "iat": now, "exp": now + ttl});
    for (i, a) in rest.iter().enumerate() {
        if a == "--claim" {
            let kv = rest.get(i + 1).context("--claim needs k=v")?;
            let (k, v) = kv.split_once('=').context("--claim needs k=v")?;
            let v = serde_json::from_str(v).unwrap_or_else(|_| serde_json::Value::String(v.into()));
            claims[k] = v;
        }
    }
    println!("{}", auth::mint_hs256(&auth::default_secret(), &claims)?);
    Ok(())
}
