//! Connection tokens: JWTs signed by a backend (through `POST /v1/tokens`
//! or `eva-hub token`) and verified by the hub on every connection.
//!
//! Validation is strict, and each rule is here for an attack:
//! * the token's `kid` must name a configured key, and the key's configured
//!   algorithm is the only one accepted for it. The header's `alg` is
//!   never trusted to choose: `alg: none` does not parse, and an HS256
//!   token made with an RSA key's public PEM as the HMAC secret (key
//!   confusion) is refused because that kid only accepts RS256;
//! * `exp`, `nbf`, `sub`, `aud` and `iss` are required; `aud` and `iss`
//!   must equal the configured values; `exp` and `nbf` get `leeway_s` of
//!   clock skew, no more; a token may not live longer than
//!   `token_ttl_max_s`;
//! * headers with `crit` extensions are refused (none is understood).
//!
//! Errors never quote the token or its claims: they name the rule that
//! failed.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use super::{AuthError, Grant, IssuedToken};
use crate::config::{AuthSettings, TokenKeySettings};
use crate::ids::{SessionId, TenantId};
use crate::protocol::model::Role;

/// Longer "tokens" are refused before any parsing.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// Most sessions one token may name.
pub const MAX_TOKEN_SESSIONS: usize = 100;
/// Shortest HS256 secret accepted: 256 bits.
pub const MIN_SECRET_BYTES: usize = 32;

/// The claims of a connection token.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub struct Claims {
    /// The participant, operator or renderer id.
    pub sub: String,
    pub tenant: TenantId,
    pub role: Role,
    /// Sessions the token may join; absent: any session of the tenant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sessions: Option<Vec<SessionId>>,
    /// Display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub exp: u64,
    pub nbf: u64,
    #[serde(default)]
    pub iat: u64,
    pub iss: String,
    pub aud: Audience,
}

/// `aud` is a string or a list of strings (RFC 7519 §4.1.3). The library
/// has already checked that it names this hub.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Audience {
    One(String),
    Many(Vec<String>),
}

/// Why the key settings are unusable. Each message names the setting to
/// fix.
#[derive(Debug, thiserror::Error)]
pub enum KeyConfigError {
    #[error(
        "no connection-token keys are configured: the hub cannot verify anyone.\n\
         Set at least one key, either in a settings file (--config FILE):\n\
         \n    [[auth.keys]]\n    kid = \"k1\"\n    algorithm = \"HS256\"\n    \
         secret_file = \"/run/secrets/eva-hub-jwt\"   # 32 or more random bytes\n\
         \nor in the environment:\n\
         \n    EVA_HUB__AUTH__KEYS='[{{kid=\"k1\",algorithm=\"HS256\",secret_env=\"EVA_HUB_JWT_SECRET\"}}]'\
         \n    EVA_HUB_JWT_SECRET=\"$(openssl rand -base64 48)\"\n\
         \nRS256 and ES256 keys take public_key_file (and private_key_file where tokens \
         are minted); config/default.toml documents every field. Or run \
         `eva-hub serve --dev` for an INSECURE development hub that trusts \
         client-claimed identities."
    )]
    NoKeys,
    #[error("auth.keys[{index}] (kid {kid:?}): {problem}")]
    Key {
        index: usize,
        kid: String,
        problem: String,
    },
    #[error("auth.signing_kid {0:?} names no key in auth.keys that has signing material")]
    UnknownSigningKid(String),
    #[error(
        "several keys in auth.keys can sign ({0}); set auth.signing_kid to the one that \
         signs new tokens"
    )]
    AmbiguousSigner(String),
}

/// A key that verifies tokens whose header names its kid.
struct VerifyKey {
    key: DecodingKey,
    /// Pinned to the key's algorithm, with `aud`, `iss`, leeway and the
    /// required claims.
    validation: Validation,
}

struct Signer {
    kid: String,
    algorithm: Algorithm,
    key: EncodingKey,
}

/// The configured token keys.
pub struct Keyring {
    keys: HashMap<String, VerifyKey>,
    signer: Option<Signer>,
    issuer: String,
    audience: String,
    leeway: u64,
    ttl: Duration,
    ttl_max: Duration,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut kids: Vec<_> = self.keys.keys().collect();
        kids.sort();
        f.debug_struct("Keyring")
            .field("kids", &kids)
            .field("signing_kid", &self.signer.as_ref().map(|s| &s.kid))
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .finish()
    }
}

fn parse_algorithm(name: &str) -> Result<Algorithm, String> {
    match name {
        "HS256" => Ok(Algorithm::HS256),
        "RS256" => Ok(Algorithm::RS256),
        "ES256" => Ok(Algorithm::ES256),
        other => Err(format!(
            "algorithm {other:?} is not supported: use HS256, RS256 or ES256"
        )),
    }
}

/// Reads one secret from the first of file, environment variable, inline
/// value that is set.
fn material(
    what: &str,
    file: Option<&std::path::Path>,
    env: Option<&str>,
    inline: Option<&str>,
) -> Result<Option<Vec<u8>>, String> {
    if let Some(path) = file {
        let bytes = std::fs::read(path)
            .map_err(|e| format!("cannot read {what} file {}: {e}", path.display()))?;
        return Ok(Some(bytes));
    }
    if let Some(var) = env {
        return match std::env::var(var) {
            Ok(v) if !v.is_empty() => Ok(Some(v.into_bytes())),
            _ => Err(format!(
                "{what} environment variable {var} is not set (or empty)"
            )),
        };
    }
    Ok(inline.map(|s| s.as_bytes().to_vec()))
}

/// Trims the trailing newline a secret file usually ends with.
fn trim_secret(mut s: Vec<u8>) -> Vec<u8> {
    while s.last().is_some_and(|b| b.is_ascii_whitespace()) {
        s.pop();
    }
    s
}

fn validation(algorithm: Algorithm, auth: &AuthSettings) -> Validation {
    let mut v = Validation::new(algorithm);
    v.leeway = auth.leeway_s;
    v.validate_exp = true;
    v.validate_nbf = true;
    v.validate_aud = true;
    v.set_audience(&[&auth.audience]);
    v.set_issuer(&[&auth.issuer]);
    v.set_required_spec_claims(&["exp", "nbf", "sub", "aud", "iss"]);
    v
}

impl Keyring {
    /// Loads and checks every configured key. A key with both signing and
    /// verifying material must verify what it signs, so a mismatched pair
    /// fails here rather than on the first connection.
    ///
    /// # Errors
    /// [`KeyConfigError`] naming the setting to fix.
    pub fn from_settings(auth: &AuthSettings) -> Result<Keyring, KeyConfigError> {
        if auth.keys.is_empty() {
            return Err(KeyConfigError::NoKeys);
        }
        let mut keys = HashMap::new();
        let mut signers = Vec::new();
        for (index, k) in auth.keys.iter().enumerate() {
            let fail = |problem: String| KeyConfigError::Key {
                index,
                kid: k.kid.clone(),
                problem,
            };
            if k.kid.is_empty() || k.kid.len() > 128 {
                return Err(fail("kid must be 1 to 128 characters".into()));
            }
            if keys.contains_key(&k.kid) {
                return Err(fail("another key has the same kid".into()));
            }
            let algorithm = parse_algorithm(&k.algorithm).map_err(fail)?;
            let (verify, sign) = load_key(algorithm, k).map_err(fail)?;
            if let Some(sign) = &sign {
                probe(algorithm, sign, &verify, &k.kid).map_err(fail)?;
                signers.push(Signer {
                    kid: k.kid.clone(),
                    algorithm,
                    key: sign.clone(),
                });
            }
            keys.insert(
                k.kid.clone(),
                VerifyKey {
                    key: verify,
                    validation: validation(algorithm, auth),
                },
            );
        }
        let signer = if auth.signing_kid.is_empty() {
            match signers.len() {
                0 | 1 => signers.pop(),
                _ => {
                    let kids: Vec<_> = signers.iter().map(|s| s.kid.as_str()).collect();
                    return Err(KeyConfigError::AmbiguousSigner(kids.join(", ")));
                }
            }
        } else {
            Some(
                signers
                    .into_iter()
                    .find(|s| s.kid == auth.signing_kid)
                    .ok_or_else(|| KeyConfigError::UnknownSigningKid(auth.signing_kid.clone()))?,
            )
        };
        Ok(Keyring {
            keys,
            signer,
            issuer: auth.issuer.clone(),
            audience: auth.audience.clone(),
            leeway: auth.leeway_s,
            ttl: Duration::from_secs(auth.token_ttl_s),
            ttl_max: Duration::from_secs(auth.token_ttl_max_s),
        })
    }

    /// The kid that signs new tokens, if this hub can mint.
    pub fn signing_kid(&self) -> Option<&str> {
        self.signer.as_ref().map(|s| s.kid.as_str())
    }

    /// Clock skew tolerated on `exp` and `nbf`, in seconds.
    pub fn leeway_s(&self) -> u64 {
        self.leeway
    }

    /// Verifies a token and returns its claims.
    ///
    /// # Errors
    /// [`AuthError::Expired`] for a token past `exp` (plus leeway),
    /// [`AuthError::Invalid`] naming the failed rule for anything else.
    pub fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        let invalid = |why: &str| AuthError::Invalid(why.to_owned());
        if token.len() > MAX_TOKEN_BYTES {
            return Err(invalid("token too long"));
        }
        let header =
            jsonwebtoken::decode_header(token).map_err(|_| invalid("malformed token header"))?;
        if header.crit.is_some() {
            return Err(invalid("token header has critical extensions"));
        }
        let kid = header
            .kid
            .as_deref()
            .ok_or_else(|| invalid("token has no kid"))?;
        let key = self.keys.get(kid).ok_or_else(|| invalid("unknown kid"))?;
        let data = jsonwebtoken::decode::<Claims>(token, &key.key, &key.validation)
            .map_err(|e| describe(e.kind()))?;
        let claims = data.claims;
        // RFC 7519: not accepted *on or after* exp. (The library accepts
        // the second of exp itself.) This is also the instant an open
        // connection with this token is closed.
        if claims.exp.saturating_add(self.leeway) <= crate::ids::now_ms() / 1000 {
            return Err(AuthError::Expired);
        }
        if claims.exp.saturating_sub(claims.nbf.max(claims.iat))
            > self.ttl_max.as_secs() + self.leeway
        {
            return Err(invalid("token lifetime exceeds auth.token_ttl_max_s"));
        }
        check_claims(&claims)?;
        Ok(claims)
    }

    /// Signs a token for `grant`, valid from `now` (Unix seconds).
    ///
    /// # Errors
    /// [`AuthError::Unavailable`] when no key with signing material is
    /// configured; [`AuthError::Invalid`] for a grant no token may carry.
    pub fn sign(&self, grant: &Grant, now: u64) -> Result<IssuedToken, AuthError> {
        let signer = self.signer.as_ref().ok_or_else(|| {
            AuthError::Unavailable(
                "no key with signing material is configured (auth.keys, auth.signing_kid)".into(),
            )
        })?;
        let ttl = grant
            .ttl
            .unwrap_or(self.ttl)
            .min(self.ttl_max)
            .max(Duration::from_secs(1));
        let claims = Claims {
            sub: grant.subject.clone(),
            tenant: grant.tenant,
            role: grant.role,
            sessions: grant.sessions.clone(),
            name: grant.name.clone(),
            exp: now + ttl.as_secs(),
            nbf: now,
            iat: now,
            iss: self.issuer.clone(),
            aud: Audience::One(self.audience.clone()),
        };
        check_claims(&claims)?;
        let mut header = Header::new(signer.algorithm);
        header.kid = Some(signer.kid.clone());
        let token = jsonwebtoken::encode(&header, &claims, &signer.key).map_err(|e| {
            AuthError::Unavailable(format!("signing failed: {}", describe_kind(e.kind())))
        })?;
        Ok(IssuedToken {
            token,
            token_type: "Bearer".into(),
            expires_at: Some(claims.exp),
        })
    }
}

/// Limits on what a token may carry, for minting and verification alike.
fn check_claims(c: &Claims) -> Result<(), AuthError> {
    let invalid = |why: &str| Err(AuthError::Invalid(why.to_owned()));
    if c.sub.is_empty() || c.sub.len() > 255 || c.sub.chars().any(char::is_control) {
        return invalid("sub must be 1 to 255 bytes without control characters");
    }
    if c.name.as_ref().is_some_and(|n| n.len() > 255) {
        return invalid("name is longer than 255 bytes");
    }
    if c.sessions
        .as_ref()
        .is_some_and(|s| s.len() > MAX_TOKEN_SESSIONS)
    {
        return invalid("a token names at most 100 sessions");
    }
    Ok(())
}

/// The rule a library error stands for, never its details (which can
/// quote claim values).
fn describe(kind: &ErrorKind) -> AuthError {
    match kind {
        ErrorKind::ExpiredSignature => AuthError::Expired,
        other => AuthError::Invalid(describe_kind(other).to_owned()),
    }
}

fn describe_kind(kind: &ErrorKind) -> &'static str {
    match kind {
        ErrorKind::InvalidToken => "malformed token",
        ErrorKind::InvalidSignature => "bad signature",
        ErrorKind::InvalidAlgorithm | ErrorKind::MissingAlgorithm => {
            "algorithm not accepted for this kid"
        }
        ErrorKind::InvalidKeyFormat
        | ErrorKind::InvalidEcdsaKey
        | ErrorKind::InvalidRsaKey(_)
        | ErrorKind::RsaFailedSigning
        | ErrorKind::InvalidEddsaKey => "key does not fit the algorithm",
        ErrorKind::ExpiredSignature => "token expired",
        ErrorKind::ImmatureSignature => "token not valid yet (nbf)",
        ErrorKind::InvalidIssuer => "wrong iss",
        ErrorKind::InvalidAudience => "wrong aud",
        ErrorKind::InvalidSubject => "wrong sub",
        ErrorKind::MissingRequiredClaim(c) => match c.as_str() {
            "exp" => "missing claim exp",
            "nbf" => "missing claim nbf",
            "sub" => "missing claim sub",
            "aud" => "missing claim aud",
            "iss" => "missing claim iss",
            _ => "missing claim",
        },
        ErrorKind::InvalidClaimFormat(_) => "malformed claim",
        ErrorKind::Base64(_) => "malformed token encoding",
        ErrorKind::Json(_) | ErrorKind::Utf8(_) => "malformed token claims",
        _ => "token refused",
    }
}

/// Builds the verifying key and, when its material is configured, the
/// signing key.
fn load_key(
    algorithm: Algorithm,
    k: &TokenKeySettings,
) -> Result<(DecodingKey, Option<EncodingKey>), String> {
    match algorithm {
        Algorithm::HS256 => {
            if k.public_key.is_some()
                || k.public_key_file.is_some()
                || k.private_key.is_some()
                || k.private_key_file.is_some()
                || k.private_key_env.is_some()
            {
                return Err("HS256 keys take a secret, not public or private keys".into());
            }
            let secret = material(
                "secret",
                k.secret_file.as_deref(),
                k.secret_env.as_deref(),
                k.secret.as_deref(),
            )?
            .map(trim_secret)
            .ok_or("HS256 needs a secret: set secret_file, secret_env or secret")?;
            if secret.len() < MIN_SECRET_BYTES {
                return Err(format!(
                    "the HS256 secret is {} bytes; use at least {MIN_SECRET_BYTES} random bytes \
                     (e.g. `openssl rand -base64 48`)",
                    secret.len()
                ));
            }
            Ok((
                DecodingKey::from_secret(&secret),
                Some(EncodingKey::from_secret(&secret)),
            ))
        }
        Algorithm::RS256 | Algorithm::ES256 => {
            if k.secret.is_some() || k.secret_file.is_some() || k.secret_env.is_some() {
                return Err(format!(
                    "{} keys take public_key_file/private_key_file, not a secret",
                    k.algorithm
                ));
            }
            let public = material(
                "public key",
                k.public_key_file.as_deref(),
                None,
                k.public_key.as_deref(),
            )?
            .ok_or("needs the PEM public key: set public_key_file (or public_key)")?;
            let rsa = algorithm == Algorithm::RS256;
            let verify = if rsa {
                DecodingKey::from_rsa_pem(&public)
            } else {
                DecodingKey::from_ec_pem(&public)
            }
            .map_err(|_| format!("the public key is not a PEM {} public key", k.algorithm))?;
            let private = material(
                "private key",
                k.private_key_file.as_deref(),
                k.private_key_env.as_deref(),
                k.private_key.as_deref(),
            )?;
            let sign = match private {
                None => None,
                Some(pem) => Some(
                    if rsa {
                        EncodingKey::from_rsa_pem(&pem)
                    } else {
                        EncodingKey::from_ec_pem(&pem)
                    }
                    .map_err(|_| {
                        format!(
                            "the private key is not a PEM (PKCS#8) {} private key",
                            k.algorithm
                        )
                    })?,
                ),
            };
            Ok((verify, sign))
        }
        _ => Err("unsupported algorithm".into()),
    }
}

/// Signs and verifies a throwaway token with a key pair.
fn probe(
    algorithm: Algorithm,
    sign: &EncodingKey,
    verify: &DecodingKey,
    kid: &str,
) -> Result<(), String> {
    let mut header = Header::new(algorithm);
    header.kid = Some(kid.to_owned());
    let token = jsonwebtoken::encode(&header, &serde_json::json!({"probe": true}), sign)
        .map_err(|_| "the private key cannot sign with this algorithm".to_owned())?;
    let mut v = Validation::new(algorithm);
    v.validate_exp = false;
    v.validate_aud = false;
    v.set_required_spec_claims::<&str>(&[]);
    jsonwebtoken::decode::<serde_json::Value>(&token, verify, &v)
        .map(|_| ())
        .map_err(|_| "the private key does not match the public key".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Settings;

    const SECRET: &str = "0123456789abcdef0123456789abcdef-test";

    fn settings(keys: Vec<TokenKeySettings>) -> AuthSettings {
        let mut s = Settings::defaults().auth;
        s.keys = keys;
        s
    }

    fn hs(kid: &str, secret: &str) -> TokenKeySettings {
        TokenKeySettings {
            kid: kid.into(),
            algorithm: "HS256".into(),
            secret: Some(secret.into()),
            ..Default::default()
        }
    }

    fn grant() -> Grant {
        Grant {
            tenant: TenantId::new(),
            subject: "alice".into(),
            role: Role::Participant,
            name: Some("Alice".into()),
            sessions: Some(vec![SessionId::new()]),
            ttl: None,
        }
    }

    fn now() -> u64 {
        crate::ids::now_ms() / 1000
    }

    #[test]
    fn round_trip() {
        let ring = Keyring::from_settings(&settings(vec![hs("k1", SECRET)])).unwrap();
        let g = grant();
        let t = ring.sign(&g, now()).unwrap();
        let c = ring.verify(&t.token).unwrap();
        assert_eq!(c.sub, "alice");
        assert_eq!(c.tenant, g.tenant);
        assert_eq!(c.sessions, g.sessions);
        assert_eq!(Some(c.exp), t.expires_at);
    }

    #[test]
    fn configuration_errors_name_the_setting() {
        let e = Keyring::from_settings(&settings(vec![])).unwrap_err();
        assert!(e.to_string().contains("EVA_HUB__AUTH__KEYS"), "{e}");
        assert!(e.to_string().contains("[[auth.keys]]"), "{e}");
        let e = Keyring::from_settings(&settings(vec![hs("k1", "short")])).unwrap_err();
        assert!(e.to_string().contains("at least 32"), "{e}");
        let e = Keyring::from_settings(&settings(vec![hs("k1", SECRET), hs("k1", SECRET)]))
            .unwrap_err();
        assert!(e.to_string().contains("same kid"), "{e}");
        let e =
            Keyring::from_settings(&settings(vec![hs("a", SECRET), hs("b", SECRET)])).unwrap_err();
        assert!(e.to_string().contains("auth.signing_kid"), "{e}");
        let mut s = settings(vec![hs("a", SECRET)]);
        s.signing_kid = "zzz".into();
        assert!(matches!(
            Keyring::from_settings(&s),
            Err(KeyConfigError::UnknownSigningKid(_))
        ));
        let mut k = hs("k1", SECRET);
        k.algorithm = "none".into();
        assert!(Keyring::from_settings(&settings(vec![k])).is_err());
        let k = TokenKeySettings {
            kid: "e".into(),
            algorithm: "HS256".into(),
            secret_env: Some("EVA_HUB_TEST_SURELY_UNSET_VARIABLE".into()),
            ..Default::default()
        };
        let e = Keyring::from_settings(&settings(vec![k])).unwrap_err();
        assert!(
            e.to_string().contains("EVA_HUB_TEST_SURELY_UNSET_VARIABLE"),
            "{e}"
        );
    }

    #[test]
    fn refusals_never_quote_the_token() {
        let ring = Keyring::from_settings(&settings(vec![hs("k1", SECRET)])).unwrap();
        let t = ring.sign(&grant(), now()).unwrap().token;
        // Flip the signature's first character (a full 6 bits, so the
        // result is still valid base64).
        let cut = t.rfind('.').unwrap() + 1;
        let first = if &t[cut..=cut] == "A" { "B" } else { "A" };
        let tampered = format!("{}{first}{}", &t[..cut], &t[cut + 1..]);
        let signature = tampered.rsplit('.').next().unwrap();
        let e = ring.verify(&tampered).unwrap_err().to_string();
        assert_eq!(e, "invalid credentials: bad signature");
        assert!(!e.contains(signature));
        for bad in ["a.b.c", "garbage", ""] {
            assert!(ring.verify(bad).is_err());
        }
    }

    /// Each forged token fails on the rule meant for it, not by accident.
    #[test]
    fn forgeries_fail_on_their_rule() {
        use base64::Engine;
        let b64 = |v: serde_json::Value| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
        };
        let rsa_public = include_str!("../../tests/security/keys/rsa-test-public.pem");
        let rs = TokenKeySettings {
            kid: "rs".into(),
            algorithm: "RS256".into(),
            public_key: Some(rsa_public.into()),
            ..Default::default()
        };
        let ring = Keyring::from_settings(&settings(vec![hs("k1", SECRET), rs])).unwrap();
        let claims = serde_json::to_value(
            ring.verify(&ring.sign(&grant(), now()).unwrap().token)
                .unwrap(),
        )
        .unwrap();
        let body = format!(
            "{}.{}",
            b64(serde_json::json!({"alg": "HS256", "kid": "rs"})),
            b64(claims.clone())
        );
        let sig = jsonwebtoken::crypto::sign(
            body.as_bytes(),
            &EncodingKey::from_secret(rsa_public.as_bytes()),
            Algorithm::HS256,
        )
        .unwrap();
        let reason = |t: &str| ring.verify(t).unwrap_err().to_string();
        assert!(
            reason(&format!("{body}.{sig}")).contains("algorithm not accepted for this kid"),
            "key confusion"
        );
        let none = format!(
            "{}.{}.",
            b64(serde_json::json!({"alg": "none", "kid": "k1"})),
            b64(claims.clone())
        );
        assert!(reason(&none).contains("malformed token header"), "alg none");
        let unknown = format!(
            "{}.{}.x",
            b64(serde_json::json!({"alg": "HS256", "kid": "k9"})),
            b64(claims)
        );
        assert!(reason(&unknown).contains("unknown kid"));
    }

    #[test]
    fn expired_and_immature_tokens() {
        let ring = Keyring::from_settings(&settings(vec![hs("k1", SECRET)])).unwrap();
        let old = ring.sign(&grant(), now() - 10_000).unwrap().token;
        assert!(matches!(ring.verify(&old), Err(AuthError::Expired)));
        let future = ring.sign(&grant(), now() + 10_000).unwrap().token;
        assert!(matches!(ring.verify(&future), Err(AuthError::Invalid(_))));
    }
}
