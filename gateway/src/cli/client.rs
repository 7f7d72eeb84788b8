//! `gateway client`: an interactive terminal client for the chat protocol
//! (`plugins/chat/PROTOCOL.md`). Lines typed are sent as broadcast texts; `/` commands send
//! notifications, direct messages, pings and raw JSON, and show who is online. Incoming frames
//! are printed one per line as they arrive.

use super::ConfigArg;
use super::token::{Mint, mint};
use anyhow::{Context, bail};
use bytes::Bytes;
use fastwebsockets::{FragmentCollectorRead, Frame, OpCode, Payload, Role, WebSocketError};
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncBufReadExt;
use tokio::sync::Mutex;

/// Flags of `gateway client`.
#[derive(Debug, clap::Args)]
pub struct ClientArgs {
    /// The chat route to connect to.
    #[arg(default_value = "ws://127.0.0.1:8080/ws", value_name = "URL")]
    url: String,
    /// The token to connect with (sent as `Authorization: Bearer`).
    #[arg(
        long,
        env = "GATEWAY_TOKEN",
        hide_env_values = true,
        conflicts_with = "sub"
    )]
    token: Option<String>,
    /// Mint a token for this user id from the config's auth profile and its secret instead.
    #[arg(long, value_name = "ID")]
    sub: Option<String>,
    /// The display name (`username` claim) of a minted token.
    #[arg(long, requires = "sub")]
    name: Option<String>,
    /// The auth profile a minted token is for.
    #[arg(long, default_value = "default", value_name = "NAME")]
    profile: String,
    #[command(flatten)]
    config: ConfigArg,
    /// Print every incoming frame as raw JSON instead of formatted lines.
    #[arg(long)]
    raw: bool,
}

const HELP: &str = "\
  <text>               send a text to everyone
  /n <text>            send a notification to everyone
  /dm <user> <text>    send a direct message to a user
  /ping                ping the server (shows the round trip)
  /who                 who is online
  /raw <json>          send a frame as it is
  /help                this help
  /quit                close and exit (also Ctrl-D)";

type Writer =
    fastwebsockets::WebSocketWrite<tokio::io::WriteHalf<TokioIo<hyper::upgrade::Upgraded>>>;

/// What the client knows: who is online, and when the last ping was sent.
#[derive(Default)]
struct View {
    me: String,
    online: BTreeMap<String, String>,
    pings: BTreeMap<u64, Instant>,
    raw: bool,
}

fn now_hms() -> String {
    let secs = gateway::clock::now_ms() / 1000;
    format!(
        "{:02}:{:02}:{:02}",
        (secs / 3600) % 24,
        (secs / 60) % 60,
        secs % 60
    )
}

/// A readable text for a message's `data`: its `text` or `message` field, else the JSON.
fn body(data: &Value) -> String {
    data.get("text")
        .or_else(|| data.get("message"))
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| data.to_string())
}

impl View {
    /// The line printed for one incoming frame (none for a frame that only updates the view).
    fn show(&mut self, text: &str) -> Option<String> {
        let Ok(m) = serde_json::from_str::<Value>(text) else {
            return Some(format!("[{}] (not JSON) {text}", now_hms()));
        };
        let kind = m["message_type"].as_str().unwrap_or("?");
        let data = &m["data"];
        let from = m["from_user_id"].as_str().unwrap_or("server");
        match kind {
            "system_message" if data.get("online_users").is_some() => {
                self.me = data["user_id"].as_str().unwrap_or_default().to_string();
                for u in data["online_users"].as_array().into_iter().flatten() {
                    let id = u["user_id"].as_str().unwrap_or_default().to_string();
                    let n = u["username"].as_str().unwrap_or(&id).to_string();
                    self.online.insert(id, n);
                }
            }
            "user_joined" => {
                let id = data["user_id"].as_str().unwrap_or(from).to_string();
                let n = data["username"].as_str().unwrap_or(&id).to_string();
                self.online.insert(id, n.clone());
                if !self.raw {
                    return Some(format!("[{}] * {n} joined", now_hms()));
                }
            }
            "user_left" => {
                let id = data["user_id"].as_str().unwrap_or(from).to_string();
                let n = self.online.remove(&id).unwrap_or(id);
                if !self.raw {
                    return Some(format!("[{}] * {n} left", now_hms()));
                }
            }
            _ => {}
        }
        if self.raw {
            return Some(text.to_string());
        }
        let t = now_hms();
        let name = |id: &str| {
            self.online
                .get(id)
                .cloned()
                .unwrap_or_else(|| id.to_string())
        };
        Some(match kind {
            "system_message" if data.get("online_users").is_some() => format!(
                "[{t}] connected as {} ({} online: {})",
                self.me,
                self.online.len(),
                self.online.values().cloned().collect::<Vec<_>>().join(", ")
            ),
            "text" if m["to_user_id"].is_string() => {
                format!("[{t}] (DM from {}) {}", name(from), body(data))
            }
            "text" => format!("[{t}] <{}> {}", name(from), body(data)),
            "notification" => format!("[{t}] [notification from {}] {}", name(from), body(data)),
            "system_message" => format!("[{t}] [system] {}", body(data)),
            "pong" => {
                let sent = data["ping"].as_u64().and_then(|n| self.pings.remove(&n));
                match sent {
                    Some(at) => {
                        format!("[{t}] pong ({:.1} ms)", at.elapsed().as_secs_f64() * 1000.0)
                    }
                    None => format!("[{t}] pong {data}"),
                }
            }
            "error" => format!(
                "[{t}] ! error {}: {}",
                data["code"].as_str().unwrap_or("?"),
                data["message"].as_str().unwrap_or_default()
            ),
            other => format!("[{t}] {other}: {data}"),
        })
    }

    /// The frame to send for a typed line, or what to print instead.
    fn command(&mut self, line: &str) -> Result<Option<String>, String> {
        let line = line.trim_end_matches(['\r', '\n']);
        let (cmd, rest) = line.split_once(' ').unwrap_or((line, ""));
        let rest = rest.trim();
        let msg = match cmd {
            "" => return Ok(None),
            "/help" | "/?" => return Err(HELP.to_string()),
            "/who" => {
                return Err(format!(
                    "{} online: {}",
                    self.online.len(),
                    self.online
                        .iter()
                        .map(|(id, n)| if id == n {
                            id.clone()
                        } else {
                            format!("{n} ({id})")
                        })
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            "/ping" => {
                let n = self.pings.len() as u64 + gateway::clock::now_ms();
                self.pings.insert(n, Instant::now());
                json!({"message_type": "ping", "data": {"ping": n}})
            }
            "/n" | "/notify" if !rest.is_empty() => {
                json!({"message_type": "notification", "data": {"text": rest}})
            }
            "/dm" => {
                let Some((to, text)) = rest.split_once(' ').filter(|(_, t)| !t.trim().is_empty())
                else {
                    return Err("usage: /dm <user> <text>".into());
                };
                json!({"message_type": "text", "to_user_id": to, "data": {"text": text.trim()}})
            }
            "/raw" if !rest.is_empty() => return Ok(Some(rest.to_string())),
            c if c.starts_with('/') => {
                return Err(format!("unknown command {c} (/help lists them)"));
            }
            _ => json!({"message_type": "text", "data": {"text": line}}),
        };
        Ok(Some(msg.to_string()))
    }
}

/// Connects and upgrades; a refusal is reported with its status and body.
async fn connect(
    url: &str,
    token: &str,
) -> anyhow::Result<(
    FragmentCollectorRead<tokio::io::ReadHalf<TokioIo<hyper::upgrade::Upgraded>>>,
    Writer,
)> {
    let uri: hyper::Uri = url.parse().with_context(|| format!("bad URL '{url}'"))?;
    match uri.scheme_str() {
        Some("ws") => {}
        Some("wss") => bail!(
            "wss:// is not supported by this client: connect to the gateway's plain listener (TLS ends at your proxy)"
        ),
        _ => bail!("'{url}' is not a ws:// URL"),
    }
    let host = uri.host().context("the URL has no host")?;
    let port = uri.port_u16().unwrap_or(80);
    let stream = tokio::time::timeout(
        Duration::from_secs(10),
        tokio::net::TcpStream::connect((host, port)),
    )
    .await
    .with_context(|| format!("no connection to {host}:{port} within 10 s"))?
    .with_context(|| format!("cannot connect to {host}:{port}"))?;
    stream.set_nodelay(true)?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = conn.with_upgrades().await;
    });
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let req = hyper::Request::get(path)
        .header("host", format!("{host}:{port}"))
        .header("upgrade", "websocket")
        .header("connection", "upgrade")
        .header(
            "sec-websocket-key",
            fastwebsockets::handshake::generate_key(),
        )
        .header("sec-websocket-version", "13")
        .header("authorization", format!("Bearer {token}"))
        .body(Empty::<Bytes>::new())?;
    let mut resp = tokio::time::timeout(Duration::from_secs(10), sender.send_request(req))
        .await
        .context("no upgrade answer within 10 s")??;
    if resp.status() != hyper::StatusCode::SWITCHING_PROTOCOLS {
        use http_body_util::BodyExt;
        let status = resp.status();
        let body = resp
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        bail!(
            "refused: {status} {}",
            String::from_utf8_lossy(&body).trim()
        );
    }
    let upgraded = hyper::upgrade::on(&mut resp).await?;
    let (read, write) = tokio::io::split(TokioIo::new(upgraded));
    let (r, w) = fastwebsockets::after_handshake_split(read, write, Role::Client);
    Ok((FragmentCollectorRead::new(r), w))
}

async fn send(writer: &Mutex<Writer>, text: String) -> Result<(), WebSocketError> {
    writer
        .lock()
        .await
        .write_frame(Frame::text(Payload::Owned(text.into_bytes())))
        .await
}

/// Runs the client until `/quit`, end of input or the server closes.
pub fn run(args: ClientArgs) -> anyhow::Result<()> {
    let token = match (&args.token, &args.sub) {
        (Some(t), _) => t.clone(),
        (None, Some(sub)) => mint(Mint {
            config: args.config.config.clone(),
            profile: args.profile.clone(),
            sub: sub.clone(),
            aud: None,
            ttl: Duration::from_secs(24 * 3600),
            claims: args
                .name
                .iter()
                .map(|n| ("username".to_string(), Value::String(n.clone())))
                .collect(),
            secret: None,
        })?,
        (None, None) => bail!("pass --token TOKEN (or GATEWAY_TOKEN), or --sub ID to mint one"),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let (mut reader, writer) = connect(&args.url, &token).await?;
        let writer = Arc::new(Mutex::new(writer));
        let view = Arc::new(std::sync::Mutex::new(View {
            raw: args.raw,
            ..View::default()
        }));
        println!("connected to {} (/help for commands)", args.url);
        let (w, v) = (writer.clone(), view.clone());
        let mut incoming = tokio::spawn(async move {
            let mut obligated = |frame: Frame<'static>| {
                let w = w.clone();
                async move { w.lock().await.write_frame(frame).await }
            };
            loop {
                let frame = match reader.read_frame(&mut obligated).await {
                    Ok(f) => f,
                    Err(e) => return format!("connection lost: {e}"),
                };
                match frame.opcode {
                    OpCode::Text => {
                        let text = String::from_utf8_lossy(&frame.payload);
                        let line = v.lock().unwrap_or_else(|e| e.into_inner()).show(&text);
                        if let Some(line) = line {
                            println!("{line}");
                        }
                    }
                    OpCode::Binary => {
                        println!("[{}] (binary, {} bytes)", now_hms(), frame.payload.len())
                    }
                    OpCode::Close => {
                        let p: &[u8] = &frame.payload;
                        let code = (p.len() >= 2).then(|| u16::from_be_bytes([p[0], p[1]]));
                        let reason = String::from_utf8_lossy(p.get(2..).unwrap_or_default());
                        return format!(
                            "closed by the server: {} {reason}",
                            code.map_or("-".into(), |c| c.to_string())
                        );
                    }
                    _ => {}
                }
            }
        });
        let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
        loop {
            tokio::select! {
                end = &mut incoming => {
                    let why = end.unwrap_or_else(|e| format!("reader failed: {e}"));
                    println!("{why}");
                    return anyhow::Ok(());
                }
                line = lines.next_line() => {
                    let Some(line) = line? else { break };
                    if matches!(line.trim(), "/quit" | "/exit" | "/q") {
                        break;
                    }
                    let cmd = view.lock().unwrap_or_else(|e| e.into_inner()).command(&line);
                    match cmd {
                        Ok(Some(frame)) => {
                            send(&writer, frame).await.context("send failed")?;
                            // The server sends a DM to its recipient only: show it here.
                            if let Some((to, text)) = line.strip_prefix("/dm ").and_then(|r| r.trim().split_once(' ')) {
                                println!("[{}] (DM to {to}) {}", now_hms(), text.trim());
                            }
                        }
                        Ok(None) => {}
                        Err(msg) => println!("{msg}"),
                    }
                }
            }
        }
        let close = Frame::close(1000, b"bye");
        let _ = writer.lock().await.write_frame(close).await;
        let _ = tokio::time::timeout(Duration::from_secs(2), incoming).await;
        println!("bye");
        anyhow::Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_make_protocol_frames() {
        let mut v = View::default();
        let f = |v: &mut View, l: &str| -> Value {
            serde_json::from_str(&v.command(l).unwrap().unwrap()).unwrap()
        };
        assert_eq!(
            f(&mut v, "hello there"),
            json!({"message_type": "text", "data": {"text": "hello there"}})
        );
        assert_eq!(
            f(&mut v, "/dm bob  psst "),
            json!({"message_type": "text", "to_user_id": "bob", "data": {"text": "psst"}})
        );
        assert_eq!(f(&mut v, "/n up")["message_type"], "notification");
        assert_eq!(f(&mut v, "/ping")["message_type"], "ping");
        assert_eq!(v.command("/raw {\"x\":1}").unwrap().unwrap(), "{\"x\":1}");
        assert!(v.command("/dm bob").is_err());
        assert!(v.command("/bogus").is_err());
        assert_eq!(v.command("").unwrap(), None);
    }

    #[test]
    fn presence_follows_the_greeting_and_events() {
        let mut v = View::default();
        let greet = json!({"message_type": "system_message", "data": {"user_id": "ann", "online_users": [
            {"user_id": "ann", "username": "Ann"}, {"user_id": "bob", "username": "Bob"}]}});
        assert!(
            v.show(&greet.to_string())
                .unwrap()
                .contains("2 online: Ann, Bob")
        );
        let joined = json!({"message_type": "user_joined", "from_user_id": "cy", "data": {"user_id": "cy", "username": "Cy"}});
        assert!(
            v.show(&joined.to_string())
                .unwrap()
                .ends_with("* Cy joined")
        );
        let text = json!({"message_type": "text", "from_user_id": "cy", "data": {"text": "yo"}});
        assert!(v.show(&text.to_string()).unwrap().ends_with("<Cy> yo"));
        let left = json!({"message_type": "user_left", "data": {"user_id": "bob"}});
        assert!(v.show(&left.to_string()).unwrap().ends_with("* Bob left"));
        assert_eq!(v.online.len(), 2);
    }
}
