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

fn tick(session: eva_hub::ids::SessionId, i: usize, id: &str) -> ClientFrame {
    ClientFrame::Publish {
        session,
        name: "tick".into(),
        audience: CustomAudience::All,
        data: json!({ "i": i }),
        id: Some(id.into()),
    }
}

/// A renderer streams `publish` frames without waiting for answers; the
/// hub sequences those that arrive together as one run. Each frame still
/// gets its own answer: an ack with its seq, in the order sent, an error
/// for a bad one (which splits the run), a duplicate ack for a repeated
/// id. Participants see the events in the order sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_publish_frames_are_sequenced_in_order_and_each_answered() {
    for codec in [Codec::Json, Codec::MsgPack] {
        let app = spawn_app().await;
        let (id, mut r) = app.active_session(codec).await;
        let mut p = app.connect(Role::Participant, "p", Codec::Json).await;
        p.join(id).await;
        let mut frames: Vec<ClientFrame> = (0..30).map(|i| tick(id, i, &format!("t{i}"))).collect();
        frames.push(ClientFrame::Publish {
            session: id,
            name: "Not A Name".into(),
            audience: CustomAudience::All,
            data: json!({}),
            id: Some("bad".into()),
        });
        // Repeats t3 inside the same burst.
        frames.push(tick(id, 3, "t3"));
        frames.extend((30..60).map(|i| tick(id, i, &format!("t{i}"))));
        r.client.send_batch(&frames).await.unwrap();

        let mut acks = Vec::new();
        let (mut bad, mut dup) = (None, None);
        while acks.len() < 60 || bad.is_none() || dup.is_none() {
            match r.next().await {
                ServerFrame::Ack {
                    id: ack,
                    seq,
                    duplicate: false,
                    ..
                } if ack.starts_with('t') => {
                    acks.push((ack, seq.expect("an ack's seq")));
                }
                ServerFrame::Ack {
                    id: ack,
                    seq,
                    duplicate: true,
                    ..
                } => dup = Some((ack, seq)),
                ServerFrame::Error {
                    id: Some(e), code, ..
                } => bad = Some((e, code)),
                _ => {}
            }
        }
        let ids: Vec<String> = acks.iter().map(|(a, _)| a.clone()).collect();
        let sent: Vec<String> = (0..60).map(|i| format!("t{i}")).collect();
        assert_eq!(ids, sent, "{codec:?}: one ack per frame, in the order sent");
        let seqs: Vec<u64> = acks.iter().map(|(_, s)| *s).collect();
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "{codec:?}: sequenced in the order sent: {seqs:?}"
        );
        let (bad_id, code) = bad.unwrap();
        assert_eq!(
            (bad_id.as_str(), code),
            ("bad", eva_hub::protocol::ErrorCode::Invalid),
            "{codec:?}"
        );
        assert_eq!(
            dup,
            Some(("t3".into(), Some(acks[3].1))),
            "{codec:?}: the resend answered with the first's seq"
        );

        // The participant sees each tick at the seq its ack named, in the
        // order sent, and no other custom event between them. The hub's own
        // events (counters after the join) may fall between two runs.
        let (last, mut next) = (seqs[59], 0);
        loop {
            let ServerFrame::Event { seq, event, .. } = p.next().await else {
                continue;
            };
            if seq < seqs[0] {
                continue;
            }
            // Other events are the hub's own (counters after the join).
            if let eva_hub::protocol::model::Event::Custom { data, .. } = event {
                assert_eq!(seq, seqs[next], "{codec:?}: tick {next} at its acked seq");
                assert_eq!(data["i"], next, "{codec:?}: in the order sent");
                next += 1;
            }
            if seq >= last {
                break;
            }
        }
        assert_eq!(next, 60, "{codec:?}");
    }
}
