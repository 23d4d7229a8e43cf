//! The memory store's inbound events: a map by hash, with the same
//! contract as the unique index of the SQL stores.

use std::collections::HashMap;

use super::{ProcessedEvent, Recorded};

#[derive(Debug, Default)]
pub(crate) struct IngestTables {
    by_hash: HashMap<String, ProcessedEvent>,
}

impl IngestTables {
    pub(crate) fn record(&mut self, e: &ProcessedEvent) -> Recorded {
        match self.by_hash.get(&e.event_hash) {
            Some(stored) => Recorded::Duplicate(stored.clone()),
            None => {
                self.by_hash.insert(e.event_hash.clone(), e.clone());
                Recorded::New(e.clone())
            }
        }
    }

    pub(crate) fn get(&self, hash: &str) -> Option<ProcessedEvent> {
        self.by_hash.get(hash).cloned()
    }

    pub(crate) fn count(&self, conversation_id: &str) -> u64 {
        self.by_hash
            .values()
            .filter(|e| e.conversation_id == conversation_id)
            .count() as u64
    }
}
