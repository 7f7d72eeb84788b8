//! The `gateway` command: `serve`, `dev`, `worker`, `token`, `check`, `init`, `new-plugin` and `client`,
//! parsed with clap (every `GATEWAY_*` variable is bound to a flag).

mod cli;

use clap::Parser;
use cli::Command;

fn main() {
    let args = cli::Cli::parse();
    // The long-running commands log what they do; the one-shot ones only what goes wrong.
    let quiet = !matches!(
        args.command,
        Command::Serve(_) | Command::Dev(_) | Command::Worker(_)
    );
    cli::init_logs(args.log_format, if quiet { "warn" } else { "info" });
    let result = match args.command {
        Command::Serve(a) => cli::serve::run(a, false),
        Command::Dev(a) => cli::serve::run(a, true),
        Command::Worker(a) => cli::worker::run(a),
        Command::Token(a) => cli::token::run(a),
        Command::Check(a) => cli::check::run(a),
        Command::Init(a) => cli::init::run(a),
        Command::NewPlugin(a) => cli::new_plugin::run(a),
        Command::Client(a) => cli::client::run(a),
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
