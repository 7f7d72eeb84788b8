//! `load`: the gateway load tool. See `load --help` and benches/README.md.

use std::process::ExitCode;

use gateway_benches::loadgen::{self, cli, sys};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    let args = cli::parse(std::env::args().skip(1))?;
    if let Some(limit) = sys::raise_nofile_limit()
        && (limit as usize) < args.conns + 64
    {
        eprintln!(
            "warning: open-files limit is {limit}; {} connections need more (raise the hard limit with ulimit -Hn)",
            args.conns
        );
    }
    gateway_benches::client::SOURCES.store(args.sources, std::sync::atomic::Ordering::Relaxed);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads)
        .enable_all()
        .build()?;
    let report = rt.block_on(loadgen::run(args))?;
    println!("{}", report.json);
    println!("{}", report.summary);
    // Don't wait for lingering connection tasks.
    rt.shutdown_background();
    Ok(())
}
