//! The demo pages (`[server] demo = true`): the files `scripts/build-demo` puts in `demo_dir`,
//! served read-only under `/demo/`.

use super::request::{Body, error};
use crate::config::Config;
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{
    CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, HeaderValue, LOCATION, X_CONTENT_TYPE_OPTIONS,
};
use hyper::{Method, Response, StatusCode};
use std::path::{Path, PathBuf};

/// The URL prefix the pages are served under.
pub const PREFIX: &str = "/demo";

/// Largest file served (the bundles are a few hundred KiB).
const MAX_FILE_BYTES: u64 = 16 << 20;

/// What to tell someone who enabled the pages without building them.
const NOT_BUILT: &str = "the demo pages are not built: run scripts/build-demo";

/// Whether `path` is one of the demo pages' URLs.
pub fn is_demo_path(path: &str) -> bool {
    path == PREFIX || path.starts_with("/demo/")
}

/// The directory the pages are read from.
pub fn dir(config: &Config) -> PathBuf {
    config.resolve(&config.server.demo_dir)
}

/// Logs a warning when the pages are enabled but not built (called once at start-up).
pub async fn check_built(config: &Config) {
    if !config.server.demo {
        return;
    }
    let dir = dir(config);
    if !tokio::fs::metadata(dir.join("index.html"))
        .await
        .is_ok_and(|m| m.is_file())
    {
        tracing::warn!(dir = %dir.display(), "[server] demo = true, but {NOT_BUILT}");
    }
}

/// Answers a GET or HEAD for a demo URL.
pub async fn serve(config: &Config, method: &Method, path: &str) -> Response<Body> {
    if method != Method::GET && method != Method::HEAD {
        return error(
            StatusCode::METHOD_NOT_ALLOWED,
            "demo pages are GET and HEAD only",
        );
    }
    if path == PREFIX {
        let mut r = Response::new(Full::new(Bytes::new()));
        *r.status_mut() = StatusCode::PERMANENT_REDIRECT;
        r.headers_mut()
            .insert(LOCATION, HeaderValue::from_static("/demo/"));
        return r;
    }
    let rel = &path[PREFIX.len() + 1..];
    let rel = if rel.is_empty() { "index.html" } else { rel };
    let Some(rel) = safe_relative(rel) else {
        return error(StatusCode::NOT_FOUND, "not found");
    };
    let root = dir(config);
    let file = match resolve_inside(&root, &rel).await {
        Lookup::Found(f) => f,
        Lookup::NoRoot => return error(StatusCode::NOT_FOUND, NOT_BUILT),
        Lookup::Missing => return error(StatusCode::NOT_FOUND, "not found"),
    };
    let body = match tokio::fs::read(&file).await {
        Ok(b) => Bytes::from(b),
        Err(e) => {
            tracing::warn!(file = %file.display(), "demo page unreadable: {e}");
            return error(StatusCode::NOT_FOUND, "not found");
        }
    };
    let len = body.len();
    let mut r = Response::new(Full::new(if method == Method::HEAD {
        Bytes::new()
    } else {
        body
    }));
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(content_type(&file)));
    h.insert(CONTENT_LENGTH, HeaderValue::from(len));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    r
}

/// A request path below the prefix as a relative file path, or `None` when it could leave the
/// directory or name something the build never writes: only plain segments of ASCII letters,
/// digits, `-`, `_` and `.` (so no `%` escapes, no `\`, no empty segment, which also refuses
/// absolute paths) and none starting with a dot (`..`, hidden files).
fn safe_relative(rel: &str) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for seg in rel.split('/') {
        let plain = seg
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if seg.is_empty() || seg.starts_with('.') || !plain {
            return None;
        }
        out.push(seg);
    }
    Some(out)
}

enum Lookup {
    Found(PathBuf),
    NoRoot,
    Missing,
}

/// The file `rel` under `root`, if it is a regular file that stays inside `root` once symbolic
/// links are resolved, and not larger than [`MAX_FILE_BYTES`].
async fn resolve_inside(root: &Path, rel: &Path) -> Lookup {
    let Ok(root) = tokio::fs::canonicalize(root).await else {
        return Lookup::NoRoot;
    };
    let Ok(file) = tokio::fs::canonicalize(root.join(rel)).await else {
        return Lookup::Missing;
    };
    if !file.starts_with(&root) {
        return Lookup::Missing;
    }
    match tokio::fs::metadata(&file).await {
        Ok(m) if m.is_file() && m.len() <= MAX_FILE_BYTES => Lookup::Found(file),
        _ => Lookup::Missing,
    }
}

/// The Content-Type for a file by its extension.
fn content_type(file: &Path) -> &'static str {
    match file.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "map" | "json" => "application/json",
        "png" => "image/png",
        "svg" => "image/svg+xml",
        "ico" => "image/x-icon",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_relative_paths_pass() {
        assert_eq!(safe_relative("chat.html"), Some(PathBuf::from("chat.html")));
        assert_eq!(
            safe_relative("assets/chat.js.map"),
            Some(PathBuf::from("assets/chat.js.map"))
        );
        for bad in [
            "../secret",
            "a/../../b",
            "..",
            "/etc/passwd",
            "a//b",
            "%2e%2e/x",
            "a%2fb",
            "a\\..\\b",
            ".env",
            "a/",
            "x\0y",
        ] {
            assert_eq!(safe_relative(bad), None, "{bad}");
        }
    }

    #[test]
    fn content_types_by_extension() {
        assert_eq!(
            content_type(Path::new("a/index.html")),
            "text/html; charset=utf-8"
        );
        assert_eq!(
            content_type(Path::new("chat.js")),
            "text/javascript; charset=utf-8"
        );
        assert_eq!(content_type(Path::new("chat.js.map")), "application/json");
        assert_eq!(content_type(Path::new("x.css")), "text/css; charset=utf-8");
        assert_eq!(content_type(Path::new("x.png")), "image/png");
        assert_eq!(content_type(Path::new("x.svg")), "image/svg+xml");
        assert_eq!(content_type(Path::new("x")), "application/octet-stream");
    }

    #[tokio::test]
    async fn pages_not_built_answer_404_with_the_hint() {
        let cfg = Config::parse(
            "[server]\ndemo = true\ndemo_dir = \"no-such-dir\"\n",
            "p.toml",
            Path::new("/nonexistent"),
        )
        .unwrap();
        let r = serve(&cfg, &Method::GET, "/demo/").await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        let body = http_body_util::BodyExt::collect(r.into_body())
            .await
            .unwrap()
            .to_bytes();
        assert!(
            String::from_utf8_lossy(&body).contains("scripts/build-demo"),
            "{body:?}"
        );
        let r = serve(&cfg, &Method::POST, "/demo/").await;
        assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
        let r = serve(&cfg, &Method::GET, "/demo").await;
        assert_eq!(r.status(), StatusCode::PERMANENT_REDIRECT);
    }

    #[tokio::test]
    async fn files_outside_the_root_are_missing() {
        let tmp = std::env::temp_dir().join(format!("demo-test-{}", std::process::id()));
        let root = tmp.join("dist");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(root.join("index.html"), "<p>hi</p>").unwrap();
        std::fs::write(tmp.join("secret.txt"), "no").unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink(tmp.join("secret.txt"), root.join("link.txt")).unwrap();
        assert!(matches!(
            resolve_inside(&root, Path::new("index.html")).await,
            Lookup::Found(_)
        ));
        #[cfg(unix)]
        assert!(matches!(
            resolve_inside(&root, Path::new("link.txt")).await,
            Lookup::Missing
        ));
        assert!(matches!(
            resolve_inside(&tmp.join("nope"), Path::new("index.html")).await,
            Lookup::NoRoot
        ));
        std::fs::remove_dir_all(&tmp).unwrap();
    }
}
