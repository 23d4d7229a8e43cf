//! The memory store's jobs: a map by id, with the SQL stores' upsert rule
//! (an older `updated_at` never replaces a newer one).

use std::collections::BTreeMap;

use super::JobQuery;
use crate::ids::{JobId, TenantId};
use crate::protocol::job::Job;

#[derive(Debug, Default)]
pub(crate) struct JobTables {
    by_id: BTreeMap<JobId, Job>,
}

impl JobTables {
    pub(crate) fn upsert(&mut self, j: &Job) {
        match self.by_id.get(&j.id) {
            Some(stored) if stored.updated_at > j.updated_at => {}
            _ => {
                self.by_id.insert(j.id, j.clone());
            }
        }
    }

    pub(crate) fn get(&self, tenant: Option<TenantId>, id: JobId) -> Option<Job> {
        self.by_id
            .get(&id)
            .filter(|j| tenant.is_none_or(|t| t == j.tenant))
            .cloned()
    }

    pub(crate) fn list(&self, tenant: TenantId, q: &JobQuery) -> Vec<Job> {
        self.by_id
            .values()
            .rev()
            .filter(|j| j.tenant == tenant && q.matches(j))
            .take(q.limit)
            .cloned()
            .collect()
    }
}
