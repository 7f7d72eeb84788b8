//! `yjs-load`: a Rust port of `benches/yjs/load.mjs` (its load scenario, gateway and y-websocket
//! targets). Same options, same join handshake, same hand-encoded updates, same counting and the
//! same JSON line, at a fraction of the CPU per delivery (the Node generator saturates at about
//! 80k deliveries/s on 2 cores).
//!
//! - [`cli`] parses the options.
//! - [`wire`] encodes and decodes lib0, y-websocket messages and Yjs updates.
//! - [`client`] runs one task per connection (join, read, count) and one sender task per writer.
//! - [`report`] builds the JSON result and the summary line.

pub mod cli;
pub mod client;
pub mod report;
pub mod wire;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::Duration;

use parking_lot::Mutex;
use serde_json::{Value, json};
use tokio::sync::{Semaphore, oneshot};
use tokio::time::Instant;

use crate::hist::SharedHistogram;
use crate::loadgen::session::Stop;
use crate::loadgen::sys;
use cli::{Args, num};
use client::{ClientEnd, Run, Slot, Stats, client_task, now_us};
use report::{latency, read_procs, round, summarize_procs};

/// Delay between the start message and the first send, so every writer starts on time.
const LEAD_US: u64 = 200_000;

fn log(a: &Args, msg: &str) {
    if !a.quiet {
        eprintln!("[yjs-load] {msg}");
    }
}

async fn sleep_until_us(us: u64) {
    let now = now_us();
    if us > now {
        tokio::time::sleep(Duration::from_micros(us - now)).await;
    }
}

/// Per-worker busy time of this runtime, in seconds.
fn workers_busy() -> Vec<f64> {
    let m = tokio::runtime::Handle::current().metrics();
    (0..m.num_workers())
        .map(|w| m.worker_total_busy_duration(w).as_secs_f64())
        .collect()
}

/// Runs the load scenario; returns the result object (`timed_out` is added by the caller).
pub async fn run(args: Args) -> anyhow::Result<Value> {
    let (addr, host) = args.addr()?;
    let n_clients = args.rooms * args.clients;
    let rooms: Vec<String> = (0..args.rooms)
        .map(|i| format!("{}-r{i}", args.room_prefix))
        .collect();
    let run = Arc::new(Run {
        addr,
        host,
        client_id_base: 1 + cli::random_below(1_000_000_000),
        rooms,
        slots: (0..n_clients).map(|_| Slot::default()).collect(),
        win_start_us: AtomicU64::new(u64::MAX),
        win_end_us: AtomicU64::new(u64::MAX),
        start: Stop::default(),
        stop: Stop::default(),
        senders_active: AtomicUsize::new(0),
        hist_peer: SharedHistogram::default(),
        hist_echo: SharedHistogram::default(),
        last_error: Mutex::new(None),
        args,
    });
    let a = &run.args;
    let pids = a.server_pids.clone();
    log(
        a,
        &format!(
            "{} port {}: {} rooms x {} clients ({} writing), {} threads, connecting...",
            a.target.name(),
            a.port,
            a.rooms,
            a.clients,
            a.writers,
            a.threads
        ),
    );

    // connect + sync, room by room: load.mjs opens ceil(cc / clients) rooms at once per thread
    let t0 = Instant::now();
    let rooms_at_once = a.threads * a.connect_concurrency.div_ceil(a.clients.max(1));
    let sem = Arc::new(Semaphore::new(rooms_at_once.max(1)));
    let mut room_tasks = Vec::with_capacity(a.rooms);
    for room in 0..a.rooms {
        let (run, sem) = (run.clone(), sem.clone());
        room_tasks.push(tokio::spawn(async move {
            let _permit = sem.acquire_owned().await;
            let mut handles = Vec::with_capacity(run.args.clients);
            let mut readies = Vec::with_capacity(run.args.clients);
            for c in 0..run.args.clients {
                let (tx, rx) = oneshot::channel();
                let idx = room * run.args.clients + c;
                handles.push(tokio::spawn(client_task(run.clone(), idx, tx)));
                readies.push(rx);
            }
            let mut first_error = None;
            for rx in readies {
                if let Ok(Err(e)) = rx.await {
                    first_error.get_or_insert(e);
                }
            }
            (handles, first_error)
        }));
    }
    let mut handles = Vec::with_capacity(n_clients);
    let mut connect_err: Option<String> = None;
    for t in room_tasks {
        let (h, e) = t.await?;
        handles.extend(h);
        if connect_err.is_none() {
            connect_err = e;
        }
    }
    let synced = run.slots.iter().filter(|s| s.synced.load(Relaxed)).count();
    log(
        a,
        &format!(
            "synced {synced}/{n_clients} in {:.1} s{}",
            t0.elapsed().as_secs_f64(),
            connect_err
                .as_ref()
                .map(|e| format!(" (first error: {e})"))
                .unwrap_or_default()
        ),
    );
    if synced == 0 {
        run.trigger_stop();
        return Ok(json!({
            "test": "load",
            "error": format!("no client synced: {}", connect_err.unwrap_or_default()),
            "params": a.params(),
        }));
    }

    // the window; writers start `warmup` before it
    let win_start = now_us() + LEAD_US + (a.warmup * 1e6) as u64;
    let win_end = win_start + (a.duration * 1e6) as u64;
    run.win_start_us.store(win_start, Relaxed);
    run.win_end_us.store(win_end, Relaxed);
    run.start.trigger();

    // CPU of this process (all threads), of the servers and of the machine over the window
    sleep_until_us(win_start).await;
    let cpu0 = sys::self_cpu_seconds();
    let p0 = read_procs(&pids);
    let m0 = sys::machine_busy_seconds();
    let busy0 = workers_busy();
    let wall0 = now_us();
    sleep_until_us(win_end).await;
    let cpu1 = sys::self_cpu_seconds();
    let p1 = read_procs(&pids);
    let m1 = sys::machine_busy_seconds();
    let busy1 = workers_busy();
    let win_s = (now_us() - wall0) as f64 / 1e6;
    log(a, "sending stopped, draining...");

    // senders end at the window's end (a blocked write at most 5 s later)
    let senders_deadline = Instant::now() + Duration::from_secs(6);
    while run.senders_active.load(Relaxed) > 0 && Instant::now() < senders_deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // drain: until every live client has every update of its room's writers, bounded by --drain
    let complete = || {
        (0..a.rooms).all(|room| {
            let first = room * a.clients;
            let want: u64 = (first..first + a.writers)
                .filter(|&w| run.slots[w].synced.load(Relaxed))
                .map(|w| run.slots[w].sent.load(Relaxed))
                .sum();
            (first..first + a.clients).all(|c| {
                let s = &run.slots[c];
                !s.synced.load(Relaxed) || s.closed.load(Relaxed) || s.got.load(Relaxed) >= want
            })
        })
    };
    let drain_end = Instant::now() + Duration::from_secs_f64(a.drain);
    while !complete() && Instant::now() < drain_end {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // stop: readers hand back their counts and close their connections
    run.trigger_stop();
    let mut ends: Vec<Option<ClientEnd>> = Vec::with_capacity(n_clients);
    let collect_deadline = Instant::now() + Duration::from_secs(5);
    for h in handles {
        ends.push(
            tokio::time::timeout_at(collect_deadline, h)
                .await
                .ok()
                .and_then(Result::ok),
        );
    }
    let mut s = Stats::default();
    let (mut lost, mut echo_lost, mut stalled) = (0u64, 0u64, 0u64);
    for room in 0..a.rooms {
        let first = room * a.clients;
        for (c, end) in ends.iter().enumerate().skip(first).take(a.clients) {
            let Some(end) = end else { continue };
            s += end.stats;
            if end.counts.is_empty() {
                continue; // never synced
            }
            for w in 0..a.writers {
                let ws = &run.slots[first + w];
                if !ws.synced.load(Relaxed) {
                    continue;
                }
                let missing = ws.sent.load(Relaxed).saturating_sub(end.counts[w]);
                if first + w == c {
                    echo_lost += missing;
                    if missing > 0 {
                        stalled += 1;
                    }
                } else {
                    lost += missing;
                }
            }
        }
    }

    let hp = run.hist_peer.snapshot();
    let he = run.hist_echo.snapshot();
    let client_cpu = match (cpu0, cpu1) {
        (Some(c0), Some(c1)) => round((c1 - c0) / win_s, 3),
        _ => f64::NAN,
    };
    let busy: Vec<Value> = busy0
        .iter()
        .zip(&busy1)
        .map(|(b0, b1)| num(round((b1 - b0) / win_s, 3)))
        .collect();
    let server = summarize_procs(&p0, &p1, win_s);
    let per_s = |n: u64| {
        if a.duration > 0.0 {
            (n as f64 / a.duration).round()
        } else {
            0.0
        }
    };
    let expected = s.delivered + lost;
    let last_error = connect_err.or_else(|| run.last_error.lock().clone());
    let mut results = json!({
        "clients": n_clients,
        "synced": synced,
        "connect_failed": n_clients - synced,
        "window_s": num(round(win_s, 2)),
        "updates_sent": s.sent,
        "updates_sent_per_s": num(per_s(s.sent_in_win)),
        "deliveries_per_s": num(per_s(s.delivered_in_win)),
        "delivered": s.delivered,
        "lost": lost,
        "delivery_ratio": if expected > 0 { num(round(s.delivered as f64 / expected as f64, 6)) } else { Value::Null },
        "latency_ms": latency(&hp),
        "echoes": s.echoes,
        "echo_lost": echo_lost,
        "echo_latency_ms": latency(&he),
        "duplicates": s.dups + s.echo_dups,
        "foreign_items": s.foreign,
        "stalled_writers": stalled,
        "closes": s.closes,
        "errors": s.errors + s.parse_errors,
        "decode_errors": s.decode_errors,
        "frames_decoded": s.frames_decoded,
        "client_cpu_cores": num(client_cpu),
        "client_event_loop_utilization": busy,
        "update_encoding": "direct",
        "server": server,
        "other_cpu_cores": Value::Null,
        "last_error": last_error,
    });
    if let (Some(m0), Some(m1)) = (m0, m1) {
        let server_cores: f64 = results["server"]
            .as_array()
            .map(|v| v.iter().filter_map(|x| x["cpu_cores"].as_f64()).sum())
            .unwrap_or(0.0);
        let machine = round((m1 - m0) / win_s, 3);
        let client = if client_cpu.is_nan() { 0.0 } else { client_cpu };
        results["machine_cpu_cores"] = num(machine);
        results["other_cpu_cores"] = num(round((machine - server_cores - client).max(0.0), 3));
    }
    Ok(json!({
        "test": if a.rate == 0.0 { "throughput" } else { "latency" },
        "target": a.target.name(),
        "generator": "yjs-load (rust)",
        "params": a.params(),
        "results": results,
    }))
}
