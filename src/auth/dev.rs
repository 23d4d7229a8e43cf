//! Development identities: **insecure by design**.
//!
//! With `eva-hub serve --dev`, a connection token is a plain claim,
//! `dev:<role>:<subject>[:<tenant-uuid>]`, for example
//! `dev:participant:alice`, and REST calls need no credential at all (or
//! `dev:backend:<name>[:<tenant-uuid>]` to pick a tenant). Anyone can be
//! anyone. It exists so a newcomer can run the hub and a client in a
//! minute.

use async_trait::async_trait;

use super::{AuthError, Authenticator, Grant, IssuedToken};
use crate::identity::{Identity, Principal, Scope};
use crate::ids::TenantId;
use crate::protocol::model::Role;

#[derive(Debug, Default)]
pub struct DevAuthenticator;

fn parse_tenant(s: Option<&str>) -> Result<TenantId, AuthError> {
    match s {
        None => Ok(TenantId::DEV),
        Some(t) => t
            .parse()
            .map_err(|_| AuthError::Invalid("dev token tenant must be a UUID".into())),
    }
}

/// Builds the development token for a role and subject.
pub fn dev_token(role: Role, subject: &str, tenant: Option<TenantId>) -> String {
    match tenant {
        Some(t) => format!("dev:{}:{subject}:{t}", role.as_str()),
        None => format!("dev:{}:{subject}", role.as_str()),
    }
}

#[async_trait]
impl Authenticator for DevAuthenticator {
    async fn connection(&self, token: &str) -> Result<Identity, AuthError> {
        let mut parts = token.splitn(4, ':');
        if parts.next() != Some("dev") {
            return Err(AuthError::Invalid(
                "dev mode expects tokens of the form dev:<role>:<subject>[:<tenant>]".into(),
            ));
        }
        let role = parts
            .next()
            .and_then(Role::parse)
            .ok_or_else(|| AuthError::Invalid("unknown role in dev token".into()))?;
        let subject = parts
            .next()
            .filter(|s| !s.is_empty() && s.len() <= 255)
            .ok_or_else(|| AuthError::Invalid("dev token needs a subject".into()))?;
        let tenant = parse_tenant(parts.next())?;
        Ok(Identity {
            subject: subject.to_owned(),
            tenant,
            role,
            name: None,
            sessions: None,
            expires_at: None,
        })
    }

    async fn backend(&self, credential: Option<&str>) -> Result<Principal, AuthError> {
        let (subject, tenant) = match credential {
            None => ("dev-backend".to_owned(), TenantId::DEV),
            Some(c) => {
                let mut parts = c.splitn(4, ':');
                match (parts.next(), parts.next(), parts.next()) {
                    (Some("dev"), Some("backend"), Some(name)) if !name.is_empty() => {
                        (name.to_owned(), parse_tenant(parts.next())?)
                    }
                    _ => {
                        return Err(AuthError::Invalid(
                            "dev mode expects dev:backend:<name>[:<tenant>]".into(),
                        ));
                    }
                }
            }
        };
        Ok(Principal {
            subject,
            tenant,
            scopes: Scope::ALL.to_vec(),
            key_id: None,
        })
    }

    /// A development token: the claim itself. It names no sessions and
    /// never expires, because nothing here is checked anyway.
    fn issue(&self, grant: &Grant) -> Result<IssuedToken, AuthError> {
        Ok(IssuedToken {
            token: dev_token(grant.role, &grant.subject, Some(grant.tenant)),
            token_type: "Bearer".into(),
            expires_at: None,
        })
    }

    fn insecure(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn parses_role_subject_and_tenant() {
        let a = DevAuthenticator;
        let id = a.connection("dev:operator:ops-1").await.unwrap();
        assert_eq!(id.role, Role::Operator);
        assert_eq!(id.subject, "ops-1");
        assert_eq!(id.tenant, TenantId::DEV);
        let t = TenantId::new();
        let id = a
            .connection(&dev_token(Role::Participant, "p", Some(t)))
            .await
            .unwrap();
        assert_eq!(id.tenant, t);
        assert!(a.connection("dev:king:x").await.is_err());
        assert!(a.connection("bearer-nonsense").await.is_err());
    }
}
