//! The few REST calls the demo makes (find or create its sessions, mint
//! tokens with an API key), over one HTTP/1.1 connection each.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::header;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpStream;

/// Where the hub listens and how to call its REST API.
#[derive(Clone, Debug)]
pub(super) struct Rest {
    pub(super) addr: SocketAddr,
    /// `host:port` as the user wrote it, for the `Host` header.
    pub(super) authority: String,
    /// An API key; none in `--dev`.
    pub(super) api_key: Option<String>,
}

impl Rest {
    /// `GET`s `path`, or `POST`s `body` to it; the answer's JSON for a 2xx,
    /// an error naming the status and the hub's message otherwise.
    pub(super) async fn call(&self, path: &str, body: Option<&Value>) -> anyhow::Result<Value> {
        tokio::time::timeout(Duration::from_secs(10), self.call_once(path, body))
            .await
            .with_context(|| format!("{path}: no answer within 10 s"))?
    }

    async fn call_once(&self, path: &str, body: Option<&Value>) -> anyhow::Result<Value> {
        let tcp = TcpStream::connect(self.addr)
            .await
            .with_context(|| format!("cannot reach the hub at {}", self.addr))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let mut req = Request::builder()
            .method(if body.is_some() { "POST" } else { "GET" })
            .uri(path)
            .header(header::HOST, &self.authority)
            .header(header::ACCEPT, "application/json");
        if let Some(key) = &self.api_key {
            req = req.header(header::AUTHORIZATION, format!("Bearer {key}"));
        }
        let payload = match body {
            Some(b) => {
                req = req.header(header::CONTENT_TYPE, "application/json");
                Bytes::from(serde_json::to_vec(b)?)
            }
            None => Bytes::new(),
        };
        let res = sender.send_request(req.body(Full::new(payload))?).await?;
        let status = res.status();
        let bytes = res.into_body().collect().await?.to_bytes();
        let json: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if !status.is_success() {
            let message = json
                .pointer("/error/message")
                .and_then(Value::as_str)
                .unwrap_or("no message");
            bail!("{path}: HTTP {}: {message}", status.as_u16());
        }
        Ok(json)
    }
}
