//! What each client frame does, one module per family. Every handler
//! checks the sender and the frame, validates against the replica and
//! publishes through the session layer; `dispatch.rs` routes to them.
//!
//! | family | frames |
//! |---|---|
//! | `join.rs` | `join` (with resume), `leave`, and a closed connection's leave |
//! | `renderer.rs` | `state`, `context`, `metrics`, `status`, `command_ack` |
//! | `qa.rs` | `question`, `response` |
//! | `interventions.rs` | `takeover`, `release`, `command`, `suggestion`, `correction`, `emergency_stop`, `approve`, `ack_alert` |
//! | `custom.rs` | `publish` (app-defined events) |
//! | `directory.rs` | `list_sessions` (the tenant's sessions for a console) |

pub(crate) mod custom;
mod directory;
mod interventions;
pub(crate) mod join;
mod qa;
mod renderer;
