//! Admission caps: `max_connections_per_ip` refuses one address's extra connections with 429
//! while it holds them, and frees the slot when one closes; a connect flood from one address
//! leaves room for everyone else.

mod support;

use std::time::Duration;

use support::*;

/// `echo` on `/echo` (with `route` lines added to the route), `server` lines added to
/// `[server]` and `rest` appended (a `[limits]` table, more routes).
fn echo_gateway(server: &str, route: &str, rest: &str) -> Gateway {
    Gateway::start(format!(
        r#"
[server]
listen = ["127.0.0.1:0"]
cache_dir = @CACHE_DIR@
{server}

[plugins.echo]
wasm = @ECHO_WASM@

[[routes]]
path = "/echo"
kind = "websocket"
plugin = "echo"
{route}
{rest}"#
    ))
}

fn echo_gateway_per_ip(per_ip: u32) -> Gateway {
    echo_gateway(&format!("max_connections_per_ip = {per_ip}"), "", "")
}

fn from(ip: [u8; 4]) -> WsOptions {
    WsOptions {
        source: Some(ip.into()),
        ..WsOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connect_flood_from_one_address_leaves_room_for_others() {
    let gw = echo_gateway_per_ip(50);
    let rss_before = rss_kib(gw.pid());
    let addr = gw.addr();
    // 600 attempts from 127.0.0.1, 100 at a time, each held until the flood ends.
    let mut flood = Vec::new();
    let (mut accepted, mut refused) = (0, 0);
    for _ in 0..6 {
        let wave: Vec<_> = (0..100)
            .map(|_| tokio::spawn(ws_connect(addr, "/echo", from([127, 0, 0, 1]))))
            .collect();
        for t in wave {
            match t.await.unwrap() {
                Ok(c) => {
                    accepted += 1;
                    flood.push(c);
                }
                Err(WsConnectError::Rejected { status: 429, .. }) => refused += 1,
                Err(e) => panic!("a flood connection failed the wrong way: {e}"),
            }
        }
    }
    assert_eq!(accepted, 50, "the per-address cap holds");
    assert_eq!(refused, 550);
    // Everyone else still connects, during the flood.
    let mut others = Vec::new();
    for i in 2..22u8 {
        let mut c = ws_connect(addr, "/echo", from([127, 0, 0, i]))
            .await
            .unwrap_or_else(|e| panic!("127.0.0.{i} during the flood: {e}"));
        assert_eq!(c.recv_text().await, "hello");
        others.push(c);
    }
    let rss_during = rss_kib(gw.pid());
    drop(flood);
    drop(others);
    tokio::time::sleep(Duration::from_millis(500)).await;
    eprintln!(
        "connect flood: 50 of 600 accepted from one address, 550 refused with 429, 20 others \
         served; RSS {rss_before} KiB before, {rss_during} KiB during, {} KiB after",
        rss_kib(gw.pid())
    );
    assert_eq!(gw.health().await["status"], "ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_cannot_take_more_than_its_share() {
    let gw = echo_gateway_per_ip(3);
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

/// Drill: a frame header announcing 100 MiB (allowed by the route) followed by a trickle of
/// payload makes the gateway grow with what arrives, not with what the header announces.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_100_mib_frame_header_does_not_allocate_100_mib() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let gw = echo_gateway(
        "",
        "limits = { max_frame_bytes = 134217728, max_message_bytes = 134217728, queue_max_bytes = 268435456 }",
        "",
    );
    let rss_before = rss_kib(gw.pid());
    let mut s = tokio::net::TcpStream::connect(gw.addr()).await.unwrap();
    let req = format!(
        "GET /echo HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        gw.addr()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut head = vec![0u8; 4096];
    let n = s.read(&mut head).await.unwrap();
    assert!(
        String::from_utf8_lossy(&head[..n]).starts_with("HTTP/1.1 101"),
        "upgrade: {}",
        String::from_utf8_lossy(&head[..n])
    );
    let mut frame = vec![0x82, 0x80 | 127];
    frame.extend_from_slice(&(100u64 << 20).to_be_bytes());
    frame.extend_from_slice(&[1, 2, 3, 4]);
    s.write_all(&frame).await.unwrap();
    // 1 MiB of the 100 announced, then nothing more.
    for _ in 0..16 {
        s.write_all(&[0u8; 64 << 10]).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_during = rss_kib(gw.pid());
    let grown = rss_during.saturating_sub(rss_before);
    assert!(
        grown < 16 << 10,
        "RSS grew by {grown} KiB for a 100 MiB header and 1 MiB of payload"
    );
    // Everyone else is served meanwhile.
    let mut other = gw.ws("/echo").await;
    assert_eq!(other.recv_text().await, "hello");
    eprintln!(
        "DRILL 100-mib-header: RSS {rss_before} KiB before, {rss_during} KiB with the header and \
         1 MiB of payload in (+{grown} KiB)"
    );
    drop(s);
}

/// Per-connection rates: a client past `max_messages_per_s` or `max_bytes_per_s` is closed with
/// 1008 and counted; one within them is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_sending_too_fast_is_closed_with_1008() {
    let gw = echo_gateway(
        "",
        "",
        "[limits]\nmax_messages_per_s = 50\nmax_bytes_per_s = 20000\nmax_message_bytes = 8192\n",
    );
    let mut polite = gw.ws("/echo").await;
    assert_eq!(polite.recv_text().await, "hello");
    let mut flooder = gw.ws("/echo").await;
    assert_eq!(flooder.recv_text().await, "hello");
    for i in 0..200 {
        if flooder.sender().send_text(&format!("m{i}")).await.is_err() {
            break;
        }
    }
    let (code, _) = flooder.expect_end_within(TIMEOUT).await;
    assert_eq!(code, Some(1008), "{:?}", flooder.ended);
    let mut hog = gw.ws("/echo").await;
    assert_eq!(hog.recv_text().await, "hello");
    let big = "x".repeat(8000);
    for _ in 0..10 {
        if hog.sender().send_text(&big).await.is_err() {
            break;
        }
    }
    let (code, _) = hog.expect_end_within(TIMEOUT).await;
    assert_eq!(code, Some(1008), "{:?}", hog.ended);
    // Within the rates: 20 messages a second for a second and a half.
    for i in 0..30 {
        polite.expect_echo("polite", &format!("p{i}")).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let m = gw.metrics().await;
    assert_eq!(m.value("gateway_rate_limited_total"), 2.0, "{}", m.raw);
    assert!(
        plain(&gw.logs()).contains("message rate limit exceeded")
            && plain(&gw.logs()).contains("byte rate limit exceeded")
    );
}

/// `max_upgrades_per_s`: a burst past the rate is refused with 503 and `Retry-After`, and
/// connecting works again a moment later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrades_past_the_rate_are_refused_with_503() {
    let gw = echo_gateway("max_upgrades_per_s = 20", "", "");
    let (mut accepted, mut refused) = (Vec::new(), 0);
    let started = std::time::Instant::now();
    for _ in 0..60 {
        match gw.ws_with("/echo", WsOptions::default()).await {
            Ok(c) => accepted.push(c),
            Err(WsConnectError::Rejected {
                status, headers, ..
            }) => {
                assert_eq!(status, 503);
                assert_eq!(
                    headers.get("retry-after").map(|v| v.as_bytes()),
                    Some(&b"1"[..]),
                    "{headers:?}"
                );
                refused += 1;
            }
            Err(e) => panic!("{e}"),
        }
    }
    // The burst (20) plus what the rate refilled while the loop ran; the bound follows the
    // elapsed time, so a slow machine cannot fail it.
    let allowed = 20 + (20.0 * started.elapsed().as_secs_f64()).ceil() as usize;
    assert!(
        accepted.len() >= 20 && accepted.len() <= allowed && refused > 0,
        "{} accepted (at most {allowed}), {refused} refused",
        accepted.len()
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let mut again = gw.ws("/echo").await;
    assert_eq!(again.recv_text().await, "hello");
}

/// A route's `max_connections` caps that route alone: past it 503, other routes unaffected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_cap_holds_for_that_route_only() {
    let gw = echo_gateway(
        "",
        "",
        "[[routes]]\npath = \"/small\"\nkind = \"websocket\"\nplugin = \"echo\"\nlimits = { max_connections = 2 }\n",
    );
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut c = gw.ws("/small").await;
        assert_eq!(c.recv_text().await, "hello");
        held.push(c);
    }
    match gw.ws_with("/small", from([127, 0, 0, 2])).await {
        Err(WsConnectError::Rejected { status, .. }) => assert_eq!(status, 503),
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("a third connection on a route capped at 2"),
    }
    let mut other = gw.ws("/echo").await;
    assert_eq!(other.recv_text().await, "hello");
    held.remove(0).close(1000).await;
    let again = gw
        .poll_until("a slot on the route frees up", TIMEOUT, || async {
            gw.ws_with("/small", WsOptions::default()).await.ok()
        })
        .await;
    drop(again);
}
