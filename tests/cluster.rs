//! Two gateway processes on one real `redis-server`: what a client on one instance sends
//! reaches clients on the other, as if both were one server.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::{Gateway, GatewayBuilder, RedisServer, WsClient, chat_config};

/// Two chat gateways sharing a Redis (and a JWT secret).
struct Pair {
    a: Gateway,
    b: Gateway,
    _redis: RedisServer,
}

fn clustered_chat(redis: &RedisServer) -> String {
    format!(
        "{}\n[redis]\nurl = \"{}\"\n",
        chat_config(None),
        redis.url()
    )
}

impl Pair {
    async fn start() -> Pair {
        let redis = RedisServer::start();
        let secret = format!(
            "cluster-test-secret-{}-0123456789abcdef",
            std::process::id()
        );
        let cfg = clustered_chat(&redis);
        let a = GatewayBuilder::new(cfg.clone()).jwt_secret(&secret).start();
        let b = GatewayBuilder::new(cfg).jwt_secret(&secret).start();
        Pair {
            a,
            b,
            _redis: redis,
        }
    }
}

/// Waits until `gw`'s bus listens on at least `n` channels (its own plus one per topic).
async fn wait_channels(gw: &Gateway, n: u64) -> Value {
    gw.wait_health("bus subscriptions", Duration::from_secs(10), |h| {
        h["cluster"]["channels"].as_u64().unwrap_or(0) >= n
    })
    .await
}

async fn next_of_type(c: &mut WsClient, ty: &str) -> Value {
    c.recv_until_type(ty).await.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcasts_cross_instances_and_ids_are_cluster_unique() {
    let p = Pair::start().await;
    let ha = p.a.health().await;
    let hb = p.b.health().await;
    assert_eq!(ha["cluster"]["mode"], "redis", "{ha}");
    let (na, nb) = (
        ha["cluster"]["node"].as_u64().unwrap(),
        hb["cluster"]["node"].as_u64().unwrap(),
    );
    assert!(na > 0 && nb > 0 && na != nb, "node numbers {na} {nb}");

    let mut alice = p.a.chat_user("alice").await;
    let wa = alice.recv_json().await;
    let mut bob = p.b.chat_user("bob").await;
    let wb = bob.recv_json().await;
    // Connection ids carry the node number and stay exact as JavaScript numbers.
    for (w, n) in [(&wa, na), (&wb, nb)] {
        let id: u64 = w["data"]["connection_id"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(id >> 32, n, "{w}");
        assert!(id < 1 << 53, "{id}");
    }
    // own channel + chat:all + chat:user:<id>
    wait_channels(&p.a, 3).await;
    wait_channels(&p.b, 3).await;

    alice
        .send_json(&json!({"message_type": "text", "data": {"text": "from a"}}))
        .await;
    let m = next_of_type(&mut bob, "text").await;
    assert_eq!(m["data"]["text"], "from a", "{m}");
    assert_eq!(m["from_user_id"], "alice", "{m}");
    assert_eq!(
        next_of_type(&mut alice, "text").await["data"]["text"],
        "from a"
    );

    bob.send_json(&json!({"message_type": "text", "data": {"text": "from b"}}))
        .await;
    assert_eq!(
        next_of_type(&mut alice, "text").await["data"]["text"],
        "from b"
    );
    assert_eq!(
        next_of_type(&mut bob, "text").await["data"]["text"],
        "from b"
    );

    // Order per publisher holds across instances.
    for i in 0..50 {
        alice
            .send_json(&json!({"message_type": "text", "data": {"i": i}}))
            .await;
    }
    for i in 0..50 {
        let m = next_of_type(&mut bob, "text").await;
        assert_eq!(m["data"]["i"], i, "{m}");
    }

    // An admin broadcast on B reaches A.
    let r =
        p.b.admin(
            "POST",
            "/ws/broadcast",
            Some(&json!({"message_type": "notification", "data": {"admin": "all"}})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let m = next_of_type(&mut alice, "notification").await;
    assert_eq!(m["data"]["admin"], "all", "{m}");

    // B heard alice's 51 texts through the bus, A heard bob's text and the admin broadcast.
    let (ha, hb) = (p.a.health().await, p.b.health().await);
    assert!(hb["cluster"]["received"].as_u64().unwrap() >= 51, "{hb}");
    assert!(ha["cluster"]["received"].as_u64().unwrap() >= 2, "{ha}");
    assert_eq!(ha["cluster"]["dropped"], 0, "{ha}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_unsubscribes_when_its_last_member_leaves() {
    let p = Pair::start().await;
    let base = wait_channels(&p.b, 1).await["cluster"]["channels"]
        .as_u64()
        .unwrap();
    let mut bob = p.b.chat_user("bob").await;
    bob.recv_json().await;
    wait_channels(&p.b, base + 2).await;
    bob.close(1000).await;
    p.b.wait_health("bus unsubscribed", Duration::from_secs(10), |h| {
        h["cluster"]["channels"].as_u64() == Some(base)
    })
    .await;
    // Embedded default: no [redis], node 0, local mode.
    let solo = Gateway::start(chat_config(None));
    let h = solo.health().await;
    assert_eq!(h["cluster"], json!({"mode": "local", "node": 0}), "{h}");
}
