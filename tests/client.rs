//! `gateway client`, the terminal chat client, driven through a real pseudo-terminal: it runs
//! in a private tmux server, keys are typed with `send-keys` and the screen is read with
//! `capture-pane`, while a second user on a plain WebSocket checks what arrives. Skipped, with
//! the install command, where tmux is missing.

mod support;

use serde_json::json;
use std::process::Command;
use std::time::{Duration, Instant};
use support::*;

/// A tmux server of this test's own, killed on drop.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn cmd(&self, args: &[&str]) -> std::process::Output {
        Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("run tmux")
    }

    /// Types `text` literally, then Enter.
    fn type_line(&self, text: &str) {
        assert!(
            self.cmd(&["send-keys", "-t", "cli", "-l", text])
                .status
                .success()
        );
        assert!(
            self.cmd(&["send-keys", "-t", "cli", "Enter"])
                .status
                .success()
        );
    }

    /// The pane's text, history included.
    fn screen(&self) -> String {
        let out = self.cmd(&["capture-pane", "-p", "-J", "-t", "cli", "-S", "-1000"]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Waits (bounded) until the screen shows `want`.
    fn wait_for(&self, want: &str) {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let screen = self.screen();
            if screen.contains(want) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the terminal never showed {want:?} within {TIMEOUT:?}; screen:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd(&["kill-server"]);
    }
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_terminal_client_chats_through_a_pty() {
    if Command::new("tmux").arg("-V").output().is_err() {
        eprintln!("SKIP: tmux not found (Debian/Ubuntu: apt-get install -y tmux)");
        return;
    }
    let gw = Gateway::start(chat_config(None));
    let mut bob = gw.chat_user("bob").await;
    bob.recv_type("system_message").await;

    // ann's token is minted by the client itself from the config's profile and the secret.
    let url = format!("ws://{}/ws", gw.addr());
    let command = format!(
        "env GATEWAY_JWT_SECRET={} {} client {} --sub ann --name Ann --config {}; echo CLIENT-EXIT=$?; sleep 60",
        shell_quote(&gw.jwt_secret),
        shell_quote(&gateway_bin().display().to_string()),
        shell_quote(&url),
        shell_quote(&gw.config_path.display().to_string()),
    );
    let tmux = Tmux {
        socket: format!("gateway-client-test-{}", std::process::id()),
    };
    let started = tmux.cmd(&[
        "new-session",
        "-d",
        "-s",
        "cli",
        "-x",
        "200",
        "-y",
        "50",
        &command,
    ]);
    assert!(started.status.success(), "tmux new-session: {started:?}");

    tmux.wait_for("connected as ann (2 online: Ann, Bob)");
    let joined = bob.recv_type("user_joined").await;
    assert_eq!(joined["data"]["username"], json!("Ann"));

    // A typed line is a text to everyone.
    tmux.type_line("hello from the terminal");
    let m = bob.recv_type("text").await;
    assert_eq!(m["data"]["text"], json!("hello from the terminal"));
    assert_eq!(m["from_user_id"], json!("ann"));
    tmux.wait_for("<Ann> hello from the terminal");

    // Incoming texts are shown with the sender's name.
    bob.send_json(&json!({"message_type": "text", "data": {"text": "hi ann"}}))
        .await;
    tmux.wait_for("<Bob> hi ann");
    bob.recv_type("text").await;

    // Direct message, notification, ping, presence list, raw JSON.
    tmux.type_line("/dm bob psst");
    let dm = bob.recv_type("text").await;
    assert_eq!(dm["to_user_id"], json!("bob"));
    assert_eq!(dm["data"]["text"], json!("psst"));
    tmux.wait_for("(DM to bob) psst");
    tmux.type_line("/n heads up");
    let n = bob.recv_type("notification").await;
    assert_eq!(n["data"]["text"], json!("heads up"));
    tmux.type_line("/ping");
    tmux.wait_for("pong (");
    tmux.type_line("/who");
    tmux.wait_for("2 online: Ann (ann), Bob (bob)");
    tmux.type_line(r#"/raw {"message_type": "nope"}"#);
    tmux.wait_for("! error unknown_type");
    tmux.type_line("/bogus");
    tmux.wait_for("unknown command /bogus");

    // Presence changes are shown; /quit closes cleanly.
    bob.close(1000).await;
    tmux.wait_for("* Bob left");
    tmux.type_line("/quit");
    tmux.wait_for("CLIENT-EXIT=0");
    let screen = tmux.screen();
    assert!(screen.contains("bye"), "{screen}");
    eprintln!("CLIENT screen:\n{}", screen.trim_end());
}
