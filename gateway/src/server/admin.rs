//! The admin page (`/admin`, one HTML file built into the binary) and the JSON endpoints behind
//! the admin key that it calls: `GET /admin/api/status` and `POST /admin/api/publish`.

use super::http::admin_ok;
use super::request::{Body, error, json};
use crate::app::{App, Live};
use crate::plugin::{MAX_TOPIC, split_topic_key};
use crate::wire::codec;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderName, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{Value, json};
use std::sync::atomic::Ordering::Relaxed;

/// The page's URL.
pub const PAGE: &str = "/admin";

/// Most connections and topics listed in one status answer (totals are always exact).
pub const MAX_LISTED: usize = 1000;

const HTML: &str = include_str!("admin.html");

/// Whether `path` is the admin page or one of its endpoints.
pub fn is_admin_path(path: &str) -> bool {
    path == PAGE || path == "/admin/" || path.starts_with("/admin/api/")
}

/// Answers a request for the admin page or its API.
pub async fn handle(app: &App, live: &Live, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path();
    let method = req.method().clone();
    match (path, &method) {
        (PAGE | "/admin/", &Method::GET | &Method::HEAD) => page(),
        ("/admin/api/status", &Method::GET) => match admin_ok(app, &req) {
            Ok(()) => json(StatusCode::OK, status(app, live)),
            Err(r) => *r,
        },
        ("/admin/api/publish", &Method::POST) => match admin_ok(app, &req) {
            Ok(()) => publish(app, live, req).await,
            Err(r) => *r,
        },
        (PAGE | "/admin/" | "/admin/api/status" | "/admin/api/publish", _) => {
            error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
        }
        _ => error(StatusCode::NOT_FOUND, "not found"),
    }
}

/// The page itself: no key needed to load it, every call it makes sends the key.
fn page() -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from_static(HTML.as_bytes())));
    let h = r.headers_mut();
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        HeaderName::from_static("content-security-policy"),
        HeaderValue::from_static(
            "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
             connect-src 'self'; frame-ancestors 'none'",
        ),
    );
    h.insert(
        HeaderName::from_static("x-content-type-options"),
        HeaderValue::from_static("nosniff"),
    );
    r
}

/// Connections, topics and plugins of this gateway, lists capped at [`MAX_LISTED`].
fn status(app: &App, live: &Live) -> Value {
    let (conn_total, mut conns) = app.hub.sample(MAX_LISTED);
    conns.sort_by_key(|c| c.id);
    let connections: Vec<Value> = conns
        .iter()
        .map(|c| {
            let claims: Option<Value> = c
                .claims
                .as_deref()
                .and_then(|s| serde_json::from_str(s).ok());
            let claim = |k: &str| claims.as_ref().and_then(|v| v.get(k)).cloned();
            json!({
                "id": c.id.to_string(),
                "plugin": &*c.plugin,
                "route": &*c.route,
                "path": c.head.path(),
                "sub": claim("sub").or_else(|| claim("yuserid")),
                "username": claim("username"),
                "remote": c.remote.to_string(),
                "connected_at_ms": c.connected_at_ms,
                "last_seen_ms": c.last_seen_ms.load(Relaxed),
                "topics": c.topic_count(),
            })
        })
        .collect();
    let (topic_total, mut topics) = app.hub.topic_sample(MAX_LISTED);
    topics.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let topics: Vec<Value> = topics
        .iter()
        .map(|(key, members)| {
            let (plugin, topic) = split_topic_key(key);
            json!({ "plugin": plugin, "topic": topic, "members": members })
        })
        .collect();
    let plugins: Vec<Value> = live
        .plugins
        .iter()
        .map(|(name, slot)| {
            let mut p = super::ops::plugin_summary(slot);
            p["name"] = json!(name);
            p
        })
        .collect();
    json!({
        "uptime_seconds": app.started.elapsed().as_secs(),
        "cluster": app.cluster.health(),
        "connections": { "total": conn_total, "listed": connections.len(), "list": connections },
        "topics": { "total": topic_total, "listed": topics.len(), "list": topics },
        "plugins": plugins,
        "max_listed": MAX_LISTED,
    })
}

/// `{plugin, topic, data}`: `data` (a string as it is, anything else as JSON text) goes as one
/// text frame to the topic's members on this gateway and, with `[redis]`, on every other.
async fn publish(app: &App, live: &Live, req: Request<Incoming>) -> Response<Body> {
    let limit = live.config.server.max_http_body_bytes;
    let body = match Limited::new(req.into_body(), limit).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return error(StatusCode::PAYLOAD_TOO_LARGE, "request body too large"),
    };
    let Ok(Value::Object(mut body)) = serde_json::from_slice::<Value>(&body) else {
        return error(
            StatusCode::BAD_REQUEST,
            "body must be a JSON object {plugin, topic, data}",
        );
    };
    let data = body.remove("data");
    let (Some(Value::String(plugin)), Some(Value::String(topic))) =
        (body.get("plugin"), body.get("topic"))
    else {
        return error(StatusCode::BAD_REQUEST, "plugin and topic must be strings");
    };
    if topic.is_empty() || topic.len() > MAX_TOPIC {
        return error(
            StatusCode::BAD_REQUEST,
            &format!("topic must be 1 to {MAX_TOPIC} bytes"),
        );
    }
    let Some(slot) = live.plugins.get(plugin) else {
        return error(StatusCode::NOT_FOUND, &format!("no plugin '{plugin}'"));
    };
    let text = match data {
        Some(Value::String(s)) => s,
        Some(Value::Null) | None => {
            return error(StatusCode::BAD_REQUEST, "data is required");
        }
        Some(v) => v.to_string(),
    };
    let key = slot.shared.topic_key(topic);
    let frame = codec::encode(codec::op::TEXT, text.as_bytes());
    let local = app.cluster.publish(&key, &frame, None);
    tracing::info!(plugin = %plugin, topic = %topic, local, bytes = text.len(), "admin publish");
    json(
        StatusCode::OK,
        json!({
            "published": true,
            "local_recipients": local,
            "clustered": app.cluster.stats().is_some(),
        }),
    )
}
