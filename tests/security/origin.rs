//! The origin allow-list over real handshakes, and the two ways of
//! presenting a token.

use eva_hub::client::ConnectOptions;
use eva_hub::protocol::model::Role;
use eva_hub::protocol::{ClientFrame, Codec, ServerFrame};

use crate::support::*;

fn opts(token: Option<&str>, origin: Option<&str>, in_frame: bool) -> ConnectOptions {
    let mut o = ConnectOptions::new(Codec::Json, "");
    o.token = token.map(Into::into);
    o.origin = origin.map(str::to_owned);
    o.token_in_frame = in_frame;
    o
}

#[tokio::test]
async fn allowed_origins_connect_and_look_alikes_are_refused() {
    let app = spawn().await;
    let token = sign("hs-1", &claims(app.a.id, Role::Operator, "op", None));
    for origin in [
        "https://app.example.com",
        "https://APP.example.com:443",
        "https://console.eva.test",
        "https://a.b.eva.test",
    ] {
        let c = app
            .try_connect_with(opts(Some(&token), Some(origin), false))
            .await;
        assert!(c.is_ok(), "{origin} must be allowed: {c:?}");
    }
    for origin in [
        "https://app.example.com.evil.com",
        "https://evilapp.example.com",
        "http://app.example.com",
        "https://app.example.com:8443",
        "https://app.example.com@evil.com",
        "https://eva.test",
        "https://eva.test.evil.com",
        "https://evileva.test",
        "null",
        "file://",
    ] {
        let (status, body) = app.refusal(opts(Some(&token), Some(origin), false)).await;
        assert_eq!(status, 403, "{origin}: {body}");
        assert!(body.contains("\"forbidden\""), "{body}");
        assert!(
            !body.contains("evil"),
            "the refusal does not echo the origin"
        );
    }
}

#[tokio::test]
async fn browsers_authenticate_in_the_first_frame_and_other_clients_by_header() {
    let app = spawn().await;
    let token = sign("hs-1", &claims(app.a.id, Role::Participant, "p", None));

    // A browser: allowed origin, no header, the token in the first frame.
    let mut c = TestClient {
        client: app
            .try_connect_with(opts(Some(&token), Some(ORIGIN), true))
            .await
            .unwrap(),
    };
    assert!(matches!(c.next().await, ServerFrame::Welcome { .. }));

    // A bad token in the first frame: same validation, closed with 4501.
    let mut forged = token.clone();
    forged.push('x');
    let mut c = TestClient {
        client: app
            .try_connect_with(opts(Some(&forged), Some(ORIGIN), true))
            .await
            .unwrap(),
    };
    assert_eq!(c.closed().await, Some(4501));

    // An expired one: 4002, get a fresh token.
    let mut old = claims(app.a.id, Role::Participant, "p", None);
    old["exp"] = serde_json::json!(now_s() - 60);
    old["nbf"] = serde_json::json!(now_s() - 600);
    let mut c = TestClient {
        client: app
            .try_connect_with(opts(Some(&sign("hs-1", &old)), Some(ORIGIN), true))
            .await
            .unwrap(),
    };
    assert_eq!(c.closed().await, Some(4002));

    // A browser that never authenticates: 4503 after auth_timeout_ms.
    let mut c = TestClient {
        client: app
            .try_connect_with(opts(None, Some(ORIGIN), false))
            .await
            .unwrap(),
    };
    assert_eq!(c.closed().await, Some(4503));

    // Another frame first: 4501.
    let mut c = TestClient {
        client: app
            .try_connect_with(opts(None, Some(ORIGIN), false))
            .await
            .unwrap(),
    };
    c.send(&ClientFrame::Ping { nonce: None }).await;
    assert_eq!(c.closed().await, Some(4501));

    // Not a browser (no Origin): the header is the way, and without it
    // there is no upgrade at all.
    assert!(
        app.try_connect_with(opts(Some(&token), None, false))
            .await
            .is_ok()
    );
    let (status, body) = app.refusal(opts(None, None, false)).await;
    assert_eq!((status, body.as_str()), (401, UNAUTHORIZED));
    let (status, _) = app.refusal(opts(Some(&token), None, true)).await;
    assert_eq!(status, 401, "no Origin and the token in a frame");

    // `missing_origin = "deny"`: only browsers of allowed origins.
    let mut s = settings();
    s.auth.missing_origin = "deny".into();
    let strict = spawn_with(s).await;
    let token = sign("hs-1", &claims(strict.a.id, Role::Participant, "p", None));
    let (status, _) = strict.refusal(opts(Some(&token), None, false)).await;
    assert_eq!(status, 403);
    assert!(
        strict
            .try_connect_with(opts(Some(&token), Some(ORIGIN), false))
            .await
            .is_ok()
    );
}
