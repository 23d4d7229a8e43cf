//! The wire format of one event: what a session's stream entries and
//! channel messages carry (`ts`, event and origin, as JSON), encoded when
//! publishing and decoded when delivering or reading history. Channel
//! messages wrap it as `E {epoch} {seq} {payload}`; the PUBLISH script
//! writes that and `delivery.rs` reads it.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::broker::BrokerError;
use crate::ids::{Seq, SessionId};
use crate::protocol::model::Event;
use crate::stream::{Origin, Published};

/// What the stream and the channel carry for one event.
#[derive(Serialize)]
struct WireRef<'a> {
    ts: u64,
    event: &'a Event,
    origin: &'a Origin,
}

#[derive(Deserialize)]
struct Wire {
    ts: u64,
    event: Event,
    origin: Origin,
}

pub(super) fn encode(ts: u64, event: &Event, origin: &Origin) -> Result<String, BrokerError> {
    // JSON rather than MessagePack: the event model uses internally tagged
    // enums, and operators can read the stream with redis-cli.
    serde_json::to_string(&WireRef { ts, event, origin })
        .map_err(|e| BrokerError::Unavailable(format!("cannot encode event: {e}")))
}

/// A fingerprint of a payload, to tell two different events given one
/// number apart (the payload holds the acceptance time, the event and its
/// origin, so equal prints mean the same event for every purpose).
pub(super) fn print(payload: &str) -> u64 {
    use std::hash::BuildHasher;
    std::hash::BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default()
        .hash_one(payload)
}

pub(super) fn decode(session: SessionId, seq: Seq, payload: &str) -> Option<Arc<Published>> {
    match serde_json::from_str::<Wire>(payload) {
        Ok(w) => Some(Arc::new(Published::new(
            session, seq, w.ts, w.event, w.origin,
        ))),
        Err(e) => {
            // Written by a newer or broken node; skipping it would leave a
            // gap, so the track refills and will log this again.
            tracing::error!(%session, seq, error = %e, "undecodable event in Redis");
            None
        }
    }
}
