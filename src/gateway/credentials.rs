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
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

use super::rest::{ApiError, ApiResult, Caller};
use crate::auth::api_key::{self, KeyError, NewKey};
use crate::auth::{AuthError, Grant, Scope};
use crate::hub::{Hub, HubError, refuse};
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    role: Role,
    subject: String,
    #[serde(default)]
    sessions: Option<Vec<SessionId>>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    ttl_s: Option<u64>,
}

/// `POST /v1/tokens`: a connection token for one participant, operator or
/// renderer of the caller's tenant. Participant and renderer tokens need
/// `eva:write`; operator tokens `eva:operate`. Participant tokens must
/// name their sessions; every session named must be the tenant's.
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyRequest {
    name: String,
    scopes: Vec<String>,
    #[serde(default)]
    expires_at: Option<DateTime<Utc>>,
}

/// `POST /v1/keys`: a new API key of the caller's tenant, shown once.
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
    let mut body = serde_json::to_value(&view).unwrap_or_default();
    body["key"] = json!(key.expose());
    Ok(no_store((StatusCode::CREATED, Json(body)).into_response()))
}

/// `GET /v1/keys`: the caller's tenant's keys, without their hashes.
pub async fn list_keys(State(hub): State<Hub>, caller: Caller) -> ApiResult<Response> {
    let p = caller.need(Scope::Admin)?;
    let store = hub.writer.store();
    let items = api_key::list(store.as_ref(), Some(p.tenant))
        .await
        .map_err(key_error)?;
    Ok(Json(json!({ "items": items })).into_response())
}

/// `DELETE /v1/keys/{id}`: revokes a key of the caller's tenant. Another
/// tenant's key is "no such key".
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
