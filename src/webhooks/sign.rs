//! Standard Webhooks signing: secrets (`whsec_` + base64 of the key) and
//! the `webhook-signature` of one request, `v1,` + base64 of
//! HMAC-SHA256(key, `{webhook-id}.{webhook-timestamp}.{body}`).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use rand::TryRngCore;
use sha2::Sha256;

use crate::secret::Secret;

/// What every signing secret starts with.
pub const SECRET_PREFIX: &str = "whsec_";

/// Key bytes of a new secret (the spec allows 24 to 64).
const KEY_BYTES: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error("the OS random source failed: {0}")]
    Random(String),
    #[error("a signing secret is `whsec_` followed by base64")]
    BadSecret,
}

/// A new random secret.
///
/// # Errors
/// [`SignError::Random`] if the OS random source fails.
pub fn new_secret() -> Result<Secret, SignError> {
    let mut key = [0u8; KEY_BYTES];
    rand::rngs::OsRng
        .try_fill_bytes(&mut key)
        .map_err(|e| SignError::Random(e.to_string()))?;
    Ok(Secret::new(format!(
        "{SECRET_PREFIX}{}",
        STANDARD.encode(key)
    )))
}

/// The key a secret stands for.
///
/// # Errors
/// [`SignError::BadSecret`] if it is not `whsec_` + base64.
pub fn key_of(secret: &Secret) -> Result<Vec<u8>, SignError> {
    let b64 = secret
        .expose()
        .strip_prefix(SECRET_PREFIX)
        .ok_or(SignError::BadSecret)?;
    STANDARD.decode(b64).map_err(|_| SignError::BadSecret)
}

/// The `webhook-signature` header value for one request.
pub fn signature(key: &[u8], msg_id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes any key");
    mac.update(msg_id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the Standard Webhooks specification and its
    /// reference libraries.
    #[test]
    fn signs_the_specification_example() {
        let secret = Secret::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
        let key = key_of(&secret).unwrap();
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            signature(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn new_secrets_round_trip() {
        let s = new_secret().unwrap();
        assert!(s.expose().starts_with(SECRET_PREFIX));
        assert_eq!(key_of(&s).unwrap().len(), KEY_BYTES);
        assert!(key_of(&Secret::new("nope")).is_err());
        assert!(format!("{s:?}") == "***");
    }
}
