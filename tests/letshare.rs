//! The LetShare JSON room protocol (`ably-rooms` at `/letshare`) with plain WebSocket clients,
//! on one embedded gateway and across two gateways on one Redis (the shipped `plugins.toml`).
//!
//! "Nobody else received X" is checked with sentinels: after X the same sender publishes a
//! sentinel, and since one sender's messages arrive in order, each observer's next message
//! must be the sentinel.

mod support;

use serde_json::{Value, json};
use support::{
    Gateway, GatewayPair, WsClient, WsConnectError, WsOptions, settled, shipped_config, ws_connect,
};

async fn member(gw: &Gateway, user: &str) -> WsClient {
    // `userId` is the unauthenticated query parameter the LetShare frontend sends: ignored.
    gw.ws(&format!(
        "/letshare?token={}&userId=mallory",
        gw.token(user)
    ))
    .await
}

async fn subscribe(c: &mut WsClient, room: &str, event: &str) {
    c.send_json(&json!({"type": "subscribe", "channel": room, "event": event}))
        .await;
    let r = c.recv_json().await;
    assert_eq!(r["type"], "subscribed", "{r}");
    assert_eq!(r["channel"], room, "{r}");
    assert_eq!(r["event"], event, "{r}");
    assert_eq!(
        r["data"],
        json!({"status": "subscribed", "room": room, "event": event}),
        "{r}"
    );
    assert!(r["timestamp"].is_u64(), "{r}");
}

async fn publish(c: &WsClient, room: &str, event: &str, data: Value) {
    c.send_json(&json!({"type": "publish", "channel": room, "event": event, "data": data}))
        .await;
}

async fn expect_message(c: &mut WsClient, who: &str, room: &str, event: &str, data: Value) {
    let m = c.recv_json().await;
    assert_eq!(m["type"], "message", "{who}: {m}");
    assert_eq!(m["channel"], room, "{who}: {m}");
    assert_eq!(m["event"], event, "{who}: {m}");
    assert_eq!(m["data"], data, "{who}: {m}");
}

async fn expect_error(c: &mut WsClient, what: &str) -> String {
    let e = c.recv_json().await;
    assert_eq!(e["type"], "error", "{what}: {e}");
    assert_eq!(e["error"]["code"], 400, "{what}: {e}");
    e["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_on_one_gateway() {
    let gw = Gateway::start(shipped_config());
    rooms_on([&gw, &gw]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_across_two_gateways() {
    let pair = GatewayPair::chat();
    rooms_on([&pair.a, &pair.b]).await;
}

/// alice and carol on `gws[0]`, bob on `gws[1]`.
async fn rooms_on(gws: [&Gateway; 2]) {
    let room = "文件 room_1";
    let mut alice = member(gws[0], "alice").await;
    let mut bob = member(gws[1], "bob").await;
    let mut carol = member(gws[0], "carol").await;
    subscribe(&mut alice, room, "signal:alice").await;
    subscribe(&mut alice, room, "signal:all").await;
    subscribe(&mut bob, room, "signal:all").await;
    subscribe(&mut bob, room, "signal:bob").await;
    // carol listens to her own event only.
    subscribe(&mut carol, room, "signal:carol").await;
    for gw in gws {
        settled(gw).await;
    }

    // signal:all reaches everyone listening to it, never the sender; `from` is the token's user.
    publish(
        &alice,
        room,
        "signal:all",
        json!({"kind": "discover", "from": "spoofed"}),
    )
    .await;
    let discover = json!({"kind": "discover", "from": "alice"});
    expect_message(&mut bob, "bob", room, "signal:all", discover).await;
    // An event reaches its listeners and everyone on signal:all.
    publish(&alice, room, "signal:carol", json!({"offer": 1})).await;
    let offer = json!({"offer": 1, "from": "alice"});
    expect_message(&mut bob, "bob", room, "signal:carol", offer.clone()).await;
    expect_message(&mut carol, "carol", room, "signal:carol", offer).await;
    // Sentinel from bob: alice's next message is it (no echo of her own two), and carol, who
    // does not listen to signal:all, did not get the discover (her next is alice's next DM).
    publish(&bob, room, "signal:all", json!({"sentinel": 1})).await;
    expect_message(
        &mut alice,
        "alice",
        room,
        "signal:all",
        json!({"sentinel": 1, "from": "bob"}),
    )
    .await;
    publish(&alice, room, "signal:carol", json!({"sentinel": 2})).await;
    expect_message(
        &mut carol,
        "carol",
        room,
        "signal:carol",
        json!({"sentinel": 2, "from": "alice"}),
    )
    .await;
    expect_message(
        &mut bob,
        "bob",
        room,
        "signal:carol",
        json!({"sentinel": 2, "from": "alice"}),
    )
    .await;

    // Bad input: an error to the sender only, the connection stays usable.
    publish(&alice, room, "signal:all", json!("not an object")).await;
    expect_error(&mut alice, "string data").await;
    publish(&alice, "other room", "signal:all", json!({})).await;
    expect_error(&mut alice, "not subscribed").await;
    for bad in ["a", "bad/name", "abcdefghijklm", "emoji🙂x"] {
        alice
            .send_json(&json!({"type": "subscribe", "channel": bad, "event": "signal:all"}))
            .await;
        let msg = expect_error(&mut alice, bad).await;
        assert!(!msg.is_empty(), "{bad}");
    }
    alice.send_text("{not json").await;
    expect_error(&mut alice, "bad json").await;
    alice
        .send_json(&json!({"type": "dance", "channel": room}))
        .await;
    expect_error(&mut alice, "unknown type").await;

    // Unsubscribing an event keeps the room; signal:all leaves it.
    carol
        .send_json(&json!({"type": "unsubscribe", "channel": room, "event": "signal:carol"}))
        .await;
    let u = carol.recv_json().await;
    assert_eq!(u["type"], "unsubscribed", "{u}");
    assert_eq!(
        u["data"],
        json!({"status": "unsubscribed", "room": room}),
        "{u}"
    );
    bob.send_json(&json!({"type": "unsubscribe", "channel": room, "event": "signal:all"}))
        .await;
    assert_eq!(bob.recv_json().await["type"], "unsubscribed");
    publish(&bob, room, "signal:all", json!({})).await;
    expect_error(&mut bob, "left the room").await;
    publish(&alice, room, "signal:carol", json!({"after": 1})).await;
    publish(&alice, room, "signal:all", json!({"sentinel": 3})).await;
    // carol is still in the room but listens to nothing: she gets neither; bob left.
    carol
        .send_json(&json!({"type": "publish", "channel": room, "data": {"sentinel": 4}}))
        .await;
    expect_message(
        &mut alice,
        "alice",
        room,
        "signal:all",
        json!({"sentinel": 4, "from": "carol"}),
    )
    .await;
    drop(bob);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_51st_member_is_refused_across_gateways() {
    let pair = GatewayPair::chat();
    let room = "full room";
    let mut members = Vec::new();
    for i in 0..50 {
        let gw = if i % 2 == 0 { &pair.a } else { &pair.b };
        let mut c = member(gw, &format!("user-{i}")).await;
        subscribe(&mut c, room, &format!("signal:user-{i}")).await;
        // A second event of the same member does not count twice.
        subscribe(&mut c, room, "signal:all").await;
        members.push(c);
    }
    for gw in [&pair.a, &pair.b] {
        let mut late = member(gw, "late").await;
        late.send_json(&json!({"type": "subscribe", "channel": room, "event": "signal:all"}))
            .await;
        let msg = expect_error(&mut late, "51st member").await;
        assert!(msg.contains("50"), "{msg}");
    }
    // One leaves (its socket closes): there is room again.
    members.pop();
    let mut late = member(&pair.b, "late").await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        late.send_json(&json!({"type": "subscribe", "channel": room, "event": "signal:all"}))
            .await;
        let r = late.recv_json().await;
        if r["type"] == "subscribed" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no room after a member left: {r}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_token_is_refused_with_401_before_the_upgrade() {
    let gw = Gateway::start(shipped_config());
    for path in ["/letshare?token=not-a-jwt&userId=x", "/letshare?userId=x"] {
        match ws_connect(gw.addr(), path, WsOptions::default()).await {
            Err(WsConnectError::Rejected { status, body, .. }) => {
                assert_eq!(status, 401, "{path}");
                let v: Value = serde_json::from_slice(&body)
                    .unwrap_or_else(|e| panic!("{path}: body is not JSON ({e})"));
                assert!(v["error"].is_string(), "{path}: {v}");
            }
            Err(e) => panic!("{path}: {e}"),
            Ok(_) => panic!("{path}: upgraded"),
        }
    }
}
