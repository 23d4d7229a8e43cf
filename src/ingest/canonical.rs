//! Canonical JSON and the event hash that makes ingestion idempotent.
//!
//! Canonical JSON: object keys sorted by their UTF-8 bytes, no
//! whitespace, strings escaped as `serde_json` writes them, numbers as
//! parsed. Two deliveries of one event hash alike however the sender
//! spaced or ordered its keys; two different events never do.

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::Source;

/// `v` in canonical JSON.
pub fn canonical_json(v: &Value) -> String {
    let mut out = String::new();
    write(v, &mut out);
    out
}

fn write(v: &Value, out: &mut String) {
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                // A string always serializes.
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                write(&map[k], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// The event's identity: lowercase hex SHA-256 of the canonical JSON of
/// `{"event": <body>, "source": "<source>"}`. The source is part of it so
/// that the same body sent to two sources is two events.
pub fn event_hash(source: Source, body: &Value) -> String {
    let wrapped = serde_json::json!({ "event": body, "source": source.as_str() });
    hex(&Sha256::digest(canonical_json(&wrapped).as_bytes()))
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn key_order_and_whitespace_do_not_matter() {
        let a: Value = serde_json::from_str(r#"{"b": 1, "a": {"y": [1, 2], "x": "é"}}"#).unwrap();
        let b: Value = serde_json::from_str(r#"{"a":{"x":"é","y":[1,2]},"b":1}"#).unwrap();
        assert_eq!(canonical_json(&a), r#"{"a":{"x":"é","y":[1,2]},"b":1}"#);
        assert_eq!(
            event_hash(Source::Generic, &a),
            event_hash(Source::Generic, &b)
        );
    }

    #[test]
    fn source_and_content_change_the_hash() {
        let a = json!({"event_type": "utterance", "n": 1});
        assert_ne!(
            event_hash(Source::Generic, &a),
            event_hash(Source::Tavus, &a)
        );
        assert_ne!(
            event_hash(Source::Generic, &a),
            event_hash(Source::Generic, &json!({"event_type": "utterance", "n": 2}))
        );
        assert_eq!(event_hash(Source::Generic, &a).len(), 64);
    }
}
