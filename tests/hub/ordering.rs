//! One order per session, whoever sends.

use eva_hub::protocol::model::{CustomAudience, Role, StatePatch};
use eva_hub::protocol::{ClientFrame, Codec, ServerFrame};
use serde_json::json;

use crate::support::*;

/// Renderer, operators and participants send at once; every operator sees
/// one gap-free, strictly increasing sequence (operators see every kind
/// used here), and two participants see the events of their view in the
/// same order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_senders_produce_one_gap_free_order() {
    // Readers here fall behind on purpose (they read after the senders are
    // done), so conflation is turned off to make gap-freedom checkable.
    let mut settings = test_settings();
    settings.websocket.conflate_after_bytes = 32 << 20;
    settings.websocket.outbound_max_bytes = 64 << 20;
    let app = spawn_with(
        settings,
        std::sync::Arc::new(eva_hub::store::memory::MemoryStore::new()),
    )
    .await;
    let (id, renderer) = app.active_session(Codec::MsgPack).await;
    let mut watcher = app.connect(Role::Operator, "watcher", Codec::Json).await;
    let snap = watcher.join(id).await;
    let mut pa = app.connect(Role::Participant, "pa", Codec::Json).await;
    pa.join(id).await;
    let mut pb = app.connect(Role::Participant, "pb", Codec::MsgPack).await;
    pb.join(id).await;

    const N: usize = 200;
    let mut tasks = Vec::new();
    let mut r = renderer;
    tasks.push(tokio::spawn(async move {
        for i in 0..N {
            r.send(&ClientFrame::State {
                session: id,
                state: StatePatch {
                    current_slide: Some(i as i32),
                    ..Default::default()
                },
                id: None,
            })
            .await;
        }
        r
    }));
    for k in 0..2 {
        let mut op = app
            .connect(Role::Operator, &format!("op{k}"), Codec::Json)
            .await;
        op.join(id).await;
        tasks.push(tokio::spawn(async move {
            for i in 0..N {
                op.send(&ClientFrame::Publish {
                    session: id,
                    name: "tick".into(),
                    audience: CustomAudience::All,
                    data: json!({"op": k, "i": i}),
                    id: None,
                })
                .await;
            }
            op
        }));
    }
    let mut asker = app.connect(Role::Participant, "asker", Codec::Json).await;
    asker.join(id).await;
    tasks.push(tokio::spawn(async move {
        for i in 0..50 {
            asker
                .send(&ClientFrame::Question {
                    session: id,
                    id: format!("q{i}"),
                    text: format!("question {i}"),
                })
                .await;
        }
        asker
    }));
    let _keep: Vec<_> = futures_util::future::join_all(tasks).await;

    // 200 state + 400 custom + 50 questions, plus whatever presence and
    // counters events interleave.
    let mut last = snap.seq;
    let (mut states, mut customs, mut questions) = (0, 0, 0);
    while states < N || customs < 2 * N || questions < 50 {
        if let ServerFrame::Event { seq, event, .. } = watcher.next().await {
            assert_eq!(
                seq,
                last + 1,
                "operators see every event: no gap, no reorder"
            );
            last = seq;
            match event.kind() {
                "state" => states += 1,
                "custom" => customs += 1,
                "question" => questions += 1,
                _ => {}
            }
        }
    }

    let a = state_and_custom_seqs(&mut pa, 3 * N).await;
    let b = state_and_custom_seqs(&mut pb, 3 * N).await;
    assert!(a.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(a, b, "both participants see the same order");
}

async fn state_and_custom_seqs(c: &mut TestClient, n: usize) -> Vec<u64> {
    let mut seqs = Vec::new();
    while seqs.len() < n {
        if let ServerFrame::Event { seq, event, .. } = c.next().await
            && matches!(event.kind(), "state" | "custom")
        {
            seqs.push(seq);
        }
    }
    seqs
}
