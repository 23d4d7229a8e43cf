//! API keys: managed per tenant through the admin API and the command
//! line, and never stored in plaintext.

use eva_hub::auth::api_key;
use eva_hub::cli::{KeyCreate, KeysCommand};
use eva_hub::ids::TenantId;
use eva_hub::store::Store;
use eva_hub::store::memory::MemoryStore;
use serde_json::json;

use crate::support::*;

/// Scans a store for plaintext keys, through the `Store` trait only, so
/// the same scan holds any implementation to it (memory here; SQLite and
/// Postgres once they exist). Every key's hash must be the SHA-256 hex of
/// exactly one of `keys`, and neither a key nor its random part may appear
/// in any record the store returns, nor in the store's debug dump (the
/// memory store's dump is all of its data).
pub async fn assert_no_plaintext_keys(store: &dyn Store, keys: &[String]) {
    let records = store.list_api_keys(None).await.unwrap();
    assert!(records.len() >= keys.len());
    let mut dumps = vec![format!("{store:?}")];
    for r in &records {
        assert_eq!(r.key_hash.len(), 64, "{}", r.key_hash);
        assert!(
            r.key_hash
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
            "{}",
            r.key_hash
        );
        dumps.push(serde_json::to_string(r).unwrap());
        if let Some(t) = store.get_tenant(r.tenant).await.unwrap() {
            dumps.push(serde_json::to_string(&t).unwrap());
        }
        let sessions = store
            .list_sessions(
                r.tenant,
                &eva_hub::store::SessionQuery {
                    limit: 1000,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        dumps.push(serde_json::to_string(&sessions).unwrap());
    }
    for key in keys {
        let hash = api_key::hash(key);
        assert_eq!(
            records.iter().filter(|r| r.key_hash == hash).count(),
            1,
            "each key is stored once, as its hash"
        );
        let secret_part = &key[api_key::PREFIX.len()..];
        for d in &dumps {
            assert!(!d.contains(secret_part), "a plaintext key is stored");
        }
    }
}

#[tokio::test]
async fn admin_api_manages_the_tenants_own_keys_only() {
    let app = spawn().await;
    let created = app
        .post(
            "/v1/keys",
            &app.a.admin,
            json!({"name": "ci", "scopes": ["eva:read", "eva:write"]}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let body = created.json();
    let key = body["key"].as_str().unwrap().to_owned();
    assert!(key.starts_with("evk_") && key.len() == 47, "{key}");
    assert!(body.get("key_hash").is_none());
    let id = body["id"].as_str().unwrap().to_owned();
    // Listed without values or hashes, and only to its tenant.
    let listed = app.get("/v1/keys", &app.a.admin).await;
    assert!(listed.body.contains(&id));
    assert!(!listed.body.contains(&key[4..]));
    assert!(!listed.body.contains(&api_key::hash(&key)));
    assert!(!app.get("/v1/keys", &app.b.admin).await.body.contains(&id));
    // Another tenant cannot revoke it: "no such key".
    let del = |who: String| {
        let app = &app;
        let id = id.clone();
        async move {
            app.call(
                reqwest::Method::DELETE,
                &format!("/v1/keys/{id}"),
                Some(&who),
                None,
            )
            .await
        }
    };
    let other = del(app.b.admin.clone()).await;
    assert_eq!(other.status, 404, "{}", other.body);
    let absent = app
        .call(
            reqwest::Method::DELETE,
            &format!("/v1/keys/{}", uuid::Uuid::now_v7()),
            Some(&app.b.admin),
            None,
        )
        .await;
    assert_eq!(other.body, absent.body);
    assert_eq!(app.get("/v1/sessions", &key).await.status, 200);
    assert_eq!(del(app.a.admin.clone()).await.status, 204);
    assert_eq!(app.get("/v1/sessions", &key).await.status, 401);
    // Bad requests.
    for body in [
        json!({"name": "x", "scopes": ["eva:root"]}),
        json!({"name": "x", "scopes": []}),
        json!({"name": "", "scopes": ["eva:read"]}),
        json!({"name": "x", "scopes": ["eva:read"], "expires_at": "2001-01-01T00:00:00Z"}),
    ] {
        assert_eq!(app.post("/v1/keys", &app.a.admin, body).await.status, 400);
    }
    let mut all = vec![key, app.a.admin.clone(), app.a.writer.clone()];
    all.extend([app.b.admin.clone(), app.b.reader.clone()]);
    assert_no_plaintext_keys(app.store.as_ref(), &all).await;
}

#[tokio::test]
async fn the_keys_command_creates_lists_and_revokes() {
    let store = MemoryStore::new();
    let run = |cmd: KeysCommand| {
        let store = &store;
        async move {
            let (mut out, mut info) = (Vec::new(), Vec::new());
            let r = eva_hub::commands::keys(store, &cmd, &mut out, &mut info).await;
            (
                r,
                String::from_utf8(out).unwrap(),
                String::from_utf8(info).unwrap(),
            )
        }
    };
    let create = |tenant: Option<TenantId>, email: Option<&str>, scopes: &[&str]| {
        KeysCommand::Create(KeyCreate {
            name: "backend".into(),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            tenant,
            email: email.map(str::to_owned),
            max_connections: Some(50),
            monthly_quota: None,
            expires_in_days: Some(30),
        })
    };
    // A new tenant needs an email.
    let (r, _, _) = run(create(None, None, &["eva:read"])).await;
    assert!(r.unwrap_err().to_string().contains("--email"));
    let (r, key, info) = run(create(
        None,
        Some("ops@example.com"),
        &["eva:read", "eva:write"],
    ))
    .await;
    r.unwrap();
    let key = key.trim().to_owned();
    assert!(
        api_key::looks_like_key(&key),
        "stdout is the key alone: {key:?}"
    );
    assert!(!info.contains(&key), "the key is printed once, on stdout");
    let (rec, scopes) = api_key::authenticate(&store, &key).await.unwrap();
    assert_eq!(scopes.len(), 2);
    assert!(rec.expires_at.is_some());
    let tenant = store.get_tenant(rec.tenant).await.unwrap().unwrap();
    assert_eq!(tenant.concurrent_sessions_limit, 50);
    // An unknown scope is an error, not a weaker key.
    let (r, _, _) = run(create(Some(rec.tenant), None, &["eva:reed"])).await;
    assert!(r.is_err());
    let (r, listed, _) = run(KeysCommand::List { tenant: None }).await;
    r.unwrap();
    assert!(listed.contains(&rec.id.to_string()) && !listed.contains(&key[4..]));
    let (r, _, _) = run(KeysCommand::Revoke {
        id: rec.id,
        tenant: Some(TenantId::new()),
    })
    .await;
    assert!(r.is_err(), "revoking under another tenant fails");
    let (r, _, _) = run(KeysCommand::Revoke {
        id: rec.id,
        tenant: None,
    })
    .await;
    r.unwrap();
    assert!(api_key::authenticate(&store, &key).await.is_err());
    assert_no_plaintext_keys(&store, &[key]).await;
}
