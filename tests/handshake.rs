//! The upgrade handshake on the wire: a connection's first request is answered with the 101
//! and the plugin's greeting in one write, a head that arrives in pieces (with a frame right
//! behind it) is read whole, and an upgrade after a plain request on the same connection still
//! goes through (hyper serves that one).

mod support;

use std::time::Duration;

use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
/// The RFC 6455 example's accept value for `KEY`.
const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

fn upgrade_request(path_and_query: &str) -> String {
    format!(
        "GET {path_and_query} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
}

/// A masked client close frame with code 1000.
fn close_frame() -> Vec<u8> {
    let mask = [0x11u8, 0x22, 0x33, 0x44];
    let mut f = vec![0x88, 0x80 | 2];
    f.extend_from_slice(&mask);
    f.extend_from_slice(&[0x03 ^ mask[0], 0xE8 ^ mask[1]]);
    f
}

/// Reads until `done(bytes so far)` holds; panics after 10 s or at end of stream.
async fn read_until(s: &mut TcpStream, got: &mut Vec<u8>, done: impl Fn(&[u8]) -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut chunk = [0u8; 8192];
    while !done(got) {
        let n = tokio::time::timeout_at(deadline, s.read(&mut chunk))
            .await
            .unwrap_or_else(|_| panic!("timed out; got {:?}", String::from_utf8_lossy(got)))
            .unwrap();
        assert!(
            n > 0,
            "stream ended; got {:?}",
            String::from_utf8_lossy(got)
        );
        got.extend_from_slice(&chunk[..n]);
    }
}

fn head_end(b: &[u8]) -> Option<usize> {
    b.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

fn contains(b: &[u8], needle: &[u8]) -> bool {
    b.windows(needle.len()).any(|w| w == needle)
}

fn assert_switching(head: &[u8]) {
    let head = String::from_utf8_lossy(head).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101 "), "{head}");
    assert!(
        head.contains(&format!(
            "sec-websocket-accept: {}",
            ACCEPT.to_ascii_lowercase()
        )),
        "{head}"
    );
}

/// Reads the 101, the chat greeting and the echo of our 1000 close, in that order.
async fn expect_greeting_then_close_echo(s: &mut TcpStream) {
    let mut got = Vec::new();
    read_until(s, &mut got, |g| {
        head_end(g).is_some_and(|e| contains(&g[e..], &[0x88, 0x02, 0x03, 0xE8]))
    })
    .await;
    let end = head_end(&got).unwrap();
    assert_switching(&got[..end]);
    assert!(contains(&got[end..], b"system_message"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_101_and_the_greeting_arrive_in_one_read() {
    let gw = Gateway::start(chat_config(None));
    let token = gw.token_named("u1", "U1");
    let mut s = TcpStream::connect(gw.addr()).await.unwrap();
    s.write_all(upgrade_request(&format!("/ws?token={token}")).as_bytes())
        .await
        .unwrap();
    let mut buf = vec![0u8; 16384];
    let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
        .await
        .expect("an answer")
        .unwrap();
    let got = &buf[..n];
    let end = head_end(got).expect("a complete head in the first read");
    assert_switching(&got[..end]);
    // The greeting is a text frame right behind the head, in the same read.
    assert!(got.len() > end + 2, "only the head arrived: {got:?}");
    assert_eq!(got[end], 0x81, "a final text frame");
    assert!(contains(&got[end..], b"system_message"));
    // The counters see the frame, not the HTTP head (the byte count lands just after the
    // write, so it is polled for).
    let frame_bytes = (got.len() - end) as f64;
    let m = gw
        .poll_until(
            "the written bytes counted",
            Duration::from_secs(10),
            || async {
                let m = gw.metrics().await;
                (m.value("gateway_bytes_out_total") >= frame_bytes).then_some(m)
            },
        )
        .await;
    assert_eq!(m.value("gateway_bytes_out_total"), frame_bytes, "{}", m.raw);
    assert_eq!(m.value("gateway_frames_out_total"), 1.0, "{}", m.raw);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_in_pieces_with_a_frame_behind_it_is_read_whole() {
    let gw = Gateway::start(chat_config(None));
    let token = gw.token_named("u1", "U1");
    let req = upgrade_request(&format!("/ws?token={token}"));
    let mut s = TcpStream::connect(gw.addr()).await.unwrap();
    s.set_nodelay(true).unwrap();
    let (a, b) = req.as_bytes().split_at(req.len() / 2);
    s.write_all(a).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    // The rest of the head and a close frame in one write: the frame is the session's.
    let mut rest = b.to_vec();
    rest.extend_from_slice(&close_frame());
    s.write_all(&rest).await.unwrap();
    expect_greeting_then_close_echo(&mut s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_after_a_plain_request_on_one_connection() {
    let gw = Gateway::start(chat_config(None));
    let token = gw.token_named("u1", "U1");
    let mut s = TcpStream::connect(gw.addr()).await.unwrap();
    s.write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    read_until(&mut s, &mut got, |g| {
        let Some(end) = head_end(g) else {
            return false;
        };
        let head = String::from_utf8_lossy(&g[..end]).to_ascii_lowercase();
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .and_then(|v| v.trim().parse().ok())
            .expect("a content-length");
        g.len() >= end + len
    })
    .await;
    assert!(
        got.starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&got)
    );
    // The same connection now upgrades, with a close frame right behind the request.
    let mut req = upgrade_request(&format!("/ws?token={token}")).into_bytes();
    req.extend_from_slice(&close_frame());
    s.write_all(&req).await.unwrap();
    expect_greeting_then_close_echo(&mut s).await;
}
