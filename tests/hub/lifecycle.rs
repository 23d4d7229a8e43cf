//! Sessions over REST: create, list, get, the lifecycle and its illegal
//! transitions.

use eva_hub::protocol::model::{Event, Role};
use eva_hub::protocol::{ClientFrame, Codec, ServerFrame, SessionStatus};
use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn create_list_get_and_stop() {
    let app = spawn_app().await;
    let (status, created) = app
        .post(
            "/v1/sessions",
            json!({"name": "Q3 review", "config": {"lang": "en"}}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["status"], "created");
    assert_eq!(created["name"], "Q3 review");
    let id = created["id"].as_str().unwrap().to_owned();

    let (status, listed) = app.get("/v1/sessions").await;
    assert_eq!(status, 200);
    assert!(
        listed["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["id"] == id)
    );

    let (status, got) = app.get(&format!("/v1/sessions/{id}")).await;
    assert_eq!(status, 200);
    assert_eq!(got["live"]["position"]["seq"], 1, "created is seq 1: {got}");

    let (status, stopped) = app
        .post(&format!("/v1/sessions/{id}/stop"), json!({}))
        .await;
    assert_eq!(status, 200, "{stopped}");
    // No renderer to wait for: stopping goes straight on to stopped.
    assert_eq!(stopped["status"], "stopped");

    let (status, again) = app
        .post(&format!("/v1/sessions/{id}/stop"), json!({}))
        .await;
    assert_eq!(status, 409);
    assert_eq!(again["error"]["code"], "illegal_transition");
}

#[tokio::test]
async fn illegal_transitions_are_refused_with_a_clear_error() {
    let app = spawn_app().await;
    let id = app.create_session().await;
    let (status, body) = app
        .post(
            &format!("/v1/sessions/{id}/status"),
            json!({"status": "paused"}),
        )
        .await;
    assert_eq!(status, 409);
    assert_eq!(body["error"]["code"], "illegal_transition");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("created")
    );

    for to in ["starting", "active", "paused", "active"] {
        let (status, body) = app
            .post(&format!("/v1/sessions/{id}/status"), json!({"status": to}))
            .await;
        assert_eq!(status, 200, "{to}: {body}");
        assert_eq!(body["status"], to);
    }
    let (status, _) = app
        .post(
            &format!("/v1/sessions/{id}/status"),
            json!({"status": "created"}),
        )
        .await;
    assert_eq!(status, 409);
    let (status, body) = app
        .post(
            &format!("/v1/sessions/{id}/status"),
            json!({"status": "failed", "reason": "gpu lost"}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["last_error"], "gpu lost");
    let (status, _) = app
        .post(
            &format!("/v1/sessions/{id}/status"),
            json!({"status": "active"}),
        )
        .await;
    assert_eq!(status, 409, "failed is terminal");
}

#[tokio::test]
async fn unknown_sessions_and_bad_ids_are_not_found() {
    let app = spawn_app().await;
    let (status, body) = app.get("/v1/sessions/not-a-uuid").await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "not_found");
    let (status, _) = app
        .get(&format!("/v1/sessions/{}", eva_hub::ids::SessionId::new()))
        .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn lifecycle_events_reach_every_role_in_both_codecs() {
    let app = spawn_app().await;
    for codec in Codec::ALL {
        let (id, mut renderer) = app.active_session(codec).await;
        let mut participant = app.connect(Role::Participant, "p1", codec).await;
        let snap = participant.join(id).await;
        assert_eq!(snap.status, SessionStatus::Active);
        renderer
            .send(&ClientFrame::Status {
                session: id,
                status: SessionStatus::Paused,
                reason: Some("break".into()),
                id: None,
            })
            .await;
        let (_, e) = participant.event("lifecycle").await;
        assert!(matches!(
            e,
            Event::Lifecycle {
                status: SessionStatus::Paused,
                previous: SessionStatus::Active,
                ..
            }
        ));
        // The renderer may not jump to created.
        renderer
            .send(&ClientFrame::Status {
                session: id,
                status: SessionStatus::Created,
                reason: None,
                id: Some("bad".into()),
            })
            .await;
        let err = renderer
            .until(|f| matches!(f, ServerFrame::Error { id: Some(i), .. } if i == "bad"))
            .await;
        assert!(matches!(
            err,
            ServerFrame::Error {
                code: eva_hub::protocol::ErrorCode::Forbidden,
                ..
            }
        ));
        // Stop: the renderer confirms, participants are told the session ended.
        let (status, body) = app
            .post(&format!("/v1/sessions/{id}/stop"), json!({}))
            .await;
        assert_eq!(status, 200);
        assert_eq!(body["status"], "stopping");
        renderer
            .send(&ClientFrame::Status {
                session: id,
                status: SessionStatus::Stopped,
                reason: None,
                id: Some("done".into()),
            })
            .await;
        assert_eq!(participant.closed().await, Some(4505));
        // The frame that ended the session is answered before the close.
        let ack = renderer
            .until(|f| matches!(f, ServerFrame::Ack { .. } | ServerFrame::Error { .. }))
            .await;
        assert!(
            matches!(&ack, ServerFrame::Ack { id, .. } if id == "done"),
            "{ack:?}"
        );
        assert_eq!(renderer.closed().await, Some(4505));
    }
}
