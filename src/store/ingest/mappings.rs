//! Which session each vendor conversation maps to, remembered once found.
//!
//! Every inbound event names its conversation, and finding the session
//! whose `external_id` it is takes a query. The hub never deletes
//! sessions, and a session's `external_id` is set when it is created, so
//! a mapping found once holds for good. (A session deleted in the database
//! by hand is forgotten at the first event that cannot be applied to it.)
//! A conversation that maps to no session is not remembered: its session
//! may be created later.

use dashmap::DashMap;

use super::IngestStore;
use crate::ids::{SessionId, TenantId};
use crate::store::StoreError;

/// Mappings remembered at most; past this the map starts over.
const MAPPINGS_MAX: usize = 100_000;

#[derive(Debug, Default)]
pub struct Mappings {
    sessions: DashMap<String, (TenantId, SessionId)>,
}

impl Mappings {
    /// The tenant and id of the session presenting `conversation`.
    ///
    /// # Errors
    /// The store failed.
    pub async fn session_of(
        &self,
        store: &dyn IngestStore,
        conversation: &str,
    ) -> Result<Option<(TenantId, SessionId)>, StoreError> {
        if let Some(m) = self.sessions.get(conversation) {
            return Ok(Some(*m));
        }
        let Some(r) = store.session_by_external_id(conversation).await? else {
            return Ok(None);
        };
        if self.sessions.len() >= MAPPINGS_MAX {
            self.sessions.clear();
        }
        self.sessions
            .insert(conversation.to_owned(), (r.tenant, r.id));
        Ok(Some((r.tenant, r.id)))
    }

    /// Forgets a conversation's session: the next event looks it up again.
    pub fn forget(&self, conversation: &str) {
        self.sessions.remove(conversation);
    }
}
