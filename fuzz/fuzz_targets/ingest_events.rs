//! Inbound vendor events as `POST /v1/ingest/{source}` receives them: the
//! signature check on the raw bytes, then the source's parser, the
//! canonical form and its hash (`ingest::receive`). Nothing may panic,
//! whatever the body and the credentials.
//!
//! The first input byte picks the source (its two low bits) and what the
//! rest is:
//! - bit 2 set: the body, sent with the credential the source expects,
//!   made with the configured secret (a shared secret, an HMAC, a LiveKit
//!   token), so the fuzzer reaches the parsers behind the check. It must
//!   pass the check; an accepted event's canonical form must be stable
//!   (parsed and written again, it is the same text) and its hash 64 hex
//!   digits;
//! - bit 2 clear: a credential and a body split at the first NUL byte, the
//!   credential offered in every place a source looks for one.

#![no_main]

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use eva_hub::config::IngestSettings;
use eva_hub::ingest::canonical::canonical_json;
use eva_hub::ingest::signature::{Credentials, hmac_hex};
use eva_hub::ingest::{IngestError, Source, receive};
use hmac::{Hmac, KeyInit, Mac};
use libfuzzer_sys::fuzz_target;
use sha2::{Digest, Sha256};

const TAVUS: &str = "fuzz-tavus-secret";
const HEYGEN: &str = "fuzz-heygen-secret";
const LIVEKIT_KEY: &str = "APIfuzz";
const LIVEKIT_SECRET: &str = "fuzz-livekit-secret-of-32-bytes-or-more";
const GENERIC: &str = "fuzz-generic-secret";

fn settings() -> IngestSettings {
    IngestSettings {
        max_body_bytes: 64 * 1024,
        tavus_secret: TAVUS.into(),
        heygen_secret: HEYGEN.into(),
        livekit_api_key: LIVEKIT_KEY.into(),
        livekit_api_secret: LIVEKIT_SECRET.into(),
        generic_secret: GENERIC.into(),
    }
}

/// LiveKit's webhook token for `body`: HS256, issued by the API key, with
/// the body's SHA-256.
fn livekit_token(body: &[u8]) -> String {
    let now = chrono::Utc::now().timestamp();
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let claims = serde_json::json!({
        "iss": LIVEKIT_KEY,
        "nbf": now - 600,
        "exp": now + 600,
        "sha256": STANDARD.encode(Sha256::digest(body)),
    });
    let claims = URL_SAFE_NO_PAD.encode(claims.to_string());
    let signing = format!("{header}.{claims}");
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(LIVEKIT_SECRET.as_bytes())
        .expect("HMAC takes any key");
    mac.update(signing.as_bytes());
    let sig = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{signing}.{sig}")
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let source = Source::ALL[usize::from(first & 3)];
    let settings = settings();
    if first & 4 != 0 {
        let body = rest;
        let heygen = hmac_hex(HEYGEN, body);
        let generic = format!("sha256={}", hmac_hex(GENERIC, body));
        let livekit = livekit_token(body);
        let creds = match source {
            Source::Tavus => Credentials {
                shared_secret: Some(TAVUS),
                ..Default::default()
            },
            Source::Heygen => Credentials {
                signature: Some(&heygen),
                ..Default::default()
            },
            Source::Generic => Credentials {
                eva_signature: Some(&generic),
                ..Default::default()
            },
            Source::Livekit => Credentials {
                authorization: Some(&livekit),
                ..Default::default()
            },
        };
        match receive(source, &settings, false, &creds, body) {
            Ok(inbound) => {
                let canonical = canonical_json(&inbound.body);
                let again: serde_json::Value =
                    serde_json::from_str(&canonical).expect("the canonical form is JSON");
                assert_eq!(
                    canonical_json(&again),
                    canonical,
                    "the canonical form is stable"
                );
                assert_eq!(inbound.event_hash.len(), 64);
                assert!(inbound.event_hash.bytes().all(|b| b.is_ascii_hexdigit()));
                drop(format!("{inbound:?}"));
            }
            Err(IngestError::BadSignature | IngestError::NotEnabled) => {
                panic!("a correctly signed {source:?} request was refused")
            }
            // Refused as malformed: the message goes back to the sender.
            Err(e) => assert!(!e.to_string().is_empty()),
        }
    } else {
        let split = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
        let (credential, body) = rest.split_at(split);
        let body = body.get(1..).unwrap_or_default();
        let credential = String::from_utf8_lossy(credential);
        let creds = Credentials {
            authorization: Some(&credential),
            signature: Some(&credential),
            eva_signature: Some(&credential),
            shared_secret: Some(&credential),
            query_secret: Some(&credential),
        };
        if let Err(e) = receive(source, &settings, false, &creds, body) {
            assert!(!e.to_string().is_empty());
        }
    }
});
