//! Error codes (in `error` frames) and close codes (on the WebSocket close
//! frame): the one table clients need to decide whether to retry,
//! reconnect or give up. `docs/PROTOCOL.md` mirrors it.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Codes carried by `error` frames. An error frame never closes the
/// connection by itself.
#[derive(
    Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize, JsonSchema, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The frame could not be decoded (not JSON/MessagePack, missing or
    /// mistyped fields).
    BadFrame,
    /// The frame's `type` is not one this protocol knows.
    UnknownType,
    /// A field has a value the hub does not accept (range, length, format).
    Invalid,
    /// The connection has not authenticated yet.
    Unauthorized,
    /// The credential was genuine but has expired: get a fresh one (a new
    /// connection token from the backend) and try again with it.
    TokenExpired,
    /// The connection's role or scope may not do this.
    Forbidden,
    /// No such session for this tenant: also another tenant's session,
    /// and a session the connection's token does not name (its
    /// `sessions`).
    NotFound,
    /// The frame needs a `join` of its session first.
    NotJoined,
    /// The connection already joined this session, or (participants,
    /// renderers) another session.
    AlreadyJoined,
    /// Another renderer is live; join with `takeover: true` to replace it.
    RendererActive,
    /// This renderer was replaced; its frames are refused.
    StaleRenderer,
    /// The lifecycle does not allow this transition.
    IllegalTransition,
    /// Another operator controls the session.
    Conflict,
    /// Only the controlling operator may do this; also the answer to
    /// `release` when nobody, or another operator, holds the session.
    NotController,
    /// The referenced question, response, alert or command is unknown.
    UnknownReference,
    /// The session has ended; it accepts no more events.
    SessionEnded,
    /// Too many frames, questions, connections or REST calls; retry after
    /// `retry_after_ms`.
    RateLimited,
    /// The tenant's monthly API quota is used up; retrying will not help
    /// until it is reset.
    QuotaExceeded,
    /// The durable backlog is full; keep the message and retry after
    /// `retry_after_ms`.
    BacklogFull,
    /// A backend (broker, store) is unreachable; retry after
    /// `retry_after_ms`.
    Unavailable,
    /// A bug or an unexpected failure on the hub; retry.
    Internal,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 21] = [
        ErrorCode::BadFrame,
        ErrorCode::UnknownType,
        ErrorCode::Invalid,
        ErrorCode::Unauthorized,
        ErrorCode::TokenExpired,
        ErrorCode::Forbidden,
        ErrorCode::NotFound,
        ErrorCode::NotJoined,
        ErrorCode::AlreadyJoined,
        ErrorCode::RendererActive,
        ErrorCode::StaleRenderer,
        ErrorCode::IllegalTransition,
        ErrorCode::Conflict,
        ErrorCode::NotController,
        ErrorCode::UnknownReference,
        ErrorCode::SessionEnded,
        ErrorCode::RateLimited,
        ErrorCode::QuotaExceeded,
        ErrorCode::BacklogFull,
        ErrorCode::Unavailable,
        ErrorCode::Internal,
    ];

    /// Whether resending the same frame later can succeed.
    pub fn retryable(self) -> bool {
        matches!(
            self,
            ErrorCode::RateLimited
                | ErrorCode::BacklogFull
                | ErrorCode::Unavailable
                | ErrorCode::Internal
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadFrame => "bad_frame",
            ErrorCode::UnknownType => "unknown_type",
            ErrorCode::Invalid => "invalid",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::TokenExpired => "token_expired",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not_found",
            ErrorCode::NotJoined => "not_joined",
            ErrorCode::AlreadyJoined => "already_joined",
            ErrorCode::RendererActive => "renderer_active",
            ErrorCode::StaleRenderer => "stale_renderer",
            ErrorCode::IllegalTransition => "illegal_transition",
            ErrorCode::Conflict => "conflict",
            ErrorCode::NotController => "not_controller",
            ErrorCode::UnknownReference => "unknown_reference",
            ErrorCode::SessionEnded => "session_ended",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::QuotaExceeded => "quota_exceeded",
            ErrorCode::BacklogFull => "backlog_full",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Internal => "internal",
        }
    }

    /// The HTTP status the REST API uses for this code.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::BadFrame | ErrorCode::UnknownType | ErrorCode::Invalid => 400,
            ErrorCode::Unauthorized | ErrorCode::TokenExpired => 401,
            ErrorCode::Forbidden => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::NotJoined
            | ErrorCode::AlreadyJoined
            | ErrorCode::RendererActive
            | ErrorCode::StaleRenderer
            | ErrorCode::IllegalTransition
            | ErrorCode::Conflict
            | ErrorCode::NotController
            | ErrorCode::SessionEnded => 409,
            ErrorCode::UnknownReference => 422,
            ErrorCode::RateLimited | ErrorCode::QuotaExceeded => 429,
            ErrorCode::BacklogFull | ErrorCode::Unavailable => 503,
            ErrorCode::Internal => 500,
        }
    }
}

/// WebSocket close codes the hub sends.
///
/// The rule for clients: 1011, 1012 and 4000–4499 mean "reconnect (with
/// backoff) and resume"; everything else is final: fix the cause before
/// connecting again.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum CloseCode {
    /// 1000: the client asked to close.
    Normal,
    /// 1002: the peer broke the WebSocket protocol (RFC 6455).
    ProtocolError,
    /// 1003: a binary frame on `eva.v1.json`, or text on `eva.v1.msgpack`.
    UnsupportedData,
    /// 1007: a text frame that is not UTF-8.
    InvalidPayload,
    /// 1009: a message over the configured limit.
    MessageTooBig,
    /// 1011: an unexpected failure on the hub.
    InternalError,
    /// 1012: the hub is shutting down or restarting.
    ServiceRestart,
    /// 4000: the client read too slowly and its outbound queue overflowed.
    SlowConsumer,
    /// 4001: nothing was heard from the client within the idle timeout.
    IdleTimeout,
    /// 4002: the connection's token expired.
    TokenExpired,
    /// 4003: too many frames over the connection's rate limit.
    RateLimited,
    /// 4004: too many connections (tenant or address); try later.
    Overloaded,
    /// 4500: repeated undecodable frames.
    ProtocolViolation,
    /// 4501: credentials missing or invalid.
    Unauthorized,
    /// 4502: the credentials do not allow what was asked.
    Forbidden,
    /// 4503: no credentials within the authentication deadline.
    AuthTimeout,
    /// 4504: another renderer took over this session.
    Replaced,
    /// 4505: the session ended.
    SessionEnded,
}

impl CloseCode {
    pub const ALL: [CloseCode; 18] = [
        CloseCode::Normal,
        CloseCode::ProtocolError,
        CloseCode::UnsupportedData,
        CloseCode::InvalidPayload,
        CloseCode::MessageTooBig,
        CloseCode::InternalError,
        CloseCode::ServiceRestart,
        CloseCode::SlowConsumer,
        CloseCode::IdleTimeout,
        CloseCode::TokenExpired,
        CloseCode::RateLimited,
        CloseCode::Overloaded,
        CloseCode::ProtocolViolation,
        CloseCode::Unauthorized,
        CloseCode::Forbidden,
        CloseCode::AuthTimeout,
        CloseCode::Replaced,
        CloseCode::SessionEnded,
    ];

    pub fn code(self) -> u16 {
        match self {
            CloseCode::Normal => 1000,
            CloseCode::ProtocolError => 1002,
            CloseCode::UnsupportedData => 1003,
            CloseCode::InvalidPayload => 1007,
            CloseCode::MessageTooBig => 1009,
            CloseCode::InternalError => 1011,
            CloseCode::ServiceRestart => 1012,
            CloseCode::SlowConsumer => 4000,
            CloseCode::IdleTimeout => 4001,
            CloseCode::TokenExpired => 4002,
            CloseCode::RateLimited => 4003,
            CloseCode::Overloaded => 4004,
            CloseCode::ProtocolViolation => 4500,
            CloseCode::Unauthorized => 4501,
            CloseCode::Forbidden => 4502,
            CloseCode::AuthTimeout => 4503,
            CloseCode::Replaced => 4504,
            CloseCode::SessionEnded => 4505,
        }
    }

    pub fn from_code(code: u16) -> Option<CloseCode> {
        CloseCode::ALL.into_iter().find(|c| c.code() == code)
    }

    /// The short reason sent in the close frame.
    pub fn reason(self) -> &'static str {
        match self {
            CloseCode::Normal => "normal",
            CloseCode::ProtocolError => "protocol error",
            CloseCode::UnsupportedData => "wrong frame type for subprotocol",
            CloseCode::InvalidPayload => "invalid utf-8",
            CloseCode::MessageTooBig => "message too big",
            CloseCode::InternalError => "internal error",
            CloseCode::ServiceRestart => "server restart",
            CloseCode::SlowConsumer => "slow consumer",
            CloseCode::IdleTimeout => "idle timeout",
            CloseCode::TokenExpired => "token expired",
            CloseCode::RateLimited => "rate limited",
            CloseCode::Overloaded => "overloaded",
            CloseCode::ProtocolViolation => "protocol violation",
            CloseCode::Unauthorized => "unauthorized",
            CloseCode::Forbidden => "forbidden",
            CloseCode::AuthTimeout => "auth timeout",
            CloseCode::Replaced => "replaced",
            CloseCode::SessionEnded => "session ended",
        }
    }

    /// True when the client should reconnect (with backoff) and resume.
    pub fn should_reconnect(self) -> bool {
        is_reconnect_code(self.code())
    }

    pub fn as_label(self) -> &'static str {
        match self {
            CloseCode::Normal => "normal",
            CloseCode::ProtocolError => "protocol_error",
            CloseCode::UnsupportedData => "unsupported_data",
            CloseCode::InvalidPayload => "invalid_payload",
            CloseCode::MessageTooBig => "message_too_big",
            CloseCode::InternalError => "internal_error",
            CloseCode::ServiceRestart => "service_restart",
            CloseCode::SlowConsumer => "slow_consumer",
            CloseCode::IdleTimeout => "idle_timeout",
            CloseCode::TokenExpired => "token_expired",
            CloseCode::RateLimited => "rate_limited",
            CloseCode::Overloaded => "overloaded",
            CloseCode::ProtocolViolation => "protocol_violation",
            CloseCode::Unauthorized => "unauthorized",
            CloseCode::Forbidden => "forbidden",
            CloseCode::AuthTimeout => "auth_timeout",
            CloseCode::Replaced => "replaced",
            CloseCode::SessionEnded => "session_ended",
        }
    }
}

/// The reconnect rule, for any numeric code a client might see.
pub fn is_reconnect_code(code: u16) -> bool {
    matches!(code, 1011 | 1012 | 4000..=4499)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_round_trip() {
        let mut seen = std::collections::HashSet::new();
        for c in CloseCode::ALL {
            assert!(seen.insert(c.code()), "duplicate {}", c.code());
            assert_eq!(CloseCode::from_code(c.code()), Some(c));
        }
    }

    #[test]
    fn reconnect_rule() {
        assert!(CloseCode::SlowConsumer.should_reconnect());
        assert!(CloseCode::ServiceRestart.should_reconnect());
        assert!(CloseCode::TokenExpired.should_reconnect());
        assert!(!CloseCode::Replaced.should_reconnect());
        assert!(!CloseCode::Unauthorized.should_reconnect());
        assert!(!CloseCode::MessageTooBig.should_reconnect());
    }
}
