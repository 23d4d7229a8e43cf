//! `jobs` (seed 004, docs/JOBS.md), described once for both SQL stores.

use crate::ids::{JobId, SessionId, TenantId};
use crate::protocol::job::Job;
use crate::store::StoreError;
use crate::store::sql::columns::{
    Cell, Column, Decode, Insert, OnConflict, ReadRow, Shape, col, parse_enum,
};

const JOBS: [Column; 16] = [
    col::uuid("id"),
    // The tenant, as in every hub table.
    col::uuid("user_id"),
    col::text("type"),
    col::text("status"),
    col::int4("progress"),
    col::text("owner_id"),
    col::uuid("session_id"),
    col::uuid("stream_id"),
    col::json("metadata"),
    col::json("result"),
    col::json("error"),
    col::timestamp("created_at"),
    col::timestamp("updated_at"),
    col::timestamp("started_at"),
    col::timestamp("completed_at"),
    col::timestamp("failed_at"),
];

impl Shape<{ JOBS.len() }> for Job {
    const TABLE: &'static str = "jobs";
    const COLUMNS: [Column; JOBS.len()] = JOBS;
    fn cells(&self) -> [Cell<'_>; JOBS.len()] {
        [
            self.id.0.into(),
            self.tenant.0.into(),
            (&self.job_type).into(),
            self.status.as_str().into(),
            i32::from(self.progress).into(),
            self.owner.as_deref().into(),
            self.session.map(|s| s.0).into(),
            self.stream.0.into(),
            (&self.metadata).into(),
            self.result.as_ref().into(),
            self.error.as_ref().into(),
            self.created_at.into(),
            self.updated_at.into(),
            self.started_at.into(),
            self.completed_at.into(),
            self.failed_at.into(),
        ]
    }
}

impl Insert<{ JOBS.len() }> for Job {
    /// The latest change replaces the stored job, never an older one (a
    /// late batch from another node); what a job was created with stays.
    const ON_CONFLICT: OnConflict = OnConflict::Sql(
        "ON CONFLICT (id) DO UPDATE SET status = excluded.status, \
         progress = excluded.progress, result = excluded.result, error = excluded.error, \
         updated_at = excluded.updated_at, started_at = excluded.started_at, \
         completed_at = excluded.completed_at, failed_at = excluded.failed_at \
         WHERE jobs.updated_at <= excluded.updated_at",
    );
}

impl Decode for Job {
    const SELECT: &'static [(&'static str, &'static [Column])] = &[("", &JOBS)];
    const FROM: &'static str = "jobs";
    fn decode(r: &impl ReadRow) -> Result<Self, StoreError> {
        let progress = r.opt_i32("progress")?.unwrap_or(0).clamp(0, 100);
        Ok(Job {
            id: JobId(r.uuid("id")?),
            tenant: TenantId(r.uuid("user_id")?),
            job_type: r.text("type")?,
            status: parse_enum("jobs.status", &r.text("status")?)?,
            progress: u8::try_from(progress).unwrap_or(0),
            owner: r.opt_text("owner_id")?,
            session: r.opt_uuid("session_id")?.map(SessionId),
            stream: SessionId(r.uuid("stream_id")?),
            metadata: r.json_or_empty("metadata")?,
            result: r.opt_json("result")?,
            error: r.opt_json("error")?,
            created_at: r.ts_or_epoch("created_at")?,
            updated_at: r.ts_or_epoch("updated_at")?,
            started_at: r.opt_ts("started_at")?,
            completed_at: r.opt_ts("completed_at")?,
            failed_at: r.opt_ts("failed_at")?,
        })
    }
}
