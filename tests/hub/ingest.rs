//! Inbound vendor events end to end: signed requests over real HTTP to a
//! real hub, the hub events a participant sees over its WebSocket, and
//! what the store kept. Payloads are the samples in
//! `tests/fixtures/ingest/`, written from the vendors' documentation.

use std::time::Duration;

use eva_hub::ids::SessionId;
use eva_hub::ingest::Source;
use eva_hub::ingest::canonical::event_hash;
use eva_hub::ingest::signature::hmac_hex;
use eva_hub::protocol::model::{Event, Role};
use eva_hub::protocol::{Codec, ServerFrame, SessionStatus};
use eva_hub::store::ingest::ProcessedEvent;
use serde_json::{Value, json};

use crate::support::*;

const CONVERSATION: &str = "conv-fixture";
const TAVUS_SECRET: &str = "tavus-shared-secret";
const HEYGEN_SECRET: &str = "heygen-endpoint-secret";
const LIVEKIT_KEY: &str = "APIfixtureKey";
const LIVEKIT_SECRET: &str = "livekit-api-secret-of-32-bytes-or-more";
const GENERIC_SECRET: &str = "generic-hmac-secret";
const MAX_BODY: usize = 4096;

fn fixture(name: &str) -> String {
    let path = format!(
        "{}/tests/fixtures/ingest/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

async fn spawn_ingest_app() -> TestApp {
    let mut s = test_settings();
    s.ingest.max_body_bytes = MAX_BODY;
    s.ingest.tavus_secret = TAVUS_SECRET.into();
    s.ingest.heygen_secret = HEYGEN_SECRET.into();
    s.ingest.livekit_api_key = LIVEKIT_KEY.into();
    s.ingest.livekit_api_secret = LIVEKIT_SECRET.into();
    s.ingest.generic_secret = GENERIC_SECRET.into();
    spawn_with(
        s,
        std::sync::Arc::new(eva_hub::store::memory::MemoryStore::new()),
    )
    .await
}

/// The headers with which each vendor signs `body`.
fn signed(source: &str, body: &str) -> Vec<(&'static str, String)> {
    match source {
        "tavus" => vec![("x-eva-ingest-secret", TAVUS_SECRET.into())],
        "heygen" => vec![("signature", hmac_hex(HEYGEN_SECRET, body.as_bytes()))],
        "generic" => vec![(
            "x-eva-signature",
            format!("sha256={}", hmac_hex(GENERIC_SECRET, body.as_bytes())),
        )],
        "livekit" => {
            use base64::Engine;
            use sha2::{Digest, Sha256};
            let hash =
                base64::engine::general_purpose::STANDARD.encode(Sha256::digest(body.as_bytes()));
            let exp = chrono::Utc::now().timestamp() + 600;
            let claims = json!({"iss": LIVEKIT_KEY, "exp": exp, "nbf": exp - 1200, "sha256": hash});
            let token = jsonwebtoken::encode(
                &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
                &claims,
                &jsonwebtoken::EncodingKey::from_secret(LIVEKIT_SECRET.as_bytes()),
            )
            .unwrap();
            vec![("authorization", token)]
        }
        _ => Vec::new(),
    }
}

async fn send(
    app: &TestApp,
    source: &str,
    body: &str,
    headers: Vec<(&'static str, String)>,
) -> (u16, Value) {
    let mut req = app
        .http
        .post(app.url(&format!("/v1/ingest/{source}")))
        .header("content-type", "application/json")
        .body(body.to_owned());
    for (k, v) in headers {
        req = req.header(k, v);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

async fn deliver(app: &TestApp, source: &str, name: &str) -> (u16, Value) {
    let body = fixture(name);
    send(app, source, &body, signed(source, &body)).await
}

/// A session presenting the fixtures' conversation, and a participant
/// watching it.
async fn watched_session(app: &TestApp) -> (SessionId, TestClient) {
    let (status, body) = app
        .post(
            "/v1/sessions",
            json!({"name": "vendor demo", "external_id": CONVERSATION}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["external_id"], CONVERSATION);
    let id: SessionId = body["id"].as_str().unwrap().parse().unwrap();
    let mut p = app
        .connect(Role::Participant, "viewer-1", Codec::Json)
        .await;
    p.join(id).await;
    (id, p)
}

async fn custom(p: &mut TestClient, want: &str) -> Value {
    loop {
        if let (
            _,
            Event::Custom {
                name, data, from, ..
            },
        ) = p.event("custom").await
            && name == want
        {
            assert!(from.starts_with("ingest:"), "{from}");
            return *data;
        }
    }
}

async fn speaking(p: &mut TestClient) -> bool {
    match p.event("state").await {
        (_, Event::State { state }) => state.is_speaking,
        _ => unreachable!(),
    }
}

/// A redelivery published nothing: no app event reaches the participant.
async fn no_app_event(p: &mut TestClient) {
    p.none_within(Duration::from_millis(300), |f| {
        matches!(
            f,
            ServerFrame::Event {
                event: Event::Custom { .. },
                ..
            }
        )
    })
    .await;
}

fn accepted(status: u16, body: &Value, session: SessionId) {
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["duplicate"], false);
    assert_eq!(body["session"], session.to_string());
    assert_eq!(body["event_hash"].as_str().unwrap().len(), 64);
    assert!(!body["published"].as_array().unwrap().is_empty(), "{body}");
}

#[tokio::test]
async fn tavus_events_reach_a_participant() {
    let app = spawn_ingest_app().await;
    let (id, mut p) = watched_session(&app).await;

    let (status, body) = deliver(&app, "tavus", "tavus_replica_started_speaking").await;
    accepted(status, &body, id);
    assert_eq!(body["event_type"], "conversation.replica.started_speaking");
    assert!(speaking(&mut p).await, "the renderer speaks");

    let (status, body) = deliver(&app, "tavus", "tavus_user_started_speaking").await;
    accepted(status, &body, id);
    let data = custom(&mut p, "user.speaking").await;
    assert_eq!(data, json!({"speaking": true, "source": "tavus"}));

    let (status, body) = deliver(&app, "tavus", "tavus_utterance").await;
    accepted(status, &body, id);
    // The answer waits for the conversation row to commit: it is there
    // at once.
    let (status, conv) = app.get(&format!("/v1/sessions/{id}/conversation")).await;
    assert_eq!(status, 200, "{conv}");
    assert!(
        conv.to_string()
            .contains("What does the new pricing include?"),
        "{conv}"
    );
    let data = custom(&mut p, "utterance").await;
    assert_eq!(data["role"], "user");
    assert_eq!(data["text"], "What does the new pricing include?");

    let (status, body) = deliver(&app, "tavus", "tavus_shutdown").await;
    accepted(status, &body, id);
    match p.event("lifecycle").await {
        (_, Event::Lifecycle { status, reason, .. }) => {
            assert_eq!(status, SessionStatus::Stopping);
            assert_eq!(reason.as_deref(), Some("tavus: participant_left_timeout"));
        }
        _ => unreachable!(),
    }
}

#[tokio::test]
async fn heygen_events_reach_a_participant() {
    let app = spawn_ingest_app().await;
    let (id, mut p) = watched_session(&app).await;
    let (status, body) = deliver(&app, "heygen", "heygen_avatar_start_talking").await;
    accepted(status, &body, id);
    assert!(speaking(&mut p).await);
    let (status, body) = deliver(&app, "heygen", "heygen_user_end_message").await;
    accepted(status, &body, id);
    let data = custom(&mut p, "utterance").await;
    assert_eq!(data["role"], "user");
    assert_eq!(data["source"], "heygen");
}

#[tokio::test]
async fn livekit_events_reach_a_participant() {
    let app = spawn_ingest_app().await;
    let (id, mut p) = watched_session(&app).await;
    let (status, body) = deliver(&app, "livekit", "livekit_agent_speaking").await;
    accepted(status, &body, id);
    assert!(speaking(&mut p).await, "lk.agent.state speaking");
    let (status, body) = deliver(&app, "livekit", "livekit_room_finished").await;
    accepted(status, &body, id);
    match p.event("lifecycle").await {
        (_, Event::Lifecycle { status, .. }) => assert_eq!(status, SessionStatus::Stopping),
        _ => unreachable!(),
    }
}

#[tokio::test]
async fn generic_events_reach_a_participant() {
    let app = spawn_ingest_app().await;
    let (id, mut p) = watched_session(&app).await;
    let (status, body) = deliver(&app, "generic", "generic_utterance").await;
    accepted(status, &body, id);
    let data = custom(&mut p, "utterance").await;
    assert_eq!(
        data,
        json!({"role": "renderer", "text": "Welcome to the quarterly review.", "source": "generic"})
    );
}

#[tokio::test]
async fn a_redelivery_is_a_duplicate_and_publishes_nothing() {
    let app = spawn_ingest_app().await;
    let (id, mut p) = watched_session(&app).await;
    let (status, first) = deliver(&app, "generic", "generic_utterance").await;
    accepted(status, &first, id);
    custom(&mut p, "utterance").await;

    // The same event, spaced and ordered differently: the same canonical
    // form, so the same hash.
    let v: Value = serde_json::from_str(&fixture("generic_utterance")).unwrap();
    let respaced = serde_json::to_string_pretty(&json!({
        "properties": v["properties"],
        "conversation_id": v["conversation_id"],
        "event_type": v["event_type"],
    }))
    .unwrap();
    let (status, again) = send(&app, "generic", &respaced, signed("generic", &respaced)).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["duplicate"], true);
    assert_eq!(again["id"], first["id"], "the stored event answers");
    assert_eq!(again["event_hash"], first["event_hash"]);
    assert_eq!(again["published"], json!([]));
    no_app_event(&mut p).await;
    assert_eq!(
        app.store
            .count_processed_events(CONVERSATION)
            .await
            .unwrap(),
        1
    );
}

/// A hub that stopped between recording an utterance and committing its
/// conversation row sent no answer; the vendor's redelivery is a
/// duplicate that writes the row and publishes the event then, once.
#[tokio::test]
async fn a_redelivery_finishes_an_utterance_whose_row_never_committed() {
    let app = spawn_ingest_app().await;
    let (id, mut p) = watched_session(&app).await;
    let body = fixture("generic_utterance");
    let event: Value = serde_json::from_str(&body).unwrap();
    // What the first delivery left: the recorded event, and no row.
    let recorded = ProcessedEvent {
        id: uuid::Uuid::now_v7(),
        source: "generic".into(),
        conversation_id: CONVERSATION.into(),
        event_type: "utterance".into(),
        event_data: event.clone(),
        event_hash: event_hash(Source::Generic, &event),
        session: Some(id),
        processed_at: chrono::Utc::now(),
        processing_duration_ms: 1,
    };
    app.store
        .record_processed_events(std::slice::from_ref(&recorded))
        .await
        .unwrap();

    let (status, again) = deliver(&app, "generic", "generic_utterance").await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["duplicate"], true);
    assert_eq!(
        again["id"],
        recorded.id.to_string(),
        "the stored event answers"
    );
    assert_eq!(again["published"].as_array().unwrap().len(), 1, "{again}");
    let data = custom(&mut p, "utterance").await;
    assert_eq!(data["text"], "Welcome to the quarterly review.");
    let rows = app
        .store
        .conversation(
            id,
            eva_hub::store::Page {
                before: None,
                limit: 10,
            },
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].content, "Welcome to the quarterly review.");
    assert_eq!(
        rows[0].client_msg_id.as_deref(),
        Some(recorded.id.to_string().as_str())
    );

    // Finished now: a further redelivery publishes and writes nothing.
    let (status, third) = deliver(&app, "generic", "generic_utterance").await;
    assert_eq!(status, 200, "{third}");
    assert_eq!(third["published"], json!([]));
    no_app_event(&mut p).await;
    assert_eq!(
        app.store
            .conversation(
                id,
                eva_hub::store::Page {
                    before: None,
                    limit: 10
                }
            )
            .await
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn a_bad_signature_is_401_and_nothing_is_stored() {
    let app = spawn_ingest_app().await;
    let (_, mut p) = watched_session(&app).await;
    let body = fixture("generic_utterance");
    let wrong = vec![(
        "x-eva-signature",
        format!("sha256={}", hmac_hex("not-the-secret", body.as_bytes())),
    )];
    let (status, answer) = send(&app, "generic", &body, wrong).await;
    assert_eq!(status, 401, "{answer}");
    assert_eq!(answer["error"]["code"], "unauthorized");
    let (status, _) = send(&app, "generic", &body, Vec::new()).await;
    assert_eq!(status, 401, "no signature at all");
    let tavus = fixture("tavus_utterance");
    let (status, _) = send(
        &app,
        "tavus",
        &tavus,
        vec![("x-eva-ingest-secret", "guess".into())],
    )
    .await;
    assert_eq!(status, 401);
    let heygen = fixture("heygen_user_end_message");
    // Signed, then changed: the signature no longer matches.
    let sig = signed("heygen", &heygen);
    let tampered = heygen.replace("roadmap", "pricing");
    let (status, _) = send(&app, "heygen", &tampered, sig).await;
    assert_eq!(status, 401);
    let livekit = fixture("livekit_agent_speaking");
    let mut token = signed("livekit", &livekit);
    token[0].1.push('x');
    let (status, _) = send(&app, "livekit", &livekit, token).await;
    assert_eq!(status, 401);
    assert_eq!(
        app.store
            .count_processed_events(CONVERSATION)
            .await
            .unwrap(),
        0
    );
    p.none_within(Duration::from_millis(200), |f| {
        matches!(
            f,
            ServerFrame::Event {
                event: Event::Custom { .. } | Event::State { .. },
                ..
            }
        )
    })
    .await;
}

#[tokio::test]
async fn unknown_sources_malformed_and_oversized_bodies_are_refused() {
    let app = spawn_ingest_app().await;
    let body = fixture("generic_utterance");
    let (status, answer) = send(&app, "zoom", &body, signed("generic", &body)).await;
    assert_eq!(status, 404, "{answer}");
    assert_eq!(answer["error"]["code"], "not_found");

    for bad in [
        "{not json",
        "[1, 2]",
        r#"{"event_type": "utterance", "properties": {}}"#,
        r#"{"event_type": "utterance", "conversation_id": "c", "properties": {"role": "user"}}"#,
    ] {
        let (status, answer) = send(&app, "generic", bad, signed("generic", bad)).await;
        assert_eq!(status, 400, "{bad}: {answer}");
    }
    let big = format!(
        r#"{{"event_type": "utterance", "conversation_id": "c", "properties": {{"role": "user", "text": "{}"}}}}"#,
        "a".repeat(MAX_BODY)
    );
    let (status, answer) = send(&app, "generic", &big, signed("generic", &big)).await;
    assert_eq!(status, 413, "{answer}");
    assert_eq!(app.store.count_processed_events("c").await.unwrap(), 0);
}

#[tokio::test]
async fn an_unmapped_conversation_is_stored_with_session_null() {
    let app = spawn_ingest_app().await;
    let (status, body) = deliver(&app, "tavus", "tavus_utterance").await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["session"], Value::Null);
    assert_eq!(body["duplicate"], false);
    assert_eq!(body["published"], json!([]));
    assert_eq!(body["conversation_id"], CONVERSATION);
    assert_eq!(
        app.store
            .count_processed_events(CONVERSATION)
            .await
            .unwrap(),
        1
    );
    let stored = app
        .store
        .processed_event(body["event_hash"].as_str().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.session, None);
    assert_eq!(stored.event_type, "conversation.utterance");
}

#[tokio::test]
async fn external_ids_are_unique_and_checked() {
    let app = spawn_ingest_app().await;
    watched_session(&app).await;
    let (status, body) = app
        .post("/v1/sessions", json!({"external_id": CONVERSATION}))
        .await;
    assert_eq!(status, 409, "{body}");
    let (status, _) = app
        .post("/v1/sessions", json!({"external_id": "x".repeat(256)}))
        .await;
    assert_eq!(status, 400);
}
