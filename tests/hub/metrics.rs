//! `/metrics`: the families exist, latencies are histograms with explicit
//! buckets, and no label carries an unbounded value.

use std::collections::{HashMap, HashSet};

use eva_hub::protocol::model::{RendererMetrics, Role, StageLatencies};
use eva_hub::protocol::{ClientFrame, Codec, ServerFrame};
use serde_json::json;

use crate::support::*;

/// One sample line of the Prometheus text format.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: Vec<(String, String)>,
    value: f64,
}

fn parse(text: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("name and value");
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line}"));
        let (name, labels) = match series.split_once('{') {
            None => (series.to_owned(), Vec::new()),
            Some((name, rest)) => {
                let body = rest.strip_suffix('}').expect("closing brace");
                let labels = body
                    .split("\",")
                    .filter(|p| !p.is_empty())
                    .map(|p| {
                        let (k, v) = p.split_once("=\"").expect("label");
                        (k.to_owned(), v.trim_end_matches('"').to_owned())
                    })
                    .collect();
                (name.to_owned(), labels)
            }
        };
        out.push(Sample {
            name,
            labels,
            value,
        });
    }
    out
}

async fn scrape(app: &TestApp) -> Vec<Sample> {
    let text = reqwest::get(format!("http://{}/metrics", app.metrics_addr))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    parse(&text)
}

#[tokio::test]
async fn metrics_are_histograms_with_bounded_labels() {
    let app = spawn_app().await;
    let (id, mut r) = app.active_session(Codec::Json).await;
    let mut op = app.connect(Role::Operator, "op", Codec::Json).await;
    op.join(id).await;
    let mut p = app.connect(Role::Participant, "p", Codec::MsgPack).await;
    p.join(id).await;
    r.send(&ClientFrame::Metrics {
        session: id,
        metrics: RendererMetrics {
            latency_ms: Some(210.0),
            stages: StageLatencies {
                stt_ms: Some(90.0),
                llm_ms: Some(400.0),
                tts_ms: Some(120.0),
                total_ms: Some(610.0),
            },
            component: Some("pipeline".into()),
            ..Default::default()
        },
    })
    .await;
    op.send(&ClientFrame::EmergencyStop {
        session: id,
        id: "e".into(),
        reason: None,
    })
    .await;
    let urgent = r.until(|f| matches!(f, ServerFrame::Urgent { .. })).await;
    let ServerFrame::Urgent {
        intervention_id, ..
    } = urgent
    else {
        unreachable!()
    };
    r.send(&ClientFrame::CommandAck {
        session: id,
        command_id: intervention_id,
    })
    .await;
    op.event("command_ack").await;
    p.send(&ClientFrame::Question {
        session: id,
        id: "q".into(),
        text: "hello?".into(),
    })
    .await;
    p.until(|f| matches!(f, ServerFrame::Ack { .. })).await;

    // A thousand sessions must not grow the series count.
    for n in 0..1000 {
        let (status, _) = app
            .post("/v1/sessions", json!({ "name": format!("s{n}") }))
            .await;
        assert_eq!(status, 201);
    }

    let samples = scrape(&app).await;
    let names: HashSet<&str> = samples.iter().map(|s| s.name.as_str()).collect();
    for family in [
        "eva_fanout_latency_seconds",
        "eva_emergency_stop_ack_seconds",
        "eva_renderer_stage_latency_seconds",
        "eva_renderer_component_latency_seconds",
        "eva_store_flush_seconds",
        "eva_store_batch_rows",
    ] {
        assert!(
            names.contains(format!("{family}_bucket").as_str()),
            "{family} is a histogram"
        );
        assert!(names.contains(format!("{family}_count").as_str()));
    }
    for gauge in [
        "eva_connections",
        "eva_sessions",
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_open_fds",
    ] {
        assert!(names.contains(gauge), "{gauge} missing");
    }
    assert!(names.contains("eva_frames_out_total") && names.contains("eva_frames_in_total"));
    // Latency buckets are explicit, from 50 µs.
    let fanout_les: HashSet<String> = samples
        .iter()
        .filter(|s| s.name == "eva_fanout_latency_seconds_bucket")
        .flat_map(|s| {
            s.labels
                .iter()
                .filter(|(k, _)| k == "le")
                .map(|(_, v)| v.clone())
        })
        .collect();
    assert!(
        fanout_les.contains("0.00005") && fanout_les.contains("2.5"),
        "{fanout_les:?}"
    );
    let stages: HashSet<String> = samples
        .iter()
        .filter(|s| s.name == "eva_renderer_stage_latency_seconds_count")
        .flat_map(|s| {
            s.labels
                .iter()
                .filter(|(k, _)| k == "stage")
                .map(|(_, v)| v.clone())
        })
        .collect();
    for stage in ["stt", "llm", "tts", "total"] {
        assert!(stages.contains(stage), "stage {stage}: {stages:?}");
    }
    let created: f64 = samples
        .iter()
        .filter(|s| s.name == "eva_sessions" && s.labels.iter().any(|(_, v)| v == "created"))
        .map(|s| s.value)
        .sum();
    assert!(created >= 0.0);

    // No label value is an id, and no family has many label sets (bucket
    // bounds aside).
    let mut series: HashMap<&str, HashSet<Vec<(String, String)>>> = HashMap::new();
    for s in &samples {
        for (k, v) in &s.labels {
            assert!(
                v.parse::<uuid::Uuid>().is_err()
                    && v.parse::<u64>()
                        .map_or(true, |_| k == "le" || k == "quantile"),
                "unbounded label {k}={v} on {}",
                s.name
            );
        }
        let set: Vec<_> = s
            .labels
            .iter()
            .filter(|(k, _)| k != "le")
            .cloned()
            .collect();
        series.entry(&s.name).or_default().insert(set);
    }
    // Bounded by construction, not by traffic: the largest family is a
    // product of two fixed lists (ingest source × outcome, 5 × 9), all
    // registered at start so that rates exist before the first event.
    for (name, sets) in series {
        assert!(sets.len() <= 64, "{name} has {} label sets", sets.len());
    }
}
