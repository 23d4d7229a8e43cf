//! How each source proves a request came from it (`docs/INGEST.md`).
//!
//! | source | scheme |
//! |---|---|
//! | `tavus` | none from Tavus; a shared secret in `X-Eva-Ingest-Secret` or `?secret=` |
//! | `heygen` | `Signature`: hex HMAC-SHA256 of the raw body, keyed with the endpoint secret |
//! | `livekit` | `Authorization`: a JWT (HS256, API secret; `iss` = API key) whose `sha256` claim is the base64 SHA-256 of the body |
//! | `generic` | `X-Eva-Signature: sha256=<hex HMAC-SHA256 of the raw body>` |
//!
//! Every comparison runs in constant time. None of the schemes carries a
//! timestamp the hub checks: a replayed request is the same event and is
//! answered as a duplicate, never applied twice.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{IngestError, Source};
use crate::config::IngestSettings;

/// The header of the generic source's signature.
pub const GENERIC_SIGNATURE_HEADER: &str = "x-eva-signature";
/// The header of the shared secret for sources that do not sign.
pub const SHARED_SECRET_HEADER: &str = "x-eva-ingest-secret";
/// HeyGen's signature header.
pub const HEYGEN_SIGNATURE_HEADER: &str = "signature";

/// What the request offers as proof.
#[derive(Clone, Copy, Debug, Default)]
pub struct Credentials<'a> {
    pub authorization: Option<&'a str>,
    pub signature: Option<&'a str>,
    pub eva_signature: Option<&'a str>,
    pub shared_secret: Option<&'a str>,
    /// `?secret=` of the URL (Tavus cannot add headers to a callback).
    pub query_secret: Option<&'a str>,
}

/// Checks the request against the source's secret. A source without one
/// is refused unless `dev`.
pub fn verify(
    source: Source,
    settings: &IngestSettings,
    dev: bool,
    creds: &Credentials<'_>,
    body: &[u8],
) -> Result<(), IngestError> {
    let secret = match source {
        Source::Tavus => &settings.tavus_secret,
        Source::Heygen => &settings.heygen_secret,
        Source::Livekit => &settings.livekit_api_secret,
        Source::Generic => &settings.generic_secret,
    };
    if secret.is_empty() {
        return if dev {
            Ok(())
        } else {
            Err(IngestError::NotEnabled)
        };
    }
    let ok = match source {
        Source::Tavus => creds
            .shared_secret
            .or(creds.query_secret)
            .is_some_and(|s| eq(s.as_bytes(), secret.as_bytes())),
        Source::Heygen => creds
            .signature
            .is_some_and(|s| hmac_hex_matches(secret, body, s.trim())),
        Source::Generic => creds.eva_signature.is_some_and(|s| {
            s.trim()
                .strip_prefix("sha256=")
                .is_some_and(|hex| hmac_hex_matches(secret, body, hex))
        }),
        Source::Livekit => creds
            .authorization
            .is_some_and(|a| livekit_token_matches(settings, a, body)),
    };
    if ok {
        Ok(())
    } else {
        Err(IngestError::BadSignature)
    }
}

fn eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// Hex HMAC-SHA256 of `body` under `key`.
pub fn hmac_hex(key: &str, body: &[u8]) -> String {
    let mut mac =
        <Hmac<Sha256> as KeyInit>::new_from_slice(key.as_bytes()).expect("HMAC takes any key");
    mac.update(body);
    super::canonical::hex(&mac.finalize().into_bytes())
}

fn hmac_hex_matches(key: &str, body: &[u8], given: &str) -> bool {
    eq(
        hmac_hex(key, body).as_bytes(),
        given.to_ascii_lowercase().as_bytes(),
    )
}

#[derive(serde::Deserialize)]
struct LivekitClaims {
    sha256: String,
}

/// LiveKit's webhook token: HS256 under the API secret, issued by the
/// API key, unexpired, with the body's hash. The header carries the bare
/// token; a `Bearer ` prefix is tolerated.
fn livekit_token_matches(settings: &IngestSettings, authorization: &str, body: &[u8]) -> bool {
    use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode};
    let token = authorization.trim();
    let token = token.strip_prefix("Bearer ").unwrap_or(token);
    let mut v = Validation::new(Algorithm::HS256);
    v.validate_aud = false;
    v.set_required_spec_claims(&["exp", "iss"]);
    v.set_issuer(&[settings.livekit_api_key.as_str()]);
    let key = DecodingKey::from_secret(settings.livekit_api_secret.as_bytes());
    match decode::<LivekitClaims>(token, &key, &v) {
        Ok(data) => {
            let want = STANDARD.encode(Sha256::digest(body));
            eq(want.as_bytes(), data.claims.sha256.as_bytes())
        }
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> IngestSettings {
        IngestSettings {
            max_body_bytes: 1024,
            tavus_secret: "tv-secret".into(),
            heygen_secret: "hg-secret".into(),
            livekit_api_key: "APIkey".into(),
            livekit_api_secret: "lk-secret-lk-secret-lk-secret-32b".into(),
            generic_secret: "gen-secret".into(),
        }
    }

    #[test]
    fn hmac_schemes_accept_the_right_key_only() {
        let s = settings();
        let body = br#"{"event_type":"utterance"}"#;
        let good = format!("sha256={}", hmac_hex("gen-secret", body));
        let creds = Credentials {
            eva_signature: Some(&good),
            ..Default::default()
        };
        assert!(verify(Source::Generic, &s, false, &creds, body).is_ok());
        let bad = format!("sha256={}", hmac_hex("other", body));
        let creds = Credentials {
            eva_signature: Some(&bad),
            ..Default::default()
        };
        assert!(matches!(
            verify(Source::Generic, &s, false, &creds, body),
            Err(IngestError::BadSignature)
        ));
        let sig = hmac_hex("hg-secret", body);
        let creds = Credentials {
            signature: Some(&sig),
            ..Default::default()
        };
        assert!(verify(Source::Heygen, &s, false, &creds, body).is_ok());
        assert!(verify(Source::Heygen, &s, false, &creds, b"{}").is_err());
    }

    #[test]
    fn unconfigured_sources_are_refused_outside_dev() {
        let s = IngestSettings::default();
        let none = Credentials::default();
        assert!(matches!(
            verify(Source::Tavus, &s, false, &none, b"{}"),
            Err(IngestError::NotEnabled)
        ));
        assert!(verify(Source::Tavus, &s, true, &none, b"{}").is_ok());
    }
}
