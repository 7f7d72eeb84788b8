//! WebSocket upgrades: origin check, token, the y-redis permission callback, then the plugin's
//! `on-open` before the 101; the accepted socket is handed to the session loop. A connection's
//! first request is answered without hyper ([`websocket_first`]); later ones through it.

use super::handshake;
use super::request::{
    Body, authenticate, error, header, headers, plugin_unavailable, serving_slot,
};
use crate::app::{App, Live};
use crate::config::{Route, RouteKind};
use crate::hub::{Admission, Conn, ConnSpec, Refused};
use crate::plugin::{CallError, PluginSlot};
use crate::wire::sender::Preface;
use crate::yredis::permission::{self, Denied};
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::{Request, Response, StatusCode};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use tokio::net::TcpStream;

/// A connection the plugin accepted: what the 101 and the session need.
struct Opened {
    conn: Arc<Conn>,
    slot: Arc<PluginSlot>,
    subprotocol: Option<String>,
}

/// Answers an upgrade that arrived through hyper (after other requests on the connection):
/// the 101 is hyper's response, and the session starts once hyper hands the socket over.
pub async fn websocket(
    app: &Arc<App>,
    live: &Live,
    route: &Route,
    remote: SocketAddr,
    mut req: Request<Incoming>,
) -> Response<Body> {
    let opened = match open(app, live, route, remote, &req).await {
        Ok(o) => o,
        Err(r) => return *r,
    };
    let Opened {
        conn,
        slot,
        subprotocol,
    } = opened;
    // `open` checked the key and version, so this does not fail.
    let (resp, fut) = match fastwebsockets::upgrade::upgrade(&mut req) {
        Ok(x) => x,
        Err(e) => {
            let _ = slot.on_close(&conn, 1006, "upgrade failed").await;
            app.cluster.forget(conn.id).await;
            app.metrics.connections_open.fetch_sub(1, Relaxed);
            return error(StatusCode::BAD_REQUEST, &e.to_string());
        }
    };
    let (cluster, metrics) = (app.cluster.clone(), app.metrics.clone());
    // One task for the upgrade and then the session. The upgrade future is boxed so it does
    // not size the task for the connection's whole life (captures stay in a task's layout).
    let fut = Box::pin(fut);
    let task = async move {
        // Boxed: awaited once, and inline its state would size the task for the whole
        // session. (Its own statement, so no temporary outlives it.)
        let upgraded = Box::pin(finish_upgrade(fut, &conn, &slot, &cluster, &metrics));
        let Some((stream, leftover)) = upgraded.await else {
            return;
        };
        crate::session::run(conn, slot, metrics, stream, leftover, Preface::default()).await;
    };
    tokio::spawn(task);
    let (mut parts, _) = resp.into_parts();
    if let Some(p) = subprotocol.and_then(|p| HeaderValue::from_str(&p).ok()) {
        parts.headers.insert("sec-websocket-protocol", p);
    }
    Response::from_parts(parts, Full::new(Bytes::new()))
}

/// A connection accepted by [`websocket_first`], ready for its session.
pub struct Accepted {
    conn: Arc<Conn>,
    slot: Arc<PluginSlot>,
    metrics: Arc<crate::metrics::Metrics>,
    stream: TcpStream,
    leftover: Bytes,
    preface: Preface,
}

impl Accepted {
    /// The session, to run to its end in a task of its own.
    pub fn into_session(self) -> impl std::future::Future<Output = ()> + Send + 'static {
        crate::session::run(
            self.conn,
            self.slot,
            self.metrics,
            self.stream,
            self.leftover,
            self.preface,
        )
    }
}

/// Answers an upgrade that is the connection's first request, read by
/// [`handshake`](super::handshake): a refusal is answered and the connection closed; an
/// accepted connection is returned with the 101 and whatever the plugin queued in `on-open`
/// (a greeting) as its session's first write.
pub async fn websocket_first(
    app: Arc<App>,
    mut stream: TcpStream,
    remote: SocketAddr,
    req: Box<Request<()>>,
    leftover: Bytes,
) -> Option<Accepted> {
    let live = app.live();
    let path = req.uri().path();
    let refused = if app.draining.load(Relaxed) {
        Err(Box::new(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting down",
        )))
    } else {
        match live.config.route_for(path, RouteKind::Websocket) {
            Some(route) => open(&app, &live, route, remote, &req).await,
            None => Err(Box::new(error(
                StatusCode::NOT_FOUND,
                "no WebSocket route here",
            ))),
        }
    };
    let opened = match refused {
        Ok(o) => o,
        Err(resp) => {
            handshake::respond_and_close(&mut stream, *resp).await;
            return None;
        }
    };
    let key = req
        .headers()
        .get("sec-websocket-key")
        .map(|k| k.as_bytes())
        .unwrap_or_default();
    let mut bytes = handshake::switching_protocols(key, opened.subprotocol.as_deref());
    let head = bytes.len();
    let mut first = Vec::new();
    // Only the frames: a close the plugin scheduled stays in the outbox for the session.
    let _ = opened.conn.outbox.drain(&mut first);
    for f in &first {
        bytes.extend_from_slice(f);
    }
    Some(Accepted {
        conn: opened.conn,
        slot: opened.slot,
        metrics: app.metrics.clone(),
        stream,
        leftover,
        preface: Preface { bytes, head },
    })
}

/// Everything before the 101: origin, upgrade rate, token, permission callback, the serving
/// plugin, the WebSocket key, admission, then the plugin's `on-open`. A refusal is the ready
/// response (and counted).
async fn open<B>(
    app: &Arc<App>,
    live: &Live,
    route: &Route,
    remote: SocketAddr,
    req: &Request<B>,
) -> Result<Opened, Box<Response<Body>>> {
    let refuse = |app: &App, r: Response<Body>| {
        app.metrics.upgrades_refused.fetch_add(1, Relaxed);
        Err(Box::new(r))
    };
    if !route.origin_allowed(header(req, "origin")) {
        return refuse(app, error(StatusCode::FORBIDDEN, "origin not allowed"));
    }
    let server = &live.config.server;
    if !app
        .upgrades
        .admit(server.max_upgrades_per_s, std::time::Instant::now())
    {
        tracing::debug!(%remote, "refused: upgrade rate limit");
        let mut r = error(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many new connections; retry shortly",
        );
        r.headers_mut().insert(
            hyper::header::RETRY_AFTER,
            hyper::header::HeaderValue::from_static("1"),
        );
        return refuse(app, r);
    }
    let (claims, subprotocol, expires_at_ms) = match authenticate(live, route, req) {
        Ok(x) => x,
        Err(r) => return refuse(app, *r),
    };
    let claims = match check_permission(live, route, req.uri().path(), claims).await {
        Ok(c) => c,
        Err(r) => return refuse(app, r),
    };
    let Some(slot) = serving_slot(live, route) else {
        return refuse(app, plugin_unavailable());
    };
    if slot.blames(remote.ip()) {
        tracing::info!(%remote, plugin = %slot.shared.name, "refused: this address keeps making the plugin fail");
        return refuse(
            app,
            error(
                StatusCode::TOO_MANY_REQUESTS,
                "too many plugin faults from this address; retry later",
            ),
        );
    }
    if let Err(why) = check_key(req) {
        return refuse(app, error(StatusCode::BAD_REQUEST, why));
    }
    let spec = ConnSpec {
        plugin: slot.shared.name.clone(),
        route: Arc::from(route.path.as_str()),
        path: req.uri().path().to_string(),
        query: req.uri().query().unwrap_or("").to_string(),
        headers: headers(req),
        remote,
        claims,
        subprotocol: subprotocol.clone(),
        limits: route.limits.apply(live.config.limits),
        expires_at_ms,
    };
    let caps = Admission {
        max_total: server.max_connections,
        max_per_ip: server.max_connections_per_ip,
        max_per_route: spec.limits.max_connections,
    };
    let conn = match app.hub.admit(spec, caps) {
        Ok(c) => c,
        Err(why) => {
            let (status, what) = match why {
                Refused::Full => (StatusCode::SERVICE_UNAVAILABLE, "connection limit reached"),
                Refused::TooManyFromIp => (
                    StatusCode::TOO_MANY_REQUESTS,
                    "too many connections from this address",
                ),
                Refused::RouteFull => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "this route's connection limit is reached",
                ),
            };
            tracing::debug!(%remote, "{what}");
            return refuse(app, error(status, what));
        }
    };
    let Some(_opening) = app.upgrades.opening(server.max_concurrent_opens) else {
        app.cluster.forget(conn.id).await;
        tracing::debug!(%remote, "refused: too many connections opening at once");
        return refuse(
            app,
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "too many connections opening at once; retry shortly",
            ),
        );
    };
    match slot.on_open(&crate::plugin::conn_info(&conn)).await {
        Ok(Ok(())) => {}
        Ok(Err(reject)) => {
            app.cluster.forget(conn.id).await;
            let status = StatusCode::from_u16(reject.status)
                .ok()
                .filter(|s| s.is_client_error() || s.is_server_error())
                .unwrap_or(StatusCode::FORBIDDEN);
            return refuse(app, error(status, &reject.reason));
        }
        Err(e) => {
            app.cluster.forget(conn.id).await;
            let status = match e {
                CallError::Busy => StatusCode::SERVICE_UNAVAILABLE,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            };
            return refuse(app, error(status, "plugin failed to accept the connection"));
        }
    }
    app.metrics.connections_total.fetch_add(1, Relaxed);
    app.metrics.connections_open.fetch_add(1, Relaxed);
    Ok(Opened {
        conn,
        slot,
        subprotocol,
    })
}

/// The WebSocket handshake's own checks (RFC 6455, 4.2.1): a key, and version 13.
fn check_key<B>(req: &Request<B>) -> Result<(), &'static str> {
    if req.headers().get("sec-websocket-key").is_none() {
        return Err("missing Sec-WebSocket-Key header");
    }
    if req
        .headers()
        .get("sec-websocket-version")
        .map(|v| v.as_bytes())
        != Some(b"13")
    {
        return Err("unsupported Sec-WebSocket-Version (13 is required)");
    }
    Ok(())
}

/// Waits for hyper to hand over the upgraded socket; returns it with the bytes hyper read
/// ahead, or cleans up (plugin `on-close`, cluster) when the upgrade failed.
async fn finish_upgrade(
    fut: std::pin::Pin<Box<fastwebsockets::upgrade::UpgradeFut>>,
    conn: &Arc<crate::hub::Conn>,
    slot: &crate::plugin::PluginSlot,
    cluster: &crate::cluster::Cluster,
    metrics: &crate::metrics::Metrics,
) -> Option<(TcpStream, Bytes)> {
    let stream = match fut.await {
        Ok(ws) => ws.into_inner().into_inner(),
        Err(e) => {
            tracing::debug!("upgrade failed: {e}");
            let _ = slot.on_close(conn, 1006, "upgrade failed").await;
            cluster.forget(conn.id).await;
            metrics.connections_open.fetch_sub(1, Relaxed);
            return None;
        }
    };
    match stream.downcast::<handshake::Prefixed>() {
        Ok(parts) => {
            // Copy what hyper read ahead, so its larger buffer is freed; bytes of the first
            // read that hyper did not take come after it.
            let (io, unread) = parts.io.into_parts();
            let mut leftover = Vec::with_capacity(parts.read_buf.len() + unread.len());
            leftover.extend_from_slice(&parts.read_buf);
            leftover.extend_from_slice(&unread);
            Some((io, Bytes::from(leftover)))
        }
        Err(_) => {
            tracing::error!("upgraded stream is not a TCP stream");
            cluster.forget(conn.id).await;
            metrics.connections_open.fetch_sub(1, Relaxed);
            None
        }
    }
}

/// Runs the permission callback of the route's auth profile, if it has one; a denial is the
/// ready 401 or 403 response.
async fn check_permission(
    live: &Live,
    route: &Route,
    path: &str,
    claims: Option<String>,
) -> Result<Option<String>, Response<Body>> {
    let Some(profile) = route.auth.as_ref().and_then(|p| live.config.auth.get(p)) else {
        return Ok(claims);
    };
    let room = path.rsplit('/').next().unwrap_or("");
    permission::check(profile, room, claims).await.map_err(|d| {
        tracing::info!(route = %route.path, "refused by permission callback: {d}");
        let status = match d {
            Denied::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            Denied::Forbidden(_) => StatusCode::FORBIDDEN,
        };
        error(status, &d.to_string())
    })
}
