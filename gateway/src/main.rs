//! The `gateway` command: `serve`, `dev`, `worker`, `new-plugin`, `token` and `check`.

use anyhow::{Context, bail};
use gateway::{app::App, auth, config::Config};
use std::path::PathBuf;

const USAGE: &str = "usage:
  gateway serve [--config FILE] [--listen ADDR]   run the gateway (default config: plugins.toml)
  gateway dev [--config FILE] [--listen ADDR]     serve, and rebuild + hot-reload plugins whose sources change
  gateway new-plugin NAME [--dir PATH] [--sdk PATH]  scaffold a plugin crate (default dir: plugins)
  gateway token --sub ID [--claim k=v]... [--ttl 1h]  mint an HS256 token with GATEWAY_JWT_SECRET
  gateway worker [--config FILE]                   run only the stream compaction worker (no listener)
  gateway check [FILE]                             validate a config file offline

environment: GATEWAY_CONFIG, GATEWAY_LISTEN, GATEWAY_JWT_SECRET, GATEWAY_ADMIN_KEY, RUST_LOG,
             GATEWAY_LOG_FORMAT=json (one JSON object per log line)";

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (cmd, rest) = args
        .split_first()
        .map(|(c, r)| (c.as_str(), r))
        .unwrap_or(("", &[]));
    match cmd {
        "serve" => serve(rest, false),
        "dev" => serve(rest, true),
        "new-plugin" => new_plugin(rest),
        "token" => token(rest),
        "check" => check(rest),
        "worker" => worker(rest),
        "-h" | "--help" | "help" => {
            println!("{USAGE}");
            Ok(())
        }
        _ => {
            eprintln!("{USAGE}");
            std::process::exit(2)
        }
    }
}

fn flag<'a>(rest: &'a [String], name: &str) -> anyhow::Result<Option<&'a str>> {
    match rest.iter().position(|a| a == name) {
        Some(i) => rest
            .get(i + 1)
            .map(|v| Some(v.as_str()))
            .with_context(|| format!("{name} needs a value")),
        None => Ok(None),
    }
}

fn config_path(explicit: Option<&str>) -> PathBuf {
    explicit
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("GATEWAY_CONFIG").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("plugins.toml"))
}

fn check(rest: &[String]) -> anyhow::Result<()> {
    let path = config_path(rest.first().map(String::as_str));
    match Config::load(&path)
        .map_err(anyhow::Error::from)
        .and_then(|c| {
            auth::Authenticator::new(&c)?;
            Ok(c)
        }) {
        Ok(c) => {
            println!(
                "{}: ok ({} plugins, {} routes, {} listeners)",
                path.display(),
                c.plugins.len(),
                c.routes.len(),
                c.server.listen.len()
            );
            Ok(())
        }
        Err(e) => {
            eprintln!("{e:#}");
            std::process::exit(1)
        }
    }
}

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

fn token(rest: &[String]) -> anyhow::Result<()> {
    let sub = flag(rest, "--sub")?.context("--sub ID is required")?;
    let ttl = parse_ttl(flag(rest, "--ttl")?.unwrap_or("1h"))?;
    if std::env::var("GATEWAY_JWT_SECRET").map_or(true, |s| s.is_empty()) {
        bail!(
            "GATEWAY_JWT_SECRET is not set (without it, `gateway serve` makes an ephemeral secret and prints a dev token)"
        );
    }
    let now = auth::now_ms() / 1000;
    let mut claims = serde_json::json!({"sub": sub, "iat": now, "exp": now + ttl});
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

fn new_plugin(rest: &[String]) -> anyhow::Result<()> {
    let name = rest
        .first()
        .filter(|n| !n.starts_with("--"))
        .context("usage: gateway new-plugin NAME [--dir PATH] [--sdk PATH]")?;
    let dir = PathBuf::from(flag(rest, "--dir")?.unwrap_or("plugins"));
    // The SDK this binary was built with, unless told otherwise.
    let sdk = flag(rest, "--sdk")?
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../plugin-sdk")));
    let root = gateway::scaffold::new_plugin(name, &dir, &sdk)?;
    println!("created {}", root.display());
    println!(
        "build:  (cd {} && cargo build --release --target wasm32-wasip2)",
        root.display()
    );
    println!(
        "then add the [plugins.{name}] table and a route from {}/README.md to plugins.toml",
        root.display()
    );
    Ok(())
}

fn init_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if std::env::var("GATEWAY_LOG_FORMAT").is_ok_and(|f| f == "json") {
        logs.json().init();
    } else {
        logs.init();
    }
}

/// `gateway worker`: the compaction worker alone, on the configured streams and storage.
fn worker(rest: &[String]) -> anyhow::Result<()> {
    init_logs();
    let path = config_path(flag(rest, "--config")?);
    let config = Config::load(&path)?;
    if config.redis.is_none() {
        bail!(
            "{}: `gateway worker` needs [redis]: the in-process streams belong to one `gateway serve` (whose [worker] compacts them)",
            path.display()
        );
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let signal = shutdown_signal()?;
        let b = gateway::backends::Backends::open(&config, true).await?;
        println!("gateway worker running (prefixes {:?})", b.prefixes);
        signal.await;
        b.close().await;
        anyhow::Ok(())
    })
}

fn serve(rest: &[String], dev: bool) -> anyhow::Result<()> {
    init_logs();
    let path = config_path(flag(rest, "--config")?);
    let mut config = Config::load(&path)?;
    let listen = flag(rest, "--listen")?
        .map(str::to_string)
        .or_else(|| std::env::var("GATEWAY_LISTEN").ok());
    if let Some(l) = listen {
        config.server.listen[0] = l
            .parse()
            .with_context(|| format!("bad listen address '{l}'"))?;
    }
    // Every connection is a file descriptor: use the whole hard limit.
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => tracing::debug!(nofile = n, "file descriptor limit"),
        Err(e) => tracing::warn!("could not raise the file descriptor limit: {e}"),
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        // Handlers first, so a signal that arrives right after start-up is never fatal.
        let signal = shutdown_signal()?;
        let app = App::new(config, Some(path.clone())).await?;
        let running = app.clone().start().await?;
        app.spawn_watcher()?;
        if dev {
            let workspace = std::fs::canonicalize(&path)?
                .parent()
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("."));
            gateway::dev::spawn(&app, workspace)?;
        }
        for a in &running.addrs {
            println!("gateway listening on {a}");
        }
        banner(&app, running.addrs[0]);
        signal.await;
        running.shutdown().await;
        app.backends.close().await;
        anyhow::Ok(())
    })
}

fn banner(app: &App, addr: std::net::SocketAddr) {
    use std::fmt::Write;
    let mut out = String::new();
    let live = app.live();
    for (profile, secret) in live.auth.ephemeral() {
        let now = auth::now_ms() / 1000;
        let claims = serde_json::json!({"sub": "dev-user", "username": "dev", "iat": now, "exp": now + 86400});
        if let Ok(t) = auth::mint_hs256(secret, &claims) {
            let _ = writeln!(
                out,
                "\nNo GATEWAY_JWT_SECRET set: auth profile '{profile}' uses an ephemeral secret for this run."
            );
            let _ = writeln!(out, "Dev token (24 h, sub=dev-user):\n  {t}");
        }
        for r in &live.config.routes {
            if r.auth.as_deref() == Some(profile) && r.kind == gateway::config::RouteKind::Websocket
            {
                // A prefix route (`/yjs/*`) is shown with an example last segment.
                let path = r.path.replace("/*", "/my-room");
                let _ = writeln!(
                    out,
                    "Try:  npx wscat -c 'ws://{addr}{path}?token=<dev token>'"
                );
            }
        }
    }
    let _ = writeln!(
        out,
        "Health: http://{addr}/health   Metrics: http://{addr}/metrics"
    );
    if app.admin_key.is_none() {
        let _ = writeln!(
            out,
            "Admin routes answer 503 until GATEWAY_ADMIN_KEY is set."
        );
    }
    println!("{out}");
}

/// Installs the SIGTERM and SIGINT handlers now; the future resolves on the first signal.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    })
}
