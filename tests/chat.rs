//! The chat plugin end to end: presence, broadcast, direct messages, pongs, the admin HTTP API,
//! cleanup of idle sockets, bad input, /health and /metrics.
//!
//! "Nobody else received X" is never checked by waiting for silence: after X the same connection
//! sends a sentinel broadcast, and since frames from one connection are handled in order and each
//! connection's outbound queue is FIFO, every observer's *next* message must be the sentinel.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{Value, json};
use support::*;

fn assert_envelope(msg: &Value, ty: &str, from: Option<&str>, to: Option<&str>) {
    assert_eq!(msg_type(msg), ty, "message_type of {msg}");
    let id = msg.get("id").and_then(Value::as_str).unwrap_or("");
    assert!(!id.is_empty(), "id must be a non-empty string: {msg}");
    let ts = msg.get("timestamp").and_then(Value::as_str).unwrap_or("");
    assert!(
        ts.len() >= 20 && ts.contains('T'),
        "timestamp must be an RFC 3339 string: {msg}"
    );
    assert_eq!(
        msg.get("from_user_id"),
        Some(&from.map_or(Value::Null, |f| json!(f))),
        "from_user_id of {msg}"
    );
    assert_eq!(
        msg.get("to_user_id").unwrap_or(&Value::Null),
        &to.map_or(Value::Null, |t| json!(t)),
        "to_user_id of {msg}"
    );
}

/// Sends a broadcast text `{"sentinel": tag}` from `sender`.
async fn send_sentinel(sender: &WsClient, tag: &str) {
    sender
        .send_json(&json!({"message_type": "text", "data": {"sentinel": tag}}))
        .await;
}

/// The next message of `client` must be the sentinel `tag` broadcast by `from`.
async fn expect_sentinel(client: &mut WsClient, who: &str, tag: &str, from: &str) {
    let msg = client.recv_json().await;
    assert_eq!(
        msg["data"],
        json!({"sentinel": tag}),
        "{who}: expected sentinel {tag:?} next, got {msg}"
    );
    assert_envelope(&msg, "text", Some(from), None);
}

/// Every listed client's next message must be the sentinel `tag` broadcast by `from`.
async fn expect_sentinel_all<const N: usize>(
    clients: [(&str, &mut WsClient); N],
    tag: &str,
    from: &str,
) {
    for (who, c) in clients {
        expect_sentinel(c, who, tag, from).await;
    }
}

fn user_ids(welcome: &Value) -> BTreeSet<String> {
    welcome["data"]["online_users"]
        .as_array()
        .unwrap_or_else(|| panic!("online_users must be an array: {welcome}"))
        .iter()
        .map(|u| u["user_id"].as_str().expect("user_id string").to_string())
        .collect()
}

fn check_welcome(welcome: &Value, user: &str, expected_users: &[&str]) {
    assert_envelope(welcome, "system_message", None, None);
    let data = &welcome["data"];
    assert_eq!(
        data["message"],
        json!("Connected successfully"),
        "{welcome}"
    );
    assert_eq!(data["user_id"], json!(user), "{welcome}");
    assert!(
        data["connection_id"].is_string() && data["connection_id"] != json!(""),
        "connection_id must be a non-empty string: {welcome}"
    );
    let ids = user_ids(welcome);
    let expected: BTreeSet<String> = expected_users.iter().map(|s| s.to_string()).collect();
    assert_eq!(ids, expected, "online_users of {welcome}");
    assert_eq!(
        data["online_count"],
        json!(expected_users.len()),
        "online_count counts users: {welcome}"
    );
    for u in data["online_users"].as_array().expect("array") {
        assert!(u["username"].is_string(), "username in {u}");
        assert!(!u["connected_at"].is_null(), "connected_at in {u}");
    }
}

fn check_presence(msg: &Value, ty: &str, user: &str, username: &str) {
    assert_envelope(msg, ty, Some(user), None);
    assert_eq!(
        msg["data"],
        json!({"user_id": user, "username": username}),
        "{ty} data"
    );
}

/// Waits (bounded) until `/ws/stats` reports `n` connections.
async fn wait_connections(gw: &Gateway, n: u64) {
    gw.poll_until(
        &format!("/ws/stats total_connections == {n}"),
        TIMEOUT,
        || async {
            let stats = gw.admin("GET", "/ws/stats", None).await;
            (stats.status == 200 && stats.json()["total_connections"] == json!(n)).then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_broadcast_and_direct_messages() {
    let gw = Gateway::start(chat_config(None));
    presence_broadcast_and_direct_messages_on([&gw, &gw]).await;
}

/// The same chat, served by two gateways on one Redis: alice's tabs, bob and carol are spread
/// over both, and every announcement, broadcast and DM behaves as on one gateway.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_broadcast_and_direct_messages_across_two_gateways() {
    let pair = GatewayPair::chat();
    presence_broadcast_and_direct_messages_on([&pair.a, &pair.b]).await;
}

/// Connects `sub` to `gw` and waits until `gw` listens on its new topics.
async fn join(gw: &Gateway, sub: &str) -> (WsClient, Value) {
    let mut c = gw.chat_user(sub).await;
    let welcome = c.recv_json().await;
    settled(gw).await;
    (c, welcome)
}

/// alice (tab 1) and carol on `gws[0]`, bob and alice (tab 2) on `gws[1]`.
async fn presence_broadcast_and_direct_messages_on(gws: [&Gateway; 2]) {
    let gw = gws[0];

    // alice (tab 1)
    let (mut alice1, w) = join(gws[0], "alice").await;
    check_welcome(&w, "alice", &["alice"]);
    let alice1_conn = w["data"]["connection_id"].clone();

    // bob: alice hears about him once.
    let (mut bob, w) = join(gws[1], "bob").await;
    check_welcome(&w, "bob", &["alice", "bob"]);
    check_presence(&alice1.recv_json().await, "user_joined", "bob", "Bob");

    // carol
    let (mut carol, w) = join(gws[0], "carol").await;
    check_welcome(&w, "carol", &["alice", "bob", "carol"]);
    check_presence(&alice1.recv_json().await, "user_joined", "carol", "Carol");
    check_presence(&bob.recv_json().await, "user_joined", "carol", "Carol");

    // alice (tab 2): no second user_joined; she is counted once.
    let (mut alice2, w) = join(gws[1], "alice").await;
    check_welcome(&w, "alice", &["alice", "bob", "carol"]);
    assert_ne!(
        w["data"]["connection_id"], alice1_conn,
        "each tab has its own connection id"
    );
    send_sentinel(&alice2, "after-alice2").await;
    expect_sentinel_all(
        [
            ("alice1", &mut alice1),
            ("alice2", &mut alice2),
            ("bob", &mut bob),
            ("carol", &mut carol),
        ],
        "after-alice2",
        "alice",
    )
    .await;

    // Broadcast from carol reaches all four connections; spoofed envelope fields are ignored.
    carol
        .send_json(&json!({
            "message_type": "text",
            "data": {"text": "hello everyone"},
            "id": "spoofed-id",
            "from_user_id": "mallory",
            "timestamp": "1999-01-01T00:00:00.000Z"
        }))
        .await;
    for (who, c) in [
        ("alice1", &mut alice1),
        ("alice2", &mut alice2),
        ("bob", &mut bob),
        ("carol", &mut carol),
    ] {
        let msg = c.recv_json().await;
        assert_envelope(&msg, "text", Some("carol"), None);
        assert_eq!(
            msg["data"],
            json!({"text": "hello everyone"}),
            "{who}: {msg}"
        );
        assert_ne!(
            msg["id"],
            json!("spoofed-id"),
            "{who}: client id must be ignored"
        );
        assert_ne!(msg["timestamp"], json!("1999-01-01T00:00:00.000Z"), "{who}");
    }

    // Notifications broadcast too.
    bob.send_json(&json!({"message_type": "notification", "data": {"level": "info"}}))
        .await;
    for c in [&mut alice1, &mut alice2, &mut bob, &mut carol] {
        let msg = c.recv_json().await;
        assert_envelope(&msg, "notification", Some("bob"), None);
        assert_eq!(msg["data"], json!({"level": "info"}));
    }

    // DM alice -> bob: only bob (not the sender's tabs, not carol).
    alice1
        .send_json(
            &json!({"message_type": "text", "data": {"text": "psst bob"}, "to_user_id": "bob"}),
        )
        .await;
    send_sentinel(&alice1, "after-dm-to-bob").await;
    let dm = bob.recv_json().await;
    assert_envelope(&dm, "text", Some("alice"), Some("bob"));
    assert_eq!(dm["data"], json!({"text": "psst bob"}));
    expect_sentinel_all(
        [
            ("bob", &mut bob),
            ("alice1", &mut alice1),
            ("alice2", &mut alice2),
            ("carol", &mut carol),
        ],
        "after-dm-to-bob",
        "alice",
    )
    .await;

    // DM bob -> alice: both of alice's tabs, never bob or carol.
    bob.send_json(
        &json!({"message_type": "notification", "data": {"n": 7}, "to_user_id": "alice"}),
    )
    .await;
    send_sentinel(&bob, "after-dm-to-alice").await;
    for (who, c) in [("alice1", &mut alice1), ("alice2", &mut alice2)] {
        let dm = c.recv_json().await;
        assert_envelope(&dm, "notification", Some("bob"), Some("alice"));
        assert_eq!(dm["data"], json!({"n": 7}), "{who}");
    }
    expect_sentinel_all(
        [
            ("alice1", &mut alice1),
            ("alice2", &mut alice2),
            ("bob", &mut bob),
            ("carol", &mut carol),
        ],
        "after-dm-to-alice",
        "bob",
    )
    .await;

    // ping -> pong to the requesting connection only (not alice's other tab).
    alice2
        .send_json(&json!({"message_type": "ping", "data": {"n": 42, "s": "x"}}))
        .await;
    send_sentinel(&alice2, "after-ping").await;
    let pong = alice2.recv_type("pong").await;
    assert_eq!(pong["data"], json!({"n": 42, "s": "x"}), "pong echoes data");
    assert!(
        pong["id"].is_string() && pong["timestamp"].is_string(),
        "{pong}"
    );
    expect_sentinel_all(
        [
            ("alice2", &mut alice2),
            ("alice1", &mut alice1),
            ("bob", &mut bob),
            ("carol", &mut carol),
        ],
        "after-ping",
        "alice",
    )
    .await;

    // DM to an offline user: an error to the sender only.
    carol
        .send_json(&json!({"message_type": "text", "data": {"text": "hi?"}, "to_user_id": "dave"}))
        .await;
    send_sentinel(&carol, "after-offline-dm").await;
    let err = carol.recv_type("error").await;
    assert_eq!(err["data"]["code"], json!("user_offline"), "{err}");
    assert!(err["data"]["message"].is_string(), "{err}");
    expect_sentinel_all(
        [
            ("carol", &mut carol),
            ("alice1", &mut alice1),
            ("alice2", &mut alice2),
            ("bob", &mut bob),
        ],
        "after-offline-dm",
        "carol",
    )
    .await;

    // alice closes one tab: nobody hears user_left yet.
    alice1.close(1000).await;
    let _ = alice1.expect_end_within(TIMEOUT).await;
    wait_connections(gw, 3).await;
    send_sentinel(&bob, "after-tab-close").await;
    expect_sentinel_all(
        [
            ("bob", &mut bob),
            ("carol", &mut carol),
            ("alice2", &mut alice2),
        ],
        "after-tab-close",
        "bob",
    )
    .await;

    // alice's last tab closes: bob and carol get user_left exactly once.
    alice2.close(1000).await;
    let _ = alice2.expect_end_within(TIMEOUT).await;
    check_presence(&bob.recv_json().await, "user_left", "alice", "Alice");
    check_presence(&carol.recv_json().await, "user_left", "alice", "Alice");
    send_sentinel(&bob, "after-alice-left").await;
    expect_sentinel(&mut carol, "carol", "after-alice-left", "bob").await;
    expect_sentinel(&mut bob, "bob", "after-alice-left", "bob").await;

    // A DM to alice now reports her offline.
    bob.send_json(&json!({"message_type": "text", "data": {}, "to_user_id": "alice"}))
        .await;
    let err = bob.recv_type("error").await;
    assert_eq!(err["data"]["code"], json!("user_offline"), "{err}");

    // bob drops his socket without a close frame: carol still gets user_left.
    drop(bob);
    check_presence(&carol.recv_json().await, "user_left", "bob", "Bob");
}

/// (description, headers, expected status)
type AuthCase<'a> = (&'a str, Vec<(&'a str, &'a str)>, u16);

const ADMIN_ROUTES: [(&str, &str); 5] = [
    ("GET", "/ws/online"),
    ("GET", "/ws/stats"),
    ("POST", "/ws/send"),
    ("POST", "/ws/broadcast"),
    ("POST", "/ws/cleanup"),
];

fn admin_body(path: &str) -> Option<Value> {
    match path {
        "/ws/send" => Some(
            json!({"to_user_id": "bob", "message_type": "notification", "data": {"admin": "dm"}}),
        ),
        "/ws/broadcast" => Some(json!({"message_type": "notification", "data": {"admin": "all"}})),
        "/ws/cleanup" => Some(json!({"idle_seconds": 86400})),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_routes_need_the_key() {
    let gw = Gateway::start(chat_config(None));
    let mut alice1 = gw.chat_user("alice").await;
    alice1.recv_type("system_message").await;
    let mut alice2 = gw.chat_user("alice").await;
    alice2.recv_type("system_message").await;
    let mut bob = gw.chat_user("bob").await;
    bob.recv_type("system_message").await;
    check_presence(&alice1.recv_json().await, "user_joined", "bob", "Bob");
    check_presence(&alice2.recv_json().await, "user_joined", "bob", "Bob");

    let bearer_ok = format!("Bearer {ADMIN_KEY}");
    let bearer_bad = "Bearer not-the-admin-key".to_string();
    for (method, path) in ADMIN_ROUTES {
        let body = admin_body(path).map(|b| b.to_string().into_bytes());
        let body = body.as_deref();
        let ct = ("content-type", "application/json");
        let cases: [AuthCase; 6] = [
            ("no key", vec![ct], 401),
            (
                "wrong Bearer",
                vec![ct, ("authorization", &bearer_bad)],
                401,
            ),
            (
                "wrong X-API-Key",
                vec![ct, ("x-api-key", "not-the-admin-key")],
                401,
            ),
            ("empty X-API-Key", vec![ct, ("x-api-key", "")], 401),
            ("Bearer key", vec![ct, ("authorization", &bearer_ok)], 200),
            ("X-API-Key", vec![ct, ("x-api-key", ADMIN_KEY)], 200),
        ];
        for (what, headers, expected) in cases {
            let resp = gw.http(method, path, &headers, body).await;
            assert_eq!(
                resp.status,
                expected,
                "{method} {path} with {what}: body {}",
                resp.text()
            );
            if expected == 200 {
                resp.json();
            }
        }
    }
    // Only the two authorised sends and broadcasts had effects, in order.
    for _ in 0..2 {
        let dm = bob.recv_json().await;
        assert_envelope(&dm, "notification", None, Some("bob"));
        assert_eq!(dm["data"], json!({"admin": "dm"}));
    }
    for c in [&mut bob, &mut alice1, &mut alice2] {
        for _ in 0..2 {
            let b = c.recv_json().await;
            assert_envelope(&b, "notification", None, None);
            assert_eq!(b["data"], json!({"admin": "all"}));
        }
    }

    // /ws/online counts users, with per-user connection counts.
    let online = gw.admin("GET", "/ws/online", None).await;
    assert_eq!(online.status, 200);
    let online = online.json();
    assert_eq!(online["count"], json!(2), "{online}");
    let users = online["users"].as_array().expect("users array");
    assert_eq!(users.len(), 2, "{online}");
    for (id, name, conns) in [("alice", "Alice", 2), ("bob", "Bob", 1)] {
        let u = users
            .iter()
            .find(|u| u["user_id"] == json!(id))
            .unwrap_or_else(|| panic!("{id} missing from {online}"));
        assert_eq!(u["username"], json!(name), "{u}");
        assert_eq!(u["connections"], json!(conns), "{u}");
        assert!(!u["connected_at"].is_null(), "{u}");
    }

    // /ws/stats
    let stats = gw.admin("GET", "/ws/stats", None).await;
    assert_eq!(stats.status, 200);
    let stats = stats.json();
    assert_eq!(stats["total_connections"], json!(3), "{stats}");
    assert_eq!(stats["unique_users"], json!(2), "{stats}");
    assert!(
        stats["server_uptime"].as_f64().is_some_and(|u| u >= 0.0),
        "{stats}"
    );

    // /ws/send to a user with two tabs.
    let sent = gw
        .admin(
            "POST",
            "/ws/send",
            Some(&json!({"to_user_id": "alice", "message_type": "system_message", "data": {"hello": "tabs"}})),
        )
        .await;
    assert_eq!(sent.status, 200, "{}", sent.text());
    let sent = sent.json();
    assert_eq!(sent["success"], json!(true), "{sent}");
    assert_eq!(sent["recipients_count"], json!(2), "{sent}");
    for c in [&mut alice1, &mut alice2] {
        let m = c.recv_json().await;
        assert_envelope(&m, "system_message", None, Some("alice"));
        assert_eq!(m["data"], json!({"hello": "tabs"}));
    }

    // /ws/send to an offline user.
    let offline = gw
        .admin(
            "POST",
            "/ws/send",
            Some(&json!({"to_user_id": "nobody", "message_type": "text", "data": {}})),
        )
        .await;
    assert_eq!(offline.status, 404, "{}", offline.text());
    assert_eq!(offline.json()["success"], json!(false));

    // /ws/broadcast reaches every connection; bob never saw alice's admin DM.
    let bc = gw
        .admin(
            "POST",
            "/ws/broadcast",
            Some(&json!({"message_type": "text", "data": {"sentinel": "admin-broadcast"}})),
        )
        .await;
    assert_eq!(bc.status, 200, "{}", bc.text());
    let bc = bc.json();
    assert_eq!(bc["success"], json!(true), "{bc}");
    assert_eq!(bc["recipients_count"], json!(3), "{bc}");
    assert!(bc["message"].is_string(), "{bc}");
    for c in [&mut bob, &mut alice1, &mut alice2] {
        let m = c.recv_json().await;
        assert_envelope(&m, "text", None, None);
        assert_eq!(m["data"], json!({"sentinel": "admin-broadcast"}));
    }

    // Bad bodies -> 400 with an error.
    for (path, body) in [
        ("/ws/send", "not json".to_string()),
        (
            "/ws/send",
            json!({"message_type": "text", "data": {}}).to_string(),
        ),
        (
            "/ws/send",
            json!({"to_user_id": "bob", "message_type": "ping", "data": {}}).to_string(),
        ),
        ("/ws/broadcast", "{".to_string()),
        (
            "/ws/broadcast",
            json!({"message_type": "user_left", "data": {}}).to_string(),
        ),
        ("/ws/cleanup", json!({"idle_seconds": "soon"}).to_string()),
    ] {
        let resp = gw
            .http(
                "POST",
                path,
                &[
                    ("authorization", &bearer_ok),
                    ("content-type", "application/json"),
                ],
                Some(body.as_bytes()),
            )
            .await;
        assert_eq!(resp.status, 400, "POST {path} {body}: {}", resp.text());
        assert!(resp.json()["error"].is_string(), "{}", resp.text());
    }

    // Unknown path and wrong methods.
    let resp = gw.admin("GET", "/ws/nope", None).await;
    assert_eq!(resp.status, 404, "{}", resp.text());
    let resp = gw.admin("GET", "/ws/send", None).await;
    assert_eq!(resp.status, 405, "{}", resp.text());
    let resp = gw.admin("POST", "/ws/online", Some(&json!({}))).await;
    assert_eq!(resp.status, 405, "{}", resp.text());

    // Cleanup with the default idle threshold (300 s) closes nobody.
    let resp = gw
        .http("POST", "/ws/cleanup", &[("x-api-key", ADMIN_KEY)], None)
        .await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    let cleaned = resp.json();
    assert_eq!(cleaned["cleaned_connections"], json!(0), "{cleaned}");
    assert_eq!(cleaned["remaining_connections"], json!(3), "{cleaned}");

    // Nothing else was delivered: the next frame everyone sees is this sentinel.
    send_sentinel(&bob, "end").await;
    expect_sentinel_all(
        [
            ("bob", &mut bob),
            ("alice1", &mut alice1),
            ("alice2", &mut alice2),
        ],
        "end",
        "bob",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_routes_answer_503_without_admin_key() {
    let gw = GatewayBuilder::new(chat_config(None))
        .without_admin_key()
        .start();
    let bearer = format!("Bearer {ADMIN_KEY}");
    for (method, path) in ADMIN_ROUTES {
        let body = admin_body(path).map(|b| b.to_string().into_bytes());
        for headers in [
            vec![],
            vec![("authorization", bearer.as_str())],
            vec![("x-api-key", ADMIN_KEY)],
        ] {
            let resp = gw.http(method, path, &headers, body.as_deref()).await;
            assert_eq!(
                resp.status,
                503,
                "{method} {path} {headers:?}: {}",
                resp.text()
            );
        }
    }
    // The WebSocket side is unaffected.
    let mut alice = gw.chat_user("alice").await;
    alice.recv_type("system_message").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleanup_closes_idle_sockets_and_emits_user_left() {
    let gw = Gateway::start(chat_config(None));
    let mut alice = gw.chat_user("alice").await;
    alice.recv_type("system_message").await;
    let mut bob = gw.chat_user("bob").await;
    bob.recv_type("system_message").await;
    alice.recv_type("user_joined").await;

    // Idleness needs real time to pass: alice and bob stay silent for 3 s.
    tokio::time::sleep(Duration::from_secs(3)).await;

    let mut carol = gw.chat_user("carol").await;
    carol.recv_type("system_message").await;
    carol
        .send_json(&json!({"message_type": "ping", "data": null}))
        .await;
    carol.recv_type("pong").await;

    let resp = gw
        .admin("POST", "/ws/cleanup", Some(&json!({"idle_seconds": 2})))
        .await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    let body = resp.json();
    assert_eq!(body["cleaned_connections"], json!(2), "{body}");
    assert_eq!(body["remaining_connections"], json!(1), "{body}");

    // The idle sockets are really closed, with 4000 "idle".
    for (who, c) in [("alice", &mut alice), ("bob", &mut bob)] {
        let (code, reason) = c.expect_close_reason().await;
        assert_eq!(code, 4000, "{who}: close code");
        assert!(reason.contains("idle"), "{who}: close reason {reason:?}");
    }

    // ... and user_left is emitted for each of them.
    let mut left = BTreeSet::new();
    for _ in 0..2 {
        let msg = carol.recv_json().await;
        assert_eq!(msg_type(&msg), "user_left", "{msg}");
        left.insert(
            msg["data"]["user_id"]
                .as_str()
                .expect("user_id")
                .to_string(),
        );
    }
    assert_eq!(
        left,
        BTreeSet::from(["alice".to_string(), "bob".to_string()])
    );

    let stats = gw.admin("GET", "/ws/stats", None).await.json();
    assert_eq!(stats["total_connections"], json!(1), "{stats}");
    assert_eq!(stats["unique_users"], json!(1), "{stats}");

    // carol carries on.
    send_sentinel(&carol, "still-here").await;
    expect_sentinel(&mut carol, "carol", "still-here", "carol").await;
}

fn small_limits() -> &'static str {
    "max_frame_bytes = 1024\nmax_message_bytes = 4096\n"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_errors_and_others_carry_on() {
    let gw = Gateway::start(chat_config(Some(small_limits())));
    let mut alice = gw.chat_user("alice").await;
    alice.recv_type("system_message").await;
    let mut bob = gw.chat_user("bob").await;
    bob.recv_type("system_message").await;
    alice.recv_type("user_joined").await;

    let cases: Vec<(&str, String, &[&str])> = vec![
        ("not JSON", "this is not json".into(), &["invalid_json"]),
        (
            "truncated JSON",
            "{\"message_type\": ".into(),
            &["invalid_json"],
        ),
        (
            "no message_type",
            json!({"data": 1}).to_string(),
            &["invalid_message"],
        ),
        (
            "numeric message_type",
            json!({"message_type": 5}).to_string(),
            &["invalid_message"],
        ),
        ("JSON array", "[1,2,3]".into(), &["invalid_message"]),
        (
            "unknown type",
            json!({"message_type": "bogus", "data": {}}).to_string(),
            &["unknown_type"],
        ),
    ];
    for (what, text, codes) in &cases {
        alice.send_text(text).await;
        let err = alice.recv_json().await;
        assert_envelope(&err, "error", None, None);
        let code = err["data"]["code"].as_str().unwrap_or("");
        assert!(
            codes.contains(&code),
            "{what}: expected {codes:?}, got {err}"
        );
        assert!(err["data"]["message"].is_string(), "{what}: {err}");
    }
    for server_only in [
        "system_message",
        "pong",
        "user_joined",
        "user_left",
        "error",
    ] {
        alice
            .send_json(&json!({"message_type": server_only, "data": {"user_id": "mallory"}}))
            .await;
        let err = alice.recv_type("error").await;
        assert_eq!(
            err["data"]["code"],
            json!("forbidden_type"),
            "client-sent {server_only}: {err}"
        );
    }
    alice.send_binary(&[0, 1, 2, 3, 255]).await;
    let err = alice.recv_type("error").await;
    assert_eq!(err["data"]["code"], json!("binary_not_supported"), "{err}");

    // None of that reached bob.
    send_sentinel(&alice, "after-errors").await;
    expect_sentinel(&mut bob, "bob", "after-errors", "alice").await;
    expect_sentinel(&mut alice, "alice", "after-errors", "alice").await;

    // An oversized frame closes alice with 1009; bob sees her leave and carries on.
    let big = json!({"message_type": "text", "data": {"blob": "x".repeat(2000)}}).to_string();
    alice.send_text(&big).await;
    assert_eq!(alice.expect_close().await, 1009, "oversized frame");
    check_presence(&bob.recv_json().await, "user_left", "alice", "Alice");
    bob.send_json(&json!({"message_type": "ping", "data": "ok?"}))
        .await;
    assert_eq!(bob.recv_type("pong").await["data"], json!("ok?"));

    // New connections are fine.
    let mut carol = gw.chat_user("carol").await;
    check_welcome(&carol.recv_json().await, "carol", &["bob", "carol"]);
    check_presence(&bob.recv_json().await, "user_joined", "carol", "Carol");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_fragmented_message_closes_1009() {
    use fastwebsockets::{Frame, OpCode, Payload};

    let gw = Gateway::start(chat_config(Some(small_limits())));
    let mut alice = gw.chat_user("alice").await;
    alice.recv_type("system_message").await;
    let mut bob = gw.chat_user("bob").await;
    bob.recv_type("system_message").await;
    alice.recv_type("user_joined").await;

    // A fragmented message within the limits is reassembled and delivered.
    let small = json!({"message_type": "text", "data": {"blob": "y".repeat(1500)}}).to_string();
    let bytes = small.as_bytes();
    let (a, b) = bytes.split_at(bytes.len() / 2);
    alice
        .send_frame(Frame::new(
            false,
            OpCode::Text,
            None,
            Payload::Owned(a.to_vec()),
        ))
        .await
        .expect("first fragment");
    alice
        .send_frame(Frame::new(
            true,
            OpCode::Continuation,
            None,
            Payload::Owned(b.to_vec()),
        ))
        .await
        .expect("last fragment");
    for c in [&mut alice, &mut bob] {
        let m = c.recv_type("text").await;
        assert_eq!(m["data"]["blob"].as_str().map(str::len), Some(1500));
    }

    // Five 1000-byte fragments (each under max_frame_bytes) exceed max_message_bytes = 4096.
    let chunk = vec![b'z'; 1000];
    let mut frames = vec![Frame::new(
        false,
        OpCode::Text,
        None,
        Payload::Owned(chunk.clone()),
    )];
    for i in 1..5 {
        frames.push(Frame::new(
            i == 4,
            OpCode::Continuation,
            None,
            Payload::Owned(chunk.clone()),
        ));
    }
    for f in frames {
        // The gateway may close before the last fragments are written.
        if alice.send_frame(f).await.is_err() {
            break;
        }
    }
    assert_eq!(alice.expect_close().await, 1009, "oversized message");
    check_presence(&bob.recv_json().await, "user_left", "alice", "Alice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_metrics() {
    let gw = Gateway::start(chat_config(None));

    let health = gw.health().await;
    assert_eq!(health["status"], json!("ok"), "{health}");
    assert_eq!(
        health["version"],
        json!(env!("CARGO_PKG_VERSION")),
        "/health names the gateway's version: {health}"
    );
    assert!(
        health["uptime_seconds"].as_f64().is_some_and(|u| u >= 0.0),
        "{health}"
    );
    let chat = &health["plugins"]["chat"];
    let version = chat["version"].as_str().unwrap_or("");
    assert!(
        version.len() >= 8 && version.chars().all(|c| c.is_ascii_hexdigit()),
        "version must be a sha256 hex prefix: {health}"
    );
    assert_eq!(chat["state"], json!("running"), "{health}");
    assert_eq!(chat["last_error"], Value::Null, "{health}");
    assert_eq!(chat["traps"], json!(0), "{health}");

    let mut alice = gw.chat_user("alice").await;
    alice.recv_type("system_message").await;
    let mut bob = gw.chat_user("bob").await;
    bob.recv_type("system_message").await;
    alice.recv_type("user_joined").await;
    alice
        .send_json(&json!({"message_type": "text", "data": {"text": "metrics please"}}))
        .await;
    alice.recv_type("text").await;
    bob.recv_type("text").await;
    bob.send_json(&json!({"message_type": "ping", "data": 1}))
        .await;
    bob.recv_type("pong").await;

    let m = gw.metrics().await;
    let build = m
        .samples
        .iter()
        .find(|(n, _, _)| n == "gateway_build_info")
        .unwrap_or_else(|| panic!("gateway_build_info missing:\n{}", m.raw));
    assert_eq!(build.1["version"], env!("CARGO_PKG_VERSION"), "{}", m.raw);
    assert_eq!(build.2, 1.0);
    for name in [
        "gateway_connections_open",
        "gateway_connections_total",
        "gateway_frames_in_total",
        "gateway_frames_out_total",
        "gateway_bytes_in_total",
        "gateway_bytes_out_total",
        "gateway_plugin_calls_total",
        "gateway_plugin_traps_total",
        "gateway_slow_consumer_drops_total",
    ] {
        m.value(name);
    }
    assert!(
        m.raw
            .contains("# TYPE gateway_plugin_call_seconds histogram"),
        "gateway_plugin_call_seconds must be a histogram:\n{}",
        m.raw
    );
    assert!(m.has("gateway_plugin_call_seconds_bucket"), "{}", m.raw);
    assert!(
        m.value("gateway_plugin_call_seconds_count") >= 4.0,
        "{}",
        m.raw
    );
    assert!(m.has("gateway_plugin_call_seconds_sum"), "{}", m.raw);

    assert_eq!(m.value("gateway_connections_open"), 2.0, "{}", m.raw);
    assert!(m.value("gateway_connections_total") >= 2.0, "{}", m.raw);
    assert!(m.value("gateway_frames_in_total") >= 2.0, "{}", m.raw);
    // welcome x2, user_joined, text x2, pong
    assert!(m.value("gateway_frames_out_total") >= 6.0, "{}", m.raw);
    assert!(m.value("gateway_bytes_in_total") > 0.0, "{}", m.raw);
    assert!(m.value("gateway_bytes_out_total") > 0.0, "{}", m.raw);
    // on_open x2 + on_frame x2 at least
    assert!(m.value("gateway_plugin_calls_total") >= 4.0, "{}", m.raw);
    assert_eq!(m.value("gateway_plugin_traps_total"), 0.0, "{}", m.raw);
    assert_eq!(
        m.value("gateway_slow_consumer_drops_total"),
        0.0,
        "{}",
        m.raw
    );

    // Closing a connection is reflected.
    bob.close(1000).await;
    let _ = bob.expect_end_within(TIMEOUT).await;
    gw.poll_until("gateway_connections_open == 1", TIMEOUT, || async {
        (gw.metrics().await.value("gateway_connections_open") == 1.0).then_some(())
    })
    .await;
    let m = gw.metrics().await;
    assert!(m.value("gateway_connections_total") >= 2.0);
}
