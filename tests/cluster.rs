//! Two gateway processes on one real `redis-server`: what a client on one instance sends
//! reaches clients on the other, presence and the admin API are cluster-wide, and a gateway
//! that dies is noticed by the other. (The chat protocol across two gateways is in `chat.rs`.)

mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{Gateway, GatewayPair, WsClient, WsEvent, chat_config, rss_kib, settled};

async fn next_of_type(c: &mut WsClient, ty: &str) -> Value {
    c.recv_until_type(ty).await.0
}

async fn connect(gw: &Gateway, sub: &str) -> WsClient {
    let mut c = gw.chat_user(sub).await;
    c.recv_type("system_message").await;
    settled(gw).await;
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcasts_cross_instances_and_ids_are_cluster_unique() {
    let p = GatewayPair::chat();
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
    settled(&p.a).await;
    settled(&p.b).await;

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

    // B heard alice's 51 texts through the bus, A heard bob's text.
    let (ha, hb) = (p.a.health().await, p.b.health().await);
    assert!(hb["cluster"]["received"].as_u64().unwrap() >= 51, "{hb}");
    assert!(ha["cluster"]["received"].as_u64().unwrap() >= 1, "{ha}");
    assert_eq!(ha["cluster"]["dropped"], 0, "{ha}");
    // The publisher counts a pipeline once Redis answered it, which may trail the delivery.
    p.a.poll_until("published counter", Duration::from_secs(5), || async {
        (p.a.metrics().await.value("gateway_bus_published_total") >= 51.0).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api_is_cluster_wide_on_every_instance() {
    let p = GatewayPair::chat();
    let mut alice1 = connect(&p.a, "alice").await;
    let mut alice2 = connect(&p.b, "alice").await;
    let mut bob = connect(&p.b, "bob").await;
    let mut carol = connect(&p.a, "carol").await;

    for gw in [&p.a, &p.b] {
        let stats = gw.admin("GET", "/ws/stats", None).await.json();
        assert_eq!(stats["total_connections"], 4, "{stats}");
        assert_eq!(stats["unique_users"], 3, "{stats}");
        let online = gw.admin("GET", "/ws/online", None).await.json();
        assert_eq!(online["count"], 3, "{online}");
        let users: Vec<(String, u64)> = online["users"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| {
                (
                    u["user_id"].as_str().unwrap().to_string(),
                    u["connections"].as_u64().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            users,
            [("alice".into(), 2), ("bob".into(), 1), ("carol".into(), 1)],
            "{online}"
        );
    }

    // POST /ws/send on B reaches both of alice's tabs (one on each instance) and nobody else.
    let r =
        p.b.admin(
            "POST",
            "/ws/send",
            Some(&json!({"to_user_id": "alice", "message_type": "notification", "data": {"k": 1}})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["recipients_count"], 2);
    for c in [&mut alice1, &mut alice2] {
        let m = next_of_type(c, "notification").await;
        assert_eq!(m["data"], json!({"k": 1}), "{m}");
        assert_eq!(m["to_user_id"], "alice", "{m}");
    }

    // POST /ws/broadcast on A reaches every connection on both.
    let r =
        p.a.admin(
            "POST",
            "/ws/broadcast",
            Some(&json!({"message_type": "notification", "data": {"all": true}})),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["recipients_count"], 4);
    for c in [&mut alice1, &mut alice2, &mut bob, &mut carol] {
        let m = next_of_type(c, "notification").await;
        assert_eq!(m["data"], json!({"all": true}), "{m}");
        assert!(m.get("to_user_id").is_none_or(Value::is_null), "{m}");
    }

    // A user that is offline everywhere gets a 404 from either instance.
    for gw in [&p.a, &p.b] {
        let r = gw
            .admin(
                "POST",
                "/ws/send",
                Some(&json!({"to_user_id": "nobody", "message_type": "notification", "data": {}})),
            )
            .await;
        assert_eq!(r.status, 404);
    }

    // /ws/cleanup still closes idle sockets (each instance its own) and the others hear it.
    let r =
        p.b.admin("POST", "/ws/cleanup", Some(&json!({"idle_seconds": 0})))
            .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json()["cleaned_connections"],
        2,
        "alice2 and bob are on B"
    );
    let left = next_of_type(&mut carol, "user_left").await;
    assert_eq!(left["data"]["user_id"], "bob", "{left}");
    let stats = p.a.admin("GET", "/ws/stats", None).await.json();
    assert_eq!(stats["unique_users"], 2, "{stats}");
    drop(alice1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_of_a_killed_instance_leave_presence() {
    let mut p = GatewayPair::chat();
    let mut alice = connect(&p.a, "alice").await;
    let _dave = connect(&p.b, "dave").await;
    let _erin = connect(&p.b, "erin").await;
    // erin also has a tab on A: she stays online when B dies.
    let _erin_a = connect(&p.a, "erin").await;
    for _ in 0..2 {
        next_of_type(&mut alice, "user_joined").await;
    }
    p.b.sigkill();
    let killed = Instant::now();
    let deadline = killed + Duration::from_secs(45);
    let left = loop {
        let ev = alice
            .recv_within(deadline.saturating_duration_since(Instant::now()))
            .await
            .expect("user_left within 45 s of the kill");
        if let WsEvent::Text(t) = ev {
            let v: Value = serde_json::from_str(&t).unwrap();
            if v["message_type"] == "user_left" {
                break v;
            }
        }
    };
    let took = killed.elapsed();
    assert_eq!(left["data"]["user_id"], "dave", "{left}");
    println!("dead instance noticed after {} ms", took.as_millis());
    let stats = p.a.admin("GET", "/ws/stats", None).await.json();
    assert_eq!(stats["unique_users"], 2, "alice and erin: {stats}");
    assert_eq!(stats["total_connections"], 2, "{stats}");
    // Nobody else left: erin is still online through her tab on A.
    alice
        .send_json(&json!({"message_type": "text", "data": {"sentinel": 1}}))
        .await;
    let next = alice.recv_json().await;
    assert_eq!(next["data"], json!({"sentinel": 1}), "{next}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_unsubscribes_when_its_last_member_leaves() {
    let p = GatewayPair::chat();
    settled(&p.b).await;
    let base = p.b.health().await["cluster"]["channels"].as_u64().unwrap();
    let bob = connect(&p.b, "bob").await;
    assert_eq!(
        p.b.health().await["cluster"]["channels"].as_u64(),
        Some(base + 2),
        "chat:all and chat:user:bob"
    );
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

/// Redis is SIGKILLed under chat traffic and comes back empty 10 s later: both gateways stay
/// up, local delivery goes on meanwhile, memory stays bounded, and cross-instance delivery and
/// presence come back by themselves within 15 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_survives_a_redis_crash() {
    let mut p = GatewayPair::chat();
    let alice = connect(&p.a, "alice").await;
    let mut carol = connect(&p.a, "carol").await;
    let mut bob = connect(&p.b, "bob").await;
    let rss_before = (rss_kib(p.a.pid()), rss_kib(p.b.pid()));

    // 1 KiB texts from alice, 400 a second, for the whole drill (bounded by count and time).
    let sender = alice.sender();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let pad = "x".repeat(1024);
            let started = Instant::now();
            let mut sent = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed)
                && sent < 40_000
                && started.elapsed() < Duration::from_secs(60)
            {
                let msg = json!({"message_type": "text", "data": {"load": sent, "pad": pad}});
                if sender.send_text(&msg.to_string()).await.is_err() {
                    break;
                }
                sent += 1;
                tokio::time::sleep(Duration::from_micros(2500)).await;
            }
            sent
        })
    };
    next_of_type(&mut bob, "text").await;

    p.redis.kill();
    let down = Instant::now();
    // Local delivery goes on: carol, on alice's gateway, keeps receiving her texts.
    let mut during = 0u64;
    while down.elapsed() < Duration::from_secs(10) {
        if let Some(WsEvent::Text(_)) = carol.recv_within(Duration::from_millis(500)).await {
            during += 1;
        }
    }
    assert!(
        during > 500,
        "carol got {during} texts while redis was down"
    );
    assert!(p.a.is_running() && p.b.is_running());
    p.redis.restart();
    let back = Instant::now();

    // Cross-instance delivery resumes: bob hears a fresh sentinel from alice's gateway.
    let healed = loop {
        assert!(
            back.elapsed() < Duration::from_secs(15),
            "no cross-instance delivery within 15 s of redis coming back"
        );
        let tag = format!("probe-{}", back.elapsed().as_millis());
        carol
            .send_json(&json!({"message_type": "text", "data": {"probe": tag}}))
            .await;
        let until = Instant::now() + Duration::from_millis(500);
        let mut found = false;
        while Instant::now() < until {
            match bob
                .recv_within(until.saturating_duration_since(Instant::now()))
                .await
            {
                Some(WsEvent::Text(t)) if t.contains(&tag) => {
                    found = true;
                    break;
                }
                Some(end @ (WsEvent::Close { .. } | WsEvent::Disconnected(_))) => {
                    panic!("bob's connection ended during the drill: {end:?}")
                }
                Some(_) => {}
                None => break,
            }
        }
        if found {
            break back.elapsed();
        }
    };
    println!(
        "cross-instance delivery back {} ms after redis restarted",
        healed.as_millis()
    );
    // Presence was registered again from what each gateway remembers.
    p.b.poll_until(
        "presence re-registered",
        Duration::from_secs(15),
        || async {
            let s = p.b.admin("GET", "/ws/stats", None).await.json();
            (s["unique_users"] == 3 && s["total_connections"] == 3).then_some(())
        },
    )
    .await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let sent = load.await.unwrap();
    let rss_after = (rss_kib(p.a.pid()), rss_kib(p.b.pid()));
    println!("sent {sent} texts; rss before {rss_before:?} KiB, after {rss_after:?} KiB");
    for (before, after) in [(rss_before.0, rss_after.0), (rss_before.1, rss_after.1)] {
        assert!(
            after < before + 96 * 1024,
            "rss grew from {before} KiB to {after} KiB during the outage"
        );
    }
    let m = p.a.metrics().await;
    assert!(
        m.value("gateway_bus_dropped_total") > 0.0,
        "drops are counted"
    );
    let logs = p.a.logs();
    assert_eq!(
        logs.matches("cluster bus: publishing failed").count(),
        1,
        "one log line per outage, not per message"
    );
}

const KV_PLUGIN: &str = r#"
[plugins.faulty]
wasm = @FAULTY_WASM@
max_instances = 2
call_timeout_ms = 2000

[[routes]]
path = "/kv"
kind = "websocket"
plugin = "faulty"
origins = ["*"]
"#;

async fn kv(c: &mut WsClient, cmd: &str) -> String {
    c.send_text(cmd).await;
    match c.recv().await {
        WsEvent::Text(t) => t,
        other => panic!("{cmd}: {other:?}"),
    }
}

/// The same key-value calls on one embedded gateway and across two gateways on one Redis:
/// what one writes the other reads, scans and counts, and expiry is Redis's own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_is_shared_by_every_instance() {
    let redis = support::RedisServer::start();
    let cfg = support::with_redis(KV_PLUGIN, &redis);
    let a = Gateway::start(cfg.clone());
    let b = Gateway::start(cfg);
    let solo = Gateway::start(KV_PLUGIN);
    for (writer, reader) in [(&a, &b), (&solo, &solo)] {
        let mut w = writer.ws("/kv").await;
        let mut r = reader.ws("/kv").await;
        assert_eq!(kv(&mut w, "kv-set user:2 bob").await, "ok");
        assert_eq!(kv(&mut w, "kv-set user:1 alice").await, "ok");
        assert_eq!(kv(&mut w, "kv-set other x").await, "ok");
        assert_eq!(kv(&mut w, "kv-set user:9 brief 300").await, "ok");
        assert_eq!(kv(&mut r, "kv-get user:1").await, "alice");
        assert_eq!(kv(&mut r, "kv-count user:").await, "3");
        assert_eq!(
            kv(&mut r, "kv-scan user: 2").await,
            "user:1=alice,user:2=bob",
            "key order, limited"
        );
        assert_eq!(kv(&mut r, "kv-scan  100").await.split(',').count(), 4);
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(kv(&mut r, "kv-get user:9").await, "none", "expired");
        assert_eq!(kv(&mut r, "kv-count user:").await, "2");
        assert_eq!(kv(&mut r, "kv-del user:2").await, "true");
        assert_eq!(kv(&mut w, "kv-del user:2").await, "false");
        assert_eq!(kv(&mut w, "kv-scan user: 10").await, "user:1=alice");
    }
    // Namespaced per plugin under the cluster prefix.
    let mut w = a.ws("/kv").await;
    assert_eq!(kv(&mut w, "kv-get other").await, "x");
}
