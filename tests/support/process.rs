//! Spawning a gateway process: [`GatewayBuilder`], log capture and the listening-line parser.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, mpsc as std_mpsc};
use std::time::{Duration, Instant};

use super::configs::render_config;
use super::gateway::Gateway;
use super::paths::{UNIQUE, gateway_bin, plugin_wasm, unique_temp_dir};
use super::{ADMIN_KEY, STARTUP_TIMEOUT};

/// Configures and starts one gateway process.
pub struct GatewayBuilder {
    config: String,
    env: Vec<(String, String)>,
    admin_key: Option<String>,
    jwt_secret: String,
    listeners: usize,
    files: Vec<(String, PathBuf)>,
    command: &'static str,
    startup_timeout: Duration,
    dir: Option<PathBuf>,
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
            command: "serve",
            startup_timeout: STARTUP_TIMEOUT,
            dir: None,
        }
    }

    /// Starts without `GATEWAY_ADMIN_KEY` (admin routes answer 503).
    pub fn without_admin_key(mut self) -> Self {
        self.admin_key = None;
        self
    }

    /// Uses `secret` as `GATEWAY_JWT_SECRET` (gateways of one cluster share it).
    pub fn jwt_secret(mut self, secret: &str) -> Self {
        self.jwt_secret = secret.to_string();
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

    /// Runs `gateway dev` instead of `gateway serve`.
    pub fn dev(mut self) -> Self {
        self.command = "dev";
        self
    }

    /// How long to wait for the listening lines (`dev` builds stale plugins first).
    pub fn startup_timeout(mut self, t: Duration) -> Self {
        self.startup_timeout = t;
        self
    }

    /// Uses `dir` (which may hold files the config names by relative path) as the gateway's
    /// directory instead of a fresh one; it is removed with the gateway like a fresh one.
    pub fn in_dir(mut self, dir: &Path) -> Self {
        self.dir = Some(dir.to_path_buf());
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
        let dir = self.dir.clone().unwrap_or_else(|| unique_temp_dir("gw"));
        for (name, source) in &self.files {
            std::fs::copy(source, dir.join(name))
                .unwrap_or_else(|e| panic!("copy {} into the gateway dir: {e}", source.display()));
        }
        let config_path = dir.join("gateway.toml");
        let rendered = render_config(&self.config, &dir);
        std::fs::write(&config_path, &rendered).expect("write config");

        let mut cmd = Command::new(&bin);
        cmd.arg(self.command)
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

        let deadline = Instant::now() + self.startup_timeout;
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
                    self.startup_timeout,
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
