//! The REST API of outbound webhooks (`docs/WEBHOOKS.md`): a tenant's
//! endpoints, their deliveries, and replays. Every call needs
//! `eva:admin`, like the other calls that manage a tenant's integrations
//! (API keys). An endpoint of another tenant is "not found".

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::rest::{ApiError, ApiResult, Caller, ErrorBody};
use crate::hub::{Hub, HubError, refuse};
use crate::identity::{Principal, Scope};
use crate::protocol::ErrorCode;
use crate::store::TenantRecord;
use crate::store::webhooks::{
    DeliveryRecord, ReplayFrom, WebhookPatch, WebhookRecord, secret_hash,
};
use crate::webhooks::{address_policy, is_event_type, sign, ssrf};

/// An endpoint as the API shows it: everything but the secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookView {
    pub id: Uuid,
    pub url: String,
    /// Event types, or `["*"]` for all.
    pub events: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// False once disabled (by a PATCH, or by the hub after
    /// `webhooks.disable_after_failures` failed attempts in a row).
    pub is_active: bool,
    /// Retries after the first attempt.
    pub retry_count: i32,
    /// Per attempt.
    pub timeout_seconds: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_triggered: Option<DateTime<Utc>>,
    /// Failed attempts since the last successful one.
    pub failure_count: i32,
    /// Why the hub disabled it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disabled_reason: Option<String>,
    pub created_at: DateTime<Utc>,
}

impl From<WebhookRecord> for WebhookView {
    fn from(w: WebhookRecord) -> WebhookView {
        WebhookView {
            id: w.id,
            url: w.url,
            events: w.events,
            description: w.description,
            is_active: w.is_active,
            retry_count: w.retry_count,
            timeout_seconds: w.timeout_seconds,
            last_triggered: w.last_triggered,
            failure_count: w.failure_count,
            disabled_reason: w.disabled_reason,
            created_at: w.created_at,
        }
    }
}

/// A new endpoint, with its signing secret: shown this once.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedWebhook {
    #[serde(flatten)]
    pub webhook: WebhookView,
    /// `whsec_…`: verify each request's `webhook-signature` with it
    /// (Standard Webhooks). The hub never shows it again.
    pub secret: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewWebhook {
    /// `https://…` (or `http://…`); up to 500 bytes. Loopback, private,
    /// link-local and metadata addresses are refused unless the hub's
    /// settings allow them.
    pub url: String,
    /// Event types (`docs/WEBHOOKS.md`), or `["*"]` for all.
    pub events: Vec<String>,
    #[serde(default)]
    pub description: Option<String>,
    /// 0 to 20; 3 when absent.
    #[serde(default)]
    pub retry_count: Option<i32>,
    /// 1 to 300; 30 when absent.
    #[serde(default)]
    pub timeout_seconds: Option<i32>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookChange {
    pub url: Option<String>,
    pub events: Option<Vec<String>>,
    /// `null` clears it.
    #[serde(default, deserialize_with = "some_or_null")]
    #[schema(value_type = Option<String>)]
    pub description: Option<Option<String>>,
    /// `true` re-enables a disabled endpoint (and clears its failure
    /// count); `false` pauses it.
    pub is_active: Option<bool>,
    pub retry_count: Option<i32>,
    pub timeout_seconds: Option<i32>,
}

/// A present field (even `null`) is `Some`.
fn some_or_null<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookList {
    pub items: Vec<WebhookView>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeliveryQuery {
    /// The last id of the previous page (`next_before`).
    before: Option<i64>,
    /// 1 to 500; 50 when absent.
    limit: Option<usize>,
}

/// A page of deliveries, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryPage {
    pub items: Vec<DeliveryRecord>,
    /// Pass as `before` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_before: Option<i64>,
}

/// Exactly one of the two.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplayRequest {
    /// Replay every event queued for the endpoint at or after this time.
    #[serde(default)]
    pub since: Option<DateTime<Utc>>,
    /// Replay this delivery's event and every later one of the endpoint.
    #[serde(default)]
    pub delivery_id: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReplayAccepted {
    /// Deliveries queued again (at most 10,000 per call), each with its
    /// original `webhook-id` and body.
    pub replayed: u64,
}

fn invalid(msg: impl Into<String>) -> ApiError {
    refuse(ErrorCode::Invalid, msg.into()).into()
}

fn not_found() -> ApiError {
    refuse(ErrorCode::NotFound, "no such webhook").into()
}

fn parse_id(id: &str) -> Result<Uuid, ApiError> {
    id.parse().map_err(|_| not_found())
}

fn store_err(e: crate::store::StoreError) -> ApiError {
    HubError::from(e).into()
}

/// Event types: known names or `*`, at least one, at most 64.
fn check_events(events: &[String]) -> Result<Vec<String>, ApiError> {
    if events.is_empty() || events.len() > 64 {
        return Err(invalid("events must list 1 to 64 event types, or [\"*\"]"));
    }
    let mut out: Vec<String> = Vec::with_capacity(events.len());
    for e in events {
        if !is_event_type(e) {
            return Err(invalid(format!(
                "unknown event type `{e}` (docs/WEBHOOKS.md lists them)"
            )));
        }
        if !out.contains(e) {
            out.push(e.clone());
        }
    }
    Ok(out)
}

fn check_limits(retry_count: Option<i32>, timeout_seconds: Option<i32>) -> Result<(), ApiError> {
    if retry_count.is_some_and(|n| !(0..=20).contains(&n)) {
        return Err(invalid("retry_count must be between 0 and 20"));
    }
    if timeout_seconds.is_some_and(|n| !(1..=300).contains(&n)) {
        return Err(invalid("timeout_seconds must be between 1 and 300"));
    }
    Ok(())
}

fn check_description(d: Option<&str>) -> Result<(), ApiError> {
    if d.is_some_and(|d| d.len() > 1000) {
        return Err(invalid("description is longer than 1000 bytes"));
    }
    Ok(())
}

async fn check_url(hub: &Hub, url: &str) -> Result<(), ApiError> {
    ssrf::check_url(url, address_policy(&hub.settings))
        .await
        .map(|_| ())
        .map_err(invalid)
}

async fn endpoint(hub: &Hub, p: &Principal, id: &str) -> Result<WebhookRecord, ApiError> {
    hub.writer
        .store()
        .get_webhook(p.tenant, parse_id(id)?)
        .await
        .map_err(store_err)?
        .ok_or_else(not_found)
}

/// Subscribes an endpoint to events. The answer carries its signing
/// secret, shown this once.
#[utoipa::path(
    post,
    path = "/v1/webhooks",
    tag = "webhooks",
    request_body = NewWebhook,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Created (scope eva:admin; `Cache-Control: no-store`)", body = CreatedWebhook),
        (status = 400, description = "Bad URL (or a refused address), unknown event type, or a limit out of range", body = ErrorBody),
        (status = 403, description = "The key lacks eva:admin", body = ErrorBody),
    )
)]
pub async fn create_webhook(
    State(hub): State<Hub>,
    caller: Caller,
    Json(body): Json<NewWebhook>,
) -> ApiResult<Response> {
    let p = caller.need(Scope::Admin)?;
    let events = check_events(&body.events)?;
    check_limits(body.retry_count, body.timeout_seconds)?;
    check_description(body.description.as_deref())?;
    check_url(&hub, &body.url).await?;
    let store = hub.writer.store();
    if hub.auth.insecure() {
        // Development identities name tenants freely (as for sessions).
        store
            .ensure_tenant(&TenantRecord::new(
                p.tenant,
                format!("{}@dev.eva-hub.invalid", p.tenant),
            ))
            .await
            .map_err(store_err)?;
    }
    let secret = sign::new_secret().map_err(|e| {
        tracing::error!(error = %e, "cannot make a webhook secret");
        ApiError::from(refuse(ErrorCode::Internal, "cannot make a secret; retry"))
    })?;
    let record = WebhookRecord {
        id: Uuid::now_v7(),
        tenant: p.tenant,
        url: body.url,
        events,
        description: body.description,
        secret_hash: secret_hash(secret.expose()),
        secret: secret.clone(),
        is_active: true,
        retry_count: body.retry_count.unwrap_or(3),
        timeout_seconds: body.timeout_seconds.unwrap_or(30),
        last_triggered: None,
        failure_count: 0,
        disabled_reason: None,
        created_at: Utc::now(),
    };
    store.create_webhook(&record).await.map_err(store_err)?;
    tracing::info!(tenant = %p.tenant, by = %p.subject, webhook = %record.id, "webhook created");
    let body = CreatedWebhook {
        webhook: record.into(),
        secret: secret.expose().to_owned(),
    };
    let mut res = (StatusCode::CREATED, Json(body)).into_response();
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(res)
}

/// The tenant's endpoints, oldest first.
#[utoipa::path(
    get,
    path = "/v1/webhooks",
    tag = "webhooks",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The endpoints (scope eva:admin)", body = WebhookList),
        (status = 403, description = "The key lacks eva:admin", body = ErrorBody),
    )
)]
pub async fn list_webhooks(State(hub): State<Hub>, caller: Caller) -> ApiResult<Response> {
    let p = caller.need(Scope::Admin)?;
    let items = hub
        .writer
        .store()
        .list_webhooks(p.tenant)
        .await
        .map_err(store_err)?
        .into_iter()
        .map(WebhookView::from)
        .collect();
    Ok(Json(WebhookList { items }).into_response())
}

/// One endpoint.
#[utoipa::path(
    get,
    path = "/v1/webhooks/{id}",
    tag = "webhooks",
    params(("id" = Uuid, Path, description = "The endpoint's id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The endpoint (scope eva:admin)", body = WebhookView),
        (status = 404, description = "No such webhook for this tenant", body = ErrorBody),
    )
)]
pub async fn get_webhook(
    State(hub): State<Hub>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let p = caller.need(Scope::Admin)?;
    Ok(Json(WebhookView::from(endpoint(&hub, p, &id).await?)).into_response())
}

/// Changes an endpoint; absent fields keep their value.
#[utoipa::path(
    patch,
    path = "/v1/webhooks/{id}",
    tag = "webhooks",
    params(("id" = Uuid, Path, description = "The endpoint's id")),
    request_body = WebhookChange,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The endpoint (scope eva:admin)", body = WebhookView),
        (status = 400, description = "A field is invalid", body = ErrorBody),
        (status = 404, description = "No such webhook for this tenant", body = ErrorBody),
    )
)]
pub async fn update_webhook(
    State(hub): State<Hub>,
    caller: Caller,
    Path(id): Path<String>,
    Json(body): Json<WebhookChange>,
) -> ApiResult<Response> {
    let p = caller.need(Scope::Admin)?;
    let id = parse_id(&id)?;
    let events = body.events.as_deref().map(check_events).transpose()?;
    check_limits(body.retry_count, body.timeout_seconds)?;
    check_description(body.description.as_ref().and_then(|d| d.as_deref()))?;
    if let Some(url) = &body.url {
        check_url(&hub, url).await?;
    }
    let patch = WebhookPatch {
        url: body.url,
        events,
        description: body.description,
        is_active: body.is_active,
        retry_count: body.retry_count,
        timeout_seconds: body.timeout_seconds,
    };
    let updated = hub
        .writer
        .store()
        .update_webhook(p.tenant, id, &patch)
        .await
        .map_err(store_err)?
        .ok_or_else(not_found)?;
    tracing::info!(tenant = %p.tenant, by = %p.subject, webhook = %id, "webhook changed");
    Ok(Json(WebhookView::from(updated)).into_response())
}

/// Deletes an endpoint and its deliveries; nothing more is sent to it.
#[utoipa::path(
    delete,
    path = "/v1/webhooks/{id}",
    tag = "webhooks",
    params(("id" = Uuid, Path, description = "The endpoint's id")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Deleted (scope eva:admin)"),
        (status = 404, description = "No such webhook for this tenant", body = ErrorBody),
    )
)]
pub async fn delete_webhook(
    State(hub): State<Hub>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let p = caller.need(Scope::Admin)?;
    let id = parse_id(&id)?;
    let deleted = hub
        .writer
        .store()
        .delete_webhook(p.tenant, id)
        .await
        .map_err(store_err)?;
    if !deleted {
        return Err(not_found());
    }
    tracing::info!(tenant = %p.tenant, by = %p.subject, webhook = %id, "webhook deleted");
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// An endpoint's deliveries, newest first: status, attempts, the last
/// answer or error, and the body sent.
#[utoipa::path(
    get,
    path = "/v1/webhooks/{id}/deliveries",
    tag = "webhooks",
    params(("id" = Uuid, Path, description = "The endpoint's id"), DeliveryQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page (scope eva:admin)", body = DeliveryPage),
        (status = 404, description = "No such webhook for this tenant", body = ErrorBody),
    )
)]
pub async fn list_deliveries(
    State(hub): State<Hub>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<DeliveryQuery>,
) -> ApiResult<Response> {
    let p = caller.need(Scope::Admin)?;
    let w = endpoint(&hub, p, &id).await?;
    let limit = q.limit.unwrap_or(50).clamp(1, 500);
    let items = hub
        .writer
        .store()
        .webhook_deliveries(w.id, q.before, limit)
        .await
        .map_err(store_err)?;
    let next_before = (items.len() == limit)
        .then(|| items.last().map(|d| d.id))
        .flatten();
    Ok(Json(DeliveryPage { items, next_before }).into_response())
}

/// Sends an endpoint's events again, from a time or from a delivery: each
/// as a new delivery with its original `webhook-id` and body (receivers
/// that deduplicate by `webhook-id` ignore what they already have).
#[utoipa::path(
    post,
    path = "/v1/webhooks/{id}/replay",
    tag = "webhooks",
    params(("id" = Uuid, Path, description = "The endpoint's id")),
    request_body = ReplayRequest,
    security(("bearer" = [])),
    responses(
        (status = 202, description = "Queued (scope eva:admin)", body = ReplayAccepted),
        (status = 400, description = "Neither or both of `since` and `delivery_id`", body = ErrorBody),
        (status = 404, description = "No such webhook, or no such delivery of it", body = ErrorBody),
    )
)]
pub async fn replay(
    State(hub): State<Hub>,
    caller: Caller,
    Path(id): Path<String>,
    Json(body): Json<ReplayRequest>,
) -> ApiResult<Response> {
    let p = caller.need(Scope::Admin)?;
    let w = endpoint(&hub, p, &id).await?;
    let store = hub.writer.store();
    let from = match (body.since, body.delivery_id) {
        (Some(t), None) => ReplayFrom::Since(t),
        (None, Some(d)) => {
            let found = store
                .webhook_deliveries(w.id, Some(d + 1), 1)
                .await
                .map_err(store_err)?;
            if found.first().is_none_or(|f| f.id != d) {
                return Err(refuse(ErrorCode::NotFound, "no such delivery of this webhook").into());
            }
            ReplayFrom::Delivery(d)
        }
        _ => return Err(invalid("give exactly one of `since` and `delivery_id`")),
    };
    let replayed = store
        .replay_webhook_deliveries(w.id, from, Utc::now())
        .await
        .map_err(store_err)?;
    tracing::info!(tenant = %p.tenant, by = %p.subject, webhook = %w.id, replayed, "webhook replay queued");
    Ok((StatusCode::ACCEPTED, Json(ReplayAccepted { replayed })).into_response())
}
