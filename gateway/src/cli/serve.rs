//! `gateway serve` and `gateway dev`: load the config, start the listeners, watch for reloads,
//! print the start-up banner, and drain on SIGTERM or SIGINT.

use super::{config_path, flag, init_logs, shutdown_signal};
use anyhow::Context;
use gateway::app::App;
use gateway::config::{Config, RouteKind};
use gateway::{auth, clock, server};
use std::path::PathBuf;

/// Runs the gateway until a signal; with `dev`, also rebuilds plugins whose sources change.
/// Without `dev` or `--dev`, a profile that would need an ephemeral secret stops the start.
pub fn run(rest: &[String], dev: bool) -> anyhow::Result<()> {
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
        // An ephemeral secret is a development convenience: production must not start on one.
        let allow_ephemeral = dev || rest.iter().any(|a| a == "--dev");
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
        if dev {
            let workspace = std::fs::canonicalize(&path)?
                .parent()
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("."));
            super::dev::spawn(&app, workspace)?;
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
