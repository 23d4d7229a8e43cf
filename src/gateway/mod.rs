//! The public listener: the accept loop, HTTP/1.1 with a handshake
//! deadline, and the routes (WebSocket, REST, health, the console's pages).
//!
//! The accept loop is ours rather than a framework's so the hub controls
//! the socket options, the deadline for a complete request, and shutdown:
//! stop accepting, let in-flight requests finish, hand WebSockets to the
//! hub's drain.

pub mod credentials;
pub mod ingest;
pub mod jobs;
pub mod openapi;
pub mod pages;
pub mod rest;
pub mod webhooks;
pub mod ws;

use std::future::Future;
use std::net::SocketAddr;

use axum::Router;
use axum::extract::{ConnectInfo, DefaultBodyLimit};
use axum::http::header;
use axum::routing::get;
use bytes::Bytes;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::hub::Hub;

/// Every route of the public listener.
pub fn router(hub: Hub) -> Router {
    let max_body = hub.settings.server.max_body_bytes;
    let (routes, api) = openapi::routes().split_for_parts();
    // Rendered once: the document is the same for the life of the process.
    let api = Bytes::from(openapi::render(&api));
    routes
        .merge(pages::routes())
        .route(
            "/v1/openapi.json",
            get(move || {
                let api = api.clone();
                async move { ([(header::CONTENT_TYPE, "application/json")], api) }
            }),
        )
        .fallback(rest::not_found)
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(hub)
}

/// Accepts connections until `shutdown` resolves, then stops accepting and
/// asks open HTTP connections to finish their current request.
pub async fn serve(listener: TcpListener, hub: Hub, shutdown: impl Future<Output = ()>) {
    let app = router(hub.clone());
    let handshake_timeout = hub.settings.server.handshake_timeout();
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = tcp.set_nodelay(true);
        let app = app.clone();
        let mut stop_rx = stop_rx.clone();
        tokio::spawn(async move {
            let service =
                tower::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                    req.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
                    let mut app = app.clone();
                    async move { tower::Service::call(&mut app, req).await }
                });
            let mut builder = http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(handshake_timeout)
                .keep_alive(true);
            let conn = builder
                .serve_connection(TokioIo::new(tcp), TowerToHyperService::new(service))
                .with_upgrades();
            tokio::pin!(conn);
            tokio::select! {
                res = conn.as_mut() => {
                    if let Err(e) = res {
                        tracing::debug!(%peer, error = %e, "http connection ended with an error");
                    }
                }
                _ = stop_rx.changed() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
    }
    let _ = stop_tx.send(true);
}
