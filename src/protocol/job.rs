//! Jobs (seed 004 `jobs`): background work such as a voice clone or a
//! document ingest whose 0–100 progress drives a progress bar. One type
//! serves REST answers, the `job` event and snapshots, so a client reads
//! a job the same way wherever it meets one.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::ids::{JobId, SessionId, TenantId};

/// Where a job is in its life. `completed`, `failed` and `cancelled` are
/// terminal: nothing changes a job after them.
#[derive(
    Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize, JsonSchema, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    Pending,
    Processing,
    Completed,
    Failed,
    Cancelled,
}

impl JobStatus {
    pub const ALL: [JobStatus; 5] = [
        JobStatus::Pending,
        JobStatus::Processing,
        JobStatus::Completed,
        JobStatus::Failed,
        JobStatus::Cancelled,
    ];

    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobStatus::Completed | JobStatus::Failed | JobStatus::Cancelled
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Pending => "pending",
            JobStatus::Processing => "processing",
            JobStatus::Completed => "completed",
            JobStatus::Failed => "failed",
            JobStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<JobStatus> {
        JobStatus::ALL.into_iter().find(|st| st.as_str() == s)
    }
}

/// A job as stored and as every client sees it.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize, JsonSchema, utoipa::ToSchema)]
pub struct Job {
    pub id: JobId,
    pub tenant: TenantId,
    /// `voice_clone`, `persona_extract`, `rag_ingest`... (1–50 bytes).
    #[serde(rename = "type")]
    pub job_type: String,
    pub status: JobStatus,
    /// 0–100; never goes down.
    pub progress: u8,
    /// Who the job is for (seed 004 `user_id`): a connection whose subject
    /// this is may watch it, beside the tenant's operators.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// The presentation session the job was created for, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<SessionId>,
    /// The session whose stream carries the job's `job` events: `session`
    /// when given, else a stream of the job's own. Join it to watch.
    pub stream: SessionId,
    /// The job's input, as given at creation.
    #[schemars(with = "serde_json::Map<String, Value>")]
    #[schema(value_type = Object)]
    pub metadata: Value,
    /// The output, once `completed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub result: Option<Value>,
    /// What went wrong, once `failed` (e.g. `{"code": ..., "message": ...}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub error: Option<Value>,
    #[schemars(with = "String")]
    pub created_at: DateTime<Utc>,
    #[schemars(with = "String")]
    pub updated_at: DateTime<Utc>,
    /// First moved to `processing`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub completed_at: Option<DateTime<Utc>>,
    /// Failed or cancelled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub failed_at: Option<DateTime<Utc>>,
}

/// A change to a job (`PATCH /v1/jobs/{id}`); absent fields stay.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JobChange {
    #[serde(default)]
    pub status: Option<JobStatus>,
    #[serde(default)]
    pub progress: Option<u8>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub result: Option<Value>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub error: Option<Value>,
}

/// Why a change was refused.
#[derive(Clone, PartialEq, Debug, thiserror::Error)]
pub enum JobRefusal {
    #[error("the job is {0}; a finished job does not change")]
    Finished(&'static str),
    #[error("progress may not go backwards (from {from} to {to})")]
    Backwards { from: u8, to: u8 },
    #[error("progress is 0-100, not {0}")]
    OutOfRange(u8),
    #[error("a change needs at least one of status, progress, result, error")]
    Empty,
    #[error("a job that has started does not go back to pending")]
    Restarted,
}

impl Job {
    /// The job after `change` at `now`, or why not. The one place the rules
    /// live: progress only grows, nothing changes after a terminal status,
    /// completion means 100.
    pub fn changed(&self, change: &JobChange, now: DateTime<Utc>) -> Result<Job, JobRefusal> {
        if change == &JobChange::default() {
            return Err(JobRefusal::Empty);
        }
        if self.status.is_terminal() {
            return Err(JobRefusal::Finished(self.status.as_str()));
        }
        let mut next = self.clone();
        if let Some(p) = change.progress {
            if p > 100 {
                return Err(JobRefusal::OutOfRange(p));
            }
            if p < self.progress {
                return Err(JobRefusal::Backwards {
                    from: self.progress,
                    to: p,
                });
            }
            next.progress = p;
        }
        if let Some(st) = change.status {
            if st == JobStatus::Pending && self.status != JobStatus::Pending {
                return Err(JobRefusal::Restarted);
            }
            next.status = st;
        } else if change.progress.is_some() && self.status == JobStatus::Pending {
            // Reporting progress means the work has started.
            next.status = JobStatus::Processing;
        }
        if change.result.is_some() {
            next.result = change.result.clone();
        }
        if change.error.is_some() {
            next.error = change.error.clone();
        }
        if next.status != JobStatus::Pending && next.started_at.is_none() {
            next.started_at = Some(now);
        }
        match next.status {
            JobStatus::Completed => {
                next.progress = 100;
                next.completed_at = Some(now);
            }
            JobStatus::Failed | JobStatus::Cancelled => next.failed_at = Some(now),
            JobStatus::Pending | JobStatus::Processing => {}
        }
        next.updated_at = now;
        Ok(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job() -> Job {
        let now = Utc::now();
        Job {
            id: JobId::new(),
            tenant: TenantId::DEV,
            job_type: "voice_clone".into(),
            status: JobStatus::Pending,
            progress: 0,
            owner: Some("usr_1".into()),
            session: None,
            stream: SessionId::new(),
            metadata: serde_json::json!({}),
            result: None,
            error: None,
            created_at: now,
            updated_at: now,
            started_at: None,
            completed_at: None,
            failed_at: None,
        }
    }

    fn progress(p: u8) -> JobChange {
        JobChange {
            progress: Some(p),
            ..JobChange::default()
        }
    }

    fn status(st: JobStatus) -> JobChange {
        JobChange {
            status: Some(st),
            ..JobChange::default()
        }
    }

    #[test]
    fn progress_starts_the_job_and_only_grows() {
        let now = Utc::now();
        let j = job().changed(&progress(40), now).unwrap();
        assert_eq!(
            (j.status, j.progress, j.started_at),
            (JobStatus::Processing, 40, Some(now))
        );
        assert_eq!(j.changed(&progress(40), now).unwrap().progress, 40);
        assert_eq!(
            j.changed(&progress(39), now),
            Err(JobRefusal::Backwards { from: 40, to: 39 })
        );
        assert_eq!(
            j.changed(&progress(101), now),
            Err(JobRefusal::OutOfRange(101))
        );
    }

    #[test]
    fn nothing_changes_after_a_terminal_status() {
        let now = Utc::now();
        for st in [
            JobStatus::Completed,
            JobStatus::Failed,
            JobStatus::Cancelled,
        ] {
            let done = job().changed(&status(st), now).unwrap();
            assert!(done.status.is_terminal());
            for change in [progress(100), status(JobStatus::Processing), status(st)] {
                assert_eq!(
                    done.changed(&change, now),
                    Err(JobRefusal::Finished(st.as_str()))
                );
            }
        }
        let done = job().changed(&status(JobStatus::Completed), now).unwrap();
        assert_eq!((done.progress, done.completed_at), (100, Some(now)));
        let failed = job().changed(&status(JobStatus::Failed), now).unwrap();
        assert_eq!((failed.failed_at, failed.completed_at), (Some(now), None));
    }

    #[test]
    fn an_empty_change_is_refused() {
        assert_eq!(
            job().changed(&JobChange::default(), Utc::now()),
            Err(JobRefusal::Empty)
        );
    }
}
