//! PostgreSQL: jobs (`store::jobs`), read with the shared table
//! description; they are written as rows by the batch writer.

use async_trait::async_trait;

use super::PostgresStore;
use super::codec::{err, select};
use crate::ids::{JobId, TenantId};
use crate::protocol::job::Job;
use crate::store::StoreError;
use crate::store::jobs::{JobQuery, JobStore};
use crate::store::sql::columns::{Decode, limit};

#[async_trait]
impl JobStore for PostgresStore {
    async fn job(&self, tenant: Option<TenantId>, id: JobId) -> Result<Option<Job>, StoreError> {
        let q = format!(
            "{} WHERE id = $1 AND ($2::uuid IS NULL OR user_id = $2)",
            select::<Job>()
        );
        sqlx::query(&q)
            .bind(id.0)
            .bind(tenant.map(|t| t.0))
            .fetch_optional(&self.pool)
            .await
            .map_err(err)?
            .as_ref()
            .map(Job::decode)
            .transpose()
    }

    async fn list_jobs(&self, tenant: TenantId, q: &JobQuery) -> Result<Vec<Job>, StoreError> {
        let sql = format!(
            "{} WHERE user_id = $1 AND ($2::text IS NULL OR status = $2) \
             AND ($3::text IS NULL OR type = $3) AND ($4::uuid IS NULL OR id < $4) \
             ORDER BY id DESC LIMIT $5",
            select::<Job>()
        );
        sqlx::query(&sql)
            .bind(tenant.0)
            .bind(q.status.map(|s| s.as_str()))
            .bind(q.job_type.as_deref())
            .bind(q.before.map(|b| b.0))
            .bind(limit(q.limit))
            .fetch_all(&self.pool)
            .await
            .map_err(err)?
            .iter()
            .map(Job::decode)
            .collect()
    }
}
