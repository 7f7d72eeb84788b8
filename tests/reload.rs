//! Hot reload: a replaced plugin wasm or a rewritten config file takes effect without dropping
//! connections; broken files are refused and the previous version keeps serving; routes added
//! at runtime answer and removed routes close their connections with 1012.
//!
//! Every gateway here serves its own copy of the chat wasm (`<gateway dir>/chat.wasm`), which the
//! tests replace atomically (write `chat.wasm.tmp`, rename), except where garbage is the point.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::*;
use tokio::sync::{mpsc, oneshot};

/// The issue's bound from the file change to the new behaviour being observable.
const RELOAD_BOUND: Duration = Duration::from_secs(2);

/// A chat config whose wasm is the gateway's own copy.
fn local_chat_config() -> String {
    chat_config(None).replace("@CHAT_WASM@", "\"@DIR@/chat.wasm\"")
}

/// The echo plugin, served on `/echo` without auth.
const ECHO_PLUGIN_AND_ROUTE: &str = r#"
[plugins.echo]
wasm = @ECHO_WASM@
max_instances = 2
memory_limit_mb = 16

[[routes]]
path = "/echo"
kind = "websocket"
plugin = "echo"
origins = ["*"]
"#;

fn chat_bytes() -> Vec<u8> {
    std::fs::read(plugin_wasm("chat")).expect("read dist/plugins/chat.wasm")
}

fn variant_bytes() -> Vec<u8> {
    let path = plugin_wasm("chat-variant");
    let bytes = std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run scripts/build-plugins, which builds the reload-test variant)",
            path.display()
        )
    });
    assert_ne!(
        bytes,
        chat_bytes(),
        "chat-variant.wasm must differ from chat.wasm"
    );
    bytes
}

fn start_local_chat(config: &str) -> Gateway {
    GatewayBuilder::new(config)
        .file("chat.wasm", plugin_wasm("chat"))
        .start()
}

/// Which build answered a ping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Build {
    Normal,
    Variant,
}

/// Classifies the `data` of a pong answering a ping whose data was `probe`.
fn pong_build(pong_data: &Value, probe: &Value) -> Build {
    if pong_data == probe {
        Build::Normal
    } else if *pong_data == json!({"variant": true, "data": probe}) {
        Build::Variant
    } else {
        panic!("pong data {pong_data} answers neither build for the probe {probe}")
    }
}

/// Pings on `client` (skipping presence and broadcast traffic) and says which build answered.
async fn ping_build(client: &mut WsClient, who: &str, probe: Value) -> Build {
    client
        .send_json(&json!({"message_type": "ping", "data": probe}))
        .await;
    let (pong, skipped) = client.recv_until_type("pong").await;
    for m in &skipped {
        assert!(
            matches!(msg_type(m), "user_joined" | "user_left" | "text"),
            "{who}: unexpected message before the pong: {m}"
        );
    }
    pong_build(&pong["data"], &probe)
}

/// Opens a chat connection for `user` and reads its welcome.
async fn chat_client(gw: &Gateway, user: &str) -> WsClient {
    let mut c = gw.chat_user(user).await;
    let welcome = c.recv_type("system_message").await;
    assert_eq!(welcome["data"]["user_id"], json!(user), "{welcome}");
    c
}

fn plugin_generation(h: &Value, plugin: &str) -> Option<u64> {
    h["plugins"][plugin]["generation"].as_u64()
}

fn config_generation(h: &Value) -> Option<u64> {
    h["config"]["generation"].as_u64()
}

// ---------------------------------------------------------------------------------------------
// 1. Reload under load
// ---------------------------------------------------------------------------------------------

const LOAD_CLIENTS: usize = 50;
/// Each client broadcasts one numbered message this often.
const SEND_EVERY: Duration = Duration::from_millis(100);
/// Bound on the messages of one client.
const MAX_PER_CLIENT: u64 = 300;
/// Bound on one client's whole run.
const RUN_DEADLINE: Duration = Duration::from_secs(90);

struct LoadShared {
    /// Set by the test: senders stop at their next tick.
    stop: AtomicBool,
    /// Messages each client has sent (final once `stopped[i]`).
    sent: Vec<AtomicU64>,
    stopped: Vec<AtomicBool>,
    /// Set by the test once every sender has stopped: receivers finish when complete.
    all_stopped: AtomicBool,
}

enum LoadCmd {
    Ping(Value, oneshot::Sender<Value>),
}

struct LoadOutcome {
    idx: usize,
    sent: u64,
    received: u64,
    errors: Vec<String>,
    /// Kept open until the test has looked at `/health`.
    client: WsClient,
}

fn load_user(i: usize) -> String {
    format!("u{i:02}")
}

/// One load client: broadcasts `{"load": {"from", "seq"}}` every [`SEND_EVERY`] until told to
/// stop, answers ping commands, and checks that every sender's sequence arrives exactly once
/// and in order. Returns when it has received everything every client sent.
async fn load_client(
    idx: usize,
    mut client: WsClient,
    shared: Arc<LoadShared>,
    mut cmds: mpsc::UnboundedReceiver<LoadCmd>,
) -> LoadOutcome {
    let sender = client.sender();
    let mut next = vec![0u64; LOAD_CLIENTS];
    let mut errors = Vec::new();
    let mut sent = 0u64;
    let mut received = 0u64;
    let mut pending_pong: Option<oneshot::Sender<Value>> = None;
    let stagger = SEND_EVERY * idx as u32 / LOAD_CLIENTS as u32;
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + stagger, SEND_EVERY);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut sending = true;
    let deadline = Instant::now() + RUN_DEADLINE;
    loop {
        if !sending
            && shared.all_stopped.load(Ordering::SeqCst)
            && (0..LOAD_CLIENTS).all(|j| next[j] == shared.sent[j].load(Ordering::SeqCst))
        {
            break;
        }
        if Instant::now() > deadline {
            let missing: Vec<String> = (0..LOAD_CLIENTS)
                .filter_map(|j| {
                    let want = shared.sent[j].load(Ordering::SeqCst);
                    (next[j] != want).then(|| format!("{}: {}/{want}", load_user(j), next[j]))
                })
                .collect();
            errors.push(format!(
                "not complete after {RUN_DEADLINE:?}: received/sent per sender {missing:?}"
            ));
            break;
        }
        tokio::select! {
            _ = ticker.tick(), if sending => {
                if shared.stop.load(Ordering::SeqCst) || sent == MAX_PER_CLIENT {
                    sending = false;
                    shared.stopped[idx].store(true, Ordering::SeqCst);
                    continue;
                }
                let msg = json!({"message_type": "text", "data": {"load": {"from": idx, "seq": sent}}});
                if let Err(e) = sender.send_text(&msg.to_string()).await
                {
                    errors.push(format!("send of seq {sent} failed: {e}"));
                    shared.stopped[idx].store(true, Ordering::SeqCst);
                    break;
                }
                sent += 1;
                shared.sent[idx].store(sent, Ordering::SeqCst);
            }
            Some(cmd) = cmds.recv() => match cmd {
                LoadCmd::Ping(probe, reply) => {
                    let msg = json!({"message_type": "ping", "data": probe});
                    if let Err(e) = sender.send_text(&msg.to_string()).await
                    {
                        errors.push(format!("send of a ping failed: {e}"));
                        break;
                    }
                    pending_pong = Some(reply);
                }
            },
            ev = client.recv_within(Duration::from_millis(200)) => match ev {
                None => {}
                Some(WsEvent::Text(t)) => {
                    let Ok(v) = serde_json::from_str::<Value>(&t) else {
                        errors.push(format!("non-JSON frame: {t}"));
                        continue;
                    };
                    match msg_type(&v) {
                        "text" => {
                            let load = &v["data"]["load"];
                            let (Some(from), Some(seq)) = (load["from"].as_u64(), load["seq"].as_u64()) else {
                                errors.push(format!("unexpected text message: {v}"));
                                continue;
                            };
                            let from = from as usize;
                            if from >= LOAD_CLIENTS {
                                errors.push(format!("sender out of range: {v}"));
                                continue;
                            }
                            if v["from_user_id"] != json!(load_user(from)) {
                                errors.push(format!("from_user_id does not match the sender: {v}"));
                            }
                            received += 1;
                            let want = next[from];
                            if seq == want {
                                next[from] = seq + 1;
                            } else if seq > want {
                                errors.push(format!(
                                    "from {}: seq {want}..{} lost (got {seq})",
                                    load_user(from),
                                    seq - 1
                                ));
                                next[from] = seq + 1;
                            } else {
                                errors.push(format!(
                                    "from {}: seq {seq} duplicated or reordered (expected {want})",
                                    load_user(from)
                                ));
                            }
                        }
                        "pong" => match pending_pong.take() {
                            Some(reply) => {
                                let _ = reply.send(v["data"].clone());
                            }
                            None => errors.push(format!("unrequested pong: {v}")),
                        },
                        // Presence from the connection phase.
                        "user_joined" | "system_message" => {}
                        _ => errors.push(format!("unexpected message: {v}")),
                    }
                }
                Some(other) => {
                    errors.push(format!("connection ended during the run: {other:?}"));
                    shared.stopped[idx].store(true, Ordering::SeqCst);
                    break;
                }
            },
        }
    }
    LoadOutcome {
        idx,
        sent,
        received,
        errors,
        client,
    }
}

/// Asks the pinger for one ping and waits (bounded) for its pong data.
async fn load_ping(cmds: &mpsc::UnboundedSender<LoadCmd>, probe: Value) -> Value {
    let (tx, rx) = oneshot::channel();
    cmds.send(LoadCmd::Ping(probe.clone(), tx))
        .expect("the pinger task is running");
    tokio::time::timeout(TIMEOUT, rx)
        .await
        .unwrap_or_else(|_| panic!("no pong for {probe} within {TIMEOUT:?}"))
        .unwrap_or_else(|_| panic!("the pinger ended before the pong for {probe}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_under_load() {
    let normal = chat_bytes();
    let variant = variant_bytes();
    let gw = start_local_chat(&local_chat_config());
    let v0 = plugin_version(&gw.health().await, "chat");
    let mut versions = Vec::new();

    let mut clients = Vec::new();
    for i in 0..LOAD_CLIENTS {
        clients.push(chat_client(&gw, &load_user(i)).await);
    }
    let shared = Arc::new(LoadShared {
        stop: AtomicBool::new(false),
        sent: (0..LOAD_CLIENTS).map(|_| AtomicU64::new(0)).collect(),
        stopped: (0..LOAD_CLIENTS).map(|_| AtomicBool::new(false)).collect(),
        all_stopped: AtomicBool::new(false),
    });
    let mut tasks = Vec::new();
    let mut pinger = None;
    let mut idle_senders = Vec::new();
    for (i, c) in clients.into_iter().enumerate() {
        let (tx, rx) = mpsc::unbounded_channel();
        if i == 0 {
            pinger = Some(tx);
        } else {
            idle_senders.push(tx);
        }
        tasks.push(tokio::spawn(load_client(i, c, shared.clone(), rx)));
    }
    let pinger = pinger.expect("client 0 pings");

    // The load is running before the first swap.
    gw.poll_until("the load to start", TIMEOUT, || async {
        (shared.sent.iter().all(|s| s.load(Ordering::SeqCst) >= 2)).then_some(())
    })
    .await;

    let mut probe_n = 0u64;
    let steps = [
        (Build::Variant, &variant),
        (Build::Normal, &normal),
        (Build::Variant, &variant),
    ];
    let mut latencies = Vec::new();
    for (step, (want, bytes)) in steps.into_iter().enumerate() {
        let renamed = gw.replace_file("chat.wasm", bytes);
        let seen = loop {
            probe_n += 1;
            let probe = json!({"probe": probe_n, "step": step});
            let data = load_ping(&pinger, probe.clone()).await;
            if pong_build(&data, &probe) == want {
                break renamed.elapsed();
            }
            assert!(
                renamed.elapsed() < TIMEOUT,
                "step {step}: still not the {want:?} build {TIMEOUT:?} after the rename\nlog:\n{}",
                gw.logs()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert!(
            seen <= RELOAD_BOUND,
            "step {step}: the {want:?} pong came {seen:?} after the rename (bound {RELOAD_BOUND:?})\nlog:\n{}",
            gw.logs()
        );
        latencies.push(seen);
        let h = gw
            .wait_health(&format!("chat generation {}", step + 2), TIMEOUT, |h| {
                plugin_generation(h, "chat") == Some(step as u64 + 2)
            })
            .await;
        assert_eq!(
            h["plugins"]["chat"]["last_error"],
            Value::Null,
            "step {step}: {h}"
        );
        versions.push(plugin_version(&h, "chat"));
        // Let the load run on the new version for a while.
        let before: u64 = shared.sent.iter().map(|s| s.load(Ordering::SeqCst)).sum();
        gw.poll_until("more load on the new version", TIMEOUT, || async {
            let now: u64 = shared.sent.iter().map(|s| s.load(Ordering::SeqCst)).sum();
            (now >= before + 5 * LOAD_CLIENTS as u64).then_some(())
        })
        .await;
    }

    shared.stop.store(true, Ordering::SeqCst);
    gw.poll_until("every sender to stop", TIMEOUT, || async {
        shared
            .stopped
            .iter()
            .all(|s| s.load(Ordering::SeqCst))
            .then_some(())
    })
    .await;
    shared.all_stopped.store(true, Ordering::SeqCst);

    let mut outcomes = Vec::new();
    for t in tasks {
        let outcome = tokio::time::timeout(RUN_DEADLINE + TIMEOUT, t)
            .await
            .expect("load client finished")
            .expect("load client did not panic");
        outcomes.push(outcome);
    }
    drop(idle_senders);
    let total_sent: u64 = outcomes.iter().map(|o| o.sent).sum();
    let failures: Vec<String> = outcomes
        .iter()
        .filter(|o| !o.errors.is_empty())
        .map(|o| {
            format!(
                "{}: {} error(s), first {:?}",
                load_user(o.idx),
                o.errors.len(),
                &o.errors[..o.errors.len().min(3)]
            )
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {LOAD_CLIENTS} clients saw drops, losses or duplicates:\n{}\nlog:\n{}",
        failures.len(),
        failures.join("\n"),
        gw.logs()
    );
    for o in &outcomes {
        assert!(
            o.sent >= 4,
            "client {} sent only {} messages: the load did not run",
            o.idx,
            o.sent
        );
        assert_eq!(
            o.received, total_sent,
            "client {} must receive every broadcast exactly once",
            o.idx
        );
    }

    let h = gw.health().await;
    let chat = &h["plugins"]["chat"];
    assert_eq!(chat["generation"], json!(4), "{h}");
    assert_eq!(chat["reloads"], json!(3), "{h}");
    assert_eq!(chat["state"], json!("running"), "{h}");
    assert_eq!(chat["last_error"], Value::Null, "{h}");
    assert_ne!(
        versions[0], v0,
        "the variant has another hash: {versions:?}"
    );
    assert_eq!(
        versions,
        vec![versions[0].clone(), v0.clone(), versions[0].clone()],
        "/health versions after variant, normal, variant (initial {v0})"
    );
    assert_eq!(plugin_version(&h, "chat"), versions[0], "{h}");
    assert_eq!(config_generation(&h), Some(1), "no config change: {h}");
    assert_eq!(
        h["connections"],
        json!(LOAD_CLIENTS),
        "every load connection is still open: {h}"
    );
    for o in &outcomes {
        assert!(
            o.client.ended.is_none(),
            "{} ended: {:?}",
            load_user(o.idx),
            o.client.ended
        );
    }
    eprintln!(
        "reload_under_load: {total_sent} broadcasts to {LOAD_CLIENTS} clients, rename-to-new-pong latencies {latencies:?}"
    );
}

/// `plugins.<plugin>.version` of a health document: 12 lower-case hex digits.
fn plugin_version(h: &Value, plugin: &str) -> String {
    let v = h["plugins"][plugin]["version"]
        .as_str()
        .unwrap_or_else(|| panic!("plugins.{plugin}.version must be a string: {h}"));
    assert!(
        v.len() == 12
            && v.chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()),
        "plugins.{plugin}.version must be a 12-hex-digit hash prefix: {v:?}"
    );
    v.to_string()
}

// ---------------------------------------------------------------------------------------------
// 2. Garbage, then recovery
// ---------------------------------------------------------------------------------------------

/// `rendered` with a line that is not TOML appended; returns the text and that line's number.
fn broken_config(rendered: &str) -> (String, usize) {
    let mut text = rendered.trim_end().to_string();
    text.push_str("\n\nthis line is not toml\n");
    let line = text
        .lines()
        .position(|l| l == "this line is not toml")
        .expect("the broken line")
        + 1;
    (text, line)
}

/// `config.last_error` must be `<config path>:<line>:<col>: <message>`.
fn assert_config_error_location(h: &Value, config_path: &str, line: usize) {
    let err = h["config"]["last_error"]
        .as_str()
        .unwrap_or_else(|| panic!("config.last_error must be set: {h}"));
    let prefix = format!("{config_path}:{line}:");
    let rest = err
        .strip_prefix(&prefix)
        .unwrap_or_else(|| panic!("config.last_error must start with {prefix:?}: {err:?}"));
    let col: String = rest.chars().take_while(char::is_ascii_digit).collect();
    assert!(
        !col.is_empty() && rest[col.len()..].starts_with(": ") && rest.len() > col.len() + 2,
        "config.last_error must be `file:line:col: message`: {err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_then_recovery() {
    let variant = variant_bytes();
    let config = local_chat_config();
    let gw = start_local_chat(&config);
    let config_path = gw.config_path.display().to_string();

    let mut alice = chat_client(&gw, "alice").await;
    assert_eq!(
        ping_build(&mut alice, "alice", json!("p0")).await,
        Build::Normal
    );
    let h0 = gw.health().await;
    let v1 = plugin_version(&h0, "chat");
    assert_eq!(h0["config"]["path"], json!(config_path), "{h0}");
    assert_eq!(config_generation(&h0), Some(1), "{h0}");
    assert_eq!(h0["config"]["last_error"], Value::Null, "{h0}");
    assert_eq!(plugin_generation(&h0, "chat"), Some(1), "{h0}");

    // Garbage over the wasm, written in place (not atomically).
    std::fs::write(
        gw.dir().join("chat.wasm"),
        b"\0asm this is certainly not a component \xff\xfe garbage garbage",
    )
    .expect("write garbage wasm");
    let h = gw
        .wait_health("plugins.chat.last_error after garbage wasm", TIMEOUT, |h| {
            h["plugins"]["chat"]["last_error"].is_string()
        })
        .await;
    let err = h["plugins"]["chat"]["last_error"].as_str().unwrap_or("");
    assert!(
        err.starts_with("reload failed"),
        "plugins.chat.last_error: {err:?}"
    );
    assert_eq!(plugin_version(&h, "chat"), v1, "old version serves: {h}");
    assert_eq!(plugin_generation(&h, "chat"), Some(1), "{h}");
    assert_eq!(h["plugins"]["chat"]["state"], json!("running"), "{h}");
    assert_eq!(h["config"]["last_error"], Value::Null, "{h}");

    // Existing and new connections still work on the previous version.
    assert_eq!(
        ping_build(&mut alice, "alice", json!("p1")).await,
        Build::Normal
    );
    let mut bob = chat_client(&gw, "bob").await;
    assert_eq!(
        ping_build(&mut bob, "bob", json!("p2")).await,
        Build::Normal
    );

    // Invalid TOML over the config.
    let (bad, bad_line) = broken_config(&gw.render(&config));
    replace_file(&gw.config_path, bad.as_bytes());
    let h = gw
        .wait_health("config.last_error after invalid TOML", TIMEOUT, |h| {
            h["config"]["last_error"].is_string()
        })
        .await;
    assert_config_error_location(&h, &config_path, bad_line);
    assert_eq!(
        config_generation(&h),
        Some(1),
        "the broken config is not applied: {h}"
    );
    assert!(
        h["plugins"]["chat"]["last_error"]
            .as_str()
            .is_some_and(|e| e.starts_with("reload failed")),
        "the wasm is still garbage: {h}"
    );
    assert_eq!(
        ping_build(&mut alice, "alice", json!("p3")).await,
        Build::Normal
    );
    assert_eq!(
        ping_build(&mut bob, "bob", json!("p4")).await,
        Build::Normal
    );
    let mut carol = chat_client(&gw, "carol").await;
    assert_eq!(
        ping_build(&mut carol, "carol", json!("p5")).await,
        Build::Normal
    );

    // Recovery: a valid wasm (the variant), then a valid config.
    gw.replace_file("chat.wasm", &variant);
    let h = gw
        .wait_health("chat generation 2 after a valid wasm", TIMEOUT, |h| {
            plugin_generation(h, "chat") == Some(2)
        })
        .await;
    assert_eq!(h["plugins"]["chat"]["last_error"], Value::Null, "{h}");
    assert_ne!(plugin_version(&h, "chat"), v1, "{h}");
    assert_eq!(
        ping_build(&mut alice, "alice", json!("p6")).await,
        Build::Variant
    );

    gw.rewrite_config(&config);
    let h = gw
        .wait_health("config generation 2 after a valid config", TIMEOUT, |h| {
            config_generation(h) == Some(2)
        })
        .await;
    assert_eq!(h["config"]["last_error"], Value::Null, "{h}");
    assert_eq!(h["plugins"]["chat"]["last_error"], Value::Null, "{h}");
    assert_eq!(
        plugin_generation(&h, "chat"),
        Some(2),
        "same table, same wasm: no new version: {h}"
    );
    assert_eq!(h["status"], json!("ok"), "{h}");
    for (who, c) in [
        ("alice", &mut alice),
        ("bob", &mut bob),
        ("carol", &mut carol),
    ] {
        assert_eq!(
            ping_build(c, who, json!({"after": "recovery"})).await,
            Build::Variant,
            "{who}"
        );
        assert!(c.ended.is_none(), "{who} was disconnected: {:?}", c.ended);
    }
    let mut dave = chat_client(&gw, "dave").await;
    assert_eq!(
        ping_build(&mut dave, "dave", json!("p7")).await,
        Build::Variant
    );
}

/// A valid config refused only because its plugin's wasm is broken must be applied once the
/// wasm is fixed: both files are then good, so no error may remain on `/health`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_refused_for_a_broken_wasm_applies_once_the_wasm_is_fixed() {
    let variant = variant_bytes();
    let config = local_chat_config();
    let gw = start_local_chat(&config);
    let mut alice = chat_client(&gw, "alice").await;

    std::fs::write(gw.dir().join("chat.wasm"), b"not a wasm at all").expect("write garbage");
    gw.wait_health("plugins.chat.last_error", TIMEOUT, |h| {
        h["plugins"]["chat"]["last_error"].is_string()
    })
    .await;

    // A valid config that adds the echo route, while the chat wasm is still broken.
    let next = format!("{config}\n{ECHO_PLUGIN_AND_ROUTE}");
    gw.rewrite_config(&next);
    let h = gw
        .wait_health("config refused while the wasm is broken", TIMEOUT, |h| {
            h["config"]["last_error"].is_string()
        })
        .await;
    assert_eq!(config_generation(&h), Some(1), "{h}");
    assert!(
        h["plugins"].get("echo").is_none(),
        "a refused config adds nothing: {h}"
    );

    // Fix the wasm: both files are valid now.
    let fixed = gw.replace_file("chat.wasm", &variant);
    let h = gw
        .wait_health(
            "the pending config applied and every error cleared once the wasm is fixed",
            TIMEOUT,
            |h| {
                config_generation(h) == Some(2)
                    && h["config"]["last_error"].is_null()
                    && h["plugins"]["chat"]["last_error"].is_null()
                    && h["plugins"]["echo"]["state"] == json!("running")
            },
        )
        .await;
    assert_eq!(h["status"], json!("ok"), "{h}");
    eprintln!("applied {:?} after the wasm fix", fixed.elapsed());
    assert_eq!(
        ping_build(&mut alice, "alice", json!("fixed")).await,
        Build::Variant
    );
    let mut echo = gw.ws("/echo").await;
    assert_eq!(echo.recv_text().await, "hello");
}

/// A config naming a plugin whose wasm does not exist yet is refused; once the wasm appears
/// the config is valid and must be applied (the usual "add it to plugins.toml, then build" order).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_waiting_for_a_new_plugin_wasm_applies_once_it_appears() {
    let config = local_chat_config();
    let gw = start_local_chat(&config);
    let mut alice = chat_client(&gw, "alice").await;

    let next = format!(
        "{config}\n{}",
        ECHO_PLUGIN_AND_ROUTE.replace("@ECHO_WASM@", "\"@DIR@/echo.wasm\"")
    );
    gw.rewrite_config(&next);
    let h = gw
        .wait_health("config refused while echo.wasm is missing", TIMEOUT, |h| {
            h["config"]["last_error"].is_string()
        })
        .await;
    assert_eq!(config_generation(&h), Some(1), "{h}");
    assert!(h["plugins"].get("echo").is_none(), "{h}");
    assert_eq!(
        ping_build(&mut alice, "alice", json!("waiting")).await,
        Build::Normal
    );

    // The wasm appears next to the config.
    let echo = std::fs::read(plugin_wasm("echo")).expect("read dist/plugins/echo.wasm");
    gw.replace_file("echo.wasm", &echo);
    let h = gw
        .wait_health(
            "the pending config applied once echo.wasm exists",
            TIMEOUT,
            |h| {
                config_generation(h) == Some(2)
                    && h["config"]["last_error"].is_null()
                    && h["plugins"]["echo"]["state"] == json!("running")
            },
        )
        .await;
    assert_eq!(h["status"], json!("ok"), "{h}");
    let mut e = gw.ws("/echo").await;
    assert_eq!(e.recv_text().await, "hello");
    assert_eq!(
        ping_build(&mut alice, "alice", json!("applied")).await,
        Build::Normal
    );
}

// ---------------------------------------------------------------------------------------------
// 3. A route added at runtime
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_route_at_runtime() {
    let config = local_chat_config();
    let gw = start_local_chat(&config);
    let mut alice = chat_client(&gw, "alice").await;
    let mut bob = chat_client(&gw, "bob").await;
    alice.recv_type("user_joined").await;

    match gw.ws_with("/echo", WsOptions::default()).await {
        Err(WsConnectError::Rejected { status: 404, .. }) => {}
        Err(e) => panic!("/echo before the reload: expected 404, got {e}"),
        Ok(_) => panic!("/echo upgraded before the route exists"),
    }

    let changed = gw.rewrite_config(&format!("{config}\n{ECHO_PLUGIN_AND_ROUTE}"));
    let mut echo = gw
        .poll_until(
            "/echo to upgrade after the config change",
            TIMEOUT,
            || async { gw.ws_with("/echo", WsOptions::default()).await.ok() },
        )
        .await;
    eprintln!("/echo answered {:?} after the rename", changed.elapsed());
    assert_eq!(echo.recv_text().await, "hello", "echo greets on open");
    echo.send_text("runtime route").await;
    assert_eq!(echo.recv_text().await, "runtime route");
    echo.send_binary(&[0, 1, 2, 250]).await;
    assert_eq!(echo.recv().await, WsEvent::Binary(vec![0, 1, 2, 250]));

    // The chat connections were not disturbed.
    alice
        .send_json(&json!({"message_type": "text", "data": {"after": "reload"}}))
        .await;
    for (who, c) in [("alice", &mut alice), ("bob", &mut bob)] {
        let m = c.recv_type("text").await;
        assert_eq!(m["data"], json!({"after": "reload"}), "{who}: {m}");
        assert_eq!(ping_build(c, who, json!(who)).await, Build::Normal);
    }

    let h = gw.health().await;
    assert_eq!(config_generation(&h), Some(2), "{h}");
    assert_eq!(h["config"]["last_error"], Value::Null, "{h}");
    assert_eq!(plugin_generation(&h, "echo"), Some(1), "{h}");
    assert_eq!(h["plugins"]["echo"]["state"], json!("running"), "{h}");
    assert_eq!(
        plugin_generation(&h, "chat"),
        Some(1),
        "chat did not change: {h}"
    );
    assert_eq!(h["connections"], json!(3), "{h}");
}

// ---------------------------------------------------------------------------------------------
// 4. Removed routes close their connections with 1012
// ---------------------------------------------------------------------------------------------

const ECHO_PLUGIN: &str = r#"
[plugins.echo]
wasm = @ECHO_WASM@
max_instances = 2
memory_limit_mb = 16
"#;

fn echo_route(path: &str) -> String {
    format!(
        r#"
[[routes]]
path = "{path}"
kind = "websocket"
plugin = "echo"
origins = ["*"]
"#
    )
}

async fn assert_closed_1012(c: &mut WsClient, who: &str) {
    let (code, reason) = c.expect_close_reason().await;
    assert_eq!(code, 1012, "{who}: close code (reason {reason:?})");
    assert!(
        reason.contains("configuration"),
        "{who}: the close reason should mention the configuration change: {reason:?}"
    );
}

async fn assert_chat_alive(alice: &mut WsClient, bob: &mut WsClient, tag: &str) {
    bob.send_json(&json!({"message_type": "text", "data": {"tag": tag}}))
        .await;
    for (who, c) in [("alice", &mut *alice), ("bob", &mut *bob)] {
        let m = c.recv_type("text").await;
        assert_eq!(m["data"], json!({"tag": tag}), "{who}: {m}");
    }
    assert_eq!(ping_build(alice, "alice", json!(tag)).await, Build::Normal);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remove_route_closes_1012() {
    let chat = local_chat_config();
    let full = format!(
        "{chat}\n{ECHO_PLUGIN}\n{}\n{}",
        echo_route("/echo"),
        echo_route("/echo2")
    );
    let gw = start_local_chat(&full);
    let mut alice = chat_client(&gw, "alice").await;
    let mut bob = chat_client(&gw, "bob").await;
    alice.recv_type("user_joined").await;
    let mut e1 = gw.ws("/echo").await;
    let mut e2 = gw.ws("/echo").await;
    let mut f1 = gw.ws("/echo2").await;
    for (who, c) in [("e1", &mut e1), ("e2", &mut e2), ("f1", &mut f1)] {
        assert_eq!(c.recv_text().await, "hello", "{who}");
        c.expect_echo(who, "before").await;
    }

    // Remove the /echo route; the plugin and /echo2 stay.
    gw.rewrite_config(&format!("{chat}\n{ECHO_PLUGIN}\n{}", echo_route("/echo2")));
    assert_closed_1012(&mut e1, "e1").await;
    assert_closed_1012(&mut e2, "e2").await;
    f1.expect_echo("f1", "route kept").await;
    assert_chat_alive(&mut alice, &mut bob, "after /echo removal").await;
    match gw.ws_with("/echo", WsOptions::default()).await {
        Err(WsConnectError::Rejected { status: 404, .. }) => {}
        Err(e) => panic!("/echo after its removal: expected 404, got {e}"),
        Ok(_) => panic!("/echo still upgrades after its removal"),
    }
    let mut f2 = gw.ws("/echo2").await;
    assert_eq!(f2.recv_text().await, "hello");
    let h = gw.health().await;
    assert_eq!(config_generation(&h), Some(2), "{h}");

    // Remove the plugin with its last route.
    gw.rewrite_config(&chat);
    assert_closed_1012(&mut f1, "f1").await;
    assert_closed_1012(&mut f2, "f2").await;
    assert_chat_alive(&mut alice, &mut bob, "after echo plugin removal").await;
    let h = gw
        .wait_health(
            "the echo plugin gone and only the chat connections left",
            TIMEOUT,
            |h| h["plugins"].get("echo").is_none() && h["connections"] == json!(2),
        )
        .await;
    assert_eq!(config_generation(&h), Some(3), "{h}");
    for (who, c) in [("alice", &alice), ("bob", &bob)] {
        assert!(c.ended.is_none(), "{who} was disconnected: {:?}", c.ended);
    }
}
