//! The REST API for backends, and the health endpoints.
//!
//! Every error is JSON, `{"error": {"code": ..., "message": ...}}`, with
//! the HTTP status its code maps to and `Retry-After` when retrying can
//! help. A session of another tenant is "not found", exactly like a
//! session that does not exist.

use std::time::Duration;

use axum::Json;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::auth::{AuthError, Principal, Scope, bearer};
use crate::hub::{Hub, HubError, NewSession, refuse};
use crate::ids::SessionId;
use crate::protocol::model::CustomAudience;
use crate::protocol::{ErrorCode, SessionStatus};
use crate::store::{Page, SessionQuery};

/// Turns a hub error into the JSON error response.
pub fn error_response(e: &HubError) -> Response {
    let code = e.code();
    let status =
        StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut body = json!({ "error": { "code": code, "message": e.client_message() } });
    if let Some(after) = e.retry_after() {
        body["error"]["retry_after_ms"] = json!(after.as_millis() as u64);
    }
    let mut res = (status, Json(body)).into_response();
    if let Some(after) = e.retry_after()
        && let Ok(v) = HeaderValue::from_str(&after.as_secs().max(1).to_string())
    {
        res.headers_mut().insert(header::RETRY_AFTER, v);
    }
    res
}

/// A failed REST call.
#[derive(Debug)]
pub struct ApiError(HubError);

impl From<HubError> for ApiError {
    fn from(e: HubError) -> Self {
        ApiError(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        error_response(&self.0)
    }
}

pub(crate) type ApiResult<T> = Result<T, ApiError>;

/// The authenticated REST caller.
#[derive(Debug)]
pub struct Caller(pub Principal);

impl FromRequestParts<Hub> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, hub: &Hub) -> Result<Self, Self::Rejection> {
        let header = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let credential = bearer(header);
        if header.is_some() && credential.is_none() {
            return Err(refuse(ErrorCode::Unauthorized, "malformed Authorization header").into());
        }
        let principal = hub
            .auth
            .backend(credential)
            .await
            .map_err(|e| credential_refusal(&e))?;
        if let Some(key) = principal.key_id
            && let Err(e) = hub.limiter.rest_call(key).await
        {
            crate::metrics::limit_hit("rest");
            return Err(e.into());
        }
        hub.auth
            .charge(&principal)
            .await
            .map_err(|e| credential_refusal(&e))?;
        Ok(Caller(principal))
    }
}

/// The client's view of a refused credential: what to do about it, never
/// why a forged one failed.
fn credential_refusal(e: &AuthError) -> ApiError {
    tracing::info!(error = %e, "REST authentication refused");
    crate::metrics::auth_refused(e.label());
    let (code, msg) = match e {
        AuthError::Forbidden(_) => (ErrorCode::Forbidden, "these credentials do not allow this"),
        AuthError::Unavailable(_) => (
            ErrorCode::Unavailable,
            "authentication is unavailable; retry",
        ),
        AuthError::QuotaExceeded => (
            ErrorCode::QuotaExceeded,
            "this tenant's monthly API quota is used up",
        ),
        _ => (ErrorCode::Unauthorized, "missing or invalid credentials"),
    };
    refuse(code, msg).into()
}

impl Caller {
    /// The principal, if it holds `scope`.
    ///
    /// # Errors
    /// `forbidden` naming the scope.
    pub fn need(&self, scope: Scope) -> Result<&Principal, ApiError> {
        if self.0.has(scope) {
            Ok(&self.0)
        } else {
            Err(refuse(
                ErrorCode::Forbidden,
                format!("this call needs the {} scope", scope.as_str()),
            )
            .into())
        }
    }
}

fn parse_session(id: &str) -> Result<SessionId, ApiError> {
    id.parse()
        .map_err(|_| refuse(ErrorCode::NotFound, "no such session").into())
}

pub async fn create_session(
    State(hub): State<Hub>,
    caller: Caller,
    Json(body): Json<NewSession>,
) -> ApiResult<Response> {
    let p = caller.need(Scope::Write)?;
    let view = hub.create_session(p, body).await?;
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    status: Option<String>,
    before: Option<SessionId>,
    limit: Option<usize>,
}

#[derive(Debug, Serialize)]
struct Listing<T> {
    items: Vec<T>,
    /// Pass as `before` to get the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_before: Option<String>,
}

fn listing<T>(items: Vec<T>, limit: usize, id: impl Fn(&T) -> String) -> Listing<T> {
    let next_before = (items.len() == limit)
        .then(|| items.last().map(&id))
        .flatten();
    Listing { items, next_before }
}

fn page_limit(limit: Option<usize>) -> usize {
    limit.unwrap_or(50).clamp(1, 500)
}

pub async fn list_sessions(
    State(hub): State<Hub>,
    caller: Caller,
    Query(q): Query<ListQuery>,
) -> ApiResult<Response> {
    let p = caller.need(Scope::Read)?;
    let status = match q.status.as_deref() {
        None => None,
        Some(s) => Some(
            SessionStatus::parse(s)
                .ok_or_else(|| refuse(ErrorCode::Invalid, format!("unknown status `{s}`")))?,
        ),
    };
    let limit = page_limit(q.limit);
    let query = SessionQuery {
        status,
        before: q.before,
        limit,
    };
    let items = hub.list_sessions(p, &query).await?;
    Ok(Json(listing(items, limit, |v| v.record.id.to_string())).into_response())
}

pub async fn get_session(
    State(hub): State<Hub>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let p = caller.need(Scope::Read)?;
    Ok(Json(hub.get_session(p, parse_session(&id)?).await?).into_response())
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReasonBody {
    #[serde(default)]
    reason: Option<String>,
}

pub async fn stop_session(
    State(hub): State<Hub>,
    caller: Caller,
    Path(id): Path<String>,
    body: Option<Json<ReasonBody>>,
) -> ApiResult<Response> {
    let p = caller.need(Scope::Write)?;
    let reason = body.and_then(|b| b.0.reason);
    Ok(Json(hub.stop(p, parse_session(&id)?, reason).await?).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusBody {
    status: String,
    #[serde(default)]
    reason: Option<String>,
}

pub async fn set_status(
    State(hub): State<Hub>,
    caller: Caller,
    Path(id): Path<String>,
    Json(body): Json<StatusBody>,
) -> ApiResult<Response> {
    let p = caller.need(Scope::Write)?;
    let to = SessionStatus::parse(&body.status).ok_or_else(|| {
        refuse(
            ErrorCode::Invalid,
            format!("unknown status `{}`", body.status),
        )
    })?;
    Ok(Json(
        hub.set_status(p, parse_session(&id)?, to, body.reason)
            .await?,
    )
    .into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventBody {
    name: String,
    #[serde(default)]
    audience: CustomAudience,
    #[serde(default)]
    data: Value,
}

pub async fn publish_event(
    State(hub): State<Hub>,
    caller: Caller,
    Path(id): Path<String>,
    Json(body): Json<EventBody>,
) -> ApiResult<Response> {
    let p = caller.need(Scope::Write)?;
    let published = hub
        .publish_custom(p, parse_session(&id)?, body.name, body.audience, body.data)
        .await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "session": published.session, "seq": published.seq })),
    )
        .into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    before: Option<uuid::Uuid>,
    limit: Option<usize>,
}

/// Which history a history call reads.
#[derive(Clone, Copy, Debug)]
pub enum HistoryKind {
    Conversation,
    Interventions,
    Alerts,
}

async fn history(
    hub: Hub,
    caller: Caller,
    id: String,
    q: PageQuery,
    kind: HistoryKind,
) -> ApiResult<Response> {
    let p = caller.need(Scope::Read)?;
    let id = parse_session(&id)?;
    // Tenant check first: a session of another tenant is not found.
    hub.get_session(p, id).await?;
    let limit = page_limit(q.limit);
    let page = Page {
        before: q.before,
        limit,
    };
    let store = hub.writer.store();
    let body = match kind {
        HistoryKind::Conversation => {
            let rows = store.conversation(id, page).await.map_err(HubError::from)?;
            serde_json::to_value(listing(rows, limit, |r| r.id.to_string()))
        }
        HistoryKind::Interventions => {
            let rows = store
                .interventions(id, page)
                .await
                .map_err(HubError::from)?;
            serde_json::to_value(listing(rows, limit, |r| r.id.to_string()))
        }
        HistoryKind::Alerts => {
            let rows = store.alerts(id, page).await.map_err(HubError::from)?;
            serde_json::to_value(listing(rows, limit, |r| r.id.to_string()))
        }
    }
    .unwrap_or(Value::Null);
    Ok(Json(body).into_response())
}

pub async fn conversation(
    State(hub): State<Hub>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<PageQuery>,
) -> ApiResult<Response> {
    history(hub, caller, id, q, HistoryKind::Conversation).await
}

pub async fn interventions(
    State(hub): State<Hub>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<PageQuery>,
) -> ApiResult<Response> {
    history(hub, caller, id, q, HistoryKind::Interventions).await
}

pub async fn alerts(
    State(hub): State<Hub>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<PageQuery>,
) -> ApiResult<Response> {
    history(hub, caller, id, q, HistoryKind::Alerts).await
}

/// Liveness: 200 while the process serves requests.
pub async fn healthz() -> Response {
    (StatusCode::OK, Json(json!({ "status": "ok" }))).into_response()
}

/// Readiness: 503 naming the failing dependency, or while draining.
pub async fn readyz(State(hub): State<Hub>) -> Response {
    const PROBE: Duration = Duration::from_secs(2);
    let mut failing = Vec::new();
    if hub.is_draining() {
        failing.push(json!({ "name": "hub", "error": "draining" }));
    }
    match tokio::time::timeout(PROBE, hub.broker.ping()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => failing.push(
            json!({ "name": format!("broker:{}", hub.broker.name()), "error": e.to_string() }),
        ),
        Err(_) => failing
            .push(json!({ "name": format!("broker:{}", hub.broker.name()), "error": "timed out" })),
    }
    let store = hub.writer.store();
    match tokio::time::timeout(PROBE, store.ping()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => failing
            .push(json!({ "name": format!("store:{}", store.name()), "error": e.to_string() })),
        Err(_) => {
            failing.push(json!({ "name": format!("store:{}", store.name()), "error": "timed out" }))
        }
    }
    if failing.is_empty() {
        (StatusCode::OK, Json(json!({ "status": "ready" }))).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "unavailable", "failing": failing })),
        )
            .into_response()
    }
}

/// Any other path.
pub async fn not_found() -> Response {
    error_response(&refuse(ErrorCode::NotFound, "no such endpoint"))
}
