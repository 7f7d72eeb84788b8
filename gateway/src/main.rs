//! The `gateway` command: `serve`, `dev`, `worker`, `new-plugin`, `token` and `check`.

mod cli;

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
        "serve" => cli::serve::run(rest, false),
        "dev" => cli::serve::run(rest, true),
        "new-plugin" => cli::new_plugin::run(rest),
        "token" => cli::token::run(rest),
        "check" => cli::check::run(rest),
        "worker" => cli::worker::run(rest),
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
