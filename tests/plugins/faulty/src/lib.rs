//! A misbehaving plugin for the fault-isolation tests (`tests/faults.rs`), which also pokes the
//! host's key-value store for the cluster tests (`tests/cluster.rs`).
//!
//! Text frames are commands:
//! - `trap`: panics; with `panic = "abort"` this is a wasm `unreachable` trap.
//! - `loop`: spins forever; only the host's epoch deadline (`call_timeout_ms`) can stop it.
//! - `oom`: allocates until the instance's memory limit refuses to grow, which aborts.
//! - `kv-set KEY VALUE [TTL_MS]`, `kv-get KEY`, `kv-del KEY`, `kv-scan PREFIX LIMIT`,
//!   `kv-count PREFIX`: answer with one text frame (`ok`, `err ...`, the value, `none`, `true`,
//!   `false`, `KEY=VALUE` pairs joined by `,`, or the count).
//! - `append KEY N SIZE KEEP_MS`: appends N entries of SIZE bytes to the retained stream KEY
//!   and answers `ok LAST_ID` (each one stored), or `err AT_INDEX ERROR` at the first refusal.
//! - `count KEY`: pages through KEY with `read-back` and answers with its entry count.
//! - `add KEY N SIZE`: queues N y-redis appends (`add-message`, which returns once queued) of
//!   SIZE bytes to the room stream KEY and answers `queued N`, or `err AT_INDEX ERROR`.
//! - `put NAME DATA`, `ls PREFIX`: a storage put (answers `ok` or `err ...`) and list (the
//!   names joined by `,`).
//! - `whoami`: answers with the connection's id.
//! - `poke ID`: tries `connection-info`, `set-attachment`, `subscribe`, `send` and `close` (4000)
//!   on connection ID and answers `info=.. attach=.. subscribe=.. send=.. close=..`, each `ok`
//!   or `refused` (the host must refuse them for another plugin's connection).
//!
//! Every other frame (text or binary) is echoed back unchanged to its sender.

use plugin_sdk::{Frame, Plugin, export_plugin, host};

struct Faulty;

impl Plugin for Faulty {
    fn on_frame(conn: u64, _attachment: Vec<u8>, frame: Frame) {
        if let Frame::Text(text) = &frame {
            match text.as_str() {
                "trap" => trap(),
                "loop" => spin_forever(),
                "oom" => exhaust_memory(),
                t if t.starts_with("kv-") => {
                    let _ = host::send(conn, &Frame::Text(kv_command(t)));
                    return;
                }
                t if t.starts_with("append ")
                    || t.starts_with("count ")
                    || t.starts_with("add ") =>
                {
                    let _ = host::send(conn, &Frame::Text(stream_command(t)));
                    return;
                }
                t if t.starts_with("put ") || t.starts_with("ls ") => {
                    let _ = host::send(conn, &Frame::Text(storage_command(t)));
                    return;
                }
                "whoami" => {
                    let _ = host::send(conn, &Frame::Text(conn.to_string()));
                    return;
                }
                t if t.starts_with("poke ") => {
                    let target = t[5..].parse().unwrap_or(0);
                    let _ = host::send(conn, &Frame::Text(poke(target)));
                    return;
                }
                _ => {}
            }
        }
        let _ = host::send(conn, &frame);
    }
}

fn poke(target: u64) -> String {
    let word = |ok: bool| if ok { "ok" } else { "refused" };
    format!(
        "info={} attach={} subscribe={} send={} close={}",
        word(host::connection_info(target).is_some()),
        word(host::set_attachment(target, b"hijacked").is_ok()),
        word(host::subscribe(target, "hijack").is_ok()),
        word(host::send(target, &Frame::Text("hijack".into())).is_ok()),
        word(host::close(target, 4000, "hijack").is_ok()),
    )
}

fn kv_command(cmd: &str) -> String {
    let args: Vec<&str> = cmd.split(' ').collect();
    match args.as_slice() {
        ["kv-set", key, value, rest @ ..] => {
            let ttl = rest.first().and_then(|t| t.parse().ok());
            match host::kv_set(key, value.as_bytes(), ttl) {
                Ok(()) => "ok".into(),
                Err(e) => format!("err {e:?}"),
            }
        }
        ["kv-get", key] => host::kv_get(key).map_or_else(
            || "none".into(),
            |v| String::from_utf8_lossy(&v).into_owned(),
        ),
        ["kv-del", key] => host::kv_delete(key).to_string(),
        ["kv-scan", prefix, limit] => host::kv_scan(prefix, limit.parse().unwrap_or(0))
            .into_iter()
            .map(|(k, v)| format!("{k}={}", String::from_utf8_lossy(&v)))
            .collect::<Vec<_>>()
            .join(","),
        ["kv-count", prefix] => host::kv_count(prefix).to_string(),
        _ => "err bad command".into(),
    }
}

fn storage_command(cmd: &str) -> String {
    let args: Vec<&str> = cmd.splitn(3, ' ').collect();
    match args.as_slice() {
        ["put", name, data] => match plugin_sdk::storage::put(name, data.as_bytes()) {
            Ok(()) => "ok".into(),
            Err(e) => format!("err {e:?}"),
        },
        ["ls", prefix] => match plugin_sdk::storage::list(prefix) {
            Ok(names) => names.join(","),
            Err(e) => format!("err {e:?}"),
        },
        _ => "err bad command".into(),
    }
}

fn stream_command(cmd: &str) -> String {
    let args: Vec<&str> = cmd.split(' ').collect();
    match args.as_slice() {
        ["append", key, n, size, keep] => {
            let (n, size, keep): (u32, usize, u64) = (
                n.parse().unwrap_or(0),
                size.parse().unwrap_or(0),
                keep.parse().unwrap_or(0),
            );
            let mut last = String::new();
            for i in 0..n {
                let data = vec![b'a' + (i % 26) as u8; size];
                match plugin_sdk::streams::append(key, &data, keep) {
                    Ok(id) => last = id,
                    Err(e) => return format!("err {i} {e:?}"),
                }
            }
            format!("ok {last}")
        }
        ["add", key, n, size] => {
            let (n, size): (u32, usize) = (n.parse().unwrap_or(0), size.parse().unwrap_or(0));
            for i in 0..n {
                let data = vec![b'a' + (i % 26) as u8; size];
                if let Err(e) = plugin_sdk::streams::add_message(key, &data) {
                    return format!("err {i} {e:?}");
                }
            }
            format!("queued {n}")
        }
        ["count", key] => {
            let mut before = "+".to_string();
            let mut total = 0u64;
            loop {
                match plugin_sdk::streams::read_back(key, &before, 1000) {
                    Ok(page) if page.is_empty() => return total.to_string(),
                    Ok(page) => {
                        total += page.len() as u64;
                        before = page.last().map(|e| e.id.clone()).unwrap_or_default();
                    }
                    Err(e) => return format!("err {e:?}"),
                }
            }
        }
        _ => "err bad command".into(),
    }
}

fn trap() -> ! {
    panic!("faulty plugin: trap requested");
}

fn spin_forever() -> ! {
    let mut counter: u64 = 0;
    loop {
        // black_box keeps the loop observable so it cannot be optimised away.
        counter = std::hint::black_box(counter.wrapping_add(1));
    }
}

fn exhaust_memory() -> ! {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        // Touch every page so the memory is really committed.
        let chunk = vec![0xA5u8; 1 << 20];
        hoard.push(std::hint::black_box(chunk));
    }
}

export_plugin!(Faulty);
