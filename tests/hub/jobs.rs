//! Jobs end to end (`docs/JOBS.md`): created and changed over REST on a
//! real hub, watched over WebSocket by the clients allowed to, with the
//! rules (progress only grows, a finished job stays finished) holding
//! under concurrent changes.

use eva_hub::ids::{JobId, SessionId};
use eva_hub::protocol::job::{Job, JobStatus};
use eva_hub::protocol::model::{Event, Role};
use eva_hub::protocol::{ClientFrame, Codec, ErrorCode, ServerFrame, SessionStatus};
use serde_json::{Value, json};

use crate::support::*;

impl TestApp {
    async fn patch(&self, path: &str, body: Value) -> (u16, Value) {
        let res = self
            .http
            .patch(self.url(path))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    async fn create_job(&self, body: Value) -> Job {
        let (status, body) = self.post("/v1/jobs", body).await;
        assert_eq!(status, 201, "{body}");
        serde_json::from_value(body).unwrap()
    }

    async fn change_job(&self, id: JobId, change: Value) -> Job {
        let (status, body) = self.patch(&format!("/v1/jobs/{id}"), change).await;
        assert_eq!(status, 200, "{body}");
        serde_json::from_value(body).unwrap()
    }
}

/// The next `job` event, its job.
async fn next_job(c: &mut TestClient) -> Job {
    match c.event("job").await {
        (_, Event::Job { job, .. }) => *job,
        _ => unreachable!(),
    }
}

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn a_jobs_own_stream_is_watched_by_its_owner_and_operators() {
    for codec in [Codec::Json, Codec::MsgPack] {
        let app = spawn_app().await;
        let job = app
            .create_job(
                json!({"type": "voice_clone", "owner": "alice", "metadata": {"sample": "a.wav"}}),
            )
            .await;
        assert_eq!(
            (job.status, job.progress, job.session),
            (JobStatus::Pending, 0, None)
        );
        assert_eq!(job.owner.as_deref(), Some("alice"));

        let mut alice = app.connect(Role::Participant, "alice", codec).await;
        let snap = alice.join(job.stream).await;
        assert_eq!(
            snap.jobs,
            Some(vec![job.clone()]),
            "the snapshot shows the job"
        );
        let mut ops = app.connect(Role::Operator, "ops-1", codec).await;
        assert_eq!(ops.join(job.stream).await.jobs, Some(vec![job.clone()]));

        // Someone else's job is not there for them, exactly like a session
        // that does not exist.
        let mut bob = app.connect(Role::Participant, "bob", codec).await;
        bob.send(&join_frame(job.stream)).await;
        let refused = bob.until(|f| matches!(f, ServerFrame::Error { .. })).await;
        assert!(matches!(
            refused,
            ServerFrame::Error {
                code: ErrorCode::NotFound,
                ..
            }
        ));

        for p in [10, 40, 40, 75] {
            let changed = app.change_job(job.id, json!({"progress": p})).await;
            assert_eq!(
                (changed.status, changed.progress),
                (JobStatus::Processing, p)
            );
        }
        let done = app
            .change_job(
                job.id,
                json!({"status": "completed", "result": {"voice_id": "v-1"}}),
            )
            .await;
        assert_eq!((done.status, done.progress), (JobStatus::Completed, 100));
        assert!(done.completed_at.is_some() && done.started_at.is_some());

        for c in [&mut alice, &mut ops] {
            let mut seen = Vec::new();
            for _ in 0..5 {
                let j = next_job(c).await;
                seen.push((j.status, j.progress));
            }
            assert_eq!(
                seen,
                vec![
                    (JobStatus::Processing, 10),
                    (JobStatus::Processing, 40),
                    (JobStatus::Processing, 40),
                    (JobStatus::Processing, 75),
                    (JobStatus::Completed, 100),
                ]
            );
            // The job's own session ends with the job.
            c.until(|f| {
                matches!(
                    f,
                    ServerFrame::Event {
                        event: Event::Lifecycle {
                            status: SessionStatus::Stopped,
                            ..
                        },
                        ..
                    }
                )
            })
            .await;
        }
        let (status, stored) = app.get(&format!("/v1/jobs/{}", job.id)).await;
        assert_eq!(status, 200);
        assert_eq!(serde_json::from_value::<Job>(stored).unwrap(), done);

        let (status, body) = app
            .patch(&format!("/v1/jobs/{}", job.id), json!({"status": "failed"}))
            .await;
        assert_eq!((status, code(&body)), (409, "conflict"), "{body}");
    }
}

fn join_frame(session: SessionId) -> ClientFrame {
    ClientFrame::Join {
        session,
        resume: None,
        takeover: false,
        name: None,
        compact: false,
        echo: true,
        id: None,
    }
}

#[tokio::test]
async fn bad_changes_are_refused_and_change_nothing() {
    let app = spawn_app().await;
    let job = app.create_job(json!({"type": "rag_ingest"})).await;
    let path = format!("/v1/jobs/{}", job.id);
    app.change_job(job.id, json!({"progress": 50})).await;
    for (change, want_status, want_code) in [
        (json!({"progress": 20}), 409, "conflict"),
        (json!({"status": "pending"}), 409, "conflict"),
        (json!({"progress": 101}), 400, "invalid"),
        (json!({}), 400, "invalid"),
    ] {
        let (status, body) = app.patch(&path, change.clone()).await;
        assert_eq!(
            (status, code(&body)),
            (want_status, want_code),
            "{change}: {body}"
        );
        assert!(!body["error"]["message"].as_str().unwrap().is_empty());
    }
    // Not JSON a change can be: refused by the body's parser.
    for bad in [
        json!({"progress": -1}),
        json!({"progress": 300}),
        json!({"colour": "red"}),
    ] {
        let (status, _) = app.patch(&path, bad.clone()).await;
        assert!((400..500).contains(&status), "{bad}: {status}");
    }
    let (_, stored) = app.get(&path).await;
    assert_eq!(stored["progress"], 50);
    assert_eq!(stored["status"], "processing");

    for (body, what) in [
        (json!({"type": ""}), "empty type"),
        (json!({"type": "x".repeat(51)}), "long type"),
        (
            json!({"type": "a", "metadata": [1]}),
            "metadata not an object",
        ),
        (json!({"type": "a", "owner": ""}), "empty owner"),
    ] {
        let (status, body) = app.post("/v1/jobs", body).await;
        assert_eq!((status, code(&body)), (400, "invalid"), "{what}: {body}");
    }
    let (status, body) = app
        .post(
            "/v1/jobs",
            json!({"type": "a", "session": SessionId::new()}),
        )
        .await;
    assert_eq!((status, code(&body)), (404, "not_found"), "{body}");
    for id in [JobId::new().to_string(), "not-a-job".to_owned()] {
        let (status, _) = app.get(&format!("/v1/jobs/{id}")).await;
        assert_eq!(status, 404);
        let (status, _) = app
            .patch(&format!("/v1/jobs/{id}"), json!({"progress": 1}))
            .await;
        assert_eq!(status, 404);
    }
}

#[tokio::test]
async fn a_job_in_a_presentation_reaches_its_operators_not_its_audience() {
    let app = spawn_app().await;
    let (sid, _renderer) = app.active_session(Codec::Json).await;
    let mut ops = app.connect(Role::Operator, "ops-1", Codec::Json).await;
    ops.join(sid).await;
    let mut viewer = app.connect(Role::Participant, "viewer", Codec::Json).await;
    viewer.join(sid).await;

    let job = app
        .create_job(json!({"type": "rag_ingest", "session": sid, "metadata": {"doc": "deck.pdf"}}))
        .await;
    assert_eq!((job.session, job.stream), (Some(sid), sid));
    assert_eq!(next_job(&mut ops).await, job);
    app.change_job(job.id, json!({"progress": 60})).await;
    assert_eq!(next_job(&mut ops).await.progress, 60);
    // A marker to everyone after the job's events: the participant gets
    // it, and nothing of the job before it.
    let (status, _) = app
        .post(
            &format!("/v1/sessions/{sid}/events"),
            json!({"name": "marker", "data": {}}),
        )
        .await;
    assert_eq!(status, 202);
    let first = viewer
        .until(|f| {
            matches!(
                f,
                ServerFrame::Event {
                    event: Event::Job { .. } | Event::Custom { .. },
                    ..
                }
            )
        })
        .await;
    assert!(
        matches!(&first, ServerFrame::Event { event: Event::Custom { name, .. }, .. } if name == "marker"),
        "{first:?}"
    );
    // Their snapshots say the same.
    let mut late_ops = app.connect(Role::Operator, "ops-2", Codec::Json).await;
    let snap = late_ops.join(sid).await;
    assert_eq!(snap.jobs.unwrap()[0].progress, 60);
    let mut late_viewer = app.connect(Role::Participant, "late", Codec::Json).await;
    assert_eq!(late_viewer.join(sid).await.jobs, None);
    // The presentation goes on after its job is done.
    app.change_job(job.id, json!({"status": "completed"})).await;
    let (_, s) = app.get(&format!("/v1/sessions/{sid}")).await;
    assert_eq!(s["status"], "active");
}

#[tokio::test]
async fn concurrent_changes_never_move_progress_backwards() {
    let app = spawn_app().await;
    let job = app
        .create_job(json!({"type": "voice_clone", "owner": "alice"}))
        .await;
    let mut ops = app.connect(Role::Operator, "ops-1", Codec::MsgPack).await;
    ops.join(job.stream).await;
    let tasks: Vec<_> = (1..=30u8)
        .map(|p| {
            let http = app.http.clone();
            let url = app.url(&format!("/v1/jobs/{}", job.id));
            tokio::spawn(async move {
                let res = http
                    .patch(url)
                    .json(&json!({"progress": p}))
                    .send()
                    .await
                    .unwrap();
                (p, res.status().as_u16())
            })
        })
        .collect();
    let mut accepted = Vec::new();
    for t in tasks {
        let (p, status) = t.await.unwrap();
        assert!(status == 200 || status == 409, "progress {p}: {status}");
        if status == 200 {
            accepted.push(p);
        }
    }
    assert!(!accepted.is_empty());
    // Every accepted change is an event, in non-decreasing order, and the
    // stored job is the last of them.
    let mut seen = Vec::new();
    for _ in 0..accepted.len() {
        seen.push(next_job(&mut ops).await.progress);
    }
    assert!(seen.windows(2).all(|w| w[0] <= w[1]), "{seen:?}");
    accepted.sort_unstable();
    assert_eq!(seen, accepted);
    let (_, stored) = app.get(&format!("/v1/jobs/{}", job.id)).await;
    assert_eq!(stored["progress"], *seen.last().unwrap());
}

#[tokio::test]
async fn jobs_are_listed_newest_first_with_filters() {
    let app = spawn_app().await;
    let a = app.create_job(json!({"type": "voice_clone"})).await;
    let b = app.create_job(json!({"type": "rag_ingest"})).await;
    let c = app.create_job(json!({"type": "voice_clone"})).await;
    app.change_job(
        b.id,
        json!({"status": "failed", "error": {"code": "bad_pdf"}}),
    )
    .await;
    let ids = |v: &Value| -> Vec<String> {
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|j| j["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let (status, all) = app.get("/v1/jobs").await;
    assert_eq!(status, 200);
    assert_eq!(ids(&all), [c.id, b.id, a.id].map(|i| i.to_string()));
    let (_, page) = app.get("/v1/jobs?limit=2").await;
    assert_eq!(ids(&page), [c.id, b.id].map(|i| i.to_string()));
    let before = page["next_before"].as_str().unwrap();
    let (_, rest) = app.get(&format!("/v1/jobs?limit=2&before={before}")).await;
    assert_eq!(ids(&rest), [a.id.to_string()]);
    let (_, clones) = app.get("/v1/jobs?type=voice_clone").await;
    assert_eq!(ids(&clones), [c.id, a.id].map(|i| i.to_string()));
    let (_, failed) = app.get("/v1/jobs?status=failed").await;
    assert_eq!(ids(&failed), [b.id.to_string()]);
    assert_eq!(failed["items"][0]["error"]["code"], "bad_pdf");
    let (status, body) = app.get("/v1/jobs?status=lost").await;
    assert_eq!((status, code(&body)), (400, "invalid"));
}
