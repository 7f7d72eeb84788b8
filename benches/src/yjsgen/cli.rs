//! Command-line options of `yjs-load`: the options of `load.mjs`, same names and defaults.

use anyhow::{Context, bail};
use serde_json::{Map, Value};

/// Which server the URLs are built for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// `ws://HOST:PORT{path-prefix}{room}`.
    Gateway,
    /// `ws://HOST:PORT/{room}`.
    YWebsocket,
}

impl Target {
    /// The name `load.mjs` uses.
    pub fn name(self) -> &'static str {
        match self {
            Target::Gateway => "gateway",
            Target::YWebsocket => "y-websocket",
        }
    }
}

/// Parsed options; see [`USAGE`].
#[derive(Debug, Clone)]
pub struct Args {
    /// Server flavour (URL shape).
    pub target: Target,
    /// Loopback address.
    pub host: String,
    /// Server port.
    pub port: u16,
    /// Gateway route prefix.
    pub path_prefix: String,
    /// Rooms.
    pub rooms: usize,
    /// Clients per room.
    pub clients: usize,
    /// Writing clients per room (the first `writers` of each room).
    pub writers: usize,
    /// Updates/s per writer; 0 = keep `window` updates in flight.
    pub rate: f64,
    /// Rate 0: un-echoed updates in flight per writer.
    pub window: u64,
    /// Measured seconds.
    pub duration: f64,
    /// Seconds of sending before the measurement.
    pub warmup: f64,
    /// Max seconds to wait for in-flight deliveries.
    pub drain: f64,
    /// Tokio worker threads.
    pub threads: usize,
    /// Hard limit for the whole run, seconds.
    pub timeout: f64,
    /// Connections opened at once per thread.
    pub connect_concurrency: usize,
    /// Per-writer cap on updates sent.
    pub max_updates: u64,
    /// Processes whose CPU and RSS are read around the measurement.
    pub server_pids: Vec<u32>,
    /// The `--server-pid` text, echoed in `params`.
    pub server_pid_arg: String,
    /// Settle seconds (idle scenario of `load.mjs`; accepted, unused).
    pub settle: f64,
    /// Room name prefix.
    pub room_prefix: String,
    /// No progress on stderr.
    pub quiet: bool,
}

/// Help text.
pub const USAGE: &str = "\
usage: yjs-load --port P [options]
Rust port of benches/yjs/load.mjs (load scenario, gateway and y-websocket targets): same options,
same wire behaviour, same JSON line on stdout followed by a one-line summary.
  --target gateway|y-websocket   URL shape (gateway: ws://HOST:PORT{path-prefix}{room}; y-websocket:
                         ws://HOST:PORT/{room}); hocuspocus and y-sweet: use load.mjs (gateway)
  --host H               server address (127.0.0.1; only loopback is accepted)
  --port P               server port (required)
  --path-prefix /yjs/    gateway route prefix (gateway target only)
  --rooms R              rooms (10)
  --clients C            clients per room (10)
  --writers W            writing clients per room (default: all C)
  --rate U               updates/s per writer; 0 = max throughput with --window in flight (10)
  --window N             rate 0: un-echoed updates in flight per writer (16)
  --duration S           measured seconds (10)
  --warmup S             seconds of sending before the measurement starts (1)
  --drain S              max seconds to wait for in-flight deliveries after sending stops (5)
  --threads T            tokio worker threads (2)
  --timeout S            hard limit for the whole run (120)
  --connect-concurrency  connections being opened at once per thread (50)
  --max-updates N        per-writer cap on updates sent (1000000)
  --server-pid P[,P2]    read CPU and RSS of these processes (/proc) around the measurement
  --room-prefix STR      room name prefix (default: random per run)
  --quiet                no progress on stderr
  --idle-rooms N, --settle S   the idle-room memory scenario is not implemented here: use load.mjs";

/// Outcome of parsing: run, or print help.
pub enum Parsed {
    /// Run with these options.
    Run(Box<Args>),
    /// `--help` was given.
    Help,
}

fn number(opt: &str, v: &str) -> anyhow::Result<f64> {
    let n: f64 = v
        .trim()
        .parse()
        .with_context(|| format!("--{opt}: not a number: {v}"))?;
    if !n.is_finite() {
        bail!("--{opt}: not a number: {v}");
    }
    Ok(n)
}

fn count(opt: &str, v: f64) -> anyhow::Result<u64> {
    if v < 0.0 || v.fract() != 0.0 || v > 1e15 {
        bail!("--{opt}: expected a whole number >= 0, got {v}");
    }
    Ok(v as u64)
}

fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.write_u32(std::process::id());
    h.finish()
}

/// A random value in `0..n`.
pub fn random_below(n: u64) -> u64 {
    random_u64() % n.max(1)
}

/// Parses the arguments (without the program name).
pub fn parse(argv: impl IntoIterator<Item = String>) -> anyhow::Result<Parsed> {
    let mut target = "gateway".to_string();
    let mut host = "127.0.0.1".to_string();
    let mut port = 0.0;
    let mut path_prefix = "/yjs/".to_string();
    let (mut rooms, mut clients, mut writers) = (10.0, 10.0, -1.0);
    let (mut rate, mut window, mut duration, mut warmup, mut drain) = (10.0, 16.0, 10.0, 1.0, 5.0);
    let (mut threads, mut timeout, mut cc, mut max_updates) = (2.0, 120.0, 50.0, 1_000_000.0);
    let (mut idle_rooms, mut settle) = (0.0, 2.0);
    let mut server_pid = String::new();
    let mut room_prefix = String::new();
    let mut quiet = false;
    let mut it = argv.into_iter();
    while let Some(a) = it.next() {
        if a == "-h" || a == "--help" {
            return Ok(Parsed::Help);
        }
        let Some(k) = a.strip_prefix("--") else {
            bail!("unexpected argument {a}");
        };
        if k == "quiet" {
            quiet = true;
            continue;
        }
        let known = [
            "target",
            "host",
            "port",
            "path-prefix",
            "rooms",
            "clients",
            "writers",
            "rate",
            "window",
            "duration",
            "warmup",
            "drain",
            "threads",
            "timeout",
            "connect-concurrency",
            "max-updates",
            "idle-rooms",
            "server-pid",
            "settle",
            "room-prefix",
        ];
        if !known.contains(&k) {
            bail!("unknown option {a}");
        }
        let v = it.next().with_context(|| format!("{a} needs a value"))?;
        match k {
            "target" => target = v,
            "host" => host = v,
            "path-prefix" => path_prefix = v,
            "server-pid" => server_pid = v,
            "room-prefix" => room_prefix = v,
            _ => {
                let n = number(k, &v)?;
                match k {
                    "port" => port = n,
                    "rooms" => rooms = n,
                    "clients" => clients = n,
                    "writers" => writers = n,
                    "rate" => rate = n,
                    "window" => window = n,
                    "duration" => duration = n,
                    "warmup" => warmup = n,
                    "drain" => drain = n,
                    "threads" => threads = n,
                    "timeout" => timeout = n,
                    "connect-concurrency" => cc = n,
                    "max-updates" => max_updates = n,
                    "idle-rooms" => idle_rooms = n,
                    "settle" => settle = n,
                    _ => unreachable!("option list above"),
                }
            }
        }
    }
    let target = match target.as_str() {
        "gateway" => Target::Gateway,
        "y-websocket" => Target::YWebsocket,
        "hocuspocus" | "y-sweet" => {
            bail!("--target {target}: not implemented in yjs-load, use benches/yjs/load.mjs")
        }
        _ => bail!("--target must be one of gateway, y-websocket"),
    };
    if idle_rooms > 0.0 {
        bail!(
            "--idle-rooms: the idle scenario is not implemented in yjs-load, use benches/yjs/load.mjs"
        );
    }
    if !(port > 0.0 && port < 65536.0 && port.fract() == 0.0) {
        bail!("--port is required");
    }
    if !is_loopback(&host) {
        bail!("--host must be a loopback address");
    }
    let clients = count("clients", clients)?;
    let writers = if writers < 0.0 || writers > clients as f64 {
        clients
    } else {
        count("writers", writers)?
    };
    let rooms = count("rooms", rooms)?;
    if rate < 0.0 {
        bail!("--rate must be >= 0");
    }
    for (name, v) in [
        ("duration", duration),
        ("warmup", warmup),
        ("drain", drain),
        ("timeout", timeout),
    ] {
        if v < 0.0 {
            bail!("--{name} must be >= 0");
        }
    }
    if room_prefix.is_empty() {
        const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
        let mut r = random_u64();
        room_prefix.push('b');
        for _ in 0..6 {
            room_prefix.push(DIGITS[(r % 36) as usize] as char);
            r /= 36;
        }
    }
    if !room_prefix
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        bail!("--room-prefix: use [A-Za-z0-9_-] only (y-sweet doc ids)");
    }
    let server_pids = server_pid
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.trim()
                .parse::<u32>()
                .with_context(|| format!("--server-pid: bad pid {s}"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let threads = (count("threads", threads)?.min(rooms) as usize).max(1);
    Ok(Parsed::Run(Box::new(Args {
        target,
        host,
        port: port as u16,
        path_prefix,
        rooms: rooms as usize,
        clients: clients as usize,
        writers: writers as usize,
        rate,
        window: count("window", window)?,
        duration,
        warmup,
        drain,
        threads,
        timeout,
        connect_concurrency: count("connect-concurrency", cc)?.max(1) as usize,
        max_updates: count("max-updates", max_updates)?,
        server_pids,
        server_pid_arg: server_pid,
        settle,
        room_prefix,
        quiet,
    })))
}

/// `load.mjs`' host rule: `127.x.y.z`, `localhost`, `::1` or `[::1]`.
fn is_loopback(h: &str) -> bool {
    if h == "localhost" || h == "::1" || h == "[::1]" {
        return true;
    }
    let parts: Vec<&str> = h.split('.').collect();
    parts.len() == 4
        && parts[0] == "127"
        && parts[1..]
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

/// A JSON number the way JS prints it: integral values without a fraction.
pub fn num(v: f64) -> Value {
    if v.is_finite() && v.fract() == 0.0 && v.abs() < 9.0e15 {
        Value::from(v as i64)
    } else {
        serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number)
    }
}

impl Args {
    /// The socket address and `Host` header value.
    pub fn addr(&self) -> anyhow::Result<(std::net::SocketAddr, String)> {
        let ip: std::net::IpAddr = match self.host.as_str() {
            "localhost" => std::net::Ipv4Addr::LOCALHOST.into(),
            "::1" | "[::1]" => std::net::Ipv6Addr::LOCALHOST.into(),
            h => h.parse().with_context(|| format!("bad host {h}"))?,
        };
        if !ip.is_loopback() {
            bail!("refusing to connect to {ip}: only loopback is allowed");
        }
        let host = if ip.is_ipv6() {
            format!("[::1]:{}", self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        };
        Ok((std::net::SocketAddr::new(ip, self.port), host))
    }

    /// The request path of `room`.
    pub fn room_path(&self, room: &str) -> String {
        match self.target {
            Target::Gateway => format!("{}{room}", self.path_prefix),
            Target::YWebsocket => format!("/{room}"),
        }
    }

    /// The options as `load.mjs` prints them in `params` (its option names).
    pub fn params(&self) -> Value {
        let mut m = Map::new();
        let s = |v: &str| Value::from(v);
        m.insert("target".into(), s(self.target.name()));
        m.insert("host".into(), s(&self.host));
        m.insert("port".into(), Value::from(self.port));
        m.insert("path-prefix".into(), s(&self.path_prefix));
        m.insert("rooms".into(), Value::from(self.rooms));
        m.insert("clients".into(), Value::from(self.clients));
        m.insert("writers".into(), Value::from(self.writers));
        m.insert("rate".into(), num(self.rate));
        m.insert("window".into(), Value::from(self.window));
        m.insert("duration".into(), num(self.duration));
        m.insert("warmup".into(), num(self.warmup));
        m.insert("drain".into(), num(self.drain));
        m.insert("threads".into(), Value::from(self.threads));
        m.insert("timeout".into(), num(self.timeout));
        m.insert(
            "connect-concurrency".into(),
            Value::from(self.connect_concurrency),
        );
        m.insert("max-updates".into(), Value::from(self.max_updates));
        m.insert("idle-rooms".into(), Value::from(0));
        m.insert("server-pid".into(), s(&self.server_pid_arg));
        m.insert("settle".into(), num(self.settle));
        m.insert("room-prefix".into(), s(&self.room_prefix));
        m.insert("quiet".into(), Value::from(self.quiet));
        Value::Object(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> anyhow::Result<Args> {
        match parse(a.iter().map(|s| s.to_string()))? {
            Parsed::Run(a) => Ok(*a),
            Parsed::Help => panic!("help"),
        }
    }

    #[test]
    fn defaults_and_rules() {
        let a = args(&["--port", "8080"]).unwrap();
        assert_eq!((a.rooms, a.clients, a.writers, a.threads), (10, 10, 10, 2));
        assert_eq!(a.target, Target::Gateway);
        assert!(a.room_prefix.starts_with('b') && a.room_prefix.len() == 7);
        assert_eq!(a.room_path("x-r0"), "/yjs/x-r0");
        let a = args(&[
            "--port",
            "1",
            "--rooms",
            "1",
            "--clients",
            "5",
            "--writers",
            "9",
        ])
        .unwrap();
        assert_eq!((a.writers, a.threads), (5, 1));
        assert!(args(&["--rooms", "3"]).is_err());
        assert!(args(&["--port", "1", "--host", "10.0.0.1"]).is_err());
        assert!(args(&["--port", "1", "--host", "127.0.0.2"]).is_ok());
        assert!(args(&["--port", "1", "--target", "hocuspocus"]).is_err());
        assert!(args(&["--port", "1", "--idle-rooms", "5"]).is_err());
        assert!(args(&["--port", "1", "--room-prefix", "a/b"]).is_err());
        assert!(args(&["--port", "1", "--bogus", "1"]).is_err());
        let a = args(&["--port", "1", "--server-pid", "12,34", "--rate", "0.5"]).unwrap();
        assert_eq!(a.server_pids, vec![12, 34]);
        assert_eq!(a.params()["rate"], serde_json::json!(0.5));
        assert_eq!(a.params()["duration"].to_string(), "10");
    }
}
