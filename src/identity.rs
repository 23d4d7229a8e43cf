//! Who is calling, once their credentials have been checked: an
//! [`Identity`] for a WebSocket connection, a [`Principal`] with its
//! [`Scope`]s for a REST caller. `auth` produces them; the connection,
//! the hub and the gateway carry them. Plain values, so every layer can
//! hold one without depending on how it was authenticated.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

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
    /// When the credential expires, Unix seconds (a token's `exp` plus the
    /// tolerated clock skew). The connection is closed with
    /// `token_expired` (4002) then.
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
    /// Read sessions, their history and alerts.
    #[serde(rename = "eva:read")]
    Read,
    /// Create sessions, change their lifecycle, publish events, mint
    /// participant and renderer tokens.
    #[serde(rename = "eva:write")]
    Write,
    /// Mint operator tokens (operators intervene in sessions).
    #[serde(rename = "eva:operate")]
    Operate,
    /// Manage the tenant's API keys; implies every other scope.
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
    /// Who acts, as events and audit rows name it (an API key's name).
    pub subject: String,
    pub tenant: TenantId,
    pub scopes: Vec<Scope>,
    /// The API key used, if any: REST limits and the quota are per key and
    /// tenant. `None` for development callers.
    pub key_id: Option<Uuid>,
}

impl Principal {
    pub fn has(&self, scope: Scope) -> bool {
        // Admin implies every other scope.
        self.scopes.contains(&scope) || self.scopes.contains(&Scope::Admin)
    }
}
