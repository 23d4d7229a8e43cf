//! Who is calling: credentials in, [`Identity`] (WebSocket connections) or
//! [`Principal`] (REST callers) out.
//!
//! Implementations:
//! * [`dev::DevAuthenticator`]: `eva-hub serve --dev`. Trusts whatever the
//!   client claims. Never for anything reachable from a network you do not
//!   own.

pub mod dev;

use std::fmt;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::ids::{SessionId, TenantId};
use crate::protocol::model::Role;

/// An authenticated WebSocket connection.
#[derive(Clone, PartialEq, Debug)]
pub struct Identity {
    /// Stable id of the person or engine (participant id, operator id).
    pub subject: String,
    pub tenant: TenantId,
    pub role: Role,
    /// Display name, if the credential carries one.
    pub name: Option<String>,
    /// Sessions this identity may join; `None` means any of its tenant's.
    pub sessions: Option<Vec<SessionId>>,
    /// When the credential expires, Unix seconds. The connection is closed
    /// with `token_expired` then.
    pub expires_at: Option<u64>,
}

impl Identity {
    pub fn may_join(&self, session: SessionId) -> bool {
        self.sessions.as_ref().is_none_or(|s| s.contains(&session))
    }
}

/// What a REST caller may do. See `docs/SECURITY.md`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
pub enum Scope {
    /// Read sessions, history and alerts.
    #[serde(rename = "eva:read")]
    Read,
    /// Create sessions, change their lifecycle, publish events.
    #[serde(rename = "eva:write")]
    Write,
    /// Act as an operator: mint operator tokens, intervene.
    #[serde(rename = "eva:operate")]
    Operate,
    /// Manage API keys.
    #[serde(rename = "eva:admin")]
    Admin,
}

impl Scope {
    pub const ALL: [Scope; 4] = [Scope::Read, Scope::Write, Scope::Operate, Scope::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "eva:read",
            Scope::Write => "eva:write",
            Scope::Operate => "eva:operate",
            Scope::Admin => "eva:admin",
        }
    }

    pub fn parse(s: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|sc| sc.as_str() == s)
    }
}

/// An authenticated REST caller (a backend service holding an API key).
#[derive(Clone, PartialEq, Debug)]
pub struct Principal {
    pub subject: String,
    pub tenant: TenantId,
    pub scopes: Vec<Scope>,
}

impl Principal {
    pub fn has(&self, scope: Scope) -> bool {
        // Admin implies every other scope.
        self.scopes.contains(&scope) || self.scopes.contains(&Scope::Admin)
    }
}

/// Why credentials were refused. Clients only ever learn "unauthorized" or
/// "forbidden"; the detail is for logs (which never contain the token).
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("no credentials")]
    Missing,
    #[error("invalid credentials: {0}")]
    Invalid(String),
    #[error("credentials expired")]
    Expired,
    #[error("not allowed: {0}")]
    Forbidden(String),
    #[error("authentication backend unavailable: {0}")]
    Unavailable(String),
}

#[async_trait]
pub trait Authenticator: Send + Sync + fmt::Debug + 'static {
    /// Authenticates the token of a WebSocket connection (from the
    /// `Authorization` header or the first `auth` frame).
    async fn connection(&self, token: &str) -> Result<Identity, AuthError>;

    /// Authenticates a REST caller from its bearer credential, if any.
    async fn backend(&self, credential: Option<&str>) -> Result<Principal, AuthError>;

    /// True for the development authenticator, which the hub announces
    /// loudly.
    fn insecure(&self) -> bool {
        false
    }
}

/// Extracts the credential from an `Authorization: Bearer ...` header value.
pub fn bearer(header: Option<&str>) -> Option<&str> {
    let v = header?.trim();
    let (scheme, rest) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| rest.trim())
        .filter(|t| !t.is_empty())
}
