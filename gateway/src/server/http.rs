//! Plugin HTTP routes (`on-http`), behind the admin-key guard where the route asks for it.

use super::request::{
    Body, authenticate, error, header, headers, plugin_unavailable, serving_slot,
};
use crate::app::{App, Live};
use crate::config::Route;
use crate::plugin::{self, CallError};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::{Request, Response, StatusCode};
use std::net::SocketAddr;
use std::sync::Arc;

/// Checks the admin key (`X-API-Key` or `Authorization: Bearer`); the error is the ready 401,
/// or 503 when no key is configured.
pub(super) fn admin_ok(app: &App, req: &Request<Incoming>) -> Result<(), Box<Response<Body>>> {
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

pub async fn http_route(
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
