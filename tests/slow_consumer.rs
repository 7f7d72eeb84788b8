//! A client that stops reading is cut off (1008 or a dropped socket) once its outbound queue
//! exceeds the route's limits, while everyone else keeps receiving every message.

mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::*;

const OVERALL_BOUND: Duration = Duration::from_secs(180);

/// Reads `client` until the broadcast with `seq == last`, checking that every seq in
/// `0..=last` arrives exactly once and in order. Presence messages about `slow_user` may be
/// interleaved (its `user_left`).
async fn expect_all_seqs(client: &mut WsClient, who: &str, last: u64, slow_user: &str) {
    let mut next = 0;
    while next <= last {
        let msg = client.recv_json().await;
        match msg_type(&msg) {
            "text" => {
                let seq = msg["data"]["seq"]
                    .as_u64()
                    .unwrap_or_else(|| panic!("{who}: unexpected text {msg}"));
                assert_eq!(seq, next, "{who}: messages lost or reordered");
                next += 1;
            }
            "user_left" => {
                assert_eq!(msg["data"]["user_id"], json!(slow_user), "{who}: {msg}");
            }
            _ => panic!("{who}: unexpected message {msg}"),
        }
    }
}

/// Broadcasts `pad_len`-byte messages (at most `max_messages`, a bound well above the kernel's
/// socket buffers plus the route's queue limits) until the non-reading client is cut off.
async fn slow_consumer_is_cut_off(limits: &str, pad_len: usize, max_messages: u64) {
    let gw = Gateway::start(chat_config(Some(limits)));

    let mut alice = gw.chat_user("alice").await;
    alice.recv_type("system_message").await;
    let mut bob = gw.chat_user("bob").await;
    bob.recv_type("system_message").await;
    alice.recv_type("user_joined").await;
    let mut carol = gw.chat_user("carol").await;
    carol.recv_type("system_message").await;
    alice.recv_type("user_joined").await;
    bob.recv_type("user_joined").await;

    // dave connects with a tiny receive buffer and never reads.
    let token = gw.token_named("dave", "Dave");
    let mut dave = gw
        .ws_with(
            &format!("/ws?token={token}"),
            WsOptions {
                recv_buffer: Some(4096),
                paused: true,
                ..WsOptions::default()
            },
        )
        .await
        .unwrap_or_else(|e| panic!("dave: {e}"));
    for (who, c) in [
        ("alice", &mut alice),
        ("bob", &mut bob),
        ("carol", &mut carol),
    ] {
        let joined = c.recv_type("user_joined").await;
        assert_eq!(joined["data"]["user_id"], json!("dave"), "{who}: {joined}");
    }

    // alice broadcasts in lock-step with her own copy, so the readers' queues stay short while
    // dave's grows without bound.
    let pad = "p".repeat(pad_len);
    let started = Instant::now();
    let mut seq = 0u64;
    let mut cut_at = None;
    while seq < max_messages {
        alice
            .send_json(&json!({"message_type": "text", "data": {"seq": seq, "pad": pad}}))
            .await;
        loop {
            let own = alice.recv_json().await;
            match msg_type(&own) {
                "text" => {
                    assert_eq!(own["data"]["seq"], json!(seq), "alice: {own}");
                    break;
                }
                "user_left" => assert_eq!(own["data"]["user_id"], json!("dave"), "{own}"),
                _ => panic!("alice: unexpected {own}"),
            }
        }
        seq += 1;
        if cut_at.is_none() && seq.is_multiple_of(16) {
            let m = gw.metrics().await;
            if m.value("gateway_slow_consumer_drops_total") >= 1.0 {
                cut_at = Some(seq);
            }
        }
        // Keep going a little after the cut: the others must still get everything.
        if cut_at.is_some_and(|c| seq >= c + 32) {
            break;
        }
        assert!(
            started.elapsed() < OVERALL_BOUND,
            "no slow-consumer drop after {seq} messages in {OVERALL_BOUND:?}"
        );
    }
    let cut_at = cut_at.unwrap_or_else(|| {
        panic!(
            "gateway_slow_consumer_drops_total stayed 0 after {seq} broadcasts of {pad_len} bytes \
             to a client that never reads"
        )
    });
    let last = seq - 1;
    eprintln!("slow consumer cut off after about {cut_at} messages");

    // bob and carol received every single broadcast, in order.
    expect_all_seqs(&mut bob, "bob", last, "dave").await;
    expect_all_seqs(&mut carol, "carol", last, "dave").await;

    // dave now reads what is left: a close 1008 or a dropped socket, after a bounded backlog.
    dave.resume();
    let (code, backlog) = dave.expect_end_within(Duration::from_secs(30)).await;
    assert!(
        code.is_none() || code == Some(1008),
        "slow consumer must see close 1008 or EOF, got close {code:?} ({:?})",
        dave.ended
    );
    assert!(
        (backlog.len() as u64) < last + 8,
        "dave cannot have received everything ({} frames)",
        backlog.len()
    );

    // The others are still connected and served.
    for (who, c) in [("bob", &mut bob), ("carol", &mut carol)] {
        c.send_json(&json!({"message_type": "ping", "data": who}))
            .await;
        let pong = loop {
            let m = c.recv_json().await;
            if msg_type(&m) == "pong" {
                break m;
            }
            assert_eq!(msg_type(&m), "user_left", "{who}: {m}");
        };
        assert_eq!(pong["data"], Value::from(who));
    }
    let m = gw.metrics().await;
    assert!(m.value("gateway_slow_consumer_drops_total") >= 1.0);
    assert_eq!(gw.health().await["status"], json!("ok"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_consumer_cut_off_by_queue_bytes() {
    slow_consumer_is_cut_off(
        // 16 messages of room: a reader starved of CPU for a moment must not be cut off.
        "queue_max_bytes = 262144\nqueue_max_frames = 100000\nmax_frame_bytes = 65536\n",
        16_000,
        4_000,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_consumer_cut_off_by_queue_frames() {
    slow_consumer_is_cut_off(
        "queue_max_bytes = 67108864\nqueue_max_frames = 32\nmax_frame_bytes = 65536\n",
        2_000,
        20_000,
    )
    .await;
}
