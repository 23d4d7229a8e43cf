//! A session's stream as every layer sees it: events once sequenced
//! ([`Published`]), and who caused them ([`Origin`]).
//!
//! The broker produces publications, the session replica folds them and
//! fans them out, the hub creates them; keeping the type here, below all
//! three, lets each depend on it without depending on the others.

use bytes::Bytes;
use once_cell::race::OnceBox;
use serde::{Deserialize, Serialize};

use crate::ids::{Seq, SessionId};
use crate::protocol::Codec;
use crate::protocol::frames::{CompactEventRef, EventFrameRef};
use crate::protocol::model::{Event, Role};

/// Who caused an event. Travels with the event through the broker but is
/// never sent to clients as such.
#[derive(Clone, PartialEq, Debug, Default, Serialize, Deserialize)]
pub struct Origin {
    /// The subject of the connection or API key; empty for the hub itself.
    pub sender: String,
    /// The sender's role; `None` for backends and the hub.
    pub role: Option<Role>,
    /// The client's frame id, which every node folds into its dedupe window.
    pub client_id: Option<String>,
    /// The renderer's fence for renderer frames. Every node drops a
    /// renderer event whose fence is older than the session's current one,
    /// so a replaced renderer cannot slip an event in after its successor.
    pub fence: Option<u64>,
}

impl Origin {
    pub fn hub() -> Origin {
        Origin::default()
    }
}

/// A sequenced event, shared by the history ring and every recipient.
#[derive(Debug)]
pub struct Published {
    pub session: SessionId,
    pub seq: Seq,
    /// Acceptance time, Unix milliseconds (on the wire as `ts`).
    pub ts: u64,
    pub event: Event,
    pub origin: Origin,
    /// When this node received or accepted it, on the [`crate::clock`]
    /// timeline; fan-out latency is measured from here.
    pub accepted_us: u64,
    /// The full frame per codec, encoded on first use. Each form is a
    /// pointer until then, so an event kept in history costs 8 bytes per
    /// form it was never sent in, not 40: most are sent in one form of
    /// four. (Two threads may encode the same form at once; one result is
    /// kept, and both are the same bytes.)
    frames: [OnceBox<Bytes>; 2],
    /// The compact form per codec (every connection of a node names the
    /// session by the same alias, so it is shared like the full one).
    compact: [OnceBox<Bytes>; 2],
}

impl Published {
    pub fn new(session: SessionId, seq: Seq, ts: u64, event: Event, origin: Origin) -> Published {
        Published {
            session,
            seq,
            ts,
            event,
            origin,
            accepted_us: crate::clock::mono_us(),
            frames: Default::default(),
            compact: Default::default(),
        }
    }

    /// The complete WebSocket frame for this event in `codec`, encoded on
    /// first use and shared by every later recipient.
    pub fn frame(&self, codec: Codec) -> &Bytes {
        self.frames[codec.index()].get_or_init(|| {
            Box::new(codec.frame(&EventFrameRef {
                kind: "event",
                session: self.session,
                seq: self.seq,
                ts: self.ts,
                event: &self.event,
            }))
        })
    }

    /// The compact event frame (`e` = `alias`) in `codec`, encoded on
    /// first use and shared by every later recipient.
    pub fn compact_frame(&self, codec: Codec, alias: u32) -> &Bytes {
        self.compact[codec.index()].get_or_init(|| {
            Box::new(codec.frame(&CompactEventRef {
                e: alias,
                q: self.seq,
                event: &self.event,
            }))
        })
    }

    /// The frame a connection receives: compact or full.
    pub fn frame_for(&self, codec: Codec, compact: Option<u32>) -> &Bytes {
        match compact {
            Some(alias) => self.compact_frame(codec, alias),
            None => self.frame(codec),
        }
    }

    /// Approximate memory held, for history budgets.
    pub fn weight(&self) -> usize {
        self.frames
            .iter()
            .chain(&self.compact)
            .filter_map(|f| f.get())
            .map(|b| b.len())
            .sum::<usize>()
            + 256
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::frames::CompactEventFrame;
    use crate::protocol::model::CustomAudience;

    /// A WebSocket frame's payload (server frames are never masked).
    fn payload(frame: &Bytes) -> &[u8] {
        let len = frame[1] & 0x7f;
        match len {
            126 => &frame[4..],
            127 => &frame[10..],
            _ => &frame[2..],
        }
    }

    /// A session keeps up to `history_size` events (4,096 by default) for
    /// resume, and one presence event per participant who joined: each
    /// byte here is paid thousands of times per session.
    #[test]
    fn an_event_kept_in_history_stays_small() {
        let size = std::mem::size_of::<Published>();
        assert!(size <= 240, "a sequenced event grew to {size} bytes");
    }

    #[test]
    fn compact_frames_decode_in_both_codecs_and_are_smaller() {
        let event = Event::Custom {
            name: "b".into(),
            audience: CustomAudience::All,
            data: Box::new(serde_json::json!({"i": 1, "p": "x".repeat(100)})),
            from: "r0".into(),
        };
        let p = Published::new(
            SessionId::new(),
            41,
            1_732_290_000_123,
            event.clone(),
            Origin::hub(),
        );
        for codec in Codec::ALL {
            let compact = p.compact_frame(codec, 7).clone();
            let full = p.frame(codec).clone();
            assert!(
                compact.len() + 40 < full.len(),
                "{codec:?}: {} vs {}",
                compact.len(),
                full.len()
            );
            let back: CompactEventFrame = match codec {
                Codec::Json => serde_json::from_slice(payload(&compact)).unwrap(),
                Codec::MsgPack => rmp_serde::from_slice(payload(&compact)).unwrap(),
            };
            assert_eq!((back.e, back.q), (7, 41));
            assert_eq!(back.event, event);
        }
        // The default audience is implied, not sent.
        let json = String::from_utf8_lossy(payload(p.frame(Codec::Json))).into_owned();
        assert!(!json.contains("audience"), "{json}");
    }
}
