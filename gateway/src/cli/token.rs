//! `gateway token`: mints a token for one of the config's HMAC auth profiles (a development
//! and operations aid), following the profile's algorithm, secret, audience and `exp` unit.

use super::ConfigArg;
use anyhow::{Context, bail};
use gateway::clock;
use gateway::config::{AuthProfile, Config, ExpUnit, parse_algorithm};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::Value;
use std::time::Duration;

/// Flags of `gateway token`.
#[derive(Debug, clap::Args)]
pub struct TokenArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// The subject (`sub` claim).
    #[arg(long, value_name = "ID")]
    sub: String,
    /// The auth profile of the config the token is for (`[auth.NAME]`).
    #[arg(long, default_value = "default", value_name = "NAME")]
    profile: String,
    /// The audience, instead of the profile's first.
    #[arg(long, value_name = "AUD")]
    aud: Option<String>,
    /// Lifetime, e.g. `90s`, `15m`, `1h`, `7d`.
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    ttl: Duration,
    /// An extra claim; the value is read as JSON when it is JSON (`admin=true`), else as text.
    /// Repeatable.
    #[arg(long = "claim", value_name = "K=V", value_parser = parse_claim)]
    claims: Vec<(String, Value)>,
    /// The HMAC secret, instead of the profile's `secret_env` variable or `secret`.
    #[arg(long, value_name = "SECRET")]
    secret: Option<String>,
}

fn parse_claim(s: &str) -> Result<(String, Value), String> {
    let (k, v) = s
        .split_once('=')
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| format!("'{s}' is not K=V"))?;
    let v = serde_json::from_str(v).unwrap_or_else(|_| Value::String(v.into()));
    Ok((k.to_string(), v))
}

/// The profile `gateway token` uses when there is no config file: the shipped `default`.
fn builtin_default() -> AuthProfile {
    toml::from_str(
        "algorithms = [\"HS256\"]\nsecret_env = \"GATEWAY_JWT_SECRET\"\naudience = [\"gateway\"]",
    )
    .expect("the built-in profile parses")
}

/// What a token is minted from; `gateway token` and `gateway client --sub` fill it.
#[derive(Debug, Clone)]
pub struct Mint {
    /// The config holding the profile.
    pub config: std::path::PathBuf,
    /// The profile's name.
    pub profile: String,
    /// The subject.
    pub sub: String,
    /// The audience, instead of the profile's first.
    pub aud: Option<String>,
    /// Lifetime.
    pub ttl: Duration,
    /// Extra claims.
    pub claims: Vec<(String, Value)>,
    /// The secret, instead of the profile's.
    pub secret: Option<String>,
}

/// The profile named by `--profile`, from the config file (or the built-in default profile
/// when no config file exists and `default` is asked for).
fn profile(args: &Mint) -> anyhow::Result<AuthProfile> {
    let path = &args.config;
    if !path.exists() && args.profile == "default" {
        eprintln!(
            "note: {} not found; using the built-in default profile (HS256, GATEWAY_JWT_SECRET, aud gateway)",
            path.display()
        );
        return Ok(builtin_default());
    }
    let config = Config::load(path)?;
    config.auth.get(&args.profile).cloned().with_context(|| {
        format!(
            "{}: no auth profile '{}' (profiles: {})",
            path.display(),
            args.profile,
            config.auth.keys().cloned().collect::<Vec<_>>().join(", ")
        )
    })
}

/// Runs the command and prints the token.
pub fn run(args: TokenArgs) -> anyhow::Result<()> {
    let token = mint(Mint {
        config: args.config.config,
        profile: args.profile,
        sub: args.sub,
        aud: args.aud,
        ttl: args.ttl,
        claims: args.claims,
        secret: args.secret,
    })?;
    println!("{token}");
    Ok(())
}

/// Mints a token following the profile's algorithm, secret, audience, issuer and `exp` unit.
pub fn mint(args: Mint) -> anyhow::Result<String> {
    let p = profile(&args)?;
    let alg = p
        .algorithms
        .iter()
        .find_map(|a| {
            parse_algorithm(a)
                .ok()
                .filter(|alg| matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512))
        })
        .with_context(|| {
            format!(
                "profile '{}' accepts {:?}: `gateway token` mints HMAC (HS*) tokens only; sign with your identity provider's key",
                args.profile, p.algorithms
            )
        })?;
    let from_env = p
        .secret_env
        .as_deref()
        .and_then(|v| std::env::var(v).ok())
        .filter(|s| !s.is_empty());
    let Some(secret) = args.secret.clone().or(from_env).or(p.secret.clone()) else {
        bail!(
            "no secret: set {} (the profile's secret_env) or pass --secret (without a secret, `gateway serve --dev` makes an ephemeral one and prints a dev token)",
            p.secret_env
                .as_deref()
                .unwrap_or("the profile's secret_env")
        );
    };
    let (now, ttl) = match p.exp_unit {
        ExpUnit::Seconds => (clock::now_ms() / 1000, args.ttl.as_secs()),
        ExpUnit::Milliseconds => (clock::now_ms(), args.ttl.as_millis() as u64),
    };
    let mut claims = serde_json::json!({"sub": args.sub, "iat": now, "exp": now + ttl});
    if let Some(aud) = args.aud.as_ref().or(p.audience.first()) {
        claims["aud"] = Value::String(aud.clone());
    }
    if let Some(iss) = &p.issuer {
        claims["iss"] = Value::String(iss.clone());
    }
    for (k, v) in args.claims {
        claims[k] = v;
    }
    Ok(jsonwebtoken::encode(
        &Header::new(alg),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )?)
}
