//! Fault policy per plugin (`[plugins.X.faults]`): the crash budget that disables a plugin
//! which keeps trapping (and a new version that re-enables it), and `on_fault = "restart"`,
//! which drops only the failed event and keeps the connection.

mod support;

use std::time::Duration;

use serde_json::json;
use support::*;

/// `faulty` on `/faulty` (WebSocket) and `/faulty-http`, with `faults` as its fault table and
/// `call_timeout_ms`; `echo` on `/echo`.
fn config(faults: &str, call_timeout_ms: u64) -> String {
    format!(
        r#"
[plugins.faulty]
wasm = @FAULTY_WASM@
max_instances = 2
memory_limit_mb = 16
call_timeout_ms = {call_timeout_ms}

[plugins.faulty.faults]
{faults}

[[routes]]
path = "/faulty"
kind = "websocket"
plugin = "faulty"
origins = ["*"]

[[routes]]
path = "/faulty-http"
kind = "http"
plugin = "faulty"

[plugins.echo]
wasm = @ECHO_WASM@
max_instances = 2
memory_limit_mb = 16

[[routes]]
path = "/echo"
kind = "websocket"
plugin = "echo"
origins = ["*"]
"#
    )
}

/// A new `/echo` connection past its greeting.
async fn echo_client(gw: &Gateway) -> WsClient {
    let mut c = gw.ws("/echo").await;
    assert_eq!(c.recv_text().await, "hello", "echo greets on open");
    c
}

fn disabled_metric(m: &Metrics, plugin: &str) -> f64 {
    m.labeled("gateway_plugin_disabled", "plugin", plugin)
        .unwrap_or_else(|| {
            panic!(
                "gateway_plugin_disabled{{plugin=\"{plugin}\"}} missing:\n{}",
                m.raw
            )
        })
}

/// Opens a `/faulty` connection, checks it echoes, sends `trap` and expects close 1011.
async fn trap_once(gw: &Gateway, round: usize) {
    let who = format!("trapper{round}");
    let mut c = gw.ws("/faulty").await;
    c.expect_echo(&who, "warm up").await;
    c.send_text("trap").await;
    let (code, frames) = c.expect_end_within(TIMEOUT).await;
    assert!(frames.is_empty(), "{who}: trap produced {frames:?}");
    assert_eq!(code, Some(1011), "{who}: ended with {:?}", c.ended);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_budget_disables_plugin() {
    // Every fault counts (one client may spend it all) and nothing re-enables it but a reload.
    let faults = "max_faults = 3\nmax_faults_per_client = 100\ncooldown_s = 0\nwindow_s = 60\nbackoff_ms = 10\nbackoff_max_ms = 2000";
    let gw = Gateway::start(config(faults, 300));
    let mut echo = echo_client(&gw).await;
    let mut bystander = gw.ws("/faulty").await;
    bystander.expect_echo("bystander", "before").await;
    let before_http = gw.get("/faulty-http").await;
    assert_ne!(
        before_http.status,
        503,
        "/faulty-http before any fault: {}",
        before_http.text()
    );

    // Three faults fit in the budget.
    for round in 0..3 {
        trap_once(&gw, round).await;
        let h = gw.health().await;
        let faulty = &h["plugins"]["faulty"];
        assert_eq!(faulty["state"], json!("running"), "after {round}: {h}");
        assert_eq!(faulty["recent_faults"], json!(round + 1), "{h}");
        assert_eq!(h["status"], json!("ok"), "{h}");
    }
    bystander.expect_echo("bystander", "within budget").await;
    assert_eq!(disabled_metric(&gw.metrics().await, "faulty"), 0.0);

    // The fourth spends it.
    trap_once(&gw, 3).await;
    let (code, _) = bystander.expect_end_within(TIMEOUT).await;
    assert_eq!(
        code,
        Some(1011),
        "an open connection of the disabled plugin is closed with 1011: {:?}",
        bystander.ended
    );
    let h = gw.health().await;
    assert_eq!(h["plugins"]["faulty"]["state"], json!("disabled"), "{h}");
    assert_eq!(h["status"], json!("degraded"), "{h}");
    assert!(
        h["plugins"]["faulty"]["traps"]
            .as_u64()
            .is_some_and(|t| t >= 4),
        "{h}"
    );
    assert_eq!(h["plugins"]["echo"]["state"], json!("running"), "{h}");
    let m = gw.metrics().await;
    assert_eq!(disabled_metric(&m, "faulty"), 1.0, "{}", m.raw);
    assert_eq!(disabled_metric(&m, "echo"), 0.0, "{}", m.raw);

    match gw.ws_with("/faulty", WsOptions::default()).await {
        Err(WsConnectError::Rejected { status, body, .. }) => assert_eq!(
            status,
            503,
            "upgrade to a disabled plugin: {}",
            String::from_utf8_lossy(&body)
        ),
        Err(e) => panic!("upgrade to a disabled plugin: expected 503, got {e}"),
        Ok(_) => panic!("upgrade to a disabled plugin succeeded"),
    }
    let r = gw.get("/faulty-http").await;
    assert_eq!(
        r.status,
        503,
        "HTTP route of a disabled plugin: {}",
        r.text()
    );

    // The unrelated plugin is untouched.
    echo.expect_echo("echo", "still here").await;
    let mut echo2 = echo_client(&gw).await;
    echo2.expect_echo("echo2", "new echo connection").await;

    // A new version (the faulty table changed) re-enables the plugin.
    gw.rewrite_config(&config(faults, 400));
    let h = gw
        .wait_health("faulty running again after a new version", TIMEOUT, |h| {
            h["plugins"]["faulty"]["state"] == json!("running")
        })
        .await;
    assert_eq!(h["plugins"]["faulty"]["generation"], json!(2), "{h}");
    assert_eq!(h["plugins"]["faulty"]["recent_faults"], json!(0), "{h}");
    assert_eq!(h["status"], json!("ok"), "{h}");
    assert_eq!(disabled_metric(&gw.metrics().await, "faulty"), 0.0);
    let mut again = gw.ws("/faulty").await;
    again.expect_echo("re-enabled", "back").await;
    echo.expect_echo("echo", "after re-enable").await;
}

/// A `/faulty` connection from `source`.
async fn faulty_from(gw: &Gateway, source: [u8; 4]) -> Result<WsClient, WsConnectError> {
    let opts = WsOptions {
        source: Some(source.into()),
        ..WsOptions::default()
    };
    gw.ws_with("/faulty", opts).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_client_cannot_spend_the_crash_budget() {
    let faults = "max_faults = 5\nmax_faults_per_client = 2\ncooldown_s = 3\nwindow_s = 60\nbackoff_ms = 10\nbackoff_max_ms = 200";
    let gw = Gateway::start(config(faults, 300));
    let mut bystander = faulty_from(&gw, [127, 0, 0, 2]).await.expect("bystander");
    bystander.expect_echo("bystander", "before").await;

    // One address traps again and again: past its share it is refused, the plugin stays up.
    let (mut trapped, mut refused) = (0, 0);
    for round in 0..20 {
        match faulty_from(&gw, [127, 0, 0, 1]).await {
            Ok(mut c) => {
                c.send_text("trap").await;
                let (code, _) = c.expect_end_within(TIMEOUT).await;
                assert_eq!(
                    code,
                    Some(1011),
                    "round {round}: only the trapping connection closes"
                );
                trapped += 1;
            }
            Err(WsConnectError::Rejected { status, .. }) => {
                assert_eq!(status, 429, "round {round}");
                refused += 1;
            }
            Err(e) => panic!("round {round}: {e}"),
        }
    }
    assert_eq!(
        (trapped, refused),
        (3, 17),
        "two faults count, the third is blamed"
    );
    eprintln!(
        "DRILL crash-budget-abuse: 20 attempts from one address: {trapped} trapped (2 counted, 1 \
         blamed), {refused} refused with 429, plugin running, other clients served"
    );
    let h = gw.health().await;
    assert_eq!(h["plugins"]["faulty"]["state"], json!("running"), "{h}");
    assert_eq!(h["plugins"]["faulty"]["recent_faults"], json!(2), "{h}");
    let m = gw.metrics().await;
    assert_eq!(
        m.labeled("gateway_plugin_blamed_faults_total", "plugin", "faulty"),
        Some(1.0),
        "{}",
        m.raw
    );
    bystander.expect_echo("bystander", "still served").await;
    let mut other = faulty_from(&gw, [127, 0, 0, 3])
        .await
        .expect("another client");
    other.expect_echo("other", "welcome").await;

    // Faults from many clients do spend it; after the cool-down the plugin serves again.
    for i in 0..4u8 {
        let mut c = faulty_from(&gw, [127, 0, 1, i]).await.expect("client");
        c.send_text("trap").await;
        let _ = c.expect_end_within(TIMEOUT).await;
    }
    let h = gw.health().await;
    assert_eq!(h["plugins"]["faulty"]["state"], json!("disabled"), "{h}");
    let h = gw
        .wait_health("faulty enabled again after its cool-down", TIMEOUT, |h| {
            h["plugins"]["faulty"]["state"] == json!("running")
        })
        .await;
    assert_eq!(h["plugins"]["faulty"]["recent_faults"], json!(0), "{h}");
    let mut back = faulty_from(&gw, [127, 0, 0, 4])
        .await
        .expect("after cool-down");
    back.expect_echo("back", "served again").await;
    assert!(
        gw.logs()
            .contains("plugin enabled again after its cool-down")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_policy_keeps_connection() {
    let faults = "on_fault = \"restart\"\nmax_faults = 20\nbackoff_ms = 10\nbackoff_max_ms = 200";
    let gw = Gateway::start(config(faults, 300));
    let mut c = gw.ws("/faulty").await;
    let mut other = gw.ws("/faulty").await;
    c.expect_echo("c", "first").await;
    other.expect_echo("other", "first").await;

    // A trap drops only that event: the next frame on the same connection is served.
    c.send_text("trap").await;
    c.send_text("hello").await;
    match c.recv().await {
        WsEvent::Text(t) => assert_eq!(t, "hello", "the frame after the trap is echoed"),
        other => panic!("after a trap under on_fault = restart: expected the echo, got {other:?}"),
    }

    // So does a call past its deadline.
    c.send_text("loop").await;
    c.send_text("after loop").await;
    match c.recv_within(Duration::from_secs(20)).await {
        Some(WsEvent::Text(t)) => assert_eq!(t, "after loop"),
        other => panic!("after a deadline under on_fault = restart: got {other:?}"),
    }
    assert!(
        c.ended.is_none(),
        "the connection stays open: {:?}",
        c.ended
    );
    c.expect_echo("c", "still open").await;
    other.expect_echo("other", "unaffected").await;

    let h = gw.health().await;
    let faulty = &h["plugins"]["faulty"];
    assert_eq!(faulty["state"], json!("running"), "{h}");
    assert_eq!(faulty["recent_faults"], json!(2), "{h}");
    assert!(faulty["traps"].as_u64().is_some_and(|t| t >= 2), "{h}");
    assert!(
        faulty["last_error"].as_str().is_some_and(|e| !e.is_empty()),
        "the last fault is reported: {h}"
    );
    assert_eq!(h["status"], json!("ok"), "{h}");
    assert_eq!(h["connections"], json!(2), "{h}");
}
