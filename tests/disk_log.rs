//! Drills on the embedded stream log (`[streams]`): a damaged record in the middle of the log,
//! SIGKILL while the log is being rewritten, and a full disk. Each drives a real gateway
//! process through the `faulty` test plugin's `append`/`count` commands (retained streams,
//! each append acknowledged once it is in the log) and restarts it on the same directory.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use support::*;

/// Keep entries for a day: nothing the drills write expires while they run.
const DAY_MS: u64 = 86_400_000;

/// `faulty` on `/faulty` with the stream log in `dir`.
fn config(dir: &Path, extra: &str) -> String {
    format!(
        r#"
[streams]
data_dir = "{}"
{extra}

[plugins.faulty]
wasm = @FAULTY_WASM@
max_instances = 1
memory_limit_mb = 64
call_timeout_ms = 20000

[[routes]]
path = "/faulty"
kind = "websocket"
plugin = "faulty"
origins = ["*"]
"#,
        dir.display()
    )
}

async fn client(gw: &Gateway) -> WsClient {
    let mut c = gw.ws("/faulty").await;
    c.expect_echo("drill", "warm up").await;
    c
}

/// Appends `n` entries of `size` bytes to `key`; the plugin's answer (`ok ID` or `err ...`).
async fn append(c: &mut WsClient, key: &str, n: u32, size: usize, keep_ms: u64) -> String {
    c.send_text(&format!("append {key} {n} {size} {keep_ms}"))
        .await;
    match c.recv_within(Duration::from_secs(60)).await {
        Some(WsEvent::Text(t)) => t,
        other => panic!("no answer to append {key} {n}: {other:?}"),
    }
}

/// Appends and expects every entry stored.
async fn append_ok(c: &mut WsClient, key: &str, n: u32, size: usize, keep_ms: u64) {
    let answer = append(c, key, n, size, keep_ms).await;
    assert!(answer.starts_with("ok "), "append {key} {n}: {answer}");
}

async fn count(c: &mut WsClient, key: &str) -> u64 {
    c.send_text(&format!("count {key}")).await;
    let answer = c.recv_text().await;
    answer
        .parse()
        .unwrap_or_else(|_| panic!("count {key}: {answer}"))
}

/// Stops a gateway with SIGTERM and waits for it to exit.
async fn stop(mut gw: Gateway) -> String {
    gw.sigterm();
    assert!(
        gw.wait_exit(Duration::from_secs(30)).await.is_some(),
        "the gateway did not exit after SIGTERM"
    );
    gw.logs()
}

fn log_file(dir: &Path) -> PathBuf {
    dir.join("streams.log")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_record_in_the_middle_keeps_every_record_before_it() {
    let dir = unique_temp_dir("drill-torn");
    let cfg = config(&dir, "sync_interval_ms = 0");

    let gw = Gateway::start(cfg.clone());
    let mut c = client(&gw).await;
    append_ok(&mut c, "faulty:k", 50, 100, DAY_MS).await;
    drop(c);
    stop(gw).await;

    // The second run appends to the log where the first left it; damage lands in its first
    // record.
    let gw = Gateway::start(cfg.clone());
    let first_run_bytes = std::fs::metadata(log_file(&dir)).unwrap().len();
    let mut c = client(&gw).await;
    append_ok(&mut c, "faulty:k", 30, 100, DAY_MS).await;
    assert_eq!(count(&mut c, "faulty:k").await, 80);
    drop(c);
    stop(gw).await;
    let mut bytes = std::fs::read(log_file(&dir)).unwrap();
    let total = bytes.len() as u64;
    bytes[first_run_bytes as usize + 20] ^= 0x5A;
    std::fs::write(log_file(&dir), &bytes).unwrap();

    let gw = Gateway::start(cfg.clone());
    let mut c = client(&gw).await;
    assert_eq!(
        count(&mut c, "faulty:k").await,
        50,
        "every record before the damage is kept"
    );
    let logs = plain(&gw.logs());
    assert!(
        logs.contains("stream log damaged (checksum mismatch)")
            && logs.contains("dropped_records=30"),
        "replay says what it dropped:\n{logs}"
    );
    let saved: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().contains(".dropped-"))
        .collect();
    assert_eq!(saved.len(), 1, "the dropped bytes are saved beside the log");
    assert_eq!(
        saved[0].metadata().unwrap().len(),
        total - first_run_bytes,
        "all of them"
    );
    let errors = gw.metrics().await.value("gateway_stream_log_errors_total");
    assert_eq!(errors, 1.0, "the damage is counted");
    eprintln!(
        "DRILL damaged-record: kept 50 of 80 entries, dropped {} bytes (30 records), saved aside",
        total - first_run_bytes
    );
    // The log heals: new appends follow the kept records and replay cleanly.
    append_ok(&mut c, "faulty:k", 5, 100, DAY_MS).await;
    drop(c);
    stop(gw).await;
    let gw = Gateway::start(cfg);
    let mut c = client(&gw).await;
    assert_eq!(count(&mut c, "faulty:k").await, 55);
    assert!(!gw.logs().contains("damaged"), "{}", gw.logs());
    drop(c);
    stop(gw).await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_a_log_rewrite_loses_no_acknowledged_entry() {
    let dir = unique_temp_dir("drill-rewrite");
    // Rewrites start early; 30 MiB of live entries make one take long enough to be killed in.
    let cfg = config(&dir, "sync_interval_ms = 0\nrewrite_min_bytes = 262144");
    let live_entries = 3_000u32;
    let live_size = 10_000usize;

    let gw = Gateway::start(cfg.clone());
    let mut c = client(&gw).await;
    let mut acked_keep = 0u64;
    for _ in 0..10 {
        append_ok(&mut c, "faulty:keep", live_entries / 10, live_size, DAY_MS).await;
        acked_keep += u64::from(live_entries / 10);
    }
    drop(c);
    let mut gw = Some(gw);
    let mut killed_mid_rewrite = 0;
    // Each round makes garbage (entries that expire at once) until a rewrite starts, kills the
    // gateway with SIGKILL at once, and checks the restarted one has every acknowledged entry.
    for round in 0..3 {
        let mut g = gw.take().unwrap_or_else(|| Gateway::start(cfg.clone()));
        let mut c = client(&g).await;
        assert_eq!(
            count(&mut c, "faulty:keep").await,
            acked_keep,
            "round {round}: entries survive"
        );
        assert!(
            !dir.join("streams.log.tmp").exists(),
            "the unfinished rewrite is cleaned up"
        );
        assert!(!g.logs().contains("damaged"), "{}", g.logs());
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline && !g.logs().contains("stream log rewrite started") {
            append_ok(&mut c, "faulty:churn", 50, live_size, 1).await;
        }
        // Acknowledged appends racing the rewrite go to the old log and the new one.
        append_ok(&mut c, "faulty:keep", 1, live_size, DAY_MS).await;
        acked_keep += 1;
        g.sigkill();
        let mid = dir.join("streams.log.tmp").exists();
        eprintln!("round {round}: killed with the rewrite's temporary file present: {mid}");
        killed_mid_rewrite += usize::from(mid);
    }
    assert!(killed_mid_rewrite > 0, "no SIGKILL landed inside a rewrite");
    let restarted = Instant::now();
    let gw = Gateway::start(cfg);
    let mut c = client(&gw).await;
    assert_eq!(
        count(&mut c, "faulty:keep").await,
        acked_keep,
        "acknowledged entries survive"
    );
    eprintln!(
        "DRILL sigkill-rewrite: {killed_mid_rewrite}/3 kills inside a rewrite, {acked_keep} \
         acknowledged entries ({} MiB) all back, restart + replay {} ms",
        (acked_keep * live_size as u64) >> 20,
        restarted.elapsed().as_millis()
    );
    drop(c);
    stop(gw).await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// A tmpfs of `size` mounted on `dir`; `None` (with a message) where mounting is not allowed.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(dir).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Tmpfs(dir.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_appends_and_leaves_a_clean_log() {
    let dir = unique_temp_dir("drill-full");
    let Some(_mount) = Tmpfs::mount(&dir, "2m") else {
        eprintln!(
            "SKIPPED: cannot mount a tmpfs here (needs root); the full-disk drill did not run"
        );
        return;
    };
    // Room for the log until this filler is removed.
    let filler = dir.join("filler");
    std::fs::write(&filler, vec![0u8; 512 << 10]).unwrap();
    let cfg = config(&dir, "sync_interval_ms = 100");
    let gw = Gateway::start(cfg.clone());
    let mut c = client(&gw).await;
    let answer = append(&mut c, "faulty:k", 100_000, 1000, DAY_MS).await;
    let stored: u64 = match answer.split(' ').collect::<Vec<_>>().as_slice() {
        ["err", at, ..] => at.parse().unwrap(),
        _ => panic!("the disk never filled up: {answer}"),
    };
    assert!(stored > 500, "only {stored} entries fit");
    assert!(answer.contains("No space left"), "a clear error: {answer}");
    // Still full: refused again, the gateway keeps serving.
    assert!(
        append(&mut c, "faulty:k", 1, 1000, DAY_MS)
            .await
            .starts_with("err 0")
    );
    assert_eq!(gw.health().await["status"], "ok");
    assert!(gw.metrics().await.value("gateway_stream_log_errors_total") >= 2.0);
    assert_eq!(count(&mut c, "faulty:k").await, stored);
    // Space returns: appends go on.
    let rss_full = rss_kib(gw.pid());
    std::fs::remove_file(&filler).unwrap();
    append_ok(&mut c, "faulty:k", 10, 1000, DAY_MS).await;
    drop(c);
    stop(gw).await;

    let gw = Gateway::start(cfg);
    let mut c = client(&gw).await;
    assert_eq!(
        count(&mut c, "faulty:k").await,
        stored + 10,
        "every acknowledged entry, nothing else"
    );
    let logs = gw.logs();
    assert!(
        !logs.contains("damaged") && !logs.contains("torn"),
        "the log is clean after the full disk:\n{logs}"
    );
    eprintln!(
        "DRILL full-disk: {stored} entries stored before ENOSPC, further appends refused with a \
         clear error, +10 after space returned, {} after restart (0 lost, 0 extra), RSS {rss_full} KiB",
        stored + 10
    );
    drop(c);
    stop(gw).await;
}
