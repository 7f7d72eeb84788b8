//! Command-line options of the `load` tool.

use anyhow::{Context, bail};

/// Which scenario to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Test {
    /// Open connections as fast as possible.
    Storm,
    /// Every connection sends M messages as fast as possible.
    Throughput,
    /// Every connection sends at a fixed rate for a duration.
    Sustained,
    /// One publisher, N subscribers.
    Fanout,
    /// Hold N idle connections and measure server memory.
    Idle,
}

/// Which server is being driven.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The gateway with the chat plugin: JWTs, chat envelopes.
    Chat,
    /// The bare server: no tokens, raw payloads.
    Bare,
    /// The gateway with the ably-rooms plugin: the Ably realtime protocol (JSON) on channel
    /// `bench`, key auth from `GATEWAY_ABLY_KEYS`.
    Ably,
}

impl Test {
    /// The scenario's name.
    pub fn name(self) -> &'static str {
        match self {
            Test::Storm => "storm",
            Test::Throughput => "throughput",
            Test::Sustained => "sustained",
            Test::Fanout => "fanout",
            Test::Idle => "idle",
        }
    }

    fn parse(s: &str) -> anyhow::Result<Self> {
        Ok(match s {
            "storm" => Test::Storm,
            "throughput" => Test::Throughput,
            "sustained" => Test::Sustained,
            "fanout" => Test::Fanout,
            "idle" => Test::Idle,
            other => bail!("unknown test {other:?} (storm|throughput|sustained|fanout|idle)"),
        })
    }
}

impl Mode {
    /// The mode's name.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Chat => "chat",
            Mode::Bare => "bare",
            Mode::Ably => "ably",
        }
    }

    /// Whether the server sends presence noise after connects that a run must wait out.
    pub fn has_join_noise(self) -> bool {
        self == Mode::Chat
    }
}

/// Parsed options; see [`USAGE`].
#[derive(Debug, Clone)]
pub struct Args {
    /// Scenario.
    pub test: Test,
    /// WebSocket URL (loopback only).
    pub url: String,
    /// A second gateway's URL: odd-numbered connections go there (two gateways on one Redis).
    pub url2: Option<String>,
    /// Where the fanout publisher connects (default: `url`).
    pub publisher_url: Option<String>,
    /// Protocol flavour.
    pub mode: Mode,
    /// HS256 secret for minting tokens (chat mode).
    pub secret: Option<String>,
    /// Connections (subscribers for fanout).
    pub conns: usize,
    /// Connection attempts in flight at once.
    pub concurrency: usize,
    /// Messages per connection (throughput) or published messages (fanout).
    pub messages: u64,
    /// Messages per second: per connection (sustained) or for the publisher (fanout; 0 = unpaced).
    pub rate: f64,
    /// Messages per write for senders.
    pub burst: u64,
    /// Seconds: sending time (sustained) or hold time (idle).
    pub duration: f64,
    /// Payload size in bytes.
    pub size: usize,
    /// Global time limit in seconds.
    pub timeout: f64,
    /// Tokio worker threads for the load tool.
    pub threads: usize,
    /// Server process whose RSS `idle` reads.
    pub server_pid: Option<u32>,
    /// Idle: every connection sends one ping (and waits for the pong) before holding.
    pub ping: bool,
    /// Distinct chat users (connections share users round-robin); default one per connection.
    pub users: Option<usize>,
    /// Loopback source addresses to spread connections over (127.0.0.1 .. 127.0.0.N).
    pub sources: u8,
}

/// Help text.
pub const USAGE: &str = "\
usage: load <storm|throughput|sustained|fanout|idle> [options]
  --url URL            loopback only; default ws://127.0.0.1:8080/ws (chat), ws://127.0.0.1:9001/ws
                       (bare) or ws://127.0.0.1:8080/?format=json (ably)
  --url2 URL           a second gateway (same Redis): odd-numbered connections open there; the
                       fanout publisher stays on --url
  --publisher-url URL  fanout: the publisher connects here instead of --url
  --mode chat|bare|ably  chat: JWT + chat envelopes (gateway); bare: raw frames (bare-server);
                       ably: the Ably protocol (gateway, ably-rooms; key from $GATEWAY_ABLY_KEYS)
  --secret S           HS256 secret (default: $GATEWAY_JWT_SECRET)
  --conns N            connections; subscribers for fanout (100)
  --concurrency C      connection attempts in flight (100)
  --messages M         per connection for throughput (100); published for fanout (5000)
  --rate R             msgs/s per connection for sustained (10); publisher msgs/s for fanout (1000, 0 = unpaced)
  --burst B            messages per write (throughput 16, otherwise 1)
  --duration D         seconds of sending (sustained, 10) or holding (idle, 2)
  --size BYTES         payload size (100)
  --timeout S          hard limit for the whole run (60)
  --threads T          tokio worker threads of the load tool (default: number of CPUs)
  --server-pid PID     server process: idle reads its RSS and CPU, fanout its CPU per delivery
  --sources N          spread connections over source addresses 127.0.0.1..N (1; ~28k ports each)
  --users U            distinct chat users (default: one per connection)
  --ping               idle: each connection sends one ping and waits for the pong first";

/// Parses the process arguments (without the program name).
pub fn parse(argv: impl IntoIterator<Item = String>) -> anyhow::Result<Args> {
    let mut test = None;
    let mut opts: Vec<(String, String)> = Vec::new();
    let mut it = argv.into_iter();
    while let Some(a) = it.next() {
        if a == "-h" || a == "--help" {
            println!("{USAGE}");
            std::process::exit(0);
        }
        if a == "--ping" {
            opts.push(("ping".into(), "true".into()));
            continue;
        }
        if let Some(flag) = a.strip_prefix("--") {
            let (k, v) = match flag.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (
                    flag.to_string(),
                    it.next()
                        .with_context(|| format!("--{flag} needs a value"))?,
                ),
            };
            if k == "test" {
                test = Some(Test::parse(&v)?);
            } else {
                opts.push((k, v));
            }
        } else if test.is_none() {
            test = Some(Test::parse(&a)?);
        } else {
            bail!("unexpected argument {a:?}\n{USAGE}");
        }
    }
    let test = test.with_context(|| format!("no test given\n{USAGE}"))?;
    let mut args = Args {
        test,
        url: String::new(),
        url2: None,
        publisher_url: None,
        mode: Mode::Chat,
        secret: std::env::var("GATEWAY_JWT_SECRET")
            .ok()
            .filter(|s| !s.is_empty()),
        conns: 100,
        concurrency: 100,
        messages: if test == Test::Fanout { 5000 } else { 100 },
        rate: if test == Test::Fanout { 1000.0 } else { 10.0 },
        burst: if test == Test::Throughput { 16 } else { 1 },
        duration: if test == Test::Idle { 2.0 } else { 10.0 },
        size: 100,
        timeout: 60.0,
        threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
        server_pid: None,
        sources: 1,
        users: None,
        ping: false,
    };
    for (k, v) in opts {
        let bad = || format!("bad value for --{k}: {v:?}");
        match k.as_str() {
            "url" => args.url = v,
            "url2" => args.url2 = Some(v),
            "publisher-url" => args.publisher_url = Some(v),
            "mode" => {
                args.mode = match v.as_str() {
                    "chat" => Mode::Chat,
                    "bare" => Mode::Bare,
                    "ably" => Mode::Ably,
                    _ => bail!(bad()),
                }
            }
            "secret" => args.secret = Some(v),
            "conns" => args.conns = v.parse().with_context(bad)?,
            "concurrency" => args.concurrency = v.parse().with_context(bad)?,
            "messages" => args.messages = v.parse().with_context(bad)?,
            "rate" => args.rate = v.parse().with_context(bad)?,
            "burst" => args.burst = v.parse().with_context(bad)?,
            "duration" => args.duration = v.parse().with_context(bad)?,
            "size" => args.size = v.parse().with_context(bad)?,
            "timeout" => args.timeout = v.parse().with_context(bad)?,
            "threads" => args.threads = v.parse().with_context(bad)?,
            "server-pid" => args.server_pid = Some(v.parse().with_context(bad)?),
            "sources" => {
                args.sources = v.parse().with_context(bad)?;
                anyhow::ensure!(
                    (1..=254).contains(&args.sources),
                    "--sources must be 1..254"
                );
            }
            "ping" => args.ping = v.parse().with_context(bad)?,
            "users" => args.users = Some(v.parse().with_context(bad)?),
            other => bail!("unknown option --{other}\n{USAGE}"),
        }
    }
    if args.url.is_empty() {
        args.url = match args.mode {
            Mode::Chat => "ws://127.0.0.1:8080/ws",
            Mode::Bare => "ws://127.0.0.1:9001/ws",
            Mode::Ably => "ws://127.0.0.1:8080/?format=json&heartbeats=false&v=6",
        }
        .into();
    }
    if !(args.timeout > 0.0 && args.timeout <= 3600.0) {
        bail!("--timeout must be in (0, 3600]");
    }
    let valid = |v: f64| v.is_finite() && v >= 0.0;
    if !valid(args.rate) || !valid(args.duration) {
        bail!("--rate and --duration must be non-negative");
    }
    if args.conns == 0 || args.concurrency == 0 || args.burst == 0 || args.threads == 0 {
        bail!("--conns, --concurrency, --burst and --threads must be positive");
    }
    if args.users == Some(0) {
        bail!("--users must be positive");
    }
    Ok(args)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn parses_positional_and_flag_forms() {
        let a = parse(argv("fanout --mode bare --conns 1000 --rate=0")).unwrap();
        assert_eq!(a.test, Test::Fanout);
        assert_eq!(a.mode, Mode::Bare);
        assert_eq!(a.conns, 1000);
        assert_eq!(a.rate, 0.0);
        assert_eq!(a.messages, 5000);
        assert_eq!(a.url, "ws://127.0.0.1:9001/ws");
        let a = parse(argv("--test storm --concurrency 7")).unwrap();
        assert_eq!(a.test, Test::Storm);
        assert_eq!(a.concurrency, 7);
    }

    #[test]
    fn rejects_garbage() {
        assert!(parse(argv("storm --bogus 1")).is_err());
        assert!(parse(argv("nope")).is_err());
        assert!(parse(argv("storm --conns 0")).is_err());
    }
}
