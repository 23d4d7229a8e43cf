//! Every broken or forged credential is refused before the upgrade, with
//! one and the same answer, whatever is wrong with it.

use eva_hub::client::ConnectOptions;
use eva_hub::ids::TenantId;
use eva_hub::protocol::Codec;
use eva_hub::protocol::model::Role;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::json;

use crate::support::*;

fn header(token: &str) -> ConnectOptions {
    ConnectOptions::new(Codec::Json, token)
}

#[tokio::test]
async fn bad_tokens_are_refused_before_the_upgrade_and_all_look_alike() {
    let app = spawn().await;
    let t = app.a.id;
    let good = claims(t, Role::Operator, "op-1", None);
    let now = now_s();

    // The control: each key signs tokens the hub accepts.
    for kid in ["hs-1", "hs-old", "rs-1", "es-1"] {
        app.connect(&sign(kid, &good)).await;
    }

    let mut bad: Vec<(&str, ConnectOptions)> = Vec::new();
    // No credentials at all, from a client that is not a browser.
    let mut none = header("unused");
    none.token = None;
    bad.push(("missing token", none));
    bad.push(("empty bearer", {
        let mut o = header("unused");
        o.token = Some(String::new().into());
        o
    }));
    bad.push(("not a JWT", header("hello")));
    let mut expired = good.clone();
    expired["exp"] = json!(now - 120);
    expired["iat"] = json!(now - 900);
    expired["nbf"] = json!(now - 900);
    // Expired and not genuine: refused like any forgery, so expiry is
    // only ever reported for a token whose signature verified.
    bad.push((
        "expired and forged",
        header(&craft(
            json!({"alg": "HS256", "kid": "hs-1"}),
            &expired,
            Some((
                Algorithm::HS256,
                EncodingKey::from_secret(b"an-attacker-secret-of-32-bytes-or-more!!"),
            )),
        )),
    ));
    let mut c = good.clone();
    c["nbf"] = json!(now + 300);
    c["exp"] = json!(now + 900);
    bad.push(("nbf in the future", header(&sign("hs-1", &c))));
    let mut c = good.clone();
    c["aud"] = json!("someone-else");
    bad.push(("wrong aud", header(&sign("hs-1", &c))));
    let mut c = good.clone();
    c["aud"] = json!(["someone-else", "another"]);
    bad.push(("wrong aud list", header(&sign("hs-1", &c))));
    let mut c = good.clone();
    c["iss"] = json!("https://evil.example");
    bad.push(("wrong iss", header(&sign("hs-1", &c))));
    for claim in ["exp", "nbf", "sub", "aud", "iss"] {
        let mut c = good.clone();
        c.as_object_mut().unwrap().remove(claim);
        bad.push(("missing claim", header(&sign("hs-1", &c))));
    }
    let mut c = good.clone();
    c["exp"] = json!(now + 30 * 86400);
    bad.push(("lifetime over the maximum", header(&sign("hs-1", &c))));
    bad.push((
        "alg none",
        header(&craft(
            json!({"alg": "none", "typ": "JWT", "kid": "hs-1"}),
            &good,
            None,
        )),
    ));
    bad.push((
        "alg none without kid",
        header(&craft(json!({"alg": "none"}), &good, None)),
    ));
    // Key confusion: HS256 with the RSA public key as the HMAC secret.
    bad.push((
        "HS256 signed with the RSA public key",
        header(&craft(
            json!({"alg": "HS256", "typ": "JWT", "kid": "rs-1"}),
            &good,
            Some((
                Algorithm::HS256,
                EncodingKey::from_secret(RSA_PUBLIC.as_bytes()),
            )),
        )),
    ));
    bad.push((
        "HS256 signed with the EC public key",
        header(&craft(
            json!({"alg": "HS256", "kid": "es-1"}),
            &good,
            Some((
                Algorithm::HS256,
                EncodingKey::from_secret(EC_PUBLIC.as_bytes()),
            )),
        )),
    ));
    // An HS256 kid with an RS256 header (signed by the real RSA key).
    bad.push((
        "algorithm switched for a kid",
        header(&craft(
            json!({"alg": "RS256", "kid": "hs-1"}),
            &good,
            Some((
                Algorithm::RS256,
                EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap(),
            )),
        )),
    ));
    // Tampered payload: a participant token turned into an operator's.
    let participant = sign("hs-1", &claims(t, Role::Participant, "p-1", None));
    let parts: Vec<&str> = participant.split('.').collect();
    let mut forged = claims(t, Role::Operator, "p-1", None);
    forged["iat"] = json!(now);
    let forged_payload = {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(forged.to_string())
    };
    bad.push((
        "tampered payload",
        header(&format!("{}.{}.{}", parts[0], forged_payload, parts[2])),
    ));
    // Tampered tenant.
    let other = claims(TenantId::new(), Role::Operator, "op-1", None);
    let other_payload = {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(other.to_string())
    };
    let op = sign("hs-1", &good);
    let p: Vec<&str> = op.split('.').collect();
    bad.push((
        "tampered tenant",
        header(&format!("{}.{}.{}", p[0], other_payload, p[2])),
    ));
    bad.push(("signature cut off", header(&format!("{}.{}.", p[0], p[1]))));
    bad.push((
        "unknown kid",
        header(&craft(
            json!({"alg": "HS256", "kid": "hs-9"}),
            &good,
            Some((
                Algorithm::HS256,
                EncodingKey::from_secret(HS_SECRET.as_bytes()),
            )),
        )),
    ));
    bad.push((
        "no kid",
        header(&craft(
            json!({"alg": "HS256"}),
            &good,
            Some((
                Algorithm::HS256,
                EncodingKey::from_secret(HS_SECRET.as_bytes()),
            )),
        )),
    ));
    bad.push((
        "unknown secret",
        header(&craft(
            json!({"alg": "HS256", "kid": "hs-1"}),
            &good,
            Some((
                Algorithm::HS256,
                EncodingKey::from_secret(b"an-attacker-secret-of-32-bytes-or-more!!"),
            )),
        )),
    ));
    bad.push((
        "critical header extension",
        header(&craft(
            json!({"alg": "HS256", "kid": "hs-1", "crit": ["exp"]}),
            &good,
            Some((
                Algorithm::HS256,
                EncodingKey::from_secret(HS_SECRET.as_bytes()),
            )),
        )),
    ));
    // API keys are not connection tokens.
    bad.push(("an API key", header(&app.a.admin)));
    bad.push(("oversized", header(&"a".repeat(9000))));

    for (what, opts) in bad {
        let (status, body) = app.refusal(opts).await;
        assert_eq!(status, 401, "{what}: {body}");
        assert_eq!(body, UNAUTHORIZED, "{what}: the refusal must not say why");
    }

    // A genuine token past its expiry: the client is told to get a fresh
    // one, so a reconnect after a long outage is not mistaken for a final
    // refusal.
    let (status, body) = app.refusal(header(&sign("hs-1", &expired))).await;
    assert_eq!(status, 401, "{body}");
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["error"]["code"], "token_expired", "{body}");
}

#[tokio::test]
async fn api_keys_that_are_revoked_expired_unknown_or_tokens_are_refused_alike() {
    let app = spawn().await;
    let ok = app.get("/v1/sessions", &app.a.reader).await;
    assert_eq!(ok.status, 200, "{}", ok.body);

    // Revoked: through the admin API.
    let created = app
        .post(
            "/v1/keys",
            &app.a.admin,
            json!({"name": "short-lived", "scopes": ["eva:read"]}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let key = created.json()["key"].as_str().unwrap().to_owned();
    let id = created.json()["id"].as_str().unwrap().to_owned();
    assert_eq!(app.get("/v1/sessions", &key).await.status, 200);
    let revoked = app
        .call(
            reqwest::Method::DELETE,
            &format!("/v1/keys/{id}"),
            Some(&app.a.admin),
            None,
        )
        .await;
    assert_eq!(revoked.status, 204, "{}", revoked.body);

    // Expired: written with an expiry that has since passed.
    let expiring = app
        .post(
            "/v1/keys",
            &app.a.admin,
            json!({
                "name": "expiring",
                "scopes": ["eva:read"],
                "expires_at": (chrono::Utc::now() + chrono::Duration::milliseconds(1500)).to_rfc3339(),
            }),
        )
        .await;
    assert_eq!(expiring.status, 201, "{}", expiring.body);
    let expiring = expiring.json()["key"].as_str().unwrap().to_owned();
    assert_eq!(app.get("/v1/sessions", &expiring).await.status, 200);
    tokio::time::sleep(std::time::Duration::from_millis(1600)).await;

    let session = app.session(&app.a).await;
    let participant_jwt = app.participant(&app.a, "p", session).await;
    let unknown = eva_hub::auth::api_key::generate().unwrap();
    let mut flipped = app.a.admin.clone();
    let last = flipped.pop().unwrap();
    flipped.push(if last == 'A' { 'B' } else { 'A' });
    for (what, key) in [
        ("revoked", key.as_str()),
        ("expired", expiring.as_str()),
        ("unknown", unknown.expose()),
        ("one character off", flipped.as_str()),
        ("a connection token", participant_jwt.as_str()),
        ("garbage", "x"),
    ] {
        let a = app.get("/v1/sessions", key).await;
        assert_eq!(a.status, 401, "{what}: {}", a.body);
        assert_eq!(a.body, UNAUTHORIZED, "{what}");
    }
    let a = app
        .call(reqwest::Method::GET, "/v1/sessions", None, None)
        .await;
    assert_eq!((a.status, a.body.as_str()), (401, UNAUTHORIZED), "no key");
    let a = app
        .http
        .get(app.url("/v1/sessions"))
        .header("authorization", format!("Basic {}", app.a.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(a.status(), 401, "not a bearer");
}

#[tokio::test]
async fn rotation_keeps_old_kids_until_they_are_removed() {
    let app = spawn().await;
    let session = app.session(&app.a).await;
    // New tokens are signed with the configured signing kid.
    let token = app.participant(&app.a, "p", session).await;
    let header = jsonwebtoken::decode_header(&token).unwrap();
    assert_eq!(header.kid.as_deref(), Some("hs-1"));
    assert_eq!(header.alg, Algorithm::HS256);
    // A token from the previous key still works while it is listed...
    let old = sign("hs-old", &claims(app.a.id, Role::Operator, "op", None));
    app.connect(&old).await;
    // ...and stops once it is removed, while the new one keeps working.
    let mut s = settings();
    s.auth.keys.retain(|k| k.kid != "hs-old");
    let rotated = spawn_with(s).await;
    let (status, body) = rotated
        .refusal(ConnectOptions::new(Codec::Json, &old))
        .await;
    assert_eq!((status, body.as_str()), (401, UNAUTHORIZED));
    rotated
        .connect(&sign(
            "hs-1",
            &claims(rotated.a.id, Role::Operator, "op", None),
        ))
        .await;
}
