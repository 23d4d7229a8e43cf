//! The production authenticator: connection tokens are JWTs checked
//! against the configured keys ([`super::jwt`]); REST callers present API
//! keys kept as hashes in the store ([`super::api_key`]); every REST call
//! counts against its tenant's monthly quota.

use std::sync::Arc;

use async_trait::async_trait;

use super::jwt::{KeyConfigError, Keyring};
use super::{AuthError, Authenticator, Grant, IssuedToken, api_key};
use crate::config::AuthSettings;
use crate::identity::{Identity, Principal};
use crate::ids::now_ms;
use crate::store::Store;

#[derive(Debug)]
pub struct CredentialAuthenticator {
    keyring: Keyring,
    store: Arc<dyn Store>,
}

impl CredentialAuthenticator {
    /// # Errors
    /// [`KeyConfigError`] naming the setting to fix when the keys are
    /// missing or unusable.
    pub fn from_settings(
        auth: &AuthSettings,
        store: Arc<dyn Store>,
    ) -> Result<CredentialAuthenticator, KeyConfigError> {
        Ok(CredentialAuthenticator {
            keyring: Keyring::from_settings(auth)?,
            store,
        })
    }

    pub fn keyring(&self) -> &Keyring {
        &self.keyring
    }
}

#[async_trait]
impl Authenticator for CredentialAuthenticator {
    async fn connection(&self, token: &str) -> Result<Identity, AuthError> {
        let claims = self.keyring.verify(token)?;
        Ok(Identity {
            subject: claims.sub,
            tenant: claims.tenant,
            role: claims.role,
            name: claims.name,
            sessions: claims.sessions,
            // The connection lives as long as the token would still be
            // accepted: its exp plus the tolerated skew.
            expires_at: Some(claims.exp.saturating_add(self.keyring.leeway_s())),
        })
    }

    async fn backend(&self, credential: Option<&str>) -> Result<Principal, AuthError> {
        let credential = credential.ok_or(AuthError::Missing)?;
        let (key, scopes) = api_key::authenticate(self.store.as_ref(), credential).await?;
        Ok(Principal {
            subject: key.name,
            tenant: key.tenant,
            scopes,
            key_id: Some(key.id),
        })
    }

    async fn charge(&self, principal: &Principal) -> Result<(), AuthError> {
        let unavailable = |e: crate::store::StoreError| AuthError::Unavailable(e.to_string());
        let tenant = self
            .store
            .get_tenant(principal.tenant)
            .await
            .map_err(unavailable)?
            // Keys reference their tenant, so this is a tenant deleted
            // under its keys: refuse like an unknown key.
            .ok_or_else(|| AuthError::Invalid("the key's tenant is gone".into()))?;
        if !tenant.is_active {
            return Err(AuthError::Invalid("tenant deactivated".into()));
        }
        // Checked before counting, so refused calls do not use quota.
        // Concurrent calls may overshoot by the number in flight.
        if tenant.api_calls_used >= tenant.api_quota_monthly {
            return Err(AuthError::QuotaExceeded);
        }
        self.store
            .count_api_calls(principal.tenant, 1)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    fn issue(&self, grant: &Grant) -> Result<IssuedToken, AuthError> {
        self.keyring.sign(grant, now_ms() / 1000)
    }
}
