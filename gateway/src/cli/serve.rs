//! `gateway serve` and `gateway dev`: load the config, start the listeners, watch for reloads,
//! print the start-up banner, and drain on SIGTERM or SIGINT.

use super::{ConfigArg, shutdown_signal};
use gateway::app::App;
use gateway::config::{Config, RouteKind};
use gateway::{auth, clock, server};
use std::net::SocketAddr;

/// Flags of `gateway serve` and `gateway dev`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// Listen here instead of the config's first `[server] listen` address.
    #[arg(long, env = "GATEWAY_LISTEN", value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Allow auth profiles without a secret to run on an ephemeral one (prints a dev token).
    #[arg(long)]
    dev: bool,
    /// Key for the admin routes and page; without it they answer 503.
    #[arg(
        long,
        env = "GATEWAY_ADMIN_KEY",
        hide_env_values = true,
        value_name = "KEY"
    )]
    admin_key: Option<String>,
    /// HMAC secret of the shipped auth profiles (those with `secret_env = "GATEWAY_JWT_SECRET"`).
    #[arg(
        long,
        env = "GATEWAY_JWT_SECRET",
        hide_env_values = true,
        value_name = "SECRET"
    )]
    jwt_secret: Option<String>,
    /// API keys of Ably clients, comma-separated `appId.keyId:secret` (read by the ably-rooms
    /// plugin through its `env` list).
    #[arg(
        long,
        env = "GATEWAY_ABLY_KEYS",
        hide_env_values = true,
        value_name = "KEYS"
    )]
    ably_keys: Option<String>,
}

/// Runs the gateway until a signal; with `dev`, also rebuilds plugins whose sources change.
/// Without `dev` or `--dev`, a profile that would need an ephemeral secret stops the start.
pub fn run(args: ServeArgs, dev: bool) -> anyhow::Result<()> {
    let path = args.config.config;
    let mut config = Config::load(&path)?;
    if let Some(l) = args.listen {
        config.server.listen[0] = l;
    }
    // The library reads these variables; a flag given on the command line sets them for it.
    // SAFETY: no other thread exists yet (the runtime starts below), so nothing reads the
    // environment concurrently.
    unsafe {
        if let Some(k) = &args.admin_key {
            std::env::set_var("GATEWAY_ADMIN_KEY", k);
        }
        if let Some(s) = &args.jwt_secret {
            std::env::set_var("GATEWAY_JWT_SECRET", s);
        }
        if let Some(k) = &args.ably_keys {
            std::env::set_var("GATEWAY_ABLY_KEYS", k);
        }
    }
    // Every connection is a file descriptor: use the whole hard limit.
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => tracing::debug!(nofile = n, "file descriptor limit"),
        Err(e) => tracing::warn!("could not raise the file descriptor limit: {e}"),
    }
    // `dev` builds what is stale first, so the gateway starts on the current sources.
    let crates = dev.then(|| super::dev::prepare(&config));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        // Handlers first, so a signal that arrives right after start-up is never fatal.
        let signal = shutdown_signal()?;
        let app = App::new(config, Some(path.clone())).await?;
        // An ephemeral secret is a development convenience: production must not start on one.
        let allow_ephemeral = dev || args.dev;
        let ephemeral: Vec<String> = app
            .live()
            .auth
            .ephemeral()
            .map(|(profile, _)| profile.to_string())
            .collect();
        if !allow_ephemeral && !ephemeral.is_empty() {
            anyhow::bail!(
                "auth profile(s) {} need GATEWAY_JWT_SECRET, which is not set; set it, or run \
                 `gateway serve --dev` (or `gateway dev`) to use an ephemeral secret for this run",
                ephemeral.join(", ")
            );
        }
        let running = server::start(app.clone()).await?;
        app.spawn_watcher()?;
        if let Some(crates) = crates {
            super::dev::spawn(&app, crates)?;
        }
        for a in &running.addrs {
            println!("gateway listening on {a}");
        }
        banner(&app, running.addrs[0]);
        signal.await;
        // A second signal while draining ends the process at once.
        let again = shutdown_signal()?;
        tokio::select! {
            _ = running.shutdown() => {}
            _ = again => {
                tracing::warn!("second signal: exiting without waiting for connections");
                std::process::exit(1);
            }
        }
        app.backends.close().await;
        anyhow::Ok(())
    })
}

/// Prints the dev token (when a secret is ephemeral) and the URLs to try.
fn banner(app: &App, addr: std::net::SocketAddr) {
    use std::fmt::Write;
    let mut out = String::new();
    let live = app.live();
    for (profile, secret) in live.auth.ephemeral() {
        let now = clock::now_ms() / 1000;
        let mut claims = serde_json::json!({"sub": "dev-user", "username": "dev", "iat": now, "exp": now + 86400});
        if let Some(aud) = live
            .config
            .auth
            .get(profile)
            .and_then(|p| p.audience.first())
        {
            claims["aud"] = serde_json::json!(aud);
        }
        if let Ok(t) = auth::mint_hs256(secret, &claims) {
            let _ = writeln!(
                out,
                "\nNo GATEWAY_JWT_SECRET set: auth profile '{profile}' uses an ephemeral secret for this run."
            );
            let _ = writeln!(out, "Dev token (24 h, sub=dev-user):\n  {t}");
        }
        for r in &live.config.routes {
            if r.auth.as_deref() == Some(profile) && r.kind == RouteKind::Websocket {
                // A prefix route (`/yjs/*`) is shown with an example last segment.
                let path = r.path.replace("/*", "/my-room");
                let _ = writeln!(
                    out,
                    "Try:  npx wscat -c 'ws://{addr}{path}?token=<dev token>'"
                );
            }
        }
    }
    if live.config.server.demo {
        demo_urls(&mut out, &live, addr);
    }
    let _ = writeln!(
        out,
        "Health: http://{addr}/health   Metrics: http://{addr}/metrics   Admin: http://{addr}/admin"
    );
    if app.admin_key.is_none() {
        let _ = writeln!(
            out,
            "Admin routes answer 503 until GATEWAY_ADMIN_KEY is set."
        );
    }
    println!("{out}");
}

/// The demo pages' URLs (`[server] demo = true`), with dev credentials in their fragments: a
/// token for the chat and the Yjs route when their profile runs on an ephemeral secret, and the
/// first key of `GATEWAY_ABLY_KEYS` for the Ably page.
fn demo_urls(out: &mut String, live: &gateway::app::Live, addr: std::net::SocketAddr) {
    use std::fmt::Write;
    let token_for = |plugin: &str, sub: &str| -> Option<String> {
        let route = live
            .config
            .routes
            .iter()
            .find(|r| r.plugin == plugin && r.kind == RouteKind::Websocket)?;
        let profile = route.auth.as_deref()?;
        let (_, secret) = live.auth.ephemeral().find(|(p, _)| *p == profile)?;
        let now = clock::now_ms() / 1000;
        let mut claims =
            serde_json::json!({"sub": sub, "username": sub, "iat": now, "exp": now + 86400});
        if let Some(aud) = live
            .config
            .auth
            .get(profile)
            .and_then(|p| p.audience.first())
        {
            claims["aud"] = serde_json::json!(aud);
        }
        auth::mint_hs256(secret, &claims).ok()
    };
    // Fragment values are read with URLSearchParams: escape what it would misread.
    let esc = |v: &str| {
        v.replace('%', "%25")
            .replace('&', "%26")
            .replace('+', "%2B")
            .replace('#', "%23")
    };
    let base = format!("http://{addr}/demo");
    let alice = token_for("chat", "alice");
    let bob = token_for("chat", "bob");
    let yjs = token_for("yjs", "alice");
    let key = std::env::var("GATEWAY_ABLY_KEYS")
        .ok()
        .and_then(|k| k.split(',').next().map(|k| esc(k.trim())))
        .filter(|k| !k.is_empty());
    let _ = writeln!(
        out,
        "\nDemo pages (open one twice, or as alice and bob, to see them sync):"
    );
    let _ = writeln!(out, "  index:         {base}/");
    if let (Some(a), Some(b)) = (&alice, &bob) {
        let _ = writeln!(out, "  chat as alice: {base}/chat.html#token={a}");
        let _ = writeln!(out, "  chat as bob:   {base}/chat.html#token={b}");
    }
    if let Some(y) = &yjs {
        let _ = writeln!(
            out,
            "  editor:        {base}/editor.html#token={y}&room=demo"
        );
    }
    if let Some(k) = &key {
        let _ = writeln!(
            out,
            "  ably room:     {base}/ably.html#key={k}&channel=demo"
        );
    }
    let _ = writeln!(out);
}
