//! An in-process store. Nothing survives a restart; it exists for tests
//! and for runs where losing everything on exit is acceptable.
//!
//! It follows the same idempotency rules as the SQL stores, so the
//! conformance suite holds it to the same contract.

use std::collections::{BTreeMap, HashMap, HashSet};

use async_trait::async_trait;
use parking_lot::Mutex;
use uuid::Uuid;

use chrono::{DateTime, Utc};

use super::ingest::memory::IngestTables;
use super::ingest::{IngestStore, ProcessedEvent, Recorded};
use super::jobs::memory::JobTables;
use super::jobs::{JobQuery, JobStore};
use super::webhooks::memory::WebhookTables;
use super::webhooks::{
    AttemptOutcome, ClaimRequest, Claimed, DeliveryRecord, DisabledEndpoint, ReplayFrom,
    WebhookPatch, WebhookRecord, WebhookStore,
};
use super::{
    AlertRow, ApiKeyRecord, ConversationRow, InterventionRow, MessageType, MetricRow, Page,
    ParticipantRow, Row, SessionQuery, SessionRecord, Store, StoreError, TenantRecord,
};
use crate::ids::{JobId, SessionId, TenantId};
use crate::protocol::job::Job;

/// Seed 000's CHECK on `users.subscription_tier`.
const TIERS: [&str; 3] = ["basic", "professional", "enterprise"];

/// A participant row without the key it is filed under.
#[derive(Debug)]
struct Attendance {
    name: Option<Box<str>>,
    joined_at: DateTime<Utc>,
    left_at: Option<DateTime<Utc>>,
    questions_asked: i32,
}

impl Attendance {
    fn row(&self, session_id: SessionId, participant_id: &str) -> ParticipantRow {
        ParticipantRow {
            session_id,
            participant_id: participant_id.to_owned(),
            participant_name: self.name.as_deref().map(str::to_owned),
            joined_at: self.joined_at,
            left_at: self.left_at,
            questions_asked: self.questions_asked,
        }
    }
}

#[derive(Debug, Default)]
pub(super) struct Tables {
    sessions: HashMap<SessionId, SessionRecord>,
    conversations: Vec<ConversationRow>,
    conversation_ids: HashMap<Uuid, usize>,
    /// The unique `(session, message type, sender, client_msg_id)` of the
    /// SQL stores, so a resend is found without reading every row.
    conversation_keys: HashSet<(SessionId, MessageType, String, String)>,
    question_responses: HashMap<Uuid, super::QuestionResponseRow>,
    interventions: Vec<InterventionRow>,
    intervention_ids: HashMap<Uuid, usize>,
    /// The unique `(session, operator, client_msg_id)`.
    intervention_keys: HashSet<(SessionId, String, String)>,
    alerts: Vec<AlertRow>,
    alert_ids: HashMap<Uuid, usize>,
    metrics: Vec<MetricRow>,
    metric_ids: HashSet<Uuid>,
    /// Ordered by session so that one session's participants are a range,
    /// not a scan of every session's. The id is held once, in the key: a
    /// participant who joined is a row for as long as the hub runs.
    participants: BTreeMap<(SessionId, Box<str>), Attendance>,
    tenants: HashMap<TenantId, TenantRecord>,
    keys: Vec<ApiKeyRecord>,
    pub(super) webhooks: WebhookTables,
    ingest: IngestTables,
    jobs: JobTables,
}

#[derive(Debug, Default)]
pub struct MemoryStore {
    pub(super) tables: Mutex<Tables>,
}

impl MemoryStore {
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    /// Number of performance metric rows held (for tests).
    pub fn metric_count(&self) -> usize {
        self.tables.lock().metrics.len()
    }

    /// A participant row (for tests).
    pub fn participant(&self, session: SessionId, id: &str) -> Option<ParticipantRow> {
        self.tables
            .lock()
            .participants
            .get(&(session, Box::from(id)))
            .map(|a| a.row(session, id))
    }
}

/// Newest first, strictly before `page.before`, at most `page.limit`.
fn page_of<T: Clone>(
    rows: impl DoubleEndedIterator<Item = T>,
    id: impl Fn(&T) -> Uuid,
    page: Page,
) -> Vec<T> {
    rows.rev()
        .filter(|r| page.before.is_none_or(|b| id(r) < b))
        .take(page.limit)
        .collect()
}

impl Tables {
    pub(super) fn has_tenant(&self, id: TenantId) -> bool {
        self.tenants.contains_key(&id)
    }

    /// Like the SQL stores' foreign keys: rows that insert into a
    /// session's history need the session.
    fn check(&self, row: &Row) -> Result<(), StoreError> {
        let session = match row {
            Row::Conversation(c) => c.session_id,
            Row::Intervention(i) => i.session_id,
            Row::Alert(a) => a.session_id,
            Row::Metric(m) => m.session_id,
            _ => return Ok(()),
        };
        if self.sessions.contains_key(&session) {
            Ok(())
        } else {
            Err(StoreError::Rejected(format!(
                "a {} row references the unknown session {session}",
                row.kind()
            )))
        }
    }

    fn apply(&mut self, row: &Row) {
        match row {
            Row::Conversation(c) => {
                let key = c
                    .client_msg_id
                    .as_ref()
                    .zip(c.sender())
                    .map(|(cid, sender)| {
                        (c.session_id, c.message_type, sender.to_owned(), cid.clone())
                    });
                let duplicate = self.conversation_ids.contains_key(&c.id.0)
                    || key
                        .as_ref()
                        .is_some_and(|k| self.conversation_keys.contains(k));
                if !duplicate {
                    if let Some(k) = key {
                        self.conversation_keys.insert(k);
                    }
                    self.conversation_ids
                        .insert(c.id.0, self.conversations.len());
                    self.conversations.push(c.clone());
                }
            }
            Row::QuestionResponse(q) => {
                // Written with its conversation row; when that row was a
                // resend and not stored, this one is a resend too.
                if self.conversation_ids.contains_key(&q.conversation_id.0) {
                    self.question_responses
                        .entry(q.id.0)
                        .or_insert_with(|| q.clone());
                }
            }
            Row::Intervention(i) => {
                let key = i
                    .client_msg_id
                    .as_ref()
                    .map(|cid| (i.session_id, i.operator_id.clone(), cid.clone()));
                let duplicate = self.intervention_ids.contains_key(&i.id.0)
                    || key
                        .as_ref()
                        .is_some_and(|k| self.intervention_keys.contains(k));
                if !duplicate {
                    if let Some(k) = key {
                        self.intervention_keys.insert(k);
                    }
                    self.intervention_ids
                        .insert(i.id.0, self.interventions.len());
                    self.interventions.push(i.clone());
                }
            }
            Row::InterventionEnded {
                id,
                ended_at,
                duration_seconds,
            } => {
                if let Some(&idx) = self.intervention_ids.get(&id.0) {
                    let i = &mut self.interventions[idx];
                    i.ended_at = Some(*ended_at);
                    i.duration_seconds = Some(*duration_seconds);
                }
            }
            Row::Alert(a) => {
                if !self.alert_ids.contains_key(&a.id.0) {
                    self.alert_ids.insert(a.id.0, self.alerts.len());
                    self.alerts.push(a.clone());
                }
            }
            Row::AlertAcknowledged { id, by, at } => {
                if let Some(&idx) = self.alert_ids.get(&id.0) {
                    let a = &mut self.alerts[idx];
                    if !a.acknowledged {
                        a.acknowledged = true;
                        a.acknowledged_by = Some(by.clone());
                        a.acknowledged_at = Some(*at);
                    }
                }
            }
            Row::Metric(m) => {
                if self.metric_ids.insert(m.id) {
                    self.metrics.push(m.clone());
                }
            }
            Row::SessionProgress {
                id,
                status,
                started_at,
                ended_at,
                counters,
                last_error,
            } => {
                if let Some(s) = self.sessions.get_mut(id) {
                    s.status = *status;
                    s.started_at = started_at.or(s.started_at);
                    s.ended_at = ended_at.or(s.ended_at);
                    s.counters = *counters;
                    if last_error.is_some() {
                        s.last_error = last_error.clone();
                    }
                }
            }
            Row::State {
                session_id,
                state,
                context,
                ..
            } => {
                if let Some(s) = self.sessions.get_mut(session_id) {
                    s.state = state.clone();
                    s.context = context.clone();
                }
            }
            Row::ParticipantJoined(p) if self.sessions.contains_key(&p.session_id) => {
                self.participants
                    .entry((p.session_id, p.participant_id.as_str().into()))
                    .and_modify(|old| old.left_at = None)
                    .or_insert_with(|| Attendance {
                        name: p.participant_name.as_deref().map(Box::from),
                        joined_at: p.joined_at,
                        left_at: p.left_at,
                        questions_asked: p.questions_asked,
                    });
            }
            Row::ParticipantJoined(_) => {}
            Row::ParticipantLeft {
                session_id,
                participant_id,
                left_at,
                questions_asked,
            } => {
                if let Some(p) = self
                    .participants
                    .get_mut(&(*session_id, participant_id.as_str().into()))
                {
                    p.left_at = Some(*left_at);
                    p.questions_asked = *questions_asked;
                }
            }
            Row::Webhook(w) => self.webhooks.enqueue(w),
            Row::Job(j) => self.jobs.upsert(j),
        }
    }
}

#[async_trait]
impl Store for MemoryStore {
    fn name(&self) -> &'static str {
        "memory"
    }

    /// Each batch applies under one lock, so flushers of different lanes
    /// interleave whole batches; the hub's tests, which use this store,
    /// run with as many lanes as production.
    fn parallel_writes(&self) -> bool {
        true
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        Ok(())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }

    async fn create_session(&self, session: &SessionRecord) -> Result<(), StoreError> {
        let mut t = self.tables.lock();
        if !t.tenants.contains_key(&session.tenant) {
            return Err(StoreError::Rejected(format!(
                "no tenant {} for the session",
                session.tenant
            )));
        }
        // The SQL stores' unique index on `sessions.external_id`.
        if let Some(x) = &session.external_id
            && t.sessions
                .values()
                .any(|s| s.id != session.id && s.external_id.as_ref() == Some(x))
        {
            return Err(StoreError::Rejected(format!(
                "another session has external_id {x:?}"
            )));
        }
        t.sessions
            .entry(session.id)
            .or_insert_with(|| session.clone());
        Ok(())
    }

    async fn get_session(
        &self,
        tenant: Option<TenantId>,
        id: SessionId,
    ) -> Result<Option<SessionRecord>, StoreError> {
        Ok(self
            .tables
            .lock()
            .sessions
            .get(&id)
            .filter(|s| tenant.is_none_or(|t| t == s.tenant))
            .cloned())
    }

    async fn list_sessions(
        &self,
        tenant: TenantId,
        query: &SessionQuery,
    ) -> Result<Vec<SessionRecord>, StoreError> {
        let t = self.tables.lock();
        let mut rows: Vec<_> = t
            .sessions
            .values()
            .filter(|s| s.tenant == tenant)
            .filter(|s| query.status.is_none_or(|st| st == s.status))
            .filter(|s| query.before.is_none_or(|b| s.id < b))
            .cloned()
            .collect();
        rows.sort_by_key(|s| std::cmp::Reverse(s.id));
        rows.truncate(query.limit);
        Ok(rows)
    }

    async fn live_sessions(&self) -> Result<Vec<SessionRecord>, StoreError> {
        Ok(self
            .tables
            .lock()
            .sessions
            .values()
            .filter(|s| !s.status.is_terminal())
            .cloned()
            .collect())
    }

    async fn write_batch(&self, rows: &[Row]) -> Result<(), StoreError> {
        let mut t = self.tables.lock();
        // All or nothing: check every row before applying any.
        for row in rows {
            t.check(row)?;
        }
        for row in rows {
            t.apply(row);
        }
        Ok(())
    }

    async fn has_conversation_row(
        &self,
        session: SessionId,
        message_type: MessageType,
        sender: &str,
        client_msg_id: &str,
    ) -> Result<bool, StoreError> {
        let key = (
            session,
            message_type,
            sender.to_owned(),
            client_msg_id.to_owned(),
        );
        Ok(self.tables.lock().conversation_keys.contains(&key))
    }

    async fn conversation(
        &self,
        session: SessionId,
        page: Page,
    ) -> Result<Vec<ConversationRow>, StoreError> {
        let t = self.tables.lock();
        Ok(page_of(
            t.conversations
                .iter()
                .filter(|c| c.session_id == session)
                .cloned(),
            |c| c.id.0,
            page,
        ))
    }

    async fn interventions(
        &self,
        session: SessionId,
        page: Page,
    ) -> Result<Vec<InterventionRow>, StoreError> {
        let t = self.tables.lock();
        Ok(page_of(
            t.interventions
                .iter()
                .filter(|i| i.session_id == session)
                .cloned(),
            |i| i.id.0,
            page,
        ))
    }

    async fn alerts(&self, session: SessionId, page: Page) -> Result<Vec<AlertRow>, StoreError> {
        let t = self.tables.lock();
        Ok(page_of(
            t.alerts.iter().filter(|a| a.session_id == session).cloned(),
            |a| a.id.0,
            page,
        ))
    }

    async fn participants(&self, session: SessionId) -> Result<Vec<ParticipantRow>, StoreError> {
        let t = self.tables.lock();
        let first = (session, Box::<str>::default());
        let mut rows: Vec<_> = t
            .participants
            .range(first..)
            .take_while(|((s, _), _)| *s == session)
            .map(|((s, id), a)| a.row(*s, id))
            .collect();
        rows.sort_by(|a, b| {
            (a.joined_at, &a.participant_id).cmp(&(b.joined_at, &b.participant_id))
        });
        Ok(rows)
    }

    async fn delete_metrics_before(&self, cutoff: DateTime<Utc>) -> Result<u64, StoreError> {
        let mut t = self.tables.lock();
        let before = t.metrics.len();
        let Tables {
            metrics,
            metric_ids,
            ..
        } = &mut *t;
        metrics.retain(|m| {
            let keep = m.timestamp >= cutoff;
            if !keep {
                metric_ids.remove(&m.id);
            }
            keep
        });
        Ok((before - t.metrics.len()) as u64)
    }

    async fn ensure_tenant(&self, tenant: &TenantRecord) -> Result<(), StoreError> {
        if !TIERS.contains(&tenant.subscription_tier.as_str()) {
            return Err(StoreError::Rejected(format!(
                "subscription_tier must be one of {TIERS:?}"
            )));
        }
        let mut t = self.tables.lock();
        if t.tenants
            .values()
            .any(|o| o.email == tenant.email && o.id != tenant.id)
        {
            return Err(StoreError::Rejected(format!(
                "another tenant has the email {}",
                tenant.email
            )));
        }
        t.tenants.entry(tenant.id).or_insert_with(|| tenant.clone());
        Ok(())
    }

    async fn get_tenant(&self, id: TenantId) -> Result<Option<TenantRecord>, StoreError> {
        Ok(self.tables.lock().tenants.get(&id).cloned())
    }

    async fn count_api_calls(&self, tenant: TenantId, n: i32) -> Result<i64, StoreError> {
        let mut t = self.tables.lock();
        let rec = t
            .tenants
            .get_mut(&tenant)
            .ok_or_else(|| StoreError::Rejected("no such tenant".into()))?;
        rec.api_calls_used = rec.api_calls_used.saturating_add(n);
        Ok(rec.api_calls_used as i64)
    }

    async fn create_api_key(&self, key: &ApiKeyRecord) -> Result<(), StoreError> {
        let mut t = self.tables.lock();
        if !t.tenants.contains_key(&key.tenant) {
            return Err(StoreError::Rejected("no such tenant".into()));
        }
        if t.keys
            .iter()
            .any(|k| k.key_hash == key.key_hash || k.id == key.id)
        {
            return Err(StoreError::Rejected("duplicate key".into()));
        }
        t.keys.push(key.clone());
        Ok(())
    }

    async fn api_key_by_hash(&self, key_hash: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
        Ok(self
            .tables
            .lock()
            .keys
            .iter()
            .find(|k| k.key_hash == key_hash)
            .cloned())
    }

    async fn list_api_keys(
        &self,
        tenant: Option<TenantId>,
    ) -> Result<Vec<ApiKeyRecord>, StoreError> {
        let t = self.tables.lock();
        let mut keys: Vec<_> = t
            .keys
            .iter()
            .filter(|k| tenant.is_none_or(|id| k.tenant == id))
            .cloned()
            .collect();
        keys.sort_by_key(|k| std::cmp::Reverse(k.created_at));
        Ok(keys)
    }

    async fn revoke_api_key(&self, id: Uuid, tenant: Option<TenantId>) -> Result<bool, StoreError> {
        let mut t = self.tables.lock();
        match t
            .keys
            .iter_mut()
            .find(|k| k.id == id && tenant.is_none_or(|tid| k.tenant == tid))
        {
            Some(k) => {
                k.is_active = false;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    async fn touch_api_key(&self, id: Uuid, at: DateTime<Utc>) -> Result<(), StoreError> {
        if let Some(k) = self.tables.lock().keys.iter_mut().find(|k| k.id == id) {
            k.last_used = Some(at);
        }
        Ok(())
    }
}

#[async_trait]
impl WebhookStore for MemoryStore {
    async fn create_webhook(&self, w: &WebhookRecord) -> Result<(), StoreError> {
        let mut t = self.tables.lock();
        let known = t.has_tenant(w.tenant);
        t.webhooks.create_webhook(w, known)
    }

    async fn list_webhooks(&self, tenant: TenantId) -> Result<Vec<WebhookRecord>, StoreError> {
        self.tables.lock().webhooks.list_webhooks(tenant)
    }

    async fn get_webhook(
        &self,
        tenant: TenantId,
        id: Uuid,
    ) -> Result<Option<WebhookRecord>, StoreError> {
        self.tables.lock().webhooks.get_webhook(tenant, id)
    }

    async fn update_webhook(
        &self,
        tenant: TenantId,
        id: Uuid,
        patch: &WebhookPatch,
    ) -> Result<Option<WebhookRecord>, StoreError> {
        self.tables
            .lock()
            .webhooks
            .update_webhook(tenant, id, patch)
    }

    async fn delete_webhook(&self, tenant: TenantId, id: Uuid) -> Result<bool, StoreError> {
        self.tables.lock().webhooks.delete_webhook(tenant, id)
    }

    async fn webhook_deliveries(
        &self,
        webhook: Uuid,
        before: Option<i64>,
        limit: usize,
    ) -> Result<Vec<DeliveryRecord>, StoreError> {
        self.tables
            .lock()
            .webhooks
            .webhook_deliveries(webhook, before, limit)
    }

    async fn claim_webhook_deliveries(&self, req: &ClaimRequest) -> Result<Claimed, StoreError> {
        self.tables.lock().webhooks.claim_webhook_deliveries(req)
    }

    async fn record_webhook_attempts(
        &self,
        outcomes: &[AttemptOutcome],
        disable_after: i32,
    ) -> Result<Vec<DisabledEndpoint>, StoreError> {
        self.tables
            .lock()
            .webhooks
            .record_webhook_attempts(outcomes, disable_after)
    }

    async fn replay_webhook_deliveries(
        &self,
        webhook: Uuid,
        from: ReplayFrom,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        self.tables
            .lock()
            .webhooks
            .replay_webhook_deliveries(webhook, from, now)
    }
}

#[async_trait]
impl IngestStore for MemoryStore {
    async fn record_processed_events(
        &self,
        events: &[ProcessedEvent],
    ) -> Result<Vec<Recorded>, StoreError> {
        let mut t = self.tables.lock();
        Ok(events.iter().map(|e| t.ingest.record(e)).collect())
    }

    async fn processed_event(
        &self,
        event_hash: &str,
    ) -> Result<Option<ProcessedEvent>, StoreError> {
        Ok(self.tables.lock().ingest.get(event_hash))
    }

    async fn count_processed_events(&self, conversation_id: &str) -> Result<u64, StoreError> {
        Ok(self.tables.lock().ingest.count(conversation_id))
    }

    async fn session_by_external_id(
        &self,
        external_id: &str,
    ) -> Result<Option<SessionRecord>, StoreError> {
        Ok(self
            .tables
            .lock()
            .sessions
            .values()
            .find(|s| s.external_id.as_deref() == Some(external_id))
            .cloned())
    }
}

#[async_trait]
impl JobStore for MemoryStore {
    async fn job(&self, tenant: Option<TenantId>, id: JobId) -> Result<Option<Job>, StoreError> {
        Ok(self.tables.lock().jobs.get(tenant, id))
    }

    async fn list_jobs(&self, tenant: TenantId, q: &JobQuery) -> Result<Vec<Job>, StoreError> {
        Ok(self.tables.lock().jobs.list(tenant, q))
    }
}
