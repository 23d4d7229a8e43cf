//! An operator's console lists the tenant's sessions over its WebSocket.

use eva_hub::protocol::model::Role;
use eva_hub::protocol::{ClientFrame, Codec, ErrorCode, ServerFrame};

use crate::support::*;

fn list(id: &str) -> ClientFrame {
    ClientFrame::ListSessions {
        status: None,
        include_ended: false,
        limit: None,
        id: Some(id.into()),
    }
}

#[tokio::test]
async fn operators_list_live_sessions_newest_first_and_others_may_not() {
    let app = spawn_app().await;
    for codec in Codec::ALL {
        let (live, _r) = app.active_session(codec).await;
        let idle = app.create_session().await;
        let mut op = app.connect(Role::Operator, "op", codec).await;
        op.send(&list("l1")).await;
        let ServerFrame::SessionList { id, sessions } = op
            .until(|f| matches!(f, ServerFrame::SessionList { .. }))
            .await
        else {
            unreachable!("waited for a session_list")
        };
        assert_eq!(id.as_deref(), Some("l1"));
        let ids: Vec<_> = sessions.iter().map(|s| s.session).collect();
        let (pos_idle, pos_live) = (
            ids.iter().position(|s| *s == idle).expect("idle listed"),
            ids.iter().position(|s| *s == live).expect("live listed"),
        );
        assert!(pos_idle < pos_live, "newest first: {ids:?}");
        let line = &sessions[pos_live];
        assert!(line.renderer_connected && line.name.as_deref() == Some("demo"));

        let mut p = app.connect(Role::Participant, "ann", codec).await;
        p.send(&list("l2")).await;
        assert!(matches!(
            p.until(|f| matches!(f, ServerFrame::Error { .. })).await,
            ServerFrame::Error {
                code: ErrorCode::Forbidden,
                ..
            }
        ));
    }
}
