//! A token that expires while its connection is open closes the
//! connection with 4002 when it expires, not at the next heartbeat.

use std::time::{Duration, Instant};

use eva_hub::client::ConnectOptions;
use eva_hub::protocol::Codec;
use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn expiry_mid_connection_closes_with_4002_promptly() {
    let mut s = settings();
    s.auth.leeway_s = 0;
    // Far longer than the test: only the expiry timer can close it.
    s.websocket.heartbeat_interval_ms = 60_000;
    s.websocket.idle_timeout_ms = 120_000;
    let app = spawn_with(s).await;
    let session = app.session(&app.a).await;
    let token = app
        .mint(
            &app.a.writer,
            json!({"role": "participant", "subject": "p", "sessions": [session], "ttl_s": 2}),
        )
        .await;
    let exp = jsonwebtoken::dangerous::insecure_decode_claims::<serde_json::Value>(&token).unwrap()
        ["exp"]
        .as_u64()
        .unwrap();
    let started = Instant::now();
    let mut header = app.connect(&token).await;
    header.join(session).await;
    let mut o = ConnectOptions::new(Codec::MsgPack, token.clone());
    o.origin = Some(ORIGIN.into());
    o.token_in_frame = true;
    let mut framed = TestClient {
        client: app.try_connect_with(o).await.unwrap(),
    };
    framed.next().await;
    assert_eq!(header.closed().await, Some(4002));
    let closed_at = now_ms_f();
    assert_eq!(framed.closed().await, Some(4002));
    assert!(
        closed_at >= (exp * 1000) as f64 - 5.0,
        "closed before exp: {closed_at} < {}",
        exp * 1000
    );
    assert!(
        closed_at <= (exp * 1000) as f64 + 500.0,
        "closed {} ms after exp",
        closed_at - (exp * 1000) as f64
    );
    assert!(started.elapsed() < Duration::from_secs(4));
    // And the token no longer opens anything: the client is told to get a
    // fresh one.
    let (status, body) = app.refusal(ConnectOptions::new(Codec::Json, token)).await;
    assert_eq!(status, 401);
    assert!(body.contains("\"token_expired\""), "{body}");
}

fn now_ms_f() -> f64 {
    eva_hub::ids::now_ms() as f64
}
