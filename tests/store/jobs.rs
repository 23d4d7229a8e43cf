//! The jobs part of the conformance suite (seed 004 `jobs`): written as
//! rows through `write_batch`, read back exactly, the newest change kept
//! whatever order batches land in, and listed per tenant with filters.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use eva_hub::ids::{JobId, SessionId, TenantId};
use eva_hub::protocol::job::{Job, JobChange, JobStatus};
use eva_hub::store::jobs::JobQuery;
use eva_hub::store::{Row, Store};
use serde_json::json;

use super::{session_record, tenant};

/// Whole microseconds: what every store keeps.
fn now() -> DateTime<Utc> {
    DateTime::from_timestamp_micros(Utc::now().timestamp_micros()).unwrap()
}

fn job(tenant: TenantId, job_type: &str, session: Option<SessionId>) -> Job {
    let at = now();
    Job {
        id: JobId::new(),
        tenant,
        job_type: job_type.into(),
        status: JobStatus::Pending,
        progress: 0,
        owner: Some("user-7".into()),
        session,
        stream: session.unwrap_or_default(),
        metadata: json!({"voice_sample_url": "https://example.test/a.wav", "n": [1, 2.5]}),
        result: None,
        error: None,
        created_at: at,
        updated_at: at,
        started_at: None,
        completed_at: None,
        failed_at: None,
    }
}

fn all(limit: usize) -> JobQuery {
    JobQuery {
        limit,
        ..JobQuery::default()
    }
}

pub(super) async fn jobs_round_trip_and_keep_the_newest(store: Arc<dyn Store>) {
    let t = tenant(&store).await;
    let s = session_record(t);
    store.create_session(&s).await.unwrap();
    let created = job(t, "voice_clone", Some(s.id));
    store
        .write_batch(&[Row::Job(created.clone())])
        .await
        .unwrap();
    assert_eq!(
        store.job(Some(t), created.id).await.unwrap(),
        Some(created.clone())
    );
    assert_eq!(
        store.job(None, created.id).await.unwrap(),
        Some(created.clone())
    );
    let other = tenant(&store).await;
    assert_eq!(
        store.job(Some(other), created.id).await.unwrap(),
        None,
        "another tenant's"
    );

    let at = created.updated_at + Duration::milliseconds(5);
    let halfway = created
        .changed(
            &JobChange {
                progress: Some(50),
                ..JobChange::default()
            },
            at,
        )
        .unwrap();
    let done = halfway
        .changed(
            &JobChange {
                status: Some(JobStatus::Completed),
                result: Some(json!({"voice_id": "v-1"})),
                ..JobChange::default()
            },
            at + Duration::milliseconds(5),
        )
        .unwrap();
    // Two changes in one batch, the older last: the newer stays.
    store
        .write_batch(&[Row::Job(done.clone()), Row::Job(halfway.clone())])
        .await
        .unwrap();
    assert_eq!(
        store.job(Some(t), created.id).await.unwrap(),
        Some(done.clone())
    );
    // A late batch with the older change does not roll it back either,
    // and what the job was created with stays.
    store.write_batch(&[Row::Job(halfway)]).await.unwrap();
    let read = store.job(Some(t), created.id).await.unwrap().unwrap();
    assert_eq!(read, done);
    assert_eq!((read.status, read.progress), (JobStatus::Completed, 100));
    assert_eq!(read.metadata, created.metadata);
}

pub(super) async fn jobs_list_newest_first_with_filters(store: Arc<dyn Store>) {
    let t = tenant(&store).await;
    let mut made = Vec::new();
    for (i, ty) in [
        "voice_clone",
        "rag_ingest",
        "voice_clone",
        "persona_extract",
    ]
    .into_iter()
    .enumerate()
    {
        let mut j = job(t, ty, None);
        if i == 2 {
            j = j
                .changed(
                    &JobChange {
                        status: Some(JobStatus::Failed),
                        error: Some(json!({"code": "bad_audio"})),
                        ..JobChange::default()
                    },
                    j.updated_at,
                )
                .unwrap();
        }
        made.push(j);
    }
    let rows: Vec<Row> = made.iter().cloned().map(Row::Job).collect();
    store.write_batch(&rows).await.unwrap();
    // Another tenant's job is never listed.
    let other = tenant(&store).await;
    store
        .write_batch(&[Row::Job(job(other, "voice_clone", None))])
        .await
        .unwrap();

    let ids = |v: Vec<Job>| v.into_iter().map(|j| j.id).collect::<Vec<_>>();
    let newest_first: Vec<JobId> = made.iter().rev().map(|j| j.id).collect();
    assert_eq!(
        ids(store.list_jobs(t, &all(10)).await.unwrap()),
        newest_first
    );
    let page = store.list_jobs(t, &all(2)).await.unwrap();
    assert_eq!(ids(page.clone()), newest_first[..2]);
    let next = JobQuery {
        before: Some(page[1].id),
        ..all(10)
    };
    assert_eq!(
        ids(store.list_jobs(t, &next).await.unwrap()),
        newest_first[2..]
    );
    let clones = JobQuery {
        job_type: Some("voice_clone".into()),
        ..all(10)
    };
    assert_eq!(
        ids(store.list_jobs(t, &clones).await.unwrap()),
        vec![made[2].id, made[0].id]
    );
    let failed = JobQuery {
        status: Some(JobStatus::Failed),
        ..all(10)
    };
    let got = store.list_jobs(t, &failed).await.unwrap();
    assert_eq!(got, vec![made[2].clone()]);
}
