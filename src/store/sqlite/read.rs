//! SQLite reads: sessions, the history pages, participants, tenants
//! and API keys, with SELECT lists rendered from the shared table
//! descriptions.

use sqlx::sqlite::SqlitePool;

use super::codec::{err, select};
use crate::ids::{SessionId, TenantId};
use crate::store::sql::columns::{Decode, limit};
use crate::store::{
    ApiKeyRecord, Page, ParticipantRow, SessionQuery, SessionRecord, StoreError, TenantRecord,
};

pub(super) async fn get_session(
    pool: &SqlitePool,
    tenant: Option<TenantId>,
    id: SessionId,
) -> Result<Option<SessionRecord>, StoreError> {
    let q = format!(
        "{} WHERE s.id = ?1 AND (?2 IS NULL OR s.user_id = ?2)",
        select::<SessionRecord>()
    );
    sqlx::query(&q)
        .bind(id.to_string())
        .bind(tenant.map(|t| t.to_string()))
        .fetch_optional(pool)
        .await
        .map_err(err)?
        .as_ref()
        .map(SessionRecord::decode)
        .transpose()
}

pub(super) async fn list_sessions(
    pool: &SqlitePool,
    tenant: TenantId,
    query: &SessionQuery,
) -> Result<Vec<SessionRecord>, StoreError> {
    let q = format!(
        "{} WHERE s.user_id = ?1 AND (?2 IS NULL OR s.status = ?2) \
         AND (?3 IS NULL OR s.id < ?3) ORDER BY s.id DESC LIMIT ?4",
        select::<SessionRecord>()
    );
    sqlx::query(&q)
        .bind(tenant.to_string())
        .bind(query.status.map(|s| s.as_str()))
        .bind(query.before.map(|b| b.to_string()))
        .bind(limit(query.limit))
        .fetch_all(pool)
        .await
        .map_err(err)?
        .iter()
        .map(SessionRecord::decode)
        .collect()
}

pub(super) async fn live_sessions(pool: &SqlitePool) -> Result<Vec<SessionRecord>, StoreError> {
    let q = format!(
        "{} WHERE s.status NOT IN ('stopped', 'failed') ORDER BY s.id",
        select::<SessionRecord>()
    );
    sqlx::query(&q)
        .fetch_all(pool)
        .await
        .map_err(err)?
        .iter()
        .map(SessionRecord::decode)
        .collect()
}

/// A session's history rows, newest first, with or without a keyset
/// bound.
pub(super) async fn page<T: Decode>(
    pool: &SqlitePool,
    session: SessionId,
    page: Page,
) -> Result<Vec<T>, StoreError> {
    let select = select::<T>();
    let rows = match page.before {
        Some(before) => {
            let q = format!("{select} WHERE session_id = ?1 AND id < ?2 ORDER BY id DESC LIMIT ?3");
            sqlx::query(&q)
                .bind(session.to_string())
                .bind(before.to_string())
                .bind(limit(page.limit))
                .fetch_all(pool)
                .await
        }
        None => {
            let q = format!("{select} WHERE session_id = ?1 ORDER BY id DESC LIMIT ?2");
            sqlx::query(&q)
                .bind(session.to_string())
                .bind(limit(page.limit))
                .fetch_all(pool)
                .await
        }
    }
    .map_err(err)?;
    rows.iter().map(T::decode).collect()
}

pub(super) async fn participants(
    pool: &SqlitePool,
    session: SessionId,
) -> Result<Vec<ParticipantRow>, StoreError> {
    let q = format!(
        "{} WHERE session_id = ?1 ORDER BY joined_at, participant_id",
        select::<ParticipantRow>()
    );
    sqlx::query(&q)
        .bind(session.to_string())
        .fetch_all(pool)
        .await
        .map_err(err)?
        .iter()
        .map(ParticipantRow::decode)
        .collect()
}

pub(super) async fn get_tenant(
    pool: &SqlitePool,
    id: TenantId,
) -> Result<Option<TenantRecord>, StoreError> {
    let q = format!("{} WHERE id = ?1", select::<TenantRecord>());
    sqlx::query(&q)
        .bind(id.to_string())
        .fetch_optional(pool)
        .await
        .map_err(err)?
        .as_ref()
        .map(TenantRecord::decode)
        .transpose()
}

pub(super) async fn api_key_by_hash(
    pool: &SqlitePool,
    key_hash: &str,
) -> Result<Option<ApiKeyRecord>, StoreError> {
    let q = format!("{} WHERE key_hash = ?1", select::<ApiKeyRecord>());
    sqlx::query(&q)
        .bind(key_hash)
        .fetch_optional(pool)
        .await
        .map_err(err)?
        .as_ref()
        .map(ApiKeyRecord::decode)
        .transpose()
}

pub(super) async fn list_api_keys(
    pool: &SqlitePool,
    tenant: Option<TenantId>,
) -> Result<Vec<ApiKeyRecord>, StoreError> {
    let q = format!(
        "{} WHERE (?1 IS NULL OR user_id = ?1) ORDER BY created_at DESC, id DESC",
        select::<ApiKeyRecord>()
    );
    sqlx::query(&q)
        .bind(tenant.map(|t| t.to_string()))
        .fetch_all(pool)
        .await
        .map_err(err)?
        .iter()
        .map(ApiKeyRecord::decode)
        .collect()
}
