//! The plugin dev loop: `gateway new-plugin demo` makes a crate and adds it to the config,
//! `gateway dev` builds it and serves it with no edits, and a saved change to its source is
//! rebuilt and hot-reloaded while a connection stays open. The plugin does what its template
//! says (greets, echoes, `/all` fans out, answers HTTP).
//!
//! The first build compiles wit-bindgen on a cold cache: it is bounded by [`BUILD_TIMEOUT`],
//! not by the usual event timeout. `CARGO_TARGET_DIR` is inherited, so builds share its cache.

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::*;

/// Upper bound for building the scaffolded plugin (cold dependency cache included).
const BUILD_TIMEOUT: Duration = Duration::from_secs(20 * 60);

/// Runs `cmd` with stdout and stderr captured in files under `dir`, bounded by `timeout`;
/// returns (success, stdout, stderr).
fn run_bounded(
    mut cmd: Command,
    dir: &Path,
    label: &str,
    timeout: Duration,
) -> (bool, String, String) {
    let out_path = dir.join(format!("{label}.stdout"));
    let err_path = dir.join(format!("{label}.stderr"));
    let out = std::fs::File::create(&out_path).expect("create stdout file");
    let err = std::fs::File::create(&err_path).expect("create stderr file");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {label}: {e}"));
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for child") {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let stdout = std::fs::read_to_string(&out_path).unwrap_or_default();
    let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
    match status {
        Some(s) => (s.success(), stdout, stderr),
        None => panic!("{label} did not finish within {timeout:?}\nstderr:\n{stderr}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_plugin_is_built_served_and_reloaded_by_dev() {
    let work = unique_temp_dir("scaffold");
    let config = work.join("gateway.toml");
    // A config with one plugin that has no source crate: `dev` says it cannot watch it.
    std::fs::write(
        &config,
        format!(
            "[plugins.echo]\nwasm = {:?}\n\n[[routes]]\npath = \"/echo\"\nkind = \"websocket\"\nplugin = \"echo\"\n",
            plugin_wasm("echo").display().to_string()
        ),
    )
    .unwrap();

    // Scaffold, registering it in the config.
    let mut cmd = Command::new(gateway_bin());
    cmd.current_dir(&work).args([
        "new-plugin",
        "demo",
        "--dir",
        "plugins",
        "--config",
        "gateway.toml",
    ]);
    let (ok, stdout, stderr) = run_bounded(cmd, &work, "new-plugin", TIMEOUT);
    assert!(
        ok,
        "gateway new-plugin failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    let crate_dir = work.join("plugins/demo");
    for f in ["Cargo.toml", "Cargo.lock", "src/lib.rs", "README.md"] {
        assert!(
            crate_dir.join(f).is_file(),
            "new-plugin must create plugins/demo/{f}"
        );
    }
    let manifest = std::fs::read_to_string(crate_dir.join("Cargo.toml")).unwrap();
    assert!(
        manifest.contains("[profile.plugin]") && manifest.contains("[workspace]"),
        "its own workspace with the plugin profile:\n{manifest}"
    );
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(
        text.contains("crate = \"plugins/demo\"") && text.contains("path = \"/plugins/demo\""),
        "the plugin and its routes are in the config:\n{text}"
    );
    // A second scaffold of the same name is refused before anything is written.
    let mut cmd = Command::new(gateway_bin());
    cmd.current_dir(&work).args([
        "new-plugin",
        "demo",
        "--dir",
        "elsewhere",
        "--config",
        "gateway.toml",
    ]);
    let (ok, _, stderr) = run_bounded(cmd, &work, "new-plugin-again", TIMEOUT);
    assert!(
        !ok && stderr.contains("already has [plugins.demo]"),
        "{stderr}"
    );
    assert!(!work.join("elsewhere").exists());

    // `gateway dev` on that config as it is: builds the crate, then serves it.
    let started = Instant::now();
    let gw = GatewayBuilder::new(text)
        .in_dir(&work)
        .dev()
        .startup_timeout(BUILD_TIMEOUT)
        .start();
    eprintln!(
        "DEV first build + start: {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let logs = gw.logs();
    assert!(
        logs.contains("plugin 'echo' has no source crate to watch"),
        "dev warns about the plugin it cannot watch:\n{logs}"
    );

    let mut a = gw.ws("/plugins/demo").await;
    assert_eq!(a.recv_text().await, "welcome to demo");
    a.send_text("echo me").await;
    assert_eq!(a.recv_text().await, "echo me");
    a.send_binary(&[7, 0, 255]).await;
    assert_eq!(a.recv().await, WsEvent::Binary(vec![7, 0, 255]));
    let mut b = gw.ws("/plugins/demo").await;
    assert_eq!(b.recv_text().await, "welcome to demo");
    a.send_text("/all hi").await;
    assert_eq!(a.recv_text().await, "hi", "the sender gets its /all too");
    assert_eq!(b.recv_text().await, "hi", "/all reaches the second client");
    let r = gw.get("/plugins/demo/info").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json(), serde_json::Value::from("demo: 2 connections"));

    // Save a change: dev rebuilds and the gateway reloads it; `a` stays connected.
    let lib = crate_dir.join("src/lib.rs");
    let source = std::fs::read_to_string(&lib).unwrap();
    let changed = source.replace("welcome to demo", "welcome to demo v2");
    assert_ne!(
        source, changed,
        "the template greets with 'welcome to demo'"
    );
    let saved = Instant::now();
    std::fs::write(&lib, changed).unwrap();
    let greeting = gw
        .poll_until("the rebuilt plugin to greet", BUILD_TIMEOUT, || async {
            let mut c = gw.ws("/plugins/demo").await;
            let g = c.recv_text().await;
            (g == "welcome to demo v2").then_some(g)
        })
        .await;
    eprintln!(
        "DEV save -> new version serving: {:.1} s",
        saved.elapsed().as_secs_f64()
    );
    assert_eq!(greeting, "welcome to demo v2");
    a.send_text("still here").await;
    assert_eq!(
        a.recv_text().await,
        "still here",
        "a connection opened before the reload keeps working"
    );
    let logs = gw.logs();
    assert!(logs.contains("rebuilt; reloading"), "{logs}");

    // A change that does not compile leaves the running version serving.
    std::fs::write(&lib, "this is not rust").unwrap();
    gw.poll_until("dev to report the failed build", BUILD_TIMEOUT, || async {
        gw.logs().contains("build failed").then_some(())
    })
    .await;
    let mut c = gw.ws("/plugins/demo").await;
    assert_eq!(c.recv_text().await, "welcome to demo v2");
    drop(gw);
}
