//! Credentials as the hub receives them: the `auth` frame's token, an
//! `Authorization` header, a REST bearer credential. Every authenticator
//! must answer an arbitrary string with an identity or an error, never a
//! panic.
//!
//! The first input byte picks what the rest is:
//! - even: the token itself, carried by an `auth` frame in both codecs;
//! - odd: a JWT's header and claims (JSON, split at the first NUL byte),
//!   signed with the configured key, so the fuzzer reaches the claim
//!   checks behind the signature instead of stopping at it.

#![no_main]

use std::sync::{Arc, OnceLock};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use eva_hub::auth::credentials::CredentialAuthenticator;
use eva_hub::auth::dev::DevAuthenticator;
use eva_hub::auth::jwt::MAX_TOKEN_SESSIONS;
use eva_hub::auth::{Authenticator, api_key, bearer};
use eva_hub::config::{Settings, TokenKeySettings};
use eva_hub::protocol::{ClientFrame, Codec};
use eva_hub::secret::Secret;
use eva_hub::store::memory::MemoryStore;
use hmac::{Hmac, KeyInit, Mac};
use libfuzzer_sys::fuzz_target;
use sha2::Sha256;

const KID: &str = "fuzz";
const SECRET: &[u8] = b"fuzz-secret-0123456789abcdef-0123456789";

struct World {
    rt: tokio::runtime::Runtime,
    credentials: CredentialAuthenticator,
    dev: DevAuthenticator,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let mut auth = Settings::defaults().auth;
        auth.keys = vec![TokenKeySettings {
            kid: KID.into(),
            algorithm: "HS256".into(),
            secret: Some(String::from_utf8(SECRET.to_vec()).expect("ASCII")),
            ..Default::default()
        }];
        let credentials =
            CredentialAuthenticator::from_settings(&auth, Arc::new(MemoryStore::new()))
                .expect("the fuzz key is valid");
        World {
            rt: tokio::runtime::Builder::new_current_thread()
                .build()
                .expect("a runtime"),
            credentials,
            dev: DevAuthenticator,
        }
    })
}

/// Everything that reads a presented credential.
fn present(token: &str) {
    let w = world();
    let _ = bearer(Some(token));
    let header = format!("Bearer {token}");
    if let Some(t) = bearer(Some(&header)) {
        assert!(!t.is_empty() && t.len() <= token.len());
    }
    if api_key::looks_like_key(token) {
        assert_eq!(api_key::hash(token).len(), api_key::hash("").len());
    }
    w.rt.block_on(async {
        if let Ok(id) = w.credentials.connection(token).await {
            assert!(!id.subject.is_empty() && id.subject.len() <= 255);
            assert!(
                id.sessions
                    .as_ref()
                    .is_none_or(|s| s.len() <= MAX_TOKEN_SESSIONS)
            );
            assert!(id.expires_at.is_some());
        }
        let _ = w.credentials.backend(Some(token)).await;
        if let Ok(id) = w.dev.connection(token).await {
            assert!(!id.subject.is_empty() && id.subject.len() <= 255);
        }
        let _ = w.dev.backend(Some(token)).await;
    });
}

/// `auth` frames carry the token; decode it the way the gateway does.
fn through_auth_frame(token: &str) {
    let frame = ClientFrame::Auth {
        token: Secret::new(token),
    };
    for codec in Codec::ALL {
        match codec.decode_client(&codec.encode_payload(&frame)) {
            Ok(ClientFrame::Auth { token }) => present(token.expose()),
            other => panic!("an auth frame came back as {other:?}"),
        }
    }
}

fn signed(header: &[u8], claims: &[u8]) -> String {
    let mut token = URL_SAFE_NO_PAD.encode(header);
    token.push('.');
    token.push_str(&URL_SAFE_NO_PAD.encode(claims));
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(SECRET).expect("HMAC takes any key");
    mac.update(token.as_bytes());
    token.push('.');
    token.push_str(&URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()));
    token
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        through_auth_frame(&String::from_utf8_lossy(rest));
    } else {
        let (header, claims) = match rest.iter().position(|&b| b == 0) {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (&br#"{"alg":"HS256","typ":"JWT","kid":"fuzz"}"#[..], rest),
        };
        present(&signed(header, claims));
    }
});
