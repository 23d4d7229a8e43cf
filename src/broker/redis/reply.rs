//! Reading Redis replies: the values scripts and commands hand back, as
//! integers, strings, arrays, epochs and stream entries, and the error a
//! failing Redis becomes. The bottom of the Redis broker: every other file
//! parses replies through these, so a reply shape is read one way only.

use fred::types::Value;

use crate::broker::BrokerError;
use crate::ids::{Epoch, Seq};

pub(super) fn unavailable(e: impl std::fmt::Display) -> BrokerError {
    BrokerError::Unavailable(e.to_string())
}

pub(super) fn int(v: &Value) -> Option<i64> {
    match v {
        Value::Integer(i) => Some(*i),
        Value::String(s) => s.parse().ok(),
        Value::Bytes(b) => std::str::from_utf8(b).ok()?.parse().ok(),
        _ => None,
    }
}

pub(super) fn text(v: &Value) -> Option<String> {
    v.as_string()
}

pub(super) fn epoch_of(v: &Value) -> Result<Epoch, BrokerError> {
    text(v)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| unavailable("malformed epoch in Redis"))
}

pub(super) fn array(v: Value) -> Vec<Value> {
    match v {
        Value::Array(a) => a,
        Value::Null => Vec::new(),
        other => vec![other],
    }
}

/// Stream entries `[[id, [field, value, ...]], ...]` as (seq, payload).
pub(super) fn entries(v: Value) -> Vec<(Seq, String)> {
    array(v)
        .into_iter()
        .filter_map(|entry| {
            let mut parts = array(entry).into_iter();
            let id = text(&parts.next()?)?;
            let seq = id.split('-').next()?.parse().ok()?;
            let fields = array(parts.next()?);
            let payload = text(fields.get(1)?)?;
            Some((seq, payload))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_entries_parse() {
        let v = Value::Array(vec![Value::Array(vec![
            Value::String("7-1".into()),
            Value::Array(vec![Value::String("e".into()), Value::String("{}".into())]),
        ])]);
        assert_eq!(entries(v), vec![(7, "{}".to_owned())]);
    }
}
