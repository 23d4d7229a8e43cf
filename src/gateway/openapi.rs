//! The REST API as an OpenAPI 3.1 document, generated from the handlers'
//! annotations as the routes are registered ([`routes`]), so a route
//! cannot exist without its documentation. Served at `/v1/openapi.json`,
//! printed by `eva-hub openapi`, committed as `docs/openapi.json`.

use utoipa::Modify;
use utoipa::OpenApi as _;
use utoipa::openapi::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{credentials, ingest, jobs, rest, webhooks, ws};
use crate::hub::Hub;
use crate::protocol::schema::refs_alone;

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "eva-hub",
        description = "REST API of eva-hub, the real-time session hub for live AI-avatar \
                       presentations. Backends create sessions, mint connection tokens, publish \
                       events and read history here; clients speak the WebSocket protocol at \
                       /v1/ws (docs/PROTOCOL.md, docs/protocol.schema.json). Authenticate with \
                       `Authorization: Bearer <API key>` (no key in --dev mode). Errors are \
                       `{\"error\":{\"code\",\"message\",\"retry_after_ms\"?}}` with the HTTP \
                       status of the code; a session of another tenant is 404 like one that does \
                       not exist."
    ),
    modifiers(&BearerKeys),
    tags(
        (name = "sessions", description = "Create, read and drive sessions"),
        (name = "history", description = "What sessions kept: conversation, interventions, alerts"),
        (name = "credentials", description = "Connection tokens and API keys"),
        (name = "webhooks", description = "Outbound webhooks (Standard Webhooks): endpoints, deliveries, replays"),
        (name = "ingest", description = "Inbound vendor events (Tavus, HeyGen, LiveKit, generic), verified and applied once"),
        (name = "jobs", description = "Background jobs whose progress clients watch live"),
        (name = "realtime", description = "The WebSocket endpoint"),
        (name = "health", description = "Liveness and readiness"),
    )
)]
struct ApiDoc;

/// Declares the API-key bearer scheme the paths refer to.
struct BearerKeys;

impl Modify for BearerKeys {
    fn modify(&self, openapi: &mut OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An API key (`evk_…`) with the scopes the operation names",
                    ))
                    .build(),
            ),
        );
    }
}

/// Every documented route, registered together with its documentation.
pub fn routes() -> OpenApiRouter<Hub> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(ws::upgrade))
        .routes(routes!(rest::create_session, rest::list_sessions))
        .routes(routes!(rest::get_session))
        .routes(routes!(rest::stop_session))
        .routes(routes!(rest::set_status))
        .routes(routes!(rest::publish_event))
        .routes(routes!(rest::conversation))
        .routes(routes!(rest::interventions))
        .routes(routes!(rest::alerts))
        .routes(routes!(credentials::mint_token))
        .routes(routes!(credentials::create_key, credentials::list_keys))
        .routes(routes!(credentials::revoke_key))
        .routes(routes!(webhooks::create_webhook, webhooks::list_webhooks))
        .routes(routes!(
            webhooks::get_webhook,
            webhooks::update_webhook,
            webhooks::delete_webhook
        ))
        .routes(routes!(webhooks::list_deliveries))
        .routes(routes!(webhooks::replay))
        .routes(routes!(ingest::ingest))
        .routes(routes!(jobs::create_job, jobs::list_jobs))
        .routes(routes!(jobs::get_job, jobs::update_job))
        .routes(routes!(rest::healthz))
        .routes(routes!(rest::readyz))
}

/// The whole document.
pub fn document() -> OpenApi {
    routes().into_openapi()
}

/// The document as committed and served: pretty JSON with a final newline.
pub fn document_json() -> String {
    render(&document())
}

/// A document as JSON, with every `$ref` that has sibling keywords moved
/// into an `allOf` (as in the protocol schema), which code generators
/// read without inventing copies of the referenced type.
pub fn render(doc: &OpenApi) -> String {
    let mut value = serde_json::to_value(doc).expect("the OpenAPI document serializes");
    refs_alone(&mut value);
    serde_json::to_string_pretty(&value).expect("JSON serializes") + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Clients and the SDKs read the committed copy, so it must be what
    /// the handlers say now.
    #[test]
    fn committed_copy_is_current() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/openapi.json");
        let committed = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            committed == document_json(),
            "docs/openapi.json is stale: run `cargo run -- openapi > docs/openapi.json`"
        );
    }

    #[test]
    fn every_operation_documents_its_answers() {
        let doc = document();
        assert!(doc.paths.paths.len() >= 12);
        for (path, item) in &doc.paths.paths {
            for op in [&item.get, &item.post, &item.delete].into_iter().flatten() {
                assert!(
                    !op.responses.responses.is_empty(),
                    "{path} has no responses"
                );
            }
        }
    }
}
