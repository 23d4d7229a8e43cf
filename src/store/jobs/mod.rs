//! Jobs in the store (seed 004 `jobs`), behind the [`JobStore`] trait
//! every [`super::Store`] also implements.
//!
//! Writes are rows like any other ([`super::Row::Job`], an upsert in the
//! batch writer), so a job's change is acknowledged only once it commits.
//! The upsert never replaces a newer `updated_at` with an older one: the
//! stream that carries a job's events is its order of record, and a
//! late batch from another node cannot roll a stored job back.

pub(crate) mod memory;

use async_trait::async_trait;

use super::StoreError;
use crate::ids::{JobId, TenantId};
use crate::protocol::job::{Job, JobStatus};

/// The longest `type` a job may have (the column's width).
pub const JOB_TYPE_MAX: usize = 50;

/// Filters and paging for job listings: newest first.
#[derive(Clone, Debug, Default)]
pub struct JobQuery {
    pub status: Option<JobStatus>,
    pub job_type: Option<String>,
    /// Jobs created strictly before this one (ids are time-ordered).
    pub before: Option<JobId>,
    pub limit: usize,
}

impl JobQuery {
    pub fn matches(&self, j: &Job) -> bool {
        self.status.is_none_or(|s| s == j.status)
            && self.job_type.as_ref().is_none_or(|t| *t == j.job_type)
            && self.before.is_none_or(|b| j.id < b)
    }
}

/// Jobs, read back; written through the batch writer.
#[async_trait]
pub trait JobStore: Send + Sync {
    /// The job, if it exists and (when `tenant` is given) is that tenant's.
    async fn job(&self, tenant: Option<TenantId>, id: JobId) -> Result<Option<Job>, StoreError>;

    /// The tenant's jobs matching `q`, newest first, at most `q.limit`.
    async fn list_jobs(&self, tenant: TenantId, q: &JobQuery) -> Result<Vec<Job>, StoreError>;
}
