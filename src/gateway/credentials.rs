//! REST for credentials: connection tokens for participants, operators and
//! renderers (`POST /v1/tokens`), and the tenant's API keys (`/v1/keys`,
//! scope `eva:admin`).
//!
//! Answers that carry a credential are sent with `Cache-Control: no-store`
//! and exist nowhere else afterwards: the hub keeps no copy of a token and
//! only the hash of a key.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::rest::{ApiError, ApiResult, Caller, ErrorBody};
use crate::auth::api_key::{self, KeyError, KeyView, NewKey};
use crate::auth::{AuthError, Grant, IssuedToken};
use crate::hub::{Hub, HubError, refuse};
use crate::identity::Scope;
use crate::ids::SessionId;
use crate::protocol::ErrorCode;
use crate::protocol::model::Role;

fn no_store(mut res: Response) -> Response {
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

fn key_error(e: KeyError) -> ApiError {
    match e {
        KeyError::Invalid(m) => refuse(ErrorCode::Invalid, m).into(),
        KeyError::NotFound => refuse(ErrorCode::NotFound, "no such key").into(),
        KeyError::Random(m) => {
            tracing::error!(error = %m, "random source failed");
            refuse(ErrorCode::Internal, "could not generate a key; retry").into()
        }
        KeyError::Store(e) => HubError::from(e).into(),
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    role: Role,
    /// Who connects: 1-255 bytes, no control characters.
    subject: String,
    /// Sessions the token may join; required for participants (at most
    /// 100); absent means any session of the tenant.
    #[serde(default)]
    sessions: Option<Vec<SessionId>>,
    /// Display name for presence.
    #[serde(default)]
    name: Option<String>,
    /// Lifetime in seconds; `auth.token_ttl_s` when absent, never more
    /// than `auth.token_ttl_max_s`.
    #[serde(default)]
    ttl_s: Option<u64>,
}

/// `POST /v1/tokens`: a connection token for one participant, operator or
/// renderer of the caller's tenant. Participant and renderer tokens need
/// `eva:write`; operator tokens `eva:operate`. Participant tokens must
/// name their sessions; every session named must be the tenant's.
#[utoipa::path(
    post,
    path = "/v1/tokens",
    tag = "credentials",
    request_body = TokenRequest,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "The token, shown once (`Cache-Control: no-store`)", body = IssuedToken),
        (status = 400, description = "`invalid`: bad subject or name, a participant token without `sessions`, more than 100 sessions", body = ErrorBody),
        (status = 403, description = "The key lacks eva:write (participant, renderer) or eva:operate (operator)", body = ErrorBody),
        (status = 404, description = "A named session is not the tenant's", body = ErrorBody),
        (status = 503, description = "This hub has no signing key", body = ErrorBody),
    )
)]
pub async fn mint_token(
    State(hub): State<Hub>,
    caller: Caller,
    Json(req): Json<TokenRequest>,
) -> ApiResult<Response> {
    let p = caller.need(match req.role {
        Role::Operator => Scope::Operate,
        Role::Participant | Role::Renderer => Scope::Write,
    })?;
    let subject = req.subject.trim();
    if subject.is_empty() || subject.len() > 255 || subject.chars().any(char::is_control) {
        return Err(refuse(
            ErrorCode::Invalid,
            "subject must be 1 to 255 bytes without control characters",
        )
        .into());
    }
    if req.name.as_ref().is_some_and(|n| n.len() > 255) {
        return Err(refuse(ErrorCode::Invalid, "name is longer than 255 bytes").into());
    }
    let sessions = match req.sessions {
        Some(s) if s.is_empty() => None,
        other => other,
    };
    if req.role == Role::Participant && sessions.is_none() {
        return Err(refuse(
            ErrorCode::Invalid,
            "a participant token must name the sessions it may join",
        )
        .into());
    }
    if let Some(ids) = &sessions {
        if ids.len() > crate::auth::jwt::MAX_TOKEN_SESSIONS {
            return Err(refuse(ErrorCode::Invalid, "a token names at most 100 sessions").into());
        }
        for id in ids {
            // Another tenant's session is "no such session", like one that
            // does not exist.
            hub.get_session(p, *id).await?;
        }
    }
    let grant = Grant {
        tenant: p.tenant,
        subject: subject.to_owned(),
        role: req.role,
        name: req.name,
        sessions,
        ttl: req.ttl_s.map(std::time::Duration::from_secs),
    };
    let issued = hub.auth.issue(&grant).map_err(|e| match e {
        AuthError::Invalid(m) => ApiError::from(refuse(ErrorCode::Invalid, m)),
        e => {
            tracing::error!(error = %e, "cannot mint connection tokens");
            refuse(
                ErrorCode::Unavailable,
                "this hub cannot mint tokens: no signing key is configured",
            )
            .into()
        }
    })?;
    tracing::info!(
        tenant = %p.tenant,
        by = %p.subject,
        role = grant.role.as_str(),
        subject = %grant.subject,
        "connection token minted"
    );
    Ok(no_store(
        (StatusCode::CREATED, Json(&issued)).into_response(),
    ))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KeyRequest {
    name: String,
    /// Any of `eva:read`, `eva:write`, `eva:operate`, `eva:admin`.
    scopes: Vec<String>,
    #[serde(default)]
    expires_at: Option<DateTime<Utc>>,
}

/// A new key: its listing, plus the key itself, shown this once.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedKey {
    #[serde(flatten)]
    view: KeyView,
    /// `evk_…`: store it now; the hub keeps only its SHA-256.
    key: String,
}

/// The tenant's keys.
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyList {
    items: Vec<KeyView>,
}

/// `POST /v1/keys`: a new API key of the caller's tenant, shown once.
#[utoipa::path(
    post,
    path = "/v1/keys",
    tag = "credentials",
    request_body = KeyRequest,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "The key, shown once (scope eva:admin; `Cache-Control: no-store`)", body = CreatedKey),
        (status = 400, description = "Unknown scope or bad name", body = ErrorBody),
        (status = 403, description = "The key lacks eva:admin", body = ErrorBody),
    )
)]
pub async fn create_key(
    State(hub): State<Hub>,
    caller: Caller,
    Json(req): Json<KeyRequest>,
) -> ApiResult<Response> {
    let p = caller.need(Scope::Admin)?;
    let scopes = api_key::parse_scopes(&req.scopes).map_err(key_error)?;
    let store = hub.writer.store();
    let (view, key) = api_key::create(
        store.as_ref(),
        NewKey {
            tenant: p.tenant,
            name: req.name,
            scopes,
            expires_at: req.expires_at,
        },
    )
    .await
    .map_err(key_error)?;
    tracing::info!(tenant = %p.tenant, by = %p.subject, key = %view.id, "API key created");
    let body = CreatedKey {
        view,
        key: key.expose().to_owned(),
    };
    Ok(no_store((StatusCode::CREATED, Json(body)).into_response()))
}

/// `GET /v1/keys`: the caller's tenant's keys, without their hashes.
#[utoipa::path(
    get,
    path = "/v1/keys",
    tag = "credentials",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The keys (scope eva:admin)", body = KeyList),
        (status = 403, description = "The key lacks eva:admin", body = ErrorBody),
    )
)]
pub async fn list_keys(State(hub): State<Hub>, caller: Caller) -> ApiResult<Response> {
    let p = caller.need(Scope::Admin)?;
    let store = hub.writer.store();
    let items = api_key::list(store.as_ref(), Some(p.tenant))
        .await
        .map_err(key_error)?;
    Ok(Json(KeyList { items }).into_response())
}

/// `DELETE /v1/keys/{id}`: revokes a key of the caller's tenant. Another
/// tenant's key is "no such key".
#[utoipa::path(
    delete,
    path = "/v1/keys/{id}",
    tag = "credentials",
    params(("id" = uuid::Uuid, Path, description = "The key's id")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Revoked (scope eva:admin); it stops working at once"),
        (status = 404, description = "No such key for this tenant", body = ErrorBody),
    )
)]
pub async fn revoke_key(
    State(hub): State<Hub>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let p = caller.need(Scope::Admin)?;
    let id: Uuid = id
        .parse()
        .map_err(|_| ApiError::from(refuse(ErrorCode::NotFound, "no such key")))?;
    let store = hub.writer.store();
    api_key::revoke(store.as_ref(), id, Some(p.tenant))
        .await
        .map_err(key_error)?;
    tracing::info!(tenant = %p.tenant, by = %p.subject, key = %id, "API key revoked");
    Ok(StatusCode::NO_CONTENT.into_response())
}
