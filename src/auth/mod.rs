//! Who is calling: credentials in, an [`Identity`] (WebSocket connections)
//! or a [`Principal`] (REST callers) out (both defined in
//! [`crate::identity`], which everything downstream carries); plus the limits every caller is held
//! to and the browser origin policy.
//!
//! Implementations of [`Authenticator`]:
//! * [`credentials::CredentialAuthenticator`]: production. Connection
//!   tokens are JWTs verified against configured keys ([`jwt`]); REST
//!   callers hold API keys kept as SHA-256 hashes in the store
//!   ([`api_key`]).
//! * [`dev::DevAuthenticator`]: `eva-hub serve --dev`. Trusts whatever the
//!   client claims. Never for anything reachable from a network you do not
//!   own.
//!
//! Invariant for every module here: a credential (token, API key, secret)
//! is never logged, never echoed in an error, and never put in a URL.
//! Logs name the subject a credential resolved to, or why it was refused.

pub mod api_key;
pub mod bucket;
pub mod credentials;
pub mod dev;
pub mod jwt;
pub mod limits;
pub mod origin;

use std::fmt;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::identity::{Identity, Principal};
use crate::ids::{SessionId, TenantId};
use crate::protocol::model::Role;

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
    /// The tenant's monthly API quota is used up.
    #[error("API quota exhausted")]
    QuotaExceeded,
}

impl AuthError {
    /// A metric label for the refusal.
    pub fn label(&self) -> &'static str {
        match self {
            AuthError::Missing => "missing",
            AuthError::Invalid(_) => "invalid",
            AuthError::Expired => "expired",
            AuthError::Forbidden(_) => "forbidden",
            AuthError::Unavailable(_) => "unavailable",
            AuthError::QuotaExceeded => "quota",
        }
    }
}

/// What a backend asks a connection token for (`POST /v1/tokens`,
/// `eva-hub token`). Checked by the caller (scopes, session ownership)
/// before it reaches [`Authenticator::issue`].
#[derive(Clone, PartialEq, Debug)]
pub struct Grant {
    pub tenant: TenantId,
    pub subject: String,
    pub role: Role,
    pub name: Option<String>,
    /// Sessions the token may join; `None`: any session of the tenant.
    pub sessions: Option<Vec<SessionId>>,
    /// Requested lifetime; the configured default if `None`, never more
    /// than the configured maximum.
    pub ttl: Option<std::time::Duration>,
}

/// A minted connection token. Shown to the backend once; the hub keeps no
/// copy.
#[derive(Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct IssuedToken {
    pub token: String,
    pub token_type: String,
    /// Unix seconds; `None` for development tokens, which never expire.
    pub expires_at: Option<u64>,
}

impl fmt::Debug for IssuedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedToken")
            .field("token", &"***")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

#[async_trait]
pub trait Authenticator: Send + Sync + fmt::Debug + 'static {
    /// Authenticates the token of a WebSocket connection (from the
    /// `Authorization` header or the first `auth` frame).
    async fn connection(&self, token: &str) -> Result<Identity, AuthError>;

    /// Authenticates a REST caller from its bearer credential, if any.
    async fn backend(&self, credential: Option<&str>) -> Result<Principal, AuthError>;

    /// Counts one REST call against the caller's quota; refuses with
    /// [`AuthError::QuotaExceeded`] once it is used up. Callers without a
    /// quota (development) pass.
    async fn charge(&self, principal: &Principal) -> Result<(), AuthError> {
        let _ = principal;
        Ok(())
    }

    /// Mints a connection token for `grant`.
    fn issue(&self, grant: &Grant) -> Result<IssuedToken, AuthError>;

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
