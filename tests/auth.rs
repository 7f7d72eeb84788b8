//! The token matrix, over real sockets: every accepted token upgrades (101) and gets the chat
//! `system_message`; every refused one gets HTTP 401 with a JSON `{"error": ...}` body before
//! any upgrade.

mod support;

use serde_json::{Value, json};
use support::*;

const MS_SECRET: &str = "milliseconds-profile-secret-0123456789";
const AUD_SECRET: &str = "audience-profile-secret-0123456789abcd";

/// Routes for every profile under test, all served by the chat plugin.
fn auth_config() -> String {
    let mut cfg = String::from(DEFAULT_AUTH);
    cfg.push_str(&format!(
        r#"
[auth.millis]
algorithms = ["HS256"]
secret = "{MS_SECRET}"
exp_unit = "milliseconds"
required_claims = ["sub", "exp"]
token_from = ["query:token", "header:authorization"]

[auth.aud]
algorithms = ["HS256"]
secret = "{AUD_SECRET}"
exp_unit = "seconds"
audience = ["gateway-tests"]
issuer = "https://issuer.test"
required_claims = ["sub", "exp", "aud", "iss"]
token_from = ["query:token", "header:authorization"]

[auth.proto]
algorithms = ["HS256"]
secret = "{MS_SECRET}"
exp_unit = "seconds"
required_claims = ["sub", "exp"]
token_from = ["subprotocol:yauth-"]

[auth.rsa]
algorithms = ["RS256"]
public_key_file = @RS_PUB@
exp_unit = "seconds"
required_claims = ["sub", "exp"]
token_from = ["query:token", "header:authorization"]

[auth.jwk]
algorithms = ["RS256"]
jwk_file = @RS_JWKS@
exp_unit = "seconds"
required_claims = ["sub", "exp"]
token_from = ["query:token"]

[auth.ec]
algorithms = ["ES256"]
public_key_file = @ES_PUB@
exp_unit = "seconds"
required_claims = ["sub", "exp"]
token_from = ["query:token", "header:authorization"]
"#
    ));
    cfg.push_str(CHAT_PLUGIN);
    for (path, profile) in [
        ("/ws", "default"),
        ("/ws-ms", "millis"),
        ("/ws-aud", "aud"),
        ("/ws-rs", "rsa"),
        ("/ws-es", "ec"),
        ("/ws-proto", "proto"),
        ("/ws-jwk", "jwk"),
    ] {
        cfg.push_str(&format!(
            "\n[[routes]]\npath = \"{path}\"\nkind = \"websocket\"\nplugin = \"chat\"\nauth = \"{profile}\"\norigins = [\"*\"]\n"
        ));
    }
    cfg.replace(
        "@RS_PUB@",
        &format!("\"{}\"", fixture("rs256_public.pem").display()),
    )
    .replace(
        "@RS_JWKS@",
        &format!("\"{}\"", fixture("rs256_jwks.json").display()),
    )
    .replace(
        "@ES_PUB@",
        &format!("\"{}\"", fixture("es256_public.pem").display()),
    )
}

/// Connects with `token` in the query string and expects 101 + the welcome `system_message`.
async fn assert_accepted(gw: &Gateway, route: &str, token: &str, sub: &str) {
    let mut client = gw
        .ws_with(&format!("{route}?token={token}"), WsOptions::default())
        .await
        .unwrap_or_else(|e| panic!("{route}: valid token refused: {e}"));
    let welcome = client.recv_type("system_message").await;
    assert_eq!(welcome["data"]["user_id"], json!(sub), "welcome: {welcome}");
    // Close and wait until the gateway has handled it, so this user's `user_left` cannot reach
    // the next connection the test opens for the same user ahead of its greeting.
    let open = gw.metrics().await.value("gateway_connections_open");
    client.close(1000).await;
    gw.poll_until("the accepted connection's close", TIMEOUT, || async {
        (gw.metrics().await.value("gateway_connections_open") < open).then_some(())
    })
    .await;
}

/// Connects with `opts`/`path_and_query` and expects HTTP 401 with a JSON error body.
async fn assert_refused_with(gw: &Gateway, what: &str, path_and_query: &str, opts: WsOptions) {
    match gw.ws_with(path_and_query, opts).await {
        Ok(_) => panic!("{what}: the gateway upgraded a connection it must refuse"),
        Err(err) => {
            let (status, body) = err.rejection_json();
            assert_eq!(status, 401, "{what}: status; body {body}");
            assert!(
                body.get("error").and_then(Value::as_str).is_some(),
                "{what}: body must be a JSON object with an \"error\" string, got {body}"
            );
        }
    }
}

async fn assert_refused(gw: &Gateway, what: &str, route: &str, token: &str) {
    assert_refused_with(
        gw,
        what,
        &format!("{route}?token={token}"),
        WsOptions::default(),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hs256_default_profile_matrix() {
    let gw = Gateway::start(auth_config());
    let secret = gw.jwt_secret.clone();
    let now = now_secs();

    // Valid token in the query string.
    let valid = hs256(&secret, &user_claims("alice", Some("Alice")));
    assert_accepted(&gw, "/ws", &valid, "alice").await;

    // Valid token as `Authorization: Bearer`.
    let mut via_header = gw
        .ws_with(
            "/ws",
            WsOptions::default().header("authorization", &format!("Bearer {valid}")),
        )
        .await
        .unwrap_or_else(|e| panic!("Bearer header refused: {e}"));
    let welcome = via_header.recv_type("system_message").await;
    assert_eq!(welcome["data"]["user_id"], json!("alice"));

    // Expired (an hour ago: far beyond any leeway).
    let expired = hs256(
        &secret,
        &json!({"sub": "alice", "iat": now - 7200, "exp": now - 3600}),
    );
    assert_refused(&gw, "expired", "/ws", &expired).await;

    // Not valid before an hour from now.
    let not_yet = hs256(
        &secret,
        &json!({"sub": "alice", "iat": now, "nbf": now + 3600, "exp": now + 7200}),
    );
    assert_refused(&gw, "nbf in the future", "/ws", &not_yet).await;

    // Signed with another secret.
    let wrong_key = hs256(
        "some-other-secret-that-the-gateway-does-not-know",
        &user_claims("alice", None),
    );
    assert_refused(&gw, "wrong key", "/ws", &wrong_key).await;

    // Unsigned.
    let none = alg_none(&user_claims("alice", None));
    assert_refused(&gw, "alg none", "/ws", &none).await;

    // Payload changed after signing (privilege swap to another user).
    let tampered = with_payload(&valid, &user_claims("admin", Some("Admin")));
    assert_refused(&gw, "tampered payload", "/ws", &tampered).await;

    // Garbage and missing tokens.
    assert_refused(&gw, "garbage token", "/ws", "not.a.jwt").await;
    assert_refused_with(&gw, "missing token", "/ws", WsOptions::default()).await;
    assert_refused_with(&gw, "empty token", "/ws?token=", WsOptions::default()).await;

    // Required claims: no `sub`, no `exp`.
    let no_sub = hs256(&secret, &json!({"iat": now, "exp": now + 3600}));
    assert_refused(&gw, "missing sub", "/ws", &no_sub).await;
    let no_exp = hs256(&secret, &json!({"sub": "alice", "iat": now}));
    assert_refused(&gw, "missing exp", "/ws", &no_exp).await;

    // A bad Bearer header.
    assert_refused_with(
        &gw,
        "bad Bearer header",
        "/ws",
        WsOptions::default().header("authorization", &format!("Bearer {wrong_key}")),
    )
    .await;
    assert_refused_with(
        &gw,
        "expired Bearer header",
        "/ws",
        WsOptions::default().header("authorization", &format!("Bearer {expired}")),
    )
    .await;

    // An HS256 token signed with a different profile's secret is not valid here.
    let other_profile = hs256(MS_SECRET, &user_claims("alice", None));
    assert_refused(&gw, "other profile's secret", "/ws", &other_profile).await;

    // Refusals leave the gateway serving: the valid token still works.
    assert_accepted(&gw, "/ws", &valid, "alice").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn milliseconds_exp_profile() {
    let gw = Gateway::start(auth_config());
    let now_ms = now_millis();

    let valid = hs256(
        MS_SECRET,
        &json!({"sub": "milly", "iat": now_ms / 1000, "exp": now_ms + 3_600_000}),
    );
    assert_accepted(&gw, "/ws-ms", &valid, "milly").await;

    let expired = hs256(
        MS_SECRET,
        &json!({"sub": "milly", "iat": now_ms / 1000 - 7200, "exp": now_ms - 3_600_000}),
    );
    assert_refused(&gw, "expired (ms)", "/ws-ms", &expired).await;

    // `exp` in seconds read as milliseconds is in January 1970: expired.
    let seconds_exp = hs256(
        MS_SECRET,
        &json!({"sub": "milly", "exp": now_secs() + 3600}),
    );
    assert_refused(&gw, "seconds exp on ms profile", "/ws-ms", &seconds_exp).await;

    // A millisecond `exp` is not accepted by the seconds profile's key either (wrong secret),
    // and the seconds profile rejects the ms profile's route-specific tokens.
    let wrong_key = hs256(
        &gw.jwt_secret,
        &json!({"sub": "milly", "exp": now_ms + 3_600_000}),
    );
    assert_refused(&gw, "wrong key (ms)", "/ws-ms", &wrong_key).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audience_and_issuer() {
    let gw = Gateway::start(auth_config());
    let now = now_secs();
    let claims = |aud: Value, iss: &str| json!({"sub": "audrey", "iat": now, "exp": now + 3600, "aud": aud, "iss": iss});

    let valid = hs256(
        AUD_SECRET,
        &claims(json!("gateway-tests"), "https://issuer.test"),
    );
    assert_accepted(&gw, "/ws-aud", &valid, "audrey").await;

    let valid_list = hs256(
        AUD_SECRET,
        &claims(json!(["other", "gateway-tests"]), "https://issuer.test"),
    );
    assert_accepted(&gw, "/ws-aud", &valid_list, "audrey").await;

    let wrong_aud = hs256(
        AUD_SECRET,
        &claims(json!("someone-else"), "https://issuer.test"),
    );
    assert_refused(&gw, "wrong audience", "/ws-aud", &wrong_aud).await;

    let no_aud = hs256(
        AUD_SECRET,
        &json!({"sub": "audrey", "exp": now + 3600, "iss": "https://issuer.test"}),
    );
    assert_refused(&gw, "missing audience", "/ws-aud", &no_aud).await;

    let wrong_iss = hs256(
        AUD_SECRET,
        &claims(json!("gateway-tests"), "https://evil.test"),
    );
    assert_refused(&gw, "wrong issuer", "/ws-aud", &wrong_iss).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rs256_with_pem_public_key() {
    let gw = Gateway::start(auth_config());
    let claims = user_claims("rita", Some("Rita"));

    let valid = rs256("rs256_private.pem", &claims);
    assert_accepted(&gw, "/ws-rs", &valid, "rita").await;
    let mut via_header = gw
        .ws_with(
            "/ws-rs",
            WsOptions::default().header("authorization", &format!("Bearer {valid}")),
        )
        .await
        .unwrap_or_else(|e| panic!("RS256 Bearer header refused: {e}"));
    via_header.recv_type("system_message").await;

    let other_key = rs256("rs256_other_private.pem", &claims);
    assert_refused(&gw, "RS256 wrong key", "/ws-rs", &other_key).await;

    let now = now_secs();
    let expired = rs256(
        "rs256_private.pem",
        &json!({"sub": "rita", "iat": now - 7200, "exp": now - 3600}),
    );
    assert_refused(&gw, "RS256 expired", "/ws-rs", &expired).await;

    // Algorithm confusion: HS256 signed with the public key's PEM text as secret.
    let public_pem = std::fs::read_to_string(fixture("rs256_public.pem")).expect("public key");
    let confused = hs256(&public_pem, &claims);
    assert_refused(&gw, "HS256 on an RS256 profile", "/ws-rs", &confused).await;

    // An HS256 token with the default secret is not valid on the RS256 route.
    let hs = hs256(&gw.jwt_secret, &claims);
    assert_refused(&gw, "HS256 default token on RS256 route", "/ws-rs", &hs).await;

    let none = alg_none(&claims);
    assert_refused(&gw, "alg none on RS256 route", "/ws-rs", &none).await;

    let tampered = with_payload(&valid, &user_claims("admin", None));
    assert_refused(&gw, "RS256 tampered payload", "/ws-rs", &tampered).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn es256_with_pem_public_key() {
    let gw = Gateway::start(auth_config());
    let claims = user_claims("eve", Some("Eve"));

    let valid = es256("es256_private.pem", &claims);
    assert_accepted(&gw, "/ws-es", &valid, "eve").await;

    let other_key = es256("es256_other_private.pem", &claims);
    assert_refused(&gw, "ES256 wrong key", "/ws-es", &other_key).await;

    let rs = rs256("rs256_private.pem", &claims);
    assert_refused(&gw, "RS256 token on ES256 route", "/ws-es", &rs).await;

    let tampered = with_payload(&valid, &user_claims("admin", None));
    assert_refused(&gw, "ES256 tampered payload", "/ws-es", &tampered).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_subcommand_mints_accepted_tokens() {
    let gw = Gateway::start(auth_config());
    let out = std::process::Command::new(gateway_bin())
        .args([
            "token",
            "--sub",
            "tess",
            "--claim",
            "username=Tess",
            "--ttl",
            "1h",
        ])
        .env("GATEWAY_JWT_SECRET", &gw.jwt_secret)
        .output()
        .expect("run gateway token");
    assert!(
        out.status.success(),
        "gateway token failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout)
        .expect("utf-8 token")
        .trim()
        .to_string();
    assert_eq!(token.split('.').count(), 3, "token: {token:?}");
    let payload = decode_payload(&token);
    assert_eq!(payload["sub"], json!("tess"), "payload {payload}");
    assert_eq!(payload["username"], json!("Tess"), "payload {payload}");
    let exp = payload["exp"].as_u64().expect("numeric exp");
    let now = now_secs();
    assert!(
        exp > now + 3000 && exp <= now + 3700,
        "exp {exp} should be about an hour from {now}"
    );

    let mut client = gw.ws(&format!("/ws?token={token}")).await;
    let welcome = client.recv_type("system_message").await;
    assert_eq!(welcome["data"]["user_id"], json!("tess"));

    // A token minted with another secret is refused.
    let out = std::process::Command::new(gateway_bin())
        .args(["token", "--sub", "tess"])
        .env("GATEWAY_JWT_SECRET", "not-the-gateway-secret-0123456789")
        .output()
        .expect("run gateway token");
    assert!(out.status.success());
    let foreign = String::from_utf8(out.stdout)
        .expect("utf-8")
        .trim()
        .to_string();
    assert_refused(&gw, "token minted with another secret", "/ws", &foreign).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_in_subprotocol() {
    let gw = Gateway::start(auth_config());
    let valid = hs256(MS_SECRET, &user_claims("sumi", None));
    let offered = format!("chat.v1, yauth-{valid}");
    let mut client = gw
        .ws_with(
            "/ws-proto",
            WsOptions::default().header("sec-websocket-protocol", &offered),
        )
        .await
        .unwrap_or_else(|e| panic!("subprotocol token refused: {e}"));
    if let Some(chosen) = client
        .response_headers
        .get("sec-websocket-protocol")
        .and_then(|v| v.to_str().ok())
    {
        assert!(
            offered.split(',').any(|p| p.trim() == chosen),
            "the server must pick one of the offered subprotocols, got {chosen:?}"
        );
    }
    let welcome = client.recv_type("system_message").await;
    assert_eq!(welcome["data"]["user_id"], json!("sumi"));

    // The query string is not a source for this profile.
    assert_refused(
        &gw,
        "query token on subprotocol profile",
        "/ws-proto",
        &valid,
    )
    .await;
    let wrong = hs256(&gw.jwt_secret, &user_claims("sumi", None));
    assert_refused_with(
        &gw,
        "subprotocol token with wrong key",
        "/ws-proto",
        WsOptions::default().header("sec-websocket-protocol", &format!("yauth-{wrong}")),
    )
    .await;
    assert_refused_with(
        &gw,
        "subprotocols without a token",
        "/ws-proto",
        WsOptions::default().header("sec-websocket-protocol", "chat.v1"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rs256_with_jwk_set() {
    let gw = Gateway::start(auth_config());
    let claims = user_claims("jay", None);
    let sign = |key_file: &str, kid: &str| {
        let pem = std::fs::read(fixture(key_file)).expect("key fixture");
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        header.kid = Some(kid.to_string());
        jsonwebtoken::encode(
            &header,
            &claims,
            &jsonwebtoken::EncodingKey::from_rsa_pem(&pem).expect("RSA PEM"),
        )
        .expect("encode")
    };

    let valid = sign("rs256_private.pem", "test-rs-1");
    assert_accepted(&gw, "/ws-jwk", &valid, "jay").await;

    let wrong_key = sign("rs256_other_private.pem", "test-rs-1");
    assert_refused(
        &gw,
        "JWK: wrong key with a known kid",
        "/ws-jwk",
        &wrong_key,
    )
    .await;

    let unknown_kid = sign("rs256_other_private.pem", "someone-else");
    assert_refused(&gw, "JWK: unknown kid", "/ws-jwk", &unknown_kid).await;

    let tampered = with_payload(&valid, &user_claims("admin", None));
    assert_refused(&gw, "JWK: tampered payload", "/ws-jwk", &tampered).await;
}

#[test]
fn serve_refuses_an_ephemeral_secret_unless_dev() {
    let dir = std::env::temp_dir().join(format!("gateway-no-secret-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let cfg = dir.join("gateway.toml");
    std::fs::write(
        &cfg,
        "[server]\nlisten = [\"127.0.0.1:0\"]\n\n[auth.default]\nalgorithms = [\"HS256\"]\nsecret_env = \"GATEWAY_JWT_SECRET\"\n",
    )
    .expect("write config");
    let out = std::process::Command::new(gateway_bin())
        .args(["serve", "--config"])
        .arg(&cfg)
        .env_remove("GATEWAY_JWT_SECRET")
        .current_dir(&dir)
        .output()
        .expect("run gateway serve");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "serve started without a secret");
    assert!(
        stderr.contains("GATEWAY_JWT_SECRET") && stderr.contains("--dev"),
        "the refusal says what to do: {stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The shipped profiles share one secret but not their audience: a chat token does not open a
/// Yjs room, a Yjs token does not open the chat, and each opens its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shipped_profiles_each_have_their_own_audience() {
    let gw = Gateway::start(shipped_config());
    let with_aud = |aud: &str| {
        let mut claims = user_claims("alice", None);
        claims["aud"] = json!(aud);
        hs256(&gw.jwt_secret, &claims)
    };
    let chat = with_aud("gateway");
    let yjs = with_aud("yjs");
    assert_accepted(&gw, "/ws", &chat, "alice").await;
    assert_refused(&gw, "a Yjs token on the chat", "/ws", &yjs).await;
    assert_refused(&gw, "a chat token on a Yjs room", "/yjs/room", &chat).await;
    let mut room = gw
        .ws_with(&format!("/yjs/room?yauth={yjs}"), WsOptions::default())
        .await
        .expect("a Yjs token opens a Yjs room");
    match room.recv().await {
        WsEvent::Binary(b) => assert_eq!(b[0], 0, "sync step 1 first"),
        other => panic!("expected the sync greeting, got {other:?}"),
    }
}
