//! What the route handlers share: JSON and error responses, header access, the route's token
//! check and the plugin that serves a route.

use crate::app::Live;
use crate::config::Route;
use crate::plugin::PluginSlot;
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Request, Response, StatusCode};
use std::sync::Arc;

/// Every response body is a complete buffer.
pub type Body = Full<Bytes>;

pub fn json(status: StatusCode, v: serde_json::Value) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(v.to_string())));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

pub fn error(status: StatusCode, reason: &str) -> Response<Body> {
    let label = status.canonical_reason().unwrap_or("error").to_lowercase();
    json(
        status,
        serde_json::json!({"error": label, "reason": reason}),
    )
}

pub fn header<'a, B>(req: &'a Request<B>, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

pub fn headers<B>(req: &Request<B>) -> Vec<(String, String)> {
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
pub type Authed = (Option<String>, Option<String>, Option<u64>);

/// Verifies the route's token; the error is the ready 401 response.
pub fn authenticate<B>(
    live: &Live,
    route: &Route,
    req: &Request<B>,
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

/// The route's plugin, unless it is missing or disabled.
pub fn serving_slot(live: &Live, route: &Route) -> Option<Arc<PluginSlot>> {
    live.plugins
        .get(&route.plugin)
        .filter(|s| !s.is_disabled())
        .cloned()
}

pub fn plugin_unavailable() -> Response<Body> {
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "plugin not loaded or disabled",
    )
}
