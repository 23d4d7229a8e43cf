//! The hub's error type: every refusal a client or backend can get, mapped
//! to one protocol [`ErrorCode`] (and from there to an HTTP status).

use std::time::Duration;

use crate::auth::limits::Limited;
use crate::broker::BrokerError;
use crate::protocol::ErrorCode;
use crate::session::{Seen, SessionError};
use crate::store::StoreError;
use crate::store::writer::BacklogFull;

#[derive(Debug, thiserror::Error)]
pub enum HubError {
    /// The request was understood and refused.
    #[error("{message}")]
    Refused { code: ErrorCode, message: String },
    /// The durable backlog is full; the sender keeps its message.
    #[error("the durable backlog is full")]
    BacklogFull { retry_after: Duration },
    /// A limit was reached; `what` names it for the client ("frames",
    /// "questions", "connections from your address"...).
    #[error("rate limited: too many {what}")]
    RateLimited {
        what: &'static str,
        retry_after: Duration,
    },
    #[error("broker: {0}")]
    Broker(#[from] BrokerError),
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// The frame's id was seen before: answer with the original outcome.
    /// Handled inside the hub, never sent as an error.
    #[error("duplicate of seq {}", .0.seq)]
    Duplicate(Seen),
}

/// Shorthand for a refusal.
pub fn refuse(code: ErrorCode, message: impl Into<String>) -> HubError {
    HubError::Refused {
        code,
        message: message.into(),
    }
}

pub fn not_found() -> HubError {
    // One message for "absent" and "another tenant's": nothing may hint
    // that a session exists elsewhere.
    refuse(ErrorCode::NotFound, "no such session")
}

impl From<SessionError> for HubError {
    fn from(e: SessionError) -> Self {
        match e {
            SessionError::NotFound => not_found(),
            SessionError::TooBusy => refuse(
                ErrorCode::Unavailable,
                "the session is changing too fast; retry",
            ),
            SessionError::Broker(e) => HubError::Broker(e),
            SessionError::Store(e) => HubError::Store(e),
        }
    }
}

impl From<Limited> for HubError {
    fn from(l: Limited) -> Self {
        HubError::RateLimited {
            what: l.what,
            retry_after: l.retry_after,
        }
    }
}

impl From<BacklogFull> for HubError {
    fn from(e: BacklogFull) -> Self {
        HubError::BacklogFull {
            retry_after: e.retry_after,
        }
    }
}

/// How long a client should wait after an outage-type error.
const OUTAGE_RETRY: Duration = Duration::from_secs(1);

impl HubError {
    pub fn code(&self) -> ErrorCode {
        match self {
            HubError::Refused { code, .. } => *code,
            HubError::BacklogFull { .. } => ErrorCode::BacklogFull,
            HubError::RateLimited { .. } => ErrorCode::RateLimited,
            HubError::Broker(_) => ErrorCode::Unavailable,
            HubError::Store(StoreError::Unavailable(_)) => ErrorCode::Unavailable,
            HubError::Store(StoreError::Rejected(_)) | HubError::Duplicate(_) => {
                ErrorCode::Internal
            }
        }
    }

    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            HubError::BacklogFull { retry_after } | HubError::RateLimited { retry_after, .. } => {
                Some(*retry_after)
            }
            HubError::Broker(_) | HubError::Store(StoreError::Unavailable(_)) => Some(OUTAGE_RETRY),
            HubError::Refused { code, .. } if code.retryable() => Some(OUTAGE_RETRY),
            _ => None,
        }
    }

    /// The message clients see. Backend failures are described, not
    /// quoted: their text can carry hostnames and queries.
    pub fn client_message(&self) -> String {
        match self {
            HubError::Refused { message, .. } => message.clone(),
            HubError::BacklogFull { .. } => {
                "the hub cannot store more right now; keep the message and retry".to_owned()
            }
            HubError::RateLimited { what, retry_after } => format!(
                "too many {what}; retry after {} ms",
                retry_after.as_millis()
            ),
            HubError::Broker(_) => "the broker is unavailable; retry".to_owned(),
            HubError::Store(StoreError::Unavailable(_)) => {
                "the database is unavailable; retry".to_owned()
            }
            HubError::Store(StoreError::Rejected(_)) => "the hub failed to store this".to_owned(),
            HubError::Duplicate(_) => "duplicate".to_owned(),
        }
    }
}
