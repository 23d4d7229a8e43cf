//! What each vendor's events mean to the hub: the public table that
//! normalises vendor speaking names to the hub's speaking state, and the
//! readers of each vendor's JSON shape (`docs/INGEST.md` shows the same
//! table).
//!
//! The hub's speaking state has two speakers: the renderer (the avatar,
//! the replica, the agent), whose speaking is `state.is_speaking`, and
//! the user (the person talking to it), announced as the app event
//! `user.speaking`.

use serde_json::Value;

use super::{Action, IngestError, Source, Speaker};

/// One vendor name for a speaking change.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct SpeakingName {
    pub source: Source,
    /// The vendor's event name (Tavus, HeyGen, generic) or the value of
    /// the `lk.agent.state` participant attribute (LiveKit).
    pub name: &'static str,
    pub speaker: Speaker,
    /// `None`: recognised, but says nothing about speaking (LiveKit's
    /// `initializing`).
    pub speaking: Option<bool>,
}

const fn row(
    source: Source,
    name: &'static str,
    speaker: Speaker,
    speaking: Option<bool>,
) -> SpeakingName {
    SpeakingName {
        source,
        name,
        speaker,
        speaking,
    }
}

use Source::{Generic, Heygen, Livekit, Tavus};
use Speaker::{Renderer, User};

/// Every vendor speaking name the hub understands.
pub const SPEAKING: [SpeakingName; 16] = [
    row(
        Tavus,
        "conversation.replica.started_speaking",
        Renderer,
        Some(true),
    ),
    row(
        Tavus,
        "conversation.replica.stopped_speaking",
        Renderer,
        Some(false),
    ),
    row(
        Tavus,
        "conversation.user.started_speaking",
        User,
        Some(true),
    ),
    row(
        Tavus,
        "conversation.user.stopped_speaking",
        User,
        Some(false),
    ),
    row(Heygen, "avatar_start_talking", Renderer, Some(true)),
    row(Heygen, "avatar_stop_talking", Renderer, Some(false)),
    row(Heygen, "user_start", User, Some(true)),
    row(Heygen, "user_stop", User, Some(false)),
    row(Livekit, "initializing", Renderer, None),
    row(Livekit, "listening", Renderer, Some(false)),
    row(Livekit, "thinking", Renderer, Some(false)),
    row(Livekit, "speaking", Renderer, Some(true)),
    row(Generic, "renderer.started_speaking", Renderer, Some(true)),
    row(Generic, "renderer.stopped_speaking", Renderer, Some(false)),
    row(Generic, "user.started_speaking", User, Some(true)),
    row(Generic, "user.stopped_speaking", User, Some(false)),
];

/// The speaking change a vendor name stands for.
pub fn speaking(source: Source, name: &str) -> Option<&'static SpeakingName> {
    SPEAKING
        .iter()
        .find(|s| s.source == source && s.name == name)
}

/// The event's type and conversation id, and what it does, read from a
/// vendor's JSON.
pub(crate) struct Read {
    pub event_type: String,
    pub conversation_id: String,
    pub action: Action,
}

fn malformed(m: impl Into<String>) -> IngestError {
    IngestError::Malformed(m.into())
}

fn text<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter()
        .try_fold(v, |v, k| v.get(k))
        .and_then(Value::as_str)
}

fn required(v: &Value, path: &[&str]) -> Result<String, IngestError> {
    match text(v, path) {
        Some(s) if !s.is_empty() => Ok(s.to_owned()),
        _ => Err(malformed(format!(
            "`{}` must be a non-empty string",
            path.join(".")
        ))),
    }
}

fn utterance(who: Speaker, text: Option<&str>) -> Result<Action, IngestError> {
    match text {
        Some(t) if !t.trim().is_empty() => Ok(Action::Utterance {
            who,
            text: t.to_owned(),
        }),
        _ => Err(malformed("an utterance needs its text")),
    }
}

fn speaking_action(source: Source, name: &str) -> Option<Action> {
    speaking(source, name).map(|s| match s.speaking {
        Some(on) => Action::Speaking {
            who: s.speaker,
            speaking: on,
        },
        None => Action::Record,
    })
}

/// Reads a body (already a JSON object) of `source`.
pub(crate) fn read(source: Source, body: &Value) -> Result<Read, IngestError> {
    match source {
        Source::Tavus => tavus(body),
        Source::Heygen => heygen(body),
        Source::Livekit => livekit(body),
        Source::Generic => generic(body),
    }
}

/// Tavus: `{"event_type", "conversation_id", "message_type",
/// "properties": {...}}`, the shape of its conversation callbacks and of
/// the interactions it emits (utterances, speaking changes).
fn tavus(b: &Value) -> Result<Read, IngestError> {
    let event_type = required(b, &["event_type"])?;
    let conversation_id = required(b, &["conversation_id"])?;
    let action = match event_type.as_str() {
        "conversation.utterance" => {
            let who = match text(b, &["properties", "role"]) {
                Some("user") => User,
                Some("replica") => Renderer,
                _ => return Err(malformed("`properties.role` is `user` or `replica`")),
            };
            utterance(who, text(b, &["properties", "speech"]))?
        }
        "system.shutdown" => Action::Ended {
            reason: text(b, &["properties", "shutdown_reason"]).map(str::to_owned),
        },
        name => speaking_action(Source::Tavus, name).unwrap_or(Action::Record),
    };
    Ok(Read {
        event_type,
        conversation_id,
        action,
    })
}

/// HeyGen: `{"event_type", "event_data": {"session_id", ...}}`. The
/// streaming avatar's events (`avatar_start_talking`, `user_start`, …)
/// are raised in the browser by HeyGen's SDK, so they arrive relayed in
/// this envelope, signed like HeyGen's own webhooks.
fn heygen(b: &Value) -> Result<Read, IngestError> {
    let event_type = required(b, &["event_type"])?;
    let conversation_id = required(b, &["event_data", "session_id"])?;
    let action = match event_type.as_str() {
        "avatar_end_message" => utterance(Renderer, text(b, &["event_data", "message"]))?,
        "user_end_message" => utterance(User, text(b, &["event_data", "message"]))?,
        "stream_disconnected" => Action::Ended {
            reason: text(b, &["event_data", "reason"]).map(str::to_owned),
        },
        name => speaking_action(Source::Heygen, name).unwrap_or(Action::Record),
    };
    Ok(Read {
        event_type,
        conversation_id,
        action,
    })
}

/// LiveKit: a `WebhookEvent` as JSON (`{"event", "room": {"name"},
/// "participant": {"identity", "attributes"}, "id", "createdAt"}`). The
/// room name is the conversation; an agent's state is its participant's
/// `lk.agent.state` attribute.
fn livekit(b: &Value) -> Result<Read, IngestError> {
    let event_type = required(b, &["event"])?;
    let conversation_id = required(b, &["room", "name"])?;
    let action = if event_type == "room_finished" {
        Action::Ended {
            reason: Some("room_finished".into()),
        }
    } else {
        match text(b, &["participant", "attributes", "lk.agent.state"]) {
            Some(state) => speaking_action(Source::Livekit, state).unwrap_or(Action::Record),
            None => Action::Record,
        }
    };
    Ok(Read {
        event_type,
        conversation_id,
        action,
    })
}

/// The hub's own shape: `{"event_type", "conversation_id",
/// "properties": {...}}`.
fn generic(b: &Value) -> Result<Read, IngestError> {
    let event_type = required(b, &["event_type"])?;
    let conversation_id = required(b, &["conversation_id"])?;
    if b.get("properties").is_some_and(|p| !p.is_object()) {
        return Err(malformed("`properties` must be an object"));
    }
    let action = match event_type.as_str() {
        "utterance" => {
            let who = match text(b, &["properties", "role"]) {
                Some("user") => User,
                Some("renderer") => Renderer,
                _ => return Err(malformed("`properties.role` is `user` or `renderer`")),
            };
            utterance(who, text(b, &["properties", "text"]))?
        }
        "conversation.ended" => Action::Ended {
            reason: text(b, &["properties", "reason"]).map(str::to_owned),
        },
        name => speaking_action(Source::Generic, name).unwrap_or(Action::Record),
    };
    Ok(Read {
        event_type,
        conversation_id,
        action,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_is_listed_once_per_source() {
        for (i, a) in SPEAKING.iter().enumerate() {
            for b in &SPEAKING[i + 1..] {
                assert!(
                    !(a.source == b.source && a.name == b.name),
                    "{:?} {} twice",
                    a.source,
                    a.name
                );
            }
        }
    }

    #[test]
    fn livekit_agent_states_map_to_renderer_speaking() {
        let s = |v| speaking(Source::Livekit, v).and_then(|s| s.speaking);
        assert_eq!(s("speaking"), Some(true));
        assert_eq!(s("listening"), Some(false));
        assert_eq!(s("thinking"), Some(false));
        assert_eq!(s("initializing"), None);
    }
}
