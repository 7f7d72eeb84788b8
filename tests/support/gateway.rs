//! [`Gateway`]: a running gateway process and the helpers tests drive it with.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::ADMIN_KEY;
use super::configs::{render_config, replace_file};
use super::http::{HttpResponse, http_request};
use super::process::GatewayBuilder;
use super::prom::Metrics;
use super::tokens::{hs256, user_claims};
use super::ws::{WsConnectError, WsOptions, ws_connect};
use super::ws_client::WsClient;

/// A running gateway process; killed when dropped.
pub struct Gateway {
    pub(super) child: Child,
    /// Every listener, in the order they were announced.
    pub addrs: Vec<SocketAddr>,
    pub(super) dir: PathBuf,
    /// The config file the process was started with.
    pub config_path: PathBuf,
    pub(super) log: Arc<Mutex<String>>,
    /// `GATEWAY_JWT_SECRET` of this process.
    pub jwt_secret: String,
    /// `GATEWAY_ADMIN_KEY` of this process, if any.
    pub admin_key: Option<String>,
}

impl Gateway {
    /// Starts a gateway with `config` and the default environment.
    pub fn start(config: impl Into<String>) -> Gateway {
        GatewayBuilder::new(config).start()
    }

    /// The first listener.
    pub fn addr(&self) -> SocketAddr {
        self.addrs[0]
    }

    /// The gateway's temp dir (holds its config and the files given to [`GatewayBuilder::file`]).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `config` rendered like the config the gateway was started with.
    pub fn render(&self, config: &str) -> String {
        render_config(config, &self.dir)
    }

    /// Atomically replaces the config file with `config` rendered (see [`Gateway::render`]);
    /// returns the moment of the rename.
    pub fn rewrite_config(&self, config: &str) -> Instant {
        replace_file(&self.config_path, self.render(config).as_bytes())
    }

    /// Atomically replaces `<gateway dir>/<name>` with `contents`; returns the moment of the rename.
    pub fn replace_file(&self, name: &str, contents: &[u8]) -> Instant {
        replace_file(&self.dir.join(name), contents)
    }

    /// Polls `/health` until `pred` holds, bounded by `timeout`; returns that health document.
    pub async fn wait_health(
        &self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let last = Mutex::new(Value::Null);
        let found = self
            .poll_until_or_none(timeout, || async {
                let h = self.health().await;
                let ok = pred(&h);
                *last.lock().unwrap_or_else(|e| e.into_inner()) = h.clone();
                ok.then_some(h)
            })
            .await;
        found.unwrap_or_else(|| {
            panic!(
                "timed out after {timeout:?} waiting for /health: {what}\nlast /health: {}\nlog:\n{}",
                last.lock().unwrap_or_else(|e| e.into_inner()),
                self.logs()
            )
        })
    }

    /// Like [`Gateway::poll_until`] but returns `None` at the deadline instead of panicking.
    pub async fn poll_until_or_none<T, F, Fut>(&self, timeout: Duration, mut probe: F) -> Option<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(v) = probe().await {
                return Some(v);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the process printed so far (stdout and stderr).
    pub fn logs(&self) -> String {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Kills the process with SIGKILL (no shutdown at all) and reaps it.
    pub fn sigkill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM through `kill -TERM <pid>`.
    pub fn sigterm(&self) {
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM {} failed", self.pid());
    }

    /// Waits (bounded) for the process to exit; `None` if it is still running at the deadline.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// A token for `sub` signed with this gateway's `GATEWAY_JWT_SECRET`, valid for an hour.
    pub fn token(&self, sub: &str) -> String {
        hs256(&self.jwt_secret, &user_claims(sub, None))
    }

    /// A token for `sub` with a `username` claim.
    pub fn token_named(&self, sub: &str, username: &str) -> String {
        hs256(&self.jwt_secret, &user_claims(sub, Some(username)))
    }

    /// Opens `/ws?token=...` for `sub` (username = `sub` capitalised) and returns the client.
    pub async fn chat_user(&self, sub: &str) -> WsClient {
        let token = self.token_named(sub, &capitalise(sub));
        self.ws(&format!("/ws?token={token}")).await
    }

    /// Opens a WebSocket on `path_and_query`; panics unless it upgrades.
    pub async fn ws(&self, path_and_query: &str) -> WsClient {
        ws_connect(self.addr(), path_and_query, WsOptions::default())
            .await
            .unwrap_or_else(|e| panic!("ws connect {path_and_query}: {e}\nlog:\n{}", self.logs()))
    }

    /// Opens a WebSocket with options; returns the rejection instead of panicking.
    pub async fn ws_with(
        &self,
        path_and_query: &str,
        opts: WsOptions,
    ) -> Result<WsClient, WsConnectError> {
        ws_connect(self.addr(), path_and_query, opts).await
    }

    /// One HTTP/1.1 request to the first listener.
    pub async fn http(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> HttpResponse {
        http_request(self.addr(), method, path, headers, body)
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}\nlog:\n{}", self.logs()))
    }

    /// `GET path` without headers.
    pub async fn get(&self, path: &str) -> HttpResponse {
        self.http("GET", path, &[], None).await
    }

    /// An admin request with `Authorization: Bearer <ADMIN_KEY>`.
    pub async fn admin(&self, method: &str, path: &str, body: Option<&Value>) -> HttpResponse {
        let auth = format!("Bearer {ADMIN_KEY}");
        let body = body.map(|b| serde_json::to_vec(b).expect("json"));
        let mut headers = vec![("authorization", auth.as_str())];
        if body.is_some() {
            headers.push(("content-type", "application/json"));
        }
        self.http(method, path, &headers, body.as_deref()).await
    }

    /// `GET /metrics`, parsed.
    pub async fn metrics(&self) -> Metrics {
        let resp = self.get("/metrics").await;
        assert_eq!(resp.status, 200, "/metrics status; body: {}", resp.text());
        Metrics::parse(&resp.text())
    }

    /// `GET /health` as JSON (asserts 200).
    pub async fn health(&self) -> Value {
        let resp = self.get("/health").await;
        assert_eq!(resp.status, 200, "/health status; body: {}", resp.text());
        resp.json()
    }

    /// Polls `probe` until it returns `Some`, bounded by `timeout` (for state that has no event).
    pub async fn poll_until<T, F, Fut>(&self, what: &str, timeout: Duration, mut probe: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(v) = probe().await {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {timeout:?} waiting for {what}\nlog:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "---- gateway log (pid {}, config {}) ----\n{}",
                self.child.id(),
                self.config_path.display(),
                self.logs()
            );
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn capitalise(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) => c.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}
