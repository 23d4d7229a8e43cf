//! Secrets redact themselves: formatting any frame, setting or credential
//! type for a log (`{:?}`) never shows a token, key, secret or password.

use eva_hub::auth::IssuedToken;
use eva_hub::client::ConnectOptions;
use eva_hub::config::{Settings, TokenKeySettings};
use eva_hub::protocol::{ClientFrame, Codec};

const TOKEN: &str = "eyJhbGciOiJIUzI1NiJ9.c2VjcmV0LWNsYWltcw.c2lnbmF0dXJlLXNlY3JldA";
const PASSWORD: &str = "pa55w0rd-that-must-not-leak";
const HMAC: &str = "an-hmac-secret-that-is-long-enough-0123456789";

fn assert_clean(what: &str, printed: &str) {
    for secret in [TOKEN, PASSWORD, HMAC] {
        assert!(
            !printed.contains(secret),
            "{what} shows a secret: {printed}"
        );
    }
}

#[test]
fn frames_settings_and_credentials_print_no_secret() {
    let auth = ClientFrame::Auth {
        token: TOKEN.into(),
    };
    assert_clean("the auth frame", &format!("{auth:?}"));
    assert_clean("the auth frame, pretty", &format!("{auth:#?}"));

    let opts = ConnectOptions::new(Codec::Json, TOKEN);
    assert_clean("client options", &format!("{opts:?}"));

    let issued = IssuedToken {
        token: TOKEN.into(),
        token_type: "Bearer".into(),
        expires_at: Some(1),
    };
    assert_clean("a minted token", &format!("{issued:?}"));

    let key = eva_hub::auth::api_key::generate().unwrap();
    let printed = format!("{key:?}");
    assert!(!printed.contains(key.expose()), "an API key: {printed}");

    let mut s = Settings::defaults();
    s.store.database_url = format!("postgres://eva:{PASSWORD}@db.internal:5432/eva").into();
    s.redis.url = format!("redis://:{PASSWORD}@redis.internal:6379").into();
    s.auth.keys.push(TokenKeySettings {
        kid: "k1".into(),
        algorithm: "HS256".into(),
        secret: Some(HMAC.into()),
        ..Default::default()
    });
    let printed = format!("{s:?}");
    assert_clean("the settings", &printed);
    assert!(printed.contains("db.internal"), "hosts stay readable");
    assert_clean("the printed config", &s.redacted_json());
}
