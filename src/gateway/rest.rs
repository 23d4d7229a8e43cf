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

use crate::auth::{AuthError, bearer};
use crate::hub::{Hub, HubError, NewSession, SessionView, refuse};
use crate::identity::{Principal, Scope};
use crate::ids::SessionId;
use crate::protocol::model::CustomAudience;
use crate::protocol::{ErrorCode, SessionStatus};
use crate::store::{AlertRow, ConversationRow, InterventionRow, Page, SessionQuery};
use utoipa::{IntoParams, ToSchema};

/// Every error answer: `{"error": {...}}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    pub code: ErrorCode,
    /// For people; say what to do, never quote a backend.
    pub message: String,
    /// For retryable codes: wait at least this long (also in `Retry-After`,
    /// in seconds).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
}

/// Turns a hub error into the JSON error response.
pub fn error_response(e: &HubError) -> Response {
    let code = e.code();
    let status =
        StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = ErrorBody {
        error: ErrorDetail {
            code,
            message: e.client_message(),
            retry_after_ms: e.retry_after().map(|a| a.as_millis() as u64),
        },
    };
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
            return Err(HubError::from(e).into());
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

/// Creates a session. The answer's `id` is the session id clients join.
#[utoipa::path(
    post,
    path = "/v1/sessions",
    tag = "sessions",
    request_body = NewSession,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Created (scope eva:write)", body = SessionView),
        (status = 400, description = "A field is invalid", body = ErrorBody),
        (status = 401, description = "No or bad API key", body = ErrorBody),
        (status = 403, description = "The key lacks eva:write", body = ErrorBody),
        (status = 429, description = "Rate limited or quota used up", body = ErrorBody),
    )
)]
pub async fn create_session(
    State(hub): State<Hub>,
    caller: Caller,
    Json(body): Json<NewSession>,
) -> ApiResult<Response> {
    let p = caller.need(Scope::Write)?;
    let view = hub.create_session(p, body).await?;
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only sessions in this status (`created`, `starting`, `active`,
    /// `paused`, `stopping`, `stopped`, `failed`).
    status: Option<String>,
    /// The last id of the previous page (`next_before`).
    before: Option<SessionId>,
    /// 1 to 500; 50 when absent.
    limit: Option<usize>,
}

/// A page of a listing, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct Listing<T> {
    items: Vec<T>,
    /// Pass as `before` to get the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_before: Option<String>,
}

pub(crate) fn listing<T>(items: Vec<T>, limit: usize, id: impl Fn(&T) -> String) -> Listing<T> {
    let next_before = (items.len() == limit)
        .then(|| items.last().map(&id))
        .flatten();
    Listing { items, next_before }
}

pub(crate) fn page_limit(limit: Option<usize>) -> usize {
    limit.unwrap_or(50).clamp(1, 500)
}

/// The tenant's sessions, newest first.
#[utoipa::path(
    get,
    path = "/v1/sessions",
    tag = "sessions",
    params(ListQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page (scope eva:read)", body = Listing<SessionView>),
        (status = 400, description = "Unknown status or bad paging", body = ErrorBody),
    )
)]
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

/// One session; `live` is present while it is loaded on the node asked.
#[utoipa::path(
    get,
    path = "/v1/sessions/{id}",
    tag = "sessions",
    params(("id" = SessionId, Path, description = "The session id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The session (scope eva:read)", body = SessionView),
        (status = 404, description = "No such session for this tenant", body = ErrorBody),
    )
)]
pub async fn get_session(
    State(hub): State<Hub>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let p = caller.need(Scope::Read)?;
    Ok(Json(hub.get_session(p, parse_session(&id)?).await?).into_response())
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReasonBody {
    #[serde(default)]
    reason: Option<String>,
}

/// Starts stopping a session: `stopped` at once without a renderer, else
/// `stopping` until the renderer confirms or `stop_timeout_ms` passes.
#[utoipa::path(
    post,
    path = "/v1/sessions/{id}/stop",
    tag = "sessions",
    params(("id" = SessionId, Path, description = "The session id")),
    request_body(content = Option<ReasonBody>, description = "Optional"),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The session (scope eva:write)", body = SessionView),
        (status = 404, description = "No such session for this tenant", body = ErrorBody),
        (status = 409, description = "`illegal_transition`: it has already ended", body = ErrorBody),
    )
)]
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

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StatusBody {
    /// The status to move to.
    #[schema(value_type = SessionStatus)]
    status: String,
    #[serde(default)]
    reason: Option<String>,
}

/// Moves a session through its lifecycle (see the protocol's lifecycle
/// table).
#[utoipa::path(
    post,
    path = "/v1/sessions/{id}/status",
    tag = "sessions",
    params(("id" = SessionId, Path, description = "The session id")),
    request_body = StatusBody,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The session (scope eva:write)", body = SessionView),
        (status = 404, description = "No such session for this tenant", body = ErrorBody),
        (status = 409, description = "`illegal_transition`", body = ErrorBody),
    )
)]
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

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EventBody {
    /// 1-64 characters of `a-z 0-9 _ . : -`, starting with a letter.
    name: String,
    #[serde(default)]
    audience: CustomAudience,
    /// Any JSON value.
    #[serde(default)]
    data: Value,
}

/// Where a published event landed in the session's stream.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventAccepted {
    pub session: SessionId,
    pub seq: u64,
}

/// Publishes an app-defined event (`custom`, `from` = the key's name) into
/// the session's stream.
#[utoipa::path(
    post,
    path = "/v1/sessions/{id}/events",
    tag = "sessions",
    params(("id" = SessionId, Path, description = "The session id")),
    request_body = EventBody,
    security(("bearer" = [])),
    responses(
        (status = 202, description = "Sequenced (scope eva:write)", body = EventAccepted),
        (status = 400, description = "Bad name", body = ErrorBody),
        (status = 404, description = "No such session for this tenant", body = ErrorBody),
        (status = 409, description = "`session_ended`", body = ErrorBody),
    )
)]
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
        Json(EventAccepted {
            session: published.session,
            seq: published.seq,
        }),
    )
        .into_response())
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// The last id of the previous page (`next_before`).
    before: Option<uuid::Uuid>,
    /// 1 to 500; 50 when absent.
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

/// The session's conversation (questions, responses, operator lines),
/// newest first.
#[utoipa::path(
    get,
    path = "/v1/sessions/{id}/conversation",
    tag = "history",
    params(("id" = SessionId, Path, description = "The session id"), PageQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page (scope eva:read)", body = Listing<ConversationRow>),
        (status = 404, description = "No such session for this tenant", body = ErrorBody),
    )
)]
pub async fn conversation(
    State(hub): State<Hub>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<PageQuery>,
) -> ApiResult<Response> {
    history(hub, caller, id, q, HistoryKind::Conversation).await
}

/// The session's operator interventions, newest first.
#[utoipa::path(
    get,
    path = "/v1/sessions/{id}/interventions",
    tag = "history",
    params(("id" = SessionId, Path, description = "The session id"), PageQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page (scope eva:read)", body = Listing<InterventionRow>),
        (status = 404, description = "No such session for this tenant", body = ErrorBody),
    )
)]
pub async fn interventions(
    State(hub): State<Hub>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<PageQuery>,
) -> ApiResult<Response> {
    history(hub, caller, id, q, HistoryKind::Interventions).await
}

/// The session's alerts, newest first, acknowledged or not.
#[utoipa::path(
    get,
    path = "/v1/sessions/{id}/alerts",
    tag = "history",
    params(("id" = SessionId, Path, description = "The session id"), PageQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page (scope eva:read)", body = Listing<AlertRow>),
        (status = 404, description = "No such session for this tenant", body = ErrorBody),
    )
)]
pub async fn alerts(
    State(hub): State<Hub>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<PageQuery>,
) -> ApiResult<Response> {
    history(hub, caller, id, q, HistoryKind::Alerts).await
}

/// Liveness: 200 while the process serves requests.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "health",
    responses((status = 200, description = "`{\"status\":\"ok\"}`"))
)]
pub async fn healthz() -> Response {
    (StatusCode::OK, Json(json!({ "status": "ok" }))).into_response()
}

/// Readiness: 503 naming the failing dependency, or while draining.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "health",
    responses(
        (status = 200, description = "`{\"status\":\"ready\"}`"),
        (status = 503, description = "`{\"status\":\"unavailable\",\"failing\":[{\"name\",\"error\"}]}`"),
    )
)]
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
