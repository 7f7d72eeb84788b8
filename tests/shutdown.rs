//! Graceful shutdown: SIGTERM closes every WebSocket with 1001 and the process exits 0.

mod support;

use std::time::Duration;

use serde_json::json;
use support::*;

/// Bound on the exit after SIGTERM (the harness config uses `shutdown_grace_ms = 3000`).
const EXIT_BOUND: Duration = Duration::from_secs(20);

fn shutdown_config() -> String {
    let mut cfg = chat_config(None);
    cfg.push_str(
        r#"
[plugins.faulty]
wasm = @FAULTY_WASM@
max_instances = 2
memory_limit_mb = 16
call_timeout_ms = 300

[[routes]]
path = "/faulty"
kind = "websocket"
plugin = "faulty"
origins = ["*"]
"#,
    );
    cfg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_closes_clients_with_1001_and_exits_0() {
    let mut gw = Gateway::start(shutdown_config());

    let mut alice1 = gw.chat_user("alice").await;
    alice1.recv_type("system_message").await;
    let mut alice2 = gw.chat_user("alice").await;
    alice2.recv_type("system_message").await;
    let mut bob = gw.chat_user("bob").await;
    bob.recv_type("system_message").await;
    let mut echo = gw.ws("/faulty").await;
    echo.send_text("ping").await;
    assert_eq!(echo.recv().await, WsEvent::Text("ping".into()));
    // Every connection has been fully opened (bob's join reached both of alice's tabs).
    alice1.recv_type("user_joined").await;
    alice2.recv_type("user_joined").await;

    gw.sigterm();

    for (who, c) in [
        ("alice1", &mut alice1),
        ("alice2", &mut alice2),
        ("bob", &mut bob),
        ("echo", &mut echo),
    ] {
        let (code, frames) = c.expect_end_within(TIMEOUT).await;
        assert_eq!(
            code,
            Some(1001),
            "{who}: expected close 1001 on shutdown, ended with {:?} after {frames:?}",
            c.ended
        );
    }

    let status = gw
        .wait_exit(EXIT_BOUND)
        .await
        .unwrap_or_else(|| panic!("gateway still running {EXIT_BOUND:?} after SIGTERM"));
    assert!(
        status.success(),
        "gateway must exit 0 after SIGTERM, got {status:?}\nlog:\n{}",
        gw.logs()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_when_idle_exits_0() {
    let mut gw = Gateway::start(shutdown_config());
    assert_eq!(gw.health().await["status"], json!("ok"));
    gw.sigterm();
    let status = gw
        .wait_exit(EXIT_BOUND)
        .await
        .unwrap_or_else(|| panic!("gateway still running {EXIT_BOUND:?} after SIGTERM"));
    assert!(status.success(), "exit status {status:?}");
}

/// A chat client that never reads, so it never answers the close handshake.
async fn silent_client(gw: &Gateway) -> WsClient {
    let token = gw.token("sam");
    gw.ws_with(
        &format!("/ws?token={token}"),
        WsOptions {
            paused: true,
            recv_buffer: Some(4096),
            ..WsOptions::default()
        },
    )
    .await
    .unwrap_or_else(|e| panic!("silent client: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_does_not_wait_forever_for_a_silent_client() {
    let mut gw = Gateway::start(shutdown_config());

    let mut silent = silent_client(&gw).await;
    let mut polite = gw.chat_user("polly").await;
    polite.recv_type("system_message").await;

    gw.sigterm();
    let (code, _) = polite.expect_end_within(TIMEOUT).await;
    assert_eq!(code, Some(1001), "polite client: {:?}", polite.ended);

    let status = gw.wait_exit(EXIT_BOUND).await.unwrap_or_else(|| {
        panic!("gateway still running {EXIT_BOUND:?} after SIGTERM with a silent client")
    });
    assert!(status.success(), "exit status {status:?}");

    // Whatever the silent client finds now, the connection is over.
    silent.resume();
    let (code, _) = silent.expect_end_within(TIMEOUT).await;
    assert!(
        code.is_none() || code == Some(1001),
        "silent client: {:?}",
        silent.ended
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn draining_answers_503_and_a_second_signal_exits_at_once() {
    let mut gw = Gateway::start(shutdown_config());
    // A silent client keeps the drain going for the whole grace period (3 s here).
    let _silent = silent_client(&gw).await;
    gw.sigterm();
    let health = gw
        .poll_until("/health says draining", TIMEOUT, || async {
            let r = gw.get("/health").await;
            (r.status == 503).then(|| r.json())
        })
        .await;
    assert_eq!(health["status"], json!("draining"));
    // New clients are turned away while draining.
    let refused = gw
        .ws_with(
            &format!("/ws?token={}", gw.token("late")),
            WsOptions::default(),
        )
        .await;
    assert!(
        refused.is_err(),
        "a new connection was accepted while draining"
    );
    // A second signal does not wait for the grace period: the process ends at once, with a
    // failure status (a clean drain exits 0).
    gw.sigterm();
    let status = gw
        .wait_exit(EXIT_BOUND)
        .await
        .unwrap_or_else(|| panic!("gateway still running after a second SIGTERM"));
    assert!(
        !status.success(),
        "a forced exit is not a clean one: {status:?}"
    );
}

/// Drill: SIGTERM right after a plugin queued thousands of Redis appends (`add-message` returns
/// once an append is queued) while Redis holds writes (`CLIENT PAUSE`): the gateway sends them
/// all before it exits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_sends_every_queued_redis_append_first() {
    let redis = RedisServer::start();
    let cfg = with_redis(
        r#"
[plugins.faulty]
wasm = @FAULTY_WASM@
max_instances = 1
memory_limit_mb = 64
call_timeout_ms = 20000
stream_prefixes = ["y:"]

[[routes]]
path = "/faulty"
kind = "websocket"
plugin = "faulty"
origins = ["*"]
"#,
        &redis,
    );
    let mut gw = Gateway::start(cfg);
    let mut c = gw.ws("/faulty").await;
    c.expect_echo("drill", "warm up").await;
    let n = 20_000;
    c.send_text(&format!("add y:room:drill:doc {n} 1000")).await;
    assert_eq!(redis.cli(&["CLIENT", "PAUSE", "3000", "WRITE"]), "OK");
    assert_eq!(c.recv_text().await, format!("queued {n}"));
    gw.sigterm();
    let status = gw.wait_exit(EXIT_BOUND).await.expect("exits after SIGTERM");
    assert!(status.success(), "exit status {status:?}");
    assert_eq!(
        redis.cli(&["XLEN", "y:room:drill:doc"]),
        n.to_string(),
        "every queued append reached Redis"
    );
    let logs = plain(&gw.logs());
    let line = logs
        .lines()
        .find(|l| l.contains("flushed the queued Redis appends"))
        .unwrap_or_else(|| panic!("no flush line:\n{logs}"));
    let queued: u64 = line
        .split("queued=")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    assert!(queued > 0, "appends were still queued at SIGTERM: {line}");
    eprintln!(
        "DRILL sigterm-queued-appends: {queued} appends queued at shutdown, {n} of {n} in Redis"
    );
}
