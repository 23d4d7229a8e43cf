//! Checks a frame must pass before it touches a session: the sender's
//! role, field sizes and formats, and the replica-dependent preconditions
//! (the renderer lease, dedupe, a live session). Each refuses with the
//! error code a client can act on.

use serde_json::Value;

use super::error::{HubError, refuse};
use crate::connection::ConnHandle;
use crate::identity::Identity;
use crate::protocol::model::{Command, RendererMetrics, Role, StatePatch};
use crate::protocol::{ClientFrame, ErrorCode};
use crate::session::Replica;

/// Refused with `forbidden` unless the connection has `role`.
pub(crate) fn require(identity: &Identity, role: Role, what: &str) -> Result<(), HubError> {
    if identity.role == role {
        Ok(())
    } else {
        Err(refuse(
            ErrorCode::Forbidden,
            format!("only a {} may {what}", role.as_str()),
        ))
    }
}

pub(crate) fn validate_id(id: &str) -> Result<(), HubError> {
    if id.is_empty() || id.len() > 64 {
        return Err(refuse(ErrorCode::Invalid, "id must be 1 to 64 bytes"));
    }
    Ok(())
}

pub(crate) fn validate_text(field: &str, text: &str, max: usize) -> Result<(), HubError> {
    if text.trim().is_empty() {
        return Err(refuse(
            ErrorCode::Invalid,
            format!("{field} must not be empty"),
        ));
    }
    if text.len() > max {
        return Err(refuse(
            ErrorCode::Invalid,
            format!("{field} is longer than {max} bytes"),
        ));
    }
    Ok(())
}

pub(crate) fn validate_short(field: &str, text: Option<&str>, max: usize) -> Result<(), HubError> {
    match text {
        Some(t) if t.len() > max => Err(refuse(
            ErrorCode::Invalid,
            format!("{field} is longer than {max} bytes"),
        )),
        _ => Ok(()),
    }
}

/// App-defined event names: lowercase, start with a letter, at most 64
/// bytes of `[a-z0-9_.:-]`, e.g. `job.progress`.
pub(crate) fn validate_event_name(name: &str) -> Result<(), HubError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_.:-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(refuse(
            ErrorCode::Invalid,
            "event names are 1-64 characters of a-z 0-9 _ . : - starting with a letter",
        ))
    }
}

pub(crate) fn validate_patch(p: &StatePatch) -> Result<(), HubError> {
    if let Some(mode) = &p.presentation_mode
        && (mode.is_empty()
            || mode.len() > 50
            || !mode
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'))
    {
        return Err(refuse(
            ErrorCode::Invalid,
            "presentation_mode is 1-50 characters of a-z A-Z 0-9 _ -",
        ));
    }
    if let Some(Some(topic)) = &p.current_topic {
        validate_short("current_topic", Some(topic), 255)?;
    }
    if p.current_slide.is_some_and(|s| s < 0) {
        return Err(refuse(
            ErrorCode::Invalid,
            "current_slide must not be negative",
        ));
    }
    Ok(())
}

/// Largest metric value: `performance_metrics.metric_value` is
/// DECIMAL(10,4).
const METRIC_VALUE_MAX: f64 = 999_999.999_9;

pub(crate) fn validate_metrics(m: &RendererMetrics) -> Result<(), HubError> {
    for (name, v, _) in m.values() {
        if !v.is_finite() || v < 0.0 {
            return Err(refuse(
                ErrorCode::Invalid,
                format!("{name} must be a finite, non-negative number"),
            ));
        }
        if v > METRIC_VALUE_MAX {
            return Err(refuse(
                ErrorCode::Invalid,
                format!("{name} must be below 1000000"),
            ));
        }
        if name.ends_with("_usage") && v > 1.0 {
            return Err(refuse(
                ErrorCode::Invalid,
                format!("{name} is a fraction in [0, 1]"),
            ));
        }
    }
    validate_short("component", m.component.as_deref(), 100)
}

/// The renderer lease: this connection must be the session's current
/// renderer. Returns its fence.
pub(crate) fn lease(g: &Replica, conn: &ConnHandle) -> Result<u64, HubError> {
    match g.local_renderer {
        Some((c, fence)) if c == conn.id && fence == g.renderer.fence => Ok(fence),
        _ => Err(refuse(
            ErrorCode::StaleRenderer,
            "this renderer was replaced; its frames are refused",
        )),
    }
}

pub(crate) fn dedupe(g: &Replica, sender: &str, id: Option<&str>) -> Result<(), HubError> {
    if let Some(id) = id
        && let Some(seen) = g.dedupe.get(&(sender.to_owned(), id.to_owned()))
    {
        return Err(HubError::Duplicate(*seen));
    }
    Ok(())
}

pub(crate) fn live(g: &Replica) -> Result<(), HubError> {
    if g.info.status.is_terminal() {
        Err(refuse(ErrorCode::SessionEnded, "the session has ended"))
    } else {
        Ok(())
    }
}

pub(crate) fn validate_context(context: &Value) -> Result<(), HubError> {
    if context.is_object() {
        Ok(())
    } else {
        Err(refuse(ErrorCode::Invalid, "context must be a JSON object"))
    }
}

pub(crate) fn validate_response(
    text: &str,
    confidence: f64,
    intent: Option<&str>,
    knowledge_sources: &[String],
    max_text: usize,
) -> Result<(), HubError> {
    validate_text("text", text, max_text)?;
    if !(0.0..=1.0).contains(&confidence) {
        return Err(refuse(
            ErrorCode::Invalid,
            "confidence is a fraction in [0, 1]",
        ));
    }
    validate_short("intent", intent, 100)?;
    if knowledge_sources.len() > 64 || knowledge_sources.iter().any(|k| k.len() > 500) {
        return Err(refuse(
            ErrorCode::Invalid,
            "at most 64 knowledge_sources of at most 500 bytes",
        ));
    }
    Ok(())
}

pub(crate) fn validate_command(command: &Command, max_text: usize) -> Result<(), HubError> {
    match command {
        Command::Say { text } => validate_text("text", text, max_text),
        Command::GotoSlide { slide } if *slide < 0 => {
            Err(refuse(ErrorCode::Invalid, "slide must not be negative"))
        }
        _ => Ok(()),
    }
}

/// The checks of a frame's own fields, the ones its family runs before it
/// consults a session: sizes, formats and ranges, with the same refusals.
/// Role, lease, dedupe and session state are left to the family, which
/// needs a connection and a replica for them.
///
/// Public so that tests and the fuzz targets (`fuzz/`) can drive
/// decode-then-validate without a hub; the hub itself calls the field
/// checks from each family, after the role check.
///
/// # Errors
/// The [`HubError`] the frame's family would refuse it with.
pub fn check_frame(frame: &ClientFrame, max_text: usize) -> Result<(), HubError> {
    if let Some(id) = frame.client_id() {
        validate_id(id)?;
    }
    match frame {
        ClientFrame::Join { name, .. } => validate_short("name", name.as_deref(), 255),
        ClientFrame::State { state, .. } => validate_patch(state),
        ClientFrame::Context { context, .. } => validate_context(context),
        ClientFrame::Metrics { metrics, .. } => validate_metrics(metrics),
        ClientFrame::Status { reason, .. } => validate_short("reason", reason.as_deref(), 1000),
        ClientFrame::Response {
            id,
            text,
            confidence,
            intent,
            knowledge_sources,
            ..
        } => {
            validate_id(id)?;
            validate_response(
                text,
                *confidence,
                intent.as_deref(),
                knowledge_sources,
                max_text,
            )
        }
        ClientFrame::Question { id, text, .. }
        | ClientFrame::Suggestion { id, text, .. }
        | ClientFrame::Correction { id, text, .. } => {
            validate_id(id)?;
            validate_text("text", text, max_text)
        }
        ClientFrame::Takeover { reason, .. } => validate_short("reason", reason.as_deref(), 255),
        ClientFrame::Command { id, command, .. } => {
            validate_id(id)?;
            validate_command(command, max_text)
        }
        ClientFrame::EmergencyStop { id, reason, .. } => {
            validate_id(id)?;
            validate_short("reason", reason.as_deref(), 255)
        }
        ClientFrame::Publish { name, .. } => validate_event_name(name),
        ClientFrame::Auth { .. }
        | ClientFrame::Leave { .. }
        | ClientFrame::CommandAck { .. }
        | ClientFrame::Release { .. }
        | ClientFrame::Approve { .. }
        | ClientFrame::AckAlert { .. }
        | ClientFrame::ListSessions { .. }
        | ClientFrame::Ping { .. } => Ok(()),
    }
}
