//! `GET /v1/ws`: the WebSocket handshake, and the task that runs each
//! connection afterwards.
//!
//! The handshake is done here rather than by a framework so the hub can
//! (a) answer a handshake without a supported subprotocol with a 400 that
//! says why, (b) authenticate from the `Authorization` header before
//! upgrading, and (c) take the raw `TcpStream` back from hyper after the
//! upgrade: the writer needs the socket itself for vectored writes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::{FutureExt, StreamExt};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::error::ProtocolError;
use tokio_tungstenite::tungstenite::protocol::{Role as WsRole, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use super::rest::{ErrorBody, error_response};
use crate::auth::limits::{Slot, TenantRefusal, hold};
use crate::auth::origin::OriginRefusal;
use crate::auth::{AuthError, bearer};
use crate::connection::io::ServerIo;
use crate::connection::outbox::Outbox;
use crate::connection::{CLOSE_LINGER, ConnHandle, write_loop};
use crate::hub::client::{Client, Next};
use crate::hub::{Hub, HubError, refuse};
use crate::identity::Identity;
use crate::protocol::{CloseCode, Codec, ErrorCode, JSON_SUBPROTOCOL, MSGPACK_SUBPROTOCOL};

/// Picks the first subprotocol the client offers that the hub speaks.
fn negotiate(headers: &HeaderMap) -> Option<Codec> {
    headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find_map(Codec::from_subprotocol)
}

fn bad_request(message: String) -> Response {
    error_response(&refuse(ErrorCode::Invalid, message))
}

fn header_has(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// The WebSocket endpoint: `eva.v1.json` or `eva.v1.msgpack` as the
/// subprotocol, credentials in `Authorization` or in a first `auth` frame.
/// The frames are described in docs/PROTOCOL.md and
/// docs/protocol.schema.json.
#[utoipa::path(
    get,
    path = "/v1/ws",
    tag = "realtime",
    params(
        ("Sec-WebSocket-Protocol" = String, Header, description = "`eva.v1.json` and/or `eva.v1.msgpack`, in order of preference"),
        ("Authorization" = Option<String>, Header, description = "`Bearer <connection token>`; without it, send an `auth` frame first (browsers)"),
    ),
    responses(
        (status = 101, description = "Switched to WebSocket with the chosen subprotocol"),
        (status = 400, description = "Not a WebSocket handshake, or no supported subprotocol", body = ErrorBody),
        (status = 401, description = "`unauthorized`: a bad token in `Authorization`, or neither `Origin` nor `Authorization` (outside `--dev`); `token_expired`: a genuine token whose time is up (fetch a fresh one)", body = ErrorBody),
        (status = 403, description = "The origin is not allowed, or the credentials do not allow this", body = ErrorBody),
        (status = 429, description = "Too many connections from this address or tenant", body = ErrorBody),
        (status = 503, description = "The hub is shutting down", body = ErrorBody),
    )
)]
pub async fn upgrade(
    State(hub): State<Hub>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    mut req: Request,
) -> Response {
    let headers = req.headers();
    if !header_has(headers, header::CONNECTION, "upgrade")
        || !header_has(headers, header::UPGRADE, "websocket")
    {
        return bad_request(
            "this endpoint only speaks WebSocket: send Connection: Upgrade and Upgrade: websocket"
                .into(),
        );
    }
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_none_or(|v| v.as_bytes() != b"13")
    {
        return bad_request("Sec-WebSocket-Version must be 13".into());
    }
    let Some(key) = headers.get(header::SEC_WEBSOCKET_KEY).cloned() else {
        return bad_request("Sec-WebSocket-Key is missing".into());
    };
    let Some(codec) = negotiate(headers) else {
        return bad_request(format!(
            "no supported subprotocol offered: send Sec-WebSocket-Protocol with {JSON_SUBPROTOCOL} or {MSGPACK_SUBPROTOCOL}"
        ));
    };
    if hub.is_draining() {
        return error_response(&refuse(
            ErrorCode::Unavailable,
            "the hub is shutting down; reconnect to another node",
        ));
    }
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    // Cross-site WebSocket hijacking: a browser page of another site is
    // refused before anything else about it is looked at.
    if let Err(e) = hub.origins.check(
        headers.get(header::ORIGIN).map(HeaderValue::as_bytes),
        headers.contains_key(header::AUTHORIZATION),
    ) {
        tracing::info!(%peer, refusal = %e, "WebSocket handshake refused by the origin policy");
        crate::metrics::auth_refused("origin");
        return match e {
            OriginRefusal::NotAllowed => {
                error_response(&refuse(ErrorCode::Forbidden, "this origin may not connect"))
            }
            OriginRefusal::CredentialsRequired => error_response(&refuse(
                ErrorCode::Unauthorized,
                "missing or invalid credentials",
            )),
        };
    }
    // Before the credentials are checked, so a flood from one address
    // cannot make the hub verify signatures for it.
    let mut slots = Vec::new();
    match hub.limiter.admit_ip(peer.ip()).await {
        Ok(slot) => hold(&mut slots, slot),
        Err(e) => {
            tracing::info!(%peer, "WebSocket handshake refused: too many connections from this address");
            crate::metrics::limit_hit("connections_per_ip");
            return error_response(&e.into());
        }
    }
    // Credentials in the header are checked before the upgrade, so a bad
    // token never gets a WebSocket. Without a header, the client has
    // `auth_timeout_ms` to send an `auth` frame.
    let identity = match bearer(authorization) {
        Some(token) => match hub.auth.connection(token).await {
            // Boxed: the connection task keeps it until it is installed.
            Ok(identity) => Some(Box::new(identity)),
            Err(e) => return auth_refusal(&e, peer),
        },
        None if authorization.is_some() => {
            return auth_refusal(
                &AuthError::Invalid("malformed Authorization header".into()),
                peer,
            );
        }
        None => None,
    };
    if let Some(identity) = &identity {
        match hub.admit_tenant(identity).await {
            Ok(slot) => hold(&mut slots, slot),
            Err(TenantRefusal::Full) => {
                crate::metrics::limit_hit("connections_per_tenant");
                tracing::info!(%peer, tenant = %identity.tenant, "WebSocket handshake refused: tenant connection limit");
                return error_response(&HubError::RateLimited {
                    what: "connections for this tenant",
                    retry_after: Duration::from_secs(1),
                });
            }
            Err(TenantRefusal::Inactive) => {
                return auth_refusal(&AuthError::Invalid("tenant deactivated".into()), peer);
            }
        }
    }
    let on_upgrade = hyper::upgrade::on(&mut req);
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    tokio::spawn(connection_task(
        Connection::prepare(hub, codec, identity, peer, slots),
        on_upgrade,
    ));
    let mut res = StatusCode::SWITCHING_PROTOCOLS.into_response();
    let h = res.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    if let Ok(v) = HeaderValue::from_str(&accept) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    h.insert(
        header::SEC_WEBSOCKET_PROTOCOL,
        HeaderValue::from_static(codec.subprotocol()),
    );
    res
}

fn auth_refusal(e: &AuthError, peer: SocketAddr) -> Response {
    // The log says why; the client only learns that it was refused, in the
    // same words whatever the reason, so refusals cannot be used to probe
    // which part of a forged token was right. Expiry is the one exception:
    // it is only reported for a token whose signature verified, so it
    // tells nothing to someone without a genuine token, and it tells the
    // client to fetch a fresh one rather than give up.
    tracing::info!(%peer, error = %e, "WebSocket authentication refused");
    crate::metrics::auth_refused(e.label());
    let code = match e {
        AuthError::Forbidden(_) => ErrorCode::Forbidden,
        AuthError::Unavailable(_) => ErrorCode::Unavailable,
        AuthError::Expired => ErrorCode::TokenExpired,
        _ => ErrorCode::Unauthorized,
    };
    let message = match code {
        ErrorCode::Forbidden => "these credentials do not allow this",
        ErrorCode::Unavailable => "authentication is unavailable; retry",
        ErrorCode::TokenExpired => "the token has expired: get a fresh one and reconnect",
        _ => "missing or invalid credentials",
    };
    error_response(&refuse(code, message))
}

/// Why the reader stopped.
#[derive(Debug, PartialEq, Eq)]
enum ReadEnd {
    /// The client sent a close frame (tungstenite queued the reply).
    ClientClosed,
    /// The socket ended or failed.
    Eof,
    /// The hub closes the connection with this code.
    Close(CloseCode),
}

fn ws_config(hub: &Hub) -> WebSocketConfig {
    let ws = &hub.settings.websocket;
    // Explicit limits: the library defaults (64 MiB messages, 16 MiB
    // frames, 128 KiB read buffer per connection) are wrong for a hub.
    // Writes never go through tungstenite's buffer except its own small
    // control replies.
    WebSocketConfig::default()
        .read_buffer_size(ws.read_buffer_bytes)
        .write_buffer_size(0)
        .max_write_buffer_size(64 * 1024)
        .max_message_size(Some(ws.max_message_bytes))
        .max_frame_size(Some(ws.max_frame_bytes))
}

/// The task of one connection: it waits for hyper to hand the socket
/// over, then serves the connection until it ends. A plain function that
/// returns the future, so that the future holds each value once: as an
/// `async fn`, it would also keep a second place for `c` (the arguments
/// are moved into locals), 240 bytes on every connection.
#[allow(clippy::manual_async_fn)]
fn connection_task(
    mut c: Connection,
    on_upgrade: hyper::upgrade::OnUpgrade,
) -> impl Future<Output = ()> + Send + 'static {
    async move {
        let Some((tcp, early)) = upgraded_socket(on_upgrade.await, c.client.conn.peer) else {
            return;
        };
        c.open(tcp, early);
        serve(&mut c).await
    }
}

/// The TCP socket hyper upgraded, and the bytes it had already read past
/// the handshake. A plain function, not part of the connection's future:
/// what it handles would otherwise keep space in that future for the
/// connection's whole life.
fn upgraded_socket(
    upgraded: hyper::Result<hyper::upgrade::Upgraded>,
    peer: SocketAddr,
) -> Option<(TcpStream, Vec<u8>)> {
    let upgraded = match upgraded {
        Ok(u) => u,
        Err(e) => {
            tracing::debug!(%peer, error = %e, "upgrade failed");
            return None;
        }
    };
    match upgraded.downcast::<TokioIo<TcpStream>>() {
        Ok(parts) => {
            // `read_buf` is a slice of hyper's whole read buffer: keep only
            // its bytes, or every connection pins that buffer.
            let early = parts.read_buf.to_vec();
            Some((parts.io.into_inner(), early))
        }
        Err(_) => {
            tracing::error!("upgraded connection is not a TcpStream");
            None
        }
    }
}

/// One connection: prepared at the handshake, opened once hyper hands the
/// socket over, then served by its task.
///
/// Its task's future is what an idle connection costs, so it is built to
/// stay small: the task holds this one value and [`serve`] only borrows
/// it, and the set-up is synchronous. (An async block keeps space for each
/// value it captures and for each local a value is moved into, for its
/// whole life, even after the move.)
struct Connection {
    hub: Hub,
    client: Client,
    /// The client's outbox, held apart so that the writer can borrow it
    /// while the reader borrows the client.
    outbox: Arc<Outbox>,
    /// An identity from the `Authorization` header, installed at `open`.
    identity: Option<Box<Identity>>,
    /// Set by `open`.
    wr: Option<Arc<OwnedWriteHalf>>,
    /// Set by `open`, taken when the WebSocket stream is built. Boxed: it
    /// is only needed for that moment, and inline it would cost every
    /// connection's task 24 bytes more for its whole life.
    rd: Option<Box<ReadStart>>,
}

/// The socket's read half and the bytes read past the handshake.
type ReadStart = (OwnedReadHalf, Vec<u8>);

impl Connection {
    /// Creates the connection's outbox, handle and client. `slots` are the
    /// connection slots taken at the handshake; they are given back when
    /// the connection ends.
    fn prepare(
        hub: Hub,
        codec: Codec,
        identity: Option<Box<Identity>>,
        peer: SocketAddr,
        slots: Vec<Slot>,
    ) -> Connection {
        let outbox = Arc::new(Outbox::new(hub.outbox_limits()));
        let conn = Arc::new(ConnHandle::new(codec, outbox.clone(), peer));
        let mut client = Client::new(conn, hub.limiter.connection());
        client.slots = slots;
        Connection {
            hub,
            client,
            outbox,
            identity,
            wr: None,
            rd: None,
        }
    }

    /// Sets the upgraded socket up, installs a header-authenticated
    /// identity (sending `welcome`), and registers the connection with
    /// the hub. `early` holds the bytes read past the handshake.
    fn open(&mut self, tcp: TcpStream, early: Vec<u8>) {
        let _ = tcp.set_nodelay(true);
        let sndbuf = self.hub.settings.websocket.send_buffer_bytes;
        if sndbuf > 0 {
            let _ = socket2_sndbuf(&tcp, sndbuf);
        }
        let (rd, wr) = tcp.into_split();
        let wr = Arc::new(wr);
        self.outbox.attach_socket(wr.clone());
        if let Some(identity) = self.identity.take() {
            self.hub.welcome(&mut self.client, *identity);
        }
        self.hub.register(self.client.conn.clone());
        self.wr = Some(wr);
        self.rd = Some(Box::new((rd, early)));
    }
}

/// Runs one connection from its WebSocket stream to teardown.
async fn serve(c: &mut Connection) {
    // Unboxed at once, so the box is freed here rather than kept to the
    // end of the connection.
    let Some((rd, early)) = c.rd.take().map(|b| *b) else {
        return;
    };
    let Connection {
        hub,
        client,
        outbox,
        wr: Some(wr),
        ..
    } = c
    else {
        return;
    };
    // The set-up and tear-down futures are boxed: they run once, and the
    // connection's task should not reserve their space for its whole life.
    let mut ws = Box::pin(WebSocketStream::from_partially_read(
        ServerIo::new(rd, outbox.clone()),
        early,
        WsRole::Server,
        Some(ws_config(hub)),
    ))
    .await;
    {
        let reader = read_loop(hub, client, &mut ws);
        let writer = write_loop(wr, outbox);
        // Armed only once closing begins, so an open connection holds no
        // timer.
        let mut deadline: Option<std::pin::Pin<Box<tokio::time::Sleep>>> = None;
        tokio::pin!(reader, writer);
        let (mut reader_done, mut writer_done, mut closing) = (false, false, false);
        loop {
            tokio::select! {
                end = &mut reader, if !reader_done => {
                    reader_done = true;
                    match end {
                        ReadEnd::ClientClosed | ReadEnd::Eof => { outbox.finish(); }
                        ReadEnd::Close(code) => { outbox.close(code); }
                    }
                    if writer_done {
                        break;
                    }
                }
                written = &mut writer, if !writer_done => {
                    writer_done = true;
                    if written.is_err() || reader_done {
                        break;
                    }
                    // Our close frame is out; the reader waits for the
                    // client's answer until the deadline.
                }
                _ = std::future::poll_fn(|cx| outbox.poll_closing(cx)), if !closing => {
                    // Once closing starts, everything ends within the
                    // linger, even against a client that stopped reading.
                    closing = true;
                    deadline = Some(Box::pin(tokio::time::sleep(CLOSE_LINGER)));
                }
                _ = async { deadline.as_mut().expect("armed").await }, if closing => break,
            }
        }
    }
    // The read half goes before the hub forgets the connection.
    drop(ws);
    outbox.detach_socket();
    if let Some(code) = outbox.close_code() {
        crate::metrics::connection_close_code(code);
    }
    Box::pin(hub.disconnect(client)).await;
}

/// Most data messages handed to the hub at once.
const MAX_GATHERED: usize = 256;

/// Reads frames and hands data messages to the hub, until the client
/// closes, the socket fails, or the hub decides to close. Messages that
/// have already arrived are handed over together (up to
/// [`MAX_GATHERED`]), so that the hub can sequence a run of `publish`
/// frames in one step; it still handles them in order.
///
/// A plain function that returns the future, so that the future holds each
/// argument once (an `async fn` keeps a second copy of each: 24 bytes on
/// every connection).
#[allow(clippy::manual_async_fn)]
fn read_loop<'a>(
    hub: &'a Hub,
    client: &'a mut Client,
    ws: &'a mut WebSocketStream<ServerIo>,
) -> impl Future<Output = ReadEnd> + 'a {
    async move {
        loop {
            // The authentication deadline is the hub timer's job (it closes
            // the outbox), so reading needs no timer of its own.
            let first = ws.next().await;
            let (gathered, end) = gather(client, ws, first);
            if !gathered.is_empty() {
                // Boxed: handling frames is a large state machine, and an
                // idle connection should not carry its space while waiting
                // for input.
                if let Next::Close(code) = Box::pin(hub.on_messages(client, &gathered)).await {
                    return ReadEnd::Close(code);
                }
            }
            if let Some(end) = end {
                return end;
            }
        }
    }
}

/// The data messages already read, starting with `first`, up to
/// [`MAX_GATHERED`]; and why reading ends, if it does. Never waits for
/// more. (Synchronous, so the reader's future keeps no space for a
/// message while the hub handles the ones gathered.)
fn gather(
    client: &Client,
    ws: &mut WebSocketStream<ServerIo>,
    first: Option<Result<Message, WsError>>,
) -> (Vec<bytes::Bytes>, Option<ReadEnd>) {
    let codec = client.conn.codec;
    let mut gathered = Vec::new();
    let mut next = first;
    let end = loop {
        let msg = match next {
            None => break Some(ReadEnd::Eof),
            Some(Ok(m)) => m,
            Some(Err(e)) => break Some(read_error(e)),
        };
        client.conn.touch();
        if client.conn.outbox.is_closing() {
            // Closing: only wait for the client's close reply.
            if let Message::Close(_) = msg {
                break Some(ReadEnd::ClientClosed);
            }
        } else {
            match (msg, codec) {
                (Message::Text(t), Codec::Json) => gathered.push(bytes::Bytes::from(t)),
                (Message::Binary(b), Codec::MsgPack) => gathered.push(b),
                (Message::Text(_) | Message::Binary(_), _) => {
                    break Some(ReadEnd::Close(CloseCode::UnsupportedData));
                }
                (Message::Close(_), _) => break Some(ReadEnd::ClientClosed),
                (Message::Ping(_) | Message::Pong(_) | Message::Frame(_), _) => {}
            }
        }
        if gathered.len() >= MAX_GATHERED {
            break None;
        }
        match ws.next().now_or_never() {
            Some(more) => next = more,
            None => break None,
        }
    };
    (gathered, end)
}

/// Sets SO_SNDBUF on an accepted socket.
fn socket2_sndbuf(tcp: &TcpStream, bytes: u32) -> std::io::Result<()> {
    socket2::SockRef::from(tcp).set_send_buffer_size(bytes as usize)
}

fn read_error(e: WsError) -> ReadEnd {
    match e {
        WsError::Capacity(_) => ReadEnd::Close(CloseCode::MessageTooBig),
        WsError::Utf8(_) => ReadEnd::Close(CloseCode::InvalidPayload),
        // The client went away without a close frame (a closed tab, a
        // killed process, a dropped network): the socket ended, which is
        // not a protocol error to answer or to count as one.
        WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => ReadEnd::Eof,
        WsError::Protocol(p) => {
            tracing::debug!(error = %p, "WebSocket protocol error");
            ReadEnd::Close(CloseCode::ProtocolError)
        }
        _ => ReadEnd::Eof,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every idle connection holds its task: tokio stores the future with
    /// 120 bytes of its own, in steps of 128 bytes. The future is 872
    /// bytes (debug and release builds alike), so the task takes 1,024;
    /// one byte past this bound and it would take 1,152, on every
    /// connection.
    const TASK_FUTURE_MAX: usize = 904;

    #[tokio::test]
    async fn an_idle_connection_task_stays_small() {
        let mut settings = crate::config::Settings::defaults();
        settings.server.listen = "127.0.0.1:0".parse().unwrap();
        settings.server.metrics = false;
        settings.auth.dev = true;
        settings.store.database_url = "memory".to_owned().into();
        let app = crate::app::App::bind(settings).await.unwrap();
        let c = Connection::prepare(
            app.hub().clone(),
            Codec::Json,
            None,
            "127.0.0.1:1".parse().unwrap(),
            Vec::new(),
        );
        let on_upgrade = hyper::upgrade::on(axum::http::Request::new(()));
        let task = connection_task(c, on_upgrade);
        let size = std::mem::size_of_val(&task);
        assert!(
            size <= TASK_FUTURE_MAX,
            "the connection task's future grew to {size} bytes"
        );
    }

    #[test]
    fn a_client_gone_without_a_close_frame_is_an_ended_socket_not_a_protocol_error() {
        assert_eq!(
            read_error(WsError::Protocol(
                ProtocolError::ResetWithoutClosingHandshake
            )),
            ReadEnd::Eof
        );
        assert_eq!(
            read_error(WsError::Protocol(ProtocolError::NonZeroReservedBits)),
            ReadEnd::Close(CloseCode::ProtocolError)
        );
        assert_eq!(read_error(WsError::ConnectionClosed), ReadEnd::Eof);
    }
}
