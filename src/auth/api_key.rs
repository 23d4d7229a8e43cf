//! API keys for backends (seed 000 `api_keys`).
//!
//! A key is `evk_` followed by 43 characters of URL-safe base64: 256
//! random bits from the operating system. It is shown once, when created;
//! the store keeps only its SHA-256 as lowercase hex, so a leaked database
//! yields no usable key. Authentication hashes the presented key, looks
//! the hash up, and compares the stored hash with the computed one in
//! constant time before trusting the row.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use rand::TryRngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use uuid::Uuid;

use super::AuthError;
use crate::identity::Scope;
use crate::ids::TenantId;
use crate::store::{ApiKeyRecord, Store, StoreError};

/// Every key starts with this, so secret scanners and people recognise
/// one.
pub const PREFIX: &str = "evk_";
/// Random bytes per key.
const KEY_BYTES: usize = 32;
/// `last_used` is written at most this often per key, so a busy backend
/// does not turn every call into a write.
const TOUCH_EVERY: chrono::Duration = chrono::Duration::seconds(60);

/// Why a key could not be managed.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{0}")]
    Invalid(String),
    #[error("no such key")]
    NotFound,
    #[error("the operating system's random source failed: {0}")]
    Random(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A new key's plaintext. Its `Debug` never shows the key.
#[derive(Clone, PartialEq, Eq)]
pub struct PlainKey(String);

impl PlainKey {
    /// The key itself: show it to its owner once, never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for PlainKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PlainKey(***)")
    }
}

/// Generates a fresh key.
///
/// # Errors
/// [`KeyError::Random`] if the OS random source fails.
pub fn generate() -> Result<PlainKey, KeyError> {
    let mut bytes = [0u8; KEY_BYTES];
    rand::rngs::OsRng
        .try_fill_bytes(&mut bytes)
        .map_err(|e| KeyError::Random(e.to_string()))?;
    Ok(PlainKey(format!(
        "{PREFIX}{}",
        URL_SAFE_NO_PAD.encode(bytes)
    )))
}

/// SHA-256 of a key, lowercase hex: what the store keeps.
pub fn hash(key: &str) -> String {
    let digest = Sha256::digest(key.as_bytes());
    let mut out = String::with_capacity(64);
    for b in digest.iter() {
        out.push(char::from(b"0123456789abcdef"[usize::from(b >> 4)]));
        out.push(char::from(b"0123456789abcdef"[usize::from(b & 0xf)]));
    }
    out
}

/// True if `s` has the shape of a key (prefix and length). Lets a caller
/// refuse other bearer strings, like connection tokens, without a store
/// lookup.
pub fn looks_like_key(s: &str) -> bool {
    s.len() == PREFIX.len() + 43
        && s.starts_with(PREFIX)
        && s[PREFIX.len()..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// What creating a key needs.
#[derive(Clone, Debug)]
pub struct NewKey {
    pub tenant: TenantId,
    pub name: String,
    pub scopes: Vec<Scope>,
    pub expires_at: Option<DateTime<Utc>>,
}

/// A key as it is listed: everything but the hash.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct KeyView {
    pub id: Uuid,
    pub tenant: TenantId,
    pub name: String,
    pub scopes: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub last_used: Option<DateTime<Utc>>,
    pub active: bool,
}

impl From<&ApiKeyRecord> for KeyView {
    fn from(r: &ApiKeyRecord) -> KeyView {
        KeyView {
            id: r.id,
            tenant: r.tenant,
            name: r.name.clone(),
            scopes: r.scopes.clone(),
            created_at: r.created_at,
            expires_at: r.expires_at,
            last_used: r.last_used,
            active: r.is_active,
        }
    }
}

/// Parses scope names (`eva:read`...); unknown ones are an error rather
/// than dropped, so a typo never yields a weaker key than intended
/// silently.
///
/// # Errors
/// [`KeyError::Invalid`] naming the unknown scope.
pub fn parse_scopes<S: AsRef<str>>(names: &[S]) -> Result<Vec<Scope>, KeyError> {
    let mut scopes = Vec::new();
    for n in names {
        let s = Scope::parse(n.as_ref().trim()).ok_or_else(|| {
            KeyError::Invalid(format!(
                "unknown scope {:?}: use eva:read, eva:write, eva:operate or eva:admin",
                n.as_ref()
            ))
        })?;
        if !scopes.contains(&s) {
            scopes.push(s);
        }
    }
    if scopes.is_empty() {
        return Err(KeyError::Invalid("a key needs at least one scope".into()));
    }
    Ok(scopes)
}

/// Creates a key for an existing tenant and returns it with its plaintext,
/// which exists nowhere else from then on.
///
/// # Errors
/// [`KeyError::Invalid`] for a bad name or expiry, store errors otherwise
/// (the store refuses keys of unknown tenants).
pub async fn create(store: &dyn Store, new: NewKey) -> Result<(KeyView, PlainKey), KeyError> {
    let name = new.name.trim();
    if name.is_empty() || name.len() > 100 || name.chars().any(char::is_control) {
        return Err(KeyError::Invalid(
            "a key name is 1 to 100 characters without control characters".into(),
        ));
    }
    if new.scopes.is_empty() {
        return Err(KeyError::Invalid("a key needs at least one scope".into()));
    }
    let now = Utc::now();
    if new.expires_at.is_some_and(|t| t <= now) {
        return Err(KeyError::Invalid("expires_at is in the past".into()));
    }
    let key = generate()?;
    let record = ApiKeyRecord {
        id: Uuid::now_v7(),
        tenant: new.tenant,
        name: name.to_owned(),
        key_hash: hash(key.expose()),
        scopes: new.scopes.iter().map(|s| s.as_str().to_owned()).collect(),
        created_at: now,
        expires_at: new.expires_at,
        last_used: None,
        is_active: true,
    };
    store.create_api_key(&record).await?;
    Ok((KeyView::from(&record), key))
}

/// Revokes a key of `tenant` (any tenant's if `None`).
///
/// # Errors
/// [`KeyError::NotFound`] if there is no such key (for that tenant).
pub async fn revoke(store: &dyn Store, id: Uuid, tenant: Option<TenantId>) -> Result<(), KeyError> {
    if store.revoke_api_key(id, tenant).await? {
        Ok(())
    } else {
        Err(KeyError::NotFound)
    }
}

/// Keys of `tenant` (all if `None`), newest first.
///
/// # Errors
/// Store errors.
pub async fn list(store: &dyn Store, tenant: Option<TenantId>) -> Result<Vec<KeyView>, KeyError> {
    Ok(store
        .list_api_keys(tenant)
        .await?
        .iter()
        .map(KeyView::from)
        .collect())
}

/// The active, unexpired key `presented` is, with its parsed scopes.
///
/// # Errors
/// [`AuthError::Invalid`] for an unknown key, [`AuthError::Expired`] for
/// an expired one, [`AuthError::Invalid`] for a revoked one (revocation is
/// not announced), [`AuthError::Unavailable`] when the store fails.
pub async fn authenticate(
    store: &dyn Store,
    presented: &str,
) -> Result<(ApiKeyRecord, Vec<Scope>), AuthError> {
    if !looks_like_key(presented) {
        return Err(AuthError::Invalid("not an API key".into()));
    }
    let digest = hash(presented);
    let record = store
        .api_key_by_hash(&digest)
        .await
        .map_err(|e| AuthError::Unavailable(e.to_string()))?
        .ok_or_else(|| AuthError::Invalid("unknown API key".into()))?;
    // The lookup matched on the hash already; comparing again in constant
    // time means no store implementation's matching (prefix indexes,
    // collations) is trusted to have been exact.
    if !bool::from(record.key_hash.as_bytes().ct_eq(digest.as_bytes())) {
        return Err(AuthError::Invalid("unknown API key".into()));
    }
    if !record.is_active {
        return Err(AuthError::Invalid("revoked API key".into()));
    }
    let now = Utc::now();
    if record.expires_at.is_some_and(|t| t <= now) {
        return Err(AuthError::Expired);
    }
    // Unknown scope names in a row (written by a newer version) grant
    // nothing.
    let scopes = record
        .scopes
        .iter()
        .filter_map(|s| Scope::parse(s))
        .collect();
    if record.last_used.is_none_or(|t| now - t >= TOUCH_EVERY)
        && let Err(e) = store.touch_api_key(record.id, now).await
    {
        tracing::warn!(key = %record.id, error = %e, "could not record API key use");
    }
    Ok((record, scopes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::TenantRecord;
    use crate::store::memory::MemoryStore;

    #[test]
    fn keys_are_long_random_and_well_formed() {
        let a = generate().unwrap();
        let b = generate().unwrap();
        assert_ne!(a, b);
        assert!(looks_like_key(a.expose()), "{}", a.expose().len());
        assert!(!format!("{a:?}").contains(&a.expose()[4..]));
        let h = hash(a.expose());
        assert_eq!(h.len(), 64);
        assert!(
            h.bytes()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
        assert_eq!(
            hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[tokio::test]
    async fn create_authenticate_revoke() {
        let store = MemoryStore::new();
        let tenant = TenantId::new();
        store
            .ensure_tenant(&TenantRecord::new(tenant, "t@example.com"))
            .await
            .unwrap();
        let (view, key) = create(
            &store,
            NewKey {
                tenant,
                name: "backend".into(),
                scopes: vec![Scope::Read, Scope::Write],
                expires_at: None,
            },
        )
        .await
        .unwrap();
        let (rec, scopes) = authenticate(&store, key.expose()).await.unwrap();
        assert_eq!(rec.id, view.id);
        assert_eq!(scopes, vec![Scope::Read, Scope::Write]);
        assert!(
            store.list_api_keys(None).await.unwrap()[0]
                .last_used
                .is_some()
        );
        revoke(&store, view.id, Some(TenantId::new()))
            .await
            .unwrap_err();
        revoke(&store, view.id, Some(tenant)).await.unwrap();
        assert!(authenticate(&store, key.expose()).await.is_err());
        assert!(authenticate(&store, "evk_nope").await.is_err());
        assert!(parse_scopes(&["eva:read", "eva:rule"]).is_err());
    }
}
