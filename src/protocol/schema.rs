//! The protocol as a JSON Schema (draft 2020-12), generated from the very
//! types the codecs use, so the document cannot drift from the hub.
//! `eva-hub schema` prints it; `docs/protocol.schema.json` is the committed
//! copy the SDKs generate their types from.
//!
//! Client frames are described as the hub *reads* them (a field with a
//! default may be left out); server frames as the hub *writes* them (a
//! field the hub omits when empty is optional, every other is present).

use schemars::generate::{SchemaGenerator, SchemaSettings};
use serde_json::{Map, Value, json};

use super::codes::{CloseCode, ErrorCode};
use super::frames::{ClientFrame, CompactEventFrame, ServerFrame};
use super::model::Event;
use super::{JSON_SUBPROTOCOL, MSGPACK_SUBPROTOCOL, PROTOCOL_VERSION};

/// The whole protocol: every client and server frame and every event kind.
pub fn document() -> Value {
    let mut defs = Map::new();
    let mut read = SchemaSettings::draft2020_12()
        .for_deserialize()
        .into_generator();
    read.subschema_for::<ClientFrame>();
    merge(&mut defs, read, "read");
    let mut written = SchemaSettings::draft2020_12()
        .for_serialize()
        .into_generator();
    written.subschema_for::<ServerFrame>();
    written.subschema_for::<CompactEventFrame>();
    written.subschema_for::<Event>();
    merge(&mut defs, written, "written");
    defs.insert("CloseCode".into(), close_codes());
    add_examples(&mut defs);
    if let Some(Value::Object(e)) = defs.get_mut("ErrorCode") {
        let retryable: Vec<&str> = ErrorCode::ALL
            .iter()
            .filter(|c| c.retryable())
            .map(|c| c.as_str())
            .collect();
        e.insert("x-retryable".into(), json!(retryable));
    }
    for schema in defs.values_mut() {
        refs_alone(schema);
    }
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": format!("urn:eva-hub:protocol:{PROTOCOL_VERSION}"),
        "title": PROTOCOL_VERSION,
        "description": format!(
            "Every frame of the eva-hub WebSocket protocol, carried as JSON in text frames \
             ({JSON_SUBPROTOCOL}) or as MessagePack maps with the same keys in binary frames \
             ({MSGPACK_SUBPROTOCOL}). A client sends ClientFrame and receives ServerFrame, or \
             CompactEventFrame for the sessions it joined with `compact: true`; \
             docs/PROTOCOL.md explains what each one does."
        ),
        "oneOf": [
            { "$ref": "#/$defs/ClientFrame" },
            { "$ref": "#/$defs/ServerFrame" },
            { "$ref": "#/$defs/CompactEventFrame" }
        ],
        "$defs": defs,
    })
}

/// Adds a generator's definitions. A type both read and written must be
/// described the same way both times, or the schema would lie about one
/// direction: that is a bug in the model, caught by the unit test below.
fn merge(defs: &mut Map<String, Value>, mut generator: SchemaGenerator, direction: &str) {
    for (name, schema) in generator.take_definitions(true) {
        match defs.get(&name) {
            Some(existing) if *existing != schema => {
                panic!("{name} is described differently when {direction}")
            }
            _ => {
                defs.insert(name, schema);
            }
        }
    }
}

/// Moves every `$ref` that has sibling keywords into an `allOf`. Both
/// mean the same in draft 2020-12, but many code generators read a
/// `$ref` as replacing its siblings and would drop them (the `type` of a
/// `snapshot` frame, for one).
pub fn refs_alone(schema: &mut Value) {
    match schema {
        Value::Object(map) => {
            if map.len() > 1
                && let Some(target) = map.remove("$ref")
            {
                let mut all = vec![json!({ "$ref": target })];
                if let Some(Value::Array(more)) = map.remove("allOf") {
                    all.extend(more);
                }
                map.insert("allOf".into(), Value::Array(all));
            }
            map.values_mut().for_each(refs_alone);
        }
        Value::Array(items) => items.iter_mut().for_each(refs_alone),
        _ => {}
    }
}

/// The protocol document, whose examples third parties write clients
/// from; `tests/protocol_doc.rs` decodes every one against the model.
const PROTOCOL_DOC: &str = include_str!("../../docs/PROTOCOL.md");

/// Gives `ServerFrame` the documented `event` frames (one of each kind at
/// least) and `Event` the events they carry, as `examples`: the schema
/// shows the same frames as docs/PROTOCOL.md, `from` included.
fn add_examples(defs: &mut Map<String, Value>) {
    let frames: Vec<Value> = PROTOCOL_DOC
        .lines()
        .filter(|l| l.starts_with(r#"{"type":"event""#))
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let events: Vec<Value> = frames.iter().map(|f| f["event"].clone()).collect();
    for (name, examples) in [("ServerFrame", frames), ("Event", events)] {
        if let Some(Value::Object(def)) = defs.get_mut(name) {
            def.insert("examples".into(), Value::Array(examples));
        }
    }
}

/// What a close code's one-line reason leaves out.
fn close_detail(c: CloseCode) -> Option<&'static str> {
    match c {
        CloseCode::ProtocolViolation => Some(
            "`max_bad_frames` (16 by default) undecodable frames are tolerated, each answered \
             with `error` (`bad_frame` or `unknown_type`); the next one past the limit gets its \
             `error` too, then this close. Frames refused for any other reason do not count.",
        ),
        _ => None,
    }
}

/// Close codes as integers, each with its name and whether a client should
/// reconnect after it (`x-reconnect`).
fn close_codes() -> Value {
    let codes: Vec<Value> = CloseCode::ALL
        .iter()
        .map(|c| {
            let description = match close_detail(*c) {
                Some(more) => format!("{} {more}", c.reason()),
                None => c.reason().to_owned(),
            };
            json!({
                "const": c.code(),
                "title": c.as_label(),
                "description": description,
                "x-reconnect": c.should_reconnect(),
            })
        })
        .collect();
    json!({
        "description": "WebSocket close codes the hub sends. 1011, 1012 and 4000-4499 mean \
                        reconnect with backoff and resume; every other code is final.",
        "type": "integer",
        "oneOf": codes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_frame_and_event_kind_is_described() {
        let doc = document();
        let defs = doc["$defs"].as_object().expect("$defs");
        for name in [
            "ClientFrame",
            "ServerFrame",
            "CompactEventFrame",
            "Event",
            "CloseCode",
            "ErrorCode",
        ] {
            assert!(defs.contains_key(name), "{name} missing");
        }
        let text = doc.to_string();
        for kind in ["\"emergency_stop\"", "\"response_held\"", "\"custom\""] {
            assert!(text.contains(kind), "{kind} missing");
        }
    }

    /// Every event kind the model has is shown by at least one example.
    #[test]
    fn every_event_kind_has_an_example() {
        let doc = document();
        let examples = doc["$defs"]["Event"]["examples"]
            .as_array()
            .expect("Event examples");
        let kinds: Vec<&str> = doc["$defs"]["Event"]["oneOf"]
            .as_array()
            .expect("Event variants")
            .iter()
            .filter_map(|v| v["properties"]["kind"]["const"].as_str())
            .collect();
        assert!(kinds.len() > 10, "{kinds:?}");
        for kind in kinds {
            assert!(
                examples.iter().any(|e| e["kind"] == kind),
                "no example of {kind}"
            );
        }
    }

    /// The SDKs generate their types from the committed copy, so it must be
    /// the hub's current model.
    #[test]
    fn committed_copy_is_current() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/protocol.schema.json");
        let committed = std::fs::read_to_string(path).unwrap_or_default();
        let current = serde_json::to_string_pretty(&document()).expect("serializable") + "\n";
        assert!(
            committed == current,
            "docs/protocol.schema.json is stale: run `cargo run -- schema > docs/protocol.schema.json`"
        );
    }
}
