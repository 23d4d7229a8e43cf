//! The wire protocol: one message model carried by two codecs
//! (`eva.v1.json` in text frames, `eva.v1.msgpack` in binary frames).
//! `docs/PROTOCOL.md` is the reference for client authors.

pub mod codec;
pub mod codes;
pub mod frames;
pub mod job;
pub mod model;
pub mod schema;

pub use codec::{Codec, DecodeError, JSON_SUBPROTOCOL, MSGPACK_SUBPROTOCOL};
pub use codes::{CloseCode, ErrorCode};
pub use frames::{ClientFrame, ClientMsgId, ServerFrame, Snapshot};
pub use model::{Audience, Event, Role, SessionState, SessionStatus};

/// Protocol name and version announced in `welcome`.
pub const PROTOCOL_VERSION: &str = "eva.v1";
