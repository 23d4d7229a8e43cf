//! The memory store's webhook tables, kept under the memory store's one
//! lock (so a batch's deliveries appear with its other rows, all at
//! once); `store::memory` implements [`super::WebhookStore`] with them.

use std::collections::{BTreeSet, HashMap, HashSet};

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{
    AttemptOutcome, ClaimRequest, Claimed, DeliveryRecord, DeliveryStatus, DisabledEndpoint,
    REPLAY_MAX, ReplayFrom, WebhookEventRow, WebhookPatch, WebhookRecord,
};
use crate::ids::TenantId;
use crate::store::StoreError;

#[derive(Debug, Default)]
pub(crate) struct WebhookTables {
    /// In creation order.
    endpoints: Vec<WebhookRecord>,
    /// In id order (ids are positions + 1).
    deliveries: Vec<DeliveryRecord>,
    /// `(endpoint, msg_id, replay)` → position, the unique key.
    keys: HashMap<(Uuid, String, i32), usize>,
    /// Pending deliveries per endpoint by `(next_attempt_at, id)`: what a
    /// claim reads, so it never scans delivered rows, nor the backlog of an
    /// endpoint it skips (a hanging endpoint's grows by every event).
    due: HashMap<Uuid, BTreeSet<(DateTime<Utc>, i64)>>,
}

impl WebhookTables {
    /// One pending delivery per active endpoint of the tenant that wants
    /// the event; a repeat of the same event adds nothing.
    pub(crate) fn enqueue(&mut self, e: &WebhookEventRow) {
        let targets: Vec<Uuid> = self
            .endpoints
            .iter()
            .filter(|w| w.tenant == e.tenant && w.is_active && w.wants(&e.event_type))
            .map(|w| w.id)
            .collect();
        for webhook_id in targets {
            self.insert(
                webhook_id,
                &e.msg_id,
                0,
                &e.event_type,
                &e.body,
                e.created_at,
            );
        }
    }

    fn insert(
        &mut self,
        webhook_id: Uuid,
        msg_id: &str,
        replay: i32,
        event_type: &str,
        body: &str,
        at: DateTime<Utc>,
    ) -> bool {
        let key = (webhook_id, msg_id.to_owned(), replay);
        if self.keys.contains_key(&key) {
            return false;
        }
        self.keys.insert(key, self.deliveries.len());
        let id = self.deliveries.len() as i64 + 1;
        self.due.entry(webhook_id).or_default().insert((at, id));
        self.deliveries.push(DeliveryRecord {
            id,
            webhook_id,
            msg_id: msg_id.to_owned(),
            replay,
            event_type: event_type.to_owned(),
            body: body.to_owned(),
            status: DeliveryStatus::Pending,
            attempts: 0,
            next_attempt_at: at,
            created_at: at,
            last_attempt_at: None,
            delivered_at: None,
            response_status: None,
            last_error: None,
        });
        true
    }

    fn endpoint_mut(&mut self, tenant: TenantId, id: Uuid) -> Option<&mut WebhookRecord> {
        self.endpoints
            .iter_mut()
            .find(|w| w.id == id && w.tenant == tenant)
    }

    fn delivery_mut(&mut self, id: i64) -> Option<&mut DeliveryRecord> {
        usize::try_from(id - 1)
            .ok()
            .and_then(|i| self.deliveries.get_mut(i))
    }
}

impl WebhookTables {
    /// `tenant_exists`: the foreign key on `user_id`.
    pub(crate) fn create_webhook(
        &mut self,
        w: &WebhookRecord,
        tenant_exists: bool,
    ) -> Result<(), StoreError> {
        if !tenant_exists {
            return Err(StoreError::Rejected(format!("no tenant {}", w.tenant)));
        }
        if self.endpoints.iter().any(|e| e.id == w.id) {
            return Err(StoreError::Rejected(format!("webhook {} exists", w.id)));
        }
        self.endpoints.push(w.clone());
        Ok(())
    }

    pub(crate) fn list_webhooks(&self, tenant: TenantId) -> Result<Vec<WebhookRecord>, StoreError> {
        Ok(self
            .endpoints
            .iter()
            .filter(|w| w.tenant == tenant)
            .cloned()
            .collect())
    }

    pub(crate) fn get_webhook(
        &self,
        tenant: TenantId,
        id: Uuid,
    ) -> Result<Option<WebhookRecord>, StoreError> {
        Ok(self
            .endpoints
            .iter()
            .find(|w| w.id == id && w.tenant == tenant)
            .cloned())
    }

    pub(crate) fn update_webhook(
        &mut self,
        tenant: TenantId,
        id: Uuid,
        patch: &WebhookPatch,
    ) -> Result<Option<WebhookRecord>, StoreError> {
        let Some(w) = self.endpoint_mut(tenant, id) else {
            return Ok(None);
        };
        if let Some(url) = &patch.url {
            w.url = url.clone();
        }
        if let Some(events) = &patch.events {
            w.events = events.clone();
        }
        if let Some(d) = &patch.description {
            w.description = d.clone();
        }
        if let Some(n) = patch.retry_count {
            w.retry_count = n;
        }
        if let Some(n) = patch.timeout_seconds {
            w.timeout_seconds = n;
        }
        if let Some(active) = patch.is_active {
            if active && !w.is_active {
                w.failure_count = 0;
                w.disabled_reason = None;
            }
            w.is_active = active;
        }
        Ok(Some(w.clone()))
    }

    pub(crate) fn delete_webhook(
        &mut self,
        tenant: TenantId,
        id: Uuid,
    ) -> Result<bool, StoreError> {
        let before = self.endpoints.len();
        self.endpoints
            .retain(|w| !(w.id == id && w.tenant == tenant));
        let deleted = self.endpoints.len() < before;
        if deleted {
            self.due.remove(&id);
            // Keep positions (they are ids); mark the rows as gone.
            for d in self.deliveries.iter_mut() {
                if d.webhook_id == id {
                    d.webhook_id = Uuid::nil();
                    d.status = DeliveryStatus::Failed;
                }
            }
        }
        Ok(deleted)
    }

    pub(crate) fn webhook_deliveries(
        &self,
        webhook: Uuid,
        before: Option<i64>,
        limit: usize,
    ) -> Result<Vec<DeliveryRecord>, StoreError> {
        Ok(self
            .deliveries
            .iter()
            .rev()
            .filter(|d| d.webhook_id == webhook && before.is_none_or(|b| d.id < b))
            .take(limit)
            .cloned()
            .collect())
    }

    pub(crate) fn claim_webhook_deliveries(
        &mut self,
        req: &ClaimRequest,
    ) -> Result<Claimed, StoreError> {
        let w = self;
        // The first `per_endpoint` due rows of every endpoint that may be
        // claimed from, then the earliest `limit` of those.
        let mut due: Vec<(DateTime<Utc>, i64, Uuid)> = Vec::new();
        for (webhook, pending) in &w.due {
            if req.skip.contains(webhook) || !(req.only.is_empty() || req.only.contains(webhook)) {
                continue;
            }
            due.extend(
                pending
                    .iter()
                    .take_while(|(at, _)| *at <= req.now)
                    .take(req.per_endpoint)
                    .map(|(at, id)| (*at, *id, *webhook)),
            );
        }
        due.sort_unstable();
        due.truncate(req.limit);
        let mut claimed = Claimed::default();
        let mut from: HashSet<Uuid> = HashSet::new();
        for (at, id, webhook) in due {
            if let Some(pending) = w.due.get_mut(&webhook) {
                pending.remove(&(at, id));
                pending.insert((req.lease_until, id));
            }
            let i = (id - 1) as usize;
            w.deliveries[i].next_attempt_at = req.lease_until;
            claimed.deliveries.push(w.deliveries[i].clone());
            from.insert(webhook);
        }
        claimed.endpoints = w
            .endpoints
            .iter()
            .filter(|e| from.contains(&e.id))
            .cloned()
            .collect();
        Ok(claimed)
    }

    pub(crate) fn record_webhook_attempts(
        &mut self,
        outcomes: &[AttemptOutcome],
        disable_after: i32,
    ) -> Result<Vec<DisabledEndpoint>, StoreError> {
        let w = self;
        let mut disabled = Vec::new();
        for o in outcomes {
            let mut moved = None;
            if let Some(d) = w.delivery_mut(o.delivery_id) {
                let was = (d.status == DeliveryStatus::Pending).then_some(d.next_attempt_at);
                moved = Some((d.webhook_id, was));
                d.status = o.status;
                d.next_attempt_at = o.next_attempt_at;
                if o.attempted {
                    d.attempts += 1;
                    d.last_attempt_at = Some(o.at);
                    d.response_status = o.response_status;
                }
                d.last_error = o.error.clone();
                if o.status == DeliveryStatus::Delivered {
                    d.delivered_at = Some(o.at);
                }
            }
            if let Some((webhook, was)) = moved {
                let pending = w.due.entry(webhook).or_default();
                if let Some(at) = was {
                    pending.remove(&(at, o.delivery_id));
                }
                if o.status == DeliveryStatus::Pending {
                    pending.insert((o.next_attempt_at, o.delivery_id));
                }
            }
            if !o.attempted {
                continue;
            }
            if let Some(e) = w.endpoints.iter_mut().find(|e| e.id == o.webhook_id) {
                e.last_triggered = Some(o.at);
                if o.status == DeliveryStatus::Delivered {
                    e.failure_count = 0;
                } else {
                    e.failure_count += 1;
                }
                if e.is_active && disable_after > 0 && e.failure_count >= disable_after {
                    e.is_active = false;
                    e.disabled_reason = Some(super::disabled_reason(e.failure_count));
                    disabled.push(DisabledEndpoint {
                        id: e.id,
                        tenant: e.tenant,
                        url: e.url.clone(),
                        failure_count: e.failure_count,
                    });
                }
            }
        }
        Ok(disabled)
    }

    pub(crate) fn replay_webhook_deliveries(
        &mut self,
        webhook: Uuid,
        from: ReplayFrom,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let w = self;
        let start = match from {
            ReplayFrom::Since(_) => 0,
            ReplayFrom::Delivery(id) => {
                let Some(msg) = w
                    .deliveries
                    .iter()
                    .find(|d| d.id == id && d.webhook_id == webhook)
                    .map(|d| d.msg_id.clone())
                else {
                    return Ok(0);
                };
                w.deliveries
                    .iter()
                    .find(|d| d.webhook_id == webhook && d.msg_id == msg && d.replay == 0)
                    .map_or(id, |d| d.id)
            }
        };
        let originals: Vec<DeliveryRecord> = w
            .deliveries
            .iter()
            .filter(|d| d.webhook_id == webhook && d.replay == 0 && d.id >= start)
            .filter(|d| match from {
                ReplayFrom::Since(t) => d.created_at >= t,
                ReplayFrom::Delivery(_) => true,
            })
            .take(REPLAY_MAX as usize)
            .cloned()
            .collect();
        let mut n = 0;
        for d in originals {
            let replay = w
                .deliveries
                .iter()
                .filter(|r| r.webhook_id == webhook && r.msg_id == d.msg_id)
                .map(|r| r.replay)
                .max()
                .unwrap_or(0)
                + 1;
            if w.insert(webhook, &d.msg_id, replay, &d.event_type, &d.body, now) {
                n += 1;
            }
        }
        Ok(n)
    }
}
