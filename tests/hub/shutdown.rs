//! Graceful shutdown: clients are told to reconnect, acknowledged rows are
//! written, and it all ends within the deadline.

use std::sync::Arc;

use eva_hub::protocol::model::Role;
use eva_hub::protocol::{ClientFrame, Codec, ServerFrame};
use eva_hub::store::memory::MemoryStore;
use eva_hub::store::{Page, Store};

use crate::support::*;

#[tokio::test]
async fn shutdown_closes_clients_with_reconnect_and_keeps_what_was_acknowledged() {
    let store = Arc::new(MemoryStore::new());
    let mut app = spawn_with(test_settings(), store.clone()).await;
    let (id, mut r) = app.active_session(Codec::Json).await;
    let mut p = app.connect(Role::Participant, "p", Codec::MsgPack).await;
    p.join(id).await;
    p.send(&ClientFrame::Question {
        session: id,
        id: "q".into(),
        text: "still there?".into(),
    })
    .await;
    p.until(|f| matches!(f, ServerFrame::Ack { .. })).await;

    let started = std::time::Instant::now();
    app.shutdown().await;
    assert!(
        started.elapsed() < std::time::Duration::from_secs(3),
        "within the grace"
    );
    assert_eq!(p.closed().await, Some(1012), "service restart: reconnect");
    assert_eq!(r.closed().await, Some(1012));
    let rows = store
        .conversation(
            id,
            Page {
                before: None,
                limit: 10,
            },
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].content, "still there?");
    // The listener is gone.
    assert!(tokio::net::TcpStream::connect(app.addr).await.is_err());
}
