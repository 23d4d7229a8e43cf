//! The real `eva-hub` binary: it refuses to start without credentials and
//! says what to set; configured from the environment it serves, mints
//! tokens from the command line, prints its settings without secrets, and
//! logs no credential at debug level.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use eva_hub::client::ConnectOptions;
use eva_hub::ids::TenantId;
use eva_hub::protocol::{Codec, ServerFrame};
use serde_json::Value;

use crate::support::*;

const SECRET: &str = "binary-test-secret-0123456789-abcdefghijklmnop";
const KEYS: &str = r#"[{kid="k1",algorithm="HS256",secret_env="EVA_HUB_TEST_JWT_SECRET"}]"#;

/// The binary with none of the caller's eva-hub settings.
fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_eva-hub"));
    for (k, _) in std::env::vars() {
        if k.starts_with("EVA_HUB") || k == "DATABASE_URL" || k == "REDIS_URL" || k == "RUST_LOG" {
            c.env_remove(k);
        }
    }
    c.args(["--database-url", "memory"]);
    c
}

fn configured() -> Command {
    let mut c = bin();
    c.env("EVA_HUB__AUTH__KEYS", KEYS)
        .env("EVA_HUB_TEST_JWT_SECRET", SECRET)
        .env("EVA_HUB__AUTH__ALLOWED_ORIGINS", format!("[\"{ORIGIN}\"]"));
    c
}

const SERVE: [&str; 5] = [
    "serve",
    "--listen",
    "127.0.0.1:0",
    "--metrics-listen",
    "127.0.0.1:0",
];

#[test]
fn refuses_to_start_without_credentials_and_says_what_to_set() {
    let out = bin().args(SERVE).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    for needle in [
        "[[auth.keys]]",
        "EVA_HUB__AUTH__KEYS",
        "secret_file",
        "--dev",
    ] {
        assert!(err.contains(needle), "the error names {needle}: {err}");
    }
    // A key that is there but unusable is named too.
    let out = bin()
        .args(SERVE)
        .env("EVA_HUB__AUTH__KEYS", KEYS)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("EVA_HUB_TEST_JWT_SECRET"), "{err}");
    // Keys need the database.
    let out = bin().args(["keys", "list"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("store.database_url"));
}

#[test]
fn config_prints_no_secret() {
    let out = bin()
        .arg("config")
        .env(
            "EVA_HUB__AUTH__KEYS",
            format!(r#"[{{kid="k1",algorithm="HS256",secret="{SECRET}"}}]"#),
        )
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(printed.contains("\"kid\": \"k1\""), "{printed}");
    assert!(!printed.contains(SECRET));
}

struct Running {
    child: Child,
    output: Arc<Mutex<String>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn collect(r: impl std::io::Read + Send + 'static, into: Arc<Mutex<String>>) {
    std::thread::spawn(move || {
        for line in BufReader::new(r).lines().map_while(Result::ok) {
            let mut o = into.lock().unwrap();
            o.push_str(&line);
            o.push('\n');
        }
    });
}

fn serve() -> (Running, std::net::SocketAddr) {
    let mut child = configured()
        .args(SERVE)
        .env("EVA_HUB__LOG__FORMAT", "json")
        .env("RUST_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let output = Arc::new(Mutex::new(String::new()));
    collect(child.stdout.take().unwrap(), output.clone());
    collect(child.stderr.take().unwrap(), output.clone());
    let running = Running { child, output };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let addr = running.output.lock().unwrap().lines().find_map(|l| {
            let v: Value = serde_json::from_str(l).ok()?;
            (v["message"] == "eva-hub serving")
                .then(|| v["listen"].as_str()?.parse().ok())
                .flatten()
        });
        if let Some(addr) = addr {
            return (running, addr);
        }
        assert!(
            Instant::now() < deadline,
            "the hub did not start: {}",
            running.output.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn mint(tenant: TenantId, role: &str, extra: &[&str]) -> String {
    let out = configured()
        .args([
            "token",
            "--tenant",
            &tenant.to_string(),
            "--role",
            role,
            "--subject",
            "cli-user",
        ])
        .args(extra)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(!String::from_utf8_lossy(&out.stderr).contains(&token));
    token
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_serves_configured_keys_and_logs_no_credential() {
    let (hub, addr) = serve();
    let tenant = TenantId::new();
    let operator = mint(tenant, "operator", &["--ttl-s", "120"]);
    let participant = mint(tenant, "participant", &["--name", "Ada"]);
    let mut secrets = vec![SECRET.to_owned(), operator.clone(), participant.clone()];

    let connect = |opts: ConnectOptions| eva_hub::client::Client::connect(addr, opts);
    // Header.
    let mut c = TestClient {
        client: connect(ConnectOptions::new(Codec::Json, operator.clone()))
            .await
            .unwrap(),
    };
    match c.next().await {
        ServerFrame::Welcome {
            subject, tenant: t, ..
        } => {
            assert_eq!(subject, "cli-user");
            assert_eq!(t, tenant);
        }
        other => panic!("{other:?}"),
    }
    // First frame, from the allowed origin.
    let mut o = ConnectOptions::new(Codec::MsgPack, participant.clone());
    o.origin = Some(ORIGIN.into());
    o.token_in_frame = true;
    let mut p = TestClient {
        client: connect(o).await.unwrap(),
    };
    assert!(matches!(p.next().await, ServerFrame::Welcome { .. }));
    // Refused ones.
    let forged = format!("{}x", &operator[..operator.len() - 1]);
    match connect(ConnectOptions::new(Codec::Json, forged.clone())).await {
        Err(eva_hub::client::ClientError::Refused { status, body }) => {
            assert_eq!((status, body.as_str()), (401, UNAUTHORIZED))
        }
        other => panic!("{other:?}"),
    }
    secrets.push(forged);
    let http = crate::support::test_http_client();
    let bogus = eva_hub::auth::api_key::generate().unwrap();
    for bearer in [bogus.expose(), operator.as_str()] {
        let res = http
            .get(format!("http://{addr}/v1/sessions"))
            .bearer_auth(bearer)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 401);
    }
    secrets.push(bogus.expose().to_owned());
    drop(c);
    drop(p);
    tokio::time::sleep(Duration::from_millis(200)).await;

    let output = hub.output.lock().unwrap().clone();
    assert!(
        output.contains("authentication refused"),
        "debug logs were captured"
    );
    for s in &secrets {
        assert!(
            !output.contains(s.as_str()),
            "a credential appears in the hub's output"
        );
        if let Some(sig) = s.rsplit('.').next().filter(|x| x.len() > 16) {
            assert!(
                !output.contains(sig),
                "a token signature appears in the hub's output"
            );
        }
    }
}
