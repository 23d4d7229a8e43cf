//! `docs/PROTOCOL.md` is what third parties write clients from, so its
//! examples must be frames the hub really reads and writes: every JSON
//! example with a `type` decodes as a client or server frame, every one
//! with a `kind` as an event, and every event kind has an example `event`
//! frame.

use std::collections::BTreeSet;

use eva_hub::config::Settings;
use eva_hub::hub::check_frame;
use eva_hub::protocol::model::Event;
use eva_hub::protocol::{ClientFrame, ServerFrame};
use serde_json::Value;

fn examples() -> Vec<Value> {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/PROTOCOL.md"))
        .expect("docs/PROTOCOL.md");
    let mut out = Vec::new();
    let mut rest = doc.as_str();
    while let Some(start) = rest.find("```json\n") {
        rest = &rest[start + 8..];
        let end = rest.find("```").expect("closed code block");
        let block = &rest[..end];
        rest = &rest[end + 3..];
        match serde_json::from_str::<Value>(block) {
            Ok(v) => out.push(v),
            Err(_) => {
                for line in block.lines().filter(|l| !l.trim().is_empty()) {
                    let v = serde_json::from_str(line)
                        .unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
                    out.push(v);
                }
            }
        }
    }
    out
}

const CLIENT_TYPES: &[&str] = &[
    "auth",
    "join",
    "leave",
    "state",
    "context",
    "metrics",
    "status",
    "response",
    "command_ack",
    "question",
    "takeover",
    "release",
    "command",
    "suggestion",
    "correction",
    "emergency_stop",
    "approve",
    "ack_alert",
    "publish",
    "list_sessions",
    "ping",
];

#[test]
fn every_example_frame_and_event_decodes() {
    let max_text = Settings::defaults().session.max_text_bytes;
    let mut frames = 0;
    for v in examples() {
        if let Some(t) = v.get("type").and_then(Value::as_str) {
            frames += 1;
            if CLIENT_TYPES.contains(&t) {
                let frame = serde_json::from_value::<ClientFrame>(v.clone())
                    .unwrap_or_else(|e| panic!("client frame does not decode ({e}): {v}"));
                // Examples show frames the hub accepts, not ones it refuses.
                if let Err(e) = check_frame(&frame, max_text) {
                    panic!("client frame fails its checks ({e}): {v}");
                }
            } else if let Err(e) = serde_json::from_value::<ServerFrame>(v.clone()) {
                panic!("server frame does not decode ({e}): {v}");
            }
        } else if v.get("kind").is_some()
            && let Err(e) = serde_json::from_value::<Event>(v.clone())
        {
            panic!("event does not decode ({e}): {v}");
        }
    }
    assert!(frames > 40, "only {frames} example frames found");
}

#[test]
fn every_event_kind_has_an_example_event_frame() {
    let mut seen = BTreeSet::new();
    for v in examples() {
        if let Ok(ServerFrame::Event { event, .. }) = serde_json::from_value::<ServerFrame>(v) {
            seen.insert(event.kind());
        }
    }
    let all = [
        "created",
        "lifecycle",
        "state",
        "context",
        "presence",
        "counters",
        "renderer",
        "question",
        "response",
        "response_held",
        "takeover",
        "release",
        "command",
        "command_ack",
        "suggestion",
        "correction",
        "emergency_stop",
        "metrics",
        "alert",
        "alert_ack",
        "custom",
        "job",
    ];
    let missing: Vec<_> = all.iter().filter(|k| !seen.contains(*k)).collect();
    assert!(missing.is_empty(), "no example event frame for {missing:?}");
}
