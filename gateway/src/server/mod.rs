//! The HTTP/1.1 front door: binds the listeners, accepts connections, and dispatches each
//! request to health and metrics ([`ops`]), the admin page ([`admin`]), the demo pages
//! ([`demo`]), a WebSocket upgrade ([`upgrade`]) or a plugin HTTP route ([`http`]); graceful
//! shutdown lives here too.

mod admin;
mod demo;
mod handshake;
mod http;
mod ops;
mod request;
mod upgrade;

use crate::app::App;
use crate::config::RouteKind;
use bytes::Bytes;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioTimer;
use request::{Body, error};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// How long a new connection may take to send its request head.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// A started gateway.
pub struct Running {
    /// The shared state.
    pub app: Arc<App>,
    /// Bound listener addresses, in config order.
    pub addrs: Vec<SocketAddr>,
    stop: watch::Sender<bool>,
}

/// Binds every listener of the live configuration and starts serving.
pub async fn start(app: Arc<App>) -> std::io::Result<Running> {
    let (stop, stop_rx) = watch::channel(false);
    demo::check_built(&app.live().config).await;
    let mut addrs = Vec::new();
    for addr in &app.live().config.server.listen {
        let l = listen(*addr)
            .map_err(|e| std::io::Error::new(e.kind(), format!("listen on {addr}: {e}")))?;
        addrs.push(l.local_addr()?);
        tokio::spawn(accept_loop(app.clone(), l, stop_rx.clone()));
    }
    Ok(Running { app, addrs, stop })
}

/// Binds a listener with a backlog deep enough for connect storms (tokio's default is 1,024).
fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(4096)
}

impl Running {
    /// Drains: `/health` answers 503 "draining" and new connections and requests are refused
    /// with 503 (load balancers see it), every connection is closed with 1001 and given the
    /// grace period to go; then the listeners stop.
    pub async fn shutdown(self) {
        self.app
            .draining
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let conns = self.app.hub.all();
        tracing::info!(connections = conns.len(), "shutting down");
        for c in conns {
            c.outbox.close(1001, "server shutting down");
        }
        let grace = Duration::from_millis(self.app.live().config.server.shutdown_grace_ms);
        let deadline = Instant::now() + grace;
        while !self.app.hub.is_empty() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = self.stop.send(true);
        let left = self.app.hub.len();
        if left > 0 {
            tracing::warn!(
                connections = left,
                "shutdown grace elapsed with connections still open"
            );
        }
    }
}

/// Accepts connections until `stop` turns true.
async fn accept_loop(app: Arc<App>, listener: TcpListener, mut stop: watch::Receiver<bool>) {
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
        tokio::spawn(connection(app.clone(), stream, remote));
    }
}

/// Serves one accepted connection: a first request that is a WebSocket upgrade is answered
/// directly and its session gets a task of its own (sized for the session alone); anything
/// else is served by hyper in this task.
async fn connection(app: Arc<App>, stream: TcpStream, remote: SocketAddr) {
    match handshake::read_first(&stream, HEADER_READ_TIMEOUT).await {
        handshake::First::Upgrade(req, leftover) => {
            if let Some(accepted) =
                upgrade::websocket_first(app, stream, remote, req, leftover).await
            {
                tokio::spawn(accepted.into_session());
            }
        }
        handshake::First::Other(read) => serve_http(app, stream, remote, read).await,
        handshake::First::Gone => {}
    }
}

/// Serves a connection with hyper, `read` being what was read off it already.
async fn serve_http(app: Arc<App>, stream: TcpStream, remote: SocketAddr, read: Bytes) {
    let svc = hyper::service::service_fn(move |req| handle(app.clone(), remote, req));
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .serve_connection(handshake::Prefixed::new(read, stream), svc)
        .with_upgrades();
    if let Err(e) = conn.await {
        tracing::debug!(%remote, "http connection ended: {e}");
    }
}

async fn handle(
    app: Arc<App>,
    remote: SocketAddr,
    req: Request<Incoming>,
) -> Result<Response<Body>, std::convert::Infallible> {
    let path = req.uri().path().to_string();
    let upgrade = fastwebsockets::upgrade::is_upgrade_request(&req);
    let live = app.live();
    let draining = app.draining.load(std::sync::atomic::Ordering::Relaxed);
    let resp = match (req.method().as_str(), path.as_str()) {
        ("GET", "/health") if !upgrade && draining => ops::draining(),
        ("GET", "/health") if !upgrade => ops::health(&app, &live).await,
        _ if draining && path != "/metrics" => {
            error(StatusCode::SERVICE_UNAVAILABLE, "shutting down")
        }
        ("GET", "/metrics") if !upgrade => ops::metrics(&app, &live).await,
        _ if !upgrade && admin::is_admin_path(&path) => admin::handle(&app, &live, req).await,
        _ if !upgrade && live.config.server.demo && demo::is_demo_path(&path) => {
            demo::serve(&live.config, req.method(), &path).await
        }
        _ if upgrade => match live.config.route_for(&path, RouteKind::Websocket) {
            Some(route) => upgrade::websocket(&app, &live, route, remote, req).await,
            None => error(StatusCode::NOT_FOUND, "no WebSocket route here"),
        },
        _ => match live.config.route_for(&path, RouteKind::Http) {
            Some(route) => http::http_route(&app, &live, route, remote, req).await,
            None if live.config.route_for(&path, RouteKind::Websocket).is_some() => error(
                StatusCode::UPGRADE_REQUIRED,
                "this route accepts WebSocket upgrades only",
            ),
            None => error(StatusCode::NOT_FOUND, "not found"),
        },
    };
    Ok(resp)
}
