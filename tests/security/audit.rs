//! Stored interventions name the operator who made them, and stored alert
//! acknowledgements who acknowledged them: the subject of their token.

use eva_hub::protocol::model::Event;
use eva_hub::protocol::{ClientFrame, ServerFrame, SessionStatus};

use crate::support::*;

#[tokio::test]
async fn interventions_and_acknowledgements_record_the_token_subject() {
    let app = spawn().await;
    let session = app.session(&app.a).await;
    let mut r = app
        .connect(&app.renderer(&app.a, "engine", session).await)
        .await;
    r.join(session).await;
    r.send(&ClientFrame::Status {
        session,
        status: SessionStatus::Active,
        reason: None,
        id: Some("go".into()),
    })
    .await;
    r.until(|f| matches!(f, ServerFrame::Ack { id, .. } if id == "go"))
        .await;
    let mut op = app.connect(&app.operator(&app.a, "op-audit").await).await;
    op.join(session).await;
    for frame in [
        ClientFrame::Takeover {
            session,
            reason: Some("check".into()),
            id: Some("t".into()),
        },
        ClientFrame::Suggestion {
            session,
            id: "s".into(),
            text: "mention pricing".into(),
        },
        ClientFrame::EmergencyStop {
            session,
            id: "e".into(),
            reason: Some("test".into()),
        },
    ] {
        let id = frame.client_id().unwrap().to_owned();
        op.send(&frame).await;
        op.until(|f| matches!(f, ServerFrame::Ack { id: i, .. } if *i == id))
            .await;
    }
    // The renderer never acknowledges the stop: an alert is raised.
    let (_, alert) = op.event("alert").await;
    let Event::Alert { alert } = alert else {
        unreachable!()
    };
    op.send(&ClientFrame::AckAlert {
        session,
        alert_id: alert.alert_id,
        id: Some("k".into()),
    })
    .await;
    op.until(|f| matches!(f, ServerFrame::Ack { id, .. } if id == "k"))
        .await;

    let path = format!("/v1/sessions/{session}/interventions");
    eventually("three interventions stored", || async {
        app.get(&path, &app.a.reader).await.json()["items"]
            .as_array()
            .is_some_and(|i| i.len() == 3)
    })
    .await;
    let rows = app.get(&path, &app.a.reader).await.json();
    for row in rows["items"].as_array().unwrap() {
        assert_eq!(row["operator_id"], "op-audit", "{row}");
    }
    let alerts = app
        .get(&format!("/v1/sessions/{session}/alerts"), &app.a.reader)
        .await
        .json();
    let row = alerts["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == serde_json::json!(alert.alert_id))
        .cloned()
        .unwrap();
    assert_eq!(row["acknowledged"], true, "{row}");
    assert_eq!(row["acknowledged_by"], "op-audit", "{row}");
}
