//! Fault isolation with the `faulty` test plugin: a trap, an endless loop (stopped by the
//! epoch deadline) or memory exhaustion closes only the offending connection with 1011; the
//! others keep working, new connections are served and the process stays up.

mod support;

use std::time::Duration;

use serde_json::json;
use support::*;

fn faulty_config(max_instances: u32) -> String {
    format!(
        r#"
[plugins.faulty]
wasm = @FAULTY_WASM@
max_instances = {max_instances}
memory_limit_mb = 16
call_timeout_ms = 300

# Every test client connects from 127.0.0.1: let it spend the whole budget.
[plugins.faulty.faults]
max_faults_per_client = 1000

[[routes]]
path = "/faulty"
kind = "websocket"
plugin = "faulty"
origins = ["*"]
"#
    )
}

/// Sends a fault command and expects close 1011 (and nothing echoed before it).
async fn assert_fault_closes(client: &mut WsClient, who: &str, command: &str, bound: Duration) {
    client.send_text(command).await;
    let (code, frames) = client.expect_end_within(bound).await;
    assert!(
        frames.is_empty(),
        "{who}: {command} produced frames {frames:?}"
    );
    assert_eq!(
        code,
        Some(1011),
        "{who}: `{command}` must close with 1011, ended with {:?}",
        client.ended
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_are_isolated_to_their_connection() {
    let mut gw = Gateway::start(faulty_config(4));

    let mut clients = Vec::new();
    for i in 0..6 {
        let mut c = gw.ws("/faulty").await;
        c.expect_echo(&format!("c{i}"), &format!("hello from c{i}"))
            .await;
        clients.push(c);
    }
    let mut it = clients.into_iter();
    let (mut trapper, mut looper, mut hog) =
        (it.next().unwrap(), it.next().unwrap(), it.next().unwrap());
    let mut bystanders: Vec<WsClient> = it.collect();

    // A panic (wasm `unreachable`).
    assert_fault_closes(&mut trapper, "trapper", "trap", TIMEOUT).await;
    for (i, c) in bystanders.iter_mut().enumerate() {
        c.expect_echo(&format!("bystander{i}"), "after trap").await;
    }

    // An endless loop: only the epoch deadline stops it.
    assert_fault_closes(&mut looper, "looper", "loop", Duration::from_secs(20)).await;
    for (i, c) in bystanders.iter_mut().enumerate() {
        c.expect_echo(&format!("bystander{i}"), "after loop").await;
    }

    // Allocation until the memory limit.
    assert_fault_closes(&mut hog, "hog", "oom", Duration::from_secs(20)).await;
    for (i, c) in bystanders.iter_mut().enumerate() {
        c.expect_echo(&format!("bystander{i}"), "after oom").await;
        c.send_binary(&[1, 2, 3, 0, 255]).await;
        assert_eq!(
            c.recv().await,
            WsEvent::Binary(vec![1, 2, 3, 0, 255]),
            "bystander{i}: binary echo"
        );
    }

    // New connections are served by fresh instances.
    let mut fresh = gw.ws("/faulty").await;
    fresh.expect_echo("fresh", "hello after faults").await;

    assert!(gw.is_running(), "the gateway process died");

    let health = gw.health().await;
    assert_eq!(health["status"], json!("ok"), "{health}");
    let faulty = &health["plugins"]["faulty"];
    assert!(
        faulty["traps"].as_u64().is_some_and(|t| t >= 1),
        "/health must count the traps: {health}"
    );
    assert_eq!(faulty["state"], json!("running"), "{health}");

    let m = gw.metrics().await;
    assert!(m.value("gateway_plugin_traps_total") >= 1.0, "{}", m.raw);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_traps_than_instances_keep_the_pool_alive() {
    // Every instance of a pool of two is discarded several times over.
    let mut gw = Gateway::start(faulty_config(2));
    let mut survivor = gw.ws("/faulty").await;
    survivor.expect_echo("survivor", "first").await;

    for round in 0..6 {
        let mut victim = gw.ws("/faulty").await;
        victim
            .expect_echo(&format!("victim{round}"), "warm up")
            .await;
        let command = if round % 2 == 0 { "trap" } else { "loop" };
        assert_fault_closes(
            &mut victim,
            &format!("victim{round}"),
            command,
            Duration::from_secs(20),
        )
        .await;
        survivor
            .expect_echo("survivor", &format!("after round {round}"))
            .await;
    }

    // Several connections trapping at once.
    let mut victims = Vec::new();
    for _ in 0..3 {
        victims.push(gw.ws("/faulty").await);
    }
    for v in &victims {
        v.send_text("trap").await;
    }
    for (i, v) in victims.iter_mut().enumerate() {
        let (code, _) = v.expect_end_within(TIMEOUT).await;
        assert_eq!(code, Some(1011), "concurrent victim {i}: {:?}", v.ended);
    }
    survivor
        .expect_echo("survivor", "after concurrent traps")
        .await;
    let mut fresh = gw.ws("/faulty").await;
    fresh.expect_echo("fresh", "still serving").await;

    assert!(gw.is_running(), "the gateway process died");
    let health = gw.health().await;
    assert!(
        health["plugins"]["faulty"]["traps"]
            .as_u64()
            .is_some_and(|t| t >= 6),
        "six traps (plus three deadlines) happened: {health}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_cannot_touch_another_plugins_connections() {
    let gw = Gateway::start(format!(
        "{}\n[plugins.echo]\nwasm = @ECHO_WASM@\n\n[[routes]]\npath = \"/echo\"\nkind = \"websocket\"\nplugin = \"echo\"\n",
        faulty_config(2)
    ));
    let mut victim = gw.ws("/echo").await;
    assert_eq!(
        victim.recv_text().await,
        "hello",
        "the echo plugin's greeting"
    );
    let mut attacker = gw.ws("/faulty").await;
    attacker.send_text("whoami").await;
    let me: u64 = attacker.recv_text().await.parse().unwrap();
    // The echo connection was accepted just before: its id is one less.
    attacker.send_text(&format!("poke {}", me - 1)).await;
    assert_eq!(
        attacker.recv_text().await,
        "info=refused attach=refused subscribe=refused send=refused close=refused"
    );
    // Its own connection is fine (close last: it ends the connection).
    let mut other = gw.ws("/faulty").await;
    other.send_text(&format!("poke {me}")).await;
    assert_eq!(
        other.recv_text().await,
        "info=ok attach=ok subscribe=ok send=ok close=ok"
    );
    // The victim saw nothing and still works.
    victim.send_text("still here").await;
    assert_eq!(victim.recv_text().await, "still here");
}

/// Streams and storage are namespaced per plugin: stream keys outside its `stream_prefixes`
/// (default `<name>:`) are refused, and its storage names live under `<name>/`, listed back
/// without the prefix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_stays_in_its_stream_and_storage_namespace() {
    let gw = Gateway::start(faulty_config(1));
    let mut c = gw.ws("/faulty").await;
    c.send_text("append other:k 1 10 60000").await;
    let refused = c.recv_text().await;
    assert!(
        refused.starts_with("err 0 ")
            && refused.contains("Invalid")
            && refused.contains("namespace"),
        "{refused}"
    );
    c.send_text("count y:room:a:index").await;
    let refused = c.recv_text().await;
    assert!(
        refused.starts_with("err ") && refused.contains("namespace"),
        "{refused}"
    );
    c.send_text("append faulty:k 1 10 60000").await;
    assert!(c.recv_text().await.starts_with("ok "));
    c.send_text("put notes/a.txt hello").await;
    assert_eq!(c.recv_text().await, "ok");
    c.send_text("ls notes").await;
    assert_eq!(c.recv_text().await, "notes/a.txt");
    let stored = gw.dir().join("data/storage/faulty/notes/a.txt");
    assert_eq!(
        std::fs::read_to_string(&stored).unwrap_or_default(),
        "hello",
        "{}",
        stored.display()
    );
}
