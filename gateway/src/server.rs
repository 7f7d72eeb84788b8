//! HTTP/1.1 front door: health and metrics, WebSocket upgrades (origin, auth and the plugin's
//! `on-open` before the 101), and plugin HTTP routes with the admin-key guard.

use crate::app::{App, Live};
use crate::config::{Route, RouteKind};
use crate::hub::ConnSpec;
use crate::plugin::{self, CallError, PluginSlot};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

type Body = Full<Bytes>;

/// Accepts connections until `stop` turns true.
pub async fn accept_loop(app: Arc<App>, listener: TcpListener, mut stop: watch::Receiver<bool>) {
    loop {
        let (stream, remote) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.changed() => return,
        };
        let app = app.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| handle(app.clone(), remote, req));
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), svc)
                .with_upgrades();
            if let Err(e) = conn.await {
                tracing::debug!(%remote, "http connection ended: {e}");
            }
        });
    }
}

fn json(status: StatusCode, v: serde_json::Value) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(v.to_string())));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

fn error(status: StatusCode, reason: &str) -> Response<Body> {
    let label = status.canonical_reason().unwrap_or("error").to_lowercase();
    json(
        status,
        serde_json::json!({"error": label, "reason": reason}),
    )
}

async fn handle(
    app: Arc<App>,
    remote: SocketAddr,
    req: Request<Incoming>,
) -> Result<Response<Body>, std::convert::Infallible> {
    let path = req.uri().path().to_string();
    let upgrade = fastwebsockets::upgrade::is_upgrade_request(&req);
    let live = app.live();
    let resp = match (req.method().as_str(), path.as_str()) {
        ("GET", "/health") if !upgrade => health(&app, &live).await,
        ("GET", "/metrics") if !upgrade => metrics(&app, &live).await,
        _ if upgrade => match live.config.route_for(&path, RouteKind::Websocket) {
            Some(route) => websocket(&app, &live, route, remote, req).await,
            None => error(StatusCode::NOT_FOUND, "no WebSocket route here"),
        },
        _ => match live.config.route_for(&path, RouteKind::Http) {
            Some(route) => http_route(&app, &live, route, remote, req).await,
            None if live.config.route_for(&path, RouteKind::Websocket).is_some() => error(
                StatusCode::UPGRADE_REQUIRED,
                "this route accepts WebSocket upgrades only",
            ),
            None => error(StatusCode::NOT_FOUND, "not found"),
        },
    };
    Ok(resp)
}

async fn health(app: &App, live: &Live) -> Response<Body> {
    let b = &app.backends;
    let streams = b.streams.stats(&b.prefixes).await;
    let worker = b.worker.as_ref().map(|w| {
        serde_json::json!({
            "compactions": w.stats.compactions.load(Relaxed),
            "persisted": w.stats.persisted.load(Relaxed),
            "streams_deleted": w.stats.streams_deleted.load(Relaxed),
            "errors": w.stats.errors.load(Relaxed),
        })
    });
    let plugins: serde_json::Map<String, serde_json::Value> = live
        .plugins
        .iter()
        .map(|(name, slot)| {
            let v = slot.version();
            let s = slot.status();
            let m = &slot.shared.metrics;
            (
                name.clone(),
                serde_json::json!({
                    "version": &v.hash[..12.min(v.hash.len())],
                    "generation": v.generation,
                    "state": s.state,
                    "last_error": s.last_error,
                    "calls": m.calls.load(Relaxed),
                    "traps": m.traps.load(Relaxed),
                    "recent_faults": s.recent_faults,
                    "reloads": s.reloads,
                    "last_reload_ms": s.last_reload_ms,
                }),
            )
        })
        .collect();
    json(
        StatusCode::OK,
        serde_json::json!({
            "status": if live.plugins.values().any(|p| p.is_disabled()) { "degraded" } else { "ok" },
            "uptime_seconds": app.started.elapsed().as_secs(),
            "config": app.config_status(),
            "connections": app.hub.len(),
            "plugins": plugins,
            "streams": streams,
            "worker": worker,
        }),
    )
}

async fn metrics(app: &App, live: &Live) -> Response<Body> {
    use std::fmt::Write;
    let mut text = app.metrics.render(
        live.plugins
            .iter()
            .map(|(n, s)| (n.as_str(), &s.shared.metrics, s.is_disabled())),
    );
    let b = &app.backends;
    let st = b.streams.stats(&b.prefixes).await;
    let _ = writeln!(
        text,
        "# HELP gateway_worker_queue Compaction tasks on the worker queues.\n# TYPE gateway_worker_queue gauge\ngateway_worker_queue{{backend=\"{}\"}} {}",
        st.backend, st.worker_queue
    );
    let _ = writeln!(
        text,
        "# HELP gateway_bound_streams Streams tailed for local subscribers.\n# TYPE gateway_bound_streams gauge\ngateway_bound_streams {}",
        b.streams.tailer().len()
    );
    if let Some(w) = &b.worker {
        for (name, help, v) in [
            (
                "compactions",
                "Compaction rounds run.",
                &w.stats.compactions,
            ),
            (
                "persisted",
                "Documents written to storage.",
                &w.stats.persisted,
            ),
            (
                "streams_deleted",
                "Empty streams deleted.",
                &w.stats.streams_deleted,
            ),
            ("errors", "Failed compactions.", &w.stats.errors),
        ] {
            let _ = writeln!(
                text,
                "# HELP gateway_worker_{name}_total {help}\n# TYPE gateway_worker_{name}_total counter\ngateway_worker_{name}_total {}",
                v.load(Relaxed)
            );
        }
    }
    let mut r = Response::new(Full::new(Bytes::from(text)));
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    r
}

fn header<'a>(req: &'a Request<Incoming>, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

fn headers(req: &Request<Incoming>) -> Vec<(String, String)> {
    req.headers()
        .iter()
        .filter_map(|(k, v)| {
            v.to_str()
                .ok()
                .map(|v| (k.as_str().to_string(), v.to_string()))
        })
        .collect()
}

/// What a verified request carries: claims JSON, the subprotocol to echo, the expiry.
type Authed = (Option<String>, Option<String>, Option<u64>);

/// Verifies the route's token; the error is the ready 401 response.
fn authenticate(
    live: &Live,
    route: &Route,
    req: &Request<Incoming>,
) -> Result<Authed, Box<Response<Body>>> {
    let Some(profile) = &route.auth else {
        return Ok((None, None, None));
    };
    let Some(v) = live.auth.profile(profile) else {
        return Err(Box::new(error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "auth profile missing",
        )));
    };
    let carrier = crate::auth::TokenCarrier {
        query: req.uri().query().unwrap_or(""),
        authorization: header(req, "authorization"),
        subprotocols: header(req, "sec-websocket-protocol"),
    };
    let unauthorized = |reason: String| {
        tracing::info!(route = %route.path, "refused: {reason}");
        Box::new(error(StatusCode::UNAUTHORIZED, &reason))
    };
    let found = v
        .find_token(&carrier)
        .ok_or_else(|| unauthorized("missing token".into()))?;
    let claims = v
        .verify(&found.token)
        .map_err(|e| unauthorized(e.to_string()))?;
    let exp = v.expiry_ms(&claims);
    Ok((
        Some(serde_json::Value::Object(claims).to_string()),
        found.subprotocol,
        exp,
    ))
}

/// The y-redis permission callback: `GET {callback}/{room}/{user}` must answer
/// `{"yaccess": "rw" | "r"}`, which is added to the claims. Other answers refuse with 403; an
/// unreachable callback or a malformed answer refuses with 401.
async fn check_permission(
    live: &Live,
    route: &Route,
    path: &str,
    claims: Option<String>,
) -> Result<Option<String>, Box<Response<Body>>> {
    let Some(profile) = route.auth.as_ref().and_then(|p| live.config.auth.get(p)) else {
        return Ok(claims);
    };
    let Some(callback) = &profile.permission_callback else {
        return Ok(claims);
    };
    let deny = |status: StatusCode, reason: String| {
        tracing::info!(route = %route.path, "refused by permission callback: {reason}");
        Box::new(error(status, &reason))
    };
    let mut map: serde_json::Map<String, serde_json::Value> = claims
        .as_deref()
        .and_then(|c| serde_json::from_str(c).ok())
        .unwrap_or_default();
    let user = match map.get(&profile.user_claim) {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(serde_json::Value::Number(n)) => n.to_string(),
        _ => {
            return Err(deny(
                StatusCode::UNAUTHORIZED,
                format!("token has no '{}' claim", profile.user_claim),
            ));
        }
    };
    let room = path.rsplit('/').next().unwrap_or("");
    let url = format!(
        "{}/{room}/{}",
        callback.trim_end_matches('/'),
        yjs_sync::keys::encode_uri_component(&user)
    );
    static CLIENT: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    let client = CLIENT.get_or_init(|| {
        reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap_or_default()
    });
    let answer = async {
        let r = client.get(&url).send().await.map_err(|e| e.to_string())?;
        if !r.status().is_success() {
            return Err(format!("permission callback answered {}", r.status()));
        }
        let body = r.bytes().await.map_err(|e| e.to_string())?;
        serde_json::from_slice::<serde_json::Value>(&body).map_err(|e| e.to_string())
    }
    .await
    .map_err(|e| {
        deny(
            StatusCode::UNAUTHORIZED,
            format!("permission check failed: {e}"),
        )
    })?;
    match answer.get("yaccess").and_then(|v| v.as_str()) {
        Some(a @ ("rw" | "r")) => {
            map.insert("yaccess".into(), serde_json::Value::String(a.into()));
            Ok(Some(serde_json::Value::Object(map).to_string()))
        }
        other => Err(deny(
            StatusCode::FORBIDDEN,
            format!("no access to this room ({})", other.unwrap_or("no yaccess")),
        )),
    }
}

async fn websocket(
    app: &Arc<App>,
    live: &Live,
    route: &Route,
    remote: SocketAddr,
    mut req: Request<Incoming>,
) -> Response<Body> {
    let refuse = |app: &App, r: Response<Body>| {
        app.metrics.upgrades_refused.fetch_add(1, Relaxed);
        r
    };
    if !route.origin_allowed(header(&req, "origin")) {
        return refuse(app, error(StatusCode::FORBIDDEN, "origin not allowed"));
    }
    let (claims, subprotocol, expires_at_ms) = match authenticate(live, route, &req) {
        Ok(x) => x,
        Err(r) => return refuse(app, *r),
    };
    let claims = match check_permission(live, route, req.uri().path(), claims).await {
        Ok(c) => c,
        Err(r) => return refuse(app, *r),
    };
    let Some(slot) = serving_slot(live, route) else {
        return refuse(app, plugin_unavailable());
    };
    let spec = ConnSpec {
        plugin: slot.shared.name.clone(),
        route: Arc::from(route.path.as_str()),
        path: req.uri().path().to_string(),
        query: req.uri().query().unwrap_or("").to_string(),
        headers: headers(&req),
        remote,
        claims,
        subprotocol: subprotocol.clone(),
        limits: route.limits.apply(live.config.limits),
        expires_at_ms,
    };
    let (resp, fut) = match fastwebsockets::upgrade::upgrade(&mut req) {
        Ok(x) => x,
        Err(e) => return refuse(app, error(StatusCode::BAD_REQUEST, &e.to_string())),
    };
    let conn = app.hub.register(spec);
    match slot.on_open(&crate::conn::conn_info(&conn)).await {
        Ok(Ok(())) => {}
        Ok(Err(reject)) => {
            app.hub.remove(conn.id);
            let status = StatusCode::from_u16(reject.status)
                .ok()
                .filter(|s| s.is_client_error() || s.is_server_error())
                .unwrap_or(StatusCode::FORBIDDEN);
            return refuse(app, error(status, &reject.reason));
        }
        Err(e) => {
            app.hub.remove(conn.id);
            let status = match e {
                CallError::Busy => StatusCode::SERVICE_UNAVAILABLE,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            };
            return refuse(app, error(status, "plugin failed to accept the connection"));
        }
    }
    app.metrics.connections_total.fetch_add(1, Relaxed);
    app.metrics.connections_open.fetch_add(1, Relaxed);
    let (hub, metrics) = (app.hub.clone(), app.metrics.clone());
    tokio::spawn(async move {
        let stream = match fut.await {
            Ok(ws) => ws.into_inner().into_inner(),
            Err(e) => {
                tracing::debug!("upgrade failed: {e}");
                let _ = slot.on_close(&conn, 1006, "upgrade failed").await;
                hub.remove(conn.id);
                metrics.connections_open.fetch_sub(1, Relaxed);
                return;
            }
        };
        match stream.downcast::<TokioIo<TcpStream>>() {
            Ok(parts) => {
                // Copy what hyper read ahead, so its larger buffer is freed.
                let leftover = Bytes::copy_from_slice(&parts.read_buf);
                drop(parts.read_buf);
                crate::conn::run(conn, slot, hub, metrics, parts.io.into_inner(), leftover).await;
            }
            Err(_) => {
                tracing::error!("upgraded stream is not a TCP stream");
                hub.remove(conn.id);
                metrics.connections_open.fetch_sub(1, Relaxed);
            }
        }
    });
    let (mut parts, _) = resp.into_parts();
    if let Some(p) = subprotocol.and_then(|p| HeaderValue::from_str(&p).ok()) {
        parts.headers.insert("sec-websocket-protocol", p);
    }
    Response::from_parts(parts, Full::new(Bytes::new()))
}

/// The route's plugin, unless it is missing or disabled.
fn serving_slot(live: &Live, route: &Route) -> Option<Arc<PluginSlot>> {
    live.plugins
        .get(&route.plugin)
        .filter(|s| !s.is_disabled())
        .cloned()
}

fn plugin_unavailable() -> Response<Body> {
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "plugin not loaded or disabled",
    )
}

fn admin_ok(app: &App, req: &Request<Incoming>) -> Result<(), Box<Response<Body>>> {
    let Some(key) = &app.admin_key else {
        return Err(Box::new(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "admin API disabled: set GATEWAY_ADMIN_KEY to enable it",
        )));
    };
    let given = header(req, "x-api-key").or_else(|| {
        header(req, "authorization").and_then(|h| {
            let (s, rest) = h.trim().split_once(' ')?;
            s.eq_ignore_ascii_case("bearer").then(|| rest.trim())
        })
    });
    match given {
        Some(g) if constant_time_eq(g.as_bytes(), key.as_bytes()) => Ok(()),
        _ => Err(Box::new(error(
            StatusCode::UNAUTHORIZED,
            "admin key required",
        ))),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn http_route(
    app: &Arc<App>,
    live: &Live,
    route: &Route,
    remote: SocketAddr,
    req: Request<Incoming>,
) -> Response<Body> {
    if route.admin
        && let Err(r) = admin_ok(app, &req)
    {
        return *r;
    }
    if !route.origin_allowed(header(&req, "origin")) {
        return error(StatusCode::FORBIDDEN, "origin not allowed");
    }
    let (claims, _, _) = match authenticate(live, route, &req) {
        Ok(x) => x,
        Err(r) => return *r,
    };
    let Some(slot) = serving_slot(live, route) else {
        return plugin_unavailable();
    };
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let hdrs = headers(&req);
    let limit = live.config.server.max_http_body_bytes;
    let body = match Limited::new(req.into_body(), limit).collect().await {
        Ok(b) => b.to_bytes().to_vec(),
        Err(_) => return error(StatusCode::PAYLOAD_TOO_LARGE, "request body too large"),
    };
    let preq = plugin::HttpRequest {
        method,
        path,
        query,
        headers: hdrs,
        body,
        claims,
        remote_addr: remote.to_string(),
    };
    match slot.on_http(&preq).await {
        Ok(r) => {
            let mut resp = Response::new(Full::new(Bytes::from(r.body)));
            *resp.status_mut() =
                StatusCode::from_u16(r.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            for (k, v) in r.headers {
                if let (Ok(k), Ok(v)) = (
                    hyper::header::HeaderName::from_bytes(k.as_bytes()),
                    HeaderValue::from_str(&v),
                ) {
                    resp.headers_mut().append(k, v);
                }
            }
            resp
        }
        Err(CallError::Busy) => error(StatusCode::SERVICE_UNAVAILABLE, "plugin busy"),
        Err(CallError::Disabled) => error(StatusCode::SERVICE_UNAVAILABLE, "plugin disabled"),
        Err(e) => {
            tracing::warn!(route = %route.path, "plugin http call failed: {e}");
            error(StatusCode::INTERNAL_SERVER_ERROR, "plugin error")
        }
    }
}
