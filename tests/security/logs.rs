//! No credential ever reaches the logs: every path a token or key takes
//! (accepted, refused, expired, in a header, in a frame, on REST, minted)
//! is exercised with debug logging captured, then the capture is searched.

use eva_hub::client::ConnectOptions;
use eva_hub::protocol::Codec;
use eva_hub::protocol::model::Role;
use serde_json::json;

use crate::support::*;

/// The parts of a secret that must not appear: the whole, and for a JWT
/// its signature (a token is only usable with it).
fn needles(secret: &str) -> Vec<String> {
    let mut v = vec![secret.to_owned()];
    if let Some(sig) = secret.rsplit('.').next().filter(|s| s.len() > 16) {
        v.push(sig.to_owned());
    }
    if let Some(rest) = secret.strip_prefix("evk_") {
        v.push(rest.to_owned());
    }
    v
}

#[tokio::test]
async fn credentials_never_appear_in_the_logs() {
    let app = spawn().await;
    let mut secrets = vec![
        HS_SECRET.to_owned(),
        OLD_SECRET.to_owned(),
        app.a.admin.clone(),
        app.a.writer.clone(),
        app.a.reader.clone(),
        app.b.admin.clone(),
    ];
    let session = app.session(&app.a).await;

    // Accepted: header, frame, every algorithm.
    for kid in ["hs-1", "rs-1", "es-1"] {
        let t = sign(kid, &claims(app.a.id, Role::Operator, "op", None));
        let mut c = app.connect(&t).await;
        c.join(session).await;
        secrets.push(t);
    }
    let minted = app.participant(&app.a, "p", session).await;
    let mut o = ConnectOptions::new(Codec::Json, minted.clone());
    o.origin = Some(ORIGIN.into());
    o.token_in_frame = true;
    let mut c = TestClient {
        client: app.try_connect_with(o).await.unwrap(),
    };
    c.next().await;
    secrets.push(minted);

    // Refused: forged, expired, wrong audience, in a header and a frame.
    let mut expired = claims(app.a.id, Role::Operator, "op", None);
    expired["exp"] = json!(now_s() - 100);
    expired["nbf"] = json!(now_s() - 500);
    let mut wrong_aud = claims(app.a.id, Role::Operator, "op", None);
    wrong_aud["aud"] = json!("elsewhere");
    let good = sign("hs-1", &claims(app.a.id, Role::Operator, "op", None));
    let forged = format!("{}A", &good[..good.len() - 1]);
    for t in [sign("hs-1", &expired), sign("hs-1", &wrong_aud), forged] {
        let _ = app.try_connect(&t).await;
        let mut o = ConnectOptions::new(Codec::Json, t.clone());
        o.origin = Some(ORIGIN.into());
        o.token_in_frame = true;
        if let Ok(mut client) = app.try_connect_with(o).await {
            // Only the logs matter here: read until the hub is done with it.
            while let Ok(eva_hub::client::Incoming::Frame(_)) = client.recv_timeout(WAIT).await {}
        }
        let _ = app.get("/v1/sessions", &t).await;
        secrets.push(t);
    }

    // REST: good keys, a revoked key, a new key, an unknown key.
    let created = app
        .post(
            "/v1/keys",
            &app.a.admin,
            json!({"name": "temp", "scopes": ["eva:read"]}),
        )
        .await
        .json();
    let temp = created["key"].as_str().unwrap().to_owned();
    app.get("/v1/sessions", &temp).await;
    app.call(
        reqwest::Method::DELETE,
        &format!("/v1/keys/{}", created["id"].as_str().unwrap()),
        Some(&app.a.admin),
        None,
    )
    .await;
    app.get("/v1/sessions", &temp).await;
    let unknown = eva_hub::auth::api_key::generate().unwrap();
    app.get("/v1/sessions", unknown.expose()).await;
    secrets.push(temp);
    secrets.push(unknown.expose().to_owned());

    let logs = logs();
    assert!(
        logs.contains("authentication refused"),
        "the capture works: refusals are logged"
    );
    for s in &secrets {
        for n in needles(s) {
            assert!(!logs.contains(&n), "a credential appears in the logs");
        }
    }
}
