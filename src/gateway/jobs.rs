//! Jobs over REST (`docs/JOBS.md`): a backend creates a job and reports
//! its progress; clients watch it live by joining the session its `stream`
//! names.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::IntoParams;

use super::rest::{ApiError, ApiResult, Caller, ErrorBody, Listing, listing, page_limit};
use crate::hub::{Hub, NewJob, refuse};
use crate::identity::Scope;
use crate::ids::JobId;
use crate::protocol::ErrorCode;
use crate::protocol::job::{Job, JobChange, JobStatus};
use crate::store::jobs::{JOB_TYPE_MAX, JobQuery};

fn parse_job(id: &str) -> Result<JobId, ApiError> {
    id.parse()
        .map_err(|_| refuse(ErrorCode::NotFound, "no such job").into())
}

/// Creates a job, `pending` at 0 %. Without `session`, the job gets a
/// session of its own (its `stream`) that its owner and the tenant's
/// operators may join to watch it.
#[utoipa::path(
    post,
    path = "/v1/jobs",
    tag = "jobs",
    request_body = NewJob,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Created and stored (scope eva:write)", body = Job),
        (status = 400, description = "A field is invalid", body = ErrorBody),
        (status = 404, description = "`session` is not this tenant's", body = ErrorBody),
        (status = 409, description = "`session` has ended", body = ErrorBody),
        (status = 429, description = "Rate limited or quota used up", body = ErrorBody),
        (status = 503, description = "The store is unavailable; retry", body = ErrorBody),
    )
)]
pub async fn create_job(
    State(hub): State<Hub>,
    caller: Caller,
    Json(body): Json<NewJob>,
) -> ApiResult<Response> {
    let p = caller.need(Scope::Write)?;
    let job = hub.create_job(p, body).await?;
    Ok((StatusCode::CREATED, Json(job)).into_response())
}

/// Changes a job: its status, progress, result or error. Progress only
/// grows; `completed` sets it to 100; a finished job does not change.
/// Answered once the change is stored, after its `job` event is out.
#[utoipa::path(
    patch,
    path = "/v1/jobs/{id}",
    tag = "jobs",
    params(("id" = JobId, Path, description = "The job id")),
    request_body = JobChange,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The job after the change (scope eva:write)", body = Job),
        (status = 400, description = "Empty change or progress past 100", body = ErrorBody),
        (status = 404, description = "No such job for this tenant", body = ErrorBody),
        (status = 409, description = "Progress going down, back to pending, or the job has finished", body = ErrorBody),
        (status = 503, description = "The store is unavailable; retry", body = ErrorBody),
    )
)]
pub async fn update_job(
    State(hub): State<Hub>,
    caller: Caller,
    Path(id): Path<String>,
    Json(body): Json<JobChange>,
) -> ApiResult<Response> {
    let p = caller.need(Scope::Write)?;
    Ok(Json(hub.update_job(p, parse_job(&id)?, body).await?).into_response())
}

/// One job, as stored.
#[utoipa::path(
    get,
    path = "/v1/jobs/{id}",
    tag = "jobs",
    params(("id" = JobId, Path, description = "The job id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The job (scope eva:read)", body = Job),
        (status = 404, description = "No such job for this tenant", body = ErrorBody),
    )
)]
pub async fn get_job(
    State(hub): State<Hub>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let p = caller.need(Scope::Read)?;
    Ok(Json(hub.get_job(p, parse_job(&id)?).await?).into_response())
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct JobListQuery {
    /// Only jobs in this status (`pending`, `processing`, `completed`,
    /// `failed`, `cancelled`).
    status: Option<String>,
    /// Only jobs of this type.
    #[serde(rename = "type")]
    #[param(rename = "type")]
    job_type: Option<String>,
    /// The last id of the previous page (`next_before`).
    before: Option<JobId>,
    /// 1 to 500; 50 when absent.
    limit: Option<usize>,
}

/// The tenant's jobs, newest first.
#[utoipa::path(
    get,
    path = "/v1/jobs",
    tag = "jobs",
    params(JobListQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page (scope eva:read)", body = Listing<Job>),
        (status = 400, description = "Unknown status or bad paging", body = ErrorBody),
    )
)]
pub async fn list_jobs(
    State(hub): State<Hub>,
    caller: Caller,
    Query(q): Query<JobListQuery>,
) -> ApiResult<Response> {
    let p = caller.need(Scope::Read)?;
    let status = match q.status.as_deref() {
        None => None,
        Some(s) => Some(
            JobStatus::parse(s)
                .ok_or_else(|| refuse(ErrorCode::Invalid, format!("unknown status `{s}`")))?,
        ),
    };
    if q.job_type.as_ref().is_some_and(|t| t.len() > JOB_TYPE_MAX) {
        return Err(refuse(ErrorCode::Invalid, "type is at most 50 bytes").into());
    }
    let limit = page_limit(q.limit);
    let query = JobQuery {
        status,
        job_type: q.job_type,
        before: q.before,
        limit,
    };
    let items = hub.list_jobs(p, &query).await?;
    Ok(Json(listing(items, limit, |j| j.id.to_string())).into_response())
}
