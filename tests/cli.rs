//! The `gateway` command line: every command's `--help` and `--version`, unknown and malformed
//! flags (exit 2, named in the message), `--flag=value`, `token` following the config's auth
//! profiles, `check` loading the plugins and `init` writing a config that `check` accepts.

mod support;

use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use support::*;

/// Every subcommand of the binary.
const COMMANDS: [&str; 8] = [
    "serve",
    "dev",
    "worker",
    "token",
    "check",
    "init",
    "new-plugin",
    "client",
];

fn gateway(args: &[&str], cwd: &Path) -> Output {
    Command::new(gateway_bin())
        .args(args)
        .current_dir(cwd)
        .env_remove("GATEWAY_CONFIG")
        .env_remove("GATEWAY_LISTEN")
        .env_remove("GATEWAY_JWT_SECRET")
        .env_remove("GATEWAY_LOG_FORMAT")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run gateway {args:?}: {e}"))
}

fn text(out: &[u8]) -> String {
    String::from_utf8_lossy(out).into_owned()
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("gateway-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

fn payload(token: &str) -> Value {
    use base64::Engine;
    let part = token.trim().split('.').nth(1).expect("a JWT has a payload");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .expect("base64url payload");
    serde_json::from_slice(&bytes).expect("JSON payload")
}

#[test]
fn every_command_has_its_own_help_and_the_version() {
    let cwd = scratch("help");
    for cmd in COMMANDS {
        let out = gateway(&[cmd, "--help"], &cwd);
        let stdout = text(&out.stdout);
        assert!(out.status.success(), "{cmd} --help: {out:?}");
        assert!(
            stdout.contains(&format!("Usage: gateway {cmd}")),
            "{cmd} --help must print that command's usage:\n{stdout}"
        );
        let out = gateway(&[cmd, "-h"], &cwd);
        assert!(out.status.success(), "{cmd} -h: {out:?}");
    }
    let out = gateway(&["--help"], &cwd);
    let stdout = text(&out.stdout);
    assert!(out.status.success());
    for cmd in COMMANDS {
        assert!(
            stdout.contains(cmd),
            "top-level help lists {cmd}:\n{stdout}"
        );
    }
    // `gateway --version` is `gateway 0.1.0`; a command's is `gateway-serve 0.1.0`.
    let want = format!(" {}", env!("CARGO_PKG_VERSION"));
    for args in [&["--version"][..], &["-V"], &["serve", "--version"]] {
        let out = gateway(args, &cwd);
        assert!(out.status.success(), "{args:?}: {out:?}");
        assert!(
            text(&out.stdout).starts_with("gateway") && text(&out.stdout).contains(&want),
            "{args:?} prints '{want}': {}",
            text(&out.stdout)
        );
    }
    // The env bindings are shown in the help.
    let help = text(&gateway(&["serve", "--help"], &cwd).stdout);
    for var in [
        "GATEWAY_CONFIG",
        "GATEWAY_LISTEN",
        "GATEWAY_ADMIN_KEY",
        "GATEWAY_JWT_SECRET",
        "GATEWAY_LOG_FORMAT",
        "GATEWAY_ABLY_KEYS",
    ] {
        assert!(help.contains(var), "serve --help names {var}:\n{help}");
    }
    let _ = std::fs::remove_dir_all(&cwd);
}

#[test]
fn unknown_and_malformed_flags_exit_2_naming_them() {
    let cwd = scratch("flags");
    for cmd in COMMANDS {
        let out = gateway(&[cmd, "--bogus"], &cwd);
        assert_eq!(out.status.code(), Some(2), "{cmd} --bogus: {out:?}");
        let stderr = text(&out.stderr);
        assert!(
            stderr.contains("--bogus"),
            "{cmd}: the message names the flag:\n{stderr}"
        );
    }
    let cases: [&[&str]; 6] = [
        &["serve", "--conifg", "x.toml"],
        &["serve", "--listen", "not-an-address"],
        &["token", "--sub", "--ttl", "1h"],
        &["token", "--sub", "a", "--ttl", "soon"],
        &["token", "--sub", "a", "--claim", "novalue"],
        &["nonsense"],
    ];
    for args in cases {
        let out = gateway(args, &cwd);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
        assert!(
            text(&out.stderr).starts_with("error:"),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
    assert!(text(&gateway(&["serve", "--conifg", "x"], &cwd).stderr).contains("--conifg"));
    assert!(text(&gateway(&["nonsense"], &cwd).stderr).contains("nonsense"));
    // No command at all: the usage, on stderr, exit 2.
    let out = gateway(&[], &cwd);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(text(&out.stderr).contains("Usage: gateway"));
    let _ = std::fs::remove_dir_all(&cwd);
}

#[test]
fn token_follows_the_profile_of_the_config() {
    let cwd = scratch("token");
    std::fs::write(
        cwd.join("plugins.toml"),
        r#"
[auth.default]
algorithms = ["HS256"]
secret_env = "CLI_TEST_SECRET"
audience = ["gateway"]

[auth.ms]
algorithms = ["HS512"]
secret = "literal-secret-for-tests"
exp_unit = "milliseconds"
audience = ["yjs", "other"]
issuer = "me"

[auth.rsa]
algorithms = ["RS256"]
public_key_env = "CLI_TEST_PEM"
"#,
    )
    .unwrap();
    let mint = |args: &[&str], secret: Option<&str>| {
        let mut cmd = Command::new(gateway_bin());
        cmd.arg("token").args(args).current_dir(&cwd);
        cmd.env_remove("GATEWAY_CONFIG")
            .env_remove("CLI_TEST_SECRET");
        if let Some(s) = secret {
            cmd.env("CLI_TEST_SECRET", s);
        }
        cmd.output().expect("run gateway token")
    };
    // The default profile: its secret variable, seconds, its audience; `--x=y` and humantime.
    let out = mint(
        &["--sub=ann", "--ttl=90m", "--claim", "admin=true"],
        Some("from-env"),
    );
    assert!(out.status.success(), "{out:?}");
    let token = text(&out.stdout);
    let p = payload(&token);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert_eq!(p["sub"], json!("ann"));
    assert_eq!(p["aud"], json!("gateway"));
    assert_eq!(p["admin"], json!(true));
    let exp = p["exp"].as_u64().unwrap();
    assert!(exp.abs_diff(now + 5400) < 60, "90m from now: {p}");
    let key = jsonwebtoken::DecodingKey::from_secret(b"from-env");
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    v.set_audience(&["gateway"]);
    jsonwebtoken::decode::<Value>(token.trim(), &key, &v).expect("signed with the env secret");

    // Without its secret the command says which variable to set.
    let out = mint(&["--sub", "ann"], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("CLI_TEST_SECRET"), "{out:?}");

    // Another profile: its algorithm, literal secret, milliseconds, first audience, issuer;
    // `--aud` overrides the audience.
    let out = mint(&["--sub", "bo", "--profile", "ms", "--aud", "other"], None);
    assert!(out.status.success(), "{out:?}");
    let token = text(&out.stdout);
    let p = payload(&token);
    assert_eq!(p["aud"], json!("other"));
    assert_eq!(p["iss"], json!("me"));
    let exp = p["exp"].as_u64().unwrap();
    assert!(exp > now * 1000, "milliseconds: {p}");
    let header: Value = {
        use base64::Engine;
        let h = token.split('.').next().unwrap();
        serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(h)
                .unwrap(),
        )
        .unwrap()
    };
    assert_eq!(header["alg"], json!("HS512"));

    // Profiles it cannot mint for, and ones that do not exist, are named.
    let out = mint(&["--sub", "x", "--profile", "rsa"], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("RS256"), "{out:?}");
    let out = mint(&["--sub", "x", "--profile", "nope"], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("no auth profile 'nope'"),
        "{out:?}"
    );
    let _ = std::fs::remove_dir_all(&cwd);
}

#[test]
fn check_loads_the_plugins_and_init_writes_a_config_it_accepts() {
    let cwd = scratch("check");
    let dist = repo_root().join("dist").join("plugins");
    let out = gateway(
        &[
            "init",
            "--plugins-dir",
            dist.to_str().unwrap(),
            "starter.toml",
        ],
        &cwd,
    );
    assert!(out.status.success(), "{out:?}");
    let out = gateway(&["check", "starter.toml"], &cwd);
    assert!(
        out.status.success(),
        "the starter config checks: {}",
        text(&out.stderr)
    );
    assert!(text(&out.stdout).contains("plugin chat:"), "{out:?}");
    // init does not overwrite without --force.
    let out = gateway(&["init", "starter.toml"], &cwd);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("--force"), "{out:?}");
    let forced = [
        "init",
        "--force",
        "--plugins-dir",
        dist.to_str().unwrap(),
        "starter.toml",
    ];
    assert!(gateway(&forced, &cwd).status.success());

    // A missing .wasm and a file that is not a component are both refused, by name.
    let config = std::fs::read_to_string(cwd.join("starter.toml")).unwrap();
    std::fs::write(cwd.join("junk.wasm"), b"\0asm not really").unwrap();
    let broken = config
        .replace(
            &format!("{}/chat.wasm", dist.display()),
            &cwd.join("missing.wasm").display().to_string(),
        )
        .replace(
            &format!("{}/yjs_sync.wasm", dist.display()),
            &cwd.join("junk.wasm").display().to_string(),
        );
    std::fs::write(cwd.join("broken.toml"), broken).unwrap();
    let out = gateway(&["check", "--config=broken.toml"], &cwd);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("plugin chat") && stderr.contains("missing.wasm"),
        "{stderr}"
    );
    assert!(
        stderr.contains("plugin yjs") && stderr.contains("junk.wasm"),
        "{stderr}"
    );
    // --no-wasm checks only the file.
    assert!(
        gateway(&["check", "--no-wasm", "broken.toml"], &cwd)
            .status
            .success()
    );
    let _ = std::fs::remove_dir_all(&cwd);
}
