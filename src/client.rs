//! A client for the eva-hub protocol, in either codec.
//!
//! Used by the integration tests and the load generator; also a working
//! example of `docs/PROTOCOL.md`.
//!
//! ```no_run
//! # async fn demo() -> Result<(), eva_hub::client::ClientError> {
//! use eva_hub::client::{Client, ConnectOptions};
//! use eva_hub::protocol::{ClientFrame, Codec};
//! let addr = "127.0.0.1:8080".parse().unwrap();
//! let mut c = Client::connect(addr, ConnectOptions::new(Codec::Json, "dev:participant:alice")).await?;
//! let welcome = c.recv().await?;
//! # Ok(()) }
//! ```

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};

use crate::protocol::{ClientFrame, Codec, ServerFrame};
use crate::secret::Secret;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("connect failed: {0}")]
    Connect(#[from] std::io::Error),
    /// The hub answered the handshake with an HTTP error.
    #[error("handshake refused with HTTP {status}: {body}")]
    Refused { status: u16, body: String },
    #[error("websocket: {0}")]
    WebSocket(#[from] tungstenite::Error),
    #[error("undecodable frame from the hub: {0}")]
    Decode(String),
    #[error("timed out")]
    Timeout,
}

/// How to connect.
#[derive(Clone, Debug)]
pub struct ConnectOptions {
    pub codec: Codec,
    /// The credential, if any.
    pub token: Option<Secret>,
    /// Send the token in an `auth` frame (as browsers must) instead of the
    /// `Authorization` header.
    pub token_in_frame: bool,
    /// Bind this source address (load tests spread connections over
    /// several loopback addresses).
    pub source: Option<IpAddr>,
    /// Subprotocols to offer instead of the codec's own (to test refusal).
    pub subprotocols: Option<Vec<String>>,
    /// An `Origin` header to send.
    pub origin: Option<String>,
    /// Read buffer of the client's WebSocket; small for idle-connection
    /// tests with thousands of clients.
    pub read_buffer: usize,
    /// Kernel receive buffer (SO_RCVBUF), to play a slow reader.
    pub recv_buffer: Option<u32>,
}

impl ConnectOptions {
    pub fn new(codec: Codec, token: impl Into<String>) -> ConnectOptions {
        ConnectOptions {
            codec,
            token: Some(Secret::new(token)),
            token_in_frame: false,
            source: None,
            subprotocols: None,
            origin: None,
            read_buffer: 64 * 1024,
            recv_buffer: None,
        }
    }
}

/// Something read from the hub.
#[derive(Clone, Debug, PartialEq)]
pub enum Incoming {
    Frame(ServerFrame),
    /// The hub closed the connection, with its code and reason if it sent
    /// a close frame.
    Closed(Option<(u16, String)>),
}

impl Incoming {
    pub fn frame(self) -> Option<ServerFrame> {
        match self {
            Incoming::Frame(f) => Some(f),
            Incoming::Closed(_) => None,
        }
    }
}

#[derive(Debug)]
pub struct Client {
    ws: WebSocketStream<TcpStream>,
    codec: Codec,
}

async fn tcp(
    addr: SocketAddr,
    source: Option<IpAddr>,
    recv_buffer: Option<u32>,
) -> std::io::Result<TcpStream> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(ip) = source {
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    if let Some(n) = recv_buffer {
        socket.set_recv_buffer_size(n)?;
    }
    socket.connect(addr).await
}

impl Client {
    /// Opens a WebSocket to `addr`'s `/v1/ws`.
    pub async fn connect(addr: SocketAddr, opts: ConnectOptions) -> Result<Client, ClientError> {
        let stream = tcp(addr, opts.source, opts.recv_buffer).await?;
        let _ = stream.set_nodelay(true);
        let mut req = format!("ws://{addr}/v1/ws").into_client_request()?;
        let protocols = opts
            .subprotocols
            .clone()
            .unwrap_or_else(|| vec![opts.codec.subprotocol().to_owned()]);
        let h = req.headers_mut();
        if !protocols.is_empty()
            && let Ok(v) = HeaderValue::from_str(&protocols.join(", "))
        {
            h.insert("Sec-WebSocket-Protocol", v);
        }
        if let (Some(t), false) = (&opts.token, opts.token_in_frame)
            && let Ok(v) = HeaderValue::from_str(&format!("Bearer {}", t.expose()))
        {
            h.insert("Authorization", v);
        }
        if let Some(o) = &opts.origin
            && let Ok(v) = HeaderValue::from_str(o)
        {
            h.insert("Origin", v);
        }
        let config = WebSocketConfig::default()
            .read_buffer_size(opts.read_buffer)
            .write_buffer_size(0);
        let (ws, _) =
            match tokio_tungstenite::client_async_with_config(req, stream, Some(config)).await {
                Ok(ok) => ok,
                Err(tungstenite::Error::Http(res)) => {
                    let status = res.status().as_u16();
                    let body = res
                        .body()
                        .as_ref()
                        .map(|b| String::from_utf8_lossy(b).into_owned())
                        .unwrap_or_default();
                    return Err(ClientError::Refused { status, body });
                }
                Err(e) => return Err(e.into()),
            };
        let mut client = Client {
            ws,
            codec: opts.codec,
        };
        if let (Some(t), true) = (opts.token, opts.token_in_frame) {
            client.send(&ClientFrame::Auth { token: t }).await?;
        }
        Ok(client)
    }

    pub fn codec(&self) -> Codec {
        self.codec
    }

    /// Sends a frame in the connection's codec.
    pub async fn send(&mut self, frame: &ClientFrame) -> Result<(), ClientError> {
        let msg = encode(self.codec, frame);
        self.ws.send(msg).await?;
        Ok(())
    }

    /// Sends several frames with one flush at the end, so that they reach
    /// the hub together, as a publisher streaming events sends them.
    pub async fn send_batch(&mut self, frames: &[ClientFrame]) -> Result<(), ClientError> {
        for frame in frames {
            self.ws.feed(encode(self.codec, frame)).await?;
        }
        self.ws.flush().await?;
        Ok(())
    }

    /// Sends any WebSocket message as is (for malformed-input tests).
    pub async fn send_raw(&mut self, msg: Message) -> Result<(), ClientError> {
        self.ws.send(msg).await?;
        Ok(())
    }

    /// The next frame, or the close.
    pub async fn recv(&mut self) -> Result<Incoming, ClientError> {
        next_incoming(&mut self.ws, self.codec).await
    }

    /// The next frame or close within `d`.
    pub async fn recv_timeout(&mut self, d: Duration) -> Result<Incoming, ClientError> {
        tokio::time::timeout(d, self.recv())
            .await
            .map_err(|_| ClientError::Timeout)?
    }

    /// Sends a close frame and waits for the hub's.
    pub async fn close(mut self) -> Result<(), ClientError> {
        self.ws.close(None).await?;
        while let Some(Ok(_)) = self.ws.next().await {}
        Ok(())
    }

    /// Splits into a sender and a receiver that can run on separate tasks.
    pub fn split(self) -> (ClientSender, ClientReceiver) {
        let (sink, stream) = self.ws.split();
        (
            ClientSender {
                sink,
                codec: self.codec,
            },
            ClientReceiver {
                stream,
                codec: self.codec,
            },
        )
    }
}

/// Encodes a client frame as a WebSocket message of the codec's type.
pub fn encode(codec: Codec, frame: &ClientFrame) -> Message {
    let bytes = codec.encode_payload(frame);
    match codec {
        Codec::Json => Message::Text(String::from_utf8(bytes).expect("JSON is UTF-8").into()),
        Codec::MsgPack => Message::Binary(bytes.into()),
    }
}

/// Reads until a frame or the close. A connection that ends, however it
/// ends, is `Closed`; only real protocol errors are errors.
async fn next_incoming<S>(stream: &mut S, codec: Codec) -> Result<Incoming, ClientError>
where
    S: futures_util::Stream<Item = Result<Message, tungstenite::Error>> + Unpin,
{
    loop {
        let msg = match stream.next().await {
            None => return Ok(Incoming::Closed(None)),
            Some(Ok(m)) => m,
            Some(Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed)) => {
                return Ok(Incoming::Closed(None));
            }
            Some(Err(tungstenite::Error::Io(e)))
                if e.kind() == std::io::ErrorKind::ConnectionReset =>
            {
                return Ok(Incoming::Closed(None));
            }
            Some(Err(e)) => return Err(e.into()),
        };
        if let Some(incoming) = decode(codec, msg)? {
            return Ok(incoming);
        }
    }
}

/// Decodes a message from the hub; `None` for control frames.
pub fn decode(codec: Codec, msg: Message) -> Result<Option<Incoming>, ClientError> {
    let frame = match msg {
        Message::Text(t) => codec.decode::<ServerFrame>(t.as_bytes()),
        Message::Binary(b) => codec.decode::<ServerFrame>(&b),
        Message::Close(c) => {
            return Ok(Some(Incoming::Closed(
                c.map(|c| (u16::from(c.code), c.reason.to_string())),
            )));
        }
        _ => return Ok(None),
    };
    frame
        .map(|f| Some(Incoming::Frame(f)))
        .map_err(ClientError::Decode)
}

/// The sending half of a split client.
#[derive(Debug)]
pub struct ClientSender {
    sink: SplitSink<WebSocketStream<TcpStream>, Message>,
    codec: Codec,
}

impl ClientSender {
    pub async fn send(&mut self, frame: &ClientFrame) -> Result<(), ClientError> {
        self.sink.send(encode(self.codec, frame)).await?;
        Ok(())
    }

    /// Sends an already encoded message (load generators pre-encode).
    pub async fn send_message(&mut self, msg: Message) -> Result<(), ClientError> {
        self.sink.send(msg).await?;
        Ok(())
    }

    /// Sends several messages with one flush at the end.
    pub async fn send_all(
        &mut self,
        msgs: impl IntoIterator<Item = Message>,
    ) -> Result<(), ClientError> {
        for m in msgs {
            self.sink.feed(m).await?;
        }
        self.sink.flush().await?;
        Ok(())
    }
}

/// The receiving half of a split client.
#[derive(Debug)]
pub struct ClientReceiver {
    stream: SplitStream<WebSocketStream<TcpStream>>,
    codec: Codec,
}

impl ClientReceiver {
    pub async fn recv(&mut self) -> Result<Incoming, ClientError> {
        next_incoming(&mut self.stream, self.codec).await
    }

    /// The raw next message, undecoded (load generators decode lazily).
    pub async fn recv_message(&mut self) -> Option<Result<Message, ClientError>> {
        self.stream.next().await.map(|r| r.map_err(Into::into))
    }
}
