//! `POST /v1/ingest/{source}`: inbound vendor events (`docs/INGEST.md`).
//! No API key: the source's signature is the credential. Answers: 202
//! with the stored event the first time, 200 with `"duplicate": true` for
//! a redelivery, 401 for a bad signature (nothing stored), 404 for an
//! unknown source (or one not configured outside `--dev`), 400 for a body
//! that is not the source's JSON shape, 413 for one over
//! `ingest.max_body_bytes`.

use std::time::Instant;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::rest::{ErrorBody, ErrorDetail, error_response};
use crate::hub::Hub;
use crate::ingest::signature::{
    GENERIC_SIGNATURE_HEADER, HEYGEN_SIGNATURE_HEADER, SHARED_SECRET_HEADER,
};
use crate::ingest::{Credentials, IngestError, Source, receive};
use crate::metrics as m;
use crate::protocol::ErrorCode;
use crate::store::ingest::ProcessedEvent;

/// The answer: the stored event, whether it was a redelivery, and the
/// hub events it produced.
#[derive(Debug, Serialize, ToSchema)]
pub struct IngestAnswer {
    #[serde(flatten)]
    pub event: ProcessedEvent,
    /// True when an event with the same hash was stored before: nothing
    /// was published this time.
    pub duplicate: bool,
    /// The `seq` of each event published into the session.
    pub published: Vec<u64>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct IngestQuery {
    /// The shared secret of a source that does not sign (Tavus), for
    /// senders that cannot add a header.
    secret: Option<String>,
}

fn refusal(e: &IngestError) -> Response {
    let code = match e {
        IngestError::UnknownSource | IngestError::NotEnabled => ErrorCode::NotFound,
        IngestError::BadSignature => ErrorCode::Unauthorized,
        IngestError::Malformed(_) | IngestError::TooLarge(_) => ErrorCode::Invalid,
    };
    let status = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
    let body = ErrorBody {
        error: ErrorDetail {
            code,
            message: e.to_string(),
            retry_after_ms: None,
        },
    };
    (status, Json(body)).into_response()
}

/// Records a vendor event and applies it to the session whose
/// `external_id` is its conversation id.
#[utoipa::path(
    post,
    path = "/v1/ingest/{source}",
    tag = "ingest",
    params(
        ("source" = String, Path, description = "`tavus`, `heygen`, `livekit` or `generic`"),
        IngestQuery,
        ("Authorization" = Option<String>, Header, description = "livekit: the webhook JWT"),
        ("Signature" = Option<String>, Header, description = "heygen: hex HMAC-SHA256 of the body"),
        ("X-Eva-Signature" = Option<String>, Header, description = "generic: `sha256=` + hex HMAC-SHA256 of the body"),
        ("X-Eva-Ingest-Secret" = Option<String>, Header, description = "tavus: the shared secret"),
    ),
    request_body(content = Object, description = "The vendor's event, as it sends it"),
    responses(
        (status = 202, description = "Recorded for the first time (and applied if its conversation maps to a session)", body = IngestAnswer),
        (status = 200, description = "A redelivery: the stored event, `duplicate: true`; it publishes nothing unless it finishes what the first delivery left undone (docs/INGEST.md)", body = IngestAnswer),
        (status = 400, description = "Not JSON, or not the source's shape", body = ErrorBody),
        (status = 401, description = "Missing or bad signature; nothing stored", body = ErrorBody),
        (status = 404, description = "Unknown source, or one without a secret outside --dev", body = ErrorBody),
        (status = 413, description = "Larger than ingest.max_body_bytes", body = ErrorBody),
        (status = 503, description = "The store or the broker is unavailable, or the store's backlog is full; nothing was applied, retry", body = ErrorBody),
    )
)]
pub async fn ingest(
    State(hub): State<Hub>,
    Path(source): Path<String>,
    Query(query): Query<IngestQuery>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let received = Instant::now();
    let done = |outcome: &'static str| m::ingest_event(&source, outcome, received.elapsed());
    let Some(src) = Source::parse(&source) else {
        done("unknown_source");
        return refusal(&IngestError::UnknownSource);
    };
    let settings = &hub.settings.ingest;
    // Read at most one byte past the limit: a larger body is refused
    // without being held in memory.
    let bytes = match axum::body::to_bytes(body, settings.max_body_bytes).await {
        Ok(b) => b,
        Err(_) => {
            done("too_large");
            return refusal(&IngestError::TooLarge(settings.max_body_bytes));
        }
    };
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let creds = Credentials {
        authorization: header("authorization"),
        signature: header(HEYGEN_SIGNATURE_HEADER),
        eva_signature: header(GENERIC_SIGNATURE_HEADER),
        shared_secret: header(SHARED_SECRET_HEADER),
        query_secret: query.secret.as_deref(),
    };
    let inbound = match receive(src, settings, hub.settings.auth.dev, &creds, &bytes) {
        Ok(i) => i,
        Err(e) => {
            done(e.outcome());
            return refusal(&e);
        }
    };
    match hub.ingest(inbound, received).await {
        Ok(o) => {
            let (status, outcome) = if o.duplicate {
                (StatusCode::OK, "duplicate")
            } else if o.event.session.is_some() {
                (StatusCode::ACCEPTED, "accepted")
            } else {
                (StatusCode::ACCEPTED, "unmapped")
            };
            done(outcome);
            let answer = IngestAnswer {
                event: o.event,
                duplicate: o.duplicate,
                published: o.published,
            };
            (status, Json(answer)).into_response()
        }
        Err(e) => {
            done("error");
            error_response(&e)
        }
    }
}
