//! Jobs with live progress (`docs/JOBS.md`, seed 004): created and
//! changed over REST, watched over WebSocket.
//!
//! A job's changes are `job` events in a session's stream, so watching a
//! job is joining a session, with the same ordering, resume and fan-out
//! as everything else: the presentation session the job was created for
//! (seen by its operators), or else a session of the job's own, which
//! only the job's owner and the tenant's operators may join and which
//! ends when the job does.
//!
//! The rules (progress never goes down, nothing changes after a terminal
//! status) are checked on the replica under the conditional publish, so
//! two concurrent changes cannot both pass against the same old job. The
//! change is answered only once its row commits: a `200` is never lost.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

use super::core::Hub;
use super::error::{HubError, refuse};
use super::lifecycle::NewSession;
use crate::identity::Principal;
use crate::ids::{JobId, SessionId};
use crate::protocol::ErrorCode;
use crate::protocol::SessionStatus;
use crate::protocol::job::{Job, JobChange, JobRefusal, JobStatus};
use crate::protocol::model::{CustomAudience, Event};
use crate::session::{Replica, Session};
use crate::store::Row;
use crate::store::jobs::{JOB_TYPE_MAX, JobQuery};
use crate::store::writer::{Ack, Order};
use crate::stream::Origin;
use crate::webhooks::{JobEvent, job_row};

/// The longest `owner` a job may name (seed 004's `user_id` column).
const OWNER_MAX: usize = 255;

/// `POST /v1/jobs`.
#[derive(Clone, Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewJob {
    /// `voice_clone`, `persona_extract`, `rag_ingest`... (1–50 bytes).
    #[serde(rename = "type")]
    pub job_type: String,
    /// Who the job is for: the subject of the connections that may watch
    /// it beside the tenant's operators.
    #[serde(default)]
    pub owner: Option<String>,
    /// A presentation session to report into; without it the job gets a
    /// session of its own.
    #[serde(default)]
    pub session: Option<SessionId>,
    /// Who in `session` sees the job's events (default `operators`).
    /// A job's own session shows them to everyone allowed in.
    #[serde(default)]
    pub audience: Option<CustomAudience>,
    /// The job's input (a JSON object).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Value>,
}

/// The owner a job's own session admits, from the session's config
/// (`{"job": {"id": …, "owner": …}}`); `None` when the session is not a
/// job's. `Some(None)`: a job without an owner, watched by operators only.
pub(crate) fn job_session_owner(config: &Value) -> Option<Option<&str>> {
    let job = config.get("job")?.as_object()?;
    Some(job.get("owner").and_then(Value::as_str))
}

/// Now, to the microsecond every store keeps, so a job reads back equal.
fn now() -> DateTime<Utc> {
    DateTime::from_timestamp_micros(Utc::now().timestamp_micros()).unwrap_or_default()
}

fn refused(e: JobRefusal) -> HubError {
    let code = match e {
        JobRefusal::OutOfRange(_) | JobRefusal::Empty => ErrorCode::Invalid,
        JobRefusal::Finished(_) | JobRefusal::Backwards { .. } | JobRefusal::Restarted => {
            ErrorCode::Conflict
        }
    };
    refuse(code, e.to_string())
}

fn no_job() -> HubError {
    refuse(ErrorCode::NotFound, "no such job")
}

impl Hub {
    /// Creates a job, `pending` at 0 %, and announces it in its stream.
    pub async fn create_job(&self, principal: &Principal, new: NewJob) -> Result<Job, HubError> {
        if new.job_type.is_empty()
            || new.job_type.len() > JOB_TYPE_MAX
            || new.job_type.chars().any(char::is_control)
        {
            return Err(refuse(
                ErrorCode::Invalid,
                "type is 1-50 bytes without control characters",
            ));
        }
        if let Some(o) = &new.owner
            && (o.is_empty() || o.len() > OWNER_MAX)
        {
            return Err(refuse(ErrorCode::Invalid, "owner is 1-255 bytes"));
        }
        let metadata = new.metadata.unwrap_or_else(|| json!({}));
        if !metadata.is_object() {
            return Err(refuse(ErrorCode::Invalid, "metadata must be a JSON object"));
        }
        let id = JobId::new();
        let (stream, audience) = match new.session {
            Some(sid) => {
                let s = self.sessions.find(Some(principal.tenant), sid).await?;
                if s.lock().info.status.is_terminal() {
                    return Err(refuse(ErrorCode::SessionEnded, "the session has ended"));
                }
                (s, new.audience.unwrap_or(CustomAudience::Operators))
            }
            None => {
                let view = self
                    .create_session(
                        principal,
                        NewSession {
                            name: Some(format!("job: {}", new.job_type)),
                            config: Some(json!({ "job": { "id": id, "owner": new.owner } })),
                            ..NewSession::default()
                        },
                    )
                    .await?;
                let s = self
                    .sessions
                    .find(Some(principal.tenant), view.record.id)
                    .await?;
                (s, CustomAudience::All)
            }
        };
        let at = now();
        let job = Job {
            id,
            tenant: principal.tenant,
            job_type: new.job_type,
            status: JobStatus::Pending,
            progress: 0,
            owner: new.owner,
            session: new.session,
            stream: stream.id,
            metadata,
            result: None,
            error: None,
            created_at: at,
            updated_at: at,
            started_at: None,
            completed_at: None,
            failed_at: None,
        };
        let rows = vec![Row::Job(job.clone())];
        let reservation = self.writer.reserve(1, 512)?;
        self.sessions
            .publish(
                &stream,
                Event::Job {
                    job: Box::new(job.clone()),
                    audience,
                },
                origin(principal),
            )
            .await?;
        let (ack, committed) = Ack::notify();
        reservation.submit(Order::Session(job.stream), rows, Some(ack));
        committed.wait().await?;
        Ok(job)
    }

    /// Applies a change to a job; answers once it is stored.
    ///
    /// # Errors
    /// `not_found` for another tenant's job; `conflict` for progress that
    /// goes down or a change after the job finished; `invalid` for an
    /// empty change or progress past 100.
    pub async fn update_job(
        &self,
        principal: &Principal,
        id: JobId,
        change: JobChange,
    ) -> Result<Job, HubError> {
        let store = self.writer.store();
        let stored = store
            .job(Some(principal.tenant), id)
            .await?
            .ok_or_else(no_job)?;
        // A job outlives its stream: once that session has ended (or was
        // removed by retention) the change is stored without an event.
        let stream = match self
            .sessions
            .find(Some(principal.tenant), stored.stream)
            .await
        {
            Ok(s) if !s.lock().info.status.is_terminal() => Some(s),
            Ok(_) | Err(crate::session::SessionError::NotFound) => None,
            Err(e) => return Err(e.into()),
        };
        let reservation = self.writer.reserve(2, 1024)?;
        let job = match &stream {
            Some(s) => {
                let p = self
                    .publish_checked(s, origin(principal), |g| {
                        let (current, audience) = reported(g, &stored);
                        let next = current.changed(&change, now()).map_err(refused)?;
                        Ok(Event::Job {
                            job: Box::new(next),
                            audience,
                        })
                    })
                    .await?;
                match &p.event {
                    Event::Job { job, .. } => (**job).clone(),
                    _ => unreachable!("publish_checked publishes what the closure built"),
                }
            }
            None => stored.changed(&change, now()).map_err(refused)?,
        };
        let event = match job.status {
            JobStatus::Completed => JobEvent::Completed,
            JobStatus::Failed => JobEvent::Failed,
            JobStatus::Cancelled => JobEvent::Cancelled,
            JobStatus::Pending | JobStatus::Processing => JobEvent::Progress,
        };
        let data = serde_json::to_value(&job).unwrap_or(Value::Null);
        let rows = vec![
            Row::Job(job.clone()),
            Row::Webhook(job_row(job.tenant, event, data, job.updated_at)),
        ];
        let (ack, committed) = Ack::notify();
        reservation.submit(Order::Session(job.stream), rows, Some(ack));
        committed.wait().await?;
        if job.status.is_terminal()
            && job.session.is_none()
            && let Some(s) = &stream
        {
            self.end_job_session(s, &job).await;
        }
        Ok(job)
    }

    /// A job of the caller's tenant, as stored: every change answered
    /// so far has committed.
    pub async fn get_job(&self, principal: &Principal, id: JobId) -> Result<Job, HubError> {
        self.writer
            .store()
            .job(Some(principal.tenant), id)
            .await?
            .ok_or_else(no_job)
    }

    /// The tenant's jobs, newest first.
    pub async fn list_jobs(
        &self,
        principal: &Principal,
        query: &JobQuery,
    ) -> Result<Vec<Job>, HubError> {
        Ok(self
            .writer
            .store()
            .list_jobs(principal.tenant, query)
            .await?)
    }

    /// Stops a finished job's own session (at once, unless a renderer
    /// is in it): its last event was the job's end, and nobody has
    /// anything more to watch there.
    async fn end_job_session(&self, s: &Arc<Session>, job: &Job) {
        let why = Some(format!("job {}", job.status.as_str()));
        if let Err(e) = self.transition(s, SessionStatus::Stopping, why, None).await {
            tracing::warn!(job = %job.id, session = %s.id, error = %e, "job session not stopped");
        }
    }
}

/// The job as the stream last reported it (the stored row when this
/// replica has not seen it, e.g. evicted from its bounded list), with the
/// audience its events go to.
fn reported(g: &Replica, stored: &Job) -> (Job, CustomAudience) {
    match g.reported_jobs.get(&stored.id) {
        Some(r) if r.job.updated_at >= stored.updated_at => (r.job.clone(), r.audience),
        Some(r) => (stored.clone(), r.audience),
        None if stored.session.is_some() => (stored.clone(), CustomAudience::Operators),
        None => (stored.clone(), CustomAudience::All),
    }
}

fn origin(principal: &Principal) -> Origin {
    Origin {
        sender: principal.subject.clone(),
        ..Origin::default()
    }
}
