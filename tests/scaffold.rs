//! `gateway new-plugin`: the scaffolded crate builds for wasm32-wasip2 as it is, loads in a
//! gateway and does what its template says (greets, echoes, `/all` fans out).
//!
//! The build compiles wit-bindgen on a cold cache: it is bounded by [`BUILD_TIMEOUT`], not by
//! the usual event timeout. `CARGO_TARGET_DIR` is inherited, so the build shares its cache.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
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

/// The `.wasm` that cargo reports for the `demo` target in its JSON messages.
fn wasm_artifact(json_lines: &str, target_name: &str) -> Option<PathBuf> {
    json_lines
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|m| {
            m["reason"] == "compiler-artifact" && m["target"]["name"].as_str() == Some(target_name)
        })
        .flat_map(|m| {
            m["filenames"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
        })
        .filter_map(|f| f.as_str().map(PathBuf::from))
        .find(|f| f.extension().is_some_and(|e| e == "wasm"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_plugin_builds_and_answers() {
    let work = unique_temp_dir("scaffold");

    // Scaffold.
    let mut cmd = Command::new(gateway_bin());
    cmd.arg("new-plugin").arg("demo").arg("--dir").arg(&work);
    let (ok, stdout, stderr) = run_bounded(cmd, &work, "new-plugin", TIMEOUT);
    assert!(
        ok,
        "gateway new-plugin failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    let crate_dir = work.join("demo");
    for f in ["Cargo.toml", "src/lib.rs", "README.md"] {
        assert!(
            crate_dir.join(f).is_file(),
            "new-plugin must create demo/{f}"
        );
    }
    let manifest = std::fs::read_to_string(crate_dir.join("Cargo.toml")).expect("read Cargo.toml");
    let sdk = std::fs::canonicalize(repo_root().join("plugin-sdk")).expect("plugin-sdk dir");
    assert!(
        manifest.contains(&sdk.display().to_string()),
        "the crate must depend on the repo's plugin-sdk ({}) by absolute path:\n{manifest}",
        sdk.display()
    );
    assert!(
        manifest.contains("[workspace]"),
        "the crate is its own workspace:\n{manifest}"
    );

    // Build it as its README says (inheriting CARGO_TARGET_DIR, if set).
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args([
        "build",
        "--release",
        "--target",
        "wasm32-wasip2",
        "--message-format=json-render-diagnostics",
    ])
    .current_dir(&crate_dir);
    let (ok, stdout, stderr) = run_bounded(cmd, &work, "cargo-build", BUILD_TIMEOUT);
    assert!(
        ok,
        "building the scaffolded plugin failed\nstderr:\n{stderr}"
    );
    let wasm = wasm_artifact(&stdout, "demo").unwrap_or_else(|| {
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| crate_dir.join("target"));
        target.join("wasm32-wasip2/release/demo.wasm")
    });
    assert!(
        wasm.is_file(),
        "the build reported no wasm at {}\nstderr:\n{stderr}",
        wasm.display()
    );

    // Load a copy (the shared target dir may be rebuilt by others) and talk to it.
    let gw = GatewayBuilder::new(
        r#"
[plugins.demo]
wasm = "@DIR@/demo.wasm"
max_instances = 2
memory_limit_mb = 32

[[routes]]
path = "/demo"
kind = "websocket"
plugin = "demo"
origins = ["*"]

[[routes]]
path = "/demo-info"
kind = "http"
plugin = "demo"
"#,
    )
    .file("demo.wasm", &wasm)
    .start();

    let mut a = gw.ws("/demo").await;
    assert_eq!(a.recv_text().await, "welcome to demo");
    a.send_text("echo me").await;
    assert_eq!(a.recv_text().await, "echo me");
    a.send_binary(&[7, 0, 255]).await;
    assert_eq!(a.recv().await, WsEvent::Binary(vec![7, 0, 255]));

    let mut b = gw.ws("/demo").await;
    assert_eq!(b.recv_text().await, "welcome to demo");
    a.send_text("/all hi").await;
    assert_eq!(a.recv_text().await, "hi", "the sender gets its /all too");
    assert_eq!(b.recv_text().await, "hi", "/all reaches the second client");
    b.send_text("just b").await;
    assert_eq!(b.recv_text().await, "just b");

    let r = gw.get("/demo-info").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json(), Value::from("demo: 2 connections"));

    drop(gw);
    let _ = std::fs::remove_dir_all(&work);
}
