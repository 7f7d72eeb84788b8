//! Admission caps: `max_connections_per_ip` refuses one address's extra connections with 429
//! while it holds them, and frees the slot when one closes.

mod support;

use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_cannot_take_more_than_its_share() {
    let gw = Gateway::start(
        r#"
[server]
listen = ["127.0.0.1:0"]
cache_dir = @CACHE_DIR@
max_connections_per_ip = 3

[plugins.echo]
wasm = @ECHO_WASM@

[[routes]]
path = "/echo"
kind = "websocket"
plugin = "echo"
"#,
    );
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut c = gw.ws("/echo").await;
        assert_eq!(c.recv_text().await, "hello");
        held.push(c);
    }
    match gw.ws_with("/echo", WsOptions::default()).await {
        Err(WsConnectError::Rejected { status, .. }) => assert_eq!(status, 429),
        Err(other) => panic!("refused the wrong way: {other:?}"),
        Ok(_) => panic!("a fourth connection from one address was accepted"),
    }
    // Plain HTTP still answers (the cap is on WebSocket connections).
    assert_eq!(gw.get("/health").await.status, 200);
    // Closing one frees its slot.
    let first = held.remove(0);
    first.close(1000).await;
    let again = gw
        .poll_until("a slot frees up", TIMEOUT, || async {
            gw.ws_with("/echo", WsOptions::default()).await.ok()
        })
        .await;
    drop(again);
    let m = gw.metrics().await;
    assert!(m.value("gateway_upgrades_refused_total") >= 1.0);
}
