//! Outbound webhooks, following the Standard Webhooks specification
//! (`docs/WEBHOOKS.md`): which hub events are reported and as what
//! (`events`), how a request is signed (`sign`), which destinations may
//! be called (`ssrf`), and the dispatcher that delivers them
//! (`dispatcher`).
//!
//! Endpoints and deliveries live in the store (`store::webhooks`); an
//! event becomes deliveries in the same transaction as the rows it
//! reports, because the hub submits its [`crate::store::Row::Webhook`]
//! rows with them.

pub mod dispatcher;
pub mod events;
pub mod sign;
pub mod ssrf;

pub use dispatcher::{Dispatcher, OnDisabled};
pub use events::{EVENT_TYPES, JobEvent, is_event_type, job_row, session_rows};
pub use ssrf::AddressPolicy;

use crate::config::Settings;

/// The address policy the settings give (`--dev` allows loopback).
pub fn address_policy(settings: &Settings) -> AddressPolicy {
    AddressPolicy {
        allow_loopback: settings.webhooks.allow_loopback || settings.auth.dev,
        allow_private: settings.webhooks.allow_private,
    }
}
