//! REST request bodies as the handlers extract them (axum's `Json`, the
//! same call the extractor makes): every body type of `gateway::rest`,
//! `gateway::credentials`, `gateway::webhooks` and `gateway::jobs`. A body is accepted or
//! refused with a rejection; nothing may panic, and the rejection's text
//! (sent back to the caller) is always there.

#![no_main]

use axum::Json;
use eva_hub::gateway::credentials::{KeyRequest, TokenRequest};
use eva_hub::gateway::rest::{EventBody, ReasonBody, StatusBody};
use eva_hub::gateway::webhooks::{NewWebhook, ReplayRequest, WebhookChange};
use eva_hub::hub::{NewJob, NewSession};
use eva_hub::protocol::job::JobChange;
use libfuzzer_sys::fuzz_target;
use serde::de::DeserializeOwned;

fn body<T: DeserializeOwned + std::fmt::Debug>(data: &[u8]) {
    match Json::<T>::from_bytes(data) {
        // Handlers log and echo parts of what they received.
        Ok(Json(value)) => drop(format!("{value:?}")),
        Err(rejection) => assert!(!rejection.body_text().is_empty()),
    }
}

fuzz_target!(|data: &[u8]| {
    body::<NewSession>(data);
    body::<ReasonBody>(data);
    body::<StatusBody>(data);
    body::<EventBody>(data);
    body::<TokenRequest>(data);
    body::<KeyRequest>(data);
    body::<NewWebhook>(data);
    body::<WebhookChange>(data);
    body::<ReplayRequest>(data);
    body::<NewJob>(data);
    body::<JobChange>(data);
});
