//! The pages the hub serves to people: the operator console (`/console/`)
//! and the participant page (`/s/{session_id}`).
//!
//! They are static files built from `console/` (TypeScript, bundled with
//! esbuild into `console/dist/`, committed) and embedded in the binary, so
//! running the hub needs no Node. The pages talk to the hub only over the
//! WebSocket, with the connection token a person types in (or, for a
//! participant, one given in the URL fragment): a page is exactly as
//! privileged as that token. What they may load is pinned by a strict
//! Content-Security-Policy: scripts and styles from the hub only, no inline
//! code, no framing, no forms posted anywhere.
//!
//! Hashed assets (`/console/assets/<name>-<hash>.js`) never change under
//! their name and are cached for a year; the HTML and `config.json` are
//! revalidated on every load (`no-cache`, with an ETag).

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use rust_embed::Embed;
use serde_json::json;

use crate::hub::Hub;

/// `console/dist/`: `console.html`, `participant.html` and `assets/`.
#[derive(Embed)]
#[folder = "console/dist/"]
struct Dist;

/// What the pages may load and where they may connect. `connect-src`
/// names `ws:`/`wss:` as well as `'self'` because some browsers do not
/// count a WebSocket to the page's own host as `'self'`.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    connect-src 'self' ws: wss:; img-src 'self' data:; font-src 'self'; manifest-src 'self'; \
    frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

const IMMUTABLE: &str = "public, max-age=31536000, immutable";
const REVALIDATE: &str = "no-cache";

/// The page routes, merged into the public router.
pub fn routes() -> Router<Hub> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/console/") }))
        .route("/console", get(|| async { Redirect::to("/console/") }))
        .route("/console/", get(console))
        .route("/console/config.json", get(config))
        .route("/console/assets/{file}", get(asset))
        .route("/s/{session}", get(participant))
}

async fn console(headers: HeaderMap) -> Response {
    file("console.html", REVALIDATE, &headers)
}

async fn participant(Path(_session): Path<String>, headers: HeaderMap) -> Response {
    // The page reads the session id from its own path; an unknown one is
    // reported there, by the hub's answer to the join.
    file("participant.html", REVALIDATE, &headers)
}

async fn asset(Path(name): Path<String>, headers: HeaderMap) -> Response {
    file(&format!("assets/{name}"), IMMUTABLE, &headers)
}

/// What the pages need to know about this hub before they connect: in
/// `--dev` the console offers a development token and the participant page
/// makes one up.
async fn config(State(hub): State<Hub>) -> Response {
    let body = json!({
        "dev": hub.settings.auth.dev,
        "version": env!("CARGO_PKG_VERSION"),
    });
    let mut res = (
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response();
    secure(res.headers_mut(), REVALIDATE);
    res
}

/// An embedded file with its type, caching and security headers; `304`
/// when the browser's copy is current.
fn file(path: &str, cache: &'static str, headers: &HeaderMap) -> Response {
    let Some(f) = Dist::get(path) else {
        let mut res = (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "not found\n",
        )
            .into_response();
        secure(res.headers_mut(), REVALIDATE);
        return res;
    };
    let etag = format!("\"{}\"", hex(&f.metadata.sha256_hash()[..16]));
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    let mut res = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mime = f.metadata.mimetype();
        let mime = if mime.starts_with("text/") || mime.ends_with("javascript") {
            format!("{mime}; charset=utf-8")
        } else {
            mime.to_owned()
        };
        ([(header::CONTENT_TYPE, mime)], f.data.into_owned()).into_response()
    };
    if let Ok(v) = HeaderValue::from_str(&etag) {
        res.headers_mut().insert(header::ETAG, v);
    }
    secure(res.headers_mut(), cache);
    res
}

fn secure(h: &mut HeaderMap, cache: &'static str) {
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        "cross-origin-resource-policy",
        HeaderValue::from_static("same-origin"),
    );
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bundle_is_embedded() {
        for page in ["console.html", "participant.html"] {
            let f = Dist::get(page).unwrap_or_else(|| panic!("{page} missing from console/dist"));
            let html = String::from_utf8_lossy(&f.data);
            // Every asset the page names is embedded too.
            for part in html.split("/console/assets/").skip(1) {
                let name: String = part
                    .chars()
                    .take_while(|c| *c != '"' && *c != '\'')
                    .collect();
                assert!(
                    Dist::get(&format!("assets/{name}")).is_some(),
                    "{page} names assets/{name}, which is not in console/dist"
                );
            }
            assert!(!html.contains("<script>"), "{page} has an inline script");
            assert!(!html.contains("style="), "{page} has an inline style");
        }
    }
}
