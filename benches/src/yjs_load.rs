//! `yjs-load`: the Yjs load generator (Rust port of benches/yjs/load.mjs). See `yjs-load --help`
//! and benches/yjs/README.md.

use std::process::ExitCode;
use std::time::Duration;

use gateway_benches::loadgen::sys;
use gateway_benches::yjsgen::{self, cli, report};

fn main() -> ExitCode {
    let args = match cli::parse(std::env::args().skip(1)) {
        Ok(cli::Parsed::Run(a)) => *a,
        Ok(cli::Parsed::Help) => {
            println!("{}", cli::USAGE);
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("yjs-load: {e:#}\n{}", cli::USAGE);
            return ExitCode::from(2);
        }
    };
    if let Some(limit) = sys::raise_nofile_limit()
        && (limit as usize) < args.rooms * args.clients + 64
    {
        eprintln!(
            "warning: open-files limit is {limit}; {} connections need more",
            args.rooms * args.clients
        );
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("yjs-load: runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let timeout = Duration::from_secs_f64(args.timeout);
    let (target, params) = (args.target.name(), args.params());
    let outcome = rt.block_on(async { tokio::time::timeout(timeout, yjsgen::run(args)).await });
    // don't wait for lingering connection tasks
    rt.shutdown_background();
    match outcome {
        Err(_) => {
            let r = serde_json::json!({
                "test": "load",
                "target": target,
                "params": params,
                "timed_out": true,
                "error": format!("timed out after {} s", timeout.as_secs_f64()),
            });
            println!("{r}");
            println!("TIMEOUT after {} s", timeout.as_secs_f64());
            ExitCode::from(4)
        }
        Ok(Err(e)) => {
            eprintln!("[yjs-load] failed: {e:#}");
            ExitCode::FAILURE
        }
        Ok(Ok(mut r)) => {
            r["timed_out"] = false.into();
            println!("{r}");
            println!("{}", report::human(&r));
            if r.get("error").is_some() {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
    }
}
