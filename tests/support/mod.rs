//! Shared harness for the integration tests: spawns a real `gateway` process on 127.0.0.1:0,
//! talks to it over real sockets (HTTP/1.1 and WebSocket) and mints tokens.
//!
//! Every wait is bounded by a timeout; timeouts are failure bounds, never assertions about speed.
#![allow(dead_code)] // every test binary uses its own subset of the harness

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc as std_mpsc};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use fastwebsockets::{FragmentCollectorRead, Frame, OpCode, Payload, Role, WebSocketError};
use http_body_util::{BodyExt, Full};
use hyper::header::HeaderMap;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use tokio::io::{ReadHalf, WriteHalf};
use tokio::net::TcpSocket;
use tokio::sync::mpsc;

/// Upper bound for any single expected event (a frame, a response, a close).
pub const TIMEOUT: Duration = Duration::from_secs(10);
/// Upper bound for the gateway to start listening (it may compile plugins on a cold cache).
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(90);

/// Admin key given to gateways started with an admin key.
pub const ADMIN_KEY: &str = "test-admin-key-0123456789";

type BoxError = Box<dyn std::error::Error + Send + Sync>;

// ---------------------------------------------------------------------------------------------
// Paths
// ---------------------------------------------------------------------------------------------

/// The repository root (`tests/` is `CARGO_MANIFEST_DIR`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// A built plugin: `<repo>/dist/plugins/NAME.wasm`.
pub fn plugin_wasm(name: &str) -> PathBuf {
    repo_root()
        .join("dist")
        .join("plugins")
        .join(format!("{name}.wasm"))
}

/// A file under `tests/fixtures/`.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name)
}

/// `<target>/debug` (the test executable lives in `<target>/debug/deps`).
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    exe.parent()
        .and_then(Path::parent)
        .expect("test executable lives in <target>/<profile>/deps")
        .to_path_buf()
}

/// The gateway binary: `GATEWAY_BIN`, else `<target>/debug/gateway`.
pub fn gateway_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("GATEWAY_BIN") {
        return PathBuf::from(bin);
    }
    profile_dir().join(format!("gateway{}", std::env::consts::EXE_SUFFIX))
}

/// Compiled-plugin cache shared by every test gateway (lives in the target directory).
fn shared_cache_dir() -> PathBuf {
    profile_dir()
        .parent()
        .map(|target| target.join("gateway-test-cache"))
        .unwrap_or_else(|| std::env::temp_dir().join("gateway-test-cache"))
}

static UNIQUE: AtomicU64 = AtomicU64::new(0);

/// A fresh, unique directory under the system temp dir.
pub fn unique_temp_dir(label: &str) -> PathBuf {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let n = UNIQUE.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!(
        "gateway-test-{label}-{}-{n}-{nanos}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).expect("create temp dir");
    dir
}

fn toml_path(p: &Path) -> String {
    // Basic TOML string: escape backslashes and quotes.
    format!(
        "\"{}\"",
        p.display()
            .to_string()
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
    )
}

// ---------------------------------------------------------------------------------------------
// Configs
// ---------------------------------------------------------------------------------------------

/// Chat plugin section (no routes): placeholders are filled by [`GatewayBuilder::start`].
pub const CHAT_PLUGIN: &str = r#"
[plugins.chat]
wasm = @CHAT_WASM@
max_instances = 4
memory_limit_mb = 64
call_timeout_ms = 2000

[plugins.chat.config]
idle_cleanup_seconds = 300
max_online_list = 100
"#;

/// The default auth profile: HS256 with `GATEWAY_JWT_SECRET`, as in `plugins.toml`.
pub const DEFAULT_AUTH: &str = r#"
[auth.default]
algorithms = ["HS256"]
secret_env = "GATEWAY_JWT_SECRET"
exp_unit = "seconds"
required_claims = ["sub", "exp"]
token_from = ["query:token", "header:authorization"]
"#;

/// `/ws` (chat, default auth) and the admin routes `/ws/*`.
pub const CHAT_ROUTES: &str = r#"
[[routes]]
path = "/ws"
kind = "websocket"
plugin = "chat"
auth = "default"
origins = ["*"]

[[routes]]
path = "/ws/*"
kind = "http"
plugin = "chat"
admin = true
"#;

/// A complete chat config like `plugins.toml`, with an optional `[routes.limits]` body for `/ws`.
pub fn chat_config(ws_limits: Option<&str>) -> String {
    let mut cfg = String::new();
    cfg.push_str(DEFAULT_AUTH);
    cfg.push_str(CHAT_PLUGIN);
    cfg.push_str(
        r#"
[[routes]]
path = "/ws"
kind = "websocket"
plugin = "chat"
auth = "default"
origins = ["*"]
"#,
    );
    if let Some(limits) = ws_limits {
        cfg.push_str("\n[routes.limits]\n");
        cfg.push_str(limits);
        cfg.push('\n');
    }
    cfg.push_str(
        r#"
[[routes]]
path = "/ws/*"
kind = "http"
plugin = "chat"
admin = true
"#,
    );
    cfg
}

// ---------------------------------------------------------------------------------------------
// The gateway process
// ---------------------------------------------------------------------------------------------

/// Configures and starts one gateway process.
pub struct GatewayBuilder {
    config: String,
    env: Vec<(String, String)>,
    admin_key: Option<String>,
    jwt_secret: String,
    listeners: usize,
    files: Vec<(String, PathBuf)>,
}

impl GatewayBuilder {
    /// `config` is TOML. `@CHAT_WASM@`, `@FAULTY_WASM@`, `@ECHO_WASM@` and `@FIXTURES@` are
    /// replaced by quoted absolute paths and `@DIR@` by the gateway's temp dir (unquoted, for use
    /// inside a string: `wasm = "@DIR@/chat.wasm"`); a `[server]` section (one listener on
    /// 127.0.0.1:0, a shared cache dir, a short shutdown grace) is added unless the config has one.
    pub fn new(config: impl Into<String>) -> Self {
        let n = UNIQUE.fetch_add(1, Ordering::Relaxed);
        GatewayBuilder {
            config: config.into(),
            env: Vec::new(),
            admin_key: Some(ADMIN_KEY.to_string()),
            jwt_secret: format!(
                "test-jwt-secret-{}-{n}-0123456789abcdef",
                std::process::id()
            ),
            listeners: 1,
            files: Vec::new(),
        }
    }

    /// Starts without `GATEWAY_ADMIN_KEY` (admin routes answer 503).
    pub fn without_admin_key(mut self) -> Self {
        self.admin_key = None;
        self
    }

    /// Sets an extra environment variable for the gateway process.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    /// How many `gateway listening on` lines to wait for (default 1).
    pub fn listeners(mut self, n: usize) -> Self {
        self.listeners = n;
        self
    }

    /// Copies `source` to `<gateway dir>/<name>` before the gateway starts (a file the test
    /// can replace later; refer to it as `"@DIR@/<name>"` in the config).
    pub fn file(mut self, name: &str, source: impl Into<PathBuf>) -> Self {
        self.files.push((name.to_string(), source.into()));
        self
    }

    /// Spawns the gateway and waits (bounded) until it prints its listening lines.
    pub fn start(self) -> Gateway {
        let bin = gateway_bin();
        assert!(
            bin.exists(),
            "gateway binary not found at {} (run `cargo build -p gateway` or set GATEWAY_BIN)",
            bin.display()
        );
        for plugin in ["chat", "faulty", "echo"] {
            if self
                .config
                .contains(&format!("@{}_WASM@", plugin.to_uppercase()))
            {
                let wasm = plugin_wasm(plugin);
                assert!(
                    wasm.exists(),
                    "plugin {} not found: build the plugins and copy them to dist/plugins/ \
                     (see the README test command)",
                    wasm.display()
                );
            }
        }
        let dir = unique_temp_dir("gw");
        for (name, source) in &self.files {
            std::fs::copy(source, dir.join(name))
                .unwrap_or_else(|e| panic!("copy {} into the gateway dir: {e}", source.display()));
        }
        let config_path = dir.join("gateway.toml");
        let rendered = render_config(&self.config, &dir);
        std::fs::write(&config_path, &rendered).expect("write config");

        let mut cmd = Command::new(&bin);
        cmd.arg("serve")
            .arg("--config")
            .arg(&config_path)
            .arg("--listen")
            .arg("127.0.0.1:0")
            .env_remove("GATEWAY_LISTEN")
            .env_remove("GATEWAY_ADMIN_KEY")
            .env("GATEWAY_JWT_SECRET", &self.jwt_secret)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(key) = &self.admin_key {
            cmd.env("GATEWAY_ADMIN_KEY", key);
        }
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));

        let log = Arc::new(Mutex::new(String::new()));
        let (line_tx, line_rx) = std_mpsc::channel::<String>();
        let stdout = child.stdout.take().expect("stdout piped");
        let stderr = child.stderr.take().expect("stderr piped");
        {
            let log = log.clone();
            std::thread::spawn(move || {
                let reader = BufReader::new(stdout);
                for line in reader.lines() {
                    let Ok(line) = line else { break };
                    append_log(&log, "stdout", &line);
                    let _ = line_tx.send(line);
                }
            });
        }
        {
            let log = log.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stderr);
                let mut buf = Vec::new();
                loop {
                    buf.clear();
                    match reader.by_ref().take(64 * 1024).read_until(b'\n', &mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {
                            let line = String::from_utf8_lossy(&buf);
                            append_log(&log, "stderr", line.trim_end());
                        }
                    }
                }
            });
        }

        let mut gateway = Gateway {
            child,
            addrs: Vec::new(),
            dir,
            config_path,
            log,
            jwt_secret: self.jwt_secret,
            admin_key: self.admin_key,
        };

        let deadline = Instant::now() + STARTUP_TIMEOUT;
        while gateway.addrs.len() < self.listeners {
            let left = deadline.saturating_duration_since(Instant::now());
            match line_rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(addr) = parse_listening_line(&line) {
                        gateway.addrs.push(addr);
                    }
                }
                Err(std_mpsc::RecvTimeoutError::Timeout) => panic!(
                    "gateway did not print {} listening line(s) within {:?}\nconfig:\n{}\nlog:\n{}",
                    self.listeners,
                    STARTUP_TIMEOUT,
                    rendered,
                    gateway.logs()
                ),
                Err(std_mpsc::RecvTimeoutError::Disconnected) => {
                    // stdout closed: the process most likely exited.
                    std::thread::sleep(Duration::from_millis(100));
                    let status = gateway.child.try_wait().ok().flatten();
                    panic!(
                        "gateway exited before listening (status {status:?})\nconfig:\n{}\nlog:\n{}",
                        rendered,
                        gateway.logs()
                    );
                }
            }
        }
        gateway
    }
}

/// Renders a test config: fills the placeholders (see [`GatewayBuilder::new`]) and adds the
/// standard `[server]` section unless `config` has one. Rendering the same text twice gives the
/// same output, so a reload config differs from the original only where the test changes it.
fn render_config(config: &str, dir: &Path) -> String {
    let mut cfg = String::new();
    if !config.contains("[server]") {
        cfg.push_str(&format!(
            "[server]\nlisten = [\"127.0.0.1:0\"]\ncache_dir = {}\nshutdown_grace_ms = 3000\n\n",
            toml_path(&shared_cache_dir())
        ));
    }
    cfg.push_str(config);
    let quoted_dir = toml_path(dir);
    cfg.replace("@CHAT_WASM@", &toml_path(&plugin_wasm("chat")))
        .replace("@FAULTY_WASM@", &toml_path(&plugin_wasm("faulty")))
        .replace("@ECHO_WASM@", &toml_path(&plugin_wasm("echo")))
        .replace("@FIXTURES@", &toml_path(&fixture("")))
        .replace("@CACHE_DIR@", &toml_path(&shared_cache_dir()))
        .replace("@DIR@", &quoted_dir[1..quoted_dir.len() - 1])
}

/// Replaces `path` atomically: writes `<path>.tmp` in the same directory, then renames it over
/// `path`. Returns the moment just before the rename (the file change a reload reacts to).
pub fn replace_file(path: &Path, contents: &[u8]) -> Instant {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, contents).unwrap_or_else(|e| panic!("write {}: {e}", tmp.display()));
    let at = Instant::now();
    std::fs::rename(&tmp, path)
        .unwrap_or_else(|e| panic!("rename {} -> {}: {e}", tmp.display(), path.display()));
    at
}

fn append_log(log: &Arc<Mutex<String>>, stream: &str, line: &str) {
    const MAX_LOG: usize = 256 * 1024;
    let mut log = log.lock().unwrap_or_else(|e| e.into_inner());
    if log.len() > MAX_LOG {
        let cut = log.len() - MAX_LOG / 2;
        let cut = (cut..log.len())
            .find(|i| log.is_char_boundary(*i))
            .unwrap_or(log.len());
        log.replace_range(..cut, "[...]\n");
    }
    log.push_str(stream);
    log.push_str(": ");
    log.push_str(line);
    log.push('\n');
}

/// Parses `gateway listening on 127.0.0.1:PORT`.
pub fn parse_listening_line(line: &str) -> Option<SocketAddr> {
    let rest = line.trim().split("gateway listening on ").nth(1)?;
    rest.split_whitespace().next()?.parse().ok()
}

/// A running gateway process; killed when dropped.
pub struct Gateway {
    child: Child,
    /// Every listener, in the order they were announced.
    pub addrs: Vec<SocketAddr>,
    dir: PathBuf,
    /// The config file the process was started with.
    pub config_path: PathBuf,
    log: Arc<Mutex<String>>,
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

// ---------------------------------------------------------------------------------------------
// HTTP client
// ---------------------------------------------------------------------------------------------

/// A complete HTTP response.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON; panics with the body when it is not JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "status {} body is not JSON ({e}): {:?}",
                self.status,
                self.text()
            )
        })
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// One HTTP/1.1 request over a fresh connection, bounded by [`TIMEOUT`].
pub async fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Result<HttpResponse, BoxError> {
    tokio::time::timeout(
        TIMEOUT,
        http_request_inner(addr, method, path, headers, body),
    )
    .await
    .map_err(|_| format!("no HTTP response within {TIMEOUT:?}"))?
}

async fn http_request_inner(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Result<HttpResponse, BoxError> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake::<_, Full<Bytes>>(TokioIo::new(stream)).await?;
    let conn_task = tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(Full::new(Bytes::copy_from_slice(body.unwrap_or_default())))?;
    let resp = sender.send_request(req).await?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await?.to_bytes().to_vec();
    conn_task.abort();
    Ok(HttpResponse {
        status,
        headers,
        body,
    })
}

// ---------------------------------------------------------------------------------------------
// WebSocket client
// ---------------------------------------------------------------------------------------------

/// Options for [`ws_connect`].
#[derive(Debug, Default, Clone)]
pub struct WsOptions {
    /// Extra request headers (e.g. `authorization`, `origin`, `sec-websocket-protocol`).
    pub headers: Vec<(String, String)>,
    /// `SO_RCVBUF` for the client socket (set before connecting).
    pub recv_buffer: Option<u32>,
    /// Do not read the socket until [`WsClient::resume`] (a deliberately slow consumer).
    pub paused: bool,
}

impl WsOptions {
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }
}

/// Why a WebSocket connect failed.
#[derive(Debug)]
pub enum WsConnectError {
    /// The server answered the upgrade request with something other than 101.
    Rejected {
        status: u16,
        headers: HeaderMap,
        body: Vec<u8>,
    },
    /// Transport or protocol failure (or timeout).
    Failed(String),
}

impl std::fmt::Display for WsConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WsConnectError::Rejected { status, body, .. } => write!(
                f,
                "upgrade rejected with {status}: {}",
                String::from_utf8_lossy(body)
            ),
            WsConnectError::Failed(e) => write!(f, "connect failed: {e}"),
        }
    }
}

impl WsConnectError {
    /// The rejection status and JSON body; panics for other failures or non-JSON bodies.
    pub fn rejection_json(&self) -> (u16, Value) {
        match self {
            WsConnectError::Rejected { status, body, .. } => {
                let json = serde_json::from_slice(body).unwrap_or_else(|e| {
                    panic!(
                        "rejection body ({status}) is not JSON ({e}): {:?}",
                        String::from_utf8_lossy(body)
                    )
                });
                (*status, json)
            }
            WsConnectError::Failed(e) => panic!("expected an HTTP rejection, got failure: {e}"),
        }
    }
}

/// What the reader task saw.
#[derive(Debug, Clone, PartialEq)]
pub enum WsEvent {
    Text(String),
    Binary(Vec<u8>),
    /// A close frame from the server (`code` is `None` for an empty close payload).
    Close {
        code: Option<u16>,
        reason: String,
    },
    /// The connection ended without a close frame (EOF, reset, protocol error).
    Disconnected(String),
}

type WsReader = FragmentCollectorRead<ReadHalf<TokioIo<Upgraded>>>;
type WsWriter = fastwebsockets::WebSocketWrite<WriteHalf<TokioIo<Upgraded>>>;

/// A WebSocket client whose socket is read by a background task into a channel, so every
/// receive can be bounded by a timeout without corrupting the stream.
pub struct WsClient {
    writer: Arc<tokio::sync::Mutex<WsWriter>>,
    rx: mpsc::UnboundedReceiver<WsEvent>,
    tx: mpsc::UnboundedSender<WsEvent>,
    paused_reader: Option<WsReader>,
    reader_task: Option<tokio::task::JoinHandle<()>>,
    /// Set once a close or disconnect event has been received.
    pub ended: Option<WsEvent>,
    /// Response headers of the upgrade.
    pub response_headers: HeaderMap,
}

/// Connects and upgrades, bounded by [`TIMEOUT`].
pub async fn ws_connect(
    addr: SocketAddr,
    path_and_query: &str,
    opts: WsOptions,
) -> Result<WsClient, WsConnectError> {
    tokio::time::timeout(TIMEOUT, ws_connect_inner(addr, path_and_query, opts))
        .await
        .map_err(|_| WsConnectError::Failed(format!("no upgrade within {TIMEOUT:?}")))?
}

async fn ws_connect_inner(
    addr: SocketAddr,
    path_and_query: &str,
    opts: WsOptions,
) -> Result<WsClient, WsConnectError> {
    let fail = |e: &dyn std::fmt::Display| WsConnectError::Failed(e.to_string());
    let socket = TcpSocket::new_v4().map_err(|e| fail(&e))?;
    if let Some(size) = opts.recv_buffer {
        socket.set_recv_buffer_size(size).map_err(|e| fail(&e))?;
    }
    let stream = socket.connect(addr).await.map_err(|e| fail(&e))?;
    stream.set_nodelay(true).map_err(|e| fail(&e))?;

    let (mut sender, conn) =
        hyper::client::conn::http1::handshake::<_, Full<Bytes>>(TokioIo::new(stream))
            .await
            .map_err(|e| fail(&e))?;
    tokio::spawn(async move {
        let _ = conn.with_upgrades().await;
    });

    let mut req = hyper::Request::builder()
        .method("GET")
        .uri(path_and_query)
        .header("host", addr.to_string())
        .header("upgrade", "websocket")
        .header("connection", "upgrade")
        .header(
            "sec-websocket-key",
            fastwebsockets::handshake::generate_key(),
        )
        .header("sec-websocket-version", "13");
    for (k, v) in &opts.headers {
        req = req.header(k.as_str(), v.as_str());
    }
    let req = req.body(Full::new(Bytes::new())).map_err(|e| fail(&e))?;
    let mut resp = sender.send_request(req).await.map_err(|e| fail(&e))?;
    let status = resp.status().as_u16();
    if status != 101 {
        let headers = resp.headers().clone();
        let body = resp
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes().to_vec())
            .unwrap_or_default();
        return Err(WsConnectError::Rejected {
            status,
            headers,
            body,
        });
    }
    let response_headers = resp.headers().clone();
    let upgraded = hyper::upgrade::on(&mut resp).await.map_err(|e| fail(&e))?;
    let (read, write) = tokio::io::split(TokioIo::new(upgraded));
    let (ws_read, ws_write) = fastwebsockets::after_handshake_split(read, write, Role::Client);
    let reader = FragmentCollectorRead::new(ws_read);
    let (tx, rx) = mpsc::unbounded_channel();
    let mut client = WsClient {
        writer: Arc::new(tokio::sync::Mutex::new(ws_write)),
        rx,
        tx,
        paused_reader: Some(reader),
        reader_task: None,
        ended: None,
        response_headers,
    };
    if !opts.paused {
        client.resume();
    }
    Ok(client)
}

async fn reader_loop(
    mut reader: WsReader,
    writer: Arc<tokio::sync::Mutex<WsWriter>>,
    tx: mpsc::UnboundedSender<WsEvent>,
) {
    // Obligated sends (pong for ping, close echo) go through the shared writer. Their failures
    // are ignored so that a server close frame is still reported when the socket is gone.
    let mut send_fn = |frame: Frame<'static>| {
        let writer = writer.clone();
        async move {
            let _ = writer.lock().await.write_frame(frame).await;
            Ok::<(), WebSocketError>(())
        }
    };
    loop {
        let event = match reader.read_frame(&mut send_fn).await {
            Ok(frame) => match frame.opcode {
                OpCode::Text => WsEvent::Text(String::from_utf8_lossy(&frame.payload).into_owned()),
                OpCode::Binary => WsEvent::Binary(frame.payload.to_vec()),
                OpCode::Close => {
                    let payload: &[u8] = &frame.payload;
                    let code =
                        (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]));
                    let reason = payload
                        .get(2..)
                        .map(|r| String::from_utf8_lossy(r).into_owned())
                        .unwrap_or_default();
                    WsEvent::Close { code, reason }
                }
                OpCode::Ping | OpCode::Pong | OpCode::Continuation => continue,
            },
            Err(e) => WsEvent::Disconnected(e.to_string()),
        };
        let last = matches!(event, WsEvent::Close { .. } | WsEvent::Disconnected(_));
        if tx.send(event).is_err() || last {
            break;
        }
    }
}

/// A cloneable, `Send + Sync` handle that writes to a [`WsClient`]'s socket (for tasks that
/// send while another borrow of the client reads).
#[derive(Clone)]
pub struct WsSender {
    writer: Arc<tokio::sync::Mutex<WsWriter>>,
}

impl WsSender {
    /// Writes one text frame, bounded by [`TIMEOUT`].
    pub async fn send_text(&self, text: &str) -> Result<(), WebSocketError> {
        let frame = Frame::text(Payload::Owned(text.as_bytes().to_vec()));
        let mut w = self.writer.lock().await;
        match tokio::time::timeout(TIMEOUT, w.write_frame(frame)).await {
            Ok(r) => r,
            Err(_) => Err(WebSocketError::IoError(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "write timed out",
            ))),
        }
    }
}

impl WsClient {
    /// Sends `text` and expects the same text back as the next message.
    pub async fn expect_echo(&mut self, who: &str, text: &str) {
        self.send_text(text).await;
        match self.recv().await {
            WsEvent::Text(t) => assert_eq!(t, text, "{who}: echo"),
            other => panic!("{who}: expected the echo of {text:?}, got {other:?}"),
        }
    }

    /// A handle that writes to this client's socket.
    pub fn sender(&self) -> WsSender {
        WsSender {
            writer: self.writer.clone(),
        }
    }

    /// Starts reading the socket (only needed for clients connected with `paused`).
    pub fn resume(&mut self) {
        if let Some(reader) = self.paused_reader.take() {
            let task = tokio::spawn(reader_loop(reader, self.writer.clone(), self.tx.clone()));
            self.reader_task = Some(task);
        }
    }

    /// Writes one frame.
    pub async fn send_frame(&self, frame: Frame<'static>) -> Result<(), WebSocketError> {
        let mut w = self.writer.lock().await;
        match tokio::time::timeout(TIMEOUT, w.write_frame(frame)).await {
            Ok(r) => r,
            Err(_) => Err(WebSocketError::IoError(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "write timed out",
            ))),
        }
    }

    /// Sends a text frame; panics if the write fails.
    pub async fn send_text(&self, text: &str) {
        self.send_frame(Frame::text(Payload::Owned(text.as_bytes().to_vec())))
            .await
            .expect("send text frame");
    }

    /// Sends a binary frame; panics if the write fails.
    pub async fn send_binary(&self, data: &[u8]) {
        self.send_frame(Frame::binary(Payload::Owned(data.to_vec())))
            .await
            .expect("send binary frame");
    }

    /// Sends `value` as a JSON text frame.
    pub async fn send_json(&self, value: &Value) {
        self.send_text(&value.to_string()).await;
    }

    /// Sends a close frame with `code`.
    pub async fn close(&self, code: u16) {
        let _ = self.send_frame(Frame::close(code, b"bye")).await;
    }

    /// The next event, bounded by [`TIMEOUT`]; panics on timeout.
    pub async fn recv(&mut self) -> WsEvent {
        self.recv_within(TIMEOUT)
            .await
            .unwrap_or_else(|| panic!("no WebSocket event within {TIMEOUT:?}"))
    }

    /// The next event within `timeout`, or `None`.
    pub async fn recv_within(&mut self, timeout: Duration) -> Option<WsEvent> {
        if let Some(end) = &self.ended {
            return Some(end.clone());
        }
        assert!(
            self.paused_reader.is_none(),
            "recv on a paused client: call resume() first"
        );
        match tokio::time::timeout(timeout, self.rx.recv()).await {
            Ok(Some(ev)) => {
                if matches!(ev, WsEvent::Close { .. } | WsEvent::Disconnected(_)) {
                    self.ended = Some(ev.clone());
                }
                Some(ev)
            }
            Ok(None) => {
                let ev = WsEvent::Disconnected("reader ended".into());
                self.ended = Some(ev.clone());
                Some(ev)
            }
            Err(_) => None,
        }
    }

    /// The next event, which must be a text frame.
    pub async fn recv_text(&mut self) -> String {
        match self.recv().await {
            WsEvent::Text(t) => t,
            other => panic!("expected a text frame, got {other:?}"),
        }
    }

    /// The next event, which must be a JSON text frame.
    pub async fn recv_json(&mut self) -> Value {
        let text = self.recv_text().await;
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("frame is not JSON ({e}): {text}"))
    }

    /// The next JSON message, which must have `message_type`.
    pub async fn recv_type(&mut self, message_type: &str) -> Value {
        let msg = self.recv_json().await;
        assert_eq!(
            msg_type(&msg),
            message_type,
            "expected a {message_type} message, got {msg}"
        );
        msg
    }

    /// Reads until a frame whose `message_type` is `message_type`; returns it and the skipped ones.
    pub async fn recv_until_type(&mut self, message_type: &str) -> (Value, Vec<Value>) {
        let deadline = Instant::now() + TIMEOUT;
        let mut skipped = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let ev = self.recv_within(left).await.unwrap_or_else(|| {
                panic!("no {message_type} within {TIMEOUT:?}; skipped {skipped:?}")
            });
            match ev {
                WsEvent::Text(t) => {
                    let v: Value = serde_json::from_str(&t)
                        .unwrap_or_else(|e| panic!("frame is not JSON ({e}): {t}"));
                    if msg_type(&v) == message_type {
                        return (v, skipped);
                    }
                    skipped.push(v);
                }
                other => panic!("waiting for {message_type}, got {other:?}; skipped {skipped:?}"),
            }
        }
    }

    /// Reads (discarding data frames) until the connection ends; returns the close code, or
    /// `None` when it ended without a close frame. Bounded by `timeout`.
    pub async fn expect_end_within(&mut self, timeout: Duration) -> (Option<u16>, Vec<WsEvent>) {
        let deadline = Instant::now() + timeout;
        let mut data = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.recv_within(left).await {
                Some(WsEvent::Close { code, .. }) => return (code, data),
                Some(WsEvent::Disconnected(_)) => return (None, data),
                Some(ev) => data.push(ev),
                None => panic!(
                    "connection did not end within {timeout:?}; received {} frame(s), last: {:?}",
                    data.len(),
                    data.last()
                ),
            }
        }
    }

    /// Reads until a close frame arrives and returns its code; panics on EOF without close.
    pub async fn expect_close(&mut self) -> u16 {
        self.expect_close_reason().await.0
    }

    /// Reads until a close frame arrives and returns its code and reason.
    pub async fn expect_close_reason(&mut self) -> (u16, String) {
        let (_, data) = self.expect_end_within(TIMEOUT).await;
        match &self.ended {
            Some(WsEvent::Close {
                code: Some(code),
                reason,
            }) => (*code, reason.clone()),
            other => {
                panic!("connection ended without a close code ({other:?}); frames before: {data:?}")
            }
        }
    }
}

impl Drop for WsClient {
    fn drop(&mut self) {
        if let Some(task) = self.reader_task.take() {
            task.abort();
        }
    }
}

/// `message_type` of a chat envelope (`""` when missing).
pub fn msg_type(v: &Value) -> &str {
    v.get("message_type").and_then(Value::as_str).unwrap_or("")
}

// ---------------------------------------------------------------------------------------------
// Tokens
// ---------------------------------------------------------------------------------------------

pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

pub fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as u64
}

/// Claims for a chat user valid for an hour.
pub fn user_claims(sub: &str, username: Option<&str>) -> Value {
    let now = now_secs();
    let mut claims =
        json!({"sub": sub, "iat": now, "exp": now + 3600, "jti": format!("jti-{sub}-{now}")});
    if let Some(name) = username {
        claims["username"] = json!(name);
    }
    claims
}

/// An HS256 token.
pub fn hs256(secret: &str, claims: &Value) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("encode HS256")
}

/// An RS256 token signed with the PKCS#8 PEM key in `tests/fixtures/<key_file>`.
pub fn rs256(key_file: &str, claims: &Value) -> String {
    let pem = std::fs::read(fixture(key_file)).expect("read RSA key fixture");
    let key = EncodingKey::from_rsa_pem(&pem).expect("RSA PEM");
    jsonwebtoken::encode(&Header::new(Algorithm::RS256), claims, &key).expect("encode RS256")
}

/// An ES256 token signed with the PKCS#8 PEM key in `tests/fixtures/<key_file>`.
pub fn es256(key_file: &str, claims: &Value) -> String {
    let pem = std::fs::read(fixture(key_file)).expect("read EC key fixture");
    let key = EncodingKey::from_ec_pem(&pem).expect("EC PEM");
    jsonwebtoken::encode(&Header::new(Algorithm::ES256), claims, &key).expect("encode ES256")
}

/// A hand-made unsigned token: header `{"alg":"none","typ":"JWT"}` and an empty signature.
pub fn alg_none(claims: &Value) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    format!("{header}.{payload}.")
}

/// `token` with its payload replaced by `claims` and the original signature kept.
pub fn with_payload(token: &str, claims: &Value) -> String {
    let mut parts = token.split('.');
    let header = parts.next().expect("header");
    let _payload = parts.next().expect("payload");
    let signature = parts.next().expect("signature");
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    format!("{header}.{payload}.{signature}")
}

/// The decoded payload of a token (no verification).
pub fn decode_payload(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("token has a payload");
    let bytes = URL_SAFE_NO_PAD.decode(payload).expect("base64url payload");
    serde_json::from_slice(&bytes).expect("JSON payload")
}

// ---------------------------------------------------------------------------------------------
// Prometheus text
// ---------------------------------------------------------------------------------------------

/// Samples of a Prometheus text exposition.
#[derive(Debug, Default)]
pub struct Metrics {
    /// `(name, labels, value)` for every sample line.
    pub samples: Vec<(String, HashMap<String, String>, f64)>,
    pub raw: String,
}

impl Metrics {
    pub fn parse(text: &str) -> Metrics {
        let mut samples = Vec::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (series, rest) = match line.find('{') {
                Some(open) => {
                    let close = line.rfind('}').unwrap_or(line.len());
                    (
                        (&line[..open], &line[open + 1..close]),
                        line.get(close + 1..).unwrap_or(""),
                    )
                }
                None => {
                    let mut it = line.splitn(2, char::is_whitespace);
                    let name = it.next().unwrap_or("");
                    ((name, ""), it.next().unwrap_or(""))
                }
            };
            let value_str = rest.split_whitespace().next().unwrap_or("");
            let value = match value_str {
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                v => match v.parse::<f64>() {
                    Ok(v) => v,
                    Err(_) => continue,
                },
            };
            let labels = parse_labels(series.1);
            samples.push((series.0.trim().to_string(), labels, value));
        }
        Metrics {
            samples,
            raw: text.to_string(),
        }
    }

    /// Whether any sample of `name` exists.
    pub fn has(&self, name: &str) -> bool {
        self.samples.iter().any(|(n, _, _)| n == name)
    }

    /// The sum of every sample of `name` (over all label sets), or `None` if there is none.
    pub fn sum(&self, name: &str) -> Option<f64> {
        let mut found = false;
        let mut total = 0.0;
        for (n, _, v) in &self.samples {
            if n == name {
                found = true;
                total += v;
            }
        }
        found.then_some(total)
    }

    /// The value of the sample of `name` whose label `key` is `value`, if there is one.
    pub fn labeled(&self, name: &str, key: &str, value: &str) -> Option<f64> {
        self.samples
            .iter()
            .find(|(n, l, _)| n == name && l.get(key).map(String::as_str) == Some(value))
            .map(|(_, _, v)| *v)
    }

    /// Like [`Metrics::sum`] but panics with the exposition when the metric is missing.
    pub fn value(&self, name: &str) -> f64 {
        self.sum(name)
            .unwrap_or_else(|| panic!("metric {name} missing from /metrics:\n{}", self.raw))
    }
}

fn parse_labels(s: &str) -> HashMap<String, String> {
    let mut labels = HashMap::new();
    let mut rest = s;
    while let Some(eq) = rest.find('=') {
        let key = rest[..eq].trim().trim_start_matches(',').trim().to_string();
        let after = &rest[eq + 1..];
        let Some(after) = after.strip_prefix('"') else {
            break;
        };
        let mut value = String::new();
        let mut chars = after.char_indices();
        let mut end = after.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, n)) = chars.next() {
                        value.push(match n {
                            'n' => '\n',
                            other => other,
                        });
                    }
                }
                '"' => {
                    end = i + 1;
                    break;
                }
                other => value.push(other),
            }
        }
        labels.insert(key, value);
        rest = &after[end..];
    }
    labels
}
