//! The bare native broadcast server: the baseline the gateway is compared with.
//!
//! Every text frame a client sends is encoded once as an unmasked server frame and
//! handed, as a shared `Bytes`, to the bounded queue of every connection (the
//! sender included). Each connection's writer drains its whole queue into one
//! buffer and writes it with one system call. A connection whose queue is full is
//! dropped.

mod conn;
mod hub;

pub use hub::Hub;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpSocket, TcpStream};

use crate::prefixed::Prefixed;

/// Accepts connections on `listener` forever, serving WebSocket upgrades at `/ws`.
pub async fn serve(listener: TcpListener, hub: Arc<Hub>) {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                // Typically EMFILE: back off instead of spinning.
                eprintln!("accept: {e}");
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let hub = hub.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| handle(req, hub.clone()));
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades()
                .await;
        });
    }
}

fn status(code: StatusCode) -> Response<Empty<Bytes>> {
    let mut r = Response::new(Empty::new());
    *r.status_mut() = code;
    r
}

async fn handle(
    mut req: Request<Incoming>,
    hub: Arc<Hub>,
) -> Result<Response<Empty<Bytes>>, Infallible> {
    if req.uri().path() != "/ws" {
        return Ok(status(StatusCode::NOT_FOUND));
    }
    if !fastwebsockets::upgrade::is_upgrade_request(&req) {
        return Ok(status(StatusCode::UPGRADE_REQUIRED));
    }
    // Take hyper's upgrade future ourselves: we want the raw TCP stream back,
    // not a full fastwebsockets `WebSocket` (whose buffers we would only drop).
    let on_upgrade = hyper::upgrade::on(&mut req);
    let response = match fastwebsockets::upgrade::upgrade(&mut req) {
        Ok((response, _unused)) => response,
        Err(_) => return Ok(status(StatusCode::BAD_REQUEST)),
    };
    tokio::spawn(async move {
        let Ok(upgraded) = on_upgrade.await else {
            return;
        };
        let Ok(parts) = upgraded.downcast::<TokioIo<TcpStream>>() else {
            return;
        };
        let (rd, wr) = parts.io.into_inner().into_split();
        // Copy the read-ahead out: hyper's `Bytes` pin its whole read buffer.
        let rd = Prefixed::new(&parts.read_buf, rd);
        drop(parts.read_buf);
        conn::run(rd, wr, hub).await;
    });
    Ok(response)
}

/// Accept backlog: a connection storm should not hit SYN retransmits (1 s) at 1,024.
const BACKLOG: u32 = 4096;

/// Binds `addr` and returns the listener.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}
