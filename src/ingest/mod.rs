//! Inbound vendor events (`docs/INGEST.md`): what an avatar or media
//! vendor (Tavus, HeyGen, LiveKit, or anything speaking the hub's generic
//! shape) reports about a conversation, verified, read and given an
//! identity before the hub applies it to the session that presents the
//! conversation.
//!
//! | file | owns |
//! |---|---|
//! | `canonical.rs` | canonical JSON and the event hash (idempotency) |
//! | `signature.rs` | each source's signature scheme |
//! | `vendors.rs` | the vendor speaking-name table and each vendor's JSON shape |
//!
//! This module knows nothing of sessions: [`receive`] turns a request
//! into an [`Inbound`] (or the reason to refuse it); the hub records it
//! and publishes what it means.

pub mod canonical;
pub mod signature;
pub mod vendors;

use serde_json::Value;

pub use self::canonical::{canonical_json, event_hash};
pub use self::signature::Credentials;
use crate::config::IngestSettings;

/// Where an event comes from: the `{source}` of `/v1/ingest/{source}`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Source {
    Tavus,
    Heygen,
    Livekit,
    Generic,
}

impl Source {
    pub const ALL: [Source; 4] = [
        Source::Tavus,
        Source::Heygen,
        Source::Livekit,
        Source::Generic,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Source::Tavus => "tavus",
            Source::Heygen => "heygen",
            Source::Livekit => "livekit",
            Source::Generic => "generic",
        }
    }

    pub fn parse(s: &str) -> Option<Source> {
        Source::ALL.into_iter().find(|x| x.as_str() == s)
    }
}

/// Who speaks.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Speaker {
    /// The avatar: the renderer's side of the conversation.
    Renderer,
    /// The person talking to it.
    User,
}

impl Speaker {
    pub fn as_str(self) -> &'static str {
        match self {
            Speaker::Renderer => "renderer",
            Speaker::User => "user",
        }
    }
}

/// What an event does to its session.
#[derive(Clone, PartialEq, Debug)]
pub enum Action {
    /// A speaker started or stopped speaking.
    Speaking { who: Speaker, speaking: bool },
    /// A speaker said something: into the conversation.
    Utterance { who: Speaker, text: String },
    /// The vendor's conversation ended: the session stops.
    Ended { reason: Option<String> },
    /// Kept for the record; nothing happens in the session.
    Record,
}

/// An accepted event, ready to record and apply.
#[derive(Clone, Debug)]
pub struct Inbound {
    pub source: Source,
    pub event_type: String,
    pub conversation_id: String,
    /// The body as received.
    pub body: Value,
    pub event_hash: String,
    pub action: Action,
}

/// Why a request was refused; each maps to one HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// 404: not one of the sources.
    #[error("no such ingest source")]
    UnknownSource,
    /// 404: the source has no secret configured and the hub is not in
    /// `--dev`; answered like an unknown source.
    #[error("no such ingest source")]
    NotEnabled,
    /// 401: the signature is missing or wrong.
    #[error("the request's signature does not verify")]
    BadSignature,
    /// 400: not JSON, not an object, or a required field is missing.
    #[error("malformed event: {0}")]
    Malformed(String),
    /// 413: the body is larger than `ingest.max_body_bytes`.
    #[error("the event is larger than {0} bytes")]
    TooLarge(usize),
}

impl IngestError {
    pub fn http_status(&self) -> u16 {
        match self {
            IngestError::UnknownSource | IngestError::NotEnabled => 404,
            IngestError::BadSignature => 401,
            IngestError::Malformed(_) => 400,
            IngestError::TooLarge(_) => 413,
        }
    }

    /// A closed label for metrics.
    pub fn outcome(&self) -> &'static str {
        match self {
            IngestError::UnknownSource => "unknown_source",
            IngestError::NotEnabled => "not_enabled",
            IngestError::BadSignature => "bad_signature",
            IngestError::Malformed(_) => "malformed",
            IngestError::TooLarge(_) => "too_large",
        }
    }
}

/// Verifies, parses and identifies one request. The signature is checked
/// on the raw bytes before they are parsed.
pub fn receive(
    source: Source,
    settings: &IngestSettings,
    dev: bool,
    creds: &Credentials<'_>,
    body: &[u8],
) -> Result<Inbound, IngestError> {
    if body.len() > settings.max_body_bytes {
        return Err(IngestError::TooLarge(settings.max_body_bytes));
    }
    signature::verify(source, settings, dev, creds, body)?;
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| IngestError::Malformed(format!("not JSON: {e}")))?;
    if !value.is_object() {
        return Err(IngestError::Malformed(
            "the event must be a JSON object".into(),
        ));
    }
    let read = vendors::read(source, &value)?;
    Ok(Inbound {
        source,
        event_type: read.event_type,
        conversation_id: read.conversation_id,
        event_hash: event_hash(source, &value),
        body: value,
        action: read.action,
    })
}
