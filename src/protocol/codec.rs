//! The two codecs and the server side of WebSocket framing.
//!
//! The hub encodes a server frame straight into a complete WebSocket frame
//! (header plus payload) so that one encoding can be written to every
//! recipient as it is. Server frames are never masked (RFC 6455 §5.1), which
//! is what makes the bytes identical for all recipients.

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::frames::ClientFrame;

/// Subprotocol for JSON in text frames.
pub const JSON_SUBPROTOCOL: &str = "eva.v1.json";
/// Subprotocol for MessagePack in binary frames.
pub const MSGPACK_SUBPROTOCOL: &str = "eva.v1.msgpack";

/// How frames are encoded on one connection, chosen by subprotocol.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Codec {
    Json,
    MsgPack,
}

/// A frame the hub could not decode.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("unknown frame type `{0}`")]
    UnknownType(String),
    #[error("malformed frame: {0}")]
    Malformed(String),
}

/// Every client frame `type`, so a decode failure can tell an unknown type
/// from a malformed known one.
pub const CLIENT_TYPES: [&str; 21] = [
    "auth",
    "join",
    "leave",
    "state",
    "context",
    "metrics",
    "status",
    "response",
    "command_ack",
    "question",
    "takeover",
    "release",
    "command",
    "suggestion",
    "correction",
    "emergency_stop",
    "approve",
    "ack_alert",
    "publish",
    "list_sessions",
    "ping",
];

impl Codec {
    pub const ALL: [Codec; 2] = [Codec::Json, Codec::MsgPack];

    pub fn subprotocol(self) -> &'static str {
        match self {
            Codec::Json => JSON_SUBPROTOCOL,
            Codec::MsgPack => MSGPACK_SUBPROTOCOL,
        }
    }

    pub fn from_subprotocol(name: &str) -> Option<Codec> {
        match name.trim() {
            JSON_SUBPROTOCOL => Some(Codec::Json),
            MSGPACK_SUBPROTOCOL => Some(Codec::MsgPack),
            _ => None,
        }
    }

    /// Index for per-codec caches.
    pub fn index(self) -> usize {
        match self {
            Codec::Json => 0,
            Codec::MsgPack => 1,
        }
    }

    pub fn as_label(self) -> &'static str {
        match self {
            Codec::Json => "json",
            Codec::MsgPack => "msgpack",
        }
    }

    /// WebSocket opcode of data frames in this codec.
    fn opcode(self) -> u8 {
        match self {
            Codec::Json => OP_TEXT,
            Codec::MsgPack => OP_BINARY,
        }
    }

    /// Encodes a value as this codec's payload bytes.
    pub fn encode_payload<T: Serialize + ?Sized>(self, value: &T) -> Vec<u8> {
        let mut buf = Vec::with_capacity(128);
        self.encode_into(&mut buf, value);
        buf
    }

    fn encode_into<T: Serialize + ?Sized>(self, buf: &mut Vec<u8>, value: &T) {
        // Serializing our own types into a Vec cannot fail: every map key is
        // a string and every value is representable in both formats.
        let result = match self {
            Codec::Json => serde_json::to_writer(&mut *buf, value).map_err(|e| e.to_string()),
            Codec::MsgPack => {
                let mut ser = rmp_serde::Serializer::new(&mut *buf)
                    .with_struct_map()
                    .with_human_readable();
                value.serialize(&mut ser).map_err(|e| e.to_string())
            }
        };
        if let Err(e) = result {
            // Reaching this is a bug in a frame type; never panic on the hot
            // path. Clients get an internal error frame instead.
            tracing::error!(error = %e, "failed to encode a frame");
            buf.clear();
            let fallback = super::frames::ServerFrame::error(
                super::codes::ErrorCode::Internal,
                "the hub failed to encode a frame",
            );
            if let Codec::Json = self {
                let _ = serde_json::to_writer(&mut *buf, &fallback);
            } else {
                let mut ser = rmp_serde::Serializer::new(&mut *buf)
                    .with_struct_map()
                    .with_human_readable();
                let _ = fallback.serialize(&mut ser);
            }
        }
    }

    /// Encodes a value as one complete, unmasked WebSocket data frame.
    pub fn frame<T: Serialize + ?Sized>(self, value: &T) -> Bytes {
        let mut buf = Vec::with_capacity(192);
        buf.resize(MAX_HEADER, 0);
        self.encode_into(&mut buf, value);
        finish_frame(buf, self.opcode())
    }

    /// Decodes a client frame from a data frame's payload.
    pub fn decode_client(self, payload: &[u8]) -> Result<ClientFrame, DecodeError> {
        match self.decode::<ClientFrame>(payload) {
            Ok(frame) => Ok(frame),
            Err(message) => {
                #[derive(serde::Deserialize)]
                struct TypeOnly {
                    #[serde(rename = "type")]
                    kind: String,
                }
                match self.decode::<TypeOnly>(payload) {
                    Ok(t) if !CLIENT_TYPES.contains(&t.kind.as_str()) => {
                        let mut kind = t.kind;
                        kind.truncate(64);
                        Err(DecodeError::UnknownType(kind))
                    }
                    _ => Err(DecodeError::Malformed(message)),
                }
            }
        }
    }

    /// Decodes any value from this codec's payload bytes.
    pub fn decode<T: DeserializeOwned>(self, payload: &[u8]) -> Result<T, String> {
        match self {
            Codec::Json => serde_json::from_slice(payload).map_err(|e| e.to_string()),
            Codec::MsgPack => {
                let mut de = rmp_serde::Deserializer::new(payload).with_human_readable();
                T::deserialize(&mut de).map_err(|e| e.to_string())
            }
        }
    }
}

const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const MAX_HEADER: usize = 10;

/// Writes the frame header in front of a payload that was encoded after
/// `MAX_HEADER` reserved bytes, and returns the frame without copying it.
fn finish_frame(mut buf: Vec<u8>, opcode: u8) -> Bytes {
    let len = buf.len() - MAX_HEADER;
    let mut header = [0u8; MAX_HEADER];
    header[0] = 0x80 | opcode; // FIN + opcode
    let hlen = if len < 126 {
        header[1] = len as u8;
        2
    } else if len <= u16::MAX as usize {
        header[1] = 126;
        header[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        4
    } else {
        header[1] = 127;
        header[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        10
    };
    let start = MAX_HEADER - hlen;
    buf[start..MAX_HEADER].copy_from_slice(&header[..hlen]);
    Bytes::from(buf).slice(start..)
}

/// A complete close frame with a code and a short reason.
pub fn close_frame(code: u16, reason: &str) -> Bytes {
    let mut buf = vec![0u8; MAX_HEADER];
    buf.extend_from_slice(&code.to_be_bytes());
    // Control frame payloads are limited to 125 bytes.
    let reason = &reason.as_bytes()[..reason.len().min(123)];
    buf.extend_from_slice(reason);
    finish_frame(buf, OP_CLOSE)
}

/// A complete, empty ping frame. The same bytes serve every connection.
pub fn ping_frame() -> Bytes {
    finish_frame(vec![0u8; MAX_HEADER], OP_PING)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::frames::ServerFrame;

    fn parse_header(b: &[u8]) -> (u8, usize, usize) {
        let op = b[0] & 0x0f;
        assert_eq!(b[0] & 0x80, 0x80, "FIN");
        assert_eq!(b[1] & 0x80, 0, "server frames are unmasked");
        match b[1] & 0x7f {
            126 => (op, u16::from_be_bytes([b[2], b[3]]) as usize, 4),
            127 => (
                op,
                u64::from_be_bytes(b[2..10].try_into().unwrap()) as usize,
                10,
            ),
            n => (op, n as usize, 2),
        }
    }

    #[test]
    fn frames_have_correct_headers_at_every_length_class() {
        for len in [0usize, 1, 100, 125, 126, 127, 65535, 65536, 70000] {
            let text = "x".repeat(len);
            for codec in Codec::ALL {
                let frame = codec.frame(&text);
                let (op, plen, hlen) = parse_header(&frame);
                assert_eq!(op, codec.opcode());
                assert_eq!(hlen + plen, frame.len());
                let decoded: String = codec.decode(&frame[hlen..]).unwrap();
                assert_eq!(decoded, text);
            }
        }
    }

    #[test]
    fn close_frame_carries_code_and_reason() {
        let f = close_frame(4000, "slow consumer");
        let (op, plen, hlen) = parse_header(&f);
        assert_eq!(op, OP_CLOSE);
        assert_eq!(u16::from_be_bytes([f[hlen], f[hlen + 1]]), 4000);
        assert_eq!(&f[hlen + 2..hlen + plen], b"slow consumer");
    }

    #[test]
    fn unknown_type_is_told_apart_from_malformed() {
        let c = Codec::Json;
        assert!(matches!(
            c.decode_client(br#"{"type":"dance"}"#),
            Err(DecodeError::UnknownType(t)) if t == "dance"
        ));
        assert!(matches!(
            c.decode_client(br#"{"type":"question"}"#),
            Err(DecodeError::Malformed(_))
        ));
        assert!(matches!(
            c.decode_client(b"\x00garbage"),
            Err(DecodeError::Malformed(_))
        ));
    }

    #[test]
    fn both_codecs_carry_the_same_model() {
        let frame = ServerFrame::Pong {
            nonce: Some(7),
            server_time: 42,
        };
        for codec in Codec::ALL {
            let bytes = codec.encode_payload(&frame);
            let back: ServerFrame = codec.decode(&bytes).unwrap();
            assert_eq!(back, frame);
        }
    }
}
