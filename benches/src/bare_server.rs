//! `bare-server`: the native broadcast baseline (hyper 1 + fastwebsockets + tokio).
//!
//! Usage: `bare-server [--listen 127.0.0.1:9001] [--threads N] [--queue FRAMES]`

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use anyhow::{Context, bail};
use gateway_benches::bare::{self, Hub};

struct Args {
    listen: SocketAddr,
    threads: usize,
    queue: usize,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args {
        listen: "127.0.0.1:9001".parse().expect("valid default"),
        threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
        queue: 4096,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "-h" || flag == "--help" {
            println!("usage: bare-server [--listen ADDR] [--threads N] [--queue FRAMES]");
            std::process::exit(0);
        }
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--listen" => args.listen = value.parse().context("--listen")?,
            "--threads" => args.threads = value.parse().context("--threads")?,
            "--queue" => args.queue = value.parse().context("--queue")?,
            other => bail!("unknown option {other}"),
        }
    }
    Ok(args)
}

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
    let args = parse_args()?;
    gateway_benches::loadgen::sys::raise_nofile_limit();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = bare::bind(args.listen)
            .await
            .with_context(|| format!("bind {}", args.listen))?;
        println!("listening on {}", listener.local_addr()?);
        let hub = Arc::new(Hub::new(args.queue));
        tokio::spawn(report_stats(hub.clone()));
        tokio::select! {
            _ = bare::serve(listener, hub) => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        Ok(())
    })
}

/// Prints the hub counters to stderr every 5 s while they change.
async fn report_stats(hub: Arc<Hub>) {
    let mut last = (u64::MAX, 0, 0, 0);
    loop {
        tokio::time::sleep(Duration::from_secs(5)).await;
        let s = &hub.stats;
        let now = (
            s.connections.load(Relaxed),
            s.published.load(Relaxed),
            s.deliveries.load(Relaxed),
            s.dropped_slow.load(Relaxed),
        );
        if now != last {
            eprintln!(
                "connections={} published={} deliveries={} dropped_slow={}",
                now.0, now.1, now.2, now.3
            );
            last = now;
        }
    }
}
